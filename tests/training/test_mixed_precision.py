"""Training and distillation under bf16 mixed precision (what `mixed_precision: auto` picks on CUDA), run here on
the CPU through accelerate's CPU autocast: accelerate converts the model's outputs to float32, and the objectives
must still find the prediction and the REPA features in them."""

from __future__ import annotations

import json
import math

import pytest
from tests.distill.recipe import RECIPE as DISTILL_RECIPE
from tests.distill.recipe import overrides as distill_overrides
from tests.training.conftest import tiny_overrides, write_random_cache

from motif_video.distill.config import load_distill_config
from motif_video.distill.objective import distill
from motif_video.training.config import load_config
from motif_video.training.trainer import train


@pytest.fixture(autouse=True)
def fresh_accelerator_state():
    """accelerate keeps one process-wide state whose precision cannot change once set: start and leave it unset."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def _losses(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_training_steps_under_bf16_mixed_precision(tmp_path):
    cache = write_random_cache(tmp_path / "cache", count=4, latent=(1, 4, 4))
    extra = {"max_steps": 2, "mixed_precision": "bf16", "repa.teacher": "tiny", "repa.kind": "dinov2",
             "repa.block": 1, "repa.until_step": 1, "repa.projector_dim": 32, "log_every": 1}  # fmt: skip
    train(load_config(None, tiny_overrides(tmp_path / "run", cache, **extra)))
    records = _losses(tmp_path / "run")
    assert len(records) == 2 and all(math.isfinite(r["loss"]) for r in records), records
    assert "repa_loss" in records[0] and "repa_loss" not in records[1]


@pytest.mark.parametrize(
    "extra",
    [
        {"tread.routes": [{"start_layer": 2, "end_layer": 3, "ratio": 0.5}], "tread.probability": 1.0,
         "model.gradient_checkpointing": True, "i2v.probability": 1.0},
        {"lora.rank": 4},
    ],
    ids=["tread-checkpointing-i2v", "lora"],
)  # fmt: skip
def test_gpu_recipe_features_under_bf16_mixed_precision(tmp_path, extra):
    """What the 2B recipes switch on (routes with activation checkpointing and image conditioning; LoRA), as
    they run on a GPU: under bf16 autocast."""
    cache = write_random_cache(tmp_path / "cache", count=4, latent=(2, 4, 4))
    overrides = tiny_overrides(
        tmp_path / "run", cache, max_steps=2, mixed_precision="bf16", log_every=1, **extra
    )
    train(load_config(None, overrides))
    records = _losses(tmp_path / "run")
    assert len(records) == 2 and all(math.isfinite(r["loss"]) for r in records), records


def test_distillation_steps_under_bf16_mixed_precision(tmp_path, teacher_folder):
    cache = write_random_cache(tmp_path / "cache", count=2, latent=(2, 8, 8))
    overrides = distill_overrides(
        tmp_path / "student", teacher_folder, cache, max_steps=2, mixed_precision="bf16"
    )
    result = distill(load_distill_config(DISTILL_RECIPE, overrides))
    assert len(result.losses) == 2 and all(math.isfinite(x) for x in result.losses), result.losses
