import json
import re

import numpy as np
import pytest

from motif_video.cli import main


def test_info_2b(capsys):
    assert main(["info", "motif-video-2b", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["parameters"]["total"] == 2_037_809_600
    assert summary["tokens"]["video"] == 114_080
    assert summary["latent"] == [16, 31, 92, 160]
    assert summary["tokens"]["decoder joint"] == 228_160


def test_version(capsys):
    from motif_video import __version__

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out == f"motif-video {__version__}\n"


def test_info_rejects_bad_sizes(capsys):
    assert main(["info", "tiny", "--size", "100x64x5"]) == 2
    assert "width must be a positive multiple of 16, got 100" in capsys.readouterr().err
    assert main(["info", "tiny", "--size", "64x64x6"]) == 2
    assert "num_frames must be 4k+1" in capsys.readouterr().err
    assert main(["info", "tiny", "--size", "64by64"]) == 2
    assert "WIDTHxHEIGHTxFRAMES" in capsys.readouterr().err


def _modules_after(code: str) -> set[str]:
    """The modules a fresh interpreter has imported after running `code` (no timing: which modules, not how fast)."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys; print('\\n'.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return set(out.split())


HEAVY = {"diffusers", "peft", "transformers", "torch._dynamo", "accelerate"}


def test_import_motif_video_loads_no_heavy_library():
    loaded = _modules_after("import motif_video")
    assert "motif_video" in loaded
    assert not HEAVY & loaded, f"import motif_video pulled in {sorted(HEAVY & loaded)}"


def test_cli_parsers_load_no_torch():
    # `motif-video --help` and every subcommand's --help build only these parsers
    loaded = _modules_after("from motif_video import cli; cli.build_parser()")
    assert not (HEAVY | {"torch", "numpy"}) & loaded, sorted((HEAVY | {"torch", "numpy"}) & loaded)


def test_light_pipeline_modules_load_no_pipeline():
    # the README's frame-strip command imports `pipelines.export`; the package must not pull in the pipelines
    loaded = _modules_after("from motif_video.pipelines.export import write_frame_strip")
    assert not HEAVY & loaded, sorted(HEAVY & loaded)


def test_bad_extend_and_generate_input_is_refused_before_the_model_libraries_load(tmp_path):
    """Bad input exits within a second or two: diffusers and peft load only once everything is checked (an `extend`
    with a bad --seconds took 12 s, importing the pipelines before looking at it)."""
    from motif_video.pipelines.export import write_mp4

    clip = write_mp4(np.zeros((9, 32, 32, 3), np.uint8), tmp_path / "clip.mp4", fps=24)
    for argv in (["extend", str(clip), "--prompt", "a", "--seconds", "0", "--model", "small"],
                 ["extend", str(clip), "--prompt", "a", "--seconds", "2", "--overlap", "4", "--model", "small"],
                 ["generate", "--prompt", "a", "--num-frames", "8", "--model", "small"]):  # fmt: skip
        loaded = _modules_after(f"from motif_video import cli\nassert cli.main({argv!r}) == 2")
        assert not HEAVY & loaded, (argv, sorted(HEAVY & loaded))


def test_given_flags_are_the_options_on_the_command_line():
    """What `--replay` puts over a video's record: the options typed, whatever their values, and nothing else (a
    positional left out, or a command's own defaults, are not flags given)."""
    from motif_video.cli import build_parser, given_flags

    parser = build_parser()
    argv = ["extend", "--replay", "x.mp4", "--overlap", "9"]
    assert given_flags(parser, "extend", argv) == {"replay", "overlap"}
    assert given_flags(parser, "generate", ["generate", "--replay", "x.mp4", "--model", "small"]) == {
        "replay",
        "model",
    }
    assert parser.parse_args(["extend", "c.mp4", "--seconds", "2"]).crossfade == 0  # the defaults are back


def test_lazy_exports_resolve_to_the_defining_modules():
    import motif_video
    from motif_video import pipelines, presets

    assert motif_video.MotifVideoPipeline is pipelines.MotifVideoPipeline
    assert motif_video.build_transformer is presets.build_transformer
    assert set(motif_video.__all__) == set(motif_video._EXPORTS) <= set(dir(motif_video))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        motif_video.nope  # noqa: B018
    assert pipelines.VideoCondition.__module__ == "motif_video.pipelines.conditions"
    assert set(pipelines.__all__) == set(pipelines._EXPORTS) <= set(dir(pipelines))
    with pytest.raises(AttributeError, match="'motif_video.pipelines' has no attribute 'nope'"):
        pipelines.nope  # noqa: B018


def test_generate_bad_model_or_output_exits_2_before_printing_a_plan(tmp_path, capsys):
    args = ["generate", "--prompt", "a red ball", "--device", "cpu"]
    assert main([*args, "--model", "does-not-exist", "--output", str(tmp_path / "a.mp4")]) == 2
    captured = capsys.readouterr()
    assert "'does-not-exist' is neither an existing folder, a shipped model" in captured.err
    assert captured.out == ""  # no size or step count printed for a model that is not there
    (tmp_path / "notes.txt").write_text("x")
    assert main([*args, "--model", "small", "--output", str(tmp_path / "notes.txt" / "sub" / "a.mp4")]) == 2
    assert "which is a file, not a folder" in capsys.readouterr().err


def test_the_command_drops_the_libraries_known_notices_and_nothing_else():
    import logging

    from diffusers import ClassifierFreeGuidance

    from motif_video.cli import KNOWN_NOTICES

    assert main(["info", "tiny"]) == 0  # any command installs the filters
    seen: list[str] = []
    collect = logging.Handler()
    collect.emit = lambda record: seen.append(record.getMessage())
    loggers = [logging.getLogger(name) for name in KNOWN_NOTICES]
    levels = [logger.level for logger in loggers]
    for logger in loggers:  # a record reaches the logger's own handlers only past its filters
        logger.addHandler(collect)
        logger.setLevel(logging.WARNING)
    try:
        ClassifierFreeGuidance()  # diffusers' guider notice, logged by the guider on every construction
        fallback = logging.getLogger("transformers.utils.import_utils")
        fallback.warning(
            "`SiglipImageProcessor` requires torchvision (not installed); falling back to `...Pil`"
        )
        fallback.warning("another transformers warning")
        logging.getLogger("diffusers.guiders.guider_utils").warning("another diffusers warning")
    finally:
        for logger, level in zip(loggers, levels):
            logger.removeHandler(collect)
            logger.setLevel(level)
    assert seen == ["another transformers warning", "another diffusers warning"]
    main(["info", "tiny"])  # a second command adds no second filter
    for name, text in KNOWN_NOTICES.items():
        ours = [f for f in logging.getLogger(name).filters if text in getattr(f, "text", "")]
        assert len(ours) == 1, (name, logging.getLogger(name).filters)


def test_a_folders_token_budget_falls_back_to_the_released_models(tmp_path):
    from motif_video.info import folder_token_budget

    assert folder_token_budget(tmp_path) == (512, 4096)  # a folder that says nothing
    (tmp_path / "tokenizer").mkdir()
    (tmp_path / "tokenizer" / "tokenizer_config.json").write_text('{"model_max_length": 1e30}')
    (tmp_path / "feature_extractor").mkdir()
    (tmp_path / "feature_extractor" / "preprocessor_config.json").write_text(
        '{"size": {"height": 224, "width": 224}}'
    )
    assert folder_token_budget(tmp_path) == (512, 4096)  # no patch size: the released image tokens
    (tmp_path / "text_encoder").mkdir()
    (tmp_path / "text_encoder" / "config.json").write_text('{"vision_config": {"patch_size": 14}}')
    assert folder_token_budget(tmp_path) == (512, 256)


def test_an_unknown_flag_is_named_by_the_command_that_got_it(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["generate", "--prompt", "a", "--foo"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert (
        "usage: motif-video generate" in err
        and "motif-video generate: error: unrecognized arguments: --foo" in err
    )
    # a mistyped --prompt is named (before: only "one of the arguments --prompt --prompt-file --replay is required")
    with pytest.raises(SystemExit) as exc:
        main(["generate", "--promt", "a red circle"])
    assert exc.value.code == 2
    assert "unrecognized arguments: --promt a red circle" in capsys.readouterr().err
    assert main(["generate", "--model", "small"]) == 2
    assert "generate needs --prompt, --prompt-file or --replay" in capsys.readouterr().err


def test_info_on_the_shipped_student_counts_one_pass_per_step(capsys):
    """`info small-4step`: the student's own transformer (its guidance embedder counted), its 4 steps of one pass
    each, and its base model's token budget and words."""
    assert main(["info", "small", "--json"]) == 0
    teacher = json.loads(capsys.readouterr().out)
    assert main(["info", "small-4step", "--json"]) == 0
    student = json.loads(capsys.readouterr().out)
    assert student["parameters"]["total"] > teacher["parameters"]["total"]  # + the guidance embedder
    for summary in (teacher, student):  # every parameter in one row: the rows add up to the total
        *rows, total = summary["parameters"].values()
        assert sum(rows) == total
    t2v, base = student["flops"]["t2v"], teacher["flops"]["t2v"]
    assert t2v["passes_per_step"] == 1 and base["passes_per_step"] == 2
    assert t2v["per_video"] == 4 * t2v["per_forward"] and base["per_video"] == 2 * 20 * base["per_forward"]
    assert student["vocabulary"] == teacher["vocabulary"] and student["tokens"] == teacher["tokens"]


def test_info_takes_a_local_model_folder_of_every_kind(tmp_path, capsys):
    """A pipeline folder, a distilled student and a training output, as `generate --model` takes them, report what
    their shipped or preset twins report (before: only preset and shipped names were accepted)."""
    import shutil

    from motif_video.hub import shipped_model
    from motif_video.testing import tiny_transformer
    from motif_video.training.components import TINY_WORDS

    def info(model) -> dict:
        assert main(["info", str(model), "--json"]) == 0
        return json.loads(capsys.readouterr().out)

    for name in ("small", "small-4step"):  # small-4step's base model is named "small": the shipped one
        assert info(shutil.copytree(shipped_model(name), tmp_path / name)) == info(name)
    run = tmp_path / "runs" / "tiny"  # what `motif-video train` leaves: transformer/ and its recipe
    tiny_transformer(0).save_pretrained(run / "transformer")
    recipe = {"model": {"preset": "tiny", "components": "tiny"}, "data": {"buckets": [[9, 64, 96]]}}
    (run / "config.json").write_text(json.dumps(recipe))
    summary = info(run)
    assert summary["size"] == {"width": 96, "height": 64, "frames": 9}  # its bucket's
    assert summary["parameters"]["total"] == sum(p.numel() for p in tiny_transformer(0).parameters())
    assert (summary["tokens"]["text (max)"], summary["tokens"]["image (I2V)"]) == (512, 16)  # the tiny parts'
    assert set(summary["vocabulary"]) == set(TINY_WORDS) and summary["flops"]["t2v"]["passes_per_step"] == 2
    assert main(["info", str(run)]) == 0 and f"{run}  (" in capsys.readouterr().out

    broken = shutil.copytree(shipped_model("small"), tmp_path / "broken")
    shutil.rmtree(broken / "vae")
    for model, message in (
        (broken, f"names the component 'vae', but {broken} has no vae/ folder"),
        (tmp_path / "runs", f"{tmp_path / 'runs'} is not a model folder: it has no model_index.json"),
        ("nothing", "model must be a preset (motif-video-2b, small, tiny), a model shipped in the package"),
    ):
        assert main(["info", str(model)]) == 2
        assert message in capsys.readouterr().err


def test_info_without_a_model_is_the_released_one(capsys):
    assert (
        main(["info"]) == 0
    )  # before: "invalid choice: '==SUPPRESS=='" (the replay flags' parse checked it)
    assert capsys.readouterr().out.startswith("motif-video-2b  (separate cross-attention layout)")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["eval", "--steps", "0"], "argument --steps: must be an integer >= 1, got 0"),
        (["eval", "--threads", "-1"], "argument --threads: must be an integer >= 0, got -1"),
        (["eval", "--cache-threshold", "-1"], "argument --cache-threshold: must be a number >= 0, got -1"),
        (["eval", "--guidance-scale", "nan"], "argument --guidance-scale: must be a number >= 0, got nan"),
        (["eval", "--samples", "9"], r"argument --samples: must be an integer in \[1, 5\], got 9"),
        (["info", "small", "--steps", "-3"], "argument --steps: must be an integer >= 1, got -3"),
        (
            ["cache", "in", "out", "--shard-size", "0"],
            "argument --shard-size: must be an integer >= 1, got 0",
        ),
        (["cache", "in", "out", "--fps", "0"], "argument --fps: must be a number > 0, got 0"),
        (["serve", "--port", "70000"], r"argument --port: must be an integer in \[1, 65535\], got 70000"),
        (["serve", "--port", "0"], r"argument --port: must be an integer in \[1, 65535\], got 0"),
        (["serve", "--lease", "0"], "argument --lease: must be a number > 0, got 0"),
        (["serve", "--max-frames", "0"], "argument --max-frames: must be an integer >= 1, got 0"),
        (["serve", "--max-upload-mb", "inf"], "argument --max-upload-mb: must be a number > 0, got inf"),
        (["serve", "--workers", "-1"], "argument --workers: must be an integer >= 0, got -1"),
    ],
)
def test_numeric_flags_out_of_range_exit_2_naming_the_flag(argv, message, capsys):
    """Before: eval ran 20 steps for --steps 0, torch raised for --threads -1, info printed negative FLOPs, and
    serve said "--port must be >= 1" of a port -1 and let --max-upload-mb inf through."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert re.search(message, capsys.readouterr().err)


def test_eval_refuses_a_size_before_loading(capsys):
    assert main(["eval", "--height", "60"]) == 2
    assert "height must be a positive multiple of 16, got 60" in capsys.readouterr().err


def test_python_m_runs_the_command():
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "motif_video", "--version"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("motif-video ")
    bad = subprocess.run(
        [sys.executable, "-m", "motif_video", "no-such-command"], capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2 and "motif-video: error: argument command" in bad.stderr


def test_a_reader_that_stops_reading_ends_the_command_quietly():
    """`motif-video info small --json | head -3`: the pipe closed before the output is written gives the exit status
    of a command that pipe stopped (128 + SIGPIPE) and nothing on stderr (was a BrokenPipeError traceback)."""
    import subprocess
    import sys

    command = subprocess.Popen(
        [sys.executable, "-m", "motif_video", "info", "small", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    command.stdout.close()  # the reader is gone before the first line comes
    err = command.stderr.read()
    assert command.wait(timeout=120) == 141
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


def test_a_broken_pipe_that_is_not_stdout_is_the_commands_error(monkeypatch, capfd):
    """A command's own write to a pipe whose reader is gone (a subprocess that exited) is its error, raised, and
    leaves stdout as it was (before: taken for a closed stdout, so it ended with 141 and nothing said, and stdout's
    file descriptor pointed at /dev/null from then on in the calling process)."""
    import os

    from motif_video import cli

    def writes_to_a_closed_pipe(argv):
        read, write = os.pipe()
        os.close(read)
        try:
            os.write(write, b"frames")
        finally:
            os.close(write)

    monkeypatch.setattr(cli, "_main", writes_to_a_closed_pipe)
    before = os.fstat(1)
    with pytest.raises(BrokenPipeError):
        main(["info", "small"])
    assert os.path.samestat(os.fstat(1), before)
    print("still written")
    assert capfd.readouterr().out == "still written\n"
