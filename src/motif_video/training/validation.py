"""Validation videos during training, through the project's pipeline (`motif_video.pipelines`).

The pipeline package is developed on another branch; this module imports it lazily and builds the pipeline from
the run's component folder with the model being trained as its transformer.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .config import TrainConfig


def pipeline_validation(config: TrainConfig):
    """A `ValidateFn` that renders `config.validation.prompts` to `folder/NN.mp4` on the main process."""
    from ..pipelines import MotifVideoPipeline

    v = config.validation
    frames, height, width = config.data.buckets[-1]

    def validate(model: nn.Module, step: int, folder: Path, is_main: bool) -> None:
        if not is_main or not v.prompts:
            return
        from diffusers.utils import export_to_video

        was_training = model.training
        model.eval()
        pipe = MotifVideoPipeline.from_pretrained(config.model.components, transformer=model)
        folder.mkdir(parents=True, exist_ok=True)
        with torch.no_grad():
            for i, prompt in enumerate(v.prompts):
                video = pipe(
                    prompt, height=height, width=width, num_frames=frames,
                    num_inference_steps=v.num_inference_steps, guidance_scale=v.guidance_scale,
                    generator=torch.Generator().manual_seed(config.seed),
                ).frames[0]  # fmt: skip
                export_to_video(video, str(folder / f"{i:02d}.mp4"), fps=round(config.data.fps))
        model.train(was_training)

    return validate
