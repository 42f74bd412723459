"""Raw training data: media lists, probing, decoding, fps resampling, bucket resize + crop.

Sources: a folder of videos / images with same-named `.txt` captions, or a manifest (`.jsonl` with one object per
line, or `.csv` with a header) holding a media path (key `path`, `video`, `image` or `media`; relative to the
manifest) and a caption (key `data.caption_field`). Images are one-frame videos. Every file is probed once when the
dataset is built; an unreadable file is skipped and counted by reason (`SkipReport`), never a crash, and so is a
file that fails later while decoding, and a media file of a folder without its `.txt` caption. A manifest row
without a caption is an error naming its line (the manifest itself is wrong, as for a row without a media path);
an empty caption ("" or an empty .txt) is a caption, for clips trained without one.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".gif")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
PATH_KEYS = ("path", "video", "image", "media")


@dataclass(frozen=True)
class MediaItem:
    path: Path
    caption: str | None  # None: a folder's media file without its .txt (skipped by `MediaDataset`)
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class MediaInfo:
    frames: int  # 1 for images
    fps: float  # 0 for images
    height: int
    width: int

    @property
    def is_image(self) -> bool:
        return self.frames == 1


@dataclass
class SkipReport:
    """Files left out, by reason, each file once; `str()` is the line the trainer logs."""

    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    reasons: dict[str, str] = field(
        default_factory=dict
    )  # file -> reason: each file counts once (an undecodable one is met every epoch)

    def add(self, reason: str, path: Path | str) -> None:
        if str(path) in self.reasons:
            return
        self.reasons[str(path)] = reason
        self.counts[reason] += 1
        self.examples.setdefault(reason, [])
        if len(self.examples[reason]) < 3:
            self.examples[reason].append(str(path))

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def __str__(self) -> str:
        if not self.total:
            return "no files skipped"
        # a report read back from a cache's index has counts only
        parts = [
            f"{n} {reason}"
            + (f" (e.g. {', '.join(self.examples[reason])})" if self.examples.get(reason) else "")
            for reason, n in self.counts.items()
        ]
        return f"skipped {self.total} file(s): " + "; ".join(parts)


# ----------------------------------------------------------------------------------------------------------------
# listing


def list_media(source: str | Path, caption_field: str = "caption") -> list[MediaItem]:
    """Media items of a folder (captions from same-named .txt files) or a .jsonl / .csv manifest."""
    source = Path(source)
    if source.is_dir():
        return _list_folder(source)
    if not source.is_file():
        raise ValueError(f"data path {str(source)!r} is neither a folder nor a manifest file")
    if source.suffix not in (".jsonl", ".csv"):
        raise ValueError(f"manifest {str(source)!r} must end in .jsonl or .csv")
    # utf-8-sig: a byte-order mark (Excel writes one) is not part of the first key
    with source.open(encoding="utf-8-sig", newline="") as f:
        try:
            rows = _jsonl_rows(f, source) if source.suffix == ".jsonl" else _csv_rows(f, source)
        except UnicodeDecodeError as error:
            raise ValueError(f"{source}: not UTF-8 text ({error}); save the manifest as UTF-8") from None
    return [_manifest_item(row, source, caption_field, line) for line, row in rows]


def _jsonl_rows(lines: Any, manifest: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, row) of each non-blank line: a JSON object, or a ValueError naming the file and the line."""
    rows = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{manifest} line {n}: not JSON ({error.msg} at column {error.colno})") from None
        if not isinstance(row, dict):
            raise ValueError(
                f"{manifest} line {n}: a row must be a JSON object such as "
                f'{{"path": "clip.mp4", "caption": "..."}}, got {type(row).__name__} {line.strip()[:80]}'
            )
        rows.append((n, row))
    return rows


def _csv_rows(lines: Any, manifest: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, row) of each CSV record after the header; a ValueError naming the file and the line for a
    record with more fields than the header, or one the csv module cannot read."""
    reader = csv.DictReader(lines)
    rows = []
    try:
        for row in reader:
            if None in row:  # DictReader keeps the fields past the header's under None
                raise ValueError(
                    f"{manifest} line {reader.line_num}: {len(reader.fieldnames or []) + len(row[None])} fields, "
                    f"and the header names {len(reader.fieldnames or [])} ({reader.fieldnames}); quote a value "
                    'that holds a comma ("a, b")'
                )
            rows.append((reader.line_num, row))
    except csv.Error as error:
        raise ValueError(f"{manifest} line {reader.line_num}: {error}") from None
    return rows


def _list_folder(folder: Path) -> list[MediaItem]:
    items = []
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in VIDEO_EXTENSIONS + IMAGE_EXTENSIONS:
            txt = path.with_suffix(".txt")
            items.append(MediaItem(path, txt.read_text().strip() if txt.exists() else None))
    return items


def _manifest_item(row: dict[str, Any], manifest: Path, caption_field: str, line: int) -> MediaItem:
    key = next((k for k in PATH_KEYS if row.get(k)), None)
    if key is None:
        raise ValueError(f"{manifest} line {line} has none of the media path keys {list(PATH_KEYS)}: {row}")
    if row.get(caption_field) is None:
        raise ValueError(
            f"{manifest} line {line} has no caption under {caption_field!r} (its keys: {sorted(row)}): name the "
            'caption\'s key with data.caption_field (`motif-video cache --caption-field`), or give "" for a clip '
            "without one"
        )
    if not isinstance(row[key], str):
        raise ValueError(f"{manifest} line {line}: {key!r} must be a path (a string), got {row[key]!r}")
    path = Path(row[key])
    extra = {k: v for k, v in row.items() if k not in (key, caption_field)}
    return MediaItem(path if path.is_absolute() else manifest.parent / path, str(row[caption_field]), extra)


# ----------------------------------------------------------------------------------------------------------------
# probing and decoding


def probe(path: Path) -> MediaInfo:
    """Frame count, frame rate and size (as a player or viewer shows it); raises on an unreadable file."""
    from ..pipelines.export import check_decodes, shown_frame_size, shown_size

    if path.suffix.lower() in IMAGE_EXTENSIONS:
        check_decodes(path)
        width, height = shown_size(path)  # as a viewer shows it (EXIF orientation)
        return MediaInfo(1, 0.0, height, width)
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 0)
        first = next(container.decode(stream), None)
        if first is None:
            raise ValueError("no decodable video frames")
        width, height = shown_frame_size(first)  # as a player shows it (display rotation)
        frames = stream.frames or 1 + sum(1 for _ in container.decode(stream))
        if frames <= 0 or fps <= 0 or not height:
            raise ValueError("no decodable video frames")
        return MediaInfo(frames, fps, height, width)


def source_frame_indices(info: MediaInfo, num_frames: int, fps: float, offset: float = 0.0) -> list[int]:
    """Source frames for `num_frames` frames at `fps`: nearest frame in time, window placed at `offset` in [0, 1]."""
    if info.is_image:
        return [0] * num_frames
    step = info.fps / fps  # source frames per target frame
    span = (num_frames - 1) * step
    start = offset * max(0.0, info.frames - 1 - span)
    return [min(info.frames - 1, round(start + i * step)) for i in range(num_frames)]


def frames_available(info: MediaInfo, fps: float) -> int:
    """How many frames at `fps` the file holds."""
    return 1 if info.is_image else math.floor((info.frames - 1) * fps / info.fps + 1e-6) + 1


def decode_frames(path: Path, indices: list[int]) -> torch.Tensor:
    """uint8 frames [F, H, W, 3] at the given source indices (repeats allowed)."""
    import numpy as np

    from ..pipelines.export import read_image, upright_frame

    if path.suffix.lower() in IMAGE_EXTENSIONS:
        array = np.asarray(read_image(path))
        return torch.from_numpy(array.copy())[None].expand(len(indices), -1, -1, -1)
    import av

    wanted, frames = set(indices), {}
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i in wanted:
                frames[i] = upright_frame(frame)
            if i >= max(indices):
                break
    missing = wanted - set(frames)
    if missing:
        raise ValueError(f"frames {sorted(missing)[:3]} could not be decoded")
    return torch.from_numpy(np.stack([frames[i] for i in indices]))


def resize_crop(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """uint8 [F, H, W, 3] -> float [3, F, height, width] in [-1, 1]: resize to cover, then centre crop."""
    x = frames.permute(0, 3, 1, 2).float() / 127.5 - 1.0  # [F, 3, H, W]
    scale = max(height / x.shape[2], width / x.shape[3])
    size = (max(height, round(x.shape[2] * scale)), max(width, round(x.shape[3] * scale)))
    if size != tuple(x.shape[2:]):
        x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    top, left = (size[0] - height) // 2, (size[1] - width) // 2
    x = x[:, :, top : top + height, left : left + width].clamp(-1, 1)
    return x.permute(1, 0, 2, 3).contiguous()


# ----------------------------------------------------------------------------------------------------------------
# buckets and the dataset

Bucket = tuple[int, int, int]  # frames, height, width (pixels)


def check_buckets(buckets: list[list[int]] | list[Bucket]) -> list[Bucket]:
    out = []
    for bucket in buckets:
        if len(bucket) != 3:
            raise ValueError(f"bucket {bucket} must be [frames, height, width]")
        frames, height, width = (int(v) for v in bucket)
        if frames < 1 or (frames - 1) % 4:
            raise ValueError(f"bucket frames must be 4k+1 (1, 5, 9, ..., 121), got {frames}")
        if height % 16 or width % 16 or height <= 0 or width <= 0:
            raise ValueError(
                f"bucket height and width must be positive multiples of 16, got {height}x{width}"
            )
        out.append((frames, height, width))
    if not out:
        raise ValueError("data.buckets must list at least one [frames, height, width]")
    return out


def assign_bucket(info: MediaInfo, buckets: list[Bucket], fps: float) -> Bucket | None:
    """The longest bucket the clip fills at `fps`, then the nearest aspect ratio; images go to 1-frame buckets."""
    available = frames_available(info, fps)
    fitting = [b for b in buckets if b[0] <= available and (b[0] == 1) == info.is_image]
    if not fitting:
        return None
    longest = max(b[0] for b in fitting)
    aspect = math.log(info.width / info.height)
    return min((b for b in fitting if b[0] == longest), key=lambda b: abs(math.log(b[2] / b[1]) - aspect))


class MediaDataset(torch.utils.data.Dataset):
    """Probed, bucketed media; item i -> {"pixels" [3, F, H, W] in [-1, 1], "caption", "index"} or None if broken."""

    def __init__(self, items: list[MediaItem], buckets: list[Bucket], fps: float) -> None:
        self.fps = fps
        self.bucket_choices = list(buckets)  # the buckets asked for (`buckets` below: each item's)
        self.skipped = SkipReport()
        self.items: list[MediaItem] = []
        self.infos: list[MediaInfo] = []
        self.buckets: list[Bucket] = []
        for item in items:
            try:
                info = probe(item.path)
            except Exception as exc:  # any decoder error: skip and count
                logger.debug("cannot read %s: %s", item.path, exc)
                self.skipped.add("unreadable" if item.path.exists() else "missing", item.path)
                continue
            if item.caption is None:
                self.skipped.add("without a caption (.txt)", item.path)
                continue
            bucket = assign_bucket(info, buckets, fps)
            if bucket is None:
                self.skipped.add("too short for every bucket", item.path)
                continue
            self.items.append(item)
            self.infos.append(info)
            self.buckets.append(bucket)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item, info, (frames, height, width) = self.items[index], self.infos[index], self.buckets[index]
        try:
            raw = decode_frames(item.path, source_frame_indices(info, frames, self.fps, offset=0.5))
        except Exception as exc:  # decoded fine at probe time, broken further in: skip this sample
            logger.warning("skipping %s: %s", item.path, exc)
            self.skipped.add("undecodable", item.path)
            # carried in the batch too: a loader worker's own copy of this report never reaches the trainer's
            return {"skipped": ("undecodable", str(item.path))}
        return {"pixels": resize_crop(raw, height, width), "caption": item.caption, "index": index}


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack one bucket's samples; broken ones are dropped and listed as (reason, path) under "skipped" (a batch of
    broken samples only has no "index")."""
    out: dict[str, Any] = {"skipped": [s["skipped"] for s in samples if "skipped" in s]}
    samples = [s for s in samples if "skipped" not in s]
    if not samples:
        return out
    out.update(caption=[s["caption"] for s in samples], index=[s["index"] for s in samples])
    for key in samples[0]:
        if key not in out:
            out[key] = torch.stack([s[key] for s in samples])
    return out
