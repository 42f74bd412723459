"""Latent space: per-channel (de)normalisation with the VAE's latents_mean / latents_std, and memory-lean decoding."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def _stats(values: Sequence[float], like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(1, -1, 1, 1, 1)


def normalize_latents(z: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """VAE latent -> model latent: (z - mean) / std per channel."""
    return (z - _stats(mean, z)) / _stats(std, z)


def denormalize_latents(z: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Model latent -> VAE latent: z * std + mean per channel."""
    return z * _stats(std, z) + _stats(mean, z)


def _streamable(vae) -> bool:
    """Whether `vae` is a Wan VAE whose frame loop we can drive ourselves (no tiling, no patchified output)."""
    needed = ("clear_cache", "post_quant_conv", "decoder", "_feat_map")
    return (
        all(hasattr(vae, n) for n in needed)
        and not getattr(vae, "use_tiling", False)
        and getattr(vae.config, "patch_size", None) is None
    )


@torch.no_grad()
def decode_latents(
    vae, latents: torch.Tensor, output_device: torch.device | str = "cpu", stream: bool = True
) -> torch.Tensor:
    """Decode normalised latents [B, 16, T, h, w] to video [B, 3, F, H, W] in [-1, 1] on `output_device`.

    One video at a time. With `stream` (Wan VAE, no tiling) the causal decoder runs latent frame by latent frame, the
    way `AutoencoderKLWan.decode` does, but each decoded chunk moves to `output_device` at once, so the full-size
    video never sits on the accelerator and is never concatenated there (the stock decode concatenates on the device
    after every frame, which makes it the memory peak at 1280x736x121). Same numbers as `vae.decode`.
    """
    cfg = vae.config
    videos = []
    for z in latents.split(1):
        z = denormalize_latents(z.to(vae.dtype), cfg.latents_mean, cfg.latents_std)
        if not (stream and _streamable(vae)):
            videos.append(vae.decode(z, return_dict=False)[0].to(output_device))
            continue
        vae.clear_cache()
        x = vae.post_quant_conv(z)
        chunks = []
        for i in range(x.shape[2]):
            vae._conv_idx = [0]
            out = vae.decoder(
                x[:, :, i : i + 1], feat_cache=vae._feat_map, feat_idx=vae._conv_idx, first_chunk=(i == 0)
            )
            chunks.append(out.clamp(-1.0, 1.0).to(output_device))
        vae.clear_cache()
        videos.append(torch.cat(chunks, dim=2))
    return torch.cat(videos)
