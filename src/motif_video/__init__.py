"""motif-video: Motif-Video 2B text/image-to-video, inference and training.

The public names below are imported on first use (module `__getattr__`), so `import motif_video` and the
`motif-video` command's parsers stay light: torch, diffusers and the models load only when a feature needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .lazy import lazy_exports

__version__ = "0.1.0"

# public name -> the module (relative to this package) that defines it
_EXPORTS = {
    "PRESETS": ".presets",
    "build_transformer": ".presets",
    "MotifVideoTransformer": ".models",
    "MotifVideoTransformer3DModel": ".models",  # diffusers' name
    "MotifVideoTransformerOutput": ".models",
    "Route": ".models",
    "MotifVideoPipeline": ".pipelines",
    "MotifVideoImageToVideoPipeline": ".pipelines",
    "MotifVideoImage2VideoPipeline": ".pipelines",  # diffusers' name
    "VideoCondition": ".pipelines",
}

__all__ = [
    "PRESETS",
    "MotifVideoImage2VideoPipeline",
    "MotifVideoImageToVideoPipeline",
    "MotifVideoPipeline",
    "MotifVideoTransformer",
    "MotifVideoTransformer3DModel",
    "MotifVideoTransformerOutput",
    "Route",
    "VideoCondition",
    "build_transformer",
]

if TYPE_CHECKING:  # static tools see the real names
    from .models import (
        MotifVideoTransformer,
        MotifVideoTransformer3DModel,
        MotifVideoTransformerOutput,
        Route,
    )
    from .pipelines import (
        MotifVideoImage2VideoPipeline,
        MotifVideoImageToVideoPipeline,
        MotifVideoPipeline,
        VideoCondition,
    )
    from .presets import PRESETS, build_transformer


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
