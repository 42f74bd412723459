"""Two CPU processes (gloo, DDP) give the same losses as one process with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file
from tests.training.conftest import tiny_overrides, write_random_cache

from motif_video.training.config import load_config
from motif_video.training.trainer import train

WORKER = Path(__file__).with_name("ddp_worker.py")


def _run(nproc: int, overrides: list[str], out: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    # --standalone: the launcher's own rendezvous binds a free port (no port picked here and released before use)
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
               "--standalone", str(WORKER), json.dumps(overrides), str(out)]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[:6000]
    return json.loads(out.read_text())


def test_two_processes_match_one(tmp_path):
    cache = write_random_cache(tmp_path / "cache", count=8)
    extra = {"max_steps": 3, "optim.ema_decay": 0.9, "objective.text_dropout": 0.5}
    one = train(load_config(None, tiny_overrides(tmp_path / "one", cache, **{**extra, "data.batch_size": 4})))
    two = _run(
        2, tiny_overrides(tmp_path / "two", cache, **{**extra, "data.batch_size": 2}), tmp_path / "two.json"
    )
    assert two["world_size"] == 2
    assert len(one.losses) == 3
    torch.testing.assert_close(torch.tensor(two["losses"]), torch.tensor(one.losses), rtol=1e-5, atol=1e-6)
    # The weights after three steps agree too (gradients were averaged across the two ranks).
    a = load_file(str(tmp_path / "one/checkpoints/step-00000003/model.safetensors"))
    b = load_file(str(tmp_path / "two/checkpoints/step-00000003/model.safetensors"))
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5)
