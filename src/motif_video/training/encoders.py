"""The frozen encoders the trainer and `motif-video cache` share: VAE latents, text embeddings, SigLIP tokens
(the components come from `components.load_components`).

Latents are normalised as the pipelines expect: z = (mode(VAE(x)) - mean) / std per channel, latent frame 0 by the
VAE config's frame-0 pair when it has one (pipelines.latents).
Text is tokenized with BOS, right padding to `max_tokens` and a mask, then encoded by the T5Gemma2 encoder.
"""

from __future__ import annotations

from typing import Any

import torch

from ..pipelines.latents import to_model_latents
from .components import Components


@torch.no_grad()
def encode_text(
    components: Components, prompts: list[str], max_tokens: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Text embeddings [B, L, C] and bool mask [B, L], cut after the longest prompt's last valid token."""
    tokens = components.tokenizer(
        prompts, padding="max_length", max_length=max_tokens, truncation=True, return_tensors="pt"
    )
    device = next(components.text_encoder.parameters()).device
    ids, mask = tokens.input_ids.to(device), tokens.attention_mask.to(device)
    embeds = components.text_encoder(input_ids=ids, attention_mask=mask)[0]
    length = int(mask.sum(1).max())
    return embeds[:, :length], mask[:, :length].bool()


@torch.no_grad()
def encode_video(vae: Any, pixels: torch.Tensor) -> torch.Tensor:
    """pixels [B, 3, F, H, W] in [-1, 1] -> normalised latents [B, 16, (F-1)/4+1, H/8, W/8] (float32)."""
    param = next(vae.parameters())
    z = vae.encode(pixels.to(param.device, param.dtype)).latent_dist.mode().float()
    return to_model_latents(z, vae.config)


@torch.no_grad()
def encode_image_tokens(components: Components, frames: torch.Tensor) -> torch.Tensor:
    """SigLIP tokens [B, N, C] of frames [B, 3, H, W] in [-1, 1] (the text encoder's vision tower, no projector)."""
    if components.feature_extractor is None:
        raise ValueError("image embeddings need a feature_extractor folder next to the text encoder")
    images = list(((frames.float().cpu() + 1) / 2).clamp(0, 1))
    pixel_values = components.feature_extractor(images=images, return_tensors="pt").pixel_values
    tower = components.text_encoder.vision_tower
    param = next(tower.parameters())
    return tower(pixel_values=pixel_values.to(param.device, param.dtype)).last_hidden_state
