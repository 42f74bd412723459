"""motif-video: Motif-Video 2B text/image-to-video, inference and training.

The public names below are imported on first use (module `__getattr__`), so `import motif_video` and the
`motif-video` command's parsers stay light: torch, diffusers and the models load only when a feature needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module (relative to this package) that defines it
_EXPORTS = {
    "PRESETS": ".presets",
    "build_transformer": ".presets",
    "MotifVideoTransformer": ".models",
    "MotifVideoTransformerOutput": ".models",
    "Route": ".models",
    "MotifVideoPipeline": ".pipelines",
    "MotifVideoImageToVideoPipeline": ".pipelines",
    "VideoCondition": ".pipelines",
}

__all__ = [
    "PRESETS",
    "MotifVideoImageToVideoPipeline",
    "MotifVideoPipeline",
    "MotifVideoTransformer",
    "MotifVideoTransformerOutput",
    "Route",
    "VideoCondition",
    "build_transformer",
]

if TYPE_CHECKING:  # static tools see the real names
    from .models import MotifVideoTransformer, MotifVideoTransformerOutput, Route
    from .pipelines import MotifVideoImageToVideoPipeline, MotifVideoPipeline, VideoCondition
    from .presets import PRESETS, build_transformer


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
