"""`repaint_first_frame`: latent frame 0 re-encoded from pixel frame 1 after sampling, where no condition gives frame
0 (`pipelines.latents.repaint_first_latent`)."""

from __future__ import annotations

import dataclasses

import numpy as np
import PIL.Image
import pytest
import torch
from pipeline_test_utils import PROMPT, SIZE, quiet

from motif_video import MotifVideoImageToVideoPipeline, MotifVideoPipeline
from motif_video.defaults import GenerationDefaults
from motif_video.pipelines.decoder_fit import fit_latent_frames
from motif_video.pipelines.latents import (
    decode_latents,
    repaint_first_latent,
    repaint_fit_step_count,
    to_model_latents,
)


@pytest.fixture(scope="module")
def t2v(strong_folder):
    return quiet(MotifVideoPipeline, strong_folder)


def _latents(p, seed=0, **kw):
    kw = {**SIZE, "num_inference_steps": 2, "generator": torch.Generator().manual_seed(seed), **kw}
    return p(prompt=PROMPT, output_type="latent", **kw).frames


def test_repaint_first_latent_is_frame_1_encoded_alone(t2v):
    z = torch.randn(2, 16, 3, 8, 12, generator=torch.Generator().manual_seed(0))
    out = repaint_first_latent(t2v.vae, z)
    torch.testing.assert_close(out[:, :, 1:], z[:, :, 1:], rtol=0, atol=0)
    for b in range(2):  # one video at a time: the same as each alone
        frame1 = decode_latents(t2v.vae, z[b : b + 1, :, :2])[:, :, 1:2]
        expected = to_model_latents(t2v.vae.encode(frame1).latent_dist.mode(), t2v.vae.config)
        torch.testing.assert_close(out[b : b + 1, :, :1], expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(out[:, :, :1], z[:, :, :1])
    single = z[:, :, :1]
    assert repaint_first_latent(t2v.vae, single) is single  # one latent frame: nothing to repaint from
    assert (repaint_fit_step_count(z, 3), repaint_fit_step_count(single, 3)) == (6, 0)  # 3 per video


def test_repainted_frame_0_looks_like_frame_1():
    """On the shipped small model's VAE: an orange square's clip whose latent frame 0 is replaced by that of the
    same square in yellow (the small model's typical frame-0 error) decodes with a yellow frame 0; repainted, frames
    0 and 1 are orange again."""
    from motif_video.evaluation.analysis import nearest
    from motif_video.synthetic import render, scene_at
    from motif_video.synthetic.scenes import COLOURS

    vae = MotifVideoPipeline.from_pretrained("small").vae
    scene = scene_at(1000, 2)  # an orange square on black
    assert (scene.colour, scene.background) == ("orange", "black")
    clips = [render(s, 33, 64, 64) for s in (scene, dataclasses.replace(scene, colour="yellow"))]
    with torch.no_grad():
        z = [
            to_model_latents(vae.encode(torch.from_numpy(c).permute(3, 0, 1, 2)[None].float() / 127.5 - 1).latent_dist.mode(), vae.config)
            for c in clips
        ]  # fmt: skip
        broken = torch.cat([z[1][:, :, :1], z[0][:, :, 1:]], dim=2)
        before = decode_latents(vae, broken)[0, :, :2]
        after = decode_latents(vae, repaint_first_latent(vae, broken))[0, :, :2]
        clean = decode_latents(vae, z[0][:, :, :2])[0]
    truth = torch.from_numpy(clips[0][:2]).permute(3, 0, 1, 2).float() / 127.5 - 1

    def colour(
        video, frame, shows
    ):  # the palette colour nearest the object's mean (its place in frame `shows`)
        inside = truth[:, shows].mean(0) > -0.5  # the object on the black background
        rgb = (video[:, frame][:, inside].mean(1) + 1) * 127.5
        return nearest(rgb.numpy(), COLOURS)

    assert colour(clean, 0, 0) == colour(clean, 1, 1) == "orange"
    assert colour(before, 0, 0) == "yellow"
    assert colour(after, 0, 1) == colour(after, 1, 1) == "orange"  # frame 0 shows frame 1


def test_repaint_fit_is_a_second_round_fitted_through_the_decoder(t2v):
    vae = t2v.vae
    z = torch.randn(2, 16, 3, 8, 12, generator=torch.Generator().manual_seed(1))
    out = repaint_first_latent(vae, z, fit_steps=5)
    torch.testing.assert_close(out[:, :, 1:], z[:, :, 1:], rtol=0, atol=0)
    once = repaint_first_latent(vae, z)
    for b in range(2):  # frame 1 decoded after the encoder's latent, encoded, then fitted to that frame
        frame = decode_latents(vae, once[b : b + 1])[:, :, 1:2]
        with torch.no_grad():
            start = to_model_latents(vae.encode(frame).latent_dist.mode(), vae.config)
        expected = fit_latent_frames(vae, torch.cat([start, z[b : b + 1, :, 1:]], 2), {0: frame[0, :, 0]}, 5)
        torch.testing.assert_close(out[b : b + 1], expected, rtol=1e-5, atol=1e-5)


def test_fitted_repaint_keeps_a_red_frame_0_the_encoder_turns_green():
    """The shipped small model draws a red triangle on white whose frames 1-4 carry a dark green fringe from its bad
    frame 0; the VAE's encoder maps such a frame, alone, to an image latent that decodes green, so the plain repaint
    keeps frame 0 green. The latent fitted through the decoder decodes to what frame 1 shows: red."""
    from motif_video.evaluation.analysis import read_clip

    pipe = quiet(MotifVideoPipeline, "small")
    latents = pipe(
        prompt="a red triangle moving right on a white background",
        generator=torch.Generator().manual_seed(0),
        output_type="latent",
        repaint_first_frame=False,
    ).frames

    def frame_0(z):
        video = decode_latents(pipe.vae, z)[0].permute(1, 2, 3, 0)
        clip = ((video.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
        return read_clip(clip).frame_colours[0]

    assert frame_0(latents) == "green"
    assert frame_0(repaint_first_latent(pipe.vae, latents)) == "green"
    assert frame_0(repaint_first_latent(pipe.vae, latents, fit_steps=50)) == "red"


def test_t2v_repaints_only_frame_0_and_follows_the_folder(t2v):
    off = _latents(t2v, repaint_first_frame=False)
    on = _latents(t2v, repaint_first_frame=True)
    torch.testing.assert_close(on[:, :, 1:], off[:, :, 1:], rtol=0, atol=0)
    torch.testing.assert_close(on, repaint_first_latent(t2v.vae, off), rtol=0, atol=0)
    assert torch.equal(_latents(t2v), off)  # released default: off
    saved = t2v.generation_defaults
    try:
        t2v.generation_defaults = GenerationDefaults(repaint_first_frame=True)
        assert torch.equal(_latents(t2v), on)
        assert torch.equal(_latents(t2v, repaint_first_frame=False), off)  # the call's value wins
        t2v.generation_defaults = GenerationDefaults(repaint_first_frame=True, decoder_fit_steps=3)
        torch.testing.assert_close(_latents(t2v), repaint_first_latent(t2v.vae, off, fit_steps=3))
        torch.testing.assert_close(_latents(t2v, decoder_fit_steps=0), on)  # the call's value wins
    finally:
        t2v.generation_defaults = saved


def test_i2v_repaints_only_where_no_condition_gives_frame_0(t2v):
    i2v = MotifVideoImageToVideoPipeline.from_pipe(t2v)
    i2v.set_progress_bar_config(disable=True)
    image = PIL.Image.fromarray(np.full((64, 96, 3), 200, np.uint8))
    first = [_latents(i2v, image=image, repaint_first_frame=r) for r in (False, True)]
    assert torch.equal(first[0], first[1])  # the image gives frame 0
    last = [_latents(i2v, last_image=image, repaint_first_frame=r) for r in (False, True)]
    torch.testing.assert_close(last[1], repaint_first_latent(i2v.vae, last[0]), rtol=0, atol=0)
    assert not torch.equal(last[0][:, :, :1], last[1][:, :, :1])


def test_shipped_small_model_repaints_by_default():
    from motif_video.defaults import model_defaults

    assert model_defaults("small").repaint_first_frame is True
    assert model_defaults("small-4step").repaint_first_frame is True  # a student inherits its base model's
    assert model_defaults("Motif-Technologies/Motif-Video-2B").repaint_first_frame is False  # as released
    assert model_defaults("Motif-Technologies/Motif-Video-2B").decoder_fit_steps == 0
    with pytest.raises(ValueError, match="decoder_fit_steps must be >= 0, got -2"):
        GenerationDefaults(decoder_fit_steps=-2)
