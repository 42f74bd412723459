import dataclasses
import math
import statistics

import numpy as np
import pytest

from motif_video.evaluation.analysis import object_masks, psnr_uint8, read_clip, shape_overlaps
from motif_video.evaluation.scores import ACCURACIES, BREAKDOWN, by_combination, figures
from motif_video.synthetic import Scene, render, scene_at


def test_ground_truth_clips_score_fully_correct():
    readings = []
    for i in range(40):
        scene = scene_at(1000, i)
        readings.append((read_clip(render(scene, 33, 64, 64)), scene))
    scores = figures(readings)
    assert {k: v for k, v in scores.items() if k not in ("flicker", "clips", "frames", "se")} == {
        key: 1.0 for key in ACCURACIES
    }
    assert scores["se"] == {key: 0.0 for key in ACCURACIES}  # every clip right: no spread
    one = figures(readings[:1])
    assert one["clips"] == 1 and one["se"] == {
        key: None for key in ACCURACIES
    }  # a spread one clip cannot give


def test_wrong_colour_and_reversed_motion_score_wrong():
    scene = Scene("circle", "red", "black", "right", 0.15, (0.2, 0.5))
    wrong_colour = Scene("circle", "blue", "black", "right", 0.15, (0.2, 0.5))
    reading = read_clip(render(wrong_colour, 33, 64, 64))
    scores = figures([(reading, scene)])
    assert scores["colour"] == scores["colour_frames"] == scores["colour_frame0"] == 0.0
    assert scores["shape"] == scores["direction"] == 1.0
    reversed_clip = render(scene, 33, 64, 64)[::-1]
    assert read_clip(reversed_clip).motion == "left"
    still = np.repeat(render(scene, 1, 64, 64), 33, axis=0)
    assert read_clip(still).motion == "still"


def test_motion_is_read_through_wraps_round_the_frame():
    from motif_video.synthetic.scenes import advance, wrapped

    moving = [s for s in (scene_at(1001, i) for i in range(30)) if s.motion != "grows"][:8]
    for scene in moving:
        for place in (0.05, 0.5, 0.9):
            ring = wrapped(scene, place)
            # four clip lengths: 1.6 frame sides of travel, so the object crosses an edge at least once
            video = np.concatenate([render(advance(ring, k), 33, 64, 64) for k in range(4)])
            reading = read_clip(video)
            assert reading.motion == scene.motion, (ring, reading.displacement)
            # the displacement is the unwrapped one: about 1.6 * 3/4 of a frame side between the quarters' means
            assert 1.0 < max(map(abs, reading.displacement)) < 1.4, (ring, reading.displacement)
            assert read_clip(video[::-1]).motion != scene.motion


def test_growth_past_the_frame_reads_as_growing():
    """A growing object continued for four clip lengths (a 4x extension) grows past the frame's edges: its visible
    centre drifts (a triangle's towards its base, 0.11-0.21 of the frame) yet it reads as growing."""
    from motif_video.evaluation.analysis import _motion
    from motif_video.synthetic.scenes import advance

    growing = [s for s in (scene_at(1002, i) for i in range(60)) if s.motion == "grows"][:9]
    assert {s.shape for s in growing} == {"circle", "square", "triangle"}
    drifted = 0
    for scene in growing:
        video = np.concatenate([render(advance(scene, k), 33, 64, 64)[(k > 0) :] for k in range(4)])
        motion, (dx, dy), area = _motion(object_masks(video)[0])
        assert motion == "grows", (scene, dx, dy, area)
        drifted += math.hypot(dx, dy) >= 0.08  # what the centre rule alone would have read as a move
        assert read_clip(render(dataclasses.replace(scene, motion="down"), 33, 64, 64)).motion == "down"
    assert drifted >= 2


def test_each_window_of_a_faithful_extension_follows_the_caption_and_held_windows_do_not():
    """`window_motions` reads an extension's windows apart: the true continuation of every moving scene (the object
    leaving the frame) is right in every window, and one that holds the first clip's last frame, or runs back, is
    wrong in every window after the first clip."""
    from motif_video.evaluation.analysis import window_motions
    from motif_video.evaluation.conditions import scored_windows
    from motif_video.extension import plan_extension
    from motif_video.synthetic.scenes import SceneRanges

    plan = plan_extension(33, 132, 33, 9)
    windows = scored_windows(plan)
    assert windows == [(33, 57), (57, 81), (81, 105), (105, 129)]  # the 3-frame last window is not scored
    narrow = SceneRanges(radius=(0.20, 0.22), grow_radius=(0.14, 0.15), jitter=0.02)  # the recipe's clips
    scenes = [s for s in (scene_at(1003, i, narrow) for i in range(30)) if s.motion != "grows"]
    assert {s.motion for s in scenes} == {"left", "right", "up", "down"}
    for scene in scenes:
        video = render(scene, 132, 64, 64)
        assert window_motions(video, windows, scene.motion) == [True] * 4, scene
        held = np.concatenate([video[:33], np.repeat(video[32:33], 99, axis=0)])
        assert window_motions(held, windows, scene.motion) == [False] * 4, scene
        flip = (slice(None), slice(None), slice(None, None, -1)) if scene.motion in ("left", "right") else (
            slice(None), slice(None, None, -1))  # fmt: skip
        back = np.concatenate([video[:33], video[33:][flip]])  # mirrored after the first clip: the other way
        assert not any(window_motions(back, windows, scene.motion)[1:]), scene
    with pytest.raises(ValueError, match="motion must be one of"):
        window_motions(render(scenes[0], 33, 64, 64), [(0, 33)], "grows")


def test_flicker_and_psnr():
    scene = scene_at(1000, 0)
    clip = render(scene, 17, 64, 64)
    assert read_clip(clip).flicker < 1e-3  # only anti-aliased edge pixels below the object threshold
    noisy = np.clip(clip.astype(int) + np.random.default_rng(0).integers(-20, 21, clip.shape), 0, 255).astype(
        np.uint8
    )
    assert read_clip(noisy).flicker > 0.02
    assert psnr_uint8(clip[0], clip[0]) > 90
    assert 20 < psnr_uint8(noisy[0], clip[0]) < 30


def blurred(video: np.ndarray, passes: int) -> np.ndarray:
    """Each frame smoothed by `passes` 3x3 binomial filters (edge pixels repeated)."""
    v = video.astype(np.float32)
    for _ in range(passes):
        for axis in (1, 2):
            padded = np.concatenate([v.take([0], axis), v, v.take([-1], axis)], axis)
            n = v.shape[axis]
            v = (padded.take(range(0, n), axis) + 2 * padded.take(range(1, n + 1), axis)
                 + padded.take(range(2, n + 2), axis)) / 4  # fmt: skip
    return np.round(v).astype(np.uint8)


def test_shape_reading_survives_blurred_edges():
    # a decoder's soft edges round corners and spread halos: the reading uses the mask's area and centroid only
    for i in range(30):  # 12 passes: a bounding-box fill ratio reads about a third of these wrong
        scene = scene_at(1000, i)
        reading = read_clip(blurred(render(scene, 9, 64, 64), passes=12))
        assert reading.shape == scene.shape, (i, scene)
    triangle = Scene("triangle", "yellow", "gray", "left", 0.2, (0.7, 0.5))
    assert read_clip(blurred(render(triangle, 9, 64, 64), passes=12)).shape == "triangle"
    square = Scene("square", "white", "black", "grows", 0.14, (0.5, 0.5))
    assert read_clip(blurred(render(square, 9, 64, 64), passes=12)).shape == "square"


def test_shape_overlaps_rank_the_true_shape_first():
    for shape in ("circle", "square", "triangle"):
        scene = Scene(shape, "red", "white", "left", 0.22, (0.5, 0.5))
        masks = object_masks(render(scene, 1, 64, 64))[0]
        overlaps = shape_overlaps(masks[0])
        assert set(overlaps) == {"circle", "square", "triangle"}
        assert all(0.0 <= v <= 1.0 for v in overlaps.values())
        assert max(overlaps, key=overlaps.get) == shape, overlaps
        assert overlaps[shape] > 0.9
    assert shape_overlaps(np.zeros((64, 64), bool)) is None


def test_standard_errors_are_over_clips():
    """A per-clip share p of n clips has standard error sqrt(p (1 - p) / n); a per-frame share's error is taken over
    the clips' own shares, not over frames (frames of a clip are not independent)."""
    scene = Scene("circle", "red", "black", "right", 0.15, (0.2, 0.5))
    right = read_clip(render(scene, 9, 64, 64))
    blue = read_clip(render(Scene("circle", "blue", "black", "right", 0.15, (0.2, 0.5)), 9, 64, 64))
    half = read_clip(np.concatenate([render(scene, 9, 64, 64)[:3], np.zeros((6, 64, 64, 3), np.uint8)]))
    scores = figures([(right, scene), (right, scene), (blue, scene), (half, scene)])
    assert scores["colour"] == 0.75 and scores["se"]["colour"] == pytest.approx(math.sqrt(0.75 * 0.25 / 4))
    # per clip: 1, 1, 0 and 3 of 9 frames right; the share is over all 36 frames
    assert scores["colour_frames"] == pytest.approx(21 / 36)
    per_clip = [1.0, 1.0, 0.0, 1 / 3]
    assert scores["se"]["colour_frames"] == pytest.approx(statistics.pstdev(per_clip) / 2)
    assert scores["colour_frame0"] == 0.75  # the half clip's frame 0 is right
    assert scores["se"]["colour_frame0"] == pytest.approx(math.sqrt(0.75 * 0.25 / 4))


def test_by_combination_scores_each_combination_apart():
    red = Scene("circle", "red", "black", "right", 0.15, (0.2, 0.5))
    green = Scene("square", "green", "white", "left", 0.15, (0.8, 0.5))
    right = read_clip(render(red, 9, 64, 64))
    wrong = read_clip(render(dataclasses.replace(red, colour="blue"), 9, 64, 64))
    square = read_clip(render(green, 9, 64, 64))
    table = by_combination([(right, red), (square, green), (wrong, red)])
    assert list(table) == ["red circle on black", "green square on white"]
    assert table["red circle on black"]["clips"] == 2
    assert (
        table["red circle on black"]["colour_frame0"] == 0.5
        and table["red circle on black"]["colour_frames"] == 0.5
    )
    assert table["green square on white"] == {"clips": 1, **{k: 1.0 for k in BREAKDOWN}}
