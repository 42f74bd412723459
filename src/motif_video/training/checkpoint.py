"""Atomic training checkpoints.

    OUTPUT/checkpoints/step-00000100/
        model.safetensors            trainable weights (the whole transformer; only the adapter under LoRA)
        lora/                        LoRA runs: the adapter in diffusers / peft format
        ema.safetensors              EMA of the trainable weights (when enabled)
        projector.safetensors        REPA projector (while REPA is on)
        optimizer.pt                 AdamW state (torch.save of tensors and numbers; loaded with weights_only=True)
        state.json                   {"step", "world_size", "config"}

Everything is written into `step-N.tmp/` and renamed to `step-N/` once complete, so a crash never leaves a partial
checkpoint that looks complete. Data order and every random draw are pure functions of (seed, step) — see
`trainer.step_generator` — so the step number is the whole RNG state.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

PREFIX = "step-"


def checkpoint_dir(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoints"


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    folder = checkpoint_dir(output_dir)
    if not folder.is_dir():
        return None
    done = sorted(p for p in folder.glob(f"{PREFIX}*") if p.is_dir() and not p.name.endswith(".tmp"))
    return done[-1] if done else None


def begin(output_dir: str | Path, step: int) -> Path:
    tmp = checkpoint_dir(output_dir) / f"{PREFIX}{step:08d}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def commit(tmp: Path, keep: int) -> Path:
    """Rename `step-N.tmp` to `step-N` and delete all but the newest `keep` checkpoints."""
    final = tmp.with_name(tmp.name.removesuffix(".tmp"))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    done = sorted(p for p in final.parent.glob(f"{PREFIX}*") if p.is_dir() and not p.name.endswith(".tmp"))
    for old in done[: max(0, len(done) - keep)]:
        shutil.rmtree(old)
    return final


def save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(path))


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def save_state(folder: Path, state: dict[str, Any]) -> None:
    (folder / "state.json").write_text(json.dumps(state, indent=1))


def load_state(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "state.json").read_text())


def save_optimizer(state: dict[str, Any], path: Path) -> None:
    torch.save(state, path)


def load_optimizer(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)
