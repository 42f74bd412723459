"""The per-frame reader on ground-truth clips from the scene renderer: every shape at several sizes, rounded
squares, recoloured frames."""

import numpy as np
import pytest

from motif_video.evaluation.analysis import object_masks, read_clip, read_shape, shape_overlaps
from motif_video.evaluation.scores import ACCURACIES, figures
from motif_video.synthetic import BACKGROUNDS, COLOURS, MOTIONS, SHAPES, Scene, render

SIZES = (0.1, 0.15, 0.2, 0.24)


def scenes(shape):
    """One scene per (size, motion), colours and backgrounds in turn."""
    pairs = [(c, b) for c in sorted(COLOURS) for b in sorted(BACKGROUNDS) if c != b]
    out = []
    for i, (radius, motion) in enumerate((r, m) for r in SIZES for m in MOTIONS):
        colour, background = pairs[(7 * i + SHAPES.index(shape)) % len(pairs)]
        if motion == "grows":
            out.append(Scene(shape, colour, background, motion, min(radius, 0.16), (0.5, 0.5)))
        else:
            start = {"left": (0.7, 0.5), "right": (0.3, 0.5), "up": (0.5, 0.7), "down": (0.5, 0.3)}[motion]
            out.append(Scene(shape, colour, background, motion, radius, start))
    return out


@pytest.mark.parametrize("shape", SHAPES)
def test_every_frame_of_ground_truth_clips_reads_right(shape):
    pairs = [(read_clip(render(scene, 17, 64, 64)), scene) for scene in scenes(shape)]
    for reading, scene in pairs:
        assert reading.frame_shapes == [shape] * 17, (scene, reading.frame_shapes)
        assert reading.frame_colours == [scene.colour] * 17, scene
    scores = figures(pairs)
    for key in ACCURACIES:
        assert scores[key] == 1.0, key
    assert scores["clips"] == len(SIZES) * len(MOTIONS) and scores["frames"] == 17 * scores["clips"]


def rounded_square(corner: float, half: float = 13.0, size: int = 64) -> np.ndarray:
    """bool [H, W]: a centred square of half-side `half` px whose corners are rounded with radius corner * half."""
    s = 4
    ys, xs = np.mgrid[0 : size * s, 0 : size * s].astype(np.float32)
    xs, ys = (xs + 0.5) / s - size / 2, (ys + 0.5) / s - size / 2
    inner = half * (1 - corner)
    dx, dy = np.maximum(np.abs(xs) - inner, 0), np.maximum(np.abs(ys) - inner, 0)
    inside = (np.abs(xs) <= half) & (np.abs(ys) <= half) & (dx**2 + dy**2 <= (corner * half) ** 2)
    return inside.reshape(size, s, size, s).mean(axis=(1, 3)) > 0.5


def test_a_rounded_square_is_not_a_circle():
    # the overlap reading alone (best outline) calls a square rounded with 65 % of its half-size a circle
    overlaps = shape_overlaps(rounded_square(0.65))
    assert max(overlaps, key=overlaps.get) == "circle"
    for half in (8.0, 13.0, 16.0):
        for corner in (0.5, 0.65):
            assert read_shape(rounded_square(corner, half)) != "circle", (corner, half)
        assert read_shape(rounded_square(0.3, half)) == "square"
        assert read_shape(rounded_square(0.0, half)) == "square"
        assert read_shape(rounded_square(1.0, half)) == "circle"  # all corner: a circle


def test_a_clip_of_rounded_squares_reads_as_no_shape():
    mask = rounded_square(0.65)
    clip = np.where(mask[None, ..., None], np.uint8(220), np.uint8(10)).repeat(3, -1).repeat(9, 0)
    reading = read_clip(clip)
    assert reading.frame_shapes == [None] * 9 and reading.shape is None
    truth = Scene("circle", "white", "black", "grows", 0.2, (0.5, 0.5))
    assert figures([(reading, truth)])["shape"] == 0.0


def test_a_wrong_first_frame_counts_in_frame0_and_per_frame_figures_only():
    scene = Scene("circle", "red", "black", "left", 0.2, (0.7, 0.5))
    clip = render(scene, 33, 64, 64)
    masks = object_masks(clip)[0]
    clip[0][masks[0]] = (240, 235, 160)  # a pale, washed-out first frame
    reading = read_clip(clip)
    assert reading.colour == "red" and reading.frame_colours[0] in ("yellow", "white")
    scores = figures([(reading, scene)])
    assert scores["colour"] == 1.0 and scores["colour_frame0"] == 0.0 and scores["colour_every_frame"] == 0.0
    assert scores["colour_frames"] == pytest.approx(32 / 33)
    empty = clip.copy()
    empty[1] = empty[1, 0, 0]  # frame 1 shows no object
    reading = read_clip(empty)
    assert reading.frame_colours[1] is None and reading.frame_shapes[1] is None


def test_figures_refuse_no_readings():
    with pytest.raises(ValueError, match="no readings"):
        figures([])
