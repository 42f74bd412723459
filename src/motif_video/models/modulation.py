"""Adaptive LayerNorm modulation from the timestep embedding."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn


class Modulation(NamedTuple):
    shift: torch.Tensor  # [B, 1, D]
    scale: torch.Tensor  # [B, 1, D]
    gate: torch.Tensor  # [B, 1, D]

    def apply(self, normed: torch.Tensor) -> torch.Tensor:
        return normed * (1 + self.scale) + self.shift


class AdaLNZero(nn.Module):
    """Linear(SiLU(temb)) split into `count` (shift, scale, gate) triples; zero-initialised in new models."""

    def __init__(self, dim: int, count: int) -> None:
        super().__init__()
        self.count = count
        self.act = nn.SiLU()
        self.linear = nn.Linear(dim, 3 * count * dim)

    def forward(self, temb: torch.Tensor) -> list[Modulation]:
        chunks = self.linear(self.act(temb))[:, None, :].chunk(3 * self.count, dim=-1)
        return [Modulation(*chunks[3 * i : 3 * i + 3]) for i in range(self.count)]


class AdaLNContinuous(nn.Module):
    """Output head norm: LN(x) * (1 + scale) + shift, chunks ordered (scale, shift)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.act = nn.SiLU()
        self.linear = nn.Linear(dim, 2 * dim)
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.linear(self.act(temb).to(x.dtype))[:, None, :].chunk(2, dim=-1)
        return self.norm(x) * (1 + scale) + shift
