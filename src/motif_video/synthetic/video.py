"""Write a procedural clip as an H.264 MP4 (PyAV, crf 10), to a temporary name renamed when complete."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def write_video(path: str | Path, video: np.ndarray, fps: int) -> None:
    """uint8 [F, H, W, 3] -> `path`."""
    import av

    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    with av.open(str(tmp), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = video.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "10", "preset": "ultrafast"}
        for frame in video:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    os.replace(tmp, path)
