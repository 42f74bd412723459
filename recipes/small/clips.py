"""The small model's training clips: scenes of `motif_video.synthetic` written as `clip-XXXXX.mp4` + same-named
`.txt` caption + `.json` labels, with the size and place ranges of each stage."""

from __future__ import annotations

import json
import random
from collections.abc import Collection
from pathlib import Path

from motif_video.synthetic.scenes import (
    VARIED,
    SceneRanges,
    advance,
    caption,
    render,
    scene_at,
    tinted_colours,
    wrapped,
)
from motif_video.synthetic.video import write_video

# the same labels as `VARIED` with less size and place variation, so that the mean clip of a caption keeps its
# shape's corners (the last transformer stage)
NARROW = SceneRanges(radius=(0.20, 0.22), grow_radius=(0.14, 0.15), jitter=0.02)
# how far along its path a clip of the path-clip experiment starts (BENCHMARKS.md, "Why the window's first generated
# frames jump"; not a build stage), in clip lengths: a 4x extension's windows start at 0.75, 1.5 and 2.25 clip
# lengths; from about 1.0 on the object leaves the frame within the clip
PATH_ADVANCE = (0.0, 1.5)


def write_clips(
    folder: str | Path,
    count: int,
    frames: int = 33,
    height: int = 64,
    width: int = 64,
    fps: int = 16,
    seed: int = 0,
    ranges: SceneRanges = VARIED,
    exclude: Collection[tuple[str, str, str]] = (),
    advance_range: tuple[float, float] = (0.0, 0.0),
    advance_growing: bool = False,
    wrap: bool = False,
    partial_captions: float = 0.0,
    tint: bool = False,
) -> list[Path]:
    """Write scenes 0..count-1 of `seed` (drawn with `ranges`, none of the (colour, shape, background) triples in
    `exclude`), each moved along its path by a number of clip lengths drawn uniformly from `advance_range`
    (`synthetic.scenes.advance`; the draw is a function of seed and index; growing scenes too with
    `advance_growing`, else they are kept as drawn), into `folder` (existing clips are kept); returns the video
    paths. With `wrap`, each moving scene is put on a ring (`synthetic.scenes.wrapped`) at
    a place along its motion drawn uniformly from [0, 1), so that where its object is cannot be told from the
    caption; growing scenes are kept as drawn. A share `partial_captions` of the clips (drawn per clip from seed and
    index) get a caption without their colour word (half of them) or their background phrase (the other half).
    With `tint`, each clip's object and background colours are moved a little off their palette entries
    (`synthetic.scenes.tinted_colours`, drawn per clip from seed and index); the captions keep the names."""
    low, high = advance_range
    if not 0 <= low <= high:
        raise ValueError(f"advance_range {advance_range} must satisfy 0 <= low <= high")
    if not 0 <= partial_captions <= 1:
        raise ValueError(f"partial_captions must be in [0, 1], got {partial_captions}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        scene = scene_at(seed, i, ranges, exclude)
        if high > 0 and (advance_growing or scene.motion != "grows"):
            scene = advance(scene, random.Random(f"advance-{seed}-{i}").uniform(low, high))
        if wrap:
            scene = wrapped(scene, random.Random(f"wrap-{seed}-{i}").random())
        path = folder / f"clip-{i:05d}.mp4"
        if not path.exists():
            colours = tinted_colours(scene, random.Random(f"tint-{seed}-{i}")) if tint else None
            omit = _omitted(random.Random(f"partial-{seed}-{i}").random(), partial_captions)
            _write_clip(path, scene, render(scene, frames, height, width, colours), fps, i, omit)
        paths.append(path)
    return paths


def _write_clip(path: Path, scene, video, fps: int, template: int, omit: str | None = None) -> None:
    """The clip's MP4, its caption (`.txt`, caption template `template`) and its labels (`.json`)."""
    write_video(path, video, fps)
    path.with_suffix(".txt").write_text(caption(scene, template=template, omit=omit))
    path.with_suffix(".json").write_text(json.dumps(scene.labels()))


def write_grown_clips(
    folder: str | Path,
    count: int,
    seed: int,
    ranges: SceneRanges = VARIED,
    exclude: Collection[tuple[str, str, str]] = (),
    advance_range: tuple[float, float] = (0.25, 3.0),
    first_index: int = 10000,
    frames: int = 33,
    height: int = 64,
    width: int = 64,
    fps: int = 16,
) -> list[Path]:
    """Write `count` growing scenes seen later in their growth, as a video extension's later windows see them: the
    growing ones among scenes 0, 1, ... of `seed` (drawn with `ranges`, none in `exclude`), each advanced by a number
    of clip lengths drawn uniformly from `advance_range` (`synthetic.scenes.advance`: larger at the first frame, and
    past about one clip length reaching beyond the frame), named from `first_index` on so that they can share a
    folder with `write_clips`' clips; returns the video paths."""
    low, high = advance_range
    if not 0 <= low <= high:
        raise ValueError(f"advance_range {advance_range} must satisfy 0 <= low <= high")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    index = 0
    while len(paths) < count:
        scene = scene_at(seed, index, ranges, exclude)
        if scene.motion == "grows":
            scene = advance(scene, random.Random(f"grown-{seed}-{index}").uniform(low, high))
            path = folder / f"clip-{first_index + len(paths):05d}.mp4"
            if not path.exists():
                _write_clip(path, scene, render(scene, frames, height, width), fps, index)
            paths.append(path)
        index += 1
    return paths


def _omitted(draw: float, share: float) -> str | None:
    """Which label a clip's caption leaves out, for a uniform `draw` in [0, 1): the colour below share / 2, the
    background below share, none above."""
    if draw >= share:
        return None
    return "colour" if draw < share / 2 else "background"
