"""diffusers' pipeline conventions on our pipelines: precomputed prompt embeddings, timesteps / sigmas,
vae_batch_size, callback conventions (guidance_scale, num_timesteps, do_classifier_free_guidance, _interrupt,
dynamic guidance), diffusers' guiders, dtype arguments, variant / sharded saving, an optional feature_extractor."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from pipeline_test_utils import PROMPT, SIZE, quiet

from motif_video import MotifVideoImageToVideoPipeline, MotifVideoPipeline
from motif_video.flow import sampling_sigmas

SMALL = {**SIZE, "num_inference_steps": 3, "output_type": "latent"}


@pytest.fixture(scope="module")
def pipe(strong_folder):
    return quiet(MotifVideoPipeline, strong_folder)


@pytest.fixture(scope="module")
def reference(strong_folder):
    from diffusers import MotifVideoPipeline as Reference

    return quiet(Reference, strong_folder)


def _latents(p, seed=0, **kw):
    return p(**{"prompt": PROMPT, **SMALL, "generator": torch.Generator().manual_seed(seed), **kw}).frames


def test_precomputed_prompt_embeddings_from_a_text_encoder_only_pipeline(pipe, strong_folder):
    encoder_only = MotifVideoPipeline.from_pretrained(strong_folder, transformer=None)
    assert encoder_only.transformer is None
    embeds, negative, mask, negative_mask = encoder_only.encode_prompt(
        PROMPT, "blurry", max_sequence_length=64
    )
    assert embeds.shape[0] == 1 and mask.dtype == torch.bool and negative.shape[:2] == negative_mask.shape
    expected = _latents(pipe, negative_prompt="blurry")
    given = _latents(pipe, prompt=None, prompt_embeds=embeds, prompt_attention_mask=mask,
                     negative_prompt_embeds=negative, negative_prompt_attention_mask=negative_mask)  # fmt: skip
    torch.testing.assert_close(given, expected, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="prompt or prompt_embeds, not both"):
        _latents(pipe, prompt_embeds=embeds)


def test_timesteps_and_sigmas(pipe):
    expected = _latents(pipe)
    levels = torch.linspace(
        1.0, 1 / 3, 3, dtype=torch.float64
    ).tolist()  # the default schedule before its shift
    torch.testing.assert_close(_latents(pipe, sigmas=levels), expected, atol=1e-6, rtol=0)
    assert pipe.last_run.sigmas.tolist() == pytest.approx(sampling_sigmas(3, 15.0).tolist())
    # timesteps / 1000 differ from the sigmas in the last bit, which grows to ~1e-5 over 3 steps
    timesteps = [s * 1000 for s in levels]
    torch.testing.assert_close(_latents(pipe, timesteps=timesteps), expected, atol=1e-4, rtol=0)
    assert not torch.allclose(_latents(pipe, sigmas=[1.0, 0.5]), expected)
    with pytest.raises(ValueError, match="strictly decreasing"):
        _latents(pipe, sigmas=[0.5, 1.0])


def test_vae_batch_size(pipe):
    kw = {**SMALL, "output_type": "np", "num_inference_steps": 1, "num_videos_per_prompt": 2}
    together = pipe(PROMPT, generator=torch.Generator().manual_seed(0), **kw).frames
    one_by_one = pipe(PROMPT, generator=torch.Generator().manual_seed(0), vae_batch_size=1, **kw).frames
    np.testing.assert_allclose(one_by_one, together, atol=1e-6)


def test_callback_conventions_and_dynamic_guidance(pipe):
    seen = []

    def callback(p, i, t, tensors):
        seen.append((p.guidance_scale, p.num_timesteps, p.do_classifier_free_guidance))
        p._guidance_scale += 1.0  # dynamic guidance, as diffusers' callback tests do
        return {}

    dynamic = _latents(pipe, guidance_scale=2.0, callback_on_step_end=callback)
    assert seen == [(2.0, 3, True), (3.0, 3, True), (4.0, 3, True)] and pipe.guidance_scale == 5.0
    assert not torch.allclose(dynamic, _latents(pipe, guidance_scale=2.0))  # the changed scale was used

    steps = []

    def interrupt(p, i, t, tensors):
        steps.append(i)
        p._interrupt = True
        return {}

    _latents(pipe, callback_on_step_end=interrupt)
    assert steps == [0]


def test_protocol_path_equals_our_cfg(pipe):
    """A guider run through diffusers' protocol gives what our own CFG gives."""
    from diffusers import ClassifierFreeGuidance

    ours = _latents(pipe, guidance="cfg", guidance_scale=3.0, negative_prompt="")
    protocol = MotifVideoPipeline.from_pipe(
        pipe, guider=ClassifierFreeGuidance(guidance_scale=3.0, guidance_rescale=0.2)
    )
    assert (
        protocol(PROMPT, **{**SMALL, "num_inference_steps": 1}).frames is not None
    )  # rescale: protocol path runs
    protocol.guider = ClassifierFreeGuidance(guidance_scale=3.0, use_original_formulation=True)
    original = _latents(protocol, negative_prompt="")
    assert protocol.last_run.guider is not None and not torch.allclose(original, ours)
    # use_original_formulation: cond + s (cond - uncond) = our CFG at scale s + 1
    torch.testing.assert_close(original, _latents(pipe, guidance="cfg", guidance_scale=4.0, negative_prompt=""),
                               atol=1e-4, rtol=0)  # fmt: skip


@pytest.mark.parametrize("guider_name", ["AdaptiveProjectedGuidance", "SkipLayerGuidance"])
def test_diffusers_guiders_match_the_reference(pipe, reference, guider_name):
    """The default `AdaptiveProjectedGuidance()` (original formulation off) and `SkipLayerGuidance`, which the
    released pipeline runs: the same numbers as diffusers' pipeline on the same components."""
    import diffusers
    from diffusers.hooks import LayerSkipConfig

    make = {
        "AdaptiveProjectedGuidance": lambda: diffusers.AdaptiveProjectedGuidance(),
        "SkipLayerGuidance": lambda: diffusers.SkipLayerGuidance(
            guidance_scale=4.0, skip_layer_guidance_start=0.0, skip_layer_guidance_stop=1.0,
            skip_layer_config=LayerSkipConfig(indices=[1], fqn="transformer_blocks"),
        ),
    }[guider_name]  # fmt: skip
    reference.guider = make()
    expected = _latents(reference, negative_prompt="")
    ours = _latents(MotifVideoPipeline.from_pipe(pipe, guider=make()), negative_prompt="")
    assert (ours - expected).abs().max() <= 5e-5 * expected.abs().max()


def test_a_guider_with_a_stop_step_matches_the_reference_on_every_call(pipe, reference):
    """APG guiding only the first half of the steps (diffusers' `stop`): the same numbers as diffusers' pipeline,
    and a second call like the first (the guider's last step, where it is off, must not decide the next call)."""
    import diffusers

    def make():
        return diffusers.AdaptiveProjectedGuidance(
            guidance_scale=3.0, use_original_formulation=True, stop=0.5
        )

    reference.guider = make()
    expected = _latents(reference, negative_prompt="")
    windowed = MotifVideoPipeline.from_pipe(pipe, guider=make())
    first, second = (_latents(windowed, negative_prompt="") for _ in range(2))
    assert (first - expected).abs().max() <= 5e-5 * expected.abs().max()
    assert torch.equal(first, second)
    always = _latents(MotifVideoPipeline.from_pipe(pipe, guider=diffusers.AdaptiveProjectedGuidance(
        guidance_scale=3.0, use_original_formulation=True)), negative_prompt="")  # fmt: skip
    assert not torch.allclose(first, always)


@pytest.mark.parametrize("norm_dim", [None, [-1, -2, -4]])
def test_an_apg_guider_without_norm_dims_clips_over_the_whole_video_as_diffusers_does(
    pipe, reference, norm_dim
):
    """An APG guider config that names no norm dims takes one norm over every non-batch dim in diffusers (the
    pipelines' own default, when no guider is given, stays one norm per latent frame); the threshold is small so
    that the clipping decides the numbers."""
    import diffusers

    def make():
        return diffusers.AdaptiveProjectedGuidance(
            guidance_scale=8.0, adaptive_projected_guidance_rescale=1e-4, use_original_formulation=True,
            adaptive_projected_guidance_norm_dim=norm_dim,
        )  # fmt: skip

    reference.guider = make()
    expected = _latents(reference, negative_prompt="")
    ours = MotifVideoPipeline.from_pipe(pipe, guider=make())
    given = _latents(ours, negative_prompt="")
    assert ours.last_run.guidance.norm_dims == ((-1, -2, -3, -4) if norm_dim is None else tuple(norm_dim))
    assert (given - expected).abs().max() <= 5e-5 * expected.abs().max()
    other = (-1, -2, -4) if norm_dim is None else (-1, -2, -3, -4)
    assert not torch.allclose(_latents(ours, negative_prompt="", apg_norm_dims=other), given)


def test_dtype_arguments(strong_folder):
    bf16 = MotifVideoPipeline.from_pretrained(strong_folder, dtype=torch.bfloat16)
    assert bf16.transformer.dtype == torch.bfloat16 and bf16.vae.dtype == torch.bfloat16
    mixed = MotifVideoPipeline.from_pretrained(
        strong_folder, torch_dtype={"transformer": torch.bfloat16, "default": torch.float32}
    )
    assert mixed.transformer.dtype == torch.bfloat16 and mixed.vae.dtype == torch.float32


def test_save_pretrained_variant_and_shards(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "saved", variant="fp16", max_shard_size="100KB")
    files = sorted(p.name for p in (tmp_path / "saved" / "transformer").iterdir())
    assert "diffusion_pytorch_model.safetensors.index.fp16.json" in files or any(
        ".fp16." in f and f.endswith(".index.json") for f in files
    )
    assert sum(f.endswith(".safetensors") for f in files) > 1
    loaded = MotifVideoPipeline.from_pretrained(tmp_path / "saved", variant="fp16")
    for a, b in zip(pipe.transformer.state_dict().values(), loaded.transformer.state_dict().values()):
        assert torch.equal(a, b)


def test_feature_extractor_is_optional_for_text_to_video(strong_folder, tmp_path):
    folder = tmp_path / "no-fe"
    shutil.copytree(strong_folder, folder)
    shutil.rmtree(folder / "feature_extractor")
    index = json.loads((folder / "model_index.json").read_text())
    index.pop("feature_extractor")
    (folder / "model_index.json").write_text(json.dumps(index))
    p = MotifVideoPipeline.from_pretrained(folder)
    assert p.feature_extractor is None
    assert _latents(p, num_inference_steps=1).shape[0] == 1
    i2v = MotifVideoImageToVideoPipeline.from_pipe(p)
    with pytest.raises(ValueError, match="feature_extractor"):
        i2v(image=np.zeros((64, 96, 3), dtype=np.uint8), prompt=PROMPT, **SMALL)


def _positional(fn) -> list[str]:
    import inspect

    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [n for n, p in inspect.signature(fn).parameters.items() if p.kind in kinds and n != "self"]


def test_positional_arguments_and_components_in_diffusers_order():
    """A call or constructor written positionally against diffusers' classes means the same with ours: their
    positional parameters come first, in diffusers' order (ours only add more after them)."""
    import diffusers

    for ours, theirs in (
        (MotifVideoPipeline, diffusers.MotifVideoPipeline),
        (MotifVideoImageToVideoPipeline, diffusers.MotifVideoImage2VideoPipeline),
    ):
        for method in ("__call__", "__init__", "encode_prompt"):
            expected = _positional(getattr(theirs, method))
            got = _positional(getattr(ours, method))
            assert got[: len(expected)] == expected, (ours.__name__, method, got, expected)


def test_diffusers_names_import_from_motif_video():
    import motif_video
    from motif_video import MotifVideoImage2VideoPipeline, MotifVideoTransformer3DModel

    assert MotifVideoImage2VideoPipeline is MotifVideoImageToVideoPipeline
    assert MotifVideoTransformer3DModel is motif_video.MotifVideoTransformer
    assert {"MotifVideoImage2VideoPipeline", "MotifVideoTransformer3DModel"} <= set(motif_video.__all__)


def test_image_to_video_honours_a_scheduler_the_caller_gives(strong_folder):
    """The folder's own (text-to-video) scheduler gives way to the image-to-video shift 8; a scheduler passed in,
    or set on the pipeline, is the caller's and its shift is used, as diffusers does."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    image = np.zeros((64, 96, 3), dtype=np.uint8)

    def shift_of(p):
        p(image=image, prompt=PROMPT, **{**SMALL, "num_inference_steps": 1})
        return p.last_sampler.shift

    folders = quiet(MotifVideoImageToVideoPipeline, strong_folder)
    assert shift_of(folders) == 8.0
    given = quiet(
        MotifVideoImageToVideoPipeline, strong_folder, scheduler=FlowMatchEulerDiscreteScheduler(shift=5.0)
    )
    assert shift_of(given) == 5.0
    folders.scheduler = FlowMatchEulerDiscreteScheduler.from_config(folders.scheduler.config, shift=4.0)
    assert shift_of(folders) == 4.0
    t2v = quiet(MotifVideoPipeline, strong_folder)
    assert shift_of(MotifVideoImageToVideoPipeline.from_pipe(t2v)) == 8.0
    passed = MotifVideoImageToVideoPipeline.from_pipe(
        t2v, scheduler=FlowMatchEulerDiscreteScheduler(shift=6.0)
    )
    assert shift_of(passed) == 6.0


def test_a_saved_image_to_video_folder_opens_with_diffusers(strong_folder, tmp_path):
    from diffusers import DiffusionPipeline

    from motif_video.pipelines.image_to_video import MotifVideoImageToVideoPipeline as Ours

    Ours.from_pretrained(strong_folder).save_pretrained(tmp_path / "i2v")
    index = json.loads((tmp_path / "i2v" / "model_index.json").read_text())
    assert index["_class_name"] == "MotifVideoImage2VideoPipeline"
    assert (
        type(DiffusionPipeline.from_pretrained(tmp_path / "i2v")).__name__ == "MotifVideoImage2VideoPipeline"
    )
    assert type(Ours.from_pretrained(tmp_path / "i2v")) is Ours


def test_from_pipe_takes_a_dtype_and_diffusers_own_pipeline(pipe, reference, strong_folder):
    # as in diffusers, the modules are shared: casting the new pipeline casts them for both
    fresh = MotifVideoPipeline.from_pretrained(strong_folder)
    bf16 = MotifVideoImageToVideoPipeline.from_pipe(fresh, torch_dtype=torch.bfloat16)
    assert bf16.transformer.dtype == torch.bfloat16 and bf16.vae.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="unknown components"):
        MotifVideoPipeline.from_pipe(pipe, sceduler=None)
    # the reference's guider is set by other tests: the same one as ours here
    from_theirs = MotifVideoPipeline.from_pipe(reference, guider=pipe.guider)
    from_theirs.set_progress_bar_config(disable=True)
    torch.testing.assert_close(_latents(from_theirs), _latents(pipe), atol=1e-5, rtol=0)


def test_encode_prompt_pads_like_diffusers(pipe, reference):
    """Encoded prompts come padded to max_sequence_length as diffusers' do: they concatenate, and diffusers'
    pipeline takes them and gives its own numbers."""
    ours = pipe.encode_prompt(PROMPT, "", max_sequence_length=64)
    theirs = reference.encode_prompt(PROMPT, "", max_sequence_length=64)
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape
    mask = theirs[2]
    assert torch.equal(ours[2], mask) and torch.equal(ours[3], theirs[3])
    torch.testing.assert_close(ours[0][mask], theirs[0][mask], atol=1e-5, rtol=0)
    other = pipe.encode_prompt("a blue ball", max_sequence_length=64)
    both = torch.cat([ours[0], other[0]])
    assert both.shape == (2, 64, ours[0].shape[-1])
    names = (
        "prompt_embeds",
        "negative_prompt_embeds",
        "prompt_attention_mask",
        "negative_prompt_attention_mask",
    )
    reference.guider = pipe.guider
    expected = _latents(reference, prompt=None, **dict(zip(names, theirs)))
    # their padding states are what the encoder gives there, ours zeros: the masks leave both out
    given = _latents(reference, prompt=None, **dict(zip(names, ours)))
    assert (given - expected).abs().max() <= 5e-5 * expected.abs().max()


def test_callback_inputs_are_checked_before_any_model_runs(strong_folder):
    encoder_only = MotifVideoPipeline.from_pretrained(strong_folder, transformer=None)
    with pytest.raises(ValueError, match=r"callback_on_step_end_tensor_inputs \['foo'\] unknown"):
        encoder_only(
            PROMPT, **SMALL, callback_on_step_end=lambda *a: {}, callback_on_step_end_tensor_inputs=["foo"]
        )
    # a callback that cannot be called, before the prompt is encoded (before: at its first step, or after sampling)
    image = np.zeros((32, 48, 3), dtype=np.uint8)
    for pipe, extra in (
        (encoder_only, {}),
        (MotifVideoImageToVideoPipeline.from_pipe(encoder_only), {"image": image}),
    ):
        calls = _count_encoder_calls(pipe)
        for name, bad in (("callback_on_fit_step", 5), ("callback_on_step_end", "done")):
            with pytest.raises(ValueError, match=f"{name} must be callable or None, got {bad!r}"):
                pipe(prompt=PROMPT, **SMALL, **extra, **{name: bad})
        assert calls == []


def test_current_timestep_is_a_tensor_on_the_run_device(pipe):
    seen = []

    def callback(p, i, t, tensors):
        seen.append((p.current_timestep, t))
        return {}

    _latents(pipe, callback_on_step_end=callback)
    assert len(seen) == 3 and pipe.current_timestep is None
    for current, t in seen:
        assert isinstance(current, torch.Tensor) and current.ndim == 0 and t is current
        assert current.device == pipe.device_for_run
    assert seen[0][0].item() == pytest.approx(1000.0)


def test_a_folder_with_only_variant_files_raises_os_error_as_in_diffusers(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "v", variant="fp16")
    with pytest.raises(OSError):
        MotifVideoPipeline.from_pretrained(tmp_path / "v")


def _count_encoder_calls(p) -> list:
    calls = []
    p.text_encoder.register_forward_pre_hook(lambda *a: calls.append(1))
    return calls


def test_check_inputs_takes_diffusers_arguments_and_runs_before_any_model(strong_folder):
    pipe = MotifVideoPipeline.from_pretrained(strong_folder)
    ok = dict(prompt=PROMPT, negative_prompt=None, height=32, width=48, batch_size=1)
    pipe.check_inputs(**ok)  # what diffusers' own __call__ passes, by keyword
    for bad, match in (
        (dict(height=40), "height must be a positive multiple of 16, got 40"),
        (dict(prompt=None), "prompt must be a non-empty string"),
        (dict(prompt_embeds=torch.zeros(1, 4, 8)), "prompt or prompt_embeds, not both"),
        (dict(negative_prompt=["a", "b"]), "negative_prompt has 2 entries for 1 prompts"),
        (dict(negative_prompt=3), "negative_prompt must be a string or a list of strings"),
        (dict(callback_on_step_end_tensor_inputs=["foo"]), r"\['foo'\] unknown"),
    ):
        with pytest.raises(ValueError, match=match):
            pipe.check_inputs(**{**ok, **bad})
    calls = _count_encoder_calls(pipe)
    with pytest.raises(ValueError, match="negative_prompt has 1 entries for 2 prompts"):
        pipe([PROMPT, PROMPT], ["blurry"], **SMALL)
    assert calls == []  # before: the prompts were encoded, then the count refused

    class Strict(MotifVideoPipeline):
        def check_inputs(self, *args, **kwargs):
            raise RuntimeError(f"checked {kwargs['batch_size']} {kwargs['height']}")

    with pytest.raises(RuntimeError, match="checked 2 64"):
        Strict.from_pipe(pipe)([PROMPT, PROMPT], **SMALL)


def test_image_to_video_check_inputs_takes_the_image(strong_folder):
    i2v = MotifVideoImageToVideoPipeline.from_pretrained(strong_folder)
    image = np.zeros((32, 48, 3), dtype=np.uint8)
    ok = dict(prompt=PROMPT, negative_prompt=None, height=32, width=48, batch_size=2)
    i2v.check_inputs(**ok, image=image)
    i2v.check_inputs(**ok, image=[image, image])
    i2v.check_inputs(**ok, image=None, last_image=image)
    with pytest.raises(ValueError, match="image is required"):
        i2v.check_inputs(**ok, image=None)
    with pytest.raises(ValueError, match="got 3 images for 2 prompts"):
        i2v.check_inputs(**ok, image=[image] * 3)
    calls = _count_encoder_calls(i2v)
    with pytest.raises(ValueError, match="got 3 images for 2 prompts"):
        i2v(image=[image] * 3, prompt=[PROMPT, PROMPT], **SMALL)
    assert calls == []


def test_a_saved_pipeline_keeps_its_generation_defaults(tiny_folder, tmp_path):
    """save_pretrained writes the folder's generation_config.json, so that a default call of the reloaded pipeline
    gives the same latents (before, it planned the released 736x1280x121 at 50 steps); a student's link to its
    base model is not written, the saved folder holding every component."""
    import dataclasses

    from motif_video.defaults import GenerationDefaults

    folder = tmp_path / "model"
    shutil.copytree(tiny_folder, folder)
    GenerationDefaults(num_inference_steps=2, height=32, width=48, num_frames=5, shift=3.0).write(folder)
    image = np.zeros((32, 48, 3), dtype=np.uint8)
    for cls, kw in ((MotifVideoPipeline, {}), (MotifVideoImageToVideoPipeline, {"image": image})):
        pipe = quiet(cls, folder)
        pipe.save_pretrained(tmp_path / cls.__name__)
        again = quiet(cls, tmp_path / cls.__name__)
        assert again.generation_defaults == pipe.generation_defaults
        before, after = (
            p(prompt=PROMPT, output_type="latent", generator=torch.Generator().manual_seed(0), **kw).frames
            for p in (pipe, again)
        )
        assert before.shape == (1, 16, 2, 4, 6) and torch.equal(after, before)
    pipe.generation_defaults = dataclasses.replace(pipe.generation_defaults, base_model=str(folder))
    pipe.save_pretrained(tmp_path / "from-student")
    saved = GenerationDefaults.read(tmp_path / "from-student")
    assert saved.base_model is None and saved.num_inference_steps == 2
    assert not list((tmp_path / "from-student").glob(".*.tmp"))
    pipe.generation_defaults = GenerationDefaults()  # none now: the file the last save left goes
    pipe.save_pretrained(tmp_path / "from-student")
    assert GenerationDefaults.read(tmp_path / "from-student") is None


def test_a_saved_image_to_video_pipeline_samples_as_before(strong_folder, tmp_path):
    """An image-to-video pipeline on a text-to-video folder samples with shift 8; its saved folder names the
    image-to-video pipeline, whose scheduler config is read as written, so it records that shift: reloaded, the
    pipeline gives the same latents. A scheduler the caller gave is saved as it is."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    image = np.zeros((64, 96, 3), dtype=np.uint8)

    def run(p):
        return p(image=image, prompt=PROMPT, **SMALL, generator=torch.Generator().manual_seed(0)).frames

    t2v = quiet(MotifVideoPipeline, strong_folder)
    given = FlowMatchEulerDiscreteScheduler(shift=5.0)
    for name, pipe, shift in (
        ("loaded", quiet(MotifVideoImageToVideoPipeline, strong_folder), 8.0),
        ("from-pipe", MotifVideoImageToVideoPipeline.from_pipe(t2v), 8.0),
        ("given", MotifVideoImageToVideoPipeline.from_pipe(t2v, scheduler=given), 5.0),
    ):
        before = run(pipe)
        assert pipe.last_sampler.shift == shift
        pipe.save_pretrained(tmp_path / name)
        again = quiet(MotifVideoImageToVideoPipeline, tmp_path / name)
        assert torch.equal(run(again), before) and again.last_sampler.shift == shift, name
        assert pipe.choose_sampler(None).shift == shift  # the pipeline itself samples as before
    assert t2v.scheduler.config.shift == 15.0 and given.config.shift == 5.0  # saving changed neither


def test_a_pipeline_without_a_text_encoder_runs_on_given_embeddings(pipe, strong_folder):
    """Loaded with text_encoder=None (and tokenizer=None), as diffusers allows: the call runs on given embeddings
    and gives what the full pipeline gives; a prompt to encode is a ValueError naming what is missing. The
    image-to-video pipeline then runs without the SigLIP tokens (the text encoder's vision tower), as diffusers'."""
    embeds, negative, mask, negative_mask = pipe.encode_prompt(PROMPT, "blurry", max_sequence_length=64)
    given = dict(prompt=None, prompt_embeds=embeds, prompt_attention_mask=mask,
                 negative_prompt_embeds=negative, negative_prompt_attention_mask=negative_mask)  # fmt: skip
    expected = _latents(pipe, **given)
    for components in ({"text_encoder": None}, {"text_encoder": None, "tokenizer": None}):
        bare = quiet(MotifVideoPipeline, strong_folder, **components)
        assert bare.text_encoder is None
        torch.testing.assert_close(_latents(bare, **given), expected, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="prompt needs a text encoder.*prompt_embeds"):
        _latents(bare)
    no_negative = {k: v for k, v in given.items() if not k.startswith("negative")}
    with pytest.raises(ValueError, match="negative prompt needs a text encoder.*negative_prompt_embeds"):
        _latents(bare, **no_negative)
    assert _latents(bare, **no_negative, guidance="none").shape == expected.shape
    from motif_video.pipelines.memory import MemoryPlan, apply_memory_plan

    apply_memory_plan(bare, MemoryPlan("group"), "cpu")
    torch.testing.assert_close(_latents(bare, **given), expected, atol=1e-6, rtol=0)
    image = np.zeros((64, 96, 3), dtype=np.uint8)
    i2v = MotifVideoImageToVideoPipeline.from_pipe(bare)
    without_siglip = _latents(i2v, image=image, **given)
    full = MotifVideoImageToVideoPipeline.from_pipe(pipe)
    torch.testing.assert_close(without_siglip, _latents(full, image=image, use_image_embeds=False, **given))


def test_step_callbacks_see_and_swap_prompt_embeddings_as_in_diffusers(pipe):
    """A step callback is shown the embeddings as diffusers' pipeline holds them (padded to max_sequence_length)
    and may swap in any valid ones: of the shape shown (with the mask shown, as diffusers keeps it), of another
    length from `encode_prompt` (zero states are its padding), or any with their mask returned beside them."""
    from motif_video.pipelines.prompts import DEFAULT_NEGATIVE_PROMPT

    names = ["prompt_embeds", "negative_prompt_embeds"]
    masks = ["prompt_attention_mask", "negative_prompt_attention_mask"]
    seen = {}

    def look(p, i, t, tensors):
        seen.update({k: tuple(v.shape) for k, v in tensors.items()})
        return tensors  # what it was shown, unchanged

    expected = _latents(pipe, max_sequence_length=128)
    shown = _latents(pipe, max_sequence_length=128, callback_on_step_end=look,
                     callback_on_step_end_tensor_inputs=names + masks)  # fmt: skip
    dim = pipe.transformer.config.text_embed_dim
    assert seen == {"prompt_embeds": (1, 128, dim), "negative_prompt_embeds": (1, 128, dim),
                    "prompt_attention_mask": (1, 128), "negative_prompt_attention_mask": (1, 128)}  # fmt: skip
    assert torch.equal(shown, expected)

    def swap(embeddings, with_masks=False):
        def callback(p, i, t, tensors):
            out = dict(zip(names, embeddings[:2]))
            return {**out, **dict(zip(masks, embeddings[2:]))} if with_masks else out

        return _latents(pipe, max_sequence_length=128, callback_on_step_end=callback,
                        callback_on_step_end_tensor_inputs=names)  # fmt: skip

    # the same prompts encoded at another length (512, encode_prompt's default): the same video
    same = pipe.encode_prompt(PROMPT, DEFAULT_NEGATIVE_PROMPT)
    torch.testing.assert_close(swap(same), expected, atol=1e-6, rtol=0)
    # other prompts from step 1 on: without masks as with them, and trimmed to their tokens with their mask
    embeds, negative, mask, negative_mask = pipe.encode_prompt(
        "a blue cube", "blurry", max_sequence_length=40
    )
    other = swap((embeds, negative))
    assert not torch.allclose(other, expected)
    torch.testing.assert_close(swap((embeds, negative, mask, negative_mask), with_masks=True), other)
    n, m = int(mask.sum()), int(negative_mask.sum())
    trimmed = (embeds[:, :n], negative[:, :m], mask[:, :n], negative_mask[:, :m])
    torch.testing.assert_close(swap(trimmed, with_masks=True), other, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="attention mask shape"):
        swap((embeds, negative, mask[:, :5], negative_mask), with_masks=True)


def test_negative_embeddings_of_another_batch_size_are_refused_before_any_model_runs(pipe):
    """As diffusers' check_inputs (which also needs equal lengths: ours may differ, the batch may not)."""
    embeds, negative, mask, negative_mask = pipe.encode_prompt(PROMPT, "blurry", max_sequence_length=64)
    calls = []
    hook = pipe.transformer.register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        with pytest.raises(ValueError, match=r"same batch size.*\[1, 64, 32\] and \[2, 64, 32\]"):
            _latents(pipe, prompt=None, prompt_embeds=embeds, negative_prompt_embeds=negative.repeat(2, 1, 1))
        with pytest.raises(ValueError, match=r"negative_prompt_embeds has 1 rows for 2 prompts"):
            _latents(pipe, prompt=[PROMPT, PROMPT], negative_prompt_embeds=negative)
    finally:
        hook.remove()
    assert calls == []
    shorter = _latents(pipe, prompt=None, prompt_embeds=embeds, negative_prompt_embeds=negative[:, :8])
    assert shorter.shape == (1, 16, 3, 8, 12)  # lengths may differ


def test_size_left_none_comes_from_given_latents(pipe):
    """As in diffusers: latents [B, 16, T, h, w] without a size give 8h x 8w x 4(T - 1) + 1 (not the folder's
    default size); a size given that disagrees with them is still refused."""
    noise = torch.randn(1, 16, 3, 8, 12, generator=torch.Generator().manual_seed(1))
    steps = {"num_inference_steps": 2, "output_type": "latent"}
    expected = pipe(PROMPT, **SIZE, **steps, latents=noise).frames
    assert torch.equal(pipe(PROMPT, **steps, latents=noise).frames, expected)
    assert torch.equal(pipe(PROMPT, height=64, **steps, latents=noise).frames, expected)
    with pytest.raises(ValueError, match=r"latents must have shape \[1, 16, 3, 4, 12\]"):
        pipe(PROMPT, height=32, **steps, latents=noise)
    i2v = MotifVideoImageToVideoPipeline.from_pipe(pipe)
    image = np.zeros((64, 96, 3), dtype=np.uint8)
    generator = torch.Generator().manual_seed(0)
    expected = i2v(image=image, prompt=PROMPT, **SIZE, **steps, latents=noise, generator=generator).frames
    generator = torch.Generator().manual_seed(0)
    assert torch.equal(
        i2v(image=image, prompt=PROMPT, **steps, latents=noise, generator=generator).frames, expected
    )


def test_pt_frames_come_in_the_pipelines_dtype(tiny_folder):
    """As diffusers returns them (its VAE's output); np and pil frames are float32 / uint8 as before."""
    bf16 = quiet(MotifVideoPipeline, tiny_folder, dtype=torch.bfloat16)
    kw = {**SIZE, "num_inference_steps": 1, "guidance": "none", "generator": torch.Generator().manual_seed(0)}
    pt = bf16(PROMPT, output_type="pt", **kw).frames
    assert pt.dtype == torch.bfloat16 and pt.shape == (1, 9, 3, 64, 96)
    kw["generator"] = torch.Generator().manual_seed(0)
    np_frames = bf16(PROMPT, output_type="np", **kw).frames
    assert np_frames.dtype == np.float32
    np.testing.assert_allclose(pt.float().permute(0, 1, 3, 4, 2).numpy(), np_frames, atol=4e-3)


@pytest.mark.parametrize("prompt", [3, ("a", 3), b"a red ball"])
def test_a_prompt_that_is_not_text_is_a_value_error_naming_its_type(pipe, prompt):
    """diffusers raises a ValueError for a prompt that is not a string or a list (before: TypeError for 3)."""
    kind = type(prompt).__name__
    with pytest.raises(ValueError, match=f"prompt must be a non-empty string or list of strings, got {kind}"):
        pipe(prompt, **SMALL)
    with pytest.raises(ValueError, match=f"got {kind}"):
        pipe.check_inputs(prompt=prompt, negative_prompt=None, height=64, width=96, batch_size=1)
