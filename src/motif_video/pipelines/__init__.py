"""Text-to-video and image-to-video pipelines (diffusers `DiffusionPipeline` subclasses) and their pieces."""

from .base import MotifVideoPipelineOutput
from .conditions import VideoCondition
from .guidance import GuidanceConfig
from .image_to_video import MotifVideoImageToVideoPipeline
from .prompts import DEFAULT_NEGATIVE_PROMPT
from .text_to_video import MotifVideoPipeline

__all__ = [
    "DEFAULT_NEGATIVE_PROMPT",
    "GuidanceConfig",
    "MotifVideoImageToVideoPipeline",
    "MotifVideoPipeline",
    "MotifVideoPipelineOutput",
    "VideoCondition",
]
