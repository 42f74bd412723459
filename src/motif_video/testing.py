"""Tiny, offline stand-ins for every released component, and a writer for a folder in the released layout.

Tests, benchmarks and recipes use these instead of the 12 GB of released weights: a tiny Wan VAE, a tiny T5Gemma2
encoder with a tiny SigLIP tower, an offline word-level tokenizer with Gemma's special ids (pad 0, eos 1, bos 2),
a tiny transformer, and scheduler / guider / feature-extractor configs as released.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

TINY_TEXT_DIM = 32
TINY_IMAGE_DIM = 24
TINY_IMAGE_SIZE = 32

# Words the tiny tokenizer knows (anything else maps to <unk>); covers the prompts used in tests and recipes.
TINY_WORDS = [
    "a",
    "an",
    "the",
    "of",
    "and",
    "with",
    "in",
    "on",
    "at",
    "to",
    "is",
    "are",
    "from",
    "into",
    "over",
    "under",
    "near",
    "through",
    "its",
    "their",
    "this",
    "that",
    "red",
    "green",
    "blue",
    "yellow",
    "orange",
    "purple",
    "white",
    "black",
    "gray",
    "pink",
    "brown",
    "cyan",
    "magenta",
    "circle",
    "square",
    "triangle",
    "ball",
    "box",
    "cube",
    "star",
    "disk",
    "ring",
    "shape",
    "object",
    "objects",
    "moving",
    "moves",
    "move",
    "left",
    "right",
    "up",
    "down",
    "grows",
    "growing",
    "shrinks",
    "shrinking",
    "rotates",
    "spinning",
    "still",
    "static",
    "slowly",
    "quickly",
    "fast",
    "slow",
    "small",
    "large",
    "big",
    "tiny",
    "background",
    "scene",
    "video",
    "clip",
    "camera",
    "cat",
    "dog",
    "car",
    "bird",
    "person",
    "man",
    "woman",
    "city",
    "street",
    "sea",
    "sky",
    "forest",
    "mountain",
    "river",
    "night",
    "day",
    "sun",
    "light",
    "walking",
    "running",
    "flying",
    "driving",
    "sitting",
    "standing",
    "waves",
    "beach",
    "rain",
    "snow",
    "text",
    "overlay",
    "watermark",
    "logo",
    "subtitles",
    "blurry",
    "low",
    "quality",
    "jerky",
    "motion",
    "flickering",
    "static",
]


def tiny_tokenizer(words: tuple[str, ...] | list[str] = TINY_WORDS, model_max_length: int = 512):
    """A word-level fast tokenizer with Gemma's special ids; encodes BOS only (no EOS), pads on the right."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    specials = ["<pad>", "<eos>", "<bos>", "<unk>"]
    vocab = {tok: i for i, tok in enumerate(specials)}
    for word in words:
        vocab.setdefault(word, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return gemma_style_tokenizer(tok, model_max_length)


def gemma_style_tokenizer(tok, model_max_length: int):
    """Wrap a `tokenizers.Tokenizer` whose ids 0..3 are <pad>, <eos>, <bos>, <unk> as the released pipeline expects
    its tokenizer: BOS only (no EOS), right padding."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 2)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        eos_token="<eos>",
        bos_token="<bos>",
        unk_token="<unk>",
        padding_side="right",
        model_max_length=model_max_length,
    )


def text_encoder_config(
    vocab_size: int = 128,
    text_dim: int = TINY_TEXT_DIM,
    head_dim: int = 16,
    image_dim: int = TINY_IMAGE_DIM,
    image_size: int = TINY_IMAGE_SIZE,
    max_positions: int = 1024,
):
    """A small `T5Gemma2EncoderConfig` (2 text layers, 1-layer SigLIP tower, patch 8, FFNs 2x wide, Gemma ids)."""
    from transformers import T5Gemma2EncoderConfig

    text = {
        "hidden_size": text_dim,
        "intermediate_size": 2 * text_dim,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": head_dim,
        "vocab_size": vocab_size,
        "layer_types": ["sliding_attention", "full_attention"],
        "sliding_window": 16,
        "max_position_embeddings": max_positions,
        "query_pre_attn_scalar": head_dim,
        "pad_token_id": 0,
        "eos_token_id": 1,
        "bos_token_id": 2,
        "dropout_rate": 0.0,
        "attention_dropout": 0.0,
        "rms_norm_eps": 1e-6,
        "hidden_activation": "gelu_pytorch_tanh",
    }
    vision = {
        "model_type": "siglip_vision_model",
        "hidden_size": image_dim,
        "intermediate_size": 2 * image_dim,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "image_size": image_size,
        "patch_size": 8,
        "vision_use_head": False,
        "dropout_rate": 0.0,
    }
    return T5Gemma2EncoderConfig(
        text_config=text,
        vision_config=vision,
        mm_tokens_per_image=4,
        boi_token_index=vocab_size - 3,
        eoi_token_index=vocab_size - 2,
        image_token_index=vocab_size - 1,
    )


def tiny_text_encoder(seed: int = 0, vocab_size: int = 128):
    """A tiny `T5Gemma2Encoder` (text width 32) with a SigLIP tower of width 24 (16 patch tokens at 32x32)."""
    from transformers import T5Gemma2Encoder

    torch.manual_seed(seed)
    return T5Gemma2Encoder(text_encoder_config(vocab_size)).eval()


def tiny_vae(seed: int = 0):
    """A tiny `AutoencoderKLWan` with the released compression (8x spatial, 4x temporal, 16 channels)."""
    from diffusers import AutoencoderKLWan

    torch.manual_seed(seed)
    return AutoencoderKLWan(
        base_dim=8, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    ).eval()


def tiny_feature_extractor():
    """SigLIP preprocessing as released (bicubic, no rescale, mean = std = 0.5) at the tiny image size."""
    from transformers import SiglipImageProcessor

    return SiglipImageProcessor(
        size={"height": TINY_IMAGE_SIZE, "width": TINY_IMAGE_SIZE},
        resample=3,
        do_rescale=False,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
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
    "eta": 1.0,
    "use_original_formulation": True,
}


# `motif-video generate` options for a fast run on a tiny folder (tests and examples).
TINY_GENERATE_ARGS = ["--height", "64", "--width", "96", "--num-frames", "9", "--steps", "2",
                      "--device", "cpu", "--seed", "1"]  # fmt: skip

# model_index.json of a folder in the released layout, with the tiny components' classes.
MODEL_INDEX = {
    "_class_name": "MotifVideoPipeline",
    "_diffusers_version": "0.42.1",
    "transformer": ["diffusers", "MotifVideoTransformer3DModel"],
    "vae": ["diffusers", "AutoencoderKLWan"],
    "text_encoder": ["transformers", "T5Gemma2Encoder"],
    "tokenizer": ["transformers", "PreTrainedTokenizerFast"],
    "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
    "guider": ["diffusers", "AdaptiveProjectedGuidance"],
    "feature_extractor": ["transformers", "SiglipImageProcessor"],
}


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
