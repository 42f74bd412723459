"""Decoding (streamed == stock VAE decode), latent normalisation, MP4 writing, the conditioning blur."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from motif_video.conditioning import blur_std_px, gaussian_blur, timestep_aware_blur
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


def test_blur_formula_and_behaviour():
    assert blur_std_px(1.0, 736, 1280) == pytest.approx(7.36)
    assert blur_std_px(0.5, 736, 1280, strength=2.0) == pytest.approx(7.36)
    assert blur_std_px(0.0, 736, 1280) == 0.0
    with pytest.raises(ValueError, match="sigma"):
        blur_std_px(1.5, 64, 64)
    img = torch.zeros(1, 3, 33, 33)
    img[..., 16, 16] = 1.0
    torch.testing.assert_close(timestep_aware_blur(img, 0.0), img)  # sigma 0: untouched
    out = gaussian_blur(img, 2.0)
    assert out.sum().item() == pytest.approx(3.0, rel=1e-4)  # mass preserved per channel
    assert out[0, 0, 16, 16] == pytest.approx(1 / (2 * np.pi * 4), rel=0.05)  # 2-D Gaussian peak
    per_sample = timestep_aware_blur(torch.cat([img, img]), torch.tensor([0.0, 1.0]), strength=10.0)
    torch.testing.assert_close(per_sample[0], img[0])
    assert per_sample[1, 0, 16, 16] < 0.5
