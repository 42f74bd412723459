"""Shared helpers of the training tests: random caches."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file


def write_random_cache(
    folder: Path, count: int = 8, latent: tuple[int, int, int] = (3, 8, 8), seed: int = 0
) -> Path:
    """A cache folder in the `motif-video cache` format with random latents and text (no VAE needed)."""
    g = torch.Generator().manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    tensors, items = {}, []
    for j in range(count):
        length = 3 + j % 4
        tensors[f"{j}.latents"] = torch.randn(16, *latent, generator=g)
        tensors[f"{j}.text"] = torch.randn(length, 32, generator=g)
        tensors[f"{j}.text_mask"] = torch.ones(length, dtype=torch.bool)
        items.append(
            {
                "key": f"item-{j}",
                "bucket": [4 * (latent[0] - 1) + 1, 8 * latent[1], 8 * latent[2]],
                "caption": f"caption {j}",
            }
        )
    save_file(tensors, str(folder / "shard-00000.safetensors"))
    save_file(
        {"text": torch.randn(1, 32, generator=g), "text_mask": torch.ones(1, dtype=torch.bool)},
        str(folder / "null_text.safetensors"),
    )
    index = {"version": 1, "shards": [{"file": "shard-00000.safetensors", "items": items}], "skipped": {}}
    (folder / "index.json").write_text(json.dumps(index))
    return folder


def cache_buckets(cache: Path) -> dict[str, list[list[int]]]:
    """{"data.buckets": the buckets of the cache's items} (training refuses a cache of buckets it does not list);
    empty for a cache not written yet or without items."""
    index = Path(cache) / "index.json"
    shards = json.loads(index.read_text())["shards"] if index.is_file() else []
    buckets = sorted({tuple(item["bucket"]) for shard in shards for item in shard["items"]})
    return {"data.buckets": buckets} if buckets else {}


def tiny_overrides(output: Path, cache: Path, **extra: object) -> list[str]:
    """Overrides for a fast trainer run on a random cache with the tiny preset, at the cache's buckets."""
    base = {
        "output_dir": str(output),
        "max_steps": 4,
        "tensorboard": False,
        "model.preset": "tiny",
        "model.components": "tiny",
        "data.cache": str(cache),
        "data.batch_size": 2,
        "optim.lr": 1e-3,
        "optim.warmup_steps": 2,
        "optim.schedule": "cosine",
        **cache_buckets(cache),
    }
    base.update(extra)
    return [f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in base.items()]


def start_until_logged(argv: list[str], env: dict[str, str], metrics: Path, lines: int = 3, **popen: object):
    """A `train` command started as a subprocess (text pipes), returned once `metrics` holds `lines` steps: a run
    in the middle of its loop, for a test to signal. Fails if it ends first."""
    import subprocess
    import time

    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
    deadline = time.monotonic() + 180
    while proc.poll() is None and time.monotonic() < deadline:
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= lines:
            break
        time.sleep(0.05)
    if proc.poll() is not None:
        raise AssertionError(f"the run ended before {lines} steps: {proc.communicate()}")
    return proc
