"""The small model shipped in the package: loads by name, runs T2V and I2V quickly on CPU, drives `eval`."""

import json
import re
import time

import numpy as np
import pytest
import torch

from motif_video.cli import main
from motif_video.defaults import model_defaults
from motif_video.evaluation.analysis import psnr_uint8
from motif_video.hub import resolve_folder
from motif_video.synthetic import caption, render, scene_at

PROMPT = "a red circle moving left on a black background"


@pytest.fixture(scope="module")
def pipe():
    from motif_video import MotifVideoPipeline

    torch.set_num_threads(1)
    return MotifVideoPipeline.from_pretrained("small")


def test_shipped_folder_is_complete_and_small():
    folder = resolve_folder("small")
    assert json.loads((folder / "model_index.json").read_text())["_class_name"] == "MotifVideoPipeline"
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    assert size <= 30_000_000
    defaults = model_defaults("small")
    assert (defaults.height, defaults.width, defaults.num_frames) == (64, 64, 33)
    assert model_defaults("Motif-Technologies/Motif-Video-2B").num_frames == 121


def test_loading_drops_the_loaders_notices_for_that_load_only():
    """`MotifVideoImageToVideoPipeline.from_pretrained("small")` (the README's Python example, in a fresh interpreter)
    builds the folder's guider without diffusers' notice that guiders are experimental (a guider of the caller's still
    logs it), and its SigLIP image processor without transformers' notice of the fallback to the PIL one where
    torchvision is missing, as the SigLIP processor made for training does (it names the PIL one)."""
    import subprocess
    import sys

    code = (
        "from diffusers import ClassifierFreeGuidance\n"
        "from motif_video import MotifVideoImageToVideoPipeline\n"
        "from motif_video.training.components import tiny_feature_extractor\n"
        "tiny_feature_extractor()\n"
        "pipe = MotifVideoImageToVideoPipeline.from_pretrained('small')\n"
        "assert pipe.guider is not None and pipe.feature_extractor is not None\n"
        "ClassifierFreeGuidance()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("Guiders are currently an experimental feature") == 1, done.stderr
    assert "falling back to" not in done.stderr, done.stderr


def test_tokenizer_bos_only_pad_zero(pipe):
    ids = pipe.tokenizer([PROMPT], padding="max_length", max_length=16).input_ids[0]
    assert ids[0] == 2 and 1 not in ids and ids[-1] == 0 and 3 not in ids  # BOS, no EOS, pad 0, no <unk>


def test_t2v_and_i2v_are_fast_and_sane(pipe):
    from motif_video import MotifVideoImageToVideoPipeline

    # stored in float16, loaded back as float32, the text encoder too (transformers would keep float16), so that
    # the pipeline gives what `generate` gives
    assert pipe.transformer.dtype == pipe.vae.dtype == pipe.text_encoder.dtype == torch.float32
    kwargs = dict(
        height=64, width=64, num_frames=33, num_inference_steps=4, negative_prompt="", output_type="np"
    )
    start = time.perf_counter()
    video = pipe(PROMPT, generator=torch.Generator().manual_seed(0), **kwargs).frames
    assert time.perf_counter() - start < 10
    assert video.shape == (1, 33, 64, 64, 3) and np.isfinite(video).all()
    i2v = MotifVideoImageToVideoPipeline.from_pipe(pipe)
    scene = scene_at(1000, 0)
    first = render(scene, 33, 64, 64)[0]
    import PIL.Image

    start = time.perf_counter()
    video = i2v(
        prompt=caption(scene), image=PIL.Image.fromarray(first), generator=torch.Generator().manual_seed(0),
        **kwargs,
    ).frames  # fmt: skip
    assert time.perf_counter() - start < 10
    error = np.abs(video[0, 0] * 255 - first).mean()
    assert error < 40  # the first frame follows the condition image
    # The model's default keeps latent frame 0 on the image's path: the video starts on the VAE's reconstruction.
    assert (i2v.generation_defaults.keep_first_frame, i2v.generation_defaults.conditioning_blur) == (
        True,
        12.5,
    )
    generated = i2v(
        prompt=caption(scene), image=PIL.Image.fromarray(first), generator=torch.Generator().manual_seed(0),
        keep_first_frame=False, decoder_fit_steps=0, **kwargs,
    ).frames  # fmt: skip
    x = torch.from_numpy(first).permute(2, 0, 1)[None, :, None].float() / 127.5 - 1
    with torch.no_grad():
        reconstruction = i2v.vae.decode(i2v.vae.encode(x).latent_dist.mode()).sample
    reconstruction = ((reconstruction[0, :, 0].permute(1, 2, 0).clamp(-1, 1) + 1) / 2).numpy()
    unfitted = i2v(
        prompt=caption(scene), image=PIL.Image.fromarray(first), generator=torch.Generator().manual_seed(0),
        decoder_fit_steps=0, **kwargs,
    ).frames  # fmt: skip
    np.testing.assert_allclose(unfitted[0, 0], reconstruction, atol=2e-3, rtol=0)

    def psnr(frame):
        return psnr_uint8(np.round(frame * 255).astype(np.uint8), first)

    assert psnr(unfitted[0, 0]) > max(25.0, psnr(generated[0, 0]))
    # and its folder fits that latent through the decoder: frame 0 is closer to the image than the round trip
    assert i2v.generation_defaults.decoder_fit_steps == 50
    assert psnr(video[0, 0]) > psnr(unfitted[0, 0]) + 0.5


def test_a_conditions_strength_is_not_undone_by_the_decoder_fit(pipe):
    """The folder's decoder fit reproduces frames given at strength 1 only, so a last image's PSNR falls with its
    strength (before: every conditioned frame was fitted, 29.0 dB at strength 1 and 26.9 at 0.01)."""
    import PIL.Image

    from motif_video import MotifVideoImageToVideoPipeline
    from motif_video.pipelines.conditions import VideoCondition

    i2v = MotifVideoImageToVideoPipeline.from_pipe(pipe)
    assert i2v.generation_defaults.decoder_fit_steps == 50
    scene = scene_at(1000, 2)  # an orange square on black: the last frame far from a generated one
    truth = render(scene, 33, 64, 64)

    def last_frame_psnr(strength: float) -> float:
        last = VideoCondition(image=PIL.Image.fromarray(truth[-1]), frame_index=-1, strength=strength)
        video = i2v(
            prompt=caption(scene), image=PIL.Image.fromarray(truth[0]), conditions=[last], num_inference_steps=4,
            output_type="np", generator=torch.Generator().manual_seed(0),
        ).frames  # fmt: skip
        return psnr_uint8(np.round(video[0, -1] * 255).astype(np.uint8), truth[-1])

    full, half, tenth = (last_frame_psnr(s) for s in (1.0, 0.5, 0.1))
    assert full > half + 3 and half > tenth + 1, (full, half, tenth)


def test_generate_by_name_uses_the_models_defaults(tmp_path, capsys):
    out = tmp_path / "clip.mp4"
    assert (
        main(
            [
                "generate",
                "--model",
                "small",
                "--prompt",
                PROMPT,
                "--steps",
                "2",
                "--seed",
                "0",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert out.is_file() and "64x64x33" in printed and "warning" not in printed


def test_generate_warns_at_a_size_the_small_model_was_not_trained_at(tmp_path, capsys):
    out = tmp_path / "clip.mp4"
    argv = ["generate", "--model", "small", "--prompt", PROMPT, "--steps", "1", "--num-frames", "1",
            "--height", "32", "--width", "48", "--output", str(out)]  # fmt: skip
    assert main(argv) == 0
    assert "warning: the model was trained at 64x64 only; at 48x32" in capsys.readouterr().out


def test_progress_in_a_log_draws_each_bar_once_and_no_cursor_moves(tmp_path, capsys):
    """Where stderr is not a terminal (`generate ... 2> log.txt`), a log keeps every line a bar draws: the decoder
    fit's bar is titled from its first line (before, an untitled "0/50" bar came first), and `extend`'s bar over
    its windows counts their steps alone, without each window's own bars and the cursor moves (`[A`) between them:
    their sampling steps and their decoder fits' steps (before: the sampling steps alone, so it stood still through
    each window's fit)."""
    clip = tmp_path / "x.mp4"
    argv = ["generate", "--model", "small", "--prompt", PROMPT, "--num-frames", "5", "--steps", "1",
            "--decoder-fit-steps", "3", "--output", str(clip)]  # fmt: skip
    assert main(argv) == 0
    fit = [line for line in re.split(r"[\r\n]", capsys.readouterr().err) if "/3 [" in line]
    assert fit and all(line.startswith("decoder fit: ") for line in fit), fit
    argv = ["extend", str(clip), "--seconds", "1", "--num-frames", "9", "--steps", "1",
            "--output", str(tmp_path / "y.mp4")]  # fmt: skip
    assert main(argv) == 0
    bars = capsys.readouterr().err
    windows = bars[bars.index("3 windows: ") :]  # after the loader's bars
    assert "\x1b[" not in windows and "decoder fit" not in windows and "it/s" not in windows
    counts = [int(n) for n in re.findall(r"3 windows: +\d+%\|[^|]*\| (\d+)/303 ", windows)]
    # 3 windows of 1 step and a fit of 50 steps for each of the 2 latent frames its 5 given frames fill; to its end
    assert len(counts) > 1 and counts == sorted(counts) and counts[-1] == 303, windows


def test_eval_json_has_the_figures(capsys):
    code = main(["eval", "--prompts", "1", "--seeds", "1", "--steps", "2", "--json", "--threads", "1"])
    assert code == 0
    out = capsys.readouterr()
    figures = json.loads(out.out.strip().splitlines()[-1])
    for mode in ("t2v", "i2v"):
        for group in ("seen", "held_out"):
            scores = figures[mode][group]
            for key in ("colour", "colour_frames", "colour_frame0", "shape", "shape_frames", "direction"):
                assert 0.0 <= scores[key] <= 1.0, (mode, group, key)
            assert scores["clips"] == 1 and scores["frames"] == 33
            assert set(scores["se"]) >= {"colour", "colour_frame0", "shape", "direction"}  # standard errors
            ((name, row),) = scores["by_combination"].items()  # one case: one combination
            assert len(name.split()) == 4 and row["clips"] == 1 and 0.0 <= row["shape"] <= 1.0
    assert figures["i2v"]["held_out"]["first_frame_psnr"] > 20
    assert figures["videos"] == 4 and figures["split"] == "test"
    assert figures["repaint_first_frame"] is True  # the small model's generation_config.json
    # wall time per video: loading and reading included, so above the pipeline calls alone
    assert figures["seconds_per_video"] > figures["generate_seconds_per_video"] > 0
    # one bar over the run's videos, no per-step bars
    assert "eval: 100%" in out.err and "4/4" in out.err and "/2 [" not in out.err
    # as text: one clip per group has no standard errors, and no "se.*: None" lines stand for them
    assert main(["eval", "--prompts", "1", "--seeds", "1", "--steps", "2", "--threads", "1", "--no-i2v"]) == 0
    text = capsys.readouterr().out
    assert "t2v.seen.colour: " in text and ".se." not in text, text


def test_eval_step_cache_skips_steps_and_reports_them(capsys):
    argv = ["eval", "--prompts", "1", "--seeds", "1", "--steps", "20", "--no-i2v", "--json", "--threads", "1"]
    assert main([*argv, "--cache-threshold", "0.5"]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0.3 < figures["cache_skipped_fraction"] < 1 and figures["cache_threshold"] == 0.5
    assert figures["repaint_first_frame"] is True


def test_eval_turns_the_repaint_off(capsys, monkeypatch):
    import motif_video.pipelines.base as base

    calls = []
    repaint = base.repaint_first_latent
    monkeypatch.setattr(
        base, "repaint_first_latent", lambda vae, z, **kw: calls.append(1) or repaint(vae, z, **kw)
    )
    argv = ["eval", "--prompts", "1", "--seeds", "1", "--steps", "2", "--json", "--threads", "1"]
    runs = []
    for flag in ([], ["--no-repaint-first-frame"]):
        assert main([*argv, *flag]) == 0
        runs.append((json.loads(capsys.readouterr().out.strip().splitlines()[-1]), len(calls)))
        calls.clear()
    # on: the two T2V videos are repainted, the two I2V ones (their image gives frame 0) are not
    assert [(r["repaint_first_frame"], n) for r, n in runs] == [(True, 2), (False, 0)]


def test_shipped_student_loads_by_name_and_samples_in_its_steps(pipe):
    from motif_video import MotifVideoPipeline

    folder = resolve_folder("small-4step")
    # distilled on the small model's latents: borrows its text encoder and VAE
    assert not (folder / "text_encoder").exists() and not (folder / "vae").exists()
    student = MotifVideoPipeline.from_pretrained("small-4step")
    assert student.text_encoder.config.to_dict() == pipe.text_encoder.config.to_dict()  # `pipe`: the base
    theirs = pipe.vae.state_dict()
    assert all(torch.equal(v, theirs[k]) for k, v in student.vae.state_dict().items())
    assert student.transformer.config.guidance_embeds
    assert model_defaults("small-4step").num_inference_steps == 4
    assert model_defaults("small-4step").num_frames == 33  # size from its base model
    seen = []
    video = student(
        PROMPT, generator=torch.Generator().manual_seed(0), output_type="np",
        callback_on_step_end=lambda p, i, t, kw: seen.append(i) or kw,
    ).frames  # fmt: skip
    assert seen == [0, 1, 2, 3] and video.shape == (1, 33, 64, 64, 3) and np.isfinite(video).all()


def test_recipe_writes_the_shipped_generation_and_guider_configs(tmp_path):
    """`recipes/small/build.py` assembles the folder with these defaults (the repaint and the guider scale included),
    so rebuilding reproduces what ships; its APG takes one norm per latent frame, named in the config (a diffusers
    guider config naming none takes one over the whole video)."""
    from diffusers import AdaptiveProjectedGuidance
    from recipes.small.build import GENERATION, parse_args
    from recipes.small.components import write_sampling_configs

    from motif_video.pipelines.guidance import config_from_guider

    folder = resolve_folder("small")
    assert json.loads((folder / "generation_config.json").read_text()) == GENERATION
    guider = json.loads((folder / "guider" / "guider_config.json").read_text())
    shift = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())["shift"]
    write_sampling_configs(tmp_path, shift, parse_args([]).guidance_scale)
    assert json.loads((tmp_path / "guider" / "guider_config.json").read_text()) == guider
    loaded = AdaptiveProjectedGuidance.from_pretrained(folder / "guider")
    assert config_from_guider(loaded).norm_dims == (-1, -2, -4)


def test_eval_without_a_progress_bar_counts_its_videos():
    from motif_video.evaluation.offline import OfflineEvalConfig, run_offline_eval

    figures = run_offline_eval(
        OfflineEvalConfig(prompts=1, seeds=1, steps=2, i2v=False, threads=1, progress=False)
    )
    assert figures["videos"] == 2 and figures["seconds_per_video"] > 0


def test_eval_conditions_samples_on_the_threads_it_is_given(capsys):
    """`--threads` reaches the conditions suite as it does the T2V/I2V one: a run's sums (and so a long extension's
    figures) depend on the thread count, so the figures must come from the count the command names."""
    before = torch.get_num_threads()
    argv = ["eval", "--conditions", "first", "--prompts", "1", "--seeds", "1", "--steps", "2", "--json"]
    try:
        assert main([*argv, "--threads", "2"]) == 0
        figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert figures["threads"] == 2 == torch.get_num_threads()
        assert 0 < figures["seen"]["first"]["psnr"] < 60
    finally:
        torch.set_num_threads(before)


def test_eval_vbench_writes_its_videos_on_the_threads_it_is_given(tmp_path, capsys):
    before = torch.get_num_threads()
    argv = ["eval", "--suite", "vbench", "--model", "small", "--dimensions", "color", "--samples", "1",
            "--no-score", "--steps", "1", "--output", str(tmp_path / "videos"), "--json"]  # fmt: skip
    try:
        assert main([*argv, "--threads", "2"]) == 0
        assert torch.get_num_threads() == 2
        assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["videos_this_rank"] == 1
        assert len(list((tmp_path / "videos").glob("*.mp4"))) == 1
    finally:
        torch.set_num_threads(before)
