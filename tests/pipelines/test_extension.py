"""Video extension (motif_video.extension): the window plan, the cross-fade, bounded memory, and `motif-video extend`
on the tiny model to 3 windows."""

from __future__ import annotations

import re
import tracemalloc

import numpy as np
import pytest

from motif_video import cli, generation
from motif_video.condition_layout import default_overlap
from motif_video.defaults import GenerationDefaults
from motif_video.extension import (
    blend,
    blend_weights,
    extend_frames,
    extend_video,
    extension_size,
    plan_extension,
    settings_from_record,
    window_guidance,
    window_prompts,
)
from motif_video.hub import DEFAULT_MODEL_ID
from motif_video.pipelines.export import read_mp4_frames, read_mp4_info, read_mp4_metadata, write_mp4


def test_plan_counts_windows_and_refuses_bad_overlaps():
    plan = plan_extension(input_frames=9, total_frames=21, window=9, overlap=5)
    assert (plan.step, plan.windows, [plan.new_frames(i) for i in range(3)]) == (4, 3, [4, 4, 4])
    short = plan_extension(9, 22, 9, 5)  # one more frame: a 4th window adds just 1
    assert short.windows == 4 and short.new_frames(3) == 1
    # each window's cross-fade starts `overlap` frames before its new ones
    assert plan.window_starts == [4, 8, 12]
    for args, message in [
        ((9, 21, 9, 4), "overlap must be 4m\\+1"),
        ((9, 21, 9, 9), "less than the window"),
        ((9, 21, 10, 5), "window must be 4k\\+1"),
        ((3, 21, 9, 5), "the clip has 3 frames; the overlap needs at least 5"),
        ((9, 9, 9, 5), "must be longer than the clip"),
    ]:
        with pytest.raises(ValueError, match=message):
            plan_extension(*args)


def test_the_default_overlap_follows_the_window():
    """Without an overlap asked for, a window conditions on 9 frames (3 latent frames) where it can, else on the
    largest 4m+1 that leaves it new frames (before: 9 always, and a 9-frame model could not be extended at all)."""
    assert [default_overlap(w) for w in (33, 17, 13, 9, 5)] == [9, 9, 9, 5, 1]
    assert [default_overlap(9, crossfade) for crossfade in (1, 3, 4, 7)] == [5, 5, 1, 1]
    assert default_overlap(33, 8) == 9 and default_overlap(13, 8) == 1
    assert plan_extension(9, 21, 9).overlap == 5 and plan_extension(33, 65, 33).overlap == 9
    assert plan_extension(9, 21, 9, crossfade=4).overlap == 1
    with pytest.raises(ValueError, match=r"crossfade \(8\) leaves no room for an overlap in a window of 9"):
        plan_extension(9, 21, 9, crossfade=8)
    with pytest.raises(ValueError, match=r"window \(1 frames\) leaves no room for an overlap"):
        default_overlap(1)
    # an overlap asked for is checked as before
    with pytest.raises(ValueError, match=r"less than the window \(9\), got 9"):
        plan_extension(9, 21, 9, overlap=9)


def test_plan_with_a_crossfade_shares_more_frames_per_window():
    plan = plan_extension(input_frames=9, total_frames=29, window=17, overlap=5, crossfade=4)
    assert (plan.shared, plan.step, plan.windows) == (9, 8, 3)
    assert plan.window_starts == [
        0,
        8,
        16,
    ]  # each window starts `overlap + crossfade` frames before its new ones
    assert [plan.new_frames(i) for i in range(3)] == [8, 8, 4]
    for args, message in [
        ((9, 29, 17, 5, -1), "crossfade must be a whole number of frames >= 0, got -1"),
        ((9, 29, 17, 5, 2.5), "crossfade must be a whole number"),
        ((9, 29, 9, 5, 4), "overlap \\+ crossfade \\(5 \\+ 4\\) must be less than the window \\(9 frames\\)"),
        ((8, 29, 17, 5, 4), "the clip has 8 frames; the overlap and cross-fade need at least 9"),
    ]:
        with pytest.raises(ValueError, match=message):
            plan_extension(*args)


def test_blend_fades_from_the_previous_frames_into_the_window():
    prev, new = np.zeros((5, 2, 2, 3), np.uint8), np.full((5, 2, 2, 3), 240, np.uint8)
    assert blend(prev, new)[:, 0, 0, 0].tolist() == [40, 80, 120, 160, 200]  # 240 * (j + 1) / 6
    # with a cross-fade the conditioned frames stay the video's and the fade runs over the generated ones
    assert blend_weights(3, 2).tolist() == pytest.approx([0, 0, 0, 1 / 3, 2 / 3])
    assert blend(prev, new, crossfade=2)[:, 0, 0, 0].tolist() == [0, 0, 0, 80, 160]


def _fake_window(h, w):
    def make(i, context):
        assert context.shape == (5, h, w, 3)
        frames = np.full((9, h, w, 3), 10 * (i % 20 + 1), np.uint8)
        frames[:5] = context  # a model that reproduces its condition exactly
        return frames

    return make


def test_extension_joins_windows_and_holds_memory_constant():
    h, w = 64, 96
    clip = np.random.default_rng(0).integers(0, 256, (9, h, w, 3), dtype=np.uint8)
    out = []
    plan = plan_extension(9, 21, 9, 5)
    assert extend_frames(iter(clip), plan, _fake_window(h, w), out.append) == 21
    video = np.concatenate(out)
    assert video.shape == (21, h, w, 3)
    np.testing.assert_array_equal(video[:9], clip)  # the clip first, unchanged where the model reproduced it
    assert video[9:13, 0, 0, 0].tolist() == [10] * 4 and video[17:, 0, 0, 0].tolist() == [30] * 4
    assert max(len(x) for x in out) <= plan.window  # streamed: never more than a window per write

    def peak(windows):  # python-side peak (numpy buffers are traced) for a given length, frames discarded
        big = np.zeros((9, 256, 256, 3), np.uint8)
        p = plan_extension(9, 9 + 4 * windows, 9, 5)
        tracemalloc.start()
        extend_frames(iter(big), p, _fake_window(256, 256), lambda frames: None)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    short, long = peak(3), peak(30)
    assert long < 1.2 * short, (short, long)  # 10x the length, the same memory


def test_extension_with_a_crossfade_conditions_before_the_end_and_fades_over_it():
    h, w = 8, 8
    clip = np.random.default_rng(1).integers(0, 200, (9, h, w, 3), dtype=np.uint8)
    plan = plan_extension(9, 29, 17, overlap=5, crossfade=4)
    conditions = []

    def make(i, condition):
        conditions.append(condition.copy())
        frames = np.full((17, h, w, 3), 250, np.uint8)  # every generated frame the same bright one
        frames[:5] = 0  # and a reconstruction of the condition that must not reach the video
        return frames

    out = []
    assert extend_frames(iter(clip), plan, make, out.append) == 29
    video = np.concatenate(out)
    np.testing.assert_array_equal(conditions[0], clip[:5])  # the 5 frames before the clip's last 4
    np.testing.assert_array_equal(video[:5], clip[:5])  # conditioned frames kept as they were
    expected = np.clip(clip[5:9].astype(np.float32) * (1 - blend_weights(0, 4)[:, None, None, None])
                       + 250 * blend_weights(0, 4)[:, None, None, None] + 0.5, 0, 255).astype(np.uint8)  # fmt: skip
    np.testing.assert_array_equal(
        video[5:9], expected
    )  # the clip's last 4 fade into the window's generated ones
    assert (video[9:] == 250).all()  # then the new frames, and later windows join on equal frames
    np.testing.assert_array_equal(
        conditions[1], video[8:13]
    )  # window 1 conditioned on frames 8-12 of the video


def test_window_guidance_asked_then_the_folders_extension_default_then_its_image_to_video_one():
    class Pipe:
        generation_defaults = GenerationDefaults(condition_guidance=2.0, extend_condition_guidance=10.0)

    assert window_guidance(Pipe, 0.0) == 0.0 and window_guidance(Pipe, 4.0) == 4.0  # asked for: as asked
    assert window_guidance(Pipe, None) == 10.0  # the folder's default for extension windows
    Pipe.generation_defaults = GenerationDefaults(condition_guidance=2.0)
    assert window_guidance(Pipe, None) == 2.0  # else its image-to-video default
    Pipe.generation_defaults = GenerationDefaults()
    assert window_guidance(Pipe, None) == 0.0  # else the released model's: off


@pytest.fixture
def clip(tmp_path):
    path = tmp_path / "clip.mp4"
    frames = np.zeros((9, 64, 96, 3), np.uint8)
    frames[..., 0] = np.linspace(0, 255, 96, dtype=np.uint8)
    write_mp4(frames, path, fps=24)
    return path


def test_extend_command_makes_three_windows(tiny_folder, clip, tmp_path, capsys):
    out = tmp_path / "long.mp4"
    prompts = tmp_path / "story.txt"
    prompts.write_text("a red ball\na blue ball\na green ball\na yellow ball\n")  # one line more than windows
    argv = ["extend", str(clip), "--prompt-file", str(prompts), "--seconds", "0.875", "--overlap", "5",
            "--model", str(tiny_folder), "--num-frames", "9", "--steps", "2", "--device", "cpu", "--seed", "3",
            "--output", str(out), "--condition-guidance", "2"]  # fmt: skip
    assert cli.main(argv) == 0
    printed, bars = capsys.readouterr()
    assert "3 window(s) of 9 frames, overlap 5" in printed and f"wrote {out} (21 frames)" in printed
    assert (
        "warning: 4 prompts for 3 window(s): prompts 4 to 4 are not used" in printed
    )  # before: dropped quietly
    # one bar over every window's steps; each window's own bar under it cleared when the window is done
    assert re.fullmatch(r"3 windows: 100%\|[^|]+\| 6/6 .*", bars.rstrip("\n").split("\r")[-1])
    assert read_mp4_info(out) == {"frames": 21, "width": 96, "height": 64, "fps": 24.0}
    meta = read_mp4_metadata(out)
    assert meta["prompts"] == ["a red ball", "a blue ball", "a green ball"] and meta["overlap"] == 5
    assert meta["condition_guidance"] == 2.0  # each window ran with the reconstruction guidance asked for
    frames = read_mp4_frames(out).astype(float)
    assert np.abs(frames[:4] - read_mp4_frames(clip)[:4]).mean() < 3  # the clip's frames come first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "long.mp4", "story.txt"]  # no part file


def test_extend_command_shows_each_windows_decoder_fit(tiny_folder, clip, tmp_path, capsys, monkeypatch):
    """On a terminal, the decoder fit of each window's given frames (the small model's default: 50 steps per latent
    frame) runs after its sampling steps; before, the bar over the windows stood still through it. Where stderr is
    not a terminal, the windows' own bars are not drawn (`test_small_model`: a log of the extension)."""
    import shutil
    import sys

    folder = tmp_path / "model"
    shutil.copytree(tiny_folder, folder)
    GenerationDefaults(decoder_fit_steps=2).write(folder)
    argv = ["extend", str(clip), "--prompt", "a red ball", "--seconds", "0.875", "--overlap", "5", "--model",
            str(folder), "--num-frames", "9", "--steps", "2", "--device", "cpu", "--output", str(tmp_path / "o.mp4")]  # fmt: skip
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # captured, as a terminal shows it
    assert cli.main(argv) == 0
    bars = capsys.readouterr().err
    assert bars.count("decoder fit:   0%|") == 3  # a bar in each window: 2 steps on each of 2 latent frames
    assert "| 0/4 " in bars
    # the bar over the windows counts each window's 2 sampling steps and 4 fit steps
    assert re.fullmatch(r"3 windows: 100%\|[^|]+\| 18/18 .*", bars.rstrip("\n").split("\r")[-1])


def test_extend_video_python_call_at_its_own_fps(tiny_folder, clip, tmp_path):
    """The documented Python call: `fps` overrides the clip's (the total is seconds x fps), and a length that is not
    positive is refused before any window runs or any file is made."""
    from motif_video import MotifVideoImageToVideoPipeline

    pipe = MotifVideoImageToVideoPipeline.from_pretrained(tiny_folder)
    pipe.set_progress_bar_config(disable=True)
    call = dict(overlap=5, num_frames=9, num_inference_steps=2, condition_guidance=2.0)
    with pytest.raises(ValueError, match=r"seconds must be in \(0, 3600\], got 0"):
        extend_video(pipe, clip, tmp_path / "none.mp4", ["a red ball"], seconds=0, **call)
    assert not (tmp_path / "none.mp4").exists()
    # what the command refuses, the call refuses too (before: the clip replaced; a hidden part file named)
    with pytest.raises(ValueError, match="is the input"):
        extend_video(pipe, clip, clip, ["a red ball"], seconds=1.75, **call)
    with pytest.raises(ValueError, match="output must be an .mp4 file, got the folder"):
        extend_video(pipe, clip, tmp_path, ["a red ball"], seconds=1.75, **call)
    with pytest.raises(ValueError, match=r"output folder '.*nodir' does not exist"):
        extend_video(pipe, clip, tmp_path / "nodir" / "x.mp4", ["a red ball"], seconds=1.75, **call)
    fast = write_mp4(read_mp4_frames(clip), tmp_path / "fast.mp4", fps=1000)  # named as the command names it
    with pytest.raises(ValueError, match=r"clip '.*fast\.mp4' is at 1000 fps, .* must be in \(0, 240\]"):
        extend_video(pipe, fast, tmp_path / "fast-long.mp4", ["a red ball"], seconds=1.75, **call)
    from motif_video import MotifVideoPipeline

    t2v = MotifVideoPipeline.from_pipe(pipe)  # before: a TypeError about `conditions` at the first window
    with pytest.raises(ValueError, match=r"needs an image-to-video pipeline .* got MotifVideoPipeline: pass "
                       r"MotifVideoImageToVideoPipeline\.from_pipe\(pipe\)"):  # fmt: skip
        extend_video(t2v, clip, tmp_path / "t2v.mp4", ["a red ball"], seconds=1.75, **call)
    assert not (tmp_path / "t2v.mp4").exists()
    out = tmp_path / "long.mp4"
    done = extend_video(pipe, clip, out, ["a red ball", "a blue ball"], seconds=1.75, fps=12, **call)
    assert done["plan"].windows == 3 and done["frames"] == 21  # 1.75 s at 12 fps, not at the clip's 24
    assert read_mp4_info(out) == {"frames": 21, "width": 96, "height": 64, "fps": 12.0}
    # one prompt as a string is every window's prompt (before: one character per window)
    assert window_prompts("a red ball", 3) == ["a red ball"] * 3


def test_extend_command_takes_the_folders_extension_guidance(tiny_folder, clip, tmp_path, capsys):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(tiny_folder, folder)
    GenerationDefaults(extend_condition_guidance=3.0).write(folder)
    out = tmp_path / "long.mp4"
    argv = ["extend", str(clip), "--prompt", "a red ball", "--seconds", "0.5", "--overlap", "5", "--model",
            str(folder), "--num-frames", "9", "--steps", "1", "--device", "cpu", "--output", str(out)]  # fmt: skip
    assert cli.main(argv) == 0
    assert "reconstruction guidance 3 (the model's default for extension)" in capsys.readouterr().out
    assert read_mp4_metadata(out)["condition_guidance"] == 3.0
    assert cli.main([*argv, "--condition-guidance", "0"]) == 0  # asked for: wins over the folder's
    assert "reconstruction guidance" not in capsys.readouterr().out
    assert read_mp4_metadata(out)["condition_guidance"] == 0.0


def test_extend_command_warns_at_a_size_the_model_was_not_trained_at(tiny_folder, clip, tmp_path, capsys):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(tiny_folder, folder)
    GenerationDefaults(height=32, width=32, trained_sizes=[[32, 32]]).write(folder)
    argv = ["extend", str(clip), "--prompt", "a red ball", "--seconds", "0.5", "--overlap", "5", "--model",
            str(folder), "--num-frames", "9", "--steps", "1", "--device", "cpu", "--output", str(tmp_path / "o.mp4")]  # fmt: skip
    assert cli.main([*argv, "--width", "96", "--height", "64"]) == 0
    assert "trained at 32x32 only; at 96x64 expect noise" in capsys.readouterr().out  # the clip's own size
    # given no size, a model that knows one size takes it, the clip stretched to it (before: the clip's own size,
    # and the warning above telling the user to leave out the size they had left out)
    assert cli.main(argv) == 0
    assert "warning" not in capsys.readouterr().out
    info = read_mp4_info(tmp_path / "o.mp4")
    assert (info["width"], info["height"]) == (32, 32)


def test_an_extension_above_240_fps_is_refused_unless_another_rate_is_given():
    """The rate an extension is written at (its clip's unless given) bounds its length in frames: 1000 fps would make
    60 s 60000 frames; a clip at 300 fps extended at 24 fps is planned at 24 (before: refused for its own rate)."""
    from motif_video.extension import clip_extension

    fast = {"frames": 40, "fps": 300.0}
    with pytest.raises(ValueError, match=r"the clip is at 300 fps, .* must be in \(0, 240\]"):
        clip_extension(fast, 1.0, 33, 9, 0)
    assert clip_extension(fast, 3.0, 33, 9, 0, fps=24).total_frames == 72


def test_a_clip_not_in_multiples_of_16_keeps_its_shape_at_the_models_size(tmp_path):
    """Without --width / --height, a clip the model cannot take as it is (a phone's 1080x1920) is resized in
    shape to the model's pixel count, as video-to-video does (before: refused, asking for a size); a model that
    knows one size keeps it."""
    from motif_video.defaults import RELEASED, GenerationDefaults
    from motif_video.input_media import same_shape

    info = {"width": 1080, "height": 1920}
    assert (
        extension_size("c.mp4", info, None, None, RELEASED)
        == same_shape(1080, 1920, 736 * 1280)
        == (720, 1296)
    )
    assert extension_size("c.mp4", {"width": 96, "height": 64}, None, None, RELEASED) == (96, 64)  # its own
    small = GenerationDefaults(height=64, width=64, trained_sizes=[[64, 64]])
    assert extension_size("c.mp4", info, None, None, small) == (64, 64)
    assert extension_size("c.mp4", info, 640, None, RELEASED) == (
        640,
        1920,
    )  # one side asked for: the clip's other
    with pytest.raises(ValueError, match="width and height must be positive multiples of 16, got 100x32"):
        extension_size("c.mp4", info, 100, 32, RELEASED)


def test_extend_on_a_9_frame_model_takes_the_windows_default_overlap(tiny_folder, clip, tmp_path, capsys):
    """A model whose window is 9 frames (the tiny training recipe's) is extended without --overlap: 5, recorded,
    and `--replay` makes the same video (before: "overlap must be ... less than the window (9), got 9")."""
    out = tmp_path / "long.mp4"
    argv = ["extend", str(clip), "--prompt", "a red ball", "--seconds", "0.75", "--model", str(tiny_folder),
            "--num-frames", "9", "--steps", "1", "--device", "cpu", "--seed", "1", "--output", str(out)]  # fmt: skip
    assert cli.main(argv) == 0
    assert "3 window(s) of 9 frames, overlap 5 (the default for a 9-frame window)" in capsys.readouterr().out
    assert read_mp4_metadata(out)["overlap"] == 5 and read_mp4_info(out)["frames"] == 18
    again = tmp_path / "again.mp4"
    assert cli.main(["extend", "--replay", str(out), "--output", str(again)]) == 0
    assert again.read_bytes() == out.read_bytes()


def test_extend_command_with_a_crossfade(tiny_folder, clip, tmp_path, capsys):
    out = tmp_path / "long.mp4"
    argv = ["extend", str(clip), "--prompt", "a red ball", "--seconds", "0.75", "--overlap", "5", "--crossfade", "4",
            "--model", str(tiny_folder), "--num-frames", "13", "--steps", "1", "--device", "cpu",
            "--output", str(out)]  # fmt: skip
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert (
        "3 window(s) of 13 frames, overlap 5, cross-fade 4" in printed
        and f"wrote {out} (18 frames)" in printed
    )
    assert read_mp4_info(out)["frames"] == 18
    assert read_mp4_metadata(out)["crossfade"] == 4


def test_extend_command_stretches_the_clip_to_the_size_asked_for(tiny_folder, clip, tmp_path, capsys):
    odd = tmp_path / "odd.mp4"  # 72x40: not multiples of 16
    frames = np.zeros((9, 40, 72, 3), np.uint8)
    frames[..., 0] = np.linspace(0, 255, 72, dtype=np.uint8)  # red rises left to right
    write_mp4(frames, odd, fps=24)
    out = tmp_path / "long.mp4"
    argv = ["extend", str(odd), "--prompt", "a red ball", "--seconds", "0.5", "--overlap", "5", "--model",
            str(tiny_folder), "--num-frames", "9", "--steps", "1", "--device", "cpu", "--output", str(out)]  # fmt: skip
    assert cli.main([*argv, "--width", "64", "--height", "32"]) == 0
    assert "72x40 at 24 fps, resized to 64x32" in capsys.readouterr().out
    assert read_mp4_info(out) == {"frames": 12, "width": 64, "height": 32, "fps": 24.0}
    red = read_mp4_frames(out)[:4, 16, :, 0].astype(float)  # the clip's frames, stretched: still a ramp
    assert red[:, -4:].mean() - red[:, :4].mean() > 150
    assert cli.main([*argv, "--width", "100", "--height", "32"]) == 2
    assert "width and height must be positive multiples of 16, got 100x32" in capsys.readouterr().err


def test_extend_command_goes_on_with_the_prompt_and_model_the_clip_records(tiny_folder, tmp_path, capsys):
    """A clip that `generate` or `extend` made carries its prompt and model: `extend` without --prompt and --model
    uses them (an extended video's last window's prompt), and flags given win."""
    made = tmp_path / "made.mp4"
    run = ["--num-frames", "9", "--steps", "1", "--device", "cpu", "--seed", "1"]
    generate = ["generate", "--model", str(tiny_folder), "--prompt", "a red ball", "--height", "64", "--width", "96",
                "--output", str(made), *run]  # fmt: skip
    assert cli.main(generate) == 0
    capsys.readouterr()
    longer = tmp_path / "longer.mp4"
    assert (
        cli.main(["extend", str(made), "--seconds", "0.5", "--overlap", "5", "--output", str(longer), *run])
        == 0
    )
    assert f"prompt 'a red ball' and model {tiny_folder}, as {made} records" in capsys.readouterr().out
    meta = read_mp4_metadata(longer)
    assert meta["prompts"] == ["a red ball"] and meta["model"] == str(tiny_folder)  # 12 frames: one window
    story = tmp_path / "story.txt"
    story.write_text("a red ball\na blue ball\n")
    argv = ["extend", str(longer), "--seconds", "0.75", "--overlap", "5", "--prompt-file", str(story), *run]
    assert cli.main([*argv, "--output", str(tmp_path / "story.mp4")]) == 0
    printed = capsys.readouterr().out  # the prompts given, the model recorded
    assert f"model {tiny_folder}, as {longer} records" in printed and "prompt '" not in printed
    assert read_mp4_metadata(tmp_path / "story.mp4")["prompts"][-1] == "a blue ball"
    argv = ["extend", str(tmp_path / "story.mp4"), "--seconds", "1", "--overlap", "5", *run]
    assert (
        cli.main([*argv, "--output", str(tmp_path / "on.mp4")]) == 0
    )  # goes on with the last window's prompt
    assert "prompt 'a blue ball'" in capsys.readouterr().out
    assert set(read_mp4_metadata(tmp_path / "on.mp4")["prompts"]) == {"a blue ball"}
    given = {"prompts": ["a green ball"], "model": "small"}
    assert settings_from_record(given, made) == (given, [])  # what is given wins


def test_extend_without_a_prompt_needs_a_clip_that_records_one(clip, tmp_path, monkeypatch, capsys):
    def no_load(plan, show_progress=True):
        raise AssertionError("a model was loaded for bad input")

    monkeypatch.setattr(generation, "prepare_pipeline", no_load)
    argv = ["extend", str(clip), "--seconds", "1", "--overlap", "5", "--num-frames", "9", "--device", "cpu"]
    assert cli.main(argv) == 2
    assert f"give --prompt or --prompt-file: {str(clip)!r} records no prompt" in capsys.readouterr().err
    assert settings_from_record({"prompts": ["a ball"], "model": None}, clip)[0]["model"] == DEFAULT_MODEL_ID


def test_extend_bad_input_exits_2_before_loading(clip, tmp_path, monkeypatch, capsys):
    def no_load(plan, show_progress=True):
        raise AssertionError("a model was loaded for bad input")

    monkeypatch.setattr(generation, "prepare_pipeline", no_load)
    text = tmp_path / "text.mp4"
    text.write_text("hello")
    fast = write_mp4(read_mp4_frames(clip), tmp_path / "fast.mp4", fps=1000)
    cases = {
        "clip above 240 fps": (  # as generate --video refuses it (`input_media.clip_rate`)
            [str(fast), "--seconds", "2"],
            r"clip '.*fast\.mp4' is at 1000 fps, .* must be in \(0, 240\]: re-encode it at a lower rate$",
        ),
        "missing clip": ([str(tmp_path / "none.mp4"), "--seconds", "2"], "does not exist"),
        "unreadable clip": ([str(text), "--seconds", "2"], "not a readable video"),
        "too short": (  # was said in frames
            [str(clip), "--seconds", "0.2"],
            r"seconds \(0.2\) must be longer than the clip: it is 0.375 s \(9 frames at 24 fps\)",
        ),
        "bad overlap": ([str(clip), "--seconds", "2", "--overlap", "4"], "overlap must be 4m\\+1"),
        "overlap not below the window": (
            [str(clip), "--seconds", "2", "--overlap", "9"],
            "less than the window",
        ),
        "bad window": ([str(clip), "--seconds", "2", "--num-frames", "8"], "num_frames must be 4k\\+1"),
        "zero seconds": ([str(clip), "--seconds", "0"], r"seconds must be in \(0, 3600\], got 0"),
        "endless": (
            [str(clip), "--seconds", "inf"],
            r"seconds must be in \(0, 3600\], got inf",
        ),  # was a traceback
        "output is the clip": ([str(clip), "--seconds", "2", "--output", str(clip)], "is the input"),
        "output is a folder": (  # before: every window sampled, then an IsADirectoryError
            [str(clip), "--seconds", "2", "--output", str(tmp_path)],
            "output must be an .mp4 file, got the folder",
        ),
        "negative crossfade": (
            [str(clip), "--seconds", "2", "--crossfade", "-4"],
            "crossfade must be a whole",
        ),
        "crossfade filling the window": (
            [str(clip), "--seconds", "2", "--crossfade", "4"],
            "overlap \\+ crossfade \\(5 \\+ 4\\) must be less than the window",
        ),
        "negative guidance": (
            [str(clip), "--seconds", "2", "--condition-guidance", "-1"],
            "condition_guidance must be >= 0",
        ),
    }
    for name, (args, message) in cases.items():
        before = set(tmp_path.rglob("*"))
        argv = ["extend", *args, "--prompt", "a ball", "--num-frames", "9", "--device", "cpu"]
        if "--num-frames" in args:
            argv = ["extend", *args, "--prompt", "a ball", "--device", "cpu"]
        if "--overlap" not in args:
            argv += ["--overlap", "5"]
        assert cli.main(argv) == 2, name
        assert re.search(message, capsys.readouterr().err), name
        assert set(tmp_path.rglob("*")) == before, name


def test_a_terminated_extension_leaves_no_file(tiny_folder, clip, tmp_path):
    """SIGTERM (`kill`, `timeout`, a scheduler) ends `extend` as Ctrl-C does: its part file is removed and it exits
    130 (before: the process died where it stood and left `.NAME.part` in the output folder)."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    out = tmp_path / "out"
    out.mkdir()
    argv = [sys.executable, "-m", "motif_video.cli", "extend", str(clip), "--prompt", "a red ball", "--seconds", "30",
            "--overlap", "5", "--model", str(tiny_folder), "--num-frames", "9", "--steps", "20", "--device", "cpu",
            "--threads", "1", "--output", str(out / "long.mp4")]  # fmt: skip
    src = str(Path(__file__).parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not any(out.iterdir()) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None and any(out.iterdir()), "the extension never started writing"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "motif-video extend: interrupted" in err, err
    assert list(out.iterdir()) == []
