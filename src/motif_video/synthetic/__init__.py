"""Procedural videos, written as real MP4s with captions so they go through the user-data path.

`scenes`: shapes with ground-truth labels, the small model's training set (recipes/small) and the offline
evaluator's oracle. `squares`: the tiny recipe's moving squares (`data.generate_clips`). `video`: the MP4 writer.
"""

from .scenes import (
    BACKGROUNDS,
    COLOURS,
    MOTIONS,
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
