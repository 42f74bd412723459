"""Per-model generation defaults for `generate` and `eval`, read from the model folder's `generation_config.json`
(one schema: `pipelines.defaults.GenerationDefaults`).

The released model has none, so the released defaults apply. The shipped small model stores its size, step count
and negative prompt; a distilled student stores its step count and guidance and takes everything else from its
`base_model`. Hub ids are not downloaded to look: only local folders and shipped models are read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

RELEASED_DEFAULTS: dict[str, Any] = {
    "height": 736,
    "width": 1280,
    "num_frames": 121,
    "steps": 50,
    "negative_prompt": None,  # None: the pipeline's 39-term trained negative prompt
}
KEYS = tuple(RELEASED_DEFAULTS)
# generate/eval names -> GenerationDefaults fields
_FIELDS = {"height": "height", "width": "width", "num_frames": "num_frames", "steps": "num_inference_steps",
           "negative_prompt": "negative_prompt"}  # fmt: skip


def _folder(model: str | Path) -> Path | None:
    from .hub import shipped_model

    path = Path(model).expanduser()
    return path if path.is_dir() else shipped_model(str(model))


def stored_defaults(model: str | Path, _depth: int = 0):
    """The model's `GenerationDefaults` over its base model's (a student's chain, up to 4 deep); None without a
    generation_config.json."""
    from .pipelines.defaults import GenerationDefaults

    folder = _folder(model)
    stored = GenerationDefaults.read(folder) if folder is not None else None
    if stored is not None and stored.base_model and _depth < 4:
        base = stored_defaults(stored.base_model, _depth + 1)
        stored = stored.over(base) if base is not None else stored
    return stored


def generation_defaults(model: str | Path) -> dict[str, Any]:
    """The released defaults, updated by the model's (and its base model's) generation_config.json."""
    defaults = dict(RELEASED_DEFAULTS)
    stored = stored_defaults(model)
    if stored is None:
        return defaults
    for key, name in _FIELDS.items():
        value = getattr(stored, name)
        if value is not None:
            defaults[key] = value
    return defaults


def fill_defaults(values: dict[str, Any], model: str | Path) -> dict[str, Any]:
    """`values` with every None entry that the model has a default for replaced by that default."""
    defaults = generation_defaults(model)
    return {k: (defaults.get(k) if v is None else v) for k, v in values.items()}
