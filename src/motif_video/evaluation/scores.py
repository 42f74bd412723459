"""Figures of a group of read clips against their scenes: per clip (the clip read as a whole), per frame (every
frame read on its own) and for frame 0 alone. Pure functions of the readings."""

from __future__ import annotations

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


def figures(readings: Sequence[tuple[Reading, Scene]]) -> dict[str, float]:
    """Accuracies in [0, 1] (and mean flicker) of `(reading, truth)` pairs.

    colour / shape / direction / background   per clip: the clip's reading equals the truth
    colour_frames / shape_frames              per frame: share of all frames read right (a frame without an object,
                                              or whose shape is unclear, counts as wrong)
    colour_frame0 / shape_frame0              share of clips whose frame 0 reads right
    colour_every_frame                        share of clips whose every frame reads the right colour
    """
    if not readings:
        raise ValueError("no readings to score")

    def share(hits: Sequence[bool]) -> float:
        return sum(hits) / len(hits)

    return {
        "colour": share([r.colour == s.colour for r, s in readings]),
        "colour_frames": share([c == s.colour for r, s in readings for c in r.frame_colours]),
        "colour_frame0": share([r.frame_colours[0] == s.colour for r, s in readings]),
        "colour_every_frame": share([all(c == s.colour for c in r.frame_colours) for r, s in readings]),
        "shape": share([r.shape == s.shape for r, s in readings]),
        "shape_frames": share([x == s.shape for r, s in readings for x in r.frame_shapes]),
        "shape_frame0": share([r.frame_shapes[0] == s.shape for r, s in readings]),
        "direction": share([r.motion == s.motion for r, s in readings]),
        "background": share([r.background == s.background for r, s in readings]),
        "flicker": statistics.mean(r.flicker for r, _ in readings),
        "clips": len(readings),
        "frames": sum(len(r.frame_colours) for r, _ in readings),
    }
