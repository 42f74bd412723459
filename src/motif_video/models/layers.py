"""Attention modules with QK-norm: joint (dual-stream), pre-only (single-stream) and text cross-attention.

Tensors are [B, L, D] between modules and [B, L, H, d] inside attention. RoPE rotates only the video tokens,
which always come first in a joint sequence.

The modules follow diffusers' attention conventions (`AttentionModuleMixin`): each forwards to its `processor`, so
a model's `attn_processors`, `set_attn_processor`, `fuse_qkv_projections` and `set_attention_backend` work on them.
The default processor computes attention with motif-video's backends (`models.attention`), or with diffusers'
dispatcher once `set_attention_backend` has named one of diffusers' backends.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers.models.attention import AttentionModuleMixin
from torch import nn

from .attention import Backend, attention
from .chunking import DEFAULT_CHUNK_TOKENS
from .normalization import RMSNorm
from .rope import apply_rope

Rope = tuple[torch.Tensor, torch.Tensor]


def key_padding_mask(encoder_mask: torch.Tensor | None, num_video: int) -> torch.Tensor | None:
    """Bool key mask [B, 1, 1, N + E] for a joint [video | encoder] sequence (video keys always visible)."""
    if encoder_mask is None:
        return None
    video = encoder_mask.new_ones(encoder_mask.shape[0], num_video)
    return torch.cat([video, encoder_mask], dim=1)[:, None, None, :]


def rotate_prefix(x: torch.Tensor, rope: Rope, count: int, chunk: int | None) -> torch.Tensor:
    """Apply RoPE to the first `count` tokens of x [B, L, H, d] and leave the rest unrotated."""
    if count == x.shape[1]:
        return apply_rope(x, *rope, chunk=chunk)
    return torch.cat([apply_rope(x[:, :count], *rope, chunk=chunk), x[:, count:]], dim=1)


class MotifAttnProcessor:
    """Computes a module's attention; `_attention_backend` (set by diffusers' `set_attention_backend`) picks
    diffusers' dispatcher over motif-video's backends."""

    _attention_backend = None
    _parallel_config = None

    def attend(
        self, attn: nn.Module, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        """Attention of module `attn`: its own kernel (`attn.attention_backend`, see
        `models.attention.use_attention_backend`) unless diffusers' `set_attention_backend` named one."""
        if self._attention_backend is None:
            return attention(q, k, v, mask, backend=attn.attention_backend)
        from diffusers.models.attention_dispatch import dispatch_attention_fn

        return dispatch_attention_fn(q, k, v, attn_mask=mask, backend=self._attention_backend)

    def __call__(self, attn: nn.Module, *args: Any) -> Any:
        return attn.compute(self, *args)


class QKVHeads(nn.Module, AttentionModuleMixin):
    """to_q / to_k / to_v projections split into heads, with per-head RMS QK-norm.

    `attention_backend`: this module's attention kernel (a registered name or a function), None for the process
    default; set from outside with `models.attention.use_attention_backend(model, backend)`.
    """

    _default_processor_cls = MotifAttnProcessor
    _available_processors = [MotifAttnProcessor]
    use_bias = added_proj_bias = True
    is_cross_attention = False

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.attention_backend: Backend | None = None
        # RoPE's float32 copies exist for this many tokens at a time at inference (`chunking.rowwise`)
        self.chunk_tokens: int | None = DEFAULT_CHUNK_TOKENS
        self.to_q, self.to_k, self.to_v = (nn.Linear(dim, dim) for _ in range(3))
        self.norm_q, self.norm_k = RMSNorm(dim // heads), RMSNorm(dim // heads)
        self.set_processor(MotifAttnProcessor())

    def set_processor(self, processor: Any) -> None:
        """diffusers' `set_processor`, for a `MotifAttnProcessor` (or a subclass: override `attend` to change how
        attention is computed); another processor is a ValueError here rather than a shape error at the forward."""
        if not isinstance(processor, MotifAttnProcessor):
            raise ValueError(
                f"{type(self).__name__} takes a MotifAttnProcessor (motif_video.models.layers; subclass it and "
                f"override attend(attn, q, k, v, mask)), got {type(processor).__name__}: diffusers' processors "
                "expect diffusers' attention modules"
            )
        super().set_processor(processor)

    def forward(self, *args: Any) -> Any:
        return self.processor(self, *args)

    def heads_of(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.heads, -1))  # [B, L, D] -> [B, L, H, d]

    def qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Query and key (QK-normed) and value heads of x, from one fused projection after `fuse_projections`."""
        if getattr(self, "fused_projections", False) and hasattr(self, "to_qkv"):
            q, k, v = self.to_qkv(x).chunk(3, dim=-1)
        else:
            q, k, v = self.to_q(x), self.to_k(x), self.to_v(x)
        return self.norm_q(self.heads_of(q)), self.norm_k(self.heads_of(k)), self.heads_of(v)

    def query(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm_q(self.heads_of(self.to_q(x)))

    def key_value(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if getattr(self, "fused_projections", False) and hasattr(self, "to_kv"):
            k, v = self.to_kv(x).chunk(2, dim=-1)
        else:
            k, v = self.to_k(x), self.to_v(x)
        return self.norm_k(self.heads_of(k)), self.heads_of(v)


class JointAttention(QKVHeads):
    """Dual-stream attention: separate projections per stream, one softmax over [video | encoder]."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__(dim, heads)
        self.add_q_proj, self.add_k_proj, self.add_v_proj = (nn.Linear(dim, dim) for _ in range(3))
        self.norm_added_q, self.norm_added_k = RMSNorm(dim // heads), RMSNorm(dim // heads)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim)])
        self.to_add_out = nn.Linear(dim, dim)

    def added_qkv(self, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if getattr(self, "fused_projections", False) and hasattr(self, "to_added_qkv"):
            q, k, v = self.to_added_qkv(e).chunk(3, dim=-1)
        else:
            q, k, v = self.add_q_proj(e), self.add_k_proj(e), self.add_v_proj(e)
        return self.norm_added_q(self.heads_of(q)), self.norm_added_k(self.heads_of(k)), self.heads_of(v)

    def compute(
        self,
        processor: MotifAttnProcessor,
        x: torch.Tensor,
        e: torch.Tensor,
        rope: Rope,
        mask: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n = x.shape[1]
        q, k, v = self.qkv(x)
        q, k = apply_rope(q, *rope, chunk=self.chunk_tokens), apply_rope(k, *rope, chunk=self.chunk_tokens)
        eq, ek, ev = self.added_qkv(e)
        out = processor.attend(
            self, torch.cat([q, eq], 1), torch.cat([k, ek], 1), torch.cat([v, ev], 1), mask
        )
        out = out.flatten(2).to(x.dtype)  # [B, N + E, D]
        return self.to_out[0](out[:, :n]), self.to_add_out(out[:, n:])


class PreOnlyAttention(QKVHeads):
    """Single-stream attention over a joint sequence with shared projections and no output projection."""

    def compute(
        self,
        processor: MotifAttnProcessor,
        z: torch.Tensor,
        num_rotated: int,
        rope: Rope,
        mask: torch.Tensor | None,
    ) -> torch.Tensor:
        q, k, v = self.qkv(z)
        chunk = self.chunk_tokens
        q, k = rotate_prefix(q, rope, num_rotated, chunk), rotate_prefix(k, rope, num_rotated, chunk)
        return processor.attend(self, q, k, v, mask).flatten(2).to(z.dtype)


class CrossAttention(QKVHeads):
    """Text cross-attention with its own projections (the "separate" layout, diffusers' checkpoint layout)."""

    is_cross_attention = True

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__(dim, heads)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim)])

    def compute(
        self, processor: MotifAttnProcessor, x: torch.Tensor, text: torch.Tensor, rope: Rope,
        text_mask: torch.Tensor | None,
    ) -> torch.Tensor:  # fmt: skip
        q = apply_rope(self.query(x), *rope, chunk=self.chunk_tokens)
        k, v = self.key_value(text)
        return self.to_out[0](processor.attend(self, q, k, v, text_mask).flatten(2).to(x.dtype))


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
    q = apply_rope(q, *rope, chunk=self_attn.chunk_tokens)
    k = self_attn.norm_k(self_attn.to_k(text).unflatten(-1, (heads, -1)))
    v = self_attn.to_v(text).unflatten(-1, (heads, -1))
    return block.cross_attn_out_proj(
        self_attn.processor.attend(self_attn, q, k, v, text_mask).flatten(2).to(x.dtype)
    )
