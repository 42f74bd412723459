"""Procedural videos with ground truth: the small model's training set and the offline evaluator's oracle."""

from .scenes import (
    BACKGROUNDS,
    COLOURS,
    MOTIONS,
    NARROW,
    SHAPES,
    VARIED,
    Scene,
    SceneRanges,
    caption,
    parse_caption,
    render,
    sample_scene,
    scene_at,
)

__all__ = [
    "BACKGROUNDS",
    "COLOURS",
    "MOTIONS",
    "NARROW",
    "SHAPES",
    "VARIED",
    "Scene",
    "SceneRanges",
    "caption",
    "parse_caption",
    "render",
    "sample_scene",
    "scene_at",
]
