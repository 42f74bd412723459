"""Generated MP4s carry their settings; `generate --replay` makes the same video (same frames, same bytes)."""

from __future__ import annotations

import hashlib

import numpy as np
import PIL.Image
import pytest

from motif_video import cli
from motif_video.pipelines.export import read_mp4_metadata, write_mp4
from motif_video.testing import TINY_GENERATE_ARGS, write_tiny_pipeline_folder


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return write_tiny_pipeline_folder(tmp_path_factory.mktemp("tiny") / "model")


def _frames(path) -> np.ndarray:
    import av

    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_replay_makes_the_same_video(tiny_folder, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red ball\na blue cube\n")
    made = tmp_path / "made"
    made.mkdir()
    args = ["generate", "--model", str(tiny_folder), "--threads", "1", *TINY_GENERATE_ARGS]
    assert (
        cli.main([*args, "--prompt-file", str(prompts), "--output", str(made), "--negative-prompt", "blur"])
        == 0
    )
    second = sorted(made.iterdir())[1]  # video 1: its own prompt and seed + 1
    record = read_mp4_metadata(second)
    assert record["prompt"] == "a blue cube" and record["seed"] == 2 and record["negative_prompt"] == "blur"
    assert (record["height"], record["width"], record["num_frames"], record["steps"]) == (64, 96, 9, 2)
    assert record["model"] == str(tiny_folder) and record["motif_video"] and record["revision"] is None
    assert record["resolved"]["shift"] == 15.0 and record["resolved"]["guidance"] == "apg"
    capsys.readouterr()

    again = tmp_path / "again.mp4"
    assert cli.main(["generate", "--replay", str(second), "--output", str(again), "--threads", "1"]) == 0
    assert "seed 2; 1 prompt(s); 96x64x9, 2 steps" in capsys.readouterr().out
    assert np.array_equal(_frames(again), _frames(second))
    assert _sha(again) == _sha(second)  # deterministic encoder, same record

    # a flag given with --replay overrides the stored value
    fewer = tmp_path / "fewer.mp4"
    assert cli.main(["generate", "--replay", str(second), "--output", str(fewer), "--steps", "1"]) == 0
    assert read_mp4_metadata(fewer)["steps"] == 1 and read_mp4_metadata(fewer)["seed"] == 2


def test_replay_of_image_to_video_checks_the_image(tiny_folder, tmp_path, capsys):
    image = tmp_path / "first.png"
    PIL.Image.fromarray(np.full((64, 96, 3), 120, np.uint8)).save(image)
    out = tmp_path / "i2v.mp4"
    args = ["generate", "--model", str(tiny_folder), "--threads", "1", *TINY_GENERATE_ARGS]
    assert cli.main([*args, "--prompt", "a ball", "--image", str(image), "--output", str(out)]) == 0
    assert read_mp4_metadata(out)["image"] == str(image)
    PIL.Image.fromarray(np.full((64, 96, 3), 10, np.uint8)).save(image)
    capsys.readouterr()
    assert cli.main(["generate", "--replay", str(out), "--output", str(tmp_path / "b.mp4")]) == 2
    assert "changed since the video was made" in capsys.readouterr().err


def test_replay_of_a_video_without_settings_exits_2(tmp_path, capsys):
    other = write_mp4(np.zeros((1, 16, 16, 3), np.uint8), tmp_path / "other.mp4")
    assert cli.main(["generate", "--replay", str(other)]) == 2
    assert "holds no motif-video generation settings" in capsys.readouterr().err
    assert cli.main(["generate", "--replay", str(tmp_path / "missing.mp4")]) == 2
    assert "is not a file" in capsys.readouterr().err
