"""Piecewise rectified flow (PeRFlow, Yan et al. 2024, arXiv 2405.07510) with the teacher's guidance folded in.

The student's K sampling steps cut the path into K windows [sigma_k, sigma_{k+1}] (`flow.sampling_sigmas(K, shift)`).
In each window the frozen teacher, guided (APG or CFG at scale g), integrates the flow ODE from a start latent x_a
to x_b with many Euler sub-steps. The student is trained to move in a straight line across the window:

    v*      = (x_b - x_a) / (sigma_b - sigma_a)                 the window's mean velocity (a constant)
    x_tau   = x_a + tau (x_b - x_a),  sigma_tau = sigma_a + tau (sigma_b - sigma_a)
    loss    = | student(x_tau, sigma_tau, text, g) - v* |^2

so one Euler step per window reproduces the guided teacher's trajectory: K transformer passes instead of 2 N.
`tau` is 0 (train where the sampler evaluates, our default) or uniform in [0, 1) (PeRFlow's reflow). The window
start is the noised data latent (PeRFlow) or the teacher's own guided trajectory from pure noise.
All functions are pure; sigma tensors are per sample [B].
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .. import flow
from ..pipelines.guidance import GuidanceConfig, guide

VelocityFn = Callable[
    [torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]
]  # (x, sigma) -> cond, uncond


def guided_velocity(
    cond: torch.Tensor,
    uncond: torch.Tensor,
    scale: torch.Tensor,
    guidance: GuidanceConfig,
    running: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The pipelines' guided prediction (`pipelines.guidance.guide`) with a per-sample scale [B], and APG's running
    difference for the next sub-step."""
    if guidance.mode not in ("apg", "cfg"):
        raise ValueError(f"teacher guidance must be 'apg' or 'cfg', got {guidance.mode!r}")
    s = scale.to(cond.dtype).reshape(-1, *([1] * (cond.ndim - 1)))
    return guide(cond, uncond, s, guidance, running)


def window_substeps(
    sigma_a: torch.Tensor, sigma_b: torch.Tensor, substeps: int, teacher_shift: float
) -> torch.Tensor:
    """[B, substeps + 1] teacher sigmas from sigma_a to sigma_b, evenly spaced before the teacher's shift (so the
    sub-steps are as dense as in the teacher's own N-step schedule)."""
    u_a, u_b = (
        flow.unshift_sigmas(sigma_a.double(), teacher_shift),
        flow.unshift_sigmas(sigma_b.double(), teacher_shift),
    )
    frac = torch.linspace(0.0, 1.0, substeps + 1, dtype=torch.float64, device=sigma_a.device)
    u = u_a[:, None] + (u_b - u_a)[:, None] * frac[None]
    sig = flow.shift_sigmas(u, teacher_shift)
    sig[:, 0], sig[:, -1] = sigma_a, sigma_b  # exact ends
    return sig


@torch.no_grad()
def solve(
    velocity: VelocityFn,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    scale: torch.Tensor,
    guidance: GuidanceConfig,
    running: torch.Tensor | None = None,
    active: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Guided Euler from sigmas[:, 0] to sigmas[:, -1] (per sample); samples with `active` False stay put."""
    for j in range(sigmas.shape[1] - 1):
        sigma, sigma_next = sigmas[:, j], sigmas[:, j + 1]
        cond, uncond = velocity(x, sigma.float())
        v, new_running = guided_velocity(cond, uncond, scale, guidance, running)
        step = (sigma_next - sigma).to(x.dtype).reshape(-1, *([1] * (x.ndim - 1)))
        if active is not None:  # finished samples keep their latent and their APG history
            keep = active.reshape(-1, *([1] * (x.ndim - 1)))
            step = step * keep.to(x.dtype)
            if new_running is not None and running is not None:
                new_running = torch.where(keep, new_running, running)
        running = new_running
        x = (x.float() + step.float() * v.float()).to(x.dtype)
    return x, running


@dataclass
class WindowTargets:
    x: torch.Tensor  # student input latent x_tau [B, C, T, H, W]
    sigma: torch.Tensor  # sigma_tau [B]
    velocity: torch.Tensor  # v* [B, C, T, H, W]


@torch.no_grad()
def window_targets(
    velocity: VelocityFn,
    x0: torch.Tensor,
    noise: torch.Tensor,
    window: torch.Tensor,
    tau: torch.Tensor,
    scale: torch.Tensor,
    student_sigmas: torch.Tensor,
    substeps: int,
    teacher_shift: float,
    guidance: GuidanceConfig,
    start: str = "data",
) -> WindowTargets:
    """Training inputs and targets of one batch: `window` [B] (int), `tau` [B] in [0, 1), `scale` [B]."""
    sig = student_sigmas.to(x0.device)
    sigma_a, sigma_b = sig[window].double(), sig[window + 1].double()
    if start == "data":
        x_a, running = flow.noisy_latents(x0, noise, sigma_a.to(x0.dtype)), None
    elif start == "teacher":  # the guided teacher from pure noise through the earlier windows
        x_a, running = noise.clone(), None
        for k in range(int(window.max())):
            ks = torch.full_like(window, k)
            steps = window_substeps(sig[ks].double(), sig[ks + 1].double(), substeps, teacher_shift)
            x_a, running = solve(velocity, x_a, steps, scale, guidance, running, active=window > k)
    else:
        raise ValueError(f"distill.start must be 'data' or 'teacher', got {start!r}")
    steps = window_substeps(sigma_a, sigma_b, substeps, teacher_shift)
    x_b, _ = solve(velocity, x_a, steps, scale, guidance, running)
    delta = (sigma_b - sigma_a).to(x0.dtype).reshape(-1, *([1] * (x0.ndim - 1)))
    t = tau.to(x0.dtype).reshape_as(delta)
    return WindowTargets(
        x=x_a + t * (x_b - x_a),
        sigma=(sigma_a + tau.double() * (sigma_b - sigma_a)).float(),
        velocity=(x_b - x_a) / delta,
    )
