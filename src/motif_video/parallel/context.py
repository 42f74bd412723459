"""Context parallelism for inference: video tokens split across ranks, Ulysses all-to-all inside attention.

`enable_context_parallel(model, group)` attaches forward hooks from outside the model (the model's own code is
unchanged, and removing the handle restores the single-process path):

* after `x_embedder`: the patch-embedded video tokens [B, N, D] are split along N (uneven when N % P != 0: the first
  N % P ranks hold one token more; nothing is padded, so nothing has to be masked or dropped);
* before each block: the RoPE tables are sliced to this rank's tokens (positions travel with their tokens), and
  the block's sequence layout is recorded: encoder side [local video | replicated text + image], DDT decoder
  [local decoder stream | local encoder output] (both video streams split the same way);
* inside `attention`: each attention module of the model gets a Ulysses function (see `ulysses.py`) as its own
  backend (`models.attention.use_attention_backend`; nothing process-wide changes), which runs joint self-attention
  over the global sequence for H/P heads with the module's previous backend as the inner kernel; text
  cross-attention needs no communication (local video queries, replicated text keys);
* after the head's `proj_out`: the per-token outputs are all-gathered, so unpatchify and every rank see the
  full velocity.

Text and image tokens are replicated: every rank runs the (small) text stream itself. Inference only (eval mode,
no token routing). Use with `torchrun --nproc-per-node N`: `init_distributed()` then `enable_context_parallel`.
A step cache must take the same decision on every rank: `perf.step_cache.share_cache_decisions(model, group)`
(`parallel.pipeline.enable_parallel` does it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ..models.attention import (
    AttentionFn,
    Backend,
    attention,
    restore_attention_backends,
    use_attention_backend,
)
from .ulysses import SequenceLayout, split_counts, ulysses_attention


@dataclass
class _State:
    """The context-parallel forward in progress on one model (each `enable_context_parallel` has its own)."""

    group: dist.ProcessGroup | None
    counts: tuple[int, ...] = ()
    layout: SequenceLayout | None = None
    running: bool = False


def _ulysses_backend(state: _State, inner: Backend | None) -> AttentionFn:
    """The attention function of one module under context parallelism: Ulysses over `state`'s layout, with the
    module's previous backend (`inner`) as the kernel."""

    def kernel(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return attention(q, k, v, mask, backend=inner)

    def ulysses(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if state.layout is None:
            raise ValueError("Ulysses attention runs only inside a context-parallel forward")
        rank = dist.get_rank(state.group)
        if state.layout.segments == 1 and q.shape[1] == state.layout.counts[rank]:
            # Text cross-attention: local video queries, replicated text keys (self-attention queries on the
            # encoder side always include the replicated text tokens, so they are longer).
            return kernel(q, k, v, mask)
        return ulysses_attention(q, k, v, mask, state.layout, kernel, state.group)

    return ulysses


class ContextParallelHandle:
    """Returned by `enable_context_parallel`; `remove()` restores the single-process model."""

    def __init__(self, handles: list[Any], backends: dict[nn.Module, Backend | None]) -> None:
        self._handles, self._backends = handles, backends

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        restore_attention_backends(self._backends)
        self._handles, self._backends = [], {}


def enable_context_parallel(
    model: nn.Module, group: dist.ProcessGroup | None = None
) -> ContextParallelHandle:
    """Split `model`'s video tokens across the ranks of `group` (default: the world) for every forward."""
    if not dist.is_initialized():
        raise ValueError(
            "context parallelism needs torch.distributed to be initialised (see init_distributed)"
        )
    state = _State(group)
    backends = {}
    for module, inner in use_attention_backend(
        model, None
    ).items():  # each module: Ulysses over its own kernel
        backends[module] = inner
        module.attention_backend = _ulysses_backend(state, inner)
    handles = _token_hooks(model, state, group)
    return ContextParallelHandle(handles, backends)


def _token_hooks(model: nn.Module, state: _State, group: dist.ProcessGroup | None) -> list[Any]:
    """Hooks that split the video tokens after the patch embedding, slice RoPE and record the layout per block,
    and gather the tokens after the head's projection."""
    world, rank = dist.get_world_size(group), dist.get_rank(group)
    encoder_blocks = {id(block) for block in model.encoder_blocks}

    def start(module: nn.Module, args: tuple, kwargs: dict) -> None:
        if module.training:
            raise ValueError("context parallelism is for inference: call model.eval() first")
        if state.running:
            raise ValueError("a context-parallel forward of this model is already running")
        state.running = True

    def finish(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        state.running, state.layout = False, None

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
    return handles + [block.register_forward_pre_hook(enter_block) for block in model.repeated_blocks()]


def init_distributed() -> tuple[int, int]:
    """Initialise torch.distributed from torchrun's environment (NCCL on CUDA, else gloo); (rank, world size)."""
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size()
