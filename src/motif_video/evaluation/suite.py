"""The offline prompt suites: procedural scenes never trained on (their captions are the prompts, their labels the
truth), in two groups: `seen` label combinations (in the training clips, other scenes) and `held_out` ones (left
out of the training data, `split.py`).

Two splits draw from separate scene streams and held-out sets: `test` (the reported figures) and `validation` (for
choosing between builds).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..synthetic.scenes import MOTIONS, Scene, caption, render, scene_at
from .split import HELD_OUT, HELD_OUT_TEST, HELD_OUT_VALIDATION, triple

SUITE_SEED = 1000  # the training clips use seed 0 and the VAE seed 1: these scenes are never trained on
SPLITS = {"test": (SUITE_SEED, HELD_OUT_TEST), "validation": (2000, HELD_OUT_VALIDATION)}
GROUPS = ("seen", "held_out")


@dataclass(frozen=True)
class Case:
    scene: Scene
    prompt: str
    group: str = "seen"

    def first_frame(self, height: int, width: int, frames: int) -> np.ndarray:
        """uint8 [H, W, 3]: the ground-truth first frame (the I2V condition)."""
        return render(self.scene, frames, height, width)[0]


def _stream(seed: int) -> Iterator[Scene]:
    index = 0
    while True:
        yield scene_at(seed, index)
        index += 1


def _matching(seed: int, key: tuple[tuple[str, str, str], str]) -> Iterator[Scene]:
    return (s for s in _stream(seed) if (triple(s), s.motion) == key)


def prompt_suite(count: int, seed: int = SUITE_SEED) -> list[Case]:
    """`count` scenes of the stream `seed` whose combinations are trained on (not in `HELD_OUT`), first template."""
    if count < 1:
        raise ValueError(f"prompt suite size must be >= 1, got {count}")
    scenes = (s for s in _stream(seed) if triple(s) not in HELD_OUT)
    return [Case(scene, caption(scene)) for scene, _ in zip(scenes, range(count))]


def held_out_suite(count: int, split: str = "test") -> list[Case]:
    """`count` scenes of the split's stream with its held-out combinations: case i asks for combination i mod 6 moving
    the i mod 5-th way (so 30 cases cover every pair once), and is the next scene of the stream that has both; first
    template."""
    if count < 1:
        raise ValueError(f"prompt suite size must be >= 1, got {count}")
    if split not in SPLITS:
        raise ValueError(f"split {split!r} is not one of {list(SPLITS)}")
    seed, triples = SPLITS[split]
    wanted = [(t, m) for t, m in zip(sorted(triples) * len(MOTIONS), MOTIONS * len(triples))]
    streams = {key: _matching(seed, key) for key in wanted}
    scenes = [next(streams[wanted[i % len(wanted)]]) for i in range(count)]
    return [Case(scene, caption(scene), "held_out") for scene in scenes]


def eval_suite(count: int, split: str = "test") -> list[Case]:
    """`count` seen and `count` held-out cases of `split` (seen first)."""
    if split not in SPLITS:
        raise ValueError(f"split {split!r} is not one of {list(SPLITS)}")
    return prompt_suite(count, SPLITS[split][0]) + held_out_suite(count, split)
