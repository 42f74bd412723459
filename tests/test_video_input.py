"""The input video of video-to-video gives the request its frame count, size and frame rate where the request
leaves them; a size the model cannot take is kept in shape at the model's pixel count, not stretched."""

from __future__ import annotations

import numpy as np
import pytest

from motif_video.options import parse_request
from motif_video.pipelines.export import write_mp4
from motif_video.video_input import same_shape, size_from_video

RELEASED = "Motif-Technologies/Motif-Video-2B"  # no stored size list: any size (736x1280 by default)


@pytest.mark.parametrize("width, height", [(1080, 1920), (1920, 1080), (720, 720), (1000, 562), (30, 2000)])
def test_same_shape_keeps_the_aspect_ratio_and_the_pixel_count(width, height):
    w, h = same_shape(width, height, 736 * 1280)
    assert w % 16 == 0 and h % 16 == 0 and w >= 16 and h >= 16
    if min(width, height) >= 500:
        assert abs(w / h - width / height) <= 16.1 / min(w, h)  # within one 16-pixel step of the shape
        assert abs(w * h / (736 * 1280) - 1) < 0.05


def _clip(tmp_path, width, height, fps=24):
    return write_mp4(np.zeros((9, height, width, 3), np.uint8), tmp_path / f"{width}x{height}.mp4", fps=fps)


def test_a_portrait_clip_is_kept_portrait(tmp_path):
    """Before: a 1080x1920-like clip (not multiples of 16) took the model's 1280x736 and was squeezed into it."""
    clip = _clip(tmp_path, 54, 96)  # 9:16, 54 not a multiple of 16
    request = size_from_video(parse_request({"prompts": "a", "video": str(clip), "model": RELEASED}))
    assert (request.width, request.height) == same_shape(54, 96, 736 * 1280) == (720, 1296)
    assert (request.num_frames, request.fps, request.strength) == (9, 24, 0.7)
    own = size_from_video(
        parse_request({"prompts": "a", "video": str(_clip(tmp_path, 48, 96)), "model": RELEASED})
    )
    assert (own.width, own.height) == (48, 96)  # multiples of 16: the clip's own size, as before
    asked = parse_request({"prompts": "a", "video": str(clip), "model": RELEASED, "width": 64, "height": 64})
    assert (size_from_video(asked).width, size_from_video(asked).height) == (64, 64)


def test_a_model_trained_at_one_size_keeps_it(tmp_path):
    """The small model knows 64x64 only: another shape would be off what it can draw, so the clip is stretched."""
    request = size_from_video(
        parse_request({"prompts": "a", "video": str(_clip(tmp_path, 54, 96)), "model": "small"})
    )
    assert (request.width, request.height) == (64, 64)  # the model's own size
