"""What one pipeline call runs with: its plan (`RunPlan`, filled by `MotifVideoBasePipeline.plan_run` and passed down
the stages), text states given instead of prompts (`GivenEmbeds`), and the checks of diffusers-style call arguments."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from . import prompts as P
from .guidance import GuidanceConfig
from .sampling import SamplerChoice
from .velocity import PassOptions, guider_needs_uncond


@dataclass(frozen=True)
class RunPlan:
    """One call's settings once the folder's defaults are filled in and checked: what both pipelines sample with.
    Passed down the call's stages; the last one stays readable as `pipe.last_run`."""

    prompts: list[str]
    negative_prompt: str | list[str] | None
    height: int
    width: int
    num_frames: int
    guidance: GuidanceConfig
    sampler: SamplerChoice
    sigmas: torch.Tensor  # N + 1 values, float64
    passes: PassOptions = field(default_factory=PassOptions)
    guider: Any = (
        None  # a diffusers guider component run through its own protocol (`velocity.guider_velocity`)
    )

    @property
    def needs_uncond(self) -> bool:
        if self.guider is None:
            return self.guidance.needs_uncond
        return guider_needs_uncond(self.guider, len(self.sigmas) - 1)


@dataclass(frozen=True)
class GivenEmbeds:
    """Text states computed beforehand (diffusers' `prompt_embeds`, `prompt_attention_mask`, ...), [B, L, D] and
    [B, L]; a missing mask means every token is valid."""

    prompt: torch.Tensor | None = None
    prompt_mask: torch.Tensor | None = None
    negative: torch.Tensor | None = None
    negative_mask: torch.Tensor | None = None

    @staticmethod
    def embeds(states: torch.Tensor | None, mask: torch.Tensor | None) -> P.PromptEmbeds | None:
        if states is None:
            return None
        if states.ndim != 3:
            raise ValueError(
                f"prompt embeddings must be [batch, tokens, dim], got shape {list(states.shape)}"
            )
        mask = torch.ones(states.shape[:2], dtype=torch.bool, device=states.device) if mask is None else mask
        if tuple(mask.shape) != tuple(states.shape[:2]):
            raise ValueError(
                f"attention mask shape {list(mask.shape)} does not match embeddings {list(states.shape)}"
            )
        return P.PromptEmbeds(states, mask.to(states.device).bool())

    @staticmethod
    def check_batch(prompt: torch.Tensor | None, negative: torch.Tensor | None, batch_size: int) -> None:
        """Negative embeddings have one row per prompt: as many as `prompt` embeddings when given, else
        `batch_size` (the prompts); their lengths may differ."""
        if negative is None:
            return
        if prompt is not None and negative.shape[0] != prompt.shape[0]:
            raise ValueError(
                "prompt_embeds and negative_prompt_embeds must have the same batch size (their lengths may "
                f"differ), got shapes {list(prompt.shape)} and {list(negative.shape)}"
            )
        if prompt is None and negative.shape[0] != batch_size:
            raise ValueError(
                f"negative_prompt_embeds has {negative.shape[0]} rows for {batch_size} prompts (shape "
                f"{list(negative.shape)}); pass one row per prompt"
            )


def check_strength(strength: float) -> None:
    """Video-to-video strength in (0, 1]."""
    if isinstance(strength, bool) or not isinstance(strength, int | float) or not 0.0 < strength <= 1.0:
        raise ValueError(f"strength must be in (0, 1] (1: start from pure noise), got {strength!r}")


def first_kept_step(steps: int, strength: float) -> int:
    """Video-to-video (SDEdit) at `strength` skips this many of `steps` steps: N - int(N * strength) (diffusers'
    rule), keeping at least one."""
    return min(max(steps - int(steps * strength), 0), steps - 1)


def call_prompts(prompt: str | list[str] | None, given: GivenEmbeds | None) -> list[str]:
    """The call's prompts; with `prompt_embeds` instead of a prompt, one empty placeholder per embedding row."""
    if given is not None and given.prompt is not None:
        if prompt is not None:
            raise ValueError("pass prompt or prompt_embeds, not both")
        return [""] * given.prompt.shape[0]
    return P.as_prompt_list(prompt)


def call_sigmas(timesteps: list[float] | None, sigmas: list[float] | None) -> torch.Tensor | None:
    """diffusers' `timesteps` / `sigmas` arguments as N noise levels before the shift (the scheduler shifts them,
    as diffusers' FlowMatchEulerDiscreteScheduler does); None when neither is given."""
    if timesteps is not None and sigmas is not None:
        raise ValueError("pass timesteps or sigmas, not both")
    if timesteps is None and sigmas is None:
        return None
    name, values = ("timesteps", timesteps) if sigmas is None else ("sigmas", sigmas)
    levels = torch.as_tensor(values, dtype=torch.float64).flatten() / (1000.0 if sigmas is None else 1.0)
    if (
        levels.numel() < 1
        or not bool(((levels > 0) & (levels <= 1)).all())
        or not bool((levels.diff() < 0).all())
    ):
        top = "1000" if sigmas is None else "1"
        raise ValueError(f"{name} must be strictly decreasing values in (0, {top}], got {list(values)}")
    return levels
