"""LoRA fine-tuning with peft, through diffusers' adapter API so adapters load back with a scale.

Adapters are saved with `save_lora_adapter` (diffusers / peft format: `pytorch_lora_weights.safetensors` with
`transformer.`-prefixed peft keys and the LoRA config in the file metadata) and load with
`MotifVideoTransformer.load_lora_adapter(folder)`; at inference `attention_kwargs={"scale": s}` scales them.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

# Every attention projection of the dual and single blocks, plus the Shared Cross-Attention query/output paths.
DEFAULT_TARGETS = [
    "to_q",
    "to_k",
    "to_v",
    "to_out.0",
    "add_q_proj",
    "add_k_proj",
    "add_v_proj",
    "to_add_out",
    "cross_attn_query_proj",
    "cross_attn_out_proj",
]


def add_lora(
    model: nn.Module,
    rank: int,
    alpha: float | None = None,
    dropout: float = 0.0,
    target_modules: list[str] | None = None,
    adapter_name: str = "default",
) -> list[str]:
    """Freeze `model`, add a LoRA adapter (B zero-initialised: the output is unchanged); returns trainable names."""
    from peft import LoraConfig

    if rank < 1:
        raise ValueError(f"LoRA rank must be >= 1, got {rank}")
    targets = list(target_modules or DEFAULT_TARGETS)
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()} | {
        ".".join(name.split(".")[-2:]) for name, _ in model.named_modules()
    }
    missing = [t for t in targets if t not in present]
    if len(missing) == len(targets):
        raise ValueError(f"no module of the model matches LoRA target_modules {targets}")
    model.requires_grad_(False)
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha if alpha is not None else rank,
        lora_dropout=dropout,
        target_modules=[t for t in targets if t not in missing],
        init_lora_weights=True,
    )
    model.add_adapter(config, adapter_name=adapter_name)
    return [name for name, p in model.named_parameters() if p.requires_grad]


def save_lora(model: nn.Module, folder: str | Path, adapter_name: str = "default") -> Path:
    folder = Path(folder)
    model.save_lora_adapter(str(folder), adapter_name=adapter_name, safe_serialization=True)
    return folder
