"""The decoder fit (`pipelines.decoder_fit`): latent frames that hold given pixel frames refined through the causal
decoder, in the context of the latents before them; and the I2V pipeline's `decoder_fit_steps`."""

from __future__ import annotations

import re

import numpy as np
import PIL.Image
import pytest
import torch
from pipeline_test_utils import PROMPT, SIZE, check_folder_default, quiet

from motif_video import MotifVideoImageToVideoPipeline, MotifVideoPipeline, VideoCondition
from motif_video.pipelines.decoder_fit import _chunk, fit_latent_frames, fit_step_count
from motif_video.pipelines.latents import decode_latents, to_model_latents


@pytest.fixture(scope="module")
def i2v(strong_folder):
    return quiet(MotifVideoImageToVideoPipeline, strong_folder)


@pytest.fixture(scope="module")
def vae():
    """The shipped small model's VAE: trained, so that its frames follow its latents (a random tiny VAE's barely
    do), 64x64 in 2x2 patches (the fit unpatchifies)."""
    from diffusers import AutoencoderKLWan

    from motif_video.hub import shipped_model

    return AutoencoderKLWan.from_pretrained(shipped_model("small") / "vae")


def _clip(index: int) -> torch.Tensor:
    """A procedural scene's first 13 frames, [1, 3, 13, 64, 64] in [-1, 1]."""
    from motif_video.synthetic import render, scene_at

    frames = render(scene_at(1000, index), 13, 64, 64)
    return torch.from_numpy(frames).permute(3, 0, 1, 2)[None].float() / 127.5 - 1


def _latents(vae, index: int = 0) -> torch.Tensor:
    with torch.no_grad():
        return to_model_latents(vae.encode(_clip(index)).latent_dist.mode(), vae.config)  # [1, 16, 4, 8, 8]


def test_chunks_decoded_after_their_context_are_the_vae_decode(vae):
    z = _latents(vae)
    vae.clear_cache()
    cache, chunks = list(vae._feat_map), []
    with torch.no_grad():
        for k in range(z.shape[2]):
            out, cache = _chunk(vae, z[:, :, k : k + 1], k, cache)
            chunks.append(out.clamp(-1, 1))
    vae.clear_cache()
    torch.testing.assert_close(torch.cat(chunks, 2), decode_latents(vae, z), rtol=1e-5, atol=1e-5)


def test_fitted_frames_decode_closer_to_their_images_and_nothing_before_them_moves(vae):
    z = _latents(vae)
    z[:, :, 2] += 0.7 * torch.randn(z[:, :, 2].shape, generator=torch.Generator().manual_seed(0))  # spoilt
    truth = _clip(0)[0]
    weights = {k: v.clone() for k, v in vae.state_dict().items()}
    fitted = fit_latent_frames(
        vae, z, {f: truth[:, f] for f in range(5, 9)}, steps=30
    )  # latent frame 2's group
    before, after = decode_latents(vae, z)[0], decode_latents(vae, fitted)[0]
    for f in range(5, 9):
        assert (after[:, f] - truth[:, f]).abs().mean() < 0.9 * (before[:, f] - truth[:, f]).abs().mean(), f
    torch.testing.assert_close(
        fitted[:, :, [0, 1, 3]], z[:, :, [0, 1, 3]], rtol=0, atol=0
    )  # only latent 2 moves
    torch.testing.assert_close(
        after[:, :5], before[:, :5], rtol=0, atol=0
    )  # frames before its group: unchanged
    assert all(torch.equal(v, weights[k]) for k, v in vae.state_dict().items())  # the VAE is left as it was
    assert all(p.grad is None for p in vae.parameters())


def test_a_groups_frames_that_are_not_given_keep_how_they_decoded(vae):
    z = _latents(vae)
    z[:, :, 2] += 0.7 * torch.randn(z[:, :, 2].shape, generator=torch.Generator().manual_seed(0))
    truth = _clip(0)[0]
    before = decode_latents(vae, z)[0]
    one = decode_latents(vae, fit_latent_frames(vae, z, {6: truth[:, 6]}, steps=30))[0]
    every = decode_latents(vae, fit_latent_frames(vae, z, {f: truth[:, f] for f in range(5, 9)}, steps=30))[0]
    for f in (5, 7, 8):
        kept = (one[:, f] - before[:, f]).abs().mean()
        assert kept < 0.005 and kept < 0.25 * (every[:, f] - before[:, f]).abs().mean(), f


def test_frames_are_fitted_in_causal_order(vae):
    z = _latents(vae)
    images = _clip(4)[0]
    both = fit_latent_frames(vae, z, {0: images[:, 0], 8: images[:, 8]}, steps=5)
    first = fit_latent_frames(vae, z, {0: images[:, 0]}, steps=5)
    torch.testing.assert_close(both[:, :, :1], first[:, :, :1])  # frame 0 as alone
    # latent 2 is fitted after the fitted latent 0: as fitting it alone on top of that
    torch.testing.assert_close(both, fit_latent_frames(vae, first, {8: images[:, 8]}, steps=5))


def test_bad_fit_arguments_raise(vae):
    z = _latents(vae)
    image = torch.zeros(3, 64, 64)
    assert fit_latent_frames(vae, z, {2: image}, steps=0) is z
    assert fit_latent_frames(vae, z, {}, steps=5) is z
    with pytest.raises(ValueError, match="decoder fit steps must be >= 0, got -1"):
        fit_latent_frames(vae, z, {2: image}, steps=-1)
    with pytest.raises(ValueError, match=r"one video \[1, C, T, h, w\], got shape \(2, 16, 4, 8, 8\)"):
        fit_latent_frames(vae, torch.cat([z, z]), {2: image}, steps=1)
    with pytest.raises(ValueError, match="pixel frame 13 is past the 4 latent frames given"):
        fit_latent_frames(vae, z, {13: image}, steps=1)
    with pytest.raises(ValueError, match="needs a Wan VAE"):
        fit_latent_frames(torch.nn.Linear(2, 2), z, {2: image}, steps=1)


def _call(pipe, **kw):
    kw = {**SIZE, "num_inference_steps": 2, "generator": torch.Generator().manual_seed(0), **kw}
    return pipe(prompt=PROMPT, output_type="latent", **kw).frames


def test_i2v_fits_every_given_frame(i2v, monkeypatch):
    rng = np.random.default_rng(0)
    first, last, key = (
        PIL.Image.fromarray(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)) for _ in range(3)
    )
    kw = {"image": first, "last_image": last, "conditions": [VideoCondition(image=key, frame_index=4)]}
    plain = _call(i2v, **kw)
    assert torch.equal(_call(i2v, decoder_fit_steps=0, **kw), plain)  # the released default: no fit
    fitted = _call(i2v, decoder_fit_steps=3, **kw)
    pixels = {
        f: i2v.video_processor.preprocess(im, height=64, width=96)[0]
        for f, im in ((0, first), (4, key), (8, last))
    }
    torch.testing.assert_close(fitted, fit_latent_frames(i2v.vae, plain, pixels, 3), rtol=1e-5, atol=1e-5)
    check_folder_default(i2v, _call, kw, "decoder_fit_steps", 3, on=fitted, off=plain)
    monkeypatch.setattr(i2v, "sample", lambda *a, **k: pytest.fail("sampled before refusing the fit steps"))
    with pytest.raises(ValueError, match="decoder_fit_steps must be >= 0, got -3"):
        _call(i2v, decoder_fit_steps=-3, **kw)


def test_t2v_has_nothing_to_fit_without_the_repaint(strong_folder, monkeypatch):
    t2v = quiet(MotifVideoPipeline, strong_folder)
    assert torch.equal(_call(t2v, decoder_fit_steps=3), _call(t2v))
    monkeypatch.setattr(t2v, "sample", lambda *a, **k: pytest.fail("sampled before refusing the fit steps"))
    with pytest.raises(ValueError, match="decoder_fit_steps must be >= 0, got -1"):
        _call(t2v, decoder_fit_steps=-1)


def test_the_fit_reports_each_step(vae):
    z, calls = _latents(vae), []
    targets = {0: torch.zeros(3, 64, 64), 5: torch.zeros(3, 64, 64), 6: torch.zeros(3, 64, 64)}
    fit_latent_frames(vae, z, targets, steps=2, progress=lambda: calls.append(1))
    assert (
        len(calls) == fit_step_count(targets, 2) == 4
    )  # two steps on latent frame 0, two on frame 2 (pixels 5-8)


def test_the_fit_shows_a_progress_bar_that_disable_silences(strong_folder, i2v, capsys):
    """Before, the bar stood still at its last sampling step while the decoder fit ran (50 Adam steps through the
    decoder per given latent frame on the small model): now a "decoder fit" bar counts them, made as the steps' bar
    is (diffusers' `set_progress_bar_config`)."""
    image = PIL.Image.fromarray(np.zeros((64, 96, 3), np.uint8))
    i2v.set_progress_bar_config()
    try:
        _call(i2v, image=image, last_image=image, decoder_fit_steps=3)
        err = capsys.readouterr().err
        assert "2/2" in err and re.search(
            r"decoder fit: 100%.*\| 6/6", err
        )  # 3 steps on each of 2 latent frames
        # each line the fit's bar drew is titled, from its first one on
        assert all(line.startswith("decoder fit: ") for line in re.split(r"[\r\n]", err) if "/6 [" in line)
        i2v.set_progress_bar_config(desc="mine")  # a title of the caller's is kept
        _call(i2v, image=image, decoder_fit_steps=3)
        assert "decoder fit" not in (err := capsys.readouterr().err) and "mine: 100%" in err.splitlines()[-1]
    finally:
        i2v.set_progress_bar_config(disable=True)
    _call(i2v, image=image, last_image=image, decoder_fit_steps=3)
    assert capsys.readouterr().err == ""
    t2v = MotifVideoPipeline.from_pretrained(strong_folder)  # the repaint's fit too
    _call(t2v, repaint_first_frame=True, decoder_fit_steps=2)
    assert re.search(r"decoder fit: 100%.*\| 2/2", capsys.readouterr().err)
