"""Writing videos: MP4 (H.264, yuv420p) through PyAV, into a temporary file renamed on success; byte-for-byte
reproducible, with the generation settings stored in the file. Reading media as a player or viewer shows them:
video frames turned by their display rotation, images by their EXIF orientation."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..defaults import FPS as DEFAULT_FPS


def to_uint8_frames(frames) -> np.ndarray:
    """Frames as [F, H, W, 3] uint8 from a list of PIL images, a float array in [0, 1] or a uint8 array. Float frames
    holding NaN or Inf are a ValueError: cast, they would make a black video that looks like a finished one."""
    if isinstance(frames, Sequence) and frames and hasattr(frames[0], "convert"):
        return np.stack([np.asarray(f.convert("RGB")) for f in frames])
    arr = np.asarray(frames)
    if arr.dtype == np.uint8:
        return arr
    _check_finite(arr)
    return (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _check_finite(frames: np.ndarray) -> None:
    if frames.dtype.kind != "f" or np.isfinite(frames).all():
        return
    per_frame = np.isfinite(frames).reshape(len(frames), -1).all(axis=1) if frames.ndim else np.array([False])
    bad = np.flatnonzero(~per_frame)
    raise ValueError(
        f"the model produced non-finite values (NaN or Inf) in {len(bad)} of {len(per_frame)} frames (first: frame "
        f"{bad[0]}); no video was written. A LoRA with such values, float16 overflowing, or a diverged model are "
        "the usual causes"
    )


# x264 with a fixed thread count: its automatic count follows the machine's cores, and the stream (not only its
# bytes) changes with the count, so the same frames would give a different video on another machine.
ENCODER_THREADS = 1
# ... and without its lookahead, which runs in a thread of its own even then: with it, the same frames gave another
# stream in about one process in three on a busy machine (pixels up to 27 levels apart from frame 3 on; a served
# video differed from `generate`'s, a replay from its original). Without it (no macroblock tree either) crf 18 keeps
# a little more detail in a larger file (64x64x33: mean error 2.07 against 2.44 levels, 13.5 against 9.7 kB).
X264_PARAMS = "rc-lookahead=0:sync-lookahead=0:lookahead-threads=1"


METADATA_KEY = "comment"  # the MP4 tag (udta ©cmt) holding `metadata` as JSON


def add_h264_stream(
    container, rate, width: int, height: int, crf: int, metadata: dict[str, Any] | None = None
):
    """The H.264 stream every MP4 of ours is written with, added to an open PyAV output `container` (yuv420p,
    `ENCODER_THREADS`, `X264_PARAMS`: the same frames give the same bytes), with `metadata` stored as JSON in the
    `METADATA_KEY` tag when given."""
    if metadata is not None:
        container.metadata[METADATA_KEY] = json.dumps(metadata, sort_keys=True, ensure_ascii=False)
    stream = container.add_stream("libx264", rate=rate)
    stream.width, stream.height = width, height
    stream.pix_fmt = "yuv420p"
    stream.codec_context.thread_count = ENCODER_THREADS
    stream.options = {"crf": str(crf), "threads": str(ENCODER_THREADS), "x264-params": X264_PARAMS}
    return stream


def write_mp4(
    frames,
    path: str | os.PathLike,
    fps: int = DEFAULT_FPS,
    crf: int = 18,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write frames ([F, H, W, 3]; see `to_uint8_frames`) as an MP4; the file appears only once it is complete.

    The same frames and `metadata` give the same bytes on every run (one encoder thread, no lookahead). `metadata`
    (JSON-able) is stored as the container's `comment` tag; `read_mp4_metadata` reads it back. The file's mode
    follows the umask, as for any new file.
    """
    import av

    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    video = to_uint8_frames(frames)
    if video.ndim != 4 or video.shape[-1] != 3 or len(video) == 0:
        raise ValueError(f"frames must be [F, H, W, 3] with F >= 1, got shape {video.shape}")
    path = Path(path)
    tmp = _new_part_file(path)
    try:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = add_h264_stream(container, fps, video.shape[2], video.shape[1], crf, metadata)
            for frame in video:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _new_part_file(path: Path) -> Path:
    """Create `.<stem>.<random>.mp4.part` beside `path` with mode 0o666 less the umask (mkstemp would give 0o600)."""
    folder = path.parent if str(path.parent) else Path(".")
    for _ in range(100):
        tmp = folder / f".{path.stem}.{secrets.token_hex(4)}.mp4.part"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"could not create a temporary file beside {path}")


def read_mp4_metadata(path: str | os.PathLike) -> dict[str, Any] | None:
    """The `metadata` dict `write_mp4` stored in a video, or None when it has none (another tool's video)."""
    import av

    try:
        with av.open(str(path)) as container:
            comment = container.metadata.get(METADATA_KEY)
    except (OSError, av.FFmpegError) as exc:
        raise ValueError(f"{str(path)!r} is not a readable video ({exc})") from exc
    if not comment:
        return None
    try:
        data = json.loads(comment)
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def read_mp4_info(path: str | os.PathLike) -> dict:
    """Frame count, width, height and fps of a video file (decoded, so the count is exact)."""
    import av

    with av.open(str(path)) as container:
        return _container_info(container)


def _container_info(container) -> dict:
    """The size as a player shows it: a clip stored landscape with a display rotation of 90 degrees is portrait."""
    stream = container.streams.video[0]
    frames = container.decode(stream)
    first = next(frames, None)
    count = (first is not None) + sum(1 for _ in frames)
    if first is None:
        width, height = stream.codec_context.width, stream.codec_context.height
    else:
        width, height = shown_frame_size(first)
    return {"frames": count, "width": width, "height": height, "fps": float(stream.average_rate)}


def _turns(frame) -> int:
    """Quarter turns counterclockwise that show a decoded frame upright (its display matrix; phones store portrait
    clips landscape with a rotation of 90 or -90)."""
    return round(frame.rotation / 90) % 4


def shown_frame_size(frame) -> tuple[int, int]:
    """(width, height) of a decoded PyAV frame as a player shows it (`upright_frame`'s), without converting it."""
    return (frame.height, frame.width) if _turns(frame) % 2 else (frame.width, frame.height)


def upright_frame(frame) -> np.ndarray:
    """A decoded PyAV frame as a player shows it: uint8 [H, W, 3] RGB, turned by the stream's display rotation.

    The conversion runs on the calling thread (`threads=1`): PyAV's default starts swscale slice threads that
    outlive the call, and a process forked from one holding them (a training loader's worker) can wait for them
    forever (seen: a loader worker hung in `avpriv_slicethread_execute`)."""
    array = frame.to_ndarray(format="rgb24", threads=1)
    turns = _turns(frame)
    return np.ascontiguousarray(np.rot90(array, turns)) if turns else array


def shown_size(image_file) -> tuple[int, int]:
    """(width, height) of an image file (a path or a binary file object) as `read_image` returns it, from its header
    and EXIF orientation (orientations 5-8 turn it a quarter), without decoding its pixels."""
    import PIL.Image

    with PIL.Image.open(image_file) as image:
        width, height = image.size
        turned = image.getexif().get(0x0112) in (5, 6, 7, 8)
    return (height, width) if turned else (width, height)


def check_decodes(image_file) -> None:
    """Raise what PIL raises for an image file (a path or a binary file object) whose structure or pixels do not
    decode: `verify` reads the structure only, and a corrupt pixel stream passes it, so the pixels are loaded too."""
    import PIL.Image

    with PIL.Image.open(image_file) as image:
        image.verify()
    if hasattr(image_file, "seek"):
        image_file.seek(0)
    with PIL.Image.open(image_file) as image:
        image.load()


def read_image(path: str | os.PathLike):
    """An image file as a viewer shows it: RGB, turned by its EXIF orientation (a phone's photo is stored sideways
    with an orientation tag), as diffusers' `load_image` reads one."""
    import PIL.Image
    import PIL.ImageOps

    with PIL.Image.open(path) as image:
        return PIL.ImageOps.exif_transpose(image).convert("RGB")


def check_video_file(path: str | os.PathLike, name: str) -> dict:
    """`read_mp4_info` of a video the user gave (`name` says which, e.g. "video 'in.mp4'"); a ValueError naming it
    when it is missing, unreadable or a still image rather than a video."""
    import av

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{name} does not exist or is not a file")
    try:
        with av.open(str(path)) as container:
            kinds = None if container.streams.video else _stream_kinds(container)
            kind, info = container.format.name, kinds or _container_info(container)
    except av.error.FFmpegError as exc:  # its str() leads with an errno no user can act on
        raise ValueError(f"{name} is not a readable video ({exc.strerror or exc})") from exc
    except Exception as exc:
        raise ValueError(f"{name} is not a readable video ({type(exc).__name__}: {exc})") from exc
    if kinds is not None:  # an audio file, say
        raise ValueError(f"{name} has no video stream (its streams: {kinds})")
    if kind.endswith("_pipe") or kind.startswith("image2"):
        raise ValueError(f"{name} is an image ({kind}), not a video")
    return info


def _stream_kinds(container) -> str:
    """The kinds of a container's streams, e.g. "audio" or "none"."""
    return ", ".join(stream.type for stream in container.streams) or "none"


def iter_mp4_frames(path: str | os.PathLike) -> Iterator[np.ndarray]:
    """A video's frames one at a time, uint8 [H, W, 3] RGB, upright (`upright_frame`); memory does not grow with the
    video's length."""
    import av

    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            yield upright_frame(frame)


def resized_frames(frames: Iterable[np.ndarray], width: int, height: int) -> Iterator[np.ndarray]:
    """Each uint8 [H, W, 3] frame stretched to width x height (Lanczos), one at a time, as the pipelines stretch a
    conditioning clip; frames already that size pass unchanged."""
    from PIL import Image

    for frame in frames:
        if frame.shape[:2] == (height, width):
            yield frame
        else:
            yield np.asarray(Image.fromarray(frame).resize((width, height), Image.LANCZOS))


def read_mp4_frames(path: str | os.PathLike, limit: int | None = None) -> np.ndarray:
    """Every frame of a video (its first `limit` only, the rest not decoded) as uint8 [F, H, W, 3] RGB."""
    import itertools

    return np.stack(list(itertools.islice(iter_mp4_frames(path), limit)))


def frame_strip(frames, every: int = 4, scale: int = 3, gap: int = 2) -> np.ndarray:
    """Frames 0, every, 2 * every, ... side by side (white gaps), each pixel `scale` x `scale`: uint8 [H, W, 3]."""
    if every < 1 or scale < 1 or gap < 0:
        raise ValueError(f"every and scale must be >= 1 and gap >= 0, got {every}, {scale}, {gap}")
    video = to_uint8_frames(frames)
    picked = [np.pad(f, ((gap, gap), (gap, gap), (0, 0)), constant_values=255) for f in video[::every]]
    return np.concatenate(picked, axis=1).repeat(scale, axis=0).repeat(scale, axis=1)


def write_frame_strip(
    video: str | os.PathLike, png: str | os.PathLike, every: int = 4, scale: int = 3
) -> Path:
    """A PNG of `frame_strip` of a video file: what a clip looks like, frame by frame, in one image."""
    import PIL.Image

    png = Path(png)
    PIL.Image.fromarray(frame_strip(read_mp4_frames(video), every, scale)).save(png)
    return png
