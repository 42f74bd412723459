"""Reconstruction guidance (`pipelines.reconstruction`): the velocity term is the gradient that pulls the model's
clean estimate of the given latent frames toward them, and the I2V pipeline's `condition_guidance` applies it."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch
from pipeline_test_utils import PROMPT, SIZE, check_folder_default, quiet

from motif_video import MotifVideoImageToVideoPipeline, VideoCondition
from motif_video.defaults import GenerationDefaults
from motif_video.pipelines import prompts as P
from motif_video.pipelines.reconstruction import reconstruction_pull


@pytest.fixture(scope="module")
def i2v(strong_folder):
    return quiet(MotifVideoImageToVideoPipeline, strong_folder)


def _inputs(pipe, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(1, 16, 3, 8, 12, generator=g)
    given = torch.randn(1, 16, 2, 8, 12, generator=g)
    text = P.PromptEmbeds(
        torch.randn(1, 8, pipe.transformer.config.text_embed_dim, generator=g), torch.ones(1, 8)
    )
    return latents, given, text


def _error(transformer, latents, sigma, text, given, weight):
    """The squared error of the clean estimate (a pass without condition channels) at the given frames."""
    channels = torch.zeros(1, transformer.config.in_channels - 16, *latents.shape[2:])
    t = torch.full((1,), sigma * 1000.0)
    with torch.no_grad():
        v = transformer(
            hidden_states=torch.cat([latents, channels], 1), timestep=t, encoder_hidden_states=text.embeds,
            encoder_attention_mask=text.mask, image_embeds=None, return_dict=False,
        )[0]  # fmt: skip
    clean = latents - sigma * v
    return float(((clean[:, :, : given.shape[2]] - given) ** 2 * weight.view(1, 1, -1, 1, 1)).sum())


def test_the_pull_is_the_scaled_gradient_of_the_clean_estimates_error(i2v):
    transformer = i2v.transformer
    latents, given, text = _inputs(i2v)
    sigma, mask = 0.6, torch.tensor([1.0, 0.5])
    pull = reconstruction_pull(transformer, latents, sigma, text, given, mask, scale=2.0)
    # central differences of the error along a random direction equal the gradient's component along it
    d = torch.randn(latents.shape, generator=torch.Generator().manual_seed(1))
    eps = 1e-3
    slope = (_error(transformer, latents + eps * d, sigma, text, given, mask)
             - _error(transformer, latents - eps * d, sigma, text, given, mask)) / (2 * eps)  # fmt: skip
    grad_along = float((pull * d).sum()) * sigma / (2.0 * 0.5)
    assert grad_along == pytest.approx(slope, rel=2e-3)
    # a small clean-estimate step against it lowers the error, at the frames not given too (through the model)
    moved = latents - 1e-3 * pull * sigma
    assert _error(transformer, moved, sigma, text, given, mask) < _error(
        transformer, latents, sigma, text, given, mask
    )
    assert float(pull[:, :, 2].abs().sum()) > 0  # the frame that is not given moves as well


def test_scale_zero_and_mask_zero_pull_nothing(i2v):
    latents, given, text = _inputs(i2v)
    assert torch.equal(
        reconstruction_pull(i2v.transformer, latents, 0.5, text, given, None, 0.0), torch.zeros_like(latents)
    )
    none = reconstruction_pull(i2v.transformer, latents, 0.5, text, given, torch.zeros(2), 1.0)
    assert torch.equal(none, torch.zeros_like(latents))
    with pytest.raises(ValueError, match="noise level > 0, got sigma 0"):
        reconstruction_pull(i2v.transformer, latents, 0.0, text, given, None, 1.0)
    assert all(p.grad is None for p in i2v.transformer.parameters())  # weights untouched


def _call(pipe, **kw):
    kw = {**SIZE, "num_inference_steps": 3, "generator": torch.Generator().manual_seed(0), **kw}
    return pipe(prompt=PROMPT, output_type="latent", **kw).frames


def test_i2v_condition_guidance_changes_the_frames_around_the_given_ones(i2v, monkeypatch):
    rng = np.random.default_rng(0)
    first, last = (PIL.Image.fromarray(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)) for _ in range(2))
    kw = {"image": first, "conditions": [VideoCondition(image=last, frame_index=8)], "keep_first_frame": True}
    plain = _call(i2v, **kw)
    assert torch.equal(_call(i2v, condition_guidance=0.0, **kw), plain)  # the released default: off
    guided = _call(i2v, condition_guidance=3.0, **kw)
    assert not torch.allclose(
        guided[:, :, 1], plain[:, :, 1], atol=1e-4
    )  # a frame between the given ones moves
    torch.testing.assert_close(guided[:, :, 0], plain[:, :, 0])  # the held given frames stay on their paths
    check_folder_default(i2v, _call, kw, "condition_guidance", 3.0, on=guided, off=plain)
    monkeypatch.setattr(i2v, "sample", lambda *a, **k: pytest.fail("sampled before refusing the scale"))
    with pytest.raises(ValueError, match=r"condition_guidance must be >= 0 \(0 = off\), got -1"):
        _call(i2v, condition_guidance=-1.0, **kw)


def test_a_generation_config_with_a_negative_scale_is_refused():
    with pytest.raises(ValueError, match=r"condition_guidance must be >= 0 \(0 = off\), got -0.5"):
        GenerationDefaults(condition_guidance=-0.5)
    with pytest.raises(ValueError, match=r"condition_guidance must be >= 0 \(0 = off\), got -1"):
        GenerationDefaults(extend_condition_guidance=-1.0)


def test_eval_refuses_a_negative_scale_before_loading():
    from motif_video.evaluation.offline import OfflineEvalConfig

    with pytest.raises(ValueError, match=r"condition_guidance must be >= 0 \(0 = off\), got -2"):
        OfflineEvalConfig(model="does-not-matter", condition_guidance=-2.0).validate()
