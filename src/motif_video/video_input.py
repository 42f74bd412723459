"""The input video of video-to-video: readable, long enough, and the frame count and size it gives a request.

Torch-free (the service's API process checks uploads with it before a job is queued); the file is decoded with PyAV
through `pipelines.export`.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from .defaults import GenerationDefaults, model_defaults
from .options import MAX_FPS, VIDEO_TO_VIDEO_STRENGTH, GenerateRequest


def same_shape(width: int, height: int, area: int) -> tuple[int, int]:
    """(width, height) in multiples of 16 with about `area` pixels and the aspect ratio of width x height: a video
    whose own size the model cannot take (not multiples of 16), kept in shape rather than stretched to the model's
    default (a phone's 1080x1920 clip is portrait at the model's size, not squeezed into landscape)."""
    h = math.sqrt(area * height / width)
    return max(16, round(h * width / height / 16) * 16), max(16, round(h / 16) * 16)


def video_size(width: int, height: int, defaults: GenerationDefaults) -> tuple[int, int]:
    """(width, height) a video of width x height gives a request (video-to-video, extension) that names none: its
    own when multiples of 16, else `same_shape` at the model's pixel count; a model that knows one size only
    (`trained_sizes`) keeps its own, the video stretched to it."""
    if width % 16 == 0 and height % 16 == 0:
        return width, height
    model_height, model_width, _, _ = defaults.fill_size(None, None, None, None)
    if defaults.trained_sizes:
        return model_width, model_height
    return same_shape(width, height, model_width * model_height)


def size_from_video(request: GenerateRequest) -> GenerateRequest:
    """Video-to-video: the input video readable and long enough; the frame count it gives (cut to 4k + 1), its
    size (`video_size`) and its frame rate (rounded) where the request leaves them to the model; the default
    strength."""
    from .pipelines.export import check_video_file

    path = request.video
    name = f"video {str(path)!r}"
    info = check_video_file(path, name)
    if info["frames"] < 1:
        raise ValueError(f"{name} has no frames")
    changes: dict[str, Any] = {}
    if request.num_frames is None:
        changes["num_frames"] = (info["frames"] - 1) // 4 * 4 + 1
    elif request.num_frames > info["frames"]:
        raise ValueError(f"num_frames {request.num_frames} is more than {name} has ({info['frames']} frames)")
    if request.height is None and request.width is None:
        changes["width"], changes["height"] = video_size(
            info["width"], info["height"], model_defaults(request.model)
        )
    if request.strength is None:
        changes["strength"] = VIDEO_TO_VIDEO_STRENGTH
    if request.fps is None:  # its frames are played at the pace they were filmed at
        changes["fps"] = min(max(round(info["fps"]), 1), MAX_FPS)
    return replace(request, **changes)
