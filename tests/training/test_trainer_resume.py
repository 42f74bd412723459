"""Save, stop, resume: the loss sequence equals the uninterrupted run's; metrics.jsonl and checkpoints are complete."""

from __future__ import annotations

import json

from tests.training.conftest import start_until_logged, tiny_overrides, write_random_cache

from motif_video.models import MotifVideoTransformer
from motif_video.training import checkpoint as ckpt
from motif_video.training.config import load_config
from motif_video.training.trainer import train


def test_resume_repeats_the_uninterrupted_run(tmp_path):
    cache = write_random_cache(tmp_path / "cache", count=6)
    extra = {
        "optim.ema_decay": 0.9,
        "objective.text_dropout": 0.3,
        "tread.routes": [{"start_layer": 2, "end_layer": 3, "ratio": 0.5}],
        "checkpoint_every": 3,
        "max_steps": 6,
    }
    full = train(load_config(None, tiny_overrides(tmp_path / "full", cache, **extra)))

    first = train(load_config(None, tiny_overrides(tmp_path / "split", cache, **{**extra, "max_steps": 3})))
    assert ckpt.latest_checkpoint(tmp_path / "split").name == "step-00000003"
    second = train(load_config(None, tiny_overrides(tmp_path / "split", cache, **extra)))

    assert len(full.losses) == 6
    assert first.losses + second.losses == full.losses  # bit-identical
    assert full.losses[0] != full.losses[1]

    records = [json.loads(line) for line in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert {"step", "loss", "lr", "tokens_per_s", "loss_bins"} <= set(records[0])
    final = ckpt.latest_checkpoint(tmp_path / "split")
    assert {p.name for p in final.iterdir()} >= {
        "model.safetensors",
        "ema.safetensors",
        "optimizer.pt",
        "state.json",
    }
    assert not list(final.parent.glob("*.tmp"))
    exported = MotifVideoTransformer.from_pretrained(tmp_path / "split" / "transformer")
    assert exported.config.num_layers == 2
    assert (tmp_path / "split" / "transformer-ema" / "config.json").exists()


def test_a_run_stopped_before_its_export_is_exported_on_resume(tmp_path, capsys):
    """Killed after its final checkpoint, before the export: the same command exports it (once), and says so."""
    import shutil

    from motif_video import cli

    cache = write_random_cache(tmp_path / "cache", count=4)
    (tmp_path / "recipe.yaml").write_text("seed: 0\n")
    overrides = tiny_overrides(
        tmp_path / "run", cache, max_steps=2, checkpoint_every=1, **{"optim.ema_decay": 0.9}
    )
    args = ["train", "--config", str(tmp_path / "recipe.yaml"), "cpu_threads=1", *overrides]
    assert cli.main(args) == 0
    for folder in ("transformer", "transformer-ema"):
        shutil.rmtree(tmp_path / "run" / folder)
    capsys.readouterr()
    assert cli.main(args) == 0
    assert f"nothing to train: already at step 2; exported to {tmp_path / 'run'}" in capsys.readouterr().out
    assert MotifVideoTransformer.from_pretrained(tmp_path / "run" / "transformer-ema").config.num_layers == 2
    assert cli.main(args) == 0
    assert "nothing to train: already at step 2; its export is already in" in capsys.readouterr().out


def test_resume_drops_a_torn_last_metrics_line_and_names_a_bad_one_elsewhere(tmp_path):
    import pytest

    cache = write_random_cache(tmp_path / "cache", count=4)
    overrides = tiny_overrides(tmp_path / "run", cache, max_steps=2, checkpoint_every=1, log_every=1)
    train(load_config(None, overrides))
    metrics = tmp_path / "run" / "metrics.jsonl"
    with metrics.open("a") as f:
        f.write('{"step": 999, "loss": 0.5')  # a crash mid-write
    overrides = tiny_overrides(tmp_path / "run", cache, max_steps=3, checkpoint_every=1, log_every=1)
    assert len(train(load_config(None, overrides)).losses) == 1
    assert [json.loads(line)["step"] for line in metrics.read_text().splitlines()] == [1, 2, 3]

    lines = metrics.read_text().splitlines()
    metrics.write_text("\n".join([lines[0], "garbage", *lines[1:]]) + "\n")
    with pytest.raises(ValueError, match=r"metrics.jsonl line 2 is not JSON"):
        train(load_config(None, tiny_overrides(tmp_path / "run", cache, max_steps=4, log_every=1)))


def test_resume_false_refuses_a_folder_holding_an_earlier_runs_checkpoints(tmp_path):
    import pytest

    cache = write_random_cache(tmp_path / "cache", count=4)
    train(load_config(None, tiny_overrides(tmp_path / "run", cache, max_steps=2, checkpoint_every=1)))
    fresh = tiny_overrides(tmp_path / "run", cache, max_steps=2, resume=False)
    with pytest.raises(ValueError, match=r"resume=false, but .*checkpoints holds checkpoints of an earlier run "
                       r"\(newest: step-00000002\).*another folder.*delete.*resume=true"):  # fmt: skip
        train(load_config(None, fresh))
    assert (
        len(
            train(
                load_config(None, tiny_overrides(tmp_path / "other", cache, max_steps=2, resume=False))
            ).losses
        )
        == 2
    )


def test_a_checkpoint_left_half_written_is_removed_by_the_next_save(tmp_path):
    """A `step-N.tmp` left by a run killed while saving is never a checkpoint and goes at the next save (before: it
    stayed until step N was written again, tens of GB for a large model)."""
    stale = ckpt.begin(tmp_path, 7)
    (stale / "model.safetensors").write_bytes(b"half")
    done = ckpt.commit(ckpt.begin(tmp_path, 3), keep=2)
    assert done.name == "step-00000003" and sorted(p.name for p in done.parent.iterdir()) == ["step-00000003"]


def test_ctrl_c_checkpoints_the_step_it_stops_after_and_the_same_command_resumes(tmp_path):
    """Ctrl-C (or SIGTERM) during `train` lets the step in progress finish, saves a checkpoint there and exits 130;
    the same command resumes from it (before: a KeyboardInterrupt traceback and the steps since the last periodic
    checkpoint lost)."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).parents[2]
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "motif_video.cli", "train", "--config", str(root / "recipes/tiny-cpu/config.yaml"),
            "--output", str(out), "log_every=1", "tensorboard=false"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(root / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    metrics = out / "metrics.jsonl"
    proc = start_until_logged([*argv, "--max-steps", "5000"], env, metrics)
    try:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "interrupted: checkpoint at step" in err, err
    saved = int(ckpt.latest_checkpoint(out).name.removeprefix("step-"))
    assert saved >= 3 and [json.loads(x)["step"] for x in metrics.read_text().splitlines()] == list(
        range(1, saved + 1)
    )
    again = subprocess.run(
        [*argv, "--max-steps", str(saved + 2)], env=env, capture_output=True, text=True, timeout=180
    )
    assert again.returncode == 0, again.stderr
    assert f"step-{saved:08d}" in again.stderr + again.stdout  # resumed from the interrupt's checkpoint
    assert [json.loads(x)["step"] for x in metrics.read_text().splitlines()] == list(range(1, saved + 3))


def test_a_stop_on_a_periodic_checkpoint_step_saves_it_once(tmp_path, monkeypatch):
    """A stop that comes after a step `checkpoint_every` already saved does not write that step again (under
    torchrun the second write counted against the launcher's grace period)."""
    import contextlib
    import threading

    import pytest

    from motif_video.training import trainer

    @contextlib.contextmanager
    def stopped(announce):
        event = threading.Event()
        event.set()  # as if Ctrl-C came during the first step
        yield event

    saved = []
    save = trainer.save_checkpoint
    monkeypatch.setattr(trainer, "stop_between_steps", stopped)
    monkeypatch.setattr(trainer, "save_checkpoint", lambda run, step: (saved.append(step), save(run, step)))
    cache = write_random_cache(tmp_path / "cache", count=4)
    for checkpoint_every, name in ((1, "periodic"), (0, "none")):
        saved.clear()
        config = tiny_overrides(tmp_path / name, cache, checkpoint_every=checkpoint_every, max_steps=4)
        with pytest.raises(KeyboardInterrupt):
            train(load_config(None, config))
        assert saved == [1], (name, saved)
        assert ckpt.latest_checkpoint(tmp_path / name).name == "step-00000001"
