"""Context parallelism for inference: video tokens split across ranks, Ulysses all-to-all inside attention.

`enable_context_parallel(model, group)` attaches forward hooks from outside the model (the model's own code is
unchanged, and removing the handle restores the single-process path):

* after `x_embedder`: the patch-embedded video tokens [B, N, D] are split along N (uneven when N % P != 0: the first
  N % P ranks hold one token more; nothing is padded, so nothing has to be masked or dropped);
* before each block: the RoPE tables are sliced to this rank's tokens (positions travel with their tokens), and
  the block's sequence layout is recorded: encoder side [local video | replicated text + image], DDT decoder
  [local decoder stream | local encoder output] (both video streams split the same way);
* inside `attention`: the `ulysses` backend (see `ulysses.py`) runs joint self-attention over the global sequence
  for H/P heads, with the backend that was active before as the inner kernel; text cross-attention needs no
  communication (local video queries, replicated text keys);
* after the head's `proj_out`: the per-token outputs are all-gathered, so unpatchify and every rank see the
  full velocity.

Text and image tokens are replicated: every rank runs the (small) text stream itself. Inference only (eval mode,
no token routing). Use with `torchrun --nproc-per-node N`: `init_distributed()` then `enable_context_parallel`.
Pass the group to `StepCache(process_group=...)` so that all ranks skip the same steps.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ..models.attention import (
    attention,
    get_attention_backend,
    register_attention_backend,
    set_attention_backend,
)
from .ulysses import SequenceLayout, split_counts, ulysses_attention

BACKEND_NAME = "ulysses"


@dataclass
class _State:
    group: dist.ProcessGroup | None
    inner: str = "auto"
    counts: tuple[int, ...] = ()
    layout: SequenceLayout | None = None
    previous_backend: list[str] = field(default_factory=list)


_current: _State | None = None  # the context-parallel forward in progress in this process, if any


def _ulysses_backend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None
) -> torch.Tensor:
    state = _current
    if state is None or state.layout is None:
        raise ValueError("attention backend 'ulysses' runs only inside a context-parallel forward")

    def inner(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return attention(q, k, v, mask, backend=state.inner)

    rank = dist.get_rank(state.group)
    if state.layout.segments == 1 and q.shape[1] == state.layout.counts[rank]:
        # Text cross-attention: local video queries, replicated text keys (self-attention queries on the encoder
        # side always include the replicated text tokens, so they are longer).
        return inner(q, k, v, mask)
    return ulysses_attention(q, k, v, mask, state.layout, inner, state.group)


class ContextParallelHandle:
    """Returned by `enable_context_parallel`; `remove()` restores the single-process model."""

    def __init__(self, handles: list[Any]) -> None:
        self._handles = handles

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


def enable_context_parallel(
    model: nn.Module, group: dist.ProcessGroup | None = None
) -> ContextParallelHandle:
    """Split `model`'s video tokens across the ranks of `group` (default: the world) for every forward."""
    if not dist.is_initialized():
        raise ValueError(
            "context parallelism needs torch.distributed to be initialised (see init_distributed)"
        )
    register_attention_backend(BACKEND_NAME, _ulysses_backend)
    state = _State(group)
    world, rank = dist.get_world_size(group), dist.get_rank(group)
    encoder_blocks = {id(block) for block in model.encoder_blocks}

    def start(module: nn.Module, args: tuple, kwargs: dict) -> None:
        global _current
        if module.training:
            raise ValueError("context parallelism is for inference: call model.eval() first")
        if _current is not None:
            raise ValueError("a context-parallel forward is already running in this process")
        state.inner = get_attention_backend()
        state.previous_backend.append(state.inner)
        set_attention_backend(BACKEND_NAME)
        _current = state

    def finish(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        global _current
        _current = None
        state.layout = None
        if state.previous_backend:
            set_attention_backend(state.previous_backend.pop())

    def shard_tokens(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        state.counts = split_counts(output.shape[1], world)
        start_index = sum(state.counts[:rank])
        return output[:, start_index : start_index + state.counts[rank]]

    def enter_block(module: nn.Module, args: tuple) -> tuple:
        x, y, temb, (cos, sin), mask, image_tokens = args
        total = sum(state.counts)
        if cos.shape[-2] != total:
            raise ValueError(
                f"context parallelism expects RoPE tables for {total} tokens, got {cos.shape[-2]}"
            )
        start_index = sum(state.counts[:rank])
        local = slice(start_index, start_index + state.counts[rank])
        rope = (cos[..., local, :], sin[..., local, :])
        if id(module) in encoder_blocks:
            state.layout = SequenceLayout(state.counts, 1, y.shape[1])
        else:
            state.layout = SequenceLayout(state.counts, 2, 0)
        return (x, y, temb, rope, mask, image_tokens)

    def gather_tokens(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        longest = max(state.counts)
        padded = torch.nn.functional.pad(output, (0, 0, 0, longest - output.shape[1])).contiguous()
        parts = [torch.empty_like(padded) for _ in range(world)]
        dist.all_gather(parts, padded, group=group)
        return torch.cat([part[:, :n] for part, n in zip(parts, state.counts)], dim=1)

    handles = [
        model.register_forward_pre_hook(start, with_kwargs=True),
        model.register_forward_hook(finish, with_kwargs=True, always_call=True),
        model.x_embedder.register_forward_hook(shard_tokens),
        model.proj_out.register_forward_hook(gather_tokens),
    ]
    handles += [block.register_forward_pre_hook(enter_block) for block in model.repeated_blocks()]
    return ContextParallelHandle(handles)


def init_distributed() -> tuple[int, int]:
    """Initialise torch.distributed from torchrun's environment (NCCL on CUDA, else gloo); (rank, world size)."""
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size()
