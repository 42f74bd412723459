"""The tiny-cpu recipe, end to end (procedural clips -> cache -> trainer), overfits one batch."""

from __future__ import annotations

import json
from pathlib import Path

from motif_video.training.config import load_config
from motif_video.training.trainer import train

RECIPE = Path(__file__).parents[2] / "recipes" / "tiny-cpu" / "config.yaml"


def test_tiny_recipe_overfits_one_batch(tmp_path):
    overrides = [
        f"output_dir={tmp_path}",
        "max_steps=100",
        "data.generate_clips=2",
        "data.batch_size=2",
        "overfit_one_batch=true",
        "optim.lr=3e-3",
        "optim.schedule=constant",
        "checkpoint_every=0",
        "tensorboard=false",
    ]
    result = train(load_config(RECIPE, overrides))
    assert len(list((tmp_path / "clips").glob("*.mp4"))) == 2
    assert json.loads((tmp_path / "cache" / "index.json").read_text())["skipped"] == {}
    first, last = sum(result.losses[:3]) / 3, sum(result.losses[-3:]) / 3
    assert first / last >= 5.0, (first, last)
