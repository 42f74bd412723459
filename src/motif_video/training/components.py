"""The frozen components the trainer and `motif-video cache` use (VAE, text encoder, tokenizer, SigLIP
preprocessing): loaded from a model folder / Hub id in the released layout, or the `tiny` preset.

`tiny` is the components' debug preset, as `presets.PRESETS["tiny"]` is the transformer's: offline, random, seconds
on a CPU (recipes/tiny-cpu, tests). A tiny Wan VAE with the released compression, a tiny T5Gemma2 encoder with a
tiny SigLIP tower, a word-level tokenizer with Gemma's special ids (pad 0, eos 1, bos 2), SigLIP preprocessing as
released.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import torch

from .tokenizer import word_tokenizer

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

# model_index.json of a folder in the released layout
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


@dataclass
class Components:
    vae: Any
    text_encoder: Any
    tokenizer: Any
    feature_extractor: Any | None = None


def load_components(
    name: str, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> Components:
    """ "tiny" (the offline preset above) or a model folder / Hub id in the released layout."""
    components = tiny_components() if name == "tiny" else folder_components(name, dtype)
    for module in (components.vae, components.text_encoder):
        module.requires_grad_(False).eval().to(device)
    components.text_encoder.to(dtype)
    return components


def vae_config(name: str) -> dict[str, Any]:
    """The VAE config of `load_components(name)` without loading any weights ("tiny": the preset's)."""
    if name == "tiny":
        return dict(tiny_vae().config)
    from ..hub import resolve_folder

    root = resolve_folder(name, allow_patterns=["vae/config.json"])
    path = root / "vae" / "config.json"
    if not path.is_file():
        raise ValueError(f"model folder {str(root)!r} has no vae/config.json")
    return json.loads(path.read_text())


def folder_components(name: str, dtype: torch.dtype = torch.float32) -> Components:
    from diffusers import AutoencoderKLWan
    from transformers import AutoTokenizer, T5Gemma2Encoder

    from ..hub import resolve_folder

    root = resolve_folder(name)
    extractor = root / "feature_extractor"
    return Components(
        AutoencoderKLWan.from_pretrained(root / "vae"),
        T5Gemma2Encoder.from_pretrained(root / "text_encoder", torch_dtype=dtype),
        AutoTokenizer.from_pretrained(root / "tokenizer"),
        siglip_processor_class().from_pretrained(extractor) if extractor.is_dir() else None,
    )


# ----------------------------------------------------------------------------------------------------------------
# the tiny preset


def tiny_components(seed: int = 0) -> Components:
    tokenizer = tiny_tokenizer()
    return Components(
        tiny_vae(seed),
        tiny_text_encoder(seed, vocab_size=max(128, len(tokenizer) + 3)),
        tokenizer,
        tiny_feature_extractor(),
    )


def tiny_tokenizer(words: tuple[str, ...] | list[str] = tuple(TINY_WORDS), model_max_length: int = 512):
    """A word-level fast tokenizer of `words` with Gemma's special ids; BOS only (no EOS), right padding."""
    return word_tokenizer(words, model_max_length)


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
        "hidden_size": text_dim, "intermediate_size": 2 * text_dim, "num_hidden_layers": 2,
        "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": head_dim, "vocab_size": vocab_size,
        "layer_types": ["sliding_attention", "full_attention"], "sliding_window": 16,
        "max_position_embeddings": max_positions, "query_pre_attn_scalar": head_dim, "pad_token_id": 0,
        "eos_token_id": 1, "bos_token_id": 2, "dropout_rate": 0.0, "attention_dropout": 0.0,
        "rms_norm_eps": 1e-6, "hidden_activation": "gelu_pytorch_tanh",
    }  # fmt: skip
    vision = {
        "model_type": "siglip_vision_model", "hidden_size": image_dim, "intermediate_size": 2 * image_dim,
        "num_hidden_layers": 1, "num_attention_heads": 2, "image_size": image_size, "patch_size": 8,
        "vision_use_head": False, "dropout_rate": 0.0,
    }  # fmt: skip
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


def siglip_processor_class():
    """transformers' SigLIP image processor: its default, which needs torchvision, where torchvision is installed, else
    its PIL version, named as such (transformers falls back to it from the default's name with a warning that asks
    for it by name)."""
    from transformers import SiglipImageProcessorPil
    from transformers.utils import is_torchvision_available

    if not is_torchvision_available():
        return SiglipImageProcessorPil
    from transformers import SiglipImageProcessor

    return SiglipImageProcessor


def siglip_processor(size: int):
    """SigLIP preprocessing as released (bicubic, no rescale, mean = std = 0.5) at `size` x `size`."""
    return siglip_processor_class()(
        size={"height": size, "width": size},
        resample=3,
        do_rescale=False,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )


def tiny_feature_extractor():
    return siglip_processor(TINY_IMAGE_SIZE)
