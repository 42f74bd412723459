"""Validation videos during training, rendered by `MotifVideoPipeline` with the model being trained.

The pipeline is built directly from the components the trainer already holds (VAE, text encoder, tokenizer, SigLIP
feature extractor) and the unwrapped model as its transformer: nothing is loaded or copied. Sampling uses the
pipeline's defaults (Euler, T2V shift 15, APG) with `validation.num_inference_steps` and `validation.guidance_scale`,
at the largest bucket's size, seed `config.seed` for every prompt so that videos are comparable across steps.

Files: `OUTPUT/validation/step-N/NN.mp4`, one per prompt, written into `step-N.tmp/` and renamed once every video
is complete (and each MP4 is itself written to a temporary file first), so a crash never leaves a partial folder.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .components import Components
from .config import TrainConfig

logger = logging.getLogger(__name__)


def validation_pipeline(model: nn.Module, components: Components):
    """A `MotifVideoPipeline` around `model` and the trainer's frozen components (no progress bar, text encoder
    kept in place because the trainer may still need it)."""
    from ..pipelines import MotifVideoPipeline

    pipe = MotifVideoPipeline(
        scheduler=None,
        transformer=model,
        vae=components.vae,
        text_encoder=components.text_encoder,
        tokenizer=components.tokenizer,
        feature_extractor=components.feature_extractor,
    )
    pipe.release_text_encoder = False
    pipe.set_progress_bar_config(disable=True)
    return pipe


def render_validation(
    config: TrainConfig, model: nn.Module, components: Components, folder: Path, write: bool = True
) -> list[Path]:
    """Render `config.validation.prompts` with `model` into `folder/NN.mp4` (atomically); returns the paths.

    `write=False` runs the pipeline without writing (the other ranks of an FSDP2 run, whose sharded forward needs
    every rank).
    """
    from ..pipelines.export import write_mp4

    v = config.validation
    frames, height, width = config.data.buckets[-1]
    was_training = model.training
    model.eval()
    pipe = validation_pipeline(model, components)
    tmp = folder.with_name(folder.name + ".tmp")
    if write:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    paths = []
    try:
        with torch.no_grad():
            for i, prompt in enumerate(v.prompts):
                video = pipe(
                    prompt,
                    height=height,
                    width=width,
                    num_frames=frames,
                    num_inference_steps=v.num_inference_steps,
                    guidance_scale=v.guidance_scale,
                    generator=torch.Generator().manual_seed(config.seed),
                    output_type="np",
                ).frames[0]
                if write and not np.isfinite(video).all():  # a diverged model: say so, and train on
                    logger.warning("validation prompt %d gave non-finite frames: no video written", i)
                elif write:
                    write_mp4(video, tmp / f"{i:02d}.mp4", fps=max(1, round(config.data.fps)))
                    paths.append(folder / f"{i:02d}.mp4")
    finally:
        model.train(was_training)
    if write:
        shutil.rmtree(folder, ignore_errors=True)  # a re-run of the same step (resume) replaces it
        os.replace(tmp, folder)
    return paths


def pipeline_validation(config: TrainConfig, components: Components):
    """A `ValidateFn` that renders the validation prompts on the main process (on every rank under FSDP2)."""

    def validate(model: nn.Module, step: int, folder: Path, is_main: bool) -> None:
        if not config.validation.prompts:
            return
        sharded = config.parallel == "fsdp2" and torch.distributed.is_initialized()
        if is_main or sharded:
            render_validation(config, model, components, folder, write=is_main)

    return validate
