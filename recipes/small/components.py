"""The small shipped model's frozen components (trained VAE, caption tokenizer, random-weight T5Gemma2
encoder) in the released folder layout, and the final folder with half-precision weights.

The text encoder is NOT trained: its weights are random (seeded) and frozen, set up so that each output token is
mostly its own word (see `token_preserving_`): the transformer learns to read them through its attention.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from motif_video.synthetic.scenes import caption, scene_at
from motif_video.training.components import MODEL_INDEX, siglip_processor, text_encoder_config
from motif_video.training.tokenizer import train_word_tokenizer

TEXT_DIM = 64
IMAGE_DIM = 32
IMAGE_SIZE = 32
DTYPE_ON_DISK = torch.float16


def small_text_encoder_config(vocab_size: int):
    return text_encoder_config(
        vocab_size,
        text_dim=TEXT_DIM,
        head_dim=32,
        image_dim=IMAGE_DIM,
        image_size=IMAGE_SIZE,
        max_positions=128,
    )


BRANCH_SCALE = 0.25


@torch.no_grad()
def token_preserving_(encoder, branch_scale: float = BRANCH_SCALE):
    """Make a random T5Gemma2 encoder keep each token's identity. With default init, the Gemma sandwich norms give
    every attention / MLP branch unit RMS while the (sqrt(d)-scaled) embeddings have RMS 0.16, so two layers of
    random mixing leave a changed word's feature with cosine ~0.7 to the old one. Embeddings of unit RMS and
    branches scaled to `branch_scale` (post-norm weights, which Gemma applies as 1 + w) bring that to ~0.1 while
    keeping some context in every token."""
    text = encoder.text_model
    text.embed_tokens.weight.normal_(0.0, text.config.hidden_size**-0.5)
    for layer in text.layers:
        layer.post_self_attn_layernorm.weight.fill_(branch_scale - 1.0)
        layer.post_feedforward_layernorm.weight.fill_(branch_scale - 1.0)
    return encoder


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def write_components(
    folder: str | Path,
    vae_folder: str | Path,
    captions_seed: int = 0,
    captions: int = 5000,
    seed: int = 0,
    shift: float = 3.0,
    guidance_scale: float = 4.0,
) -> Path:
    """Everything but the transformer, in the released layout: vae (copied), tokenizer (trained on the captions
    of scenes 0..captions-1 of `captions_seed`, every template), text_encoder (random, frozen), feature_extractor,
    scheduler (sampling shift), guider (APG scale)."""
    from transformers import T5Gemma2Encoder

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    texts = [caption(scene_at(captions_seed, i), t) for i in range(captions) for t in range(3)]
    tokenizer = train_word_tokenizer(texts)
    tokenizer.save_pretrained(folder / "tokenizer")
    torch.manual_seed(seed)
    encoder = T5Gemma2Encoder(small_text_encoder_config(len(tokenizer) + 3)).eval()
    token_preserving_(encoder).save_pretrained(folder / "text_encoder")
    siglip_processor(IMAGE_SIZE).save_pretrained(folder / "feature_extractor")
    if Path(vae_folder).resolve() != (folder / "vae").resolve():
        shutil.copytree(vae_folder, folder / "vae", dirs_exist_ok=True)
    write_sampling_configs(folder, shift, guidance_scale)
    _write_json(folder / "model_index.json", MODEL_INDEX)
    return folder


def write_sampling_configs(folder: str | Path, shift: float, guidance_scale: float) -> None:
    folder = Path(folder)
    for name in ("scheduler", "guider"):
        (folder / name).mkdir(exist_ok=True)
    _write_json(
        folder / "scheduler" / "scheduler_config.json",
        {
            "_class_name": "FlowMatchEulerDiscreteScheduler",
            "_diffusers_version": "0.42.1",
            "num_train_timesteps": 1000,
            "shift": shift,
            "use_dynamic_shifting": False,
        },
    )
    _write_json(
        folder / "guider" / "guider_config.json",
        {
            "_class_name": "AdaptiveProjectedGuidance",
            "_diffusers_version": "0.42.1",
            "guidance_scale": guidance_scale,
            "adaptive_projected_guidance_momentum": 0.1,
            "adaptive_projected_guidance_rescale": 12.0,
            "adaptive_projected_guidance_norm_dim": [
                -1,
                -2,
                -4,
            ],  # one norm per latent frame; none: the whole video
            "eta": 1.0,
            "use_original_formulation": True,
        },
    )


def assemble(
    output: str | Path, components: str | Path, transformer: str | Path, generation: dict[str, Any]
) -> Path:
    """The shippable folder: components + transformer, weights stored in float16 (loaders cast back), and
    `generation_config.json` with the defaults `motif-video generate` uses for this model."""
    from diffusers import AutoencoderKLWan
    from transformers import T5Gemma2Encoder

    from motif_video.models import MotifVideoTransformer

    output, components = Path(output), Path(components)
    tmp = output.with_name(output.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for name in ("tokenizer", "feature_extractor", "scheduler", "guider"):
        shutil.copytree(components / name, tmp / name)
    MotifVideoTransformer.from_pretrained(transformer).to(DTYPE_ON_DISK).save_pretrained(tmp / "transformer")
    AutoencoderKLWan.from_pretrained(components / "vae").to(DTYPE_ON_DISK).save_pretrained(tmp / "vae")
    T5Gemma2Encoder.from_pretrained(components / "text_encoder").to(DTYPE_ON_DISK).save_pretrained(
        tmp / "text_encoder"
    )
    _write_json(tmp / "model_index.json", MODEL_INDEX)
    _write_json(tmp / "generation_config.json", generation)
    if output.exists():
        shutil.rmtree(output)
    os.replace(tmp, output)
    return output
