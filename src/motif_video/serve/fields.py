"""A job's request fields: the service's side of the one declaration of generate's options (`motif_video.options`).

The request fields are the options of the "video" group (size, frames, steps, guidance, shift, seed, fps, ...),
checked by `options.parse_request` exactly as `motif-video generate` checks its flags, with two HTTP forms: `prompt`
is one text (a job makes one video; the option is `prompts`), and the first frame is the multipart part `image` (an
upload, never a path). Options of the "output" and "run" groups (model, device, dtype, offload, ...) are the
server's, set when it starts. This module adds only the service's limits (size, frames, steps, prompt length), the
model's defaults (so a job records what it will be made with) and a random seed when none is given.

Pure Python like `options`: the API process imports no torch.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..options import GENERATE_OPTIONS, MEDIA_FIELDS, OPTIONS, GenerateRequest, parse_request, request_schema

# The per-request options (those of the "video" group), by field name; `prompts` travels as `prompt`. Options naming
# files on the server (last image, keyframes, input video) are not request fields: only `image`, as an upload.
NOT_FIELDS = (*MEDIA_FIELDS[1:], "strength")
VIDEO_OPTIONS = {o.name: o for o in GENERATE_OPTIONS if o.group == "video" and o.name not in NOT_FIELDS}
FIELDS: tuple[str, ...] = tuple("prompt" if n == "prompts" else n for n in VIDEO_OPTIONS if n != "image")
API_SEED_MAX = (
    2**31 - 1
)  # tighter than generate's: what the server draws, and exact as a number in any client
MAX_IMAGE_PIXELS = 4096 * 4096


class FieldError(ValueError):
    """A bad request field: `field` names it (None when the request as a whole is wrong)."""

    def __init__(self, field: str | None, message: str):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Limits:
    """What one job may ask for; a request over a limit is refused (422) before it is queued."""

    max_width: int = 1280
    max_height: int = 1280
    max_frames: int = 121
    max_steps: int = 100
    max_prompt_chars: int = 2000
    max_upload_bytes: int = 10 * 2**20
    max_queue: int = 1000


def schema(multipart: bool) -> dict[str, Any]:
    """The JSON schema of a request body: the options' own schema with the HTTP forms of prompt and image."""
    base = request_schema(["video"])
    props = dict(base["properties"])
    prompt = props.pop("prompts")
    props = {"prompt": {"type": "string", "minLength": 1, "description": prompt["description"]}, **props}
    for name in NOT_FIELDS:
        props.pop(name)
    image = props.pop("image")
    if multipart:
        props["image"] = {"type": "string", "format": "binary", "description": image["description"]}
    return {"type": "object", "properties": props, "required": ["prompt"], "additionalProperties": False}


def from_form(fields: Mapping[str, str]) -> dict[str, Any]:
    """Form fields (text) as the JSON values their options take; the options' checks come after."""
    out: dict[str, Any] = {}
    for name, text in fields.items():
        option = VIDEO_OPTIONS.get("prompts" if name == "prompt" else name)
        if option is None or option.type is str or option.type is Path:
            out[name] = text
        elif text == "":
            out[name] = None
        elif option.type is bool:
            if text.lower() not in ("true", "false", "1", "0", "on", "off"):
                raise FieldError(name, f"{name} must be true or false, got {text!r}")
            out[name] = text.lower() in ("true", "1", "on")
        else:
            try:
                out[name] = option.type(text)
            except ValueError:
                kind = "an integer" if option.type is int else "a number"
                raise FieldError(name, f"{name} must be {kind}, got {text!r}") from None
    return out


def _field_of(message: str) -> str | None:
    word = message.split(" ", 1)[0]
    if word in ("prompt", "prompts"):
        return "prompt"
    return word if word in OPTIONS else None


def check_upload(data: bytes) -> None:
    """The first frame is a readable image of sane size (checked before any job is queued)."""
    import PIL.Image

    try:
        with PIL.Image.open(io.BytesIO(data)) as im:
            size = im.size
            im.verify()
    except Exception as exc:
        raise FieldError("image", f"image is not a readable image ({type(exc).__name__}: {exc})") from exc
    if size[0] * size[1] > MAX_IMAGE_PIXELS:
        raise FieldError(
            "image", f"image must have at most {MAX_IMAGE_PIXELS} pixels, got {size[0]}x{size[1]}"
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


def settings_from_fields(
    fields: Mapping[str, Any], *, model: str, limits: Limits, image: bytes | None = None
) -> dict[str, Any]:
    """A job's complete settings (JSON values) from its request fields and optional first-frame upload.

    Raises FieldError naming the field. The model's defaults fill the size, frames, steps and negative prompt the
    request left out (and must fit the limits too); a missing seed is drawn here, so the job records it.
    """
    from ..defaults import model_defaults

    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        hint = " (send the first frame as the multipart part 'image')" if unknown[0] == "image" else ""
        raise FieldError(unknown[0], f"unknown field {unknown[0]!r}{hint}; fields: {sorted(FIELDS)}")
    if not isinstance(fields.get("prompt"), str):
        raise FieldError(
            "prompt", f"prompt is required, as text (one video per job), got {fields.get('prompt')!r}"
        )
    check_limits(fields, limits)
    values = {("prompts" if k == "prompt" else k): v for k, v in fields.items()}
    if image is not None:
        check_upload(image)
        values["image"] = "upload"  # a placeholder: the options check that some image is given, not a path
    base = GenerateRequest(prompts=("-",), model=model)
    try:
        request = parse_request(values, base=base)
        filled = model_defaults(model).resolve(
            height=request.height,
            width=request.width,
            num_frames=request.num_frames,
            num_inference_steps=request.steps,
            negative_prompt=request.negative_prompt,
        )
    except ValueError as exc:
        raise FieldError(_field_of(str(exc)), str(exc)) from exc
    settings = {name: getattr(request, name) for name in VIDEO_OPTIONS}
    settings["steps"] = filled.pop("num_inference_steps")
    settings.update(filled)
    settings["prompt"] = settings.pop("prompts")[0]
    settings["image"] = image is not None
    check_limits(settings, limits)  # the model's defaults must fit this server's limits too
    if settings["seed"] is None:
        settings["seed"] = int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF
    return settings


def to_request(settings: Mapping[str, Any], image: Path | None, **server: Any) -> GenerateRequest:
    """The library's request for a job's settings (`image`: the upload on disk) and the server's run options
    (model, device, dtype, output, ...)."""
    values = {name: settings[name] for name in VIDEO_OPTIONS if name not in ("prompts", "image")}
    values.update(prompts=[settings["prompt"]], image=image, **server)
    return parse_request(values)
