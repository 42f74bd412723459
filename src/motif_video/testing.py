"""Test helpers: a tiny transformer with random (non-zero) weights, and a writer for a complete tiny model folder in
the released layout. Tests, benchmarks and examples use these instead of the 12 GB of released weights.

Nothing in the library imports this module; the tiny components themselves are the `tiny` preset of
`training.components`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from .training.components import (
    MODEL_INDEX,
    tiny_feature_extractor,
    tiny_text_encoder,
    tiny_tokenizer,
    tiny_vae,
)


def tiny_transformer(seed: int = 0, layout: str = "separate", std: float = 0.05, **overrides: Any):
    """The `tiny` preset with random (non-zero) weights, so every path contributes to the output."""
    from .presets import build_transformer

    torch.manual_seed(seed)
    model = build_transformer("tiny", cross_attention_layout=layout, **overrides)
    randomize_(model, std)
    return model.eval()


@torch.no_grad()
def randomize_(model: torch.nn.Module, std: float = 0.05) -> torch.nn.Module:
    """Fill every parameter with N(0, std) (norm scales with 1 + N(0, std)); zero-init gates no longer hide paths."""
    for name, param in model.named_parameters():
        if name.endswith("weight") and param.ndim == 1:
            param.copy_(1.0 + std * torch.randn_like(param))
        else:
            param.normal_(0.0, std)
    return model


SCHEDULER_CONFIG = {
    "_class_name": "FlowMatchEulerDiscreteScheduler",
    "num_train_timesteps": 1000,
    "shift": 15.0,
    "use_dynamic_shifting": False,
}

GUIDER_CONFIG = {
    "_class_name": "AdaptiveProjectedGuidance",
    "guidance_scale": 8.0,
    "adaptive_projected_guidance_momentum": 0.1,
    "adaptive_projected_guidance_rescale": 12.0,
    "adaptive_projected_guidance_norm_dim": [-1, -2, -4],
    "eta": 1.0,
    "use_original_formulation": True,
}


# `motif-video generate` options for a fast run on a tiny folder (tests and examples).
TINY_GENERATE_ARGS = ["--height", "64", "--width", "96", "--num-frames", "9", "--steps", "2",
                      "--device", "cpu", "--seed", "1"]  # fmt: skip


def write_tiny_pipeline_folder(path: str | Path, seed: int = 0) -> Path:
    """Write a complete model folder in the released layout (model_index.json and one subfolder per component)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = tiny_tokenizer()
    tiny_transformer(seed).save_pretrained(path / "transformer")
    tiny_vae(seed).save_pretrained(path / "vae")
    tiny_text_encoder(seed, vocab_size=max(128, len(tokenizer) + 3)).save_pretrained(path / "text_encoder")
    tokenizer.save_pretrained(path / "tokenizer")
    tiny_feature_extractor().save_pretrained(path / "feature_extractor")
    for name, config in (("scheduler", SCHEDULER_CONFIG), ("guider", GUIDER_CONFIG)):
        (path / name).mkdir(exist_ok=True)
        filename = "scheduler_config.json" if name == "scheduler" else "guider_config.json"
        (path / name / filename).write_text(json.dumps({**config, "_diffusers_version": "0.42.1"}, indent=2))
    (path / "model_index.json").write_text(json.dumps(MODEL_INDEX, indent=2))
    return path
