"""The one timestep-aware blur (motif_video.conditioning), shared by I2V training and the I2V pipeline."""

from __future__ import annotations

import math

import pytest
import torch

from motif_video import conditioning
from motif_video.conditioning import blur_std, gaussian_blur, timestep_aware_blur
from motif_video.training.i2v import condition_channels


def test_formula_in_latent_pixels():
    assert blur_std(1.0, 92, 160) == pytest.approx(0.92)  # 1280x736 latents, strength 1
    assert blur_std(0.5, 92, 160, strength=2.0) == pytest.approx(0.92)
    assert blur_std(0.0, 92, 160, strength=5.0) == 0.0
    with pytest.raises(ValueError, match="sigma must be in"):
        blur_std(1.5, 8, 8)
    with pytest.raises(ValueError, match="strength must be >= 0"):
        blur_std(0.5, 8, 8, strength=-1.0)


def test_kernel_preserves_mass_and_has_the_gaussian_peak():
    img = torch.zeros(1, 3, 33, 33)
    img[..., 16, 16] = 1.0
    out = gaussian_blur(img, 2.0)
    assert out.sum().item() == pytest.approx(3.0, rel=1e-4)  # each channel keeps its mass
    assert out[0, 0, 16, 16].item() == pytest.approx(1 / (2 * math.pi * 4), rel=0.05)
    flat = torch.ones(1, 2, 1, 8, 8)
    torch.testing.assert_close(gaussian_blur(flat, 3.0), flat)  # normalised even when cut to the image size


def test_strength_or_sigma_zero_is_the_identity():
    latents = torch.randn(2, 16, 1, 8, 12)
    assert timestep_aware_blur(latents, 1.0, strength=0.0) is latents
    assert timestep_aware_blur(latents, 0.0, strength=10.0) is latents
    assert timestep_aware_blur(latents, torch.zeros(2), strength=10.0).equal(latents)


def test_per_example_sigma():
    latents = torch.randn(3, 16, 8, 12, generator=torch.Generator().manual_seed(0))
    sigma = torch.tensor([0.0, 0.5, 1.0])
    out = timestep_aware_blur(latents, sigma, strength=20.0)
    assert out[0].equal(latents[0])
    for i in (1, 2):  # each example blurred with its own std (8 latent px short side)
        expected = gaussian_blur(latents[i], blur_std(float(sigma[i]), 8, 12, 20.0))
        torch.testing.assert_close(out[i], expected)
    # More noise, more blur: the high frequencies (neighbour differences) shrink with sigma.
    roughness = [(out[i, :, :, 1:] - out[i, :, :, :-1]).abs().mean().item() for i in range(3)]
    assert roughness[0] > roughness[1] > roughness[2]
    with pytest.raises(ValueError, match="3 values for a batch of 2"):
        timestep_aware_blur(latents[:2], sigma)


def test_training_and_inference_call_the_same_function(monkeypatch):
    from motif_video.pipelines.velocity import Conditioning

    calls = []
    original = conditioning.timestep_aware_blur

    def spy(latents, sigma, strength=1.0):
        calls.append((tuple(latents.shape), strength))
        return original(latents, sigma, strength)

    monkeypatch.setattr(conditioning, "timestep_aware_blur", spy)
    latents = torch.randn(2, 16, 3, 8, 8)
    condition_channels(latents, torch.tensor([0.2, 0.9]), conditioned=True, blur_strength=4.0)
    cond = Conditioning(latents[:, :, :1].clone(), None, blur=4.0)
    cond.channels(latents, 0.9)
    assert calls == [((2, 16, 1, 8, 8), 4.0), ((2, 16, 1, 8, 8), 4.0)]
    # ... and with the same std for the same sigma: the pipeline's 17 channels equal training's at that sigma.
    torch.testing.assert_close(
        cond.channels(latents, 0.9), condition_channels(latents, torch.tensor([0.9, 0.9]), True, 4.0)
    )
