"""`motif-video generate` end to end on the tiny folder, and every bad-input case (exit 2, no model load, no file)."""

from __future__ import annotations

import re

import numpy as np
import PIL.Image
import pytest
from tests.conftest import corrupt_pixels_png

from motif_video import cli, generation
from motif_video.pipelines.export import read_mp4_info
from motif_video.testing import TINY_GENERATE_ARGS

TINY = TINY_GENERATE_ARGS


def test_generate_t2v_writes_an_mp4(tiny_folder, tmp_path, capsys):
    out = tmp_path / "clip.mp4"
    rc = cli.main(
        [
            "generate",
            "--prompt",
            "a red ball",
            "--model",
            str(tiny_folder),
            "--output",
            str(out),
            "--save-latents",
            *TINY,
        ]
    )
    assert rc == 0
    assert read_mp4_info(out) == {"frames": 9, "width": 96, "height": 64, "fps": 24.0}
    assert (tmp_path / "clip.latents.safetensors").is_file()
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "peak process memory" in printed and "shift 15" in printed
    assert f"wrote {tmp_path / 'clip.latents.safetensors'}" in printed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.latents.safetensors", "clip.mp4"]


def test_generate_i2v_from_prompt_file_into_a_folder(tiny_folder, tmp_path, monkeypatch, capsys):
    from motif_video import MotifVideoImageToVideoPipeline

    seen = []
    original = MotifVideoImageToVideoPipeline.__call__

    def spy(self, *args, **kwargs):
        seen.append(kwargs.get("keep_first_frame"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(MotifVideoImageToVideoPipeline, "__call__", spy)
    image = tmp_path / "first.png"
    PIL.Image.fromarray(np.full((48, 80, 3), 200, dtype=np.uint8)).save(image)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red ball\n\na blue cube\n")
    out = tmp_path / "videos"
    rc = cli.main(
        [
            "generate",
            "--prompt-file",
            str(prompts),
            "--image",
            str(image),
            "--model",
            str(tiny_folder),
            "--output",
            str(out),
            "--fps",
            "12",
            "--guidance",
            "cfg",
            "--keep-first-frame",
            *TINY,
        ]
    )
    assert rc == 0
    files = sorted(out.iterdir())
    assert [f.name for f in files] == ["000-a-red-ball.mp4", "001-a-blue-cube.mp4"]
    assert seen == [True, True]  # the option reaches the pipeline for every prompt
    bars = [s for s in re.split(r"[\r\n]", capsys.readouterr().err) if "/2 [" in s]
    assert bars and all(s.startswith("videos: ") for s in bars)  # one bar over the two videos, none per step
    assert "videos: 100%" in bars[-1]
    assert read_mp4_info(files[1]) == {"frames": 9, "width": 96, "height": 64, "fps": 12.0}


def _audio_only(path):
    """A file with one AAC stream and no video (a voice memo given as --video)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=44100)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 44100
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return path


def _bad_cases(tmp_path):
    text = tmp_path / "not-an-image.png"
    text.write_text("hello")
    corrupt = (
        tmp_path / "corrupt-pixels.png"
    )  # passes PIL's verify; before: a traceback after the model loaded
    corrupt.write_bytes(corrupt_pixels_png())
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    two = tmp_path / "two.txt"
    two.write_text("a\nb\n")
    (tmp_path / "runs").mkdir()
    sound = _audio_only(tmp_path / "sound.m4a")
    return {
        "audio only as the video": (  # was "not a readable video (IndexError: tuple index out of range)"
            ["--prompt", "a", "--video", str(sound)],
            r"video '.*sound.m4a' has no video stream \(its streams: audio\)",
        ),
        "missing last image": (  # was called "image"
            ["--prompt", "a", "--last-image", str(tmp_path / "nope.png")],
            r"last_image \(--last-image\) '.*nope.png' does not exist",
        ),
        "several prompts into one mp4": (
            ["--prompt-file", str(two), "--output", str(tmp_path / "one.mp4")],
            "names one MP4 file, but there are 2 prompts",
        ),
        "lora not safetensors": (["--prompt", "a", "--lora", str(text)], "not a readable safetensors file"),
        "lora path under a local folder": (  # before: taken for a Hub repo id, 25 s of retries, then a traceback
            ["--prompt", "a", "--lora", "runs/no-such-lora"],  # run from tmp_path, which holds runs/
            r"lora 'runs/no-such-lora' does not exist \(runs/ is a local folder\)",
        ),
        "lora scale not a number": (
            ["--prompt", "a", "--lora", f"{text}:abc"],
            "the scale after ':' must be a number, got 'abc'",
        ),
        "height not a multiple of 16": (
            ["--prompt", "a", "--height", "60"],
            "height must be a positive multiple",
        ),
        "width not a multiple of 16": (
            ["--prompt", "a", "--width", "100"],
            "width must be a positive multiple",
        ),
        "frames not 4k+1": (["--prompt", "a", "--num-frames", "8"], "num_frames must be 4k\\+1"),
        "missing image": (["--prompt", "a", "--image", str(tmp_path / "nope.png")], "does not exist"),
        "unreadable image": (["--prompt", "a", "--image", str(text)], "not a readable image"),
        "image with corrupt pixels": (["--prompt", "a", "--image", str(corrupt)], "not a readable image"),
        "keep first frame without an image": (["--prompt", "a", "--keep-first-frame"], "needs image"),
        # taken and recorded, and did nothing (a video-to-video input is not a frame condition)
        "reconstruction guidance without an image": (
            ["--prompt", "a", "--condition-guidance", "10"],
            r"condition_guidance \(--condition-guidance\) needs image",
        ),
        "empty prompt": (["--prompt", "  "], "prompt must be non-empty"),
        "empty prompt file": (["--prompt-file", str(empty)], "has no prompts"),
        "missing prompt file": (["--prompt-file", str(tmp_path / "none.txt")], "not readable"),
        "unwritable output": (["--prompt", "a", "--output", "/proc/x.mp4"], "not writable"),
        "missing output folder": (
            ["--prompt", "a", "--output", str(tmp_path / "no" / "x.mp4")],
            "does not exist",
        ),
        "not an mp4": (["--prompt", "a", "--output", str(tmp_path / "x.gif")], "must be an .mp4"),
        "zero steps": (["--prompt", "a", "--steps", "0"], "steps must be >= 1"),
        "bad fps": (["--prompt", "a", "--fps", "0"], r"fps must be in \(0, 240\], got 0"),
        "bad shift": (["--prompt", "a", "--shift", "-1"], "shift must be > 0"),
        "infinite guidance": (
            ["--prompt", "a", "--guidance-scale", "inf"],
            "guidance_scale must be a finite number",
        ),
        "fps past the MP4's range": (["--prompt", "a", "--fps", "100000"], r"fps must be in \(0, 240\]"),
        "endless decoder fit": (["--prompt", "a", "--decoder-fit-steps", "5000"], r"1000\], got 5000"),
        "bad device": (["--prompt", "a", "--device", "tpu"], "device must be"),
        "cuda missing": (["--prompt", "a", "--device", "cuda"], "CUDA is not available"),
        "offload on cpu": (
            ["--prompt", "a", "--device", "cpu", "--offload", "model"],
            "needs an accelerator",
        ),
        "bad budget": (["--prompt", "a", "--memory-budget", "0"], "memory_budget must be > 0"),
        "negative decoder fit": (
            ["--prompt", "a", "--decoder-fit-steps", "-1"],
            r"decoder_fit_steps must be in \[0, 1000\], got -1",
        ),
        "bad attention backend": (
            ["--prompt", "a", "--attention-backend", "warp"],
            "attention backend 'warp'",
        ),
    }


def test_each_bad_input_exits_2_before_loading(tmp_path, monkeypatch, capsys):
    import torch

    def no_load(request):
        raise AssertionError("a model was loaded for bad input")

    monkeypatch.setattr(generation, "load_pipeline", no_load)
    monkeypatch.chdir(tmp_path)
    for name, (args, message) in _bad_cases(tmp_path).items():
        if name == "cuda missing" and torch.cuda.is_available():
            continue
        before = set(tmp_path.rglob("*"))
        assert cli.main(["generate", *args]) == 2, name
        err = capsys.readouterr().err
        assert __import__("re").search(message, err), (name, err)
        assert set(tmp_path.rglob("*")) == before, name  # nothing written


@pytest.mark.parametrize(
    "args", [["--prompt", "a", "--guidance", "pag"], ["--prompt", "a", "--offload", "disk"]]
)
def test_unknown_option_values_exit_2(args, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["generate", *args])
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err


def test_no_prompt_exits_2_naming_the_three_ways_to_give_one(capsys):
    assert cli.main(["generate", "--steps", "3"]) == 2
    assert "generate needs --prompt, --prompt-file or --replay" in capsys.readouterr().err
