"""The trained weights as loadable folders: at the end of a run (`export_model`), or from any checkpoint
(`transformer_from_checkpoint`).

    OUTPUT/transformer/           the final weights (diffusers folder; `MotifVideoTransformer.from_pretrained`)
    OUTPUT/transformer-ema/       the EMA weights, when `optim.ema_decay` > 0
    OUTPUT/lora/                  LoRA runs: the adapter only (diffusers / peft format)
    OUTPUT/lora-ema/              LoRA runs: the adapter's EMA weights, when `optim.ema_decay` > 0

An EMA folder left by an earlier run in the same folder with EMA on goes when this run has none: it would be taken
for this run's.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from ..models import MotifVideoTransformer
from .checkpoint import full_tensor, load_tensors
from .config import TrainConfig
from .ema import EMA
from .setup import build_model


def export_model(accelerator, config: TrainConfig, model: nn.Module, ema: EMA | None) -> None:
    """The final weights as loadable folders: OUTPUT/transformer (+ transformer-ema), or OUTPUT/lora under LoRA."""
    unwrapped = accelerator.unwrap_model(model)
    state = accelerator.get_state_dict(model)
    ema_state = {k: full_tensor(v) for k, v in ema.state_dict().items()} if ema is not None else None
    if not accelerator.is_main_process:
        return
    output = Path(config.output_dir)
    ema_folder = output / ("lora-ema" if config.lora.rank else "transformer-ema")
    if ema_state is None and ema_folder.is_dir():
        shutil.rmtree(ema_folder)
    if config.lora.rank:
        from .lora import save_lora

        save_lora(unwrapped, output / "lora")
        if ema_state is not None:
            with weights_swapped(unwrapped, ema_state):
                save_lora(unwrapped, ema_folder)
        return
    config_dict = {k: v for k, v in unwrapped.config.items() if not k.startswith("_")}
    for name, weights in (("transformer", state), ("transformer-ema", ema_state)):
        if weights is None:
            continue
        with torch.device("meta"):
            export = MotifVideoTransformer(**config_dict)  # the config carries the layout
        export.load_state_dict({**state, **weights}, strict=True, assign=True)
        export.save_pretrained(output / name)


@contextlib.contextmanager
def weights_swapped(model: nn.Module, weights: dict[str, torch.Tensor]) -> Iterator[None]:
    """`model` with the named parameters set to `weights` inside the block, its own put back after."""
    params = dict(model.named_parameters())
    own = {name: params[name].detach().clone() for name in weights}
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)
        try:
            yield
        finally:
            for name, value in own.items():
                params[name].copy_(value)


def is_exported(config: TrainConfig) -> bool:
    """Whether the folders `export_model` writes for `config` are all there."""
    output = Path(config.output_dir)
    main = "lora" if config.lora.rank else "transformer"
    names = (main, f"{main}-ema") if config.optim.ema_decay else (main,)
    return all((output / name).is_dir() for name in names)


def transformer_from_checkpoint(
    checkpoint: str | Path, output: str | Path, preset: str | None = None
) -> Path:
    """A loadable transformer folder from a trainer checkpoint (`<run>/checkpoints/step-N`), with its EMA weights
    (`checkpoint_transformer`); `preset` replaces the run's preset or pretrained folder, and is needed when the
    run's config is missing."""
    model = checkpoint_transformer(checkpoint, preset)
    model.save_pretrained(output)
    return Path(output)


def checkpoint_transformer(
    checkpoint: str | Path, preset: str | None = None, ema: bool = True
) -> MotifVideoTransformer:
    """The transformer of a trainer checkpoint (`<run>/checkpoints/step-N`), with its EMA weights where it holds
    them and `ema` is on (else the trained weights themselves, as the run's `transformer/` holds them at its end).

    The architecture is the run's own, built as the trainer built it from `<run>/config.json` (preset and overrides,
    or the pretrained folder, and an inserted Shared Cross-Attention); `preset` replaces the run's preset or
    pretrained folder, and is needed when the run's config is missing."""
    checkpoint = Path(checkpoint)
    config = _checkpoint_config(checkpoint, preset)
    model = build_model(config)
    state = load_tensors(checkpoint / "model.safetensors")
    if ema and (checkpoint / "ema.safetensors").is_file():
        state.update(load_tensors(checkpoint / "ema.safetensors"))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        m = config.model
        built = (
            f"pretrained {m.pretrained!r}"
            if m.pretrained
            else f"preset {m.preset!r} with overrides {m.overrides}"
        )
        raise ValueError(
            f"checkpoint {checkpoint} does not match {built}: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    return model.eval()


def checkpoint_architecture(checkpoint: str | Path) -> MotifVideoTransformer:
    """The transformer a trainer checkpoint's weights load into, on the meta device: its run's architecture as
    `checkpoint_transformer` builds it, with configs read and no weights."""
    return build_model(_checkpoint_config(Path(checkpoint), None), weights=False).eval()


def _checkpoint_config(checkpoint: Path, preset: str | None) -> TrainConfig:
    """The recipe a full (not LoRA) checkpoint's run was trained with (`<run>/config.json`), its preset or pretrained
    folder replaced by `preset` when given (needed when the run's config is missing). Its pretrained folder is found
    as the run's own loading finds it (`components_folder`: relative to the run, or moved together with it)."""
    from ..model_folder import components_folder
    from .config import load_config

    # a relative or linked checkpoint's run too
    run_config = checkpoint.resolve().parent.parent / "config.json"
    if run_config.is_file():
        config = load_config(run_config)
        if config.model.pretrained:
            config.model.pretrained = components_folder(config.model.pretrained, run_config.parent)
    elif preset is None:
        raise ValueError(f"{run_config} not found: pass the checkpoint's preset")
    else:
        config = TrainConfig()
    if preset is not None:
        config.model.preset, config.model.pretrained = preset, None
    if config.lora.rank:
        raise ValueError(
            f"{checkpoint} is from a LoRA run (rank {config.lora.rank}); this converts full models only"
        )
    config.model.gradient_checkpointing = False
    return config
