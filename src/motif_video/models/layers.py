"""Attention modules with QK-norm: joint (dual-stream), pre-only (single-stream) and text cross-attention.

Tensors are [B, L, D] between modules and [B, L, H, d] inside attention. RoPE rotates only the video tokens,
which always come first in a joint sequence.
"""

from __future__ import annotations

import torch
from torch import nn

from .attention import Backend, attention
from .normalization import RMSNorm
from .rope import apply_rope

Rope = tuple[torch.Tensor, torch.Tensor]


def key_padding_mask(encoder_mask: torch.Tensor | None, num_video: int) -> torch.Tensor | None:
    """Bool key mask [B, 1, 1, N + E] for a joint [video | encoder] sequence (video keys always visible)."""
    if encoder_mask is None:
        return None
    video = encoder_mask.new_ones(encoder_mask.shape[0], num_video)
    return torch.cat([video, encoder_mask], dim=1)[:, None, None, :]


def rotate_prefix(x: torch.Tensor, rope: Rope, count: int) -> torch.Tensor:
    """Apply RoPE to the first `count` tokens of x [B, L, H, d] and leave the rest unrotated."""
    if count == x.shape[1]:
        return apply_rope(x, *rope)
    return torch.cat([apply_rope(x[:, :count], *rope), x[:, count:]], dim=1)


class QKVHeads(nn.Module):
    """to_q / to_k / to_v projections split into heads, with per-head RMS QK-norm.

    `attention_backend`: this module's attention kernel (a registered name or a function), None for the process
    default; set from outside with `models.attention.use_attention_backend(model, backend)`.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.attention_backend: Backend | None = None
        self.to_q, self.to_k, self.to_v = (nn.Linear(dim, dim) for _ in range(3))
        self.norm_q, self.norm_k = RMSNorm(dim // heads), RMSNorm(dim // heads)

    def heads_of(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.heads, -1))  # [B, L, D] -> [B, L, H, d]

    def query(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm_q(self.heads_of(self.to_q(x)))

    def key(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm_k(self.heads_of(self.to_k(x)))

    def value(self, x: torch.Tensor) -> torch.Tensor:
        return self.heads_of(self.to_v(x))


class JointAttention(QKVHeads):
    """Dual-stream attention: separate projections per stream, one softmax over [video | encoder]."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__(dim, heads)
        self.add_q_proj, self.add_k_proj, self.add_v_proj = (nn.Linear(dim, dim) for _ in range(3))
        self.norm_added_q, self.norm_added_k = RMSNorm(dim // heads), RMSNorm(dim // heads)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim)])
        self.to_add_out = nn.Linear(dim, dim)

    def forward(
        self, x: torch.Tensor, e: torch.Tensor, rope: Rope, mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n = x.shape[1]
        q, k, v = apply_rope(self.query(x), *rope), apply_rope(self.key(x), *rope), self.value(x)
        eq = self.norm_added_q(self.heads_of(self.add_q_proj(e)))
        ek = self.norm_added_k(self.heads_of(self.add_k_proj(e)))
        ev = self.heads_of(self.add_v_proj(e))
        qkv = (torch.cat([q, eq], 1), torch.cat([k, ek], 1), torch.cat([v, ev], 1))
        out = attention(*qkv, mask, backend=self.attention_backend)
        out = out.flatten(2).to(x.dtype)  # [B, N + E, D]
        return self.to_out[0](out[:, :n]), self.to_add_out(out[:, n:])


class PreOnlyAttention(QKVHeads):
    """Single-stream attention over a joint sequence with shared projections and no output projection."""

    def forward(
        self, z: torch.Tensor, num_rotated: int, rope: Rope, mask: torch.Tensor | None
    ) -> torch.Tensor:
        q = rotate_prefix(self.query(z), rope, num_rotated)
        k = rotate_prefix(self.key(z), rope, num_rotated)
        return attention(q, k, self.value(z), mask, backend=self.attention_backend).flatten(2).to(z.dtype)


class CrossAttention(QKVHeads):
    """Text cross-attention with its own projections (layout A, the diffusers checkpoint layout)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__(dim, heads)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim)])

    def forward(
        self, x: torch.Tensor, text: torch.Tensor, rope: Rope, text_mask: torch.Tensor | None
    ) -> torch.Tensor:
        q = apply_rope(self.query(x), *rope)
        out = attention(q, self.key(text), self.value(text), text_mask, backend=self.attention_backend)
        return self.to_out[0](out.flatten(2).to(x.dtype))


def shared_cross_attention(
    block: nn.Module,
    self_attn: JointAttention | PreOnlyAttention,
    x: torch.Tensor,
    text: torch.Tensor,
    rope: Rope,
    text_mask: torch.Tensor | None,
) -> torch.Tensor:
    """Shared Cross-Attention (layout B, the paper's design).

    A new query path (`block.cross_attn_query_proj` + LayerNorm `block.cross_attn_query_norm`), keys, values and
    QK-norms borrowed from the block's own self-attention, and an output projection `block.cross_attn_out_proj`
    that new models zero-initialise. The parameters live on the block to keep the original checkpoint keys.
    """
    heads = self_attn.heads
    q = self_attn.norm_q(
        block.cross_attn_query_norm(block.cross_attn_query_proj(x)).unflatten(-1, (heads, -1))
    )
    q = apply_rope(q, *rope)
    k = self_attn.norm_k(self_attn.to_k(text).unflatten(-1, (heads, -1)))
    v = self_attn.to_v(text).unflatten(-1, (heads, -1))
    out = attention(q, k, v, text_mask, backend=self_attn.attention_backend)
    return block.cross_attn_out_proj(out.flatten(2).to(x.dtype))
