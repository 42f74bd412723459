"""Text-to-video and image-to-video pipelines (diffusers `DiffusionPipeline` subclasses) and their pieces.

The names below are imported on first use, so a light module of this package (`export`, `latents`, ...) loads
without diffusers' pipelines.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

_EXPORTS = {
    "MotifVideoPipelineOutput": ".base",
    "VideoCondition": ".conditions",
    "GuidanceConfig": ".guidance",
    "MotifVideoImageToVideoPipeline": ".image_to_video",
    "MotifVideoImage2VideoPipeline": ".image_to_video",  # diffusers' name
    "DEFAULT_NEGATIVE_PROMPT": ".prompts",
    "MotifVideoPipeline": ".text_to_video",
}

__all__ = [
    "DEFAULT_NEGATIVE_PROMPT",
    "GuidanceConfig",
    "MotifVideoImage2VideoPipeline",
    "MotifVideoImageToVideoPipeline",
    "MotifVideoPipeline",
    "MotifVideoPipelineOutput",
    "VideoCondition",
]

if TYPE_CHECKING:  # static tools see the real names
    from .base import MotifVideoPipelineOutput
    from .conditions import VideoCondition
    from .guidance import GuidanceConfig
    from .image_to_video import MotifVideoImage2VideoPipeline, MotifVideoImageToVideoPipeline
    from .prompts import DEFAULT_NEGATIVE_PROMPT
    from .text_to_video import MotifVideoPipeline

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
