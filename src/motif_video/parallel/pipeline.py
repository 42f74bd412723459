"""Multi-process generation with the pipelines (`torchrun --nproc-per-node N`).

Three modes, chosen per run:

context   the video tokens of every forward are split across all ranks (Ulysses, `context.py`); every rank runs
          the same loop on the same latents and ends with the same video. Any number of ranks.
guidance  rank 0 runs the conditional pass and rank 1 the unconditional pass of each step; the two predictions are
          all-gathered, so both ranks apply the same guidance update and hold the same latents. Exactly 2 ranks
          (halves the per-step time of guided sampling; no help without guidance).
data      nothing changes inside the pipeline: `motif_video.generation` gives each rank every N-th prompt.

Every rank must draw the same initial noise (a CPU generator with the same seed, as `generate` does) for context and
guidance parallelism; the result equals the one-process run (tested to 1e-5 in float32 on CPU with gloo).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from ..choices import PARALLEL_MODES, ParallelMode
from .context import ContextParallelHandle, enable_context_parallel

GUIDANCE_BRANCHES = ("cond", "uncond")  # rank r of the guidance group runs branch r


@dataclass(frozen=True)
class ParallelPlan:
    """A parallel mode in use: pass it to each pipeline call (`parallel=`); `remove()` restores one process."""

    mode: ParallelMode = "none"
    group: Any = None
    handle: ContextParallelHandle | None = None  # the context-parallel hooks on the transformer

    @property
    def guidance_group(self) -> Any:
        """The two-rank group that splits the cond and uncond passes, or None."""
        return self.group if self.mode == "guidance" else None

    def remove(self) -> None:
        if self.handle is not None:
            self.handle.remove()


def enable_parallel(pipe: Any, mode: ParallelMode, group: Any = None) -> ParallelPlan:
    """Make `pipe`'s transformer passes run across the ranks of `group` (default: the world) in `mode`; returns the
    plan to pass to each call (context parallelism is attached to the transformer here, with hooks)."""
    if mode not in PARALLEL_MODES:
        raise ValueError(f"parallel mode must be one of {list(PARALLEL_MODES)}, got {mode!r}")
    if mode in ("none", "data"):
        return ParallelPlan(mode)
    if not dist.is_initialized():
        raise ValueError(f"parallel mode {mode!r} needs torch.distributed (run under torchrun)")
    group = group if group is not None else dist.group.WORLD
    if mode == "context":
        from ..perf.step_cache import share_cache_decisions

        pipe.transformer.eval()
        share_cache_decisions(pipe.transformer, group)  # a step cache skips the same steps on every rank
        return ParallelPlan(mode, group, enable_context_parallel(pipe.transformer, group))
    world = dist.get_world_size(group)
    if world != 2:
        raise ValueError(
            f"guidance parallelism runs the cond and uncond passes on exactly 2 ranks, got {world}; "
            "use --parallel context (any number of ranks) or data (a prompt file)"
        )
    return ParallelPlan(mode, group)


def exchange_guidance(
    group: Any, forward: Callable[[str], torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run this rank's guidance branch (`forward("cond")` on rank 0, `forward("uncond")` on rank 1) and return
    (v_cond, v_uncond) gathered from both ranks."""
    mine = forward(GUIDANCE_BRANCHES[dist.get_rank(group)]).contiguous()
    parts = [torch.empty_like(mine) for _ in GUIDANCE_BRANCHES]
    dist.all_gather(parts, mine, group=group)
    return parts[0], parts[1]


def world() -> tuple[int, int]:
    """(rank, world size) of the default group, (0, 1) without torch.distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1
