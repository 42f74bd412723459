"""Exponential moving average of the trainable weights, kept in float32 next to them (sharded like them)."""

from __future__ import annotations

import torch
from torch import nn


class EMA:
    def __init__(self, named_params: list[tuple[str, nn.Parameter]], decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.names = [name for name, _ in named_params]
        self.shadow = [p.detach().float().clone() for _, p in named_params]

    @torch.no_grad()
    def update(self, params: list[nn.Parameter]) -> None:
        torch._foreach_lerp_(self.shadow, [p.detach().float() for p in params], 1.0 - self.decay)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(zip(self.names, self.shadow))

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = [n for n in self.names if n not in state]
        if missing:
            raise ValueError(f"EMA state lacks {missing[:3]} ({len(missing)} missing)")
        for name, tensor in zip(self.names, self.shadow):
            tensor.copy_(state[name])
