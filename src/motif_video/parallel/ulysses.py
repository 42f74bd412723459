"""Ulysses sequence-parallel attention: all-to-all from "tokens split across ranks" to "heads split across ranks".

Each rank holds a slice of every sharded token segment (the video tokens; in the DDT decoder both the decoder
stream and the encoder output) and, optionally, a replicated tail (text and image tokens, the same on every rank).
For q, k and v:

1. Pad the heads to a multiple of the world size P with zero heads (12 heads on 8 ranks -> 16; the padded heads
   are computed and discarded, so P need not divide the head count).
2. All-to-all: rank r sends head group j of its local tokens to rank j and receives head group r of every rank's
   tokens: [B, n_r, H, D] -> [B, N, H/P, D]. Ranks may hold different token counts (uneven split).
3. The replicated tail needs no communication: each rank takes its own head group.
4. Attention over the full sequence for H/P heads with the inner backend (the mask's video part is all-valid).
5. The inverse all-to-all returns the sharded tokens with all heads; the tail's head groups are all-gathered.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist

InnerAttention = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


@dataclass(frozen=True)
class SequenceLayout:
    """How the local sequence is made: `segments` sharded segments of counts[rank] tokens each, then a tail."""

    counts: tuple[int, ...]  # tokens per rank in each sharded segment
    segments: int  # 1 on the encoder side (video), 2 in the decoder (decoder stream, encoder output)
    replicated: int  # trailing tokens identical on every rank (text + image), 0 in the decoder


def split_counts(total: int, world: int) -> tuple[int, ...]:
    """Token counts per rank: as even as possible, the first total % world ranks get one more."""
    if total < world:
        raise ValueError(
            f"context parallelism needs at least one video token per rank: {total} tokens, {world} ranks"
        )
    return tuple(total // world + (r < total % world) for r in range(world))


def _pad_heads(x: torch.Tensor, world: int) -> torch.Tensor:
    pad = -x.shape[2] % world
    return torch.nn.functional.pad(x, (0, 0, 0, pad)) if pad else x


def _scatter_heads(x: torch.Tensor, layout: SequenceLayout, group: dist.ProcessGroup | None) -> torch.Tensor:
    """Sharded local tokens [B, m n_r, Hp, D] -> full sequence for this rank's heads [B, m N, Hp/P, D]."""
    world, rank = dist.get_world_size(group), dist.get_rank(group)
    b, _, hp, d = x.shape
    h = hp // world
    m = layout.segments
    send = x.reshape(b, m * layout.counts[rank], world, h, d).permute(2, 0, 1, 3, 4).contiguous()
    sizes = [b * m * n * h * d for n in layout.counts]
    recv = x.new_empty(sum(sizes))
    dist.all_to_all_single(recv, send.flatten(), sizes, [send[0].numel()] * world, group=group)
    pieces = [p.view(b, m, n, h, d) for p, n in zip(recv.split(sizes), layout.counts)]
    return torch.cat([torch.cat([p[:, s] for p in pieces], dim=1) for s in range(m)], dim=1)


def _gather_heads(x: torch.Tensor, layout: SequenceLayout, group: dist.ProcessGroup | None) -> torch.Tensor:
    """Inverse of `_scatter_heads`: [B, m N, Hp/P, D] -> [B, m n_r, Hp, D]."""
    world, rank = dist.get_world_size(group), dist.get_rank(group)
    b, _, h, d = x.shape
    m, counts = layout.segments, layout.counts
    segments = [s.split(counts, dim=1) for s in x.chunk(m, dim=1)]  # [segment][rank] -> [B, n_rank, h, d]
    send = torch.cat([torch.stack([segments[s][r] for s in range(m)], dim=1).flatten() for r in range(world)])
    n = counts[rank]
    recv = x.new_empty(world * b * m * n * h * d)
    sizes = [b * m * c * h * d for c in counts]
    dist.all_to_all_single(recv, send, [recv.numel() // world] * world, sizes, group=group)
    out = recv.view(world, b, m, n, h, d).permute(1, 2, 3, 0, 4, 5)  # [B, m, n, P, h, d]
    return out.reshape(b, m * n, world * h, d)


def ulysses_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    layout: SequenceLayout,
    inner: InnerAttention,
    group: dist.ProcessGroup | None = None,
) -> torch.Tensor:
    """Attention over the global sequence for local [B, L, H, D] tensors laid out as `layout` says."""
    world, rank = dist.get_world_size(group), dist.get_rank(group)
    heads = q.shape[2]
    sharded = layout.segments * layout.counts[rank]
    if q.shape[1] != sharded + layout.replicated or k.shape[1] != q.shape[1]:
        raise ValueError(
            f"context-parallel attention expected {sharded} local sharded + {layout.replicated} replicated "
            f"tokens, got queries {q.shape[1]} and keys {k.shape[1]}"
        )
    h = -(-heads // world)
    full = []
    for t in (q, k, v):
        t = _pad_heads(t, world)
        part = _scatter_heads(t[:, :sharded].contiguous(), layout, group)
        tail = t[:, sharded:, rank * h : (rank + 1) * h]
        full.append(torch.cat([part, tail], dim=1))
    if mask is not None:
        video = mask.new_ones(*mask.shape[:-1], full[1].shape[1] - layout.replicated)
        mask = torch.cat([video, mask[..., sharded:]], dim=-1)
    out = inner(*full, mask)  # [B, m N + R, h, D]
    total = out.shape[1] - layout.replicated
    video = _gather_heads(out[:, :total].contiguous(), layout, group)[:, :, :heads]
    if not layout.replicated:
        return video
    tails = [torch.empty_like(out[:, total:]) for _ in range(world)]
    dist.all_gather(tails, out[:, total:].contiguous(), group=group)
    return torch.cat([video, torch.cat(tails, dim=2)[:, :, :heads]], dim=1)
