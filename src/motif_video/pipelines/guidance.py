"""Guidance: Adaptive Projected Guidance (APG), plain classifier-free guidance, or none.

All functions are pure except `Guider`, which holds APG's momentum buffer for one sampling run (`guide` is the
same step with the buffer passed in and out, and a per-sample scale allowed: the distillation teacher uses it).

APG (Sadat et al. 2024, arXiv 2410.02416), original formulation, as released:
    d_t   = (cond - uncond) + momentum * d_{t-1}                 running difference (momentum before clipping)
    d     = d_t * min(1, norm_threshold / ||d_t||)               clip the norm over `norm_dims`
    d_par = <d, c> / <c, c> * c,  c = cond                       projection on cond over `norm_dims` (float64)
    pred  = cond + scale * ((d - d_par) + eta * d_par)
CFG:  pred = uncond + scale * (cond - uncond)                    (the usual formulation; scale 1 = cond only)
none: pred = cond
On a [B, C, T, H, W] velocity, norm dims (-1, -2, -4) (W, H, C: one norm per latent frame) are the default (what
diffusers' Motif documentation configures, and what the pipelines use without a guider component); (-1, -2, -3)
(W, H, T: one norm per channel) with eta 0 is Motif's ComfyUI workflow setting. A diffusers APG guider whose config
names no norm dims takes one norm over the whole video, (-1, -2, -3, -4), as diffusers' guider does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .. import defaults as D
from ..choices import GUIDANCE_MODES, GuidanceMode

# one norm over every non-batch dim of a [B, C, T, H, W] velocity
WHOLE_VIDEO = (-1, -2, -3, -4)


@dataclass(frozen=True)
class GuidanceConfig:
    mode: GuidanceMode = D.GUIDANCE  # type: ignore[assignment]
    scale: float = D.GUIDANCE_SCALE
    norm_threshold: float = D.APG_NORM_THRESHOLD
    momentum: float = D.APG_MOMENTUM
    eta: float = D.APG_ETA
    norm_dims: tuple[int, ...] = D.APG_NORM_DIMS

    def __post_init__(self) -> None:
        if self.mode not in GUIDANCE_MODES:
            raise ValueError(f"guidance must be one of {list(GUIDANCE_MODES)}, got {self.mode!r}")
        if not math.isfinite(self.scale) or self.scale < 0:
            raise ValueError(f"guidance_scale must be a finite number >= 0, got {self.scale}")
        if self.norm_threshold < 0:
            raise ValueError(f"norm_threshold must be >= 0 (0 disables clipping), got {self.norm_threshold}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        dims = tuple(self.norm_dims)
        if (
            not dims
            or any(d not in (-1, -2, -3, -4, 1, 2, 3, 4) for d in dims)
            or len(set(dims)) != len(dims)
        ):
            raise ValueError(
                f"norm_dims must be distinct non-batch dims of [B, C, T, H, W] (from -4..-1 or 1..4), got {dims}"
            )
        object.__setattr__(self, "norm_dims", dims)

    @property
    def needs_uncond(self) -> bool:
        """Whether an unconditional prediction is used at all (APG scale 0 and CFG scale 1 reduce to cond)."""
        if self.mode == "apg":
            return not math.isclose(self.scale, 0.0)
        if self.mode == "cfg":
            return not math.isclose(self.scale, 1.0)
        return False


def clip_norm(diff: torch.Tensor, threshold: float, dims: tuple[int, ...]) -> torch.Tensor:
    """diff * min(1, threshold / ||diff||) with the norm taken over `dims`; threshold 0 disables clipping."""
    if threshold <= 0:
        return diff
    norm = diff.norm(p=2, dim=dims, keepdim=True)
    return diff * torch.clamp(threshold / norm, max=1.0)


def project(
    diff: torch.Tensor, onto: torch.Tensor, dims: tuple[int, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(parallel, orthogonal) parts of `diff` relative to `onto` over `dims`, computed in float64."""
    d, c = diff.double(), onto.double()
    unit = torch.nn.functional.normalize(c, dim=dims)
    parallel = (d * unit).sum(dim=dims, keepdim=True) * unit
    return parallel.to(diff.dtype), (d - parallel).to(diff.dtype)


def apg(
    cond: torch.Tensor,
    running_diff: torch.Tensor,
    scale: float,
    norm_threshold: float,
    eta: float,
    dims: tuple[int, ...],
) -> torch.Tensor:
    """APG prediction from the conditional prediction and the (momentum-averaged) difference cond - uncond."""
    parallel, orthogonal = project(clip_norm(running_diff, norm_threshold, dims), cond, dims)
    return cond + scale * (orthogonal + eta * parallel)


def cfg(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    return uncond + scale * (cond - uncond)


def guide(
    cond: torch.Tensor,
    uncond: torch.Tensor,
    scale: float | torch.Tensor,
    config: GuidanceConfig,
    running_diff: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One guided prediction and APG's running difference for the next step (the caller keeps it; None for CFG).
    `scale` (used instead of `config.scale`): a float, or a tensor broadcastable to `cond` (one scale per sample)."""
    if config.mode == "cfg":
        return cfg(cond, uncond, scale), None
    if config.mode == "none":
        return cond, None
    diff = cond - uncond
    if running_diff is not None and config.momentum:
        diff = diff + config.momentum * running_diff
    return apg(cond, diff, scale, config.norm_threshold, config.eta, config.norm_dims), diff


class Guider:
    """Combines cond / uncond predictions step by step; holds APG's momentum buffer for one sampling run."""

    def __init__(self, config: GuidanceConfig) -> None:
        self.config = config
        self.running_diff: torch.Tensor | None = None

    def __call__(
        self, cond: torch.Tensor, uncond: torch.Tensor | None, scale: float | None = None
    ) -> torch.Tensor:
        """`scale`: this step's guidance scale (a callback may change it between steps); default the config's."""
        c = self.config
        if not c.needs_uncond:
            return cond
        if uncond is None:
            raise ValueError(f"guidance {c.mode!r} at scale {c.scale} needs an unconditional prediction")
        scale = c.scale if scale is None else scale
        prediction, self.running_diff = guide(cond, uncond, scale, c, self.running_diff)
        return prediction


def runs_own_protocol(guider) -> bool:
    """Whether a diffusers guider component must run through its own protocol (`velocity.guider_velocity`): any
    guider but APG in its original formulation and CFG in the usual one, or those with rescaling or a start/stop
    window, which `GuidanceConfig` does not express."""
    if guider is None:
        return False
    name, config = type(guider).__name__, dict(getattr(guider, "config", {}))
    plain = config.get("guidance_rescale", 0.0) == 0.0 and (config.get("start", 0.0), config.get("stop", 1.0)) == (
        0.0, 1.0,
    )  # fmt: skip
    if name == "AdaptiveProjectedGuidance":
        return not (plain and config.get("use_original_formulation") is True)
    if name == "ClassifierFreeGuidance":
        return not (plain and not config.get("use_original_formulation", False))
    return True


def config_from_guider(guider, **overrides) -> GuidanceConfig:
    """A `GuidanceConfig` from a diffusers guider component (as found in a model folder's `guider/`), or defaults.

    `overrides` with value None are ignored. An unknown guider class is an error naming the supported ones.
    """
    values: dict = {}
    if guider is not None:
        name = type(guider).__name__
        cfg_ = dict(getattr(guider, "config", {}))
        if name == "AdaptiveProjectedGuidance":
            values = {"mode": "apg", "scale": cfg_.get("guidance_scale", D.GUIDANCE_SCALE)}
            if cfg_.get("adaptive_projected_guidance_rescale") is not None:
                values["norm_threshold"] = cfg_["adaptive_projected_guidance_rescale"]
            values["momentum"] = cfg_.get("adaptive_projected_guidance_momentum") or 0.0
            if cfg_.get("eta") is not None:
                values["eta"] = cfg_["eta"]
            dims = cfg_.get("adaptive_projected_guidance_norm_dim")
            if dims is None:  # diffusers' guider then takes one norm over every non-batch dim
                values["norm_dims"] = WHOLE_VIDEO
            else:
                values["norm_dims"] = (dims,) if isinstance(dims, int) else tuple(dims)
            if cfg_.get("use_original_formulation") is False:
                raise ValueError(
                    "guider config has use_original_formulation=False; motif-video implements APG's original "
                    "formulation (use_original_formulation=True) only"
                )
        elif name == "ClassifierFreeGuidance":
            values = {"mode": "cfg", "scale": cfg_.get("guidance_scale", D.GUIDANCE_SCALE)}
        else:
            raise ValueError(
                f"guider {name} is not supported; supported: AdaptiveProjectedGuidance, ClassifierFreeGuidance"
            )
    values.update({k: v for k, v in overrides.items() if v is not None})
    return GuidanceConfig(**values)
