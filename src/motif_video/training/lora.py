"""LoRA fine-tuning with peft, through diffusers' adapter API so adapters load back with a scale.

Adapters are saved in the diffusers pipeline format (`pipelines.lora.save_lora`, beside the loaders that read it):
`pytorch_lora_weights.safetensors` holding the peft state dict with keys prefixed `transformer.`, and the LoRA config
under the metadata key `lora_adapter_metadata` (keys prefixed the same way). Diffusers-style pipelines load it with `load_lora_weights`, and a bare transformer with
`MotifVideoTransformer.load_lora_adapter(folder, prefix="transformer", weight_name=LORA_WEIGHT_NAME)`; at inference
`attention_kwargs={"scale": s}` scales it.
"""

from __future__ import annotations

from torch import nn

from ..pipelines.lora import save_lora as save_lora  # the adapter file format, beside its readers
from ..pipelines.students import load_lora as load_lora  # loads what save_lora writes

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
