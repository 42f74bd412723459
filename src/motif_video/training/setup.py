"""What a run starts from: the accelerator (one process, DDP or FSDP2), the model to train, its optimiser and
learning-rate schedule.

`build_model` is the one place where a recipe's `model` and `lora` sections become a trainable transformer: a new
model from a preset or a pretrained one (`load_pretrained`), or one an objective made (distillation's student),
then Shared Cross-Attention insertion, LoRA, frozen unused parts and gradient checkpointing.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..models import MotifVideoTransformer
from .config import TrainConfig


def make_accelerator(config: TrainConfig):
    from accelerate import Accelerator

    cuda = torch.cuda.is_available()
    precision = config.mixed_precision if config.mixed_precision != "auto" else ("bf16" if cuda else "no")
    kwargs: dict[str, Any] = {}
    if config.parallel == "fsdp2":
        from accelerate import FullyShardedDataParallelPlugin

        kwargs["fsdp_plugin"] = FullyShardedDataParallelPlugin(
            fsdp_version=2,
            auto_wrap_policy="transformer_based_wrap",
            transformer_cls_names_to_wrap=["DualStreamBlock", "SingleStreamBlock"],
            reshard_after_forward=True,
            state_dict_type="FULL_STATE_DICT",
        )
    if 0 < config.i2v.probability < 1:  # the image projection is idle on text-to-video steps
        from accelerate import DistributedDataParallelKwargs

        kwargs["kwargs_handlers"] = [DistributedDataParallelKwargs(find_unused_parameters=True)]
    return Accelerator(cpu=not cuda, mixed_precision=precision, **kwargs)


def load_pretrained(reference: str, weights: bool = True) -> MotifVideoTransformer:
    """A transformer folder, or a model folder / name / Hub id with a `transformer/` subfolder. `weights=False`: its
    architecture alone, on the meta device (its config read, no weights)."""
    from ..hub import resolve_folder

    folder = resolve_folder(reference)
    folder = folder / "transformer" if (folder / "transformer").is_dir() else folder
    if not weights:
        with torch.device("meta"):
            return MotifVideoTransformer.from_config(MotifVideoTransformer.load_config(folder))
    return MotifVideoTransformer.from_pretrained(folder)


def build_model(
    config: TrainConfig, model: MotifVideoTransformer | None = None, weights: bool = True
) -> MotifVideoTransformer:
    """The transformer to train, in training mode. `model`: one the objective built (then no seed is set here);
    otherwise `model.pretrained` or a new `model.preset`, after seeding with `config.seed`. `weights=False`: the
    architecture alone, on the meta device (configs read, no weights)."""
    if model is None:
        from ..presets import build_transformer

        m = config.model
        torch.manual_seed(config.seed)
        # New models take the paper's Shared Cross-Attention layout unless the overrides say otherwise (the
        # released preset's config means "separate", the released checkpoint's layout).
        new = {"cross_attention_layout": "shared", **m.overrides}
        device = "cpu" if weights else "meta"
        model = (
            load_pretrained(m.pretrained, weights)
            if m.pretrained
            else build_transformer(m.preset, device, **new)
        )
    if config.model.add_shared_cross_attention:
        from .sca import add_shared_cross_attention

        model = add_shared_cross_attention(model)
    if config.lora.rank:
        from .lora import add_lora

        lo = config.lora
        add_lora(model, lo.rank, lo.alpha, lo.dropout, lo.target_modules)
    if config.i2v.probability == 0 and model.image_embedder is not None:
        model.image_embedder.requires_grad_(False)  # text-to-video training never uses it
    if config.model.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    return model.train()


def trainable(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def make_optimizer(config: TrainConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    o = config.optim
    return torch.optim.AdamW(params, lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay, eps=o.eps)


def lr_at(step: int, config: TrainConfig) -> float:
    """Linear warm-up, then constant, cosine or linear decay to min_lr_ratio * lr at max_steps."""
    o = config.optim
    if step < o.warmup_steps:
        return o.lr * (step + 1) / o.warmup_steps
    if o.schedule == "constant":
        return o.lr
    progress = min(1.0, (step - o.warmup_steps) / max(1, config.max_steps - o.warmup_steps))
    if o.schedule == "cosine":
        factor = 0.5 * (1 + math.cos(math.pi * progress))
    elif o.schedule == "linear":
        factor = 1 - progress
    else:
        raise ValueError(f"optim.schedule must be constant, cosine or linear, got {o.schedule!r}")
    return o.lr * (o.min_lr_ratio + (1 - o.min_lr_ratio) * factor)
