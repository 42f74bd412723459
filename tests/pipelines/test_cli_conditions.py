"""`generate --last-image / --keyframe / --video --strength`: end to end on the tiny folder, and the bad inputs (exit 2
before any model is loaded, nothing written)."""

from __future__ import annotations

import re

import numpy as np
import PIL.Image
import pytest

from motif_video import cli, generation
from motif_video.pipelines.export import read_mp4_frames, read_mp4_info, write_mp4
from motif_video.testing import TINY_GENERATE_ARGS


@pytest.fixture
def media(tmp_path):
    image = tmp_path / "key.png"
    PIL.Image.fromarray(np.full((48, 80, 3), 200, dtype=np.uint8)).save(image)
    clip = tmp_path / "in.mp4"
    rng = np.random.default_rng(0)
    write_mp4(rng.integers(0, 256, (11, 64, 96, 3), dtype=np.uint8), clip, fps=24)
    text = tmp_path / "text.png"
    text.write_text("hello")
    return image, clip, text


def test_last_image_and_keyframe_reach_the_pipeline(tiny_folder, tmp_path, media, monkeypatch):
    from motif_video import MotifVideoImageToVideoPipeline

    image, _, _ = media
    seen = []
    original = MotifVideoImageToVideoPipeline.__call__

    def spy(self, *args, **kwargs):
        seen.append(
            (kwargs.get("last_image") is not None, [c.frame_index for c in kwargs.get("conditions", [])])
        )
        return original(self, *args, **kwargs)

    monkeypatch.setattr(MotifVideoImageToVideoPipeline, "__call__", spy)
    out = tmp_path / "flf.mp4"
    argv = ["generate", "--prompt", "a red ball", "--model", str(tiny_folder), "--output", str(out),
            "--image", str(image), "--last-image", str(image), "--keyframe", f"{image}@4", *TINY_GENERATE_ARGS]  # fmt: skip
    assert cli.main(argv) == 0
    assert seen == [(True, [4])]
    assert read_mp4_info(out)["frames"] == 9


def test_video_to_video_takes_frames_size_and_frame_rate_from_the_video(tiny_folder, tmp_path, media, capsys):
    _, clip, _ = media
    clip = write_mp4(read_mp4_frames(clip), tmp_path / "filmed-at-30.mp4", fps=30)
    out = tmp_path / "v2v.mp4"
    argv = ["generate", "--prompt", "a red ball", "--model", str(tiny_folder), "--output", str(out),
            "--video", str(clip), "--strength", "0.5", "--steps", "4", "--device", "cpu", "--seed", "1"]  # fmt: skip
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "96x64x9" in printed  # 11 frames cut to 4k + 1, the video's size
    assert "2 of 4 steps (strength 0.5)" in printed  # what runs (before: "4 steps", while 2 ran)
    # played at the pace it was filmed at (before: 24 fps, its motion slowed by a fifth)
    assert read_mp4_info(out) == {"frames": 9, "width": 96, "height": 64, "fps": 30.0}


def _bad_cases(tmp_path, media):
    image, clip, text = media
    fast = write_mp4(read_mp4_frames(clip), tmp_path / "fast.mp4", fps=1000)
    return {
        "keyframe past the clip": (
            ["--keyframe", f"{image}@9"],
            r"frame 9 is outside the video's frames 0\.\.8",
        ),
        "keyframes in one group": (
            ["--keyframe", f"{image}@1", "--keyframe", f"{image}@4"],
            "both condition latent frame 1",
        ),
        "keyframe on the last image": (
            ["--last-image", str(image), "--keyframe", f"{image}@-2"],
            "both condition",
        ),
        "keyframe without a frame": (["--keyframe", str(image)], "keyframe must be PATH@FRAME"),
        "keyframe frame not a number": (["--keyframe", f"{image}@x"], "keyframe must be PATH@FRAME"),
        "unreadable keyframe": (["--keyframe", f"{text}@4"], "not a readable image"),
        "missing last image": (["--last-image", str(tmp_path / "none.png")], "does not exist"),
        "unreadable last image": (["--last-image", str(text)], "not a readable image"),
        "unreadable video": (["--video", str(text)], r"not a readable video \((?!\[Errno)"),
        "image as video": (["--video", str(image)], r"is an image \(png_pipe\), not a video"),
        "missing video": (["--video", str(tmp_path / "none.mp4")], "does not exist"),
        "video shorter than asked": (["--video", str(clip), "--num-frames", "13"], "more than video"),
        "strength without video": (["--strength", "0.5"], r"strength \(--strength\) needs video"),
        "strength above 1": (["--video", str(clip), "--strength", "1.5"], r"strength must be in \(0, 1\]"),
        "strength 0": (["--video", str(clip), "--strength", "0"], r"strength must be in \(0, 1\], got 0"),
        "output is the input video": (["--video", str(clip), "--output", str(clip)], "is the input"),
        "video above 240 fps": (  # before: written at 240 fps, its motion 4x slower
            ["--video", str(fast)],
            r"video '.*fast\.mp4' is at 1000 fps, .* must be in \(0, 240\]: re-encode it",
        ),
    }


def test_each_bad_condition_exits_2_before_loading(tmp_path, media, monkeypatch, capsys):
    def no_load(request):
        raise AssertionError("a model was loaded for bad input")

    monkeypatch.setattr(generation, "load_pipeline", no_load)
    monkeypatch.chdir(tmp_path)
    for name, (args, message) in _bad_cases(tmp_path, media).items():
        before = set(tmp_path.rglob("*"))
        argv = ["generate", "--prompt", "a", "--height", "64", "--width", "96", "--device", "cpu", *args]
        if "--num-frames" not in args:
            argv += ["--num-frames", "9"]
        assert cli.main(argv) == 2, name
        err = capsys.readouterr().err
        assert re.search(message, err), (name, err)
        assert set(tmp_path.rglob("*")) == before, name  # nothing written
