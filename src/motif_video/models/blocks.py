"""The repeated blocks: dual-stream (MM-DiT) and single-stream (encoder side and DDT decoder).

Both take and return (x, y) (named `hidden_states`, `encoder_hidden_states` as diffusers' cache hooks expect): x the video tokens (rotated by RoPE), y the other stream (text and image tokens on the
encoder side; the encoder's output in the decoder). `encoder_mask` [B, E] marks valid y tokens (None: all valid).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .chunking import DEFAULT_CHUNK_TOKENS, rowwise
from .layers import (
    CrossAttention,
    JointAttention,
    PreOnlyAttention,
    Rope,
    key_padding_mask,
    shared_cross_attention,
)
from .modulation import AdaLNZero
from .normalization import layer_norm

CrossAttentionLayout = Literal["separate", "shared"]
CROSS_ATTENTION_LAYOUTS: tuple[str, ...] = ("separate", "shared")


class GELUProjection(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.proj(x), approximate="tanh")


class FeedForward(nn.Module):
    """Linear -> GELU(tanh) -> Linear, laid out as `net.0.proj`, `net.2` (net.1 holds no weights).

    `chunk_tokens`: at inference the 4x hidden layer exists for this many tokens at a time (None: all at once).
    """

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.ModuleList([GELUProjection(dim, hidden), nn.Identity(), nn.Linear(hidden, dim)])
        self.chunk_tokens: int | None = DEFAULT_CHUNK_TOKENS

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, L, D]
        return rowwise(self._rows, x, chunk=self.chunk_tokens)

    def _rows(self, x: torch.Tensor) -> torch.Tensor:
        return self.net[2](self.net[0](x))


class TextCrossAttentionMixin:
    """Adds text cross-attention to a block in one of the two checkpoint layouts."""

    cross_attention_layout: CrossAttentionLayout | None

    def _init_cross_attention(self, dim: int, heads: int, layout: CrossAttentionLayout | None) -> None:
        if layout not in (None, *CROSS_ATTENTION_LAYOUTS):
            raise ValueError(
                f"cross_attention_layout must be one of {CROSS_ATTENTION_LAYOUTS}, got {layout!r}"
            )
        self.cross_attention_layout = layout
        if layout == "separate":
            self.cross_attn = CrossAttention(dim, heads)
        elif layout == "shared":
            self.cross_attn_query_proj = nn.Linear(dim, dim)
            self.cross_attn_query_norm = nn.LayerNorm(dim, eps=1e-6)
            self.cross_attn_out_proj = nn.Linear(dim, dim)

    def text_cross_attention(
        self, x: torch.Tensor, text: torch.Tensor, rope: Rope, text_mask: torch.Tensor | None
    ) -> torch.Tensor:
        mask = None if text_mask is None else text_mask[:, None, None, :]
        if self.cross_attention_layout == "separate":
            return self.cross_attn(x, text, rope, mask)
        return shared_cross_attention(self, self.attn, x, text, rope, mask)


class DualStreamBlock(TextCrossAttentionMixin, nn.Module):
    """MM-DiT block: per-stream weights, one joint attention over [video | text]."""

    def __init__(
        self, dim: int, heads: int, mlp_ratio: float, cross_attention: CrossAttentionLayout | None = None
    ) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = AdaLNZero(dim, count=2)
        self.norm1_context = AdaLNZero(dim, count=2)
        self.attn = JointAttention(dim, heads)
        self.ff = FeedForward(dim, hidden)
        self.ff_context = FeedForward(dim, hidden)
        self._init_cross_attention(dim, heads, cross_attention)

    def forward(
        self,
        hidden_states: torch.Tensor,  # x [B, N, D] video
        encoder_hidden_states: torch.Tensor,  # y [B, E, D] image + text
        temb: torch.Tensor,  # [B, D]
        rope: Rope,  # cos, sin [N, d] or [B, N, d]
        encoder_mask: torch.Tensor | None,  # [B, E] bool
        image_tokens: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = hidden_states, encoder_hidden_states
        mod_x_attn, mod_x_mlp = self.norm1(temb)
        mod_y_attn, mod_y_mlp = self.norm1_context(temb)
        y_normed = mod_y_attn.apply(layer_norm(y))
        mask = key_padding_mask(encoder_mask, x.shape[1])
        attn_x, attn_y = self.attn(
            mod_x_attn.apply(layer_norm(x)), y_normed, rope, mask
        )  # [B, N, D], [B, E, D]
        x = x + mod_x_attn.gate * attn_x
        if self.cross_attention_layout is not None:
            text_mask = None if encoder_mask is None else encoder_mask[:, image_tokens:]
            x = x + self.text_cross_attention(attn_x, y_normed[:, image_tokens:], rope, text_mask)
        y = y + mod_y_attn.gate * attn_y
        x = x + mod_x_mlp.gate * self.ff(mod_x_mlp.apply(layer_norm(x)))
        y = y + mod_y_mlp.gate * self.ff_context(mod_y_mlp.apply(layer_norm(y)))
        return x, y


class SingleStreamBlock(TextCrossAttentionMixin, nn.Module):
    """Parallel attention + MLP over the joint sequence [x | y] with shared weights (Flux-style)."""

    def __init__(
        self, dim: int, heads: int, mlp_ratio: float, cross_attention: CrossAttentionLayout | None = None
    ) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.attn = PreOnlyAttention(dim, heads)
        self._init_cross_attention(dim, heads, cross_attention)
        self.norm = AdaLNZero(dim, count=1)
        self.proj_mlp = nn.Linear(dim, hidden)
        self.proj_out = nn.Linear(dim + hidden, dim)
        # at inference the MLP and the [attention | MLP] concatenation exist for this many tokens at a time
        self.chunk_tokens: int | None = DEFAULT_CHUNK_TOKENS

    def forward(
        self,
        hidden_states: torch.Tensor,  # x [B, Nx, D] rotated stream
        encoder_hidden_states: torch.Tensor,  # y [B, Ny, D]
        temb: torch.Tensor,  # [B, D]
        rope: Rope,
        encoder_mask: torch.Tensor | None,  # [B, Ny] bool
        image_tokens: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = hidden_states, encoder_hidden_states
        n = x.shape[1]
        z = torch.cat([x, y], dim=1)  # [B, Nx + Ny, D]
        (mod,) = self.norm(temb)
        z_normed = mod.apply(layer_norm(z))
        attn = self.attn(z_normed, n, rope, key_padding_mask(encoder_mask, n))  # [B, Nx + Ny, D]
        if self.cross_attention_layout is not None:
            text_mask = None if encoder_mask is None else encoder_mask[:, image_tokens:]
            cross = self.text_cross_attention(attn[:, :n], z_normed[:, n + image_tokens :], rope, text_mask)
            attn = torch.cat([attn[:, :n] + cross, attn[:, n:]], dim=1)
        z = z + mod.gate * rowwise(self._mlp_and_out, attn, z_normed, chunk=self.chunk_tokens)
        return z[:, :n], z[:, n:]

    def _mlp_and_out(self, attn: torch.Tensor, z_normed: torch.Tensor) -> torch.Tensor:
        mlp = F.gelu(self.proj_mlp(z_normed), approximate="tanh")  # [B, L, D * r]
        return self.proj_out(torch.cat([attn, mlp], dim=-1))
