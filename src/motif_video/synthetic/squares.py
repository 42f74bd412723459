"""The tiny recipe's clips (`data.generate_clips`): a coloured square moving over a plain background, captioned.

Written as real .mp4 files (PyAV, H.264) and same-named .txt captions, so they go through the same decoding path
as user data. Captions use only words the tiny tokenizer knows.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from .video import write_video

COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 200, 60),
    "blue": (40, 70, 220),
    "yellow": (230, 220, 40),
    "white": (240, 240, 240),
    "black": (15, 15, 15),
    "purple": (140, 50, 190),
    "orange": (240, 140, 30),
}
DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}


def moving_square(
    frames: int, height: int, width: int, colour: str, background: str, direction: str, size: int
) -> np.ndarray:
    """uint8 [F, H, W, 3]: a `size`-pixel square crossing the frame in `direction`."""
    video = np.empty((frames, height, width, 3), dtype=np.uint8)
    video[:] = COLOURS[background]
    dx, dy = DIRECTIONS[direction]
    for i in range(frames):
        progress = i / max(frames - 1, 1)
        cx = width / 2 + dx * (progress - 0.5) * (width - size)
        cy = height / 2 + dy * (progress - 0.5) * (height - size)
        top, left = int(cy - size / 2), int(cx - size / 2)
        video[i, max(top, 0) : top + size, max(left, 0) : left + size] = COLOURS[colour]
    return video


def write_moving_squares(
    folder: str | Path,
    count: int,
    frames: int = 9,
    height: int = 64,
    width: int = 64,
    fps: int = 24,
    seed: int = 0,
) -> list[Path]:
    """Write `count` clips `clip-XXXX.mp4` + `.txt` into `folder`; returns the video paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    paths = []
    for i in range(count):
        colour, background = rng.sample(sorted(COLOURS), 2)
        direction = rng.choice(sorted(DIRECTIONS))
        size = max(4, min(height, width) // 4)
        path = folder / f"clip-{i:04d}.mp4"
        write_video(path, moving_square(frames, height, width, colour, background, direction, size), fps)
        path.with_suffix(".txt").write_text(
            f"a {colour} square moving {direction} on a {background} background"
        )
        paths.append(path)
    return paths
