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
