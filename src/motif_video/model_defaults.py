"""Per-model generation defaults stored beside the weights (`generation_config.json` in the model folder).

The released model has none, so the released defaults apply; the shipped small model stores its own size, steps
and negative prompt (its shift and guidance scale live in its scheduler / guider configs, which the pipelines
already read). Hub ids are not downloaded to look: only local folders and shipped models are read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

GENERATION_CONFIG = "generation_config.json"
RELEASED_DEFAULTS: dict[str, Any] = {"height": 736, "width": 1280, "num_frames": 121, "steps": 50}
KEYS = ("height", "width", "num_frames", "steps", "negative_prompt")


def generation_defaults(model: str | Path) -> dict[str, Any]:
    """The released defaults updated by the model folder's generation_config.json (when it has one)."""
    from .hub import shipped_folder

    path = Path(model).expanduser()
    folder = path if path.is_dir() else shipped_folder(str(model))
    defaults = dict(RELEASED_DEFAULTS)
    if folder is not None and (folder / GENERATION_CONFIG).is_file():
        stored = json.loads((folder / GENERATION_CONFIG).read_text())
        unknown = sorted(set(stored) - set(KEYS))
        if unknown:
            raise ValueError(
                f"{folder / GENERATION_CONFIG} has unknown key(s) {unknown}; allowed: {list(KEYS)}"
            )
        defaults.update(stored)
    return defaults


def fill_defaults(values: dict[str, Any], model: str | Path) -> dict[str, Any]:
    """`values` with every None entry that the model has a default for replaced by that default."""
    defaults = generation_defaults(model)
    return {k: (defaults.get(k) if v is None else v) for k, v in values.items()}
