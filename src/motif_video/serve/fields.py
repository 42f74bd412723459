"""A job's request fields: the service's side of the one declaration of generate's options (`motif_video.options`).

The request fields are the options of the "video" group (size, frames, steps, guidance, shift, seed, fps, strength,
...), checked by `options.parse_request` exactly as `motif-video generate` checks its flags, with the HTTP forms of
two kinds: `prompt` is one text (a job makes one video; the option is `prompts`), and the media are multipart file
parts, never paths: `image` (first frame), `last_image`, `keyframe` (repeatable, at the frames listed in the text
field `keyframe_frames`, in the same order) and `video` (video-to-video). Options of the "output" and "run" groups
(model, device, dtype, offload, ...) are the server's, set when it starts. This module adds only the service's
limits (size, frames, steps, prompt length, upload size), the model's defaults (so a job records what it will be
made with) and a random seed when none is given.

Pure Python like `options` (media are read with PIL and PyAV): the API process imports no torch.
"""

from __future__ import annotations

import io
import math
import os
import re
import tempfile
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..condition_layout import DEFAULT_CROSSFADE, DEFAULT_OVERLAP
from ..input_media import fit_within
from ..options import (
    GENERATE_OPTIONS,
    MEDIA_FIELDS,
    OPTIONS,
    GenerateRequest,
    check_conditions,
    check_generation_request,
    parse_request,
    request_schema,
)
from ..replay import EXTEND_FIELDS as EXTENSION_OPTIONS

# The per-request options (those of the "video" group), by field name; `prompts` travels as `prompt`. The options
# naming media files (first and last image, keyframes, input video) are uploads (`UPLOADS`), not text fields.
VIDEO_OPTIONS = {o.name: o for o in GENERATE_OPTIONS if o.group == "video"}
UPLOADS = MEDIA_FIELDS  # multipart file parts: image, last_image, keyframe (repeatable), video
SINGLE_UPLOADS = tuple(u for u in UPLOADS if u != "keyframe")  # the parts that take one file
KEYFRAME_FRAMES = "keyframe_frames"  # the text field giving each keyframe upload's frame, "16,-1"
# extension (`motif-video extend`): the uploaded video continued window by window to extend_seconds in all
EXTEND_FIELDS: dict[str, tuple[type, str]] = {
    "extend_seconds": (float, "extend the uploaded video (the part 'video') to this many seconds in all, window by "
                       "window, instead of video-to-video; a prompt of several lines gives one per window"),
    "overlap": (int, f"extension: frames each window is conditioned on, 4m+1 (default {DEFAULT_OVERLAP}, or on a "
                "shorter window the largest 4m+1 that leaves the window new frames: 5 for a 9-frame window)"),
    "crossfade": (int, "extension: frames each window generates again over the video so far and fades in over "
                  f"(default {DEFAULT_CROSSFADE})"),
}  # fmt: skip
FIELDS: tuple[str, ...] = (
    *("prompt" if n == "prompts" else n for n in VIDEO_OPTIONS if n not in UPLOADS),
    KEYFRAME_FRAMES,
    *EXTEND_FIELDS,
)
API_SEED_MAX = (
    2**31 - 1
)  # tighter than generate's: what the server draws, and exact as a number in any client
MAX_IMAGE_PIXELS = 4096 * 4096


_FLAG = re.compile(r"--([a-z][a-z0-9-]*)")


def for_http(text: str) -> str:
    """A message or description written for the command line, as a client of the API reads it: a parenthesis that
    only names a flag, or names one no field stands for (`--prompt-file`), goes; any other flag becomes its field
    ("--video" -> "video")."""

    def parenthesis(match: re.Match) -> str:
        flags = _FLAG.findall(match.group(1))
        if not flags:
            return match.group(0)
        lone = match.group(1).strip() == "--" + flags[0]
        return (
            "" if lone or any(f.replace("-", "_") not in UPLOADS + FIELDS for f in flags) else match.group(0)
        )

    text = re.sub(r" \(([^()]*)\)", parenthesis, text)
    return _FLAG.sub(lambda m: m.group(1).replace("-", "_"), text)


class FieldError(ValueError):
    """A bad request field: `field` names it (None when the request as a whole is wrong); the message as the API
    says it (`for_http`)."""

    def __init__(self, field: str | None, message: str):
        super().__init__(for_http(message))
        self.field = field


@dataclass(frozen=True)
class Limits:
    """What one job may ask for; a request over a limit is refused (422) before it is queued."""

    max_width: int = 1280
    max_height: int = 1280
    max_frames: int = 121
    max_steps: int = 100
    max_prompt_chars: int = 2000
    max_upload_bytes: int = 50 * 2**20  # a job's uploads together
    max_extend_seconds: float = 60.0  # the length of an extended video
    max_queue: int = 1000


def schema(multipart: bool) -> dict[str, Any]:
    """The JSON schema of a request body: the options' own schema with the HTTP forms of the prompt and the media
    (file parts, so multipart only)."""
    props = dict(request_schema(["video"])["properties"])
    prompt = props.pop("prompts")
    props = {"prompt": {"type": "string", "minLength": 1, "description": prompt["description"]}, **props}
    media = {name: props.pop(name) for name in UPLOADS}
    if multipart:
        for name in SINGLE_UPLOADS:
            props[name] = {"type": "string", "format": "binary", "description": media[name]["description"]}
        props["keyframe"] = {
            "type": "array",
            "items": {"type": "string", "format": "binary"},
            "description": "images at chosen frames (one part each), at the frames of keyframe_frames",
        }
        props[KEYFRAME_FRAMES] = {
            "type": "string",
            "pattern": r"^-?[0-9]+(,-?[0-9]+)*$",
            "description": "the pixel frame of each keyframe part, in order, comma-separated (from 0; negative "
            "counts from the end), e.g. 16,-1",
        }
        props.update(
            extend_seconds={
                "type": "number",
                "exclusiveMinimum": 0,
                "description": EXTEND_FIELDS["extend_seconds"][1],
            },
            overlap={"type": "integer", "minimum": 1, "description": EXTEND_FIELDS["overlap"][1]},
            crossfade={"type": "integer", "minimum": 0, "description": EXTEND_FIELDS["crossfade"][1]},
        )
    props["seed"] = {**props["seed"], "maximum": API_SEED_MAX}  # this server's, tighter than generate's
    for side in ("width", "height"):
        props[side] = {**props[side], "multipleOf": 16}
    for prop in props.values():
        if "description" in prop:
            prop["description"] = for_http(prop["description"])
    return {"type": "object", "properties": props, "required": ["prompt"], "additionalProperties": False}


@dataclass(frozen=True)
class Uploads:
    """A job's media as uploaded (bytes), before any check."""

    image: bytes | None = None
    last_image: bytes | None = None
    keyframes: tuple[bytes, ...] = ()
    video: bytes | None = None

    def parts(self) -> list[tuple[str, bytes]]:
        """(role, bytes) in a fixed order: the first frame, the last, the keyframes in order, the video."""
        out = [("image", self.image), ("last_image", self.last_image)]
        out += [("keyframe", data) for data in self.keyframes]
        out.append(("video", self.video))
        return [(role, data) for role, data in out if data is not None]

    @property
    def size(self) -> int:
        return sum(len(data) for _, data in self.parts())


def from_form(fields: Mapping[str, str]) -> dict[str, Any]:
    """Form fields (text) as the JSON values their options take; the options' checks come after."""
    out: dict[str, Any] = {}
    for name, text in fields.items():
        if name == KEYFRAME_FRAMES:
            out[name] = _frames(text)
            continue
        option = VIDEO_OPTIONS.get("prompts" if name == "prompt" else name)
        kind = (
            EXTEND_FIELDS[name][0] if name in EXTEND_FIELDS else (option.type if option is not None else str)
        )
        if kind is str or kind is Path:
            out[name] = text
        elif text == "":
            out[name] = None
        elif kind is bool:
            if text.lower() not in ("true", "false", "1", "0", "on", "off"):
                raise FieldError(name, f"{name} must be true or false, got {text!r}")
            out[name] = text.lower() in ("true", "1", "on")
        else:
            try:
                out[name] = kind(text)
            except ValueError:
                what = "an integer" if kind is int else "a number"
                raise FieldError(name, f"{name} must be {what}, got {text!r}") from None
    return out


def _frames(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",")] if text.strip() else []
    except ValueError:
        raise FieldError(
            KEYFRAME_FRAMES,
            f"{KEYFRAME_FRAMES} must be frame numbers separated by commas (e.g. 16,-1), got {text!r}",
        ) from None


def _field_of(message: str) -> str | None:
    word = message.split(" ", 1)[0]
    if word in ("prompt", "prompts"):
        return "prompt"
    return word if word in OPTIONS else None


def check_image(role: str, data: bytes) -> None:
    """An uploaded image is readable and of sane size (checked before any job is queued)."""
    import PIL.Image

    from ..pipelines.export import check_decodes

    try:
        with PIL.Image.open(io.BytesIO(data)) as im:
            size = im.size
        if size[0] * size[1] > MAX_IMAGE_PIXELS:  # before its pixels are decoded
            raise FieldError(
                role, f"{role} must have at most {MAX_IMAGE_PIXELS} pixels, got {size[0]}x{size[1]}"
            )
        check_decodes(io.BytesIO(data))
    except FieldError:
        raise
    except PIL.UnidentifiedImageError as exc:  # its message names an in-memory buffer, of no use to a client
        raise FieldError(role, f"{role} is not a readable image (not a format PIL reads)") from exc
    except Exception as exc:
        raise FieldError(role, f"{role} is not a readable image ({type(exc).__name__}: {exc})") from exc


@contextmanager
def _uploaded(data: bytes, role: str):
    """The upload as a file (in a temporary folder, removed after the block); a ValueError inside that names the
    file becomes a FieldError naming the field and "the upload"."""
    with tempfile.TemporaryDirectory(prefix="motif-video-upload-") as folder:
        path = Path(folder) / role
        path.write_bytes(data)
        try:
            yield path
        except FieldError:
            raise
        except ValueError as exc:
            named = re.sub(rf"\w+ {re.escape(repr(str(path)))}", f"the {role} upload", str(exc))
            message = named.replace(str(path), "the upload")
            raise FieldError(_field_of(message) or role, message) from exc


def _with_image(request: GenerateRequest, data: bytes) -> GenerateRequest:
    """The request with the size its first uploaded image gives it (`size_from_image`: its shape kept)."""
    from ..input_media import size_from_image
    from ..pipelines.export import shown_size

    return size_from_image(request, *shown_size(io.BytesIO(data)))


def _with_video(request: GenerateRequest, data: bytes) -> GenerateRequest:
    """The request with the frame count, size and strength an uploaded input video gives it (`size_from_video`)."""
    from ..input_media import size_from_video

    with _uploaded(data, "video") as path:
        return replace(size_from_video(replace(request, video=path)), video=None)


def _extension(
    request: GenerateRequest, data: bytes, values: Mapping[str, Any], limits: Limits
) -> dict[str, Any]:
    """The settings an extension adds (`motif_video.extension`'s checks, on the uploaded clip): the plan's windows
    and frames, the clip's size (or the one asked for) and fps, the window from the model's defaults, and the
    prompt of each window (the prompt's non-blank lines, one per window and the last repeating, as `extend
    --prompt-file`)."""
    from ..defaults import model_defaults
    from ..extension import check_clip, clip_extension, extension_size, window_prompts

    seconds, overlap, crossfade = (values.get(k, d) for k, d in EXTEND_DEFAULTS.items())
    for name, value, kind in (("extend_seconds", seconds, (int, float)), ("overlap", overlap, int),
                              ("crossfade", crossfade, int)):  # fmt: skip
        if name == "overlap" and value is None:  # the window's default (`condition_layout.default_overlap`)
            continue
        if isinstance(value, bool) or not isinstance(value, kind):
            raise FieldError(name, f"{name} must be {'a number' if name == 'extend_seconds' else 'an integer'}, "
                             f"got {value!r}")  # fmt: skip
    if not math.isfinite(seconds) or seconds <= 0:
        raise FieldError("extend_seconds", f"extend_seconds must be a finite number > 0, got {seconds!r}")
    if seconds > limits.max_extend_seconds:
        raise FieldError(
            "extend_seconds",
            f"extend_seconds must be at most {limits.max_extend_seconds:g} on this server, got {seconds}",
        )
    window = request.num_frames or model_defaults(request.model).resolve(num_frames=None)["num_frames"]
    with _uploaded(data, "video") as clip:
        info = check_clip(clip)
        width, height = extension_size(
            clip, info, request.width, request.height, model_defaults(request.model)
        )
        try:
            plan = clip_extension(info, float(seconds), window, overlap, crossfade)
        except ValueError as exc:
            raise FieldError(_plan_field(str(exc)), str(exc)) from exc
    lines = [line.strip() for line in request.prompts[0].splitlines() if line.strip()]
    return {"extend_seconds": float(seconds), "overlap": plan.overlap, "crossfade": crossfade, "windows": plan.windows,
            "total_frames": plan.total_frames, "num_frames": window, "width": width, "height": height,
            "fps": info["fps"], "window_prompts": window_prompts(lines, plan.windows)}  # fmt: skip


EXTEND_DEFAULTS = {"extend_seconds": None, "overlap": None, "crossfade": DEFAULT_CROSSFADE}


def _plan_field(message: str) -> str:
    """The field an extension plan's error is about (`extension.plan_extension`'s messages)."""
    if message.startswith(("the clip has", "the clip is at")):
        return "video"
    word = message.split(" ", 1)[0]
    return {"window": "num_frames", "overlap": "overlap", "crossfade": "crossfade"}.get(
        word, "extend_seconds"
    )


def check_limits(values: Mapping[str, Any], limits: Limits) -> None:
    for name in ("prompt", "negative_prompt"):
        value = values.get(name)
        if isinstance(value, str) and len(value) > limits.max_prompt_chars:
            raise FieldError(
                name, f"{name} must be at most {limits.max_prompt_chars} characters, got {len(value)}"
            )
    for name, limit in (
        ("width", limits.max_width),
        ("height", limits.max_height),
        ("num_frames", limits.max_frames),
        ("steps", limits.max_steps),
    ):
        value = values.get(name)
        if isinstance(value, int) and value > limit:
            raise FieldError(name, f"{name} must be at most {limit} on this server, got {value}")
    seed = values.get("seed")
    if isinstance(seed, int) and not 0 <= seed <= API_SEED_MAX:
        raise FieldError("seed", f"seed must be in 0..{API_SEED_MAX} on this server, got {seed}")


def _check_extension_request(
    extension: Mapping[str, Any], fields: Mapping[str, Any], uploads: Uploads
) -> None:
    """An extension is the uploaded video and extend_seconds, without other media or video-to-video's strength."""
    if "extend_seconds" not in extension:
        name = next(iter(extension))
        raise FieldError(
            name, f"{name} is an extension setting: it needs extend_seconds (and the part 'video')"
        )
    if uploads.video is None:
        raise FieldError(
            "extend_seconds", "extend_seconds needs the video to extend, as the multipart part 'video'"
        )
    for role, _ in uploads.parts():
        if role != "video":
            raise FieldError(
                role,
                f"{role} cannot be given with extend_seconds: an extension is conditioned on the video's end",
            )
    if fields.get("strength") is not None:
        raise FieldError(
            "strength", "strength is video-to-video's; an extension (extend_seconds) does not take it"
        )
    taken = {*EXTENSION_OPTIONS, "seed", "prompts"}  # what `motif-video extend` takes and records
    for name in VIDEO_OPTIONS:
        if name not in taken and name not in UPLOADS and fields.get(name) is not None:
            raise FieldError(
                name,
                f"{name} is not an extension setting (an extension is written at its clip's frame rate and "
                f"conditions its windows as `extend` does); besides prompt and the extension fields it takes "
                f"{sorted(n for n in VIDEO_OPTIONS if n in taken and n != 'prompts')}",
            )


def settings_from_fields(
    fields: Mapping[str, Any], *, model: str, limits: Limits, uploads: Uploads | None = None
) -> dict[str, Any]:
    """A job's complete settings (JSON values) from its request fields and uploads.

    Raises FieldError naming the field. The model's defaults (or the input video) fill the size, frames, steps and
    negative prompt the request left out (and must fit the limits too); a missing seed is drawn here, so the job
    records it. The media are recorded as what was given: `image`, `last_image`, `video` true or false, `keyframe`
    the list of their frames. With extend_seconds the video is extended instead (`_extension`: the settings record
    the plan's windows and total frames, and the clip's size and fps).
    """
    from ..defaults import fill_request

    uploads = uploads or Uploads()
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        hint = (
            " (media are multipart file parts: image, last_image, keyframe, video)"
            if unknown[0] in UPLOADS
            else ""
        )
        raise FieldError(unknown[0], f"unknown field {unknown[0]!r}{hint}; fields: {sorted(FIELDS)}")
    if not isinstance(fields.get("prompt"), str):
        raise FieldError(
            "prompt", f"prompt is required, as text (one video per job), got {fields.get('prompt')!r}"
        )
    check_limits(fields, limits)
    frames = fields.get(KEYFRAME_FRAMES) or []
    if not isinstance(frames, list) or len(frames) != len(uploads.keyframes):
        raise FieldError(
            KEYFRAME_FRAMES,
            f"{KEYFRAME_FRAMES} must give one frame per keyframe part, in order: {len(uploads.keyframes)} part(s), "
            f"got {frames!r}",
        )
    for role, data in uploads.parts():
        if role != "video":
            check_image(role, data)
    extension = {k: v for k, v in fields.items() if k in EXTEND_FIELDS}
    if extension:
        _check_extension_request(extension, fields, uploads)
    values = {
        ("prompts" if k == "prompt" else k): v
        for k, v in fields.items()
        if k != KEYFRAME_FRAMES and k not in EXTEND_FIELDS
    }
    # placeholders: the options check which media are given and where, not paths
    values.update({role: "upload" for role in ("image", "last_image") if getattr(uploads, role) is not None})
    if frames:
        values["keyframe"] = [f"upload@{frame}" for frame in frames]
    if uploads.video is not None and not extension:
        values["video"] = "upload"
    try:
        request = parse_request(values, base=GenerateRequest(prompts=("-",), model=model))
        if not extension:
            check_generation_request(request)
        if extension:
            extension = _extension(request, uploads.video, extension, limits)  # type: ignore[arg-type]
            request = replace(request, **{k: extension[k] for k in ("height", "width", "num_frames")})
        elif uploads.video is not None:
            request = _with_video(request, uploads.video)
        elif images := [data for role, data in uploads.parts() if role != "video"]:
            request = _with_image(request, images[0])
        if request.width is not None and fields.get("width") is None and fields.get("height") is None:
            # a size the media gave (their shape kept) is made to fit this server, not refused for its limits
            width, height = fit_within(request.width, request.height, limits.max_width, limits.max_height)
            request = replace(request, width=width, height=height)
            if extension:
                extension.update(width=width, height=height)
        request = fill_request(request)  # the model's defaults, as `generate` fills them
        check_conditions(request, request.num_frames)
    except FieldError:
        raise
    except ValueError as exc:
        raise FieldError(_field_of(str(exc)), str(exc)) from exc
    settings = {name: getattr(request, name) for name in VIDEO_OPTIONS}
    settings["prompt"] = settings.pop("prompts")[0]
    settings.update(
        image=uploads.image is not None,
        last_image=uploads.last_image is not None,
        keyframe=list(frames),
        video=uploads.video is not None,
        **extension,
    )
    # the model's defaults (or the video's frames, or an extension's window) must fit this server's limits too
    check_limits(settings, limits)
    if settings["seed"] is None:
        settings["seed"] = int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF
    return settings


def to_request(
    settings: Mapping[str, Any], media: Mapping[str, list[Path]], **server: Any
) -> GenerateRequest:
    """The library's request for a job's settings, its media on disk (role -> paths, keyframes in order) and the
    server's run options (model, device, dtype, output, ...). Settings recorded before a field existed take its
    default."""
    values = {
        name: settings.get(name, VIDEO_OPTIONS[name].default)
        for name in VIDEO_OPTIONS
        if name not in ("prompts", *UPLOADS)
    }
    extending = settings.get("extend_seconds") is not None
    if extending:  # the clip is the worker's (`extension.write_extension`), and so is its fps
        values.pop("fps")
    for role in SINGLE_UPLOADS:
        if settings.get(role) and not (extending and role == "video"):
            values[role] = media[role][0]
    frames = settings.get("keyframe") or []
    values["keyframe"] = [
        f"{path}@{frame}" for path, frame in zip(media.get("keyframe", []), frames, strict=True)
    ]
    values.update(prompts=[settings["prompt"]], **server)
    return parse_request(values)
