"""The size a request's media give it where it names none (an image-to-video's image, a video-to-video's or an
extension's clip: their shape kept at the model's pixel count), and the input video of video-to-video: readable,
long enough, and the frame count, size and frame rate it gives a request.

Torch-free (the service's API process checks uploads with it before a job is queued); the file is decoded with PyAV
through `pipelines.export`.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from .defaults import FPS_RANGE, GenerationDefaults, model_defaults, mp4_rate
from .options import VIDEO_TO_VIDEO_STRENGTH, GenerateRequest


def same_shape(width: int, height: int, area: int) -> tuple[int, int]:
    """(width, height) in multiples of 16 with about `area` pixels and the aspect ratio of width x height: a video
    whose own size the model cannot take (not multiples of 16), kept in shape rather than stretched to the model's
    default (a phone's 1080x1920 clip is portrait at the model's size, not squeezed into landscape)."""
    h = math.sqrt(area * height / width)
    return max(16, round(h * width / height / 16) * 16), max(16, round(h / 16) * 16)


def fit_within(width: int, height: int, max_width: int, max_height: int) -> tuple[int, int]:
    """(width, height) scaled down, shape kept, until both sides fit their limits, in multiples of 16 (a service's
    limits on a size the media chose); unchanged when they fit already."""
    scale = min(1.0, max_width / width, max_height / height)
    if scale == 1.0:
        return width, height
    return max(16, int(width * scale) // 16 * 16), max(16, int(height * scale) // 16 * 16)


ASPECT_TOLERANCE = 0.05  # a shape this close to the model's size takes that size (16:9 inputs keep 1280x736)
MAX_MEDIA_ASPECT = 4.0  # the longest side over the shortest that media may give a size (32:9 is 3.6)


def check_media_aspect(width: int, height: int) -> None:
    """Refuse media too long and thin to choose a size from (a 10000x100 panorama would ask for 9728x96): the
    request must name the size (then the media are resized to it)."""
    ratio = max(width, height) / min(width, height)
    if ratio > MAX_MEDIA_ASPECT:
        raise ValueError(
            f"media of {width}x{height} (aspect {ratio:.1f}:1) cannot choose the video's size: sizes are taken "
            f"from media up to {MAX_MEDIA_ASPECT:g}:1; name the size (width and height)"
        )


def fitted_size(width: int, height: int, defaults: GenerationDefaults) -> tuple[int, int]:
    """(width, height) for a request that names none, given media of width x height (an image, or a video the model
    cannot take as it is): the model's size where the media's aspect ratio is within `ASPECT_TOLERANCE` of it or
    where the model knows that size only (`trained_sizes`), else `same_shape` at the model's pixel count, so a
    portrait photo or clip stays portrait (media past `MAX_MEDIA_ASPECT` are refused)."""
    model_height, model_width, _, _ = defaults.fill_size(None, None, None, None)
    close = abs(math.log((width / height) / (model_width / model_height))) <= math.log1p(ASPECT_TOLERANCE)
    if defaults.trained_sizes or close:
        return model_width, model_height
    check_media_aspect(width, height)
    return same_shape(width, height, model_width * model_height)


def video_size(width: int, height: int, defaults: GenerationDefaults) -> tuple[int, int]:
    """(width, height) a video of width x height gives a request (video-to-video, extension) that names none: its
    own where the model can take it (multiples of 16 within `MAX_MEDIA_ASPECT`; for a model that lists
    `trained_sizes`, one of them), else `fitted_size`."""
    if defaults.trained_sizes:
        return (width, height) if defaults.knows_size(height, width) else fitted_size(width, height, defaults)
    if width % 16 == 0 and height % 16 == 0:
        check_media_aspect(width, height)
        return width, height
    return fitted_size(width, height, defaults)


def video_frames(count: int, defaults: GenerationDefaults) -> int:
    """The frame count a video of `count` frames gives a request that names none: its start, cut to 4k + 1 and to
    the model's own length at most (a 30 s clip is not 717 frames for a model of 121)."""
    own = defaults.resolve(num_frames=None)["num_frames"]
    return min((count - 1) // 4 * 4 + 1, own)


def clip_rate(clip_fps: float, name: str, fps: float | None = None, other: str | None = None) -> float:
    """The frame rate a video made from a clip (video-to-video's output, an extension) is written at: `fps` when
    given, else the clip's own, so that its motion plays at the pace it was filmed at. A ValueError naming the clip
    (`name`, e.g. "clip 'in.mp4'"), its rate and `FPS_RANGE` when that is outside the range (a 1000 fps clip would be
    played 4x slower at 240 fps, and 60 s of it would be 60000 frames); `other`: how to give another rate, if any."""
    if fps is not None:
        return FPS_RANGE.check("fps", fps)
    if not FPS_RANGE.allows(clip_fps):
        raise ValueError(
            f"{name} is at {clip_fps:g} fps, the rate a video made from it is written at, which must be "
            f"{FPS_RANGE}: re-encode it at a lower rate{f' or {other}' if other else ''}"
        )
    return clip_fps


def size_from_image(request: GenerateRequest, width: int, height: int) -> GenerateRequest:
    """Image-to-video (first frame, else last frame, else the first keyframe, of width x height as shown): the size
    `fitted_size` gives where the request names none."""
    if request.width is not None or request.height is not None:
        return request
    fitted = fitted_size(width, height, model_defaults(request.model))
    return replace(request, width=fitted[0], height=fitted[1])


def size_from_video(request: GenerateRequest) -> GenerateRequest:
    """Video-to-video: the input video readable and long enough; the frame count (`video_frames`), size
    (`video_size`) and frame rate (rounded) it gives where the request leaves them to the model, as the pipelines
    take them; the default strength."""
    from .pipelines.export import check_video_file

    path = request.video
    name = f"video {str(path)!r}"
    info = check_video_file(path, name)
    if info["frames"] < 1:
        raise ValueError(f"{name} has no frames")
    changes: dict[str, Any] = {}
    if request.num_frames is None:
        changes["num_frames"] = video_frames(info["frames"], model_defaults(request.model))
    elif request.num_frames > info["frames"]:
        raise ValueError(f"num_frames {request.num_frames} is more than {name} has ({info['frames']} frames)")
    if request.height is None and request.width is None:
        changes["width"], changes["height"] = video_size(
            info["width"], info["height"], model_defaults(request.model)
        )
    if request.strength is None:
        changes["strength"] = VIDEO_TO_VIDEO_STRENGTH
    if request.fps is None:  # its frames are played at the pace they were filmed at
        changes["fps"] = mp4_rate(
            clip_rate(info["fps"], name, other="give the output's rate (--fps, the service's fps field)")
        )
    return replace(request, **changes)
