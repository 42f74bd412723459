"""Tiny transformers, random adapters and inputs shared by the interop tests."""

from __future__ import annotations

import torch

from motif_video.interop.lora_keys import LoraLayer, linear_shapes

# Modules of the tiny transformer a test adapter targets (dual and single blocks, cross-attention, an MLP).
MODULES = (
    "transformer_blocks.0.attn.to_q",
    "transformer_blocks.1.attn.add_v_proj",
    "transformer_blocks.0.ff.net.0.proj",
    "single_transformer_blocks.0.cross_attn.to_out.0",
    "single_transformer_blocks.2.proj_out",
)


def random_adapter(transformer, seed: int, rank: int = 4, alpha: float = 8.0, modules=MODULES) -> dict:
    """A LoRA with non-zero up and down on `modules` (the last one at half rank and its own alpha)."""
    g = torch.Generator().manual_seed(seed)
    shapes = linear_shapes(transformer)
    adapter = {}
    for i, module in enumerate(modules):
        out_f, in_f = shapes[module]
        r, a = (rank, alpha) if i < len(modules) - 1 else (max(1, rank // 2), alpha / 4)
        down = torch.randn(r, in_f, generator=g) * 0.4
        up = torch.randn(out_f, r, generator=g) * 0.4
        adapter[module] = LoraLayer(down=down, up=up, alpha=a)
    return adapter


def inputs(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "hidden_states": torch.randn(1, 33, 2, 4, 4, generator=g),
        "timestep": torch.tensor([500.0]),
        "encoder_hidden_states": torch.randn(1, 6, 32, generator=g),
    }


@torch.no_grad()
def run(transformer) -> torch.Tensor:
    return transformer(**inputs()).sample


@torch.no_grad()
def merge_by_hand(transformer, adapters_and_weights) -> None:
    """Add weight * (alpha / r) * up @ down of every adapter to the Linear weights, in float64."""
    for adapter, weight in adapters_and_weights:
        for module, layer in adapter.items():
            linear = transformer.get_submodule(module)
            delta = weight * layer.scale * (layer.up.double() @ layer.down.double())
            linear.weight.copy_((linear.weight.double() + delta).to(linear.weight.dtype))


def with_random_peft_lora(transformer, std: float = 0.2, params: str = "lora_"):
    """`transformer` with a rank-4 peft LoRA (alpha 2) whose `params` weights are drawn N(0, std): what a LoRA run
    leaves to save."""
    from motif_video.training.lora import add_lora

    add_lora(transformer, rank=4, alpha=2.0)
    with torch.no_grad():
        for name, p in transformer.named_parameters():
            if params in name:
                p.normal_(0, std)
    return transformer
