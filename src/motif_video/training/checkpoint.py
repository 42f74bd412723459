"""Training checkpoints: what a run saves and resumes from, written atomically.

    OUTPUT/checkpoints/step-00000100/
        model.safetensors            trainable weights (the whole transformer; only the adapter under LoRA)
        lora/                        LoRA runs: the adapter in diffusers / peft format
        ema.safetensors              EMA of the trainable weights (when enabled)
        projector.safetensors        the objective's extras (REPA's projector, while REPA is on)
        optimizer.pt                 AdamW state (torch.save of tensors and numbers; loaded with weights_only=True)
        state.json                   {"step", "world_size", "config"}

Everything is written into `step-N.tmp/` and renamed to `step-N/` once complete, so a crash never leaves a partial
checkpoint that looks complete. Data order and every random draw are pure functions of (seed, step) — see
`draws.step_generator` — so the step number is the whole RNG state.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..file_modes import give_default_mode

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
    """Rename `step-N.tmp` to `step-N` and delete all but the newest `keep` checkpoints, and any other `.tmp` left
    by a run killed while saving (incomplete by definition; for a large model, tens of GB)."""
    final = tmp.with_name(tmp.name.removesuffix(".tmp"))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for stale in final.parent.glob(f"{PREFIX}*.tmp"):
        shutil.rmtree(stale)
    done = sorted(p for p in final.parent.glob(f"{PREFIX}*") if p.is_dir() and not p.name.endswith(".tmp"))
    for old in done[: max(0, len(done) - keep)]:
        shutil.rmtree(old)
    return final


def save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(path))
    give_default_mode(path)


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


# ----------------------------------------------------------------------------------------------------------------
# a run's state


def full_tensor(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor of an FSDP2 shard (a DTensor), or `t` itself."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def save_checkpoint(
    accelerator, config, step: int, model, optimizer, ema, extras: dict[str, nn.Module]
) -> None:
    """Checkpoint `step` of a run (`config`: its `TrainConfig`): gathered on every process, written by the main one.
    `extras`: the objective's modules to keep beside the model, as `<name>.safetensors`."""
    unwrapped = accelerator.unwrap_model(model)
    names = {n for n, p in unwrapped.named_parameters() if p.requires_grad}
    state = accelerator.get_state_dict(model)  # full weights on the main process (gathers FSDP2 shards)
    optim_state = optimizer_state(accelerator, model, optimizer)
    ema_state = {k: full_tensor(v) for k, v in ema.state_dict().items()} if ema is not None else None
    if accelerator.is_main_process:
        tmp = begin(config.output_dir, step)
        keep = (lambda k: k in names) if config.lora.rank else (lambda k: True)
        save_tensors({k: v for k, v in state.items() if keep(k)}, tmp / "model.safetensors")
        if config.lora.rank:
            from .lora import save_lora

            save_lora(unwrapped, tmp / "lora")
        if ema_state is not None:
            save_tensors(ema_state, tmp / "ema.safetensors")
        for name, module in extras.items():
            save_tensors(accelerator.unwrap_model(module).state_dict(), tmp / f"{name}.safetensors")
        save_optimizer(optim_state, tmp / "optimizer.pt")
        save_state(tmp, {"step": step, "world_size": accelerator.num_processes, "config": config.to_dict()})
        commit(tmp, config.keep_checkpoints)
    accelerator.wait_for_everyone()


def load_weights(folder: Path, model: nn.Module, extras: dict[str, nn.Module]) -> None:
    """Trainable weights (and the extras a checkpoint holds) from `folder`, into the not-yet-wrapped modules."""
    state = load_tensors(folder / "model.safetensors")
    result = model.load_state_dict(state, strict=False)
    if result.unexpected_keys:
        raise ValueError(f"checkpoint {folder} has keys this model lacks: {result.unexpected_keys[:3]}")
    for name, module in extras.items():
        if (folder / f"{name}.safetensors").exists():
            module.load_state_dict(load_tensors(folder / f"{name}.safetensors"))


def optimizer_state(accelerator, model, optimizer) -> dict[str, Any]:
    """The full optimiser state (gathered from FSDP2 shards to CPU)."""
    from accelerate.utils import DistributedType

    if accelerator.distributed_type == DistributedType.FSDP:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return get_optimizer_state_dict(model, optimizer.optimizer, options=options)
    return optimizer.state_dict()


def load_optimizer_state(accelerator, model, optimizer, state: dict[str, Any]) -> None:
    from accelerate.utils import DistributedType

    if accelerator.distributed_type == DistributedType.FSDP:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
        set_optimizer_state_dict(model, optimizer.optimizer, state, options=options)
    else:
        optimizer.load_state_dict(state)
