"""The one time convention of motif-video, shared by the sampler and the trainer.

    sigma in [0, 1], sigma = 1 is pure noise, sigma = 0 is data
    x_sigma  = (1 - sigma) * x0 + sigma * eps
    velocity = eps - x0                       (what the transformer predicts)
    timestep = 1000 * sigma                   (what the transformer receives)
    Euler:   x_{sigma'} = x_sigma + (sigma' - sigma) * velocity

Nothing else in the package converts between sigma and timestep or builds noisy latents by hand.
"""

from __future__ import annotations

import math

import torch

NUM_TRAIN_TIMESTEPS = 1000


def timestep_from_sigma(sigma: torch.Tensor | float) -> torch.Tensor | float:
    """Scale used by the transformer's timestep embedding (0..1000)."""
    return sigma * NUM_TRAIN_TIMESTEPS


def noisy_latents(x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """x_sigma = (1 - sigma) x0 + sigma eps; `sigma` is [B] and broadcast over the other dims."""
    s = _expand(sigma, x0)
    return (1.0 - s) * x0 + s * noise


def velocity_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """v = eps - x0."""
    return noise - x0


def predicted_x0(x_sigma: torch.Tensor, velocity: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """x0 = x_sigma - sigma v (inverts the convention above)."""
    return x_sigma - _expand(sigma, x_sigma) * velocity


def euler_step(
    x_sigma: torch.Tensor, velocity: torch.Tensor, sigma: float, sigma_next: float
) -> torch.Tensor:
    """One Euler step of the flow ODE, computed in float32 and returned in the input dtype."""
    out = x_sigma.float() + (sigma_next - sigma) * velocity.float()
    return out.to(x_sigma.dtype)


def shift_sigmas(sigmas: torch.Tensor, shift: float) -> torch.Tensor:
    """Static time shift sigma' = s sigma / (1 + (s - 1) sigma) (s > 1 spends more steps near noise)."""
    if shift <= 0:
        raise ValueError(f"shift must be > 0, got {shift}")
    return shift * sigmas / (1.0 + (shift - 1.0) * sigmas)


def unshift_sigmas(sigmas: torch.Tensor, shift: float) -> torch.Tensor:
    """Inverse of `shift_sigmas`: sigma = sigma' / (s - (s - 1) sigma')."""
    if shift <= 0:
        raise ValueError(f"shift must be > 0, got {shift}")
    return sigmas / (shift - (shift - 1.0) * sigmas)


def sampling_sigmas(num_steps: int, shift: float) -> torch.Tensor:
    """The released sampler's schedule: linspace(1, 1/N, N), shifted, then a final 0 (N + 1 values, float64)."""
    if num_steps < 1:
        raise ValueError(f"num_inference_steps must be >= 1, got {num_steps}")
    base = torch.linspace(1.0, 1.0 / num_steps, num_steps, dtype=torch.float64)
    return torch.cat([shift_sigmas(base, shift), torch.zeros(1, dtype=torch.float64)])


def resolution_shift(num_tokens: int, base_tokens: int = 4096, base_shift: float = 1.0) -> float:
    """Shift that keeps the signal-to-noise ratio per token constant across resolutions: sqrt(N / N_base)."""
    return base_shift * math.sqrt(max(num_tokens, 1) / base_tokens)


def _expand(sigma: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    sigma = torch.as_tensor(sigma, device=like.device, dtype=like.dtype)
    return sigma.reshape(sigma.shape + (1,) * (like.ndim - sigma.ndim))


# ------------------------------------------------------------------------------------------------------------------
# Training objective: timestep sampling, the velocity loss, text dropout and per-timestep-bin logging.

TIMESTEP_SAMPLINGS = ("uniform", "logit_normal")


def sample_training_sigmas(
    batch: int,
    sampling: str = "logit_normal",
    *,
    logit_mean: float = 0.0,
    logit_std: float = 1.0,
    shift: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Training noise levels [B] (float32, CPU): uniform or logit-normal on (0, 1), then the static shift.

    Logit-normal: sigma = sigmoid(m + s n), n ~ N(0, 1) (SD3's choice; concentrates on the middle of the path).
    `shift` > 1 moves mass towards noise as `shift_sigmas` does at sampling; pass `resolution_shift(tokens)`
    to keep the per-token signal-to-noise ratio constant across buckets.
    """
    if sampling == "uniform":
        sigma = torch.rand(batch, generator=generator)
    elif sampling == "logit_normal":
        sigma = torch.sigmoid(logit_mean + logit_std * torch.randn(batch, generator=generator))
    else:
        raise ValueError(f"timestep sampling must be one of {TIMESTEP_SAMPLINGS}, got {sampling!r}")
    return shift_sigmas(sigma, shift) if shift != 1.0 else sigma


def velocity_loss(
    prediction: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor, first_frame_weight: float = 1.0
) -> torch.Tensor:
    """Per-sample mean squared error [B] between the predicted velocity and v = eps - x0, in float32.

    Latents are [B, C, T, H, W]. `first_frame_weight` weights latent frame 0 against the others (each 1) in a
    weighted mean over frames: the causal VAE encodes frame 0 alone, so under one normalisation it carries a
    fraction of the other frames' variance and, at weight 1, a fraction of their share of the loss.
    """
    return frame_weighted_mse(prediction, velocity_target(x0.float(), noise.float()), first_frame_weight)


def frame_weighted_mse(
    prediction: torch.Tensor, target: torch.Tensor, first_frame_weight: float = 1.0
) -> torch.Tensor:
    """Per-sample mean squared error [B] of latents [B, C, T, H, W] in float32, latent frame 0 weighted
    `first_frame_weight` against the others (each 1) in a weighted mean over frames; 1.0 is the plain mean."""
    error = (prediction.float() - target.float()).pow(2)
    if first_frame_weight == 1.0:
        return error.flatten(1).mean(dim=1)
    if first_frame_weight < 0:
        raise ValueError(f"first_frame_weight={first_frame_weight} must be >= 0")
    per_frame = error.transpose(1, 2).flatten(2).mean(dim=2)  # [B, T]
    weights = torch.ones(per_frame.shape[1], device=error.device)
    weights[0] = first_frame_weight
    return (per_frame * weights).sum(dim=1) / weights.sum()


def drop_text(
    embeds: torch.Tensor,
    mask: torch.Tensor,
    null_embeds: torch.Tensor,
    null_mask: torch.Tensor,
    drop: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace the text of samples where `drop` [B] is True by the empty prompt's encoding (guidance training).

    embeds [B, E, C], mask [B, E]; null_embeds [E0, C], null_mask [E0] are padded or cut to E (the empty prompt
    is BOS plus padding, so cutting keeps its valid tokens).
    """
    length = embeds.shape[1]
    null_embeds, null_mask = null_embeds[:length], null_mask[:length]
    pad = length - null_embeds.shape[0]
    if pad > 0:
        null_embeds = torch.cat([null_embeds, null_embeds.new_zeros(pad, null_embeds.shape[1])])
        null_mask = torch.cat([null_mask, null_mask.new_zeros(pad)])
    keep = ~drop.to(embeds.device)
    embeds = torch.where(keep[:, None, None], embeds, null_embeds.to(embeds))
    mask = torch.where(keep[:, None], mask, null_mask.to(mask))
    return embeds, mask


def timestep_bins(
    sigmas: torch.Tensor, losses: torch.Tensor, num_bins: int = 10
) -> dict[str, tuple[float, int]]:
    """Sum of losses and count per sigma bin, keyed 'sigma_0.0-0.1' etc. (the most useful training diagnostic)."""
    index = (sigmas.detach().float().clamp(0, 1 - 1e-6) * num_bins).long().cpu()
    losses = losses.detach().float().cpu()
    out: dict[str, tuple[float, int]] = {}
    for b in index.unique().tolist():
        sel = index == b
        out[f"sigma_{b / num_bins:.1f}-{(b + 1) / num_bins:.1f}"] = (float(losses[sel].sum()), int(sel.sum()))
    return out
