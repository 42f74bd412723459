"""Where conditions land on the causal VAE's grouping (motif_video.condition_layout), and what is refused."""

from __future__ import annotations

import numpy as np
import pytest

from motif_video.condition_layout import latent_index, pixel_frames, place, plan_layout


def test_pixel_to_latent_mapping_follows_the_causal_groups():
    assert [latent_index(f) for f in range(10)] == [0, 1, 1, 1, 1, 2, 2, 2, 2, 3]
    assert list(pixel_frames(0)) == [0] and list(pixel_frames(1)) == [1, 2, 3, 4]
    assert list(pixel_frames(30)) == [117, 118, 119, 120]  # the released 121 frames: latent 30 is the last
    for k in range(1, 31):  # each group maps back to its latent frame
        assert {latent_index(f) for f in pixel_frames(k)} == {k}


def test_first_image_is_todays_image_to_video():
    p = place("image", 0, 1, 33)
    assert (list(p.latents), p.encode, p.skip) == ([0], (0,), 0)


def test_last_image_and_keyframe_fill_their_group_after_a_context_frame():
    last = place("last", -1, 1, 33)
    assert last.frame == 32 and list(last.latents) == [8]  # pixel frames 29-32
    assert (last.encode, last.skip) == ((0, 0, 0, 0, 0), 1)  # a still group of 4 after itself as context
    key = place("key", 14, 1, 33)
    assert list(key.latents) == [4] and len(key.encode) == 5


def test_clip_prefix_is_encoded_as_the_video_starts():
    p = place("prefix", 0, 9, 33)
    assert (list(p.latents), p.encode, p.skip) == ([0, 1, 2], tuple(range(9)), 0)


def test_clip_straddling_a_group_is_padded_with_its_edge_frames():
    # 8 frames at pixel frame 3 cover pixels 3-10: groups 1 (1-4), 2 (5-8) and 3 (9-12) are touched.
    p = place("clip", 3, 8, 33)
    assert list(p.latents) == [1, 2, 3] and p.skip == 1
    # context (pixel 0 -> clip frame 0), pixels 1, 2 -> frame 0 (before the clip), 3..10 -> frames 0..7,
    # 11, 12 -> frame 7 (after it)
    assert p.encode == (0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 7, 7)
    # starting right after a group boundary with the previous frame inside: that frame is the context
    q = place("clip", 4, 6, 33)  # pixels 4-9: groups 1 (partly), 2, 3 (partly)
    assert list(q.latents) == [1, 2, 3] and q.encode[:5] == (0, 0, 0, 0, 0) and q.encode[5:9] == (1, 2, 3, 4)
    r = place("clip", 5, 4, 33)  # exactly group 2, its context pixel 4 is outside the clip: its first frame
    assert list(r.latents) == [2] and r.encode == (0, 0, 1, 2, 3)


@pytest.mark.parametrize(
    "conditions, message",
    [
        ([("a", 33, 1, 1.0)], r"a: frame 33 is outside the video's frames 0\.\.32"),
        ([("a", -34, 1, 1.0)], "outside the video"),
        ([("a", 30, 5, 1.0)], "5 frames at frame 30 end at frame 34, past the video's last frame 32"),
        ([("a", 2, 1, 0.0)], r"strength must be in \(0, 1\]"),
        ([("a", 2, 1, 1.5)], r"strength must be in \(0, 1\]"),
        ([("a", 1.5, 1, 1.0)], "frame must be an integer"),
        ([("a", True, 1, 1.0)], "frame must be an integer, got True"),
        ([("a", np.float64(2.0), 1, 1.0)], "frame must be an integer"),
        (
            [("first", 0, 1, 1.0), ("key", 1, 1, 1.0), ("key2", 3, 1, 1.0)],
            r"key \(frame 1\) and key2 \(frame 3\) both condition latent frame 1 \(pixel frames 1-4\)",
        ),
        ([("prefix", 0, 9, 1.0), ("key", 8, 1, 1.0)], "both condition latent frame 2"),
        ([("last", -1, 1, 1.0), ("key", 30, 1, 1.0)], "both condition latent frame 8"),
    ],
)
def test_conflicts_and_out_of_range_are_refused(conditions, message):
    with pytest.raises(ValueError, match=message):
        plan_layout(conditions, 33)


def test_numpy_numbers_are_taken():
    """`frame_index=np.int64(16)` (an index computed with numpy) and a numpy strength are the numbers they hold
    (before: "frame must be an integer")."""
    p = place("key", np.int64(16), 1, 33, np.float32(0.5))
    assert p == place("key", 16, 1, 33, 0.5) and type(p.frame) is int
    assert place("last", np.int32(-1), 1, 33).frame == 32


def test_num_frames_must_be_4k_plus_1():
    with pytest.raises(ValueError, match="4k\\+1"):
        plan_layout([], 32)
