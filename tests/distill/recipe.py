"""The tiny distillation recipe and its test overrides, shared by the distillation and mixed-precision tests (the
tiny teacher folder they distil from is the `teacher_folder` fixture of tests/conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.training.conftest import cache_buckets

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "distill" / "tiny-cpu.yaml"


def overrides(output: Path, teacher: Path, cache: Path, **extra) -> list[str]:
    values = {
        "output_dir": str(output),
        "max_steps": 30,
        "log_every": 1,
        "checkpoint_every": 0,
        "tensorboard": False,
        "model.pretrained": str(teacher),
        "model.components": str(teacher),
        "data.cache": str(cache),
        "data.batch_size": 2,
        "optim.lr": 2e-3,
        "optim.warmup_steps": 0,
        "optim.schedule": "constant",
        "distill.teacher_steps": 16,
        "distill.teacher_shift": 3.0,
        "distill.guidance_scales": [2.0, 4.0],
        **cache_buckets(cache),
        **extra,
    }
    return [f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in values.items()]
