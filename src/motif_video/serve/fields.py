"""A job's request fields: the service's side of the one definition of generate's options.

`settings_from_fields(fields, ...)` turns the fields of a `POST /v1/videos` (JSON or form) into a job's complete
settings (model defaults filled in, a random seed drawn and recorded), or raises `FieldError` naming the field.
Every check of the options themselves is the library's (`GenerateRequest.validate`, the one `motif-video generate`
runs); this module adds only the service's limits (size, frames, steps, prompt length) and maps each message to the
field it is about. Worker-level options (model, device, dtype, offload, compile, ...) are not request fields: a
worker's pipeline is loaded once with them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# field -> (type, default); the request fields that make sense per job over HTTP
FIELDS: dict[str, tuple[type, Any]] = {
    "prompt": (str, None),
    "negative_prompt": (str, None),
    "width": (int, None),
    "height": (int, None),
    "num_frames": (int, None),
    "steps": (int, None),
    "guidance": (str, None),
    "guidance_scale": (float, None),
    "guidance_batching": (str, "auto"),
    "shift": (float, None),
    "seed": (int, None),
    "fps": (int, 24),
    "keep_first_frame": (bool, None),
    "cache_threshold": (float, None),
}
SEED_MAX = 2**31 - 1


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


def coerce(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Known fields only, each of its type (form fields arrive as text); raises FieldError naming the field."""
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise FieldError(unknown[0], f"unknown field {unknown[0]!r}; fields: {sorted(FIELDS)}")
    out: dict[str, Any] = {}
    for name, (kind, default) in FIELDS.items():
        value = fields.get(name, default)
        if value is None or (value == "" and kind is not str):
            out[name] = default
            continue
        out[name] = _typed(name, kind, value)
    return out


def _typed(name: str, kind: type, value: Any) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "on", "off"):
            return value.lower() in ("true", "1", "on")
        raise FieldError(name, f"{name} must be true or false, got {value!r}")
    if kind is str:
        if not isinstance(value, str):
            raise FieldError(name, f"{name} must be text, got {value!r}")
        return value
    if isinstance(value, bool):
        raise FieldError(name, f"{name} must be a number, got {value!r}")
    try:
        number = kind(value)
    except (TypeError, ValueError):
        kind_text = "an integer" if kind is int else "a number"
        raise FieldError(name, f"{name} must be {kind_text}, got {value!r}") from None
    if kind is int and isinstance(value, float) and number != value:
        raise FieldError(name, f"{name} must be an integer, got {value!r}")
    return number


def check_limits(values: Mapping[str, Any], limits: Limits) -> None:
    prompt = values.get("prompt")
    if prompt is None:
        raise FieldError("prompt", "prompt is required")
    for name, limit in (
        ("prompt", limits.max_prompt_chars),
        ("negative_prompt", limits.max_prompt_chars),
    ):
        if values.get(name) is not None and len(values[name]) > limit:
            raise FieldError(name, f"{name} must be at most {limit} characters, got {len(values[name])}")
    for name, limit in (
        ("width", limits.max_width),
        ("height", limits.max_height),
        ("num_frames", limits.max_frames),
        ("steps", limits.max_steps),
    ):
        if values.get(name) is not None and values[name] > limit:
            raise FieldError(name, f"{name} must be at most {limit} on this server, got {values[name]}")
    seed = values.get("seed")
    if seed is not None and not 0 <= seed <= SEED_MAX:
        raise FieldError("seed", f"seed must be in 0..{SEED_MAX}, got {seed}")


# The library's messages start with the option's name; these prefixes map them back to the request field.
_MESSAGE_FIELDS = (
    ("prompt", "prompt"),
    ("width", "width"),
    ("height", "height"),
    ("num_frames", "num_frames"),
    ("steps", "steps"),
    ("guidance batching", "guidance_batching"),
    ("guidance scale", "guidance_scale"),
    ("guidance", "guidance"),
    ("shift", "shift"),
    ("fps", "fps"),
    ("cache threshold", "cache_threshold"),
    ("image", "image"),
    ("--keep-first-frame", "keep_first_frame"),
)


def _field_of(message: str) -> str | None:
    for prefix, name in _MESSAGE_FIELDS:
        if re.match(rf"{re.escape(prefix)}\b", message):
            return name
    return None


def settings_from_fields(
    fields: Mapping[str, Any],
    *,
    model: str,
    limits: Limits,
    probe_dir: Path,
    image: Path | None = None,
) -> dict[str, Any]:
    """A job's complete settings from its request fields (and the uploaded first frame, already on disk).

    Raises FieldError naming the field. `probe_dir` is where the library's output check may write (the results
    folder); nothing from the request becomes a path.
    """
    from ..model_defaults import KEYS, fill_defaults

    values = coerce(fields)
    check_limits(values, limits)
    values.update(fill_defaults({k: values[k] for k in KEYS}, model))
    check_limits(values, limits)  # the model's defaults must fit this server's limits too
    request = to_request(values, model=model, output=probe_dir / "job.mp4", image=image)
    try:
        request.validate()
    except ValueError as exc:
        raise FieldError(_field_of(str(exc)), str(exc)) from exc
    values["seed"] = request.seed
    values["image"] = image is not None
    return values


def to_request(settings: Mapping[str, Any], *, model: str, output: Path, image: Path | None, **worker: Any):
    """The library's `GenerateRequest` for a job's settings (plus worker-level options such as device, dtype)."""
    from ..generation import GenerateRequest

    return GenerateRequest(
        prompts=[settings["prompt"]],
        output=output,
        image=image,
        keep_first_frame=settings["keep_first_frame"],
        model=model,
        height=settings["height"],
        width=settings["width"],
        num_frames=settings["num_frames"],
        steps=settings["steps"],
        guidance=settings["guidance"],
        guidance_scale=settings["guidance_scale"],
        guidance_batching=settings["guidance_batching"],
        shift=settings["shift"],
        negative_prompt=settings["negative_prompt"],
        seed=settings["seed"],
        fps=settings["fps"],
        cache_threshold=settings["cache_threshold"],
        **worker,
    )
