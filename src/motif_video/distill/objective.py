"""The distillation objective for the shared training loop (`training.trainer.train(..., objective=...)`).

Builds the student from the frozen teacher, draws each sample's window, in-window time and guidance scale from the
trainer's per-(seed, step, sample) streams (so resume and multi-GPU runs repeat exactly), asks the guided teacher
for the window's endpoint (`perflow.window_targets`) and regresses the student's velocity on it. The export writes
the student (or its LoRA adapter) and `generation_config.json` with the step count, shift and guidance defaults.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import flow
from ..conditioning import condition_channels
from ..defaults import GenerationDefaults
from ..models import MotifVideoTransformer
from ..pipelines.guidance import GuidanceConfig
from ..training.draws import step_generator
from ..training.export import export_model
from ..training.objective import LossOutput, StepDraws
from ..training.setup import build_model, load_pretrained
from ..training.trainer import TrainResult, ValidateFn, train
from . import perflow
from .config import DistillConfig
from .student import frozen_copy, student_from_teacher

logger = logging.getLogger(__name__)


class PerFlowDistillation:
    """`training.objective.Objective` for guidance + step distillation (see `perflow`)."""

    def __init__(self, config: DistillConfig) -> None:
        self.config = config
        self.extras: dict[str, nn.Module] = {}
        self.teacher: MotifVideoTransformer | None = None
        self.negative: tuple[torch.Tensor, torch.Tensor] | None = None  # [1, L, C], [1, L]

    # -------------------------------------------------------------------------------------------- setup
    def build_model(self) -> nn.Module:
        config = self.config
        torch.manual_seed(config.seed)
        teacher = load_pretrained(config.model.pretrained)
        student = student_from_teacher(teacher, config.distill.guidance_embeds)
        self.teacher = frozen_copy(teacher)
        return build_model(config, student)

    def needs_components(self) -> bool:
        return False  # `prepare` loads them itself for a negative prompt when the data did not

    def prepare(self, accelerator: Any, components: Any, data: Any) -> None:
        device = accelerator.device
        self.teacher.to(device)
        negative = self.config.distill.negative_prompt
        if negative == "":  # the cache's / encoder's empty prompt
            self.negative = (data.null_text[None].to(device), data.null_mask[None].to(device))
            return
        from ..pipelines import prompts as P

        if components is None:
            from ..training.components import load_components

            components = load_components(self.config.model.components, device)
        text = P.DEFAULT_NEGATIVE_PROMPT if negative is None else negative
        with torch.no_grad():
            embeds = P.encode_prompts(
                components.text_encoder, components.tokenizer, [text], device, torch.float32
            )
        self.negative = (embeds.embeds, embeds.mask)

    def saved_extras(self, step: int) -> dict[str, nn.Module]:
        return {}

    # --------------------------------------------------------------------------------------------- loss
    def draws(self, batch: int, shape: tuple[int, ...], step: int, first_sample: int):
        """Per sample: window [B] (long), tau [B], guidance scale [B], noise [B, ...], from the trainer's streams."""
        d = self.config.distill
        windows, taus, scales, noises = [], [], [], []
        for i in range(batch):
            g = step_generator(self.config.seed, step, first_sample + i + 1)
            windows.append(int(torch.randint(d.steps, (1,), generator=g)))
            tau = torch.rand(1, generator=g)
            taus.append(float(tau) if d.time_in_window == "uniform" else 0.0)
            scales.append(d.guidance_scales[int(torch.randint(len(d.guidance_scales), (1,), generator=g))])
            noises.append(torch.randn(shape, generator=g))
        return torch.tensor(windows), torch.tensor(taus), torch.tensor(scales), torch.stack(noises)

    def compute_loss(self, model: nn.Module, inputs: dict[str, torch.Tensor], at: StepDraws) -> LossOutput:
        d = self.config.distill
        x0 = inputs["latents"]
        device, b = x0.device, x0.shape[0]
        window, tau, scale, noise = self.draws(b, tuple(x0.shape[1:]), at.draw_step, at.first_sample)
        window, tau, scale = window.to(device), tau.to(device), scale.to(device)
        noise = noise.to(device, x0.dtype)
        text, mask = inputs["text"], inputs["text_mask"]
        channels = condition_channels(x0, None)  # text-to-video: all 17 condition channels zero
        targets = perflow.window_targets(
            self._teacher_velocity(text, mask, channels), x0, noise, window, tau, scale,
            flow.sampling_sigmas(d.steps, d.shift or d.teacher_shift), max(1, d.teacher_steps // d.steps),
            d.teacher_shift, self._guidance(), d.start,
        )  # fmt: skip
        # a tuple, as in the training loss (accelerate's mixed-precision output conversion breaks the dataclass)
        (prediction,) = model(
            torch.cat([targets.x, channels], dim=1), flow.timestep_from_sigma(targets.sigma), text, mask,
            guidance=scale if d.guidance_embeds else None, return_dict=False,
        )  # fmt: skip
        # latent frame 0 weighted `objective.first_frame_weight` against the others, as in the training loss
        losses = flow.frame_weighted_mse(
            prediction, targets.velocity, self.config.objective.first_frame_weight
        )
        return LossOutput(losses.mean(), losses.detach(), targets.sigma.detach())

    def _guidance(self) -> GuidanceConfig:
        d = self.config.distill
        return GuidanceConfig(
            d.guidance_mode, norm_threshold=d.norm_threshold, momentum=d.momentum, eta=d.eta,
            norm_dims=tuple(d.norm_dims),
        )  # fmt: skip

    def _teacher_velocity(self, text, mask, channels) -> perflow.VelocityFn:
        neg_text, neg_mask = self.negative
        b = text.shape[0]
        neg_text, neg_mask = neg_text.expand(b, -1, -1).to(text.dtype), neg_mask.expand(b, -1)

        def velocity(x: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            hidden, t = torch.cat([x, channels], dim=1), flow.timestep_from_sigma(sigma)
            cond = self.teacher(hidden, t, text, mask).sample
            uncond = self.teacher(hidden, t, neg_text, neg_mask).sample
            return cond, uncond

        return velocity

    # ------------------------------------------------------------------------------------------- export
    def export(self, accelerator: Any, model: nn.Module, ema: Any) -> None:
        export_model(accelerator, self.config, model, ema)
        if accelerator.is_main_process:
            generation_defaults(self.config).write(Path(self.config.output_dir))


def generation_defaults(config: DistillConfig) -> GenerationDefaults:
    """What the pipeline should use with this student: its step count, shift and guidance."""
    from ..model_folder import recorded_base

    d = config.distill
    # a local folder recorded absolute: the student loads from any directory
    base = recorded_base(d.base_model) if d.base_model else None
    if base is None and config.model.pretrained:
        from ..hub import resolve_folder

        try:
            folder = resolve_folder(config.model.pretrained)
        except ValueError:
            folder = None
        if folder is not None and (folder / "model_index.json").is_file():
            local = Path(config.model.pretrained).expanduser()
            base = str(local.resolve()) if local.exists() else config.model.pretrained
    guidance, scale = (d.guidance_mode, float(d.guidance_scales[0])) if d.guidance_embeds else ("none", None)
    return GenerationDefaults(
        num_inference_steps=d.steps,
        shift=float(d.shift or d.teacher_shift),
        guidance=guidance,
        guidance_scale=scale,
        base_model=base,
        adapter="lora" if config.lora.rank else None,
        distillation={
            "method": "perflow",
            "teacher": config.model.pretrained,
            "teacher_steps": d.teacher_steps,
            "teacher_shift": d.teacher_shift,
            "teacher_guidance": d.guidance_mode,
            "guidance_scales": list(d.guidance_scales),
            "folded_guidance_scale": None if d.guidance_embeds else float(d.guidance_scales[0]),
        },
    )


def distill(
    config: DistillConfig, validate: ValidateFn | None = None, accelerator: Any = None
) -> TrainResult:
    """Run the trainer with the distillation objective; the output folder loads with the pipelines by path."""
    return train(config.check(), validate, accelerator, objective=PerFlowDistillation(config))
