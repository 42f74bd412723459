"""Generated MP4s carry their settings; `generate --replay` makes the same video (same frames, same bytes)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from motif_video import cli
from motif_video.hub import DEFAULT_MODEL_ID
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


def test_replay_makes_the_same_video(tiny_folder, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
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
    # without --output: VIDEO-replay.mp4 beside the video, never a file of another run
    assert cli.main(["generate", "--replay", str(second), "--threads", "1"]) == 0
    assert _sha(second.with_name(f"{second.stem}-replay.mp4")) == _sha(second)
    assert not Path("output.mp4").exists()

    # a flag given with --replay overrides the stored value
    fewer = tmp_path / "fewer.mp4"
    assert cli.main(["generate", "--replay", str(second), "--output", str(fewer), "--steps", "1"]) == 0
    assert read_mp4_metadata(fewer)["steps"] == 1 and read_mp4_metadata(fewer)["seed"] == 2
    # even at the option's default: --model naming the released model is meant (before: the recorded folder ran)
    from motif_video import generation

    loaded = []

    def record(plan, show_progress=True):
        loaded.append(plan.request.model)
        raise ValueError("not loaded in this test")

    monkeypatch.setattr(generation, "prepare_pipeline", record)
    assert (
        cli.main(["generate", "--replay", str(second), "--model", DEFAULT_MODEL_ID, "--output", str(fewer)])
        == 2
    )
    assert loaded == [DEFAULT_MODEL_ID]


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


def test_replay_checks_every_file_the_video_was_made_from(tiny_folder, tmp_path, capsys):
    """Keyframes, a last image and a video-to-video input are hashed like the first image: a replay refuses one that
    changed or is gone (naming it and the flag that replaces it), and takes the flag given instead."""
    images = {}
    for name, level in (("first", 120), ("key", 60), ("last", 200)):
        images[name] = tmp_path / f"{name}.png"
        PIL.Image.fromarray(np.full((64, 96, 3), level, np.uint8)).save(images[name])
    out = tmp_path / "keys.mp4"
    args = [
        "generate",
        "--model",
        str(tiny_folder),
        "--threads",
        "1",
        *TINY_GENERATE_ARGS,
        "--prompt",
        "a ball",
    ]
    conditions = [
        "--image",
        str(images["first"]),
        "--keyframe",
        f"{images['key']}@4",
        "--last-image",
        str(images["last"]),
    ]
    assert cli.main([*args, *conditions, "--output", str(out)]) == 0
    assert set(read_mp4_metadata(out)["media_sha256"]) == {str(p) for p in images.values()}
    again = tmp_path / "again.mp4"
    assert cli.main(["generate", "--replay", str(out), "--output", str(again)]) == 0
    assert _sha(again) == _sha(out)

    PIL.Image.fromarray(np.full((64, 96, 3), 10, np.uint8)).save(images["key"])
    capsys.readouterr()
    assert cli.main(["generate", "--replay", str(out), "--output", str(again)]) == 2
    assert (
        f"the keyframe image {str(images['key'])!r} changed since the video was made"
        in capsys.readouterr().err
    )
    given = ["--keyframe", f"{images['key']}@4"]  # given again: taken as it is now
    assert cli.main(["generate", "--replay", str(out), *given, "--output", str(again)]) == 0
    images["last"].unlink()
    assert cli.main(["generate", "--replay", str(out), *given, "--output", str(again)]) == 2
    assert "which is not there; pass it with --last-image" in capsys.readouterr().err

    restyled = tmp_path / "restyled.mp4"  # video-to-video: the input video is checked the same way
    assert cli.main([*args, "--video", str(again), "--strength", "0.5", "--output", str(restyled)]) == 0
    write_mp4(_frames(again)[::-1].copy(), again)
    capsys.readouterr()
    assert cli.main(["generate", "--replay", str(restyled), "--output", str(tmp_path / "r.mp4")]) == 2
    assert f"the video {str(again)!r} changed since the video was made" in capsys.readouterr().err


def test_replay_of_a_video_without_settings_exits_2(tmp_path, capsys):
    other = write_mp4(np.zeros((1, 16, 16, 3), np.uint8), tmp_path / "other.mp4")
    assert cli.main(["generate", "--replay", str(other)]) == 2
    assert "holds no motif-video generation settings" in capsys.readouterr().err
    assert cli.main(["generate", "--replay", str(tmp_path / "missing.mp4")]) == 2
    assert "is not a file" in capsys.readouterr().err


def test_extend_replay_makes_the_same_extended_video(tiny_folder, tmp_path, capsys):
    """`extend` stores how it extended a clip; `extend --replay` extends the same clip the same way (same bytes),
    flags given win, and a clip that is gone or changed is named."""
    clip, story = tmp_path / "clip.mp4", tmp_path / "story.txt"
    args = ["--model", str(tiny_folder), "--threads", "1"]
    assert (
        cli.main(["generate", *args, *TINY_GENERATE_ARGS, "--prompt", "a ball", "--output", str(clip)]) == 0
    )
    story.write_text("a red ball\na blue cube\n")
    long = tmp_path / "long.mp4"
    extend = ["extend", str(clip), *args, "--prompt-file", str(story), "--seconds", "0.75", "--overlap", "5",
              "--num-frames", "9", "--steps", "1", "--seed", "4", "--negative-prompt", "blur", "--output", str(long)]  # fmt: skip
    assert cli.main(extend) == 0
    record = read_mp4_metadata(long)
    assert record["format"] == "motif-video extend 1" and record["extended_from"] == str(clip)
    assert (record["frames"], record["fps"], record["window"], record["overlap"]) == (18, 24.0, 9, 5)
    assert (record["steps"], record["seed"], record["negative_prompt"]) == (1, 4, "blur")
    assert record["prompts"] == ["a red ball", "a blue cube", "a blue cube"] and record["model"] == str(
        tiny_folder
    )
    capsys.readouterr()

    assert cli.main(["extend", "--replay", str(long), "--threads", "1"]) == 0
    again = tmp_path / "long-replay.mp4"
    assert "extending " + str(clip) in capsys.readouterr().out
    assert np.array_equal(_frames(again), _frames(long)) and _sha(again) == _sha(long)
    other = tmp_path / "other.mp4"  # a flag given wins over the record
    assert cli.main(["extend", "--replay", str(long), "--steps", "2", "--output", str(other)]) == 0
    assert (read_mp4_metadata(other)["steps"], read_mp4_metadata(other)["seed"]) == (2, 4)
    # a flag given at its default value is given all the same (before: --overlap 9 was read as "not given" and
    # the recorded 5 kept; here 9 is the whole window, so it is refused)
    capsys.readouterr()
    assert cli.main(["extend", "--replay", str(long), "--overlap", "9", "--output", str(other)]) == 2
    assert "overlap" in capsys.readouterr().err

    write_mp4(_frames(clip)[::-1].copy(), clip)  # the clip changed: named, unless given as CLIP
    capsys.readouterr()
    assert cli.main(["extend", "--replay", str(long), "--output", str(other)]) == 2
    assert f"the clip {str(clip)!r} changed since the video was extended from it" in capsys.readouterr().err
    assert cli.main(["extend", str(clip), "--replay", str(long), "--output", str(other)]) == 0
    clip.unlink()
    assert cli.main(["extend", "--replay", str(long), "--output", str(other)]) == 2
    assert "which is not there; pass that clip as CLIP" in capsys.readouterr().err


def test_each_replay_names_the_command_that_made_the_video(tiny_folder, tmp_path, capsys):
    made = tmp_path / "made.mp4"
    args = ["--model", str(tiny_folder), "--threads", "1"]
    assert (
        cli.main(["generate", *args, *TINY_GENERATE_ARGS, "--prompt", "a ball", "--output", str(made)]) == 0
    )
    long = tmp_path / "long.mp4"
    extend = ["extend", str(made), *args, "--seconds", "0.5", "--overlap", "5", "--num-frames", "9", "--steps", "1",
              "--output", str(long)]  # fmt: skip
    assert cli.main(extend) == 0
    capsys.readouterr()
    assert cli.main(["generate", "--replay", str(long)]) == 2
    assert (
        "was made by `motif-video extend`: replay it with `motif-video extend --replay`"
        in capsys.readouterr().err
    )
    assert cli.main(["extend", "--replay", str(made)]) == 2
    assert (
        "was made by `motif-video generate`: replay it with `motif-video generate --replay`"
        in capsys.readouterr().err
    )
    other = write_mp4(np.zeros((1, 16, 16, 3), np.uint8), tmp_path / "other.mp4")
    assert cli.main(["extend", "--replay", str(other)]) == 2
    assert "holds no motif-video extension settings" in capsys.readouterr().err
    assert cli.main(["extend", "--prompt", "a ball"]) == 2
    assert "extend needs CLIP and --seconds (or --replay VIDEO.mp4)" in capsys.readouterr().err


def test_replay_warns_when_the_weights_it_loads_are_not_those_the_video_was_made_with(
    tmp_path, capsys, monkeypatch
):
    """A video records a fingerprint of the weights it was made with (the transformer's, each LoRA's); a replay on
    other weights (a local folder trained further) says so on stderr, naming what changed, and goes on (before: it
    silently gave another video). A video recorded before fingerprints replays as before, with nothing said."""
    from motif_video.defaults import GENERATION_CONFIG_NAME
    from motif_video.pipelines.lora import save_lora
    from motif_video.testing import tiny_transformer
    from motif_video.training.lora import add_lora

    folder = write_tiny_pipeline_folder(tmp_path / "model")
    student = tmp_path / "student"  # a LoRA on the folder's transformer
    trained = tiny_transformer(0)
    add_lora(trained, rank=2)
    lora = save_lora(trained, student / "lora")
    (student / GENERATION_CONFIG_NAME).write_text(json.dumps({"base_model": str(folder), "adapter": "lora"}))
    made = tmp_path / "made.mp4"
    args = ["generate", "--model", str(student), "--threads", "1", *TINY_GENERATE_ARGS, "--prompt", "a ball"]
    assert cli.main([*args, "--output", str(made)]) == 0
    weights = folder / "transformer" / "diffusion_pytorch_model.safetensors"
    record = read_mp4_metadata(made)
    assert record["weights_fingerprint"] == {"transformer": _sha(weights), "lora:default": _sha(lora)}
    long = tmp_path / "long.mp4"  # and an extension of it, which records the same
    extend = ["extend", str(made), "--seconds", "0.5", "--overlap", "5", "--num-frames", "9", "--steps", "1",
              "--device", "cpu", "--output", str(long)]  # fmt: skip
    assert cli.main(extend) == 0
    assert read_mp4_metadata(long)["weights_fingerprint"] == record["weights_fingerprint"]
    again, replay = tmp_path / "again.mp4", ["generate", "--replay", str(made)]
    capsys.readouterr()
    assert cli.main([*replay, "--output", str(again)]) == 0
    assert "warning" not in capsys.readouterr().err and _sha(again) == _sha(made)  # the same weights

    before = _sha(weights)
    tiny_transformer(1).save_pretrained(folder / "transformer")  # the base trained further
    assert cli.main([*replay, "--output", str(again)]) == 0
    err = capsys.readouterr().err
    assert (
        f"warning: replay of {str(made)!r}: the transformer's weights differ from those the video was made with "
        f"(sha256 {before[:12]}... then, {_sha(weights)[:12]}... now): the video made now will differ" in err
    )
    assert "LoRA" not in err and _sha(again) != _sha(made)
    monkeypatch.chdir(tmp_path)  # the same folder named again, relative: the same weights asked for
    assert cli.main([*replay, "--model", "student", "--output", str(again)]) == 0
    assert "the transformer's weights differ" in capsys.readouterr().err
    assert cli.main(["extend", "--replay", str(long), "--output", str(again)]) == 0
    assert f"warning: replay of {str(long)!r}: the transformer's weights differ" in capsys.readouterr().err
    retrained = tiny_transformer(2)  # and the LoRA trained again
    add_lora(retrained, rank=2)
    save_lora(retrained, student / "lora")
    assert cli.main([*replay, "--output", str(again)]) == 0
    err = capsys.readouterr().err
    assert "the transformer's weights differ" in err and "the LoRA adapter 'default''s weights differ" in err

    del record["weights_fingerprint"]  # a video made before fingerprints were recorded
    old = write_mp4(_frames(made), tmp_path / "old.mp4", metadata=record)
    assert cli.main(["generate", "--replay", str(old), "--output", str(again)]) == 0
    assert "warning" not in capsys.readouterr().err


def test_a_replay_finds_what_the_video_was_made_from_in_any_directory(
    tiny_folder, tmp_path, monkeypatch, capsys
):
    """Paths typed relative to the working directory (the model, an image, a keyframe, the clip extended) are
    recorded absolute, so `--replay` from another directory makes the same video (before: the model was looked for
    on the Hub, the clip "is not there")."""
    import os

    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir(), elsewhere.mkdir()
    PIL.Image.fromarray(np.full((64, 96, 3), 120, np.uint8)).save(work / "first.png")
    monkeypatch.chdir(work)
    model = os.path.relpath(tiny_folder, work)
    args = ["--model", model, "--threads", "1"]
    made = ["generate", *args, *TINY_GENERATE_ARGS, "--prompt", "a ball", "--image", "first.png", "--keyframe",
            "first.png@4", "--output", "clip.mp4"]  # fmt: skip
    assert cli.main(made) == 0
    extend = ["extend", "clip.mp4", *args, "--seconds", "0.5", "--num-frames", "9", "--steps", "1", "--seed", "4",
              "--output", "long.mp4"]  # fmt: skip
    assert cli.main(extend) == 0
    record = read_mp4_metadata("clip.mp4")
    image = str(work / "first.png")
    assert (record["model"], record["image"], record["keyframe"]) == (str(tiny_folder), image, [f"{image}@4"])
    assert list(record["media_sha256"]) == [image]
    assert read_mp4_metadata("long.mp4")["extended_from"] == str(work / "clip.mp4")

    monkeypatch.chdir(elsewhere)
    assert cli.main(["generate", "--replay", str(work / "clip.mp4"), "--output", "clip.mp4"]) == 0
    assert cli.main(["extend", "--replay", str(work / "long.mp4"), "--output", "long.mp4"]) == 0
    assert _sha(elsewhere / "clip.mp4") == _sha(work / "clip.mp4")
    assert _sha(elsewhere / "long.mp4") == _sha(work / "long.mp4")


def test_recorded_paths_are_absolute_where_they_exist_and_names_stay_names(tmp_path, monkeypatch):
    from motif_video.replay import absolute_paths

    monkeypatch.chdir(tmp_path)
    (tmp_path / "adapter.safetensors").write_bytes(b"")
    values = {"model": "small", "lora": ["adapter.safetensors:0.5", "owner/repo"], "transformer_gguf": None,
              "keyframe": [], "image": None}  # fmt: skip
    assert absolute_paths(values) == {**values, "lora": [f"{tmp_path}/adapter.safetensors:0.5", "owner/repo"]}
    assert absolute_paths({"model": DEFAULT_MODEL_ID})["model"] == DEFAULT_MODEL_ID
