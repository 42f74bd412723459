"""Two CPU processes (gloo, DDP): the same losses as one process with the same global batch; Ctrl-C under torchrun
checkpoints every rank at the same step."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tests.training.conftest import start_until_logged, tiny_overrides, write_random_cache

from motif_video.training import checkpoint as ckpt
from motif_video.training import trainer
from motif_video.training.config import load_config
from motif_video.training.trainer import stop_between_steps, train

WORKER = Path(__file__).with_name("ddp_worker.py")


def _run(nproc: int, overrides: list[str], out: Path, **extra_env: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path), **extra_env}
    # --standalone: the launcher's own rendezvous binds a free port (no port picked here and released before use)
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
               "--standalone", str(WORKER), json.dumps(overrides), str(out)]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[:6000]
    return json.loads(out.read_text())


def test_two_processes_match_one(tmp_path):
    cache = write_random_cache(tmp_path / "cache", count=8)
    extra = {"max_steps": 3, "optim.ema_decay": 0.9, "objective.text_dropout": 0.5}
    one = train(load_config(None, tiny_overrides(tmp_path / "one", cache, **{**extra, "data.batch_size": 4})))
    two = _run(
        2, tiny_overrides(tmp_path / "two", cache, **{**extra, "data.batch_size": 2}), tmp_path / "two.json"
    )
    assert two["world_size"] == 2
    assert len(one.losses) == 3
    torch.testing.assert_close(torch.tensor(two["losses"]), torch.tensor(one.losses), rtol=1e-5, atol=1e-6)
    # The weights after three steps agree too (gradients were averaged across the two ranks).
    a = load_file(str(tmp_path / "one/checkpoints/step-00000003/model.safetensors"))
    b = load_file(str(tmp_path / "two/checkpoints/step-00000003/model.safetensors"))
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5)


def test_a_file_only_another_rank_cannot_decode_is_in_the_runs_report(tmp_path):
    """Each rank decodes its own share of the media: rank 1's skips are gathered into the line rank 0 logs
    (before: rank 0's own only, so this run said "no files skipped")."""
    from motif_video.synthetic.squares import write_moving_squares

    clips = tmp_path / "clips"
    write_moving_squares(clips, 4, frames=5, height=32, width=32)
    overrides = [f"output_dir={tmp_path / 'run'}", "max_steps=4", "tensorboard=false", "model.preset=tiny",
                 "model.components=tiny", "model.max_text_tokens=16", f"data.path={clips}", "data.batch_size=2",
                 "data.buckets=[[5, 32, 32]]"]  # fmt: skip
    run = _run(2, overrides, tmp_path / "out.json", BREAK_ON_RANK_1="clip-0002.mp4")
    assert run["data"] == [
        f"data: skipped 1 file(s): 1 undecodable (e.g. {clips / 'clip-0002.mp4'}); bucket utilisation 100%"
    ]


def test_ctrl_c_under_torchrun_checkpoints_every_rank_at_one_step_and_the_same_command_resumes(tmp_path):
    """Ctrl-C in the terminal of `torchrun --nproc-per-node 2 -m motif_video.cli train`: each rank finishes the step in
    progress, they agree on the step to stop at, save one complete checkpoint there together and exit 130; the same
    command resumes from it (before: every rank stopped where it stood and no checkpoint was written).

    Ctrl-C signals the terminal's foreground process group, which holds torchrun only (it starts each worker in a
    session of its own); torchrun sends the signal on to its workers (SIGKILL 30 s later, `--shutdown-timeout`) and
    then exits 1 with its own traceback, whatever they return: the workers' 130 is seen in their "interrupted" lines.
    """
    root = Path(__file__).parents[2]
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "--standalone", "-m",
            "motif_video.cli", "train", "--config", str(root / "recipes/tiny-cpu/config.yaml"), "--output", str(out),
            "log_every=1", "tensorboard=false"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(root / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}  # fmt: skip
    metrics = out / "metrics.jsonl"
    # A session of its own: the launcher leads a process group, as a command started from a terminal does.
    proc = start_until_logged([*argv, "--max-steps", "5000"], env, metrics, start_new_session=True)
    try:
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:  # SIGTERM first: torchrun stops its workers, which SIGKILL would orphan
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
    # torchrun's own exit status after a signal, whatever its workers return (`accelerate launch`: 128 + signal)
    assert proc.returncode == 1, err
    assert err.count("motif-video train: interrupted") == 2, err  # each rank, as it returns 130
    assert err.count("interrupted: checkpoint at step") == 1, err  # rank 0 only
    assert "SIGKILL" not in err, err  # both were done well within torchrun's grace period
    saved = ckpt.latest_checkpoint(out)
    assert saved is not None, err
    step = int(saved.name.removeprefix("step-"))
    assert f"interrupted: checkpoint at step {step};" in err, err
    files = {"model.safetensors", "ema.safetensors", "optimizer.pt", "state.json"}
    assert {p.name for p in saved.iterdir()} == files and not list(saved.parent.glob("*.tmp"))
    state = ckpt.load_state(saved)
    assert (state["step"], state["world_size"]) == (step, 2)
    steps = [json.loads(x)["step"] for x in metrics.read_text().splitlines()]
    assert step >= 3 and steps == list(range(1, step + 1))

    again = subprocess.run(
        [*argv, "--max-steps", str(step + 2)], env=env, capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0, again.stderr
    assert f"resuming from {saved} (step {step})" in again.stderr, again.stderr
    assert [json.loads(x)["step"] for x in metrics.read_text().splitlines()] == list(range(1, step + 3))


def test_a_stop_signal_delivered_twice_at_once_is_one_stop(monkeypatch):
    """SLURM or systemd stop a job by signalling every process, and torchrun forwards the signal it got to its
    workers as well: each rank gets it twice, milliseconds apart, which is one stop, not the second signal that stops
    at once (before: the step in progress and its checkpoint were lost). A later one still stops at once."""
    before = signal.getsignal(signal.SIGTERM)
    with stop_between_steps(announce=False) as stop:
        signal.raise_signal(signal.SIGTERM)
        signal.raise_signal(signal.SIGTERM)
        assert stop.is_set()
        monkeypatch.setattr(trainer, "SAME_SIGNAL_S", 0.0)
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGTERM) is before
