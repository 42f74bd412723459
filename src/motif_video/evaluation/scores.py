"""Figures of a group of read clips against their scenes: per clip (the clip read as a whole), per frame (every
frame read on its own) and for frame 0 alone. Pure functions of the readings."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from ..synthetic.scenes import Scene
from .analysis import Reading

ACCURACIES = (
    "colour",
    "colour_frames",
    "colour_frame0",
    "colour_every_frame",
    "shape",
    "shape_frames",
    "shape_frame0",
    "direction",
    "background",
)


def _per_clip(readings: Sequence[tuple[Reading, Scene]]) -> dict[str, list[float]]:
    """Per accuracy, one value per clip: 1.0 / 0.0 for a per-clip figure, the clip's share of right frames for a
    per-frame one (frames without an object, or whose shape is unclear, count as wrong)."""

    def frames_right(readout: Sequence[str | None], truth: str) -> float:
        return sum(x == truth for x in readout) / len(readout) if readout else 0.0

    rows = [
        {
            "colour": r.colour == s.colour,
            "colour_frames": frames_right(r.frame_colours, s.colour),
            "colour_frame0": bool(r.frame_colours) and r.frame_colours[0] == s.colour,
            "colour_every_frame": all(c == s.colour for c in r.frame_colours),
            "shape": r.shape == s.shape,
            "shape_frames": frames_right(r.frame_shapes, s.shape),
            "shape_frame0": bool(r.frame_shapes) and r.frame_shapes[0] == s.shape,
            "direction": r.motion == s.motion,
            "background": r.background == s.background,
        }
        for r, s in readings
    ]
    return {key: [float(row[key]) for row in rows] for key in ACCURACIES}


def figures(readings: Sequence[tuple[Reading, Scene]]) -> dict[str, float | int | dict[str, float | None]]:
    """Accuracies in [0, 1] (and mean flicker) of `(reading, truth)` pairs, with their standard errors.

    colour / shape / direction / background   per clip: the clip's reading equals the truth
    colour_frames / shape_frames              per frame: share of all frames read right (a frame without an object,
                                              or whose shape is unclear, counts as wrong)
    colour_frame0 / shape_frame0              share of clips whose frame 0 reads right
    colour_every_frame                        share of clips whose every frame reads the right colour
    se                                        per accuracy, one standard error over clips: the population standard
                                              deviation of the per-clip values over sqrt(clips) (for a per-clip
                                              share p, sqrt(p (1 - p) / clips)); frames of one clip are not
                                              independent, so a per-frame figure's error is taken over clips too;
                                              None for a single clip
    """
    if not readings:
        raise ValueError("no readings to score")
    per_clip = _per_clip(readings)
    lengths = [len(r.frame_colours) for r, _ in readings]
    frames = sum(lengths)
    scores: dict[str, float | int | dict[str, float | None]] = {
        key: statistics.mean(values) for key, values in per_clip.items()
    }
    # per-frame shares are over all frames: each clip's share weighs by its frame count
    for key in ("colour_frames", "shape_frames"):
        scores[key] = sum(v * n for v, n in zip(per_clip[key], lengths)) / frames
    scores["flicker"] = statistics.mean(r.flicker for r, _ in readings)
    scores["clips"] = len(readings)
    scores["frames"] = frames
    # one clip tells nothing of the spread: its error is unknown (None), not 0
    scores["se"] = {
        key: statistics.pstdev(v) / math.sqrt(len(v)) if len(v) > 1 else None for key, v in per_clip.items()
    }
    return scores


BREAKDOWN = ("colour_frames", "colour_frame0", "shape", "shape_frames", "direction")


def combination(scene: Scene) -> str:
    return f"{scene.colour} {scene.shape} on {scene.background}"


def by_combination(readings: Sequence[tuple[Reading, Scene]]) -> dict[str, dict[str, float | int]]:
    """Per (colour, shape, background) combination, in first-seen order: its clips and the `BREAKDOWN` accuracies
    over them (as `figures` computes them), which tells a miss that one combination makes every time from one
    spread over many."""
    groups: dict[str, list[tuple[Reading, Scene]]] = {}
    for reading, scene in readings:
        groups.setdefault(combination(scene), []).append((reading, scene))
    out: dict[str, dict[str, float | int]] = {}
    for name, pairs in groups.items():
        scores = figures(pairs)
        out[name] = {"clips": len(pairs), **{key: scores[key] for key in BREAKDOWN}}
    return out
