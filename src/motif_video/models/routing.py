"""TREAD token routing: a random subset of video tokens skips a span of blocks (training only).

A route {start_layer, end_layer, ratio} names blocks by their global index (dual 0..num_layers-1, then the
encoder-side single blocks, then the decoder blocks). Before block `start_layer` a per-sample random subset of
round(N (1 - ratio)) video tokens is gathered (kept order, with their RoPE positions); blocks start..end (inclusive)
run on that subset; after block `end_layer` the processed tokens are scattered back. Dropped tokens keep the values
they had before the route. Ratio 0 keeps every token in order, so the result equals the dense pass exactly.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Route:
    start_layer: int
    end_layer: int
    ratio: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.ratio < 1.0:
            raise ValueError(f"route ratio must be in [0, 1), got {self.ratio}")
        if self.start_layer > self.end_layer or self.start_layer < 0:
            raise ValueError(
                f"route needs 0 <= start_layer <= end_layer, got {self.start_layer}..{self.end_layer}"
            )

    @classmethod
    def parse(cls, route: Route | Mapping[str, float]) -> Route:
        if isinstance(route, Route):
            return route
        unknown = set(route) - {"start_layer", "end_layer", "ratio"}
        if unknown:
            raise ValueError(f"unknown route keys {sorted(unknown)}; allowed: start_layer, end_layer, ratio")
        return cls(int(route["start_layer"]), int(route["end_layer"]), float(route["ratio"]))


def validate_routes(routes: Iterable[Route], stage_bounds: list[tuple[int, int]]) -> list[Route]:
    """Routes sorted by start; each must lie inside one stage (encoder side or decoder) and not overlap another."""
    ordered = sorted(routes, key=lambda r: r.start_layer)
    for route in ordered:
        if not any(lo <= route.start_layer and route.end_layer < hi for lo, hi in stage_bounds):
            raise ValueError(
                f"route {route.start_layer}..{route.end_layer} must lie inside one of the block ranges "
                f"{[(lo, hi - 1) for lo, hi in stage_bounds]}"
            )
    for a, b in itertools.pairwise(ordered):
        if b.start_layer <= a.end_layer:
            raise ValueError(f"routes {a} and {b} overlap")
    return ordered


def select_tokens(
    batch: int, num_tokens: int, ratio: float, device: torch.device, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Sorted indices [B, K] of the kept tokens, K = max(1, round(N (1 - ratio))), drawn independently per sample."""
    keep = max(1, round(num_tokens * (1.0 - ratio)))
    if keep == num_tokens:
        return torch.arange(num_tokens, device=device).expand(batch, -1)
    scores = torch.rand(batch, num_tokens, device=device, generator=generator)
    return scores.argsort(dim=1)[:, :keep].sort(dim=1).values


def gather_tokens(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x [B, N, C] (or a table [N, C]) -> [B, K, C] at index [B, K]."""
    if x.ndim == 2:
        return x[index]
    return torch.gather(x, 1, index[..., None].expand(-1, -1, x.shape[-1]))


def scatter_tokens(full: torch.Tensor, part: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """A copy of `full` [B, N, C] with rows `index` [B, K] replaced by `part` [B, K, C]."""
    return full.scatter(1, index[..., None].expand(-1, -1, full.shape[-1]), part)
