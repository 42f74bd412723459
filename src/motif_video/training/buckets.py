"""Bucketed, rank-balanced batch order: every step has one shape, and every rank gets the same number of steps.

Each epoch the items of every bucket are shuffled (a generator seeded by (seed, epoch)) and cut into *global*
batches of `batch_size * world_size` items; the global batches of all buckets are then shuffled together, which
interleaves image and video steps. Step s of the run is global batch s of the sequence of epochs, and rank r takes
its slice r of it. So all ranks run the same bucket at the same step (no rank waits for a slower bucket), the order
is a pure function of (seed, step) — resuming at step s reproduces it exactly — and a leftover smaller than one
global batch is only deferred: the next epoch's shuffle lets it in.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Sequence
from functools import lru_cache

import torch


class BucketBatchSampler:
    def __init__(
        self, buckets: Sequence[Hashable], batch_size: int, world_size: int = 1, rank: int = 0, seed: int = 0
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in 0..{world_size - 1}, got {rank}")
        self.batch_size, self.world_size, self.rank, self.seed = batch_size, world_size, rank, seed
        self.groups: dict[Hashable, list[int]] = defaultdict(list)
        for index, bucket in enumerate(buckets):
            self.groups[bucket].append(index)
        self.global_batch = batch_size * world_size
        self.steps_per_epoch = sum(len(v) // self.global_batch for v in self.groups.values())
        if self.steps_per_epoch == 0:
            sizes = {str(k): len(v) for k, v in self.groups.items()}
            raise ValueError(
                f"no bucket holds a full global batch of {self.global_batch} items "
                f"(batch_size {batch_size} x {world_size} ranks); bucket sizes: {sizes}"
            )
        self._epoch_batches = lru_cache(maxsize=2)(self._build_epoch)

    @property
    def utilisation(self) -> float:
        """Fraction of items used per epoch."""
        total = sum(len(v) for v in self.groups.values())
        return self.steps_per_epoch * self.global_batch / max(total, 1)

    def _build_epoch(self, epoch: int) -> list[list[int]]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        batches = []
        for key in sorted(self.groups, key=str):
            items = self.groups[key]
            order = [items[i] for i in torch.randperm(len(items), generator=generator).tolist()]
            usable = len(order) - len(order) % self.global_batch
            batches += [order[i : i + self.global_batch] for i in range(0, usable, self.global_batch)]
        return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]

    def global_batch_at(self, step: int) -> list[int]:
        epoch, position = divmod(step, self.steps_per_epoch)
        return self._epoch_batches(epoch)[position]

    def batch_at(self, step: int) -> list[int]:
        """This rank's item indices for `step`."""
        batch = self.global_batch_at(step)
        return batch[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]


class ConditionedBatchSampler:
    """Batches of two datasets laid end to end (the second's indices after the first's `offset` items): step s
    takes the second's batch s where `is_conditioned(s)`, else the first's. Each keeps its own order, a pure function
    of (seed, step) as `BucketBatchSampler`'s."""

    def __init__(
        self, main: BucketBatchSampler, conditioned: BucketBatchSampler, offset: int, is_conditioned
    ) -> None:
        self.main, self.conditioned = main, conditioned
        self.offset, self.is_conditioned = offset, is_conditioned

    @property
    def utilisation(self) -> float:
        return min(self.main.utilisation, self.conditioned.utilisation)

    def batch_at(self, step: int) -> list[int]:
        if self.is_conditioned(step):
            return [self.offset + i for i in self.conditioned.batch_at(step)]
        return self.main.batch_at(step)
