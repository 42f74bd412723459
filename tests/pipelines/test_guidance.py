"""Guidance math against its closed form, diffusers' APG, and batched vs two-pass predictions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from motif_video.pipelines.guidance import GuidanceConfig, Guider, apg, cfg, config_from_guider


def _closed_form_apg(cond, diff, scale, threshold, eta, dims):
    """APG written out per slice in numpy: clip the norm, split diff into parts parallel / orthogonal to cond."""
    c, d = cond.double().numpy(), diff.double().numpy()
    axes = tuple(a % c.ndim for a in dims)
    norm = np.sqrt((d**2).sum(axis=axes, keepdims=True))
    d = d * np.minimum(1.0, threshold / norm)
    par = (d * c).sum(axis=axes, keepdims=True) / (c * c).sum(axis=axes, keepdims=True) * c
    return c + scale * ((d - par) + eta * par)


@pytest.mark.parametrize("dims", [(-1, -2, -4), (-1, -2, -3)])
@pytest.mark.parametrize("eta", [1.0, 0.0, 0.5])
@pytest.mark.parametrize("threshold", [12.0, 0.3])
def test_apg_matches_closed_form(dims, eta, threshold):
    g = torch.Generator().manual_seed(0)
    cond, diff = torch.randn(2, 4, 3, 5, 6, generator=g), 0.2 * torch.randn(2, 4, 3, 5, 6, generator=g)
    ours = apg(cond, diff, 8.0, threshold, eta, dims)
    np.testing.assert_allclose(
        ours.numpy(), _closed_form_apg(cond, diff, 8.0, threshold, eta, dims), atol=2e-5
    )


def test_apg_closed_form_checks_are_sensitive():
    g = torch.Generator().manual_seed(0)
    cond, diff = torch.randn(1, 4, 3, 5, 6, generator=g), torch.randn(1, 4, 3, 5, 6, generator=g)
    a = apg(cond, diff, 8.0, 0.3, 0.0, (-1, -2, -4))
    b = _closed_form_apg(cond, diff, 8.0, 0.3, 0.0, (-1, -2, -3))
    assert np.abs(a.numpy() - b).max() > 1e-2


def test_guider_momentum_and_diffusers_apg_agree_over_steps():
    from diffusers.guiders.adaptive_projected_guidance import MomentumBuffer, normalized_guidance

    config = GuidanceConfig("apg", 8.0, 1.0, 0.1, 0.0, (-1, -2, -3))
    ours, buffer = Guider(config), MomentumBuffer(0.1)
    g = torch.Generator().manual_seed(1)
    for _ in range(4):
        cond, uncond = torch.randn(1, 4, 3, 5, 6, generator=g), torch.randn(1, 4, 3, 5, 6, generator=g)
        expected = normalized_guidance(cond, uncond, 8.0, buffer, 0.0, 1.0, True, [-1, -2, -3])
        torch.testing.assert_close(ours(cond, uncond), expected, atol=1e-5, rtol=1e-6)


def test_cfg_and_reductions():
    cond, uncond = torch.randn(1, 2, 1, 2, 2), torch.randn(1, 2, 1, 2, 2)
    torch.testing.assert_close(cfg(cond, uncond, 3.0), uncond + 3.0 * (cond - uncond))
    assert Guider(GuidanceConfig("cfg", 1.0))(cond, None) is cond
    assert Guider(GuidanceConfig("apg", 0.0))(cond, None) is cond
    assert Guider(GuidanceConfig("none"))(cond, uncond) is cond
    assert not GuidanceConfig("cfg", 1.0).needs_uncond and GuidanceConfig("apg", 8.0).needs_uncond


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "pag"}, "guidance must be one of"),
        ({"scale": -1.0}, "guidance_scale"),
        ({"norm_dims": (0, -1)}, "norm_dims"),
        ({"momentum": 1.0}, "momentum"),
    ],
)
def test_bad_guidance_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GuidanceConfig(**kwargs)


def test_config_from_folder_guider():
    from diffusers import AdaptiveProjectedGuidance, ClassifierFreeGuidance

    apg_guider = AdaptiveProjectedGuidance(
        guidance_scale=7.0,
        adaptive_projected_guidance_momentum=0.2,
        adaptive_projected_guidance_rescale=10.0,
        use_original_formulation=True,
    )
    c = config_from_guider(apg_guider)
    assert (c.mode, c.scale, c.momentum, c.norm_threshold, c.eta, c.norm_dims) == (
        "apg",
        7.0,
        0.2,
        10.0,
        1.0,
        (-1, -2, -3, -4),  # no norm dims in the guider's config: diffusers' one norm over the whole video
    )
    assert config_from_guider(apg_guider, scale=5.0, eta=None).scale == 5.0
    assert config_from_guider(ClassifierFreeGuidance(guidance_scale=5.0)).mode == "cfg"
    assert config_from_guider(None) == GuidanceConfig()


def test_batched_cond_uncond_equals_two_passes(tiny_folder):
    """One forward over [cond; uncond] (padded text + mask) gives the same velocities as two mask-free passes."""
    from motif_video import MotifVideoPipeline
    from motif_video.pipelines.velocity import Conditioning, PassOptions
    from motif_video.testing import tiny_transformer

    pipe = MotifVideoPipeline.from_pretrained(tiny_folder, transformer=tiny_transformer(0, std=0.2))
    cpu = torch.device("cpu")
    cond, uncond = (
        pipe.encode_texts(t, 512, cpu) for t in (["a red ball moving left over the sea"], ["blurry"])
    )
    assert cond.embeds.shape[1] != uncond.embeds.shape[1]  # different lengths: the batch needs padding + mask
    latents = torch.randn(1, 16, 3, 8, 12, generator=torch.Generator().manual_seed(0))
    image = torch.randn(1, 16, 24)
    conditioning = Conditioning(torch.randn_like(latents[:, :, :1]), image)
    batched = pipe.predict_velocity(latents, 0.7, cond, uncond, conditioning, PassOptions("batched"))
    two_pass = pipe.predict_velocity(latents, 0.7, cond, uncond, conditioning, PassOptions("sequential"))
    for a, b in zip(batched, two_pass):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-5)
    assert (batched[0] - batched[1]).abs().max() > 1e-2  # the two prompts do give different predictions


@pytest.mark.parametrize("mode", ["apg", "cfg"])
def test_pure_guide_with_per_sample_scales_equals_one_guider_per_sample(mode):
    from motif_video.pipelines.guidance import GuidanceConfig, Guider, guide

    g = torch.Generator().manual_seed(0)
    steps = [
        (torch.randn(2, 16, 3, 4, 4, generator=g), torch.randn(2, 16, 3, 4, 4, generator=g)) for _ in range(3)
    ]
    scales = (2.0, 6.0)
    config = GuidanceConfig(mode=mode, norm_threshold=3.0)
    guiders = [Guider(GuidanceConfig(mode=mode, scale=s, norm_threshold=3.0)) for s in scales]
    running = None
    for cond, uncond in steps:
        batch, running = guide(cond, uncond, torch.tensor(scales).view(2, 1, 1, 1, 1), config, running)
        each = torch.cat([guider(cond[i : i + 1], uncond[i : i + 1]) for i, guider in enumerate(guiders)])
        torch.testing.assert_close(batch, each, atol=1e-6, rtol=1e-6)
    assert (running is None) == (mode == "cfg")
