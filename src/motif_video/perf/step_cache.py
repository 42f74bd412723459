"""Training-free step caching in the First Block Cache style.

Reference: First Block Cache (FBCache) of ParaAttention (github.com/chengzeyi/ParaAttention, "First Block Cache"),
also shipped in diffusers as `FirstBlockCacheConfig`; TeaCache (arXiv 2411.19108) is its ancestor. Idea: between
adjacent denoising steps the output of the first block changes little exactly when the whole network's output
changes little, so the first block's residual is a cheap, input-aware indicator.

At every call the transformer runs the first block, r1 = first_block(x) - x. With r1* the first-block residual at
the last step that ran every block, the relative L1 change is

    d = mean |r1 - r1*| / mean |r1*|        (over the whole batch; across ranks when a process group is given)

If d < threshold, the remaining 35 blocks are skipped and the decoder's output is taken as
x_embed + R*, where R* = decoder_output - x_embed is the residual stored at that last full step (the DDT decoder
starts again from the patch-embedded input x_embed, so its residual is measured from there). Otherwise every block
runs and r1*, R* are refreshed. Because r1* is only refreshed on full steps, skips accumulate drift and a full step
follows once the drift passes the threshold. Threshold 0 never skips (d < 0 is impossible), which is the exact run.

Guidance. Each guidance branch (cond, uncond, or one batched pass) keeps its own state: pass `cache.branch("cond")`
and `cache.branch("uncond")` to the transformer's `step_cache` argument, or one branch for a batched cond+uncond
pass (then the whole batch skips or runs together). Call `reset()` between generations (`report()` first).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field

import torch


@dataclass
class BranchReport:
    calls: int = 0
    skipped: list[int] = field(default_factory=list)  # call indices (denoising steps) that reused the cache
    distances: list[float] = field(
        default_factory=list
    )  # d at every call after the first (nan if no reference)


class StepCacheBranch:
    """The cache state of one guidance branch; handed to the transformer as `step_cache`."""

    def __init__(self, owner: StepCache) -> None:
        self.owner = owner
        self.report = BranchReport()
        self._first_residual: torch.Tensor | None = None
        self._residual: torch.Tensor | None = None
        self._pending_first: torch.Tensor | None = None

    def lookup(self, first_residual: torch.Tensor) -> torch.Tensor | None:
        """Given this call's first-block residual, the cached output residual to reuse, or None to run everything."""
        step = self.report.calls
        self.report.calls += 1
        self._pending_first = first_residual
        reference = self._first_residual
        if reference is None or reference.shape != first_residual.shape or self._residual is None:
            return None
        distance = self.owner.distance(first_residual, reference)
        self.report.distances.append(distance)
        if distance < self.owner.threshold:
            self.report.skipped.append(step)
            return self._residual
        return None

    def store(self, residual: torch.Tensor) -> None:
        """Record a full step: its output residual and the first-block residual it was computed with."""
        self._first_residual, self._residual = self._pending_first, residual
        self._pending_first = None


class StepCache:
    """First-block residual cache for one generation at a time (see the module docstring).

    threshold: relative L1 change of the first block's residual below which a step reuses the cache (0 = exact;
    FBCache users report 0.05-0.1 as useful on other video models; the quality cost must be measured per model).
    process_group: the context-parallel group, so that every rank takes the same decision.
    """

    def __init__(self, threshold: float, process_group: object | None = None) -> None:
        if not threshold >= 0.0:
            raise ValueError(f"step cache threshold must be >= 0, got {threshold}")
        self.threshold = float(threshold)
        self.process_group = process_group
        self._branches: dict[Hashable, StepCacheBranch] = {}

    def branch(self, name: Hashable = "cond") -> StepCacheBranch:
        if name not in self._branches:
            self._branches[name] = StepCacheBranch(self)
        return self._branches[name]

    def reset(self) -> None:
        """Forget every branch (call between generations)."""
        self._branches.clear()

    def report(self) -> dict[Hashable, BranchReport]:
        return {name: branch.report for name, branch in self._branches.items()}

    def skipped_steps(self, name: Hashable = "cond") -> list[int]:
        return list(self._branches[name].report.skipped) if name in self._branches else []

    def distance(self, current: torch.Tensor, reference: torch.Tensor) -> float:
        sums = torch.stack([(current - reference).abs().float().sum(), reference.abs().float().sum()])
        if self.process_group is not None:
            import torch.distributed as dist

            dist.all_reduce(sums, group=self.process_group)
        diff, norm = sums.tolist()
        return diff / norm if norm > 0 else float("inf")


def share_cache_decisions(model: object, process_group: object | None) -> None:
    """Make every rank of `process_group` take the same skip decision in the step cache that
    `model.enable_cache(FirstBlockCacheConfig(...))` runs (context parallelism), now or when enabled later."""
    model._cache_process_group = process_group
    cache = getattr(model, "_step_cache", None)
    if cache is not None:
        cache.process_group = process_group
