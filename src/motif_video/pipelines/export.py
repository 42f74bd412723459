"""Writing videos: MP4 (H.264, yuv420p) through PyAV, into a temporary file renamed on success."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

DEFAULT_FPS = 24


def to_uint8_frames(frames) -> np.ndarray:
    """Frames as [F, H, W, 3] uint8 from a list of PIL images, a float array in [0, 1] or a uint8 array."""
    if isinstance(frames, Sequence) and frames and hasattr(frames[0], "convert"):
        return np.stack([np.asarray(f.convert("RGB")) for f in frames])
    arr = np.asarray(frames)
    if arr.dtype == np.uint8:
        return arr
    return (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def write_mp4(frames, path: str | os.PathLike, fps: int = DEFAULT_FPS, crf: int = 18) -> Path:
    """Write frames ([F, H, W, 3]; see `to_uint8_frames`) as an MP4; the file appears only once it is complete."""
    import av

    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    video = to_uint8_frames(frames)
    if video.ndim != 4 or video.shape[-1] != 3 or len(video) == 0:
        raise ValueError(f"frames must be [F, H, W, 3] with F >= 1, got shape {video.shape}")
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".mp4.part", dir=path.parent or ".")
    os.close(fd)
    try:
        with av.open(tmp, mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.width, stream.height = video.shape[2], video.shape[1]
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": str(crf)}
            for frame in video:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_mp4_info(path: str | os.PathLike) -> dict:
    """Frame count, width, height and fps of a video file (decoded, so the count is exact)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        count = sum(1 for _ in container.decode(stream))
        return {
            "frames": count,
            "width": stream.codec_context.width,
            "height": stream.codec_context.height,
            "fps": float(stream.average_rate),
        }
