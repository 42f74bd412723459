"""Normalisation layers used by the blocks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .chunking import DEFAULT_CHUNK_TOKENS, rowwise


class RMSNorm(nn.Module):
    """RMS normalisation over the last dim (per attention head), statistics in float32, learned scale."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.chunk_tokens: int | None = DEFAULT_CHUNK_TOKENS  # float32 copies for this many tokens at a time

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, L, ...]: float32 copies for one slice of tokens at a time at inference (`chunking.rowwise`)."""
        return rowwise(self._normalise, x, chunk=self.chunk_tokens) if x.ndim > 2 else self._normalise(x)

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        variance = x.float().pow(2).mean(-1, keepdim=True)
        normed = x.float() * torch.rsqrt(variance + self.eps)
        if self.weight.dtype in (torch.float16, torch.bfloat16):
            normed = normed.to(self.weight.dtype)
        return (normed * self.weight).to(x.dtype)


def layer_norm(x: torch.Tensor) -> torch.Tensor:
    """The parameter-free LayerNorm (eps 1e-6) that every adaptive norm modulates."""
    return F.layer_norm(x, x.shape[-1:], eps=1e-6)
