"""Model summaries: parameter counts per stage and token counts at a given size."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from .options import check_video_size

RELEASED_TEXT_TOKENS = 512  # the pipeline's max_sequence_length
RELEASED_IMAGE_TOKENS = 4096  # SigLIP at 896x896 in 14x14 patches


def latent_shape(
    width: int, height: int, frames: int, vae_spatial: int = 8, vae_temporal: int = 4
) -> tuple[int, int, int]:
    """(T, H, W) of the latent for a video size, after validating it."""
    check_video_size(width, height, frames)
    return (frames - 1) // vae_temporal + 1, height // vae_spatial, width // vae_spatial


def parse_size(text: str) -> tuple[int, int, int]:
    """'1280x736x121' -> (1280, 736, 121)."""
    parts = text.lower().split("x")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"size must look like WIDTHxHEIGHTxFRAMES (e.g. 1280x736x121), got {text!r}")
    width, height, frames = (int(p) for p in parts)
    check_video_size(width, height, frames)
    return width, height, frames


def _count(modules: Any) -> int:
    if isinstance(modules, torch.nn.Module):
        modules = [modules]
    return sum(p.numel() for m in modules if m is not None for p in m.parameters())


def folder_token_budget(folder: str | Path) -> tuple[int, int]:
    """(text, image) tokens at most for a model folder: the tokenizer's `model_max_length` (capped at the pipeline's
    512) and SigLIP's patches of the feature extractor's image size (`vision_config.patch_size` of the text
    encoder). What a folder does not say is the released model's."""
    folder = Path(folder)

    def read(path: str) -> dict:
        file = folder / path
        return json.loads(file.read_text()) if file.is_file() else {}

    return token_budget(
        read("tokenizer/tokenizer_config.json"),
        read("feature_extractor/preprocessor_config.json"),
        read("text_encoder/config.json"),
    )


def token_budget(tokenizer: dict, feature_extractor: dict, text_encoder: dict) -> tuple[int, int]:
    """(text, image) tokens at most from the configs of a tokenizer, an image processor and a text encoder (as
    dicts; `folder_token_budget`); what they do not say is the released model's."""
    text = min(RELEASED_TEXT_TOKENS, tokenizer.get("model_max_length", 10**9))
    size = feature_extractor.get("size", {})
    patch = text_encoder.get("vision_config", {}).get("patch_size")
    if not (patch and size.get("height") and size.get("width")):
        return text, RELEASED_IMAGE_TOKENS
    return text, (size["height"] // patch) * (size["width"] // patch)


def model_summary(
    model: Any,
    size: tuple[int, int, int],
    text_tokens: int = RELEASED_TEXT_TOKENS,
    image_tokens: int = RELEASED_IMAGE_TOKENS,
) -> dict:
    """Parameters per stage and token counts at `size` = (width, height, frames)."""
    cfg = model.config
    t, h, w = latent_shape(*size)
    video_tokens = (t // cfg.patch_size_t) * (h // cfg.patch_size) * (w // cfg.patch_size)
    encoder_single = cfg.num_single_layers - cfg.num_decoder_layers
    embedders = [model.x_embedder, model.context_embedder, model.image_embedder, model.time_text_embed]
    embedders.append(model.guidance_embedder)  # a guidance-distilled student's (None otherwise)
    stages = {
        "embedders": _count(embedders),
        f"dual-stream blocks ({cfg.num_layers})": _count(model.transformer_blocks),
        f"single-stream blocks ({encoder_single})": _count(model.single_transformer_blocks[:encoder_single]),
        f"DDT decoder blocks ({cfg.num_decoder_layers})": _count(model.decoder_blocks),
        "output head": _count([model.norm_out, model.proj_out]),
    }
    return {
        "size": {"width": size[0], "height": size[1], "frames": size[2]},
        "latent": [cfg.out_channels, t, h, w],
        "parameters": {**stages, "total": _count(model)},
        "cross_attention_layout": model.cross_attention_layout,
        "tokens": {
            "video": video_tokens,
            "text (max)": text_tokens,
            "image (I2V)": image_tokens,
            "joint T2V": video_tokens + text_tokens,
            "joint I2V": video_tokens + text_tokens + image_tokens,
            "decoder joint": 2 * video_tokens,
        },
    }


def format_summary(name: str, summary: dict) -> str:
    lines = [f"{name}  ({summary['cross_attention_layout']} cross-attention layout)", "parameters:"]
    lines += [f"  {k:<32} {v:>15,}" for k, v in summary["parameters"].items()]
    s = summary["size"]
    lines.append(f"tokens at {s['width']}x{s['height']}x{s['frames']} (latent {summary['latent']}):")
    lines += [f"  {k:<32} {v:>15,}" for k, v in summary["tokens"].items()]
    return "\n".join(lines)
