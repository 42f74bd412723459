"""motif-video: Motif-Video 2B text/image-to-video, inference and training."""

from .models import MotifVideoTransformer, MotifVideoTransformerOutput, Route
from .pipelines import MotifVideoImageToVideoPipeline, MotifVideoPipeline
from .presets import PRESETS, build_transformer

__all__ = [
    "PRESETS",
    "MotifVideoImageToVideoPipeline",
    "MotifVideoPipeline",
    "MotifVideoTransformer",
    "MotifVideoTransformerOutput",
    "Route",
    "build_transformer",
]
__version__ = "0.1.0"
