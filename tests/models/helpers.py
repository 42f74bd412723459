"""Shared builders for transformer tests: our model and diffusers' reference with identical random weights."""

from __future__ import annotations

import torch

from motif_video.presets import preset_config
from motif_video.testing import tiny_transformer

TINY = preset_config("tiny")
# The tiny config as diffusers' class takes it (it has no cross_attention_layout key: its layout is "separate").
TINY_REFERENCE = {k: v for k, v in TINY.items() if k != "cross_attention_layout"}


def reference_and_ours(seed: int = 0, **overrides):
    """(reference, ours) in eval mode with the same random weights (separate layout)."""
    from diffusers import MotifVideoTransformer3DModel

    ours = tiny_transformer(seed, layout="separate", std=0.3, **overrides)
    reference = MotifVideoTransformer3DModel(**{**TINY_REFERENCE, **overrides}).eval()
    reference.load_state_dict(ours.state_dict(), strict=True)
    return reference, ours


def inputs(batch: int = 2, frames: int = 3, height: int = 8, width: int = 12, text: int = 7, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return {
        "hidden_states": torch.randn(batch, 33, frames, height, width, generator=g),
        "timestep": torch.rand(batch, generator=g) * 1000,
        "encoder_hidden_states": torch.randn(batch, text, TINY["text_embed_dim"], generator=g),
    }
