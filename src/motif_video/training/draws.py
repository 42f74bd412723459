"""Every random draw of a training step as a pure function of (seed, step, stream), so that a resumed run repeats
an uninterrupted one exactly and N processes reproduce one process with the same global batch.

Streams: 1.. are global sample indices (each sample's sigma, noise and text-dropout coin; distillation's window,
in-window time and guidance scale), 0 the step itself (the image-to-video coin), `PATTERN` its conditioning
pattern, `DATA` which data set a conditioned step draws from, `ROUTE_COIN` whether a step routes its tokens (these
the same on every rank) and `ROUTE_TOKENS + rank` TREAD's token choice (drawn per rank: the one draw that depends
on how the batch is split).
"""

from __future__ import annotations

import torch

from .. import flow
from .config import TrainConfig

STEP = 0
ROUTE_TOKENS = 10**9
ROUTE_COIN = 2 * 10**9
PATTERN = 3 * 10**9  # the image-to-video conditioning pattern of a step (the same on every rank)
DATA = 4 * 10**9  # whether a conditioned step draws from `data.conditioned_cache` (the same on every rank)


def step_generator(seed: int, step: int, stream: int, device: torch.device | str = "cpu") -> torch.Generator:
    """The generator of one (step, stream)."""
    g = torch.Generator(device=device)
    g.manual_seed(((seed * 1_000_003 + step) * 1_000_033 + stream) % (2**63 - 1))
    return g


def coin(seed: int, step: int, stream: int) -> float:
    """One uniform draw in [0, 1) from the (step, stream) generator."""
    return torch.rand(1, generator=step_generator(seed, step, stream)).item()


def conditioned(config: TrainConfig, draw_step: int) -> bool:
    """Whether step `draw_step` is image-conditioned (`i2v.probability`; the same on every rank). The batch sampler
    asks it too when conditioned steps draw from their own data (`data.conditioned_cache`)."""
    return coin(config.seed, draw_step, STEP) < config.i2v.probability


def from_conditioned_cache(config: TrainConfig, draw_step: int) -> bool:
    """Whether step `draw_step` takes its batch from `data.conditioned_cache`: a conditioned step, and then with
    probability `data.conditioned_share`."""
    d = config.data
    if d.conditioned_cache is None or not conditioned(config, draw_step):
        return False
    return d.conditioned_share >= 1 or coin(config.seed, draw_step, DATA) < d.conditioned_share


def sample_noise(
    latents: torch.Tensor, config: TrainConfig, step: int, first_sample: int, tokens: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """sigma [B], noise like latents, text-drop flags [B]: each sample from its own (seed, step, index) stream."""
    o = config.objective
    shift = o.shift * (flow.resolution_shift(tokens) if o.resolution_shift else 1.0)
    sigmas, noises, drops = [], [], []
    for i in range(latents.shape[0]):
        g = step_generator(config.seed, step, first_sample + i + 1)
        sigmas.append(flow.sample_training_sigmas(1, o.timestep_sampling, logit_mean=o.logit_mean, logit_std=o.logit_std, shift=shift, generator=g))  # fmt: skip
        noises.append(torch.randn(latents.shape[1:], generator=g))
        drops.append(torch.rand(1, generator=g) < o.text_dropout)
    device = latents.device
    return (
        torch.cat(sigmas).to(device),
        torch.stack(noises).to(device, latents.dtype),
        torch.cat(drops).to(device),
    )
