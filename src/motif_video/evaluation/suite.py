"""The offline prompt suite: held-out procedural scenes (their captions are the prompts, their labels the truth)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..synthetic.scenes import Scene, caption, render, scene_at

SUITE_SEED = 1000  # the training clips use seed 0 and the VAE seed 1: these scenes are never trained on


@dataclass(frozen=True)
class Case:
    scene: Scene
    prompt: str

    def first_frame(self, height: int, width: int, frames: int) -> np.ndarray:
        """uint8 [H, W, 3]: the ground-truth first frame (the I2V condition)."""
        return render(self.scene, frames, height, width)[0]


def prompt_suite(count: int, seed: int = SUITE_SEED) -> list[Case]:
    """`count` held-out scenes with the first caption template."""
    if count < 1:
        raise ValueError(f"prompt suite size must be >= 1, got {count}")
    return [Case(scene, caption(scene)) for scene in (scene_at(seed, i) for i in range(count))]
