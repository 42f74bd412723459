"""`motif-video generate` under torchrun (2 ranks, gloo, CPU): context and guidance parallelism give the one-process
video (max abs diff <= 1e-5 in float32), a step cache decides the same on every rank, and the prompt-file split
writes every output exactly once."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from motif_video import cli
from motif_video.testing import TINY_GENERATE_ARGS

WORKER = Path(__file__).with_name("generate_worker.py")
TINY = TINY_GENERATE_ARGS
CACHE = ["--cache-threshold", "1.0", "--steps", "3"]  # partly skips on this model (distances 0.9-1.2)
PROMPTS = ["a red ball", "a blue cube", "a green star"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """The tiny folder with larger transformer weights (so that guidance and text visibly move the video)."""
    from motif_video.testing import tiny_transformer, write_tiny_pipeline_folder

    path = write_tiny_pipeline_folder(tmp_path_factory.mktemp("tiny") / "model")
    shutil.rmtree(path / "transformer")
    tiny_transformer(0, std=0.2).save_pretrained(path / "transformer")
    return path


@pytest.fixture(scope="module")
def ranks(folder, tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("parallel")
    for name in ("context", "guidance", "context-cache"):
        (out / name).mkdir()
    prompt_file = out / "prompts.txt"
    prompt_file.write_text("\n".join(PROMPTS) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(sys.path))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               str(WORKER), str(folder), str(out), str(prompt_file)]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out, done.stdout


def one_process(folder: Path, output: Path, *extra: str) -> torch.Tensor:
    args = ["generate", "--prompt", "a red ball", "--model", str(folder), "--output", str(output), "--save-latents",
            *TINY, *extra]  # fmt: skip
    assert cli.main(args) == 0
    return latents(output)


@pytest.fixture(scope="module")
def singles(folder, tmp_path_factory) -> dict[str, tuple[torch.Tensor, str]]:
    """One-process runs (WORLD_SIZE unset): (latents, printed output) per setting."""
    import contextlib
    import io

    out = tmp_path_factory.mktemp("single")
    settings = {
        "context": [],  # auto batching, as the context-parallel run
        "guidance": ["--guidance-batching", "sequential"],  # guidance parallelism is two passes
        "unguided": ["--guidance", "none"],
        "context-cache": CACHE,
    }
    saved = os.environ.pop("WORLD_SIZE", None)
    results = {}
    try:
        for name, extra in settings.items():
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                results[name] = (one_process(folder, out / f"{name}.mp4", *extra), printed.getvalue())
    finally:
        if saved is not None:
            os.environ["WORLD_SIZE"] = saved
    return results


def latents(mp4: Path) -> torch.Tensor:
    return load_file(str(mp4.with_suffix(".latents.safetensors")))["latents"]


@pytest.mark.parametrize("mode", ["context", "guidance"])
def test_two_ranks_make_the_one_process_video(mode, ranks, singles):
    out, _ = ranks
    single = singles[mode][0]
    two = latents(out / mode / "clip.mp4")
    assert single.abs().max() > 0.1
    assert (two - single).abs().max().item() <= 1e-5
    # Not vacuous: the negative prompt's pass matters here (a rank mixing up cond and uncond would show).
    assert (singles["unguided"][0] - single).abs().max().item() > 1e-2
    assert sorted(p.name for p in (out / mode).iterdir()) == ["clip.latents.safetensors", "clip.mp4"]


def test_step_cache_decides_the_same_across_ranks(ranks, singles):
    out, stdout = ranks
    single, printed = singles["context-cache"]
    report = re.search(r"video 0: (cond: .*)", printed).group(1)
    assert "skipped 1 of 3 steps [1]" in report  # the threshold skips some steps, not all
    section = stdout.split("== context-cache")[1].split("== data")[0]
    assert report in section  # the same skipped steps as one process
    assert (latents(out / "context-cache" / "clip.mp4") - single).abs().max().item() <= 1e-5


def test_prompt_file_split_writes_every_output_once(ranks):
    out, stdout = ranks
    files = sorted(p.name for p in (out / "data").iterdir())
    names = ["000-a-red-ball", "001-a-blue-cube", "002-a-green-star"]
    assert files == sorted([f"{n}.mp4" for n in names] + [f"{n}.latents.safetensors" for n in names])
    section = stdout.split("== data")[1]
    for n in names:  # rank 0 prints every output once, its own and rank 1's
        assert section.count(f"{n}.mp4") == 1, section
    assert section.count("time ") == 1  # one summary
