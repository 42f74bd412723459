"""Speed options through the pipelines and `motif-video generate`: step cache, regional compile, FP8 compute, the
attention backend reaching the kernels."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
import torch
from diffusers.hooks import FirstBlockCacheConfig
from pipeline_test_utils import PROMPT, SIZE, quiet

from motif_video import MotifVideoImageToVideoPipeline, MotifVideoPipeline, cli, generation


@pytest.fixture(scope="module")
def pipe(strong_folder):
    return quiet(MotifVideoPipeline, strong_folder)


def _latents(p, steps=4, **kw):
    kw = {**SIZE, "num_inference_steps": steps, "generator": torch.Generator().manual_seed(0), **kw}
    return p(prompt=PROMPT, output_type="latent", **kw).frames


def _count_block_calls(model, fn):
    calls = []
    hooks = [b.register_forward_hook(lambda *_: calls.append(1)) for b in model.repeated_blocks()]
    try:
        return fn(), len(calls)
    finally:
        for h in hooks:
            h.remove()


@contextmanager
def step_cache(transformer, threshold: float):
    """The first-block step cache enabled on the transformer from outside (diffusers' API), then disabled."""
    transformer.enable_cache(FirstBlockCacheConfig(threshold=threshold))
    try:
        yield transformer
    finally:
        transformer.disable_cache()


def test_cache_threshold_zero_is_the_exact_pipeline(pipe):
    exact = _latents(pipe, guidance_batching="sequential")
    with step_cache(pipe.transformer, 0.0):
        cached = _latents(pipe)  # "auto" batching turns sequential when caching
        report = pipe.transformer.cache_report()
    assert cached.equal(exact)
    assert sorted(report) == ["cond", "uncond"]
    assert all(r.calls == 4 and r.skipped == [] for r in report.values())


def test_large_threshold_skips_steps_and_reports_them(pipe):
    exact, full_calls = _count_block_calls(
        pipe.transformer, lambda: _latents(pipe, guidance_batching="sequential")
    )
    with step_cache(pipe.transformer, 1e6):
        cached, calls = _count_block_calls(pipe.transformer, lambda: _latents(pipe))
        report = pipe.transformer.cache_report()
        # A batched cond+uncond pass shares one cache context: the whole batch skips together.
        _latents(pipe, guidance_batching="batched")
        batched = pipe.transformer.cache_report()
    blocks = len(pipe.transformer.repeated_blocks())
    assert full_calls == 2 * 4 * blocks
    # Step 0 of each branch runs every block; steps 1-3 run only the first block.
    assert sorted(report) == ["cond", "uncond"] and all(r.skipped == [1, 2, 3] for r in report.values())
    assert calls == 2 * (blocks + 3)
    assert (cached - exact).abs().max() > 1e-4  # skipping is not free
    assert list(batched) == ["cond+uncond"] and batched["cond+uncond"].skipped == [1, 2, 3]


def test_i2v_takes_a_step_cache(strong_folder):
    import numpy as np
    import PIL.Image

    i2v = quiet(MotifVideoImageToVideoPipeline, strong_folder)
    image = PIL.Image.fromarray(np.full((64, 96, 3), 120, dtype=np.uint8))
    with step_cache(i2v.transformer, 1e6):
        _latents(i2v, steps=3, image=image, guidance="none")
        report = i2v.transformer.cache_report()
    assert list(report) == ["cond"] and report["cond"].skipped == [1, 2]


TINY = [
    "--height",
    "64",
    "--width",
    "96",
    "--num-frames",
    "9",
    "--steps",
    "3",
    "--device",
    "cpu",
    "--seed",
    "1",
]


def _generate(folder, out, *extra):
    rc = cli.main(["generate", "--prompt", "a red ball", "--model", str(folder), "--output", str(out),
                   "--save-latents", *TINY, *extra])  # fmt: skip
    assert rc == 0
    from safetensors.torch import load_file

    return load_file(str(out.with_suffix(".latents.safetensors")))["latents"]


def test_generate_cache_threshold_prints_the_skipped_steps(tiny_folder, tmp_path, capsys):
    exact = _generate(tiny_folder, tmp_path / "exact.mp4")
    capsys.readouterr()
    cached = _generate(tiny_folder, tmp_path / "cached.mp4", "--cache-threshold", "1e6")
    printed = capsys.readouterr().out
    assert "step cache (threshold 1e+06), video 0: cond: skipped 2 of 3 steps [1, 2]" in printed
    assert "uncond: skipped 2 of 3 steps [1, 2]" in printed
    assert not cached.equal(exact)
    zero = _generate(tiny_folder, tmp_path / "zero.mp4", "--cache-threshold", "0")
    assert "skipped 0 of 3 steps" in capsys.readouterr().out
    # The tiny folder's video batches cond+uncond without a cache: equal up to batched-vs-two-pass rounding.
    torch.testing.assert_close(zero, exact, atol=1e-5, rtol=0)


def test_generate_compile_with_the_eager_backend(tiny_folder, tmp_path, capsys, monkeypatch):
    from motif_video.perf.compile import is_compiled

    pipes = []
    real_load = generation.load_pipeline
    monkeypatch.setattr(generation, "load_pipeline", lambda r: pipes.append(real_load(r)) or pipes[-1])
    torch._dynamo.reset()
    exact = _generate(tiny_folder, tmp_path / "exact.mp4")
    compiled = _generate(tiny_folder, tmp_path / "compiled.mp4", "--compile", "eager")
    assert not any(is_compiled(b) for b in pipes[0].transformer.repeated_blocks())
    assert all(is_compiled(b) for b in pipes[1].transformer.repeated_blocks())
    assert "compile=eager" in capsys.readouterr().out
    torch.testing.assert_close(compiled, exact, atol=1e-5, rtol=0)
    torch._dynamo.reset()


@pytest.mark.parametrize("backend", ["math", "sdpa_flash"])
def test_attention_backend_reaches_the_kernel(backend, tiny_folder, tmp_path, monkeypatch):
    import importlib

    attention = importlib.import_module("motif_video.models.attention")
    calls = []
    real = attention._BACKENDS[backend]
    monkeypatch.setitem(attention._BACKENDS, backend, lambda *a: calls.append(1) or real(*a))
    default = _generate(tiny_folder, tmp_path / "default.mp4")
    assert calls == []
    chosen = _generate(tiny_folder, tmp_path / "chosen.mp4", "--attention-backend", backend)
    assert len(calls) > 0
    torch.testing.assert_close(chosen, default, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--fp8-compute", "--device", "cpu"], "--fp8-compute, eval's --fp8 dynamic) needs a CUDA device"),
        (["--fp8-compute", "--fp8", "--device", "cpu"], "exclusive"),
        (["--compile", "warp-drive"], "compile backend 'warp-drive' is unknown"),
        (["--cache-threshold", "-1"], "cache_threshold must be >= 0"),
        (["--parallel", "context"], "needs several processes: torchrun"),
        (["--attention-backend", "ulysses"], "attention backend 'ulysses' is not available"),
    ],
)
def test_bad_speed_options_exit_2_before_loading(args, message, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(generation, "load_pipeline", lambda r: pytest.fail("a model was loaded"))
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert cli.main(["generate", "--prompt", "a", "--output", str(tmp_path / "x.mp4"), *args]) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
