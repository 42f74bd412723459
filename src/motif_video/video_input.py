"""The input video of video-to-video: readable, long enough, and the frame count and size it gives a request.

Torch-free (the service's API process checks uploads with it before a job is queued); the file is decoded with PyAV
through `pipelines.export`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from .options import MAX_FPS, VIDEO_TO_VIDEO_STRENGTH, GenerateRequest


def size_from_video(request: GenerateRequest) -> GenerateRequest:
    """Video-to-video: the input video readable and long enough; the frame count it gives (cut to 4k + 1), its
    size (when a multiple of 16) and its frame rate (rounded) where the request leaves them to the model; the
    default strength."""
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
    if (
        request.height is None
        and request.width is None
        and info["width"] % 16 == 0
        and info["height"] % 16 == 0
    ):
        changes.update(height=info["height"], width=info["width"])
    if request.strength is None:
        changes["strength"] = VIDEO_TO_VIDEO_STRENGTH
    if request.fps is None:  # its frames are played at the pace they were filmed at
        changes["fps"] = min(max(round(info["fps"]), 1), MAX_FPS)
    return replace(request, **changes)
