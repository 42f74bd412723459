"""Named transformer configurations, each complete (no key left to the constructor's defaults, which are diffusers'):
the released model, a tiny one for tests, and the shipped small model."""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    # transformer/config.json of Motif-Technologies/Motif-Video-2B (no cross_attention_layout: "separate")
    "motif-video-2b": {
        "in_channels": 33,
        "out_channels": 16,
        "num_attention_heads": 12,
        "attention_head_dim": 128,
        "num_layers": 12,
        "num_single_layers": 24,
        "num_decoder_layers": 8,
        "mlp_ratio": 4.0,
        "patch_size": 2,
        "patch_size_t": 1,
        "qk_norm": "rms_norm",
        "norm_type": "layer_norm",
        "text_embed_dim": 2560,
        "image_embed_dim": 1152,
        "rope_theta": 10000.0,
        "rope_axes_dim": [16, 56, 56],
        "enable_text_cross_attention_dual": False,
        "enable_text_cross_attention_single": True,
    },
    # Same architecture at toy width, for tests: 2 dual + 2 encoder single + 1 decoder block; new models use the
    # paper's Shared Cross-Attention layout.
    "tiny": {
        "in_channels": 33,
        "out_channels": 16,
        "num_attention_heads": 2,
        "attention_head_dim": 16,
        "num_layers": 2,
        "num_single_layers": 3,
        "num_decoder_layers": 1,
        "mlp_ratio": 4.0,
        "patch_size": 2,
        "patch_size_t": 1,
        "qk_norm": "rms_norm",
        "norm_type": "layer_norm",
        "text_embed_dim": 32,
        "image_embed_dim": 24,
        "rope_theta": 10000.0,
        "rope_axes_dim": [4, 6, 6],
        "enable_text_cross_attention_dual": False,
        "enable_text_cross_attention_single": True,
        "cross_attention_layout": "shared",
    },
    # The shipped small model (`motif_video/assets/small`): 64x64, 33 frames; text from a width-64 T5Gemma2 encoder.
    "small": {
        "in_channels": 33,
        "out_channels": 16,
        "num_attention_heads": 4,
        "attention_head_dim": 32,
        "num_layers": 2,
        "num_single_layers": 5,
        "num_decoder_layers": 2,
        "mlp_ratio": 4.0,
        "patch_size": 2,
        "patch_size_t": 1,
        "qk_norm": "rms_norm",
        "norm_type": "layer_norm",
        "text_embed_dim": 64,
        "image_embed_dim": 32,
        "rope_theta": 10000.0,
        "rope_axes_dim": [8, 12, 12],
        "enable_text_cross_attention_dual": False,
        "enable_text_cross_attention_single": True,
        "cross_attention_layout": "shared",
    },
}


def preset_config(name: str) -> dict[str, Any]:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; available: {sorted(PRESETS)}")
    return dict(PRESETS[name])


def build_transformer(name: str, device: str = "cpu", **overrides: Any):
    """Build a preset transformer; `device="meta"` builds without allocating weights."""
    import torch

    from .models import MotifVideoTransformer

    with torch.device(device):
        return MotifVideoTransformer(**{**preset_config(name), **overrides})
