"""The distillation recipe: every key of a training recipe plus a `distill` section.

`model.pretrained` is the teacher (frozen); the student starts from the same weights. Everything else (data,
optimiser, LoRA, checkpoints, multi-GPU) means what it means for `motif-video train`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .. import defaults as D
from ..bounds import above, at_least, check_keys, within
from ..training.config import TrainConfig, apply_overrides, from_dict, read_config_file

StartPoint = Literal["data", "teacher"]
TimeInWindow = Literal["start", "uniform"]
TeacherGuidanceMode = Literal["apg", "cfg"]


@dataclass
class DistillSection:
    steps: int = 4  # student steps = PeRFlow windows
    shift: float | None = None  # the student's sampling shift (window boundaries); None = teacher_shift
    teacher_steps: int = 48  # teacher Euler steps over the whole trajectory (split evenly over the windows)
    teacher_shift: float = D.SHIFT_T2V  # the teacher's sampling shift (its sub-steps follow its own schedule)
    start: StartPoint = (
        "data"  # window start: the noised data latent (PeRFlow) or the teacher's own trajectory
    )
    time_in_window: TimeInWindow = "start"  # where the student is trained: window starts only, or all of it
    guidance_mode: TeacherGuidanceMode = "apg"
    guidance_scales: list[float] = field(
        default_factory=lambda: [D.GUIDANCE_SCALE]
    )  # drawn uniformly per sample
    guidance_embeds: bool = True  # the student takes the scale as input; False folds one scale in (LoRA)
    norm_threshold: float = D.APG_NORM_THRESHOLD  # APG, as the pipeline's defaults
    momentum: float = D.APG_MOMENTUM
    eta: float = D.APG_ETA
    norm_dims: list[int] = field(default_factory=lambda: list(D.APG_NORM_DIMS))
    negative_prompt: str | None = None  # the teacher's uncond text; None = the pipeline's default negative
    base_model: str | None = None  # model folder / name whose VAE and text encoder the student uses


# The distill section's numeric keys (the training keys are checked by `TrainConfig`); APG's as the pipeline's guider
RANGES = {
    "distill.steps": at_least(1),
    "distill.shift": above(0),
    "distill.teacher_shift": above(0),
    "distill.norm_threshold": at_least(0),
    "distill.momentum": within(0, 1, high_open=True),
}


@dataclass
class DistillConfig(TrainConfig):
    output_dir: str = "runs/distill"
    distill: DistillSection = field(default_factory=DistillSection)

    def check(self) -> DistillConfig:
        d = self.distill
        check_keys(self, RANGES)
        if d.teacher_steps < d.steps:
            raise ValueError(
                f"distill.teacher_steps must be >= distill.steps ({d.steps}), got {d.teacher_steps}"
            )
        if not d.guidance_scales or any(g < 0 for g in d.guidance_scales):
            raise ValueError(
                f"distill.guidance_scales must be a non-empty list of scales >= 0, got {d.guidance_scales}"
            )
        if not d.guidance_embeds and len(set(d.guidance_scales)) != 1:
            raise ValueError(
                "a student without guidance_embeds folds in one scale; distill.guidance_scales must hold one "
                f"value, got {d.guidance_scales}"
            )
        if self.lora.rank and d.guidance_embeds:
            raise ValueError(
                "LoRA students fold one guidance scale in: set distill.guidance_embeds=false with lora.rank > 0 "
                "(the guidance embedding is a new module, trained only by full students)"
            )
        if not self.model.pretrained:
            raise ValueError(
                "distillation needs a teacher: set model.pretrained to a model or transformer folder"
            )
        if self.tread.routes or self.repa.until_step or self.i2v.probability:
            raise ValueError(
                "distillation trains text-to-video without TREAD or REPA: clear tread.routes, "
                "repa.until_step and i2v.probability"
            )
        return self


def load_distill_config(path: str | Path | None = None, overrides: list[str] | None = None) -> DistillConfig:
    data = read_config_file(path) if path is not None else {}
    return from_dict(DistillConfig, apply_overrides(data, overrides or [])).check()
