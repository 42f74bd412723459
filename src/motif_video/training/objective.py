"""What the training loop trains: an `Objective` builds the model, computes one rank's loss of one batch, and
writes the final folders. Flow matching (`flow_matching.FlowMatching`, with TREAD, REPA and image conditioning) is
the default; `motif_video.distill` plugs in guidance + step distillation.

The loop owns what every objective shares: data order, optimiser, EMA, mixed precision, checkpoints and logs.
An objective's own trainable modules beside the model (REPA's projector) are its `extras`: the loop optimises them,
wraps them with the model (`accelerator.prepare`, after which it sets `extras` to the wrapped modules) and keeps
them in checkpoints as `<name>.safetensors`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn


@dataclass(frozen=True)
class StepDraws:
    """Where one rank's random draws of a step come from (`draws.step_generator`)."""

    step: int  # the step being trained
    draw_step: (
        int  # whose streams the draws use: `step`, or 0 when every step repeats step 0 (overfit_one_batch)
    )
    first_sample: int  # global index of this rank's first sample
    process_index: int


@dataclass
class LossOutput:
    loss: torch.Tensor  # this rank's mean loss, to back-propagate
    sample_losses: torch.Tensor  # [B], detached: logged per sigma bin
    sigmas: torch.Tensor  # [B]
    metrics: dict[str, float] = field(default_factory=dict)  # logged beside the loss


class Objective(Protocol):
    extras: dict[str, nn.Module]

    def build_model(self) -> nn.Module:
        """The model to train (unwrapped, in training mode); also builds the extras."""

    def needs_components(self) -> bool:
        """Whether `prepare` needs the frozen components even when the data are fully cached."""

    def prepare(self, accelerator: Any, components: Any, data: Any) -> None:
        """Once before the loop, after wrapping: frozen helpers to the device, fixed inputs (`data`: `TrainData`)."""

    def compute_loss(
        self, model: nn.Module, inputs: dict[str, torch.Tensor], at: StepDraws
    ) -> LossOutput: ...

    def saved_extras(self, step: int) -> dict[str, nn.Module]:
        """The extras a checkpoint at `step` keeps."""

    def export(self, accelerator: Any, model: nn.Module, ema: Any) -> None:
        """The final folders (main process writes; every process calls)."""
