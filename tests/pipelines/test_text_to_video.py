"""T2V pipeline: loading the released layout, parity with diffusers' MotifVideoPipeline, options."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pipeline_test_utils import APG_SETTINGS, PROMPT, SIZE, quiet, reference_guider

from motif_video import MotifVideoPipeline
from motif_video.pipelines import DEFAULT_NEGATIVE_PROMPT


@pytest.fixture(scope="module")
def pipe(strong_folder):
    return quiet(MotifVideoPipeline, strong_folder)


@pytest.fixture(scope="module")
def reference(strong_folder):
    from diffusers import MotifVideoPipeline as Reference

    return quiet(Reference, strong_folder, guider=reference_guider())


def _run(p, steps=3, seed=0, **kw):
    kw = {**SIZE, "num_inference_steps": steps, "generator": torch.Generator().manual_seed(seed), **kw}
    return p(PROMPT, **kw).frames


def test_loads_released_layout_with_our_transformer(pipe):
    from motif_video.models import MotifVideoTransformer

    assert isinstance(pipe.transformer, MotifVideoTransformer)
    assert type(pipe.guider).__name__ == "AdaptiveProjectedGuidance"
    frames = _run(pipe, output_type="pil")
    assert len(frames) == 1 and len(frames[0]) == 9 and frames[0][0].size == (96, 64)


def run_with_latents(p, **kw):
    """(frames as np, final latents) from one run; the latents are caught by a step callback."""
    caught = {}

    def keep(pipe, i, t, tensors):
        caught["latents"] = tensors["latents"]
        return {}

    frames = _run(p, output_type="np", callback_on_step_end=keep, **kw)
    return frames, caught["latents"]


@pytest.fixture(scope="module")
def reference_runs(reference):
    """Reference outputs per APG setting, computed once."""
    cache = {}

    def get(apg):
        if apg not in cache:
            reference.guider = reference_guider(*apg)
            cache[apg] = run_with_latents(reference)
        return cache[apg]

    return get


@pytest.mark.parametrize(
    ("apg", "batching"),
    [(APG_SETTINGS[0], "sequential"), (APG_SETTINGS[0], "batched"), (APG_SETTINGS[1], "sequential")],
    ids=["released-sequential", "released-batched", "comfyui-sequential"],
)
def test_parity_with_diffusers_reference(pipe, reference_runs, apg, batching):
    """Same components, settings and seed as diffusers' pipeline (empty negative prompt, as it defaults to)."""
    eta, dims, threshold = apg
    ref, ref_latent = reference_runs(apg)
    ours, ours_latent = run_with_latents(
        pipe,
        negative_prompt="",
        guidance_batching=batching,
        apg_eta=eta,
        apg_norm_dims=dims,
        apg_norm_threshold=threshold,
    )
    assert ours.shape == ref.shape == (1, 9, 64, 96, 3)
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0)
    # Latents reach |z| ~ 12 with these weights; float32 rounding (text padding 1e-6, trimmed vs masked attention)
    # grows through the final large Euler step to ~2e-5 of that scale, far below what any setting changes (> 1e-2).
    assert (ours_latent - ref_latent).abs().max() <= 5e-5 * ref_latent.abs().max()


@pytest.mark.parametrize(
    "change",
    [{"negative_prompt": DEFAULT_NEGATIVE_PROMPT}, {"shift": 8.0}, {"apg_eta": 0.0}, {"apg_momentum": 0.0}],
)
def test_parity_check_can_fail(pipe, reference_runs, change):
    """Each setting the parity test pins moves the latents far beyond its tolerance."""
    _, ref_latent = reference_runs(APG_SETTINGS[0])
    ours = _run(pipe, output_type="latent", **{"negative_prompt": "", **change})
    assert (ours - ref_latent).abs().max() > 1e-2


def test_several_prompts_and_videos_per_prompt(pipe):
    prompts = [PROMPT, "a blue cube spinning"]
    out = pipe(
        prompts,
        **SIZE,
        num_inference_steps=2,
        num_videos_per_prompt=2,
        output_type="latent",
        generator=torch.Generator().manual_seed(0),
    ).frames
    assert out.shape == (4, 16, 3, 8, 12)
    # Videos are independent: each batch row equals a one-video run with that row's noise.
    noise = torch.randn(4, 16, 3, 8, 12, generator=torch.Generator().manual_seed(0))
    single = pipe(prompts[1], **SIZE, num_inference_steps=2, output_type="latent", latents=noise[3:4]).frames
    torch.testing.assert_close(out[3:4], single, atol=1e-4, rtol=0)


def test_output_types(pipe):
    pt = _run(pipe, steps=1, output_type="pt")
    np_ = _run(pipe, steps=1, output_type="np")
    assert pt.shape == (1, 9, 3, 64, 96) and np_.shape == (1, 9, 64, 96, 3)
    np.testing.assert_allclose(pt.permute(0, 1, 3, 4, 2).numpy(), np_, atol=1e-6)
    with pytest.raises(ValueError, match="output_type"):
        _run(pipe, steps=1, output_type="mp4")


def test_callback_sees_every_step_and_can_interrupt(pipe):
    seen = []

    def callback(p, i, t, tensors):
        seen.append((i, float(t), tuple(tensors["latents"].shape)))
        if i == 1:
            p.interrupt_now()
        return {}

    _run(pipe, steps=4, output_type="latent", callback_on_step_end=callback)
    assert [s[0] for s in seen] == [0, 1]
    assert seen[0][1] == pytest.approx(1000.0) and seen[0][2] == (1, 16, 3, 8, 12)


def test_callback_can_replace_latents(pipe):
    zero = lambda p, i, t, tensors: {"latents": torch.zeros_like(tensors["latents"])}  # noqa: E731
    out = _run(pipe, steps=2, output_type="latent", callback_on_step_end=zero)
    assert torch.count_nonzero(out) == 0


def test_guidance_modes(pipe):
    calls = []
    hook = pipe.transformer.register_forward_hook(
        lambda m, a, k, o: calls.append(k["hidden_states"].shape[0]), with_kwargs=True
    )
    try:
        none = _run(pipe, steps=2, output_type="latent", guidance="none")
        assert calls == [1, 1]
        calls.clear()
        cfg1 = _run(pipe, steps=2, output_type="latent", guidance="cfg", guidance_scale=1.0)
        assert calls == [1, 1]  # CFG at scale 1 is the conditional prediction alone
        calls.clear()
        _run(pipe, steps=2, output_type="latent", guidance="apg", guidance_batching="sequential")
        assert calls == [1, 1, 1, 1]
        calls.clear()
        _run(pipe, steps=2, output_type="latent", guidance="apg", guidance_batching="batched")
        assert calls == [2, 2]
    finally:
        hook.remove()
    torch.testing.assert_close(none, cfg1)
    with pytest.raises(ValueError, match="guidance must be one of"):
        _run(pipe, steps=1, guidance="pag")


def test_default_negative_prompt_is_the_39_terms():
    terms = [t.strip() for t in DEFAULT_NEGATIVE_PROMPT.split(",")]
    assert len(terms) == 39 and terms[0] == "text overlay" and terms[-1] == "color balance shift"


def test_long_prompt_warns_with_the_cut(pipe, caplog):
    long_prompt = " ".join(["red ball"] * 300)  # 600 words + BOS
    with caplog.at_level("WARNING"):
        pipe(long_prompt, **SIZE, num_inference_steps=1, output_type="latent", guidance="none")
    assert any("the last 89 were cut" in r.getMessage() for r in caplog.records)


def test_bad_sizes_are_value_errors(pipe):
    with pytest.raises(ValueError, match="multiple of 16"):
        pipe(PROMPT, height=60, width=96, num_frames=9, num_inference_steps=1)
    with pytest.raises(ValueError, match="4k\\+1"):
        pipe(PROMPT, height=64, width=96, num_frames=8, num_inference_steps=1)


def test_unreachable_hub_id_says_how_to_use_a_local_folder():
    with pytest.raises(ValueError, match="pass the local folder"):
        MotifVideoPipeline.from_pretrained("no-such-org/no-such-model", local_files_only=True)
    with pytest.raises(ValueError, match="neither an existing folder, a shipped model .* nor a Hub repo id"):
        MotifVideoPipeline.from_pretrained("./missing/folder/here")


def test_save_pretrained_keeps_the_released_layout(pipe, tmp_path):
    import json

    pipe.save_pretrained(tmp_path / "saved")
    index = json.loads((tmp_path / "saved" / "model_index.json").read_text())
    assert index["transformer"] == ["diffusers", "MotifVideoTransformer3DModel"]
    again = MotifVideoPipeline.from_pretrained(tmp_path / "saved")
    a = _run(pipe, steps=1, output_type="latent", guidance="none")
    b = _run(again, steps=1, output_type="latent", guidance="none")
    torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_size_and_negative_prompt_default_to_the_folders_generation_config(tiny_folder, tmp_path):
    import shutil

    from motif_video import MotifVideoImageToVideoPipeline, MotifVideoPipeline
    from motif_video.defaults import GenerationDefaults

    folder = tmp_path / "model"
    shutil.copytree(tiny_folder, folder)
    GenerationDefaults(
        num_inference_steps=2, height=32, width=48, num_frames=5, negative_prompt="", conditioning_blur=5.0,
        keep_first_frame=True,
    ).write(folder)  # fmt: skip
    pipe = MotifVideoPipeline.from_pretrained(folder)
    seen = {}
    original = pipe.prompt_embeddings

    def spy(run, *args, **kwargs):
        seen["negative"] = run.negative_prompt
        return original(run, *args, **kwargs)

    pipe.prompt_embeddings = spy
    video = pipe("a cat", output_type="np", generator=torch.Generator().manual_seed(0)).frames
    assert video.shape[1:4] == (5, 32, 48) and seen["negative"] == ""
    explicit = pipe("a cat", height=16, width=16, num_frames=1, output_type="np").frames
    assert explicit.shape[1:4] == (1, 16, 16)
    i2v = MotifVideoImageToVideoPipeline.from_pretrained(folder)
    image = (np.random.default_rng(0).random((32, 48, 3)) * 255).astype(np.uint8)
    blurred = i2v(
        image=image, prompt="a cat", output_type="latent", generator=torch.Generator().manual_seed(0)
    )
    sharp = i2v(
        image=image, prompt="a cat", output_type="latent", conditioning_blur=0.0,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    assert blurred.frames.shape == sharp.frames.shape and not torch.allclose(blurred.frames, sharp.frames)
    generated = i2v(
        image=image, prompt="a cat", output_type="latent", keep_first_frame=False,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    assert not torch.allclose(blurred.frames[:, :, :1], generated.frames[:, :, :1])
    # from_pipe shares the modules and keeps the folder's defaults (a plain constructor has none).
    shared = MotifVideoImageToVideoPipeline.from_pipe(pipe)
    assert shared.transformer is pipe.transformer and shared.generation_defaults == i2v.generation_defaults
    again = shared(
        image=image, prompt="a cat", output_type="latent", generator=torch.Generator().manual_seed(0)
    )
    torch.testing.assert_close(again.frames, blurred.frames, atol=0, rtol=0)
    with pytest.raises(ValueError, match="unknown components"):
        MotifVideoImageToVideoPipeline.from_pipe(pipe, unet=None)


def test_student_defaults_fall_back_to_the_base_models():
    from motif_video.defaults import GenerationDefaults

    base = GenerationDefaults(num_inference_steps=20, height=64, width=64, num_frames=33, negative_prompt="")
    student = GenerationDefaults(num_inference_steps=4, guidance_scale=4.0, base_model="small").over(base)
    assert (student.num_inference_steps, student.guidance_scale, student.base_model) == (4, 4.0, "small")
    assert student.fill_size(None, None, None, None) == (64, 64, 33, "")
    assert GenerationDefaults().fill_size(None, 48, None, None) == (736, 48, 121, None)
