"""Write procedural clips to disk: `clip-XXXX.mp4` + same-named `.txt` caption + `.json` labels."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .scenes import VARIED, SceneRanges, caption, render, scene_at


def write_clip(path: Path, video, fps: int) -> None:
    """H.264 (crf 10) via PyAV, written to a temporary name and renamed."""
    from ..training.synthetic import write_video

    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    write_video(tmp, video, fps)
    os.replace(tmp, path)


def write_clips(
    folder: str | Path,
    count: int,
    frames: int = 33,
    height: int = 64,
    width: int = 64,
    fps: int = 16,
    seed: int = 0,
    ranges: SceneRanges = VARIED,
) -> list[Path]:
    """Write scenes 0..count-1 of `seed` (drawn with `ranges`) into `folder` (existing clips are kept); returns the
    video paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        scene = scene_at(seed, i, ranges)
        path = folder / f"clip-{i:05d}.mp4"
        if not path.exists():
            write_clip(path, render(scene, frames, height, width), fps)
            path.with_suffix(".txt").write_text(caption(scene, template=i))
            path.with_suffix(".json").write_text(json.dumps(scene.labels()))
        paths.append(path)
    return paths
