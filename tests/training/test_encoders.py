"""The trainer's VAE encode normalises as the pipelines do, the VAE config's frame-0 pair included."""

from __future__ import annotations

import torch

from motif_video.pipelines.latents import FIRST_FRAME_MEAN, FIRST_FRAME_STD, normalize_latents
from motif_video.testing import tiny_vae
from motif_video.training.encoders import encode_video


def test_encode_video_uses_the_first_frame_pair():
    vae = tiny_vae()
    pixels = torch.rand(2, 3, 9, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    mean, std = vae.config.latents_mean, vae.config.latents_std
    z = vae.encode(pixels).latent_dist.mode()
    torch.testing.assert_close(encode_video(vae, pixels), normalize_latents(z, mean, std))
    vae.register_to_config(**{FIRST_FRAME_MEAN: [0.5] * 16, FIRST_FRAME_STD: [0.25] * 16})
    paired = encode_video(vae, pixels)
    torch.testing.assert_close(paired[:, :, 1:], normalize_latents(z, mean, std)[:, :, 1:])
    torch.testing.assert_close(paired[:, :, :1], (z[:, :, :1] - 0.5) / 0.25)
