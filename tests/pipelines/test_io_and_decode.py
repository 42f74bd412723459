"""Decoding (streamed == stock VAE decode), latent normalisation, MP4 writing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from motif_video.pipelines.export import read_mp4_info, write_mp4
from motif_video.pipelines.latents import decode_latents, denormalize_latents, normalize_latents


def test_streamed_decode_equals_vae_decode():
    from motif_video.testing import tiny_vae

    vae = tiny_vae()
    z = torch.randn(2, 16, 3, 4, 6, generator=torch.Generator().manual_seed(0))
    mean, std = vae.config.latents_mean, vae.config.latents_std
    # One video at a time, as decode_latents does (a batch of 2 rounds differently in the convolutions, ~1e-6).
    expected = torch.cat(
        [vae.decode(denormalize_latents(v, mean, std), return_dict=False)[0] for v in z.split(1)]
    )
    streamed = decode_latents(vae, z, stream=True)
    assert streamed.shape == (2, 3, 9, 32, 48)
    torch.testing.assert_close(streamed, expected, atol=0, rtol=0)
    vae.enable_tiling()  # tiling falls back to the stock path
    assert decode_latents(vae, z[:1]).shape == (1, 3, 9, 32, 48)


def test_latent_normalisation_round_trip():
    mean, std = [float(i) for i in range(16)], [1.0 + i for i in range(16)]
    z = torch.randn(1, 16, 2, 3, 3)
    torch.testing.assert_close(denormalize_latents(normalize_latents(z, mean, std), mean, std), z)
    assert normalize_latents(z, mean, std)[0, 3].mean().item() == pytest.approx(
        ((z[0, 3] - 3) / 4).mean().item()
    )


def test_mp4_round_trip(tmp_path):
    frames = np.random.default_rng(0).random((9, 64, 96, 3)).astype(np.float32)
    path = write_mp4(frames, tmp_path / "clip.mp4", fps=24)
    assert read_mp4_info(path) == {"frames": 9, "width": 96, "height": 64, "fps": 24.0}
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]  # no temporary file left


def test_mp4_failure_leaves_nothing(tmp_path):
    with pytest.raises(ValueError, match="frames must be"):
        write_mp4(np.zeros((9, 64, 96)), tmp_path / "bad.mp4")
    with pytest.raises(ValueError, match="fps"):
        write_mp4(np.zeros((9, 64, 96, 3)), tmp_path / "bad.mp4", fps=0)
    assert list(tmp_path.iterdir()) == []
