"""`generate --model` on a training output and a distilled student (components found from their recipe), and exit 2
naming the part that is missing or the file that does not load."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from motif_video import cli
from motif_video.model_folder import training_output
from motif_video.pipelines.export import read_mp4_frames, read_mp4_info
from motif_video.testing import tiny_transformer, write_tiny_pipeline_folder

FAST = ["--device", "cpu", "--seed", "1", "--threads", "1"]


def _run_folder(path, *, components="tiny", buckets=((9, 64, 96),), transformer_seed=3):
    """What `motif-video train` leaves: transformer/ and the recipe as config.json."""
    path.mkdir(parents=True)
    tiny_transformer(transformer_seed).save_pretrained(path / "transformer")
    model = {"preset": "tiny", "pretrained": None, "components": components}
    config = {"output_dir": str(path), "model": model, "data": {"buckets": [list(b) for b in buckets]}}
    (path / "config.json").write_text(json.dumps(config))
    return path


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return write_tiny_pipeline_folder(tmp_path_factory.mktemp("tiny") / "model")


def test_training_output_generates_with_its_components_and_size(tmp_path, capsys):
    run = _run_folder(tmp_path / "runs" / "tiny", buckets=[(1, 32, 32), (9, 64, 96)])
    assert training_output(run).size == (64, 96, 9)  # the first video bucket
    out = tmp_path / "a.mp4"
    assert cli.main(["generate", "--model", str(run), "--prompt", "a red ball", "--output", str(out),
                     "--steps", "2", *FAST]) == 0  # fmt: skip
    assert read_mp4_info(out) == {"frames": 9, "width": 96, "height": 64, "fps": 24.0}
    printed = capsys.readouterr().out
    assert "96x64x9, 2 steps" in printed and "warning" not in printed
    # trained from scratch: its buckets' sizes are the only ones it knows, and another one is warned about
    assert training_output(run).trained_sizes == [[32, 32], [64, 96]]
    assert cli.main(["generate", "--model", str(run), "--prompt", "a red ball", "--output", str(out),
                     "--steps", "1", "--num-frames", "1", "--height", "48", "--width", "48", *FAST]) == 0  # fmt: skip
    assert "trained at 32x32 or 96x64 only; at 48x48" in capsys.readouterr().out
    config = json.loads((run / "config.json").read_text())
    config["model"]["pretrained"] = "small"  # a continued transformer may know other sizes: no claim
    (run / "config.json").write_text(json.dumps(config))
    assert training_output(run).trained_sizes is None


def test_training_output_loads_its_trained_transformer(tmp_path):
    from motif_video import MotifVideoPipeline

    run = _run_folder(tmp_path / "run", transformer_seed=5)
    pipe = MotifVideoPipeline.from_pretrained(str(run))
    expected = tiny_transformer(5).state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in pipe.transformer.state_dict().items())
    assert (pipe.generation_defaults.height, pipe.generation_defaults.num_frames) == (64, 9)


def test_distilled_student_without_base_model_uses_its_recipe_components(tmp_path, capsys):
    run = _run_folder(tmp_path / "student")
    (run / "generation_config.json").write_text(
        json.dumps(
            {
                "num_inference_steps": 3,
                "shift": 15.0,
                "guidance": "apg",
                "guidance_scale": 8.0,
                "base_model": None,
                "distillation": {"method": "perflow"},
            }
        )
    )
    out = tmp_path / "s.mp4"
    assert (
        cli.main(["generate", "--model", str(run), "--prompt", "a red ball", "--output", str(out), *FAST])
        == 0
    )
    printed = capsys.readouterr().out
    assert "96x64x9, 3 steps" in printed
    assert "shift 15 (generation_config.json)" in printed  # not "(argument)": no --shift was given
    assert read_mp4_info(out)["frames"] == 9


def _exit_2(capsys, model, tmp_path) -> str:
    out = tmp_path / "never.mp4"
    rc = cli.main(["generate", "--model", str(model), "--prompt", "a red ball", "--output", str(out), *FAST])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert not out.exists()
    return err


def _info(capsys, model) -> dict:
    capsys.readouterr()  # what came before
    assert cli.main(["info", str(model), "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def _info_exit_2(capsys, model) -> str:
    assert cli.main(["info", str(model)]) == 2
    return capsys.readouterr().err


def test_missing_parts_exit_2_naming_them(tmp_path, capsys):
    unfinished = tmp_path / "unfinished"
    (unfinished / "checkpoints" / "step-00000100").mkdir(parents=True)
    (unfinished / "config.json").write_text(json.dumps({"model": {"components": "tiny"}, "data": {}}))
    err = _exit_2(capsys, unfinished, tmp_path)
    assert "has no transformer/ or lora/ folder" in err and "step-00000100" in err

    nameless = _run_folder(tmp_path / "nameless", components=None)
    assert "names no model.components" in _exit_2(capsys, nameless, tmp_path)

    gone = _run_folder(tmp_path / "gone", components=str(tmp_path / "deleted-components"))
    assert "deleted-components" in _exit_2(capsys, gone, tmp_path)

    empty = tmp_path / "empty"
    empty.mkdir()
    assert "is not a model folder: no model_index.json" in _exit_2(capsys, empty, tmp_path)


@pytest.mark.parametrize(
    "damage",
    [
        "vae/diffusion_pytorch_model.safetensors",
        "transformer/diffusion_pytorch_model.safetensors",
        "text_encoder/config.json",
        "tokenizer/tokenizer.json",
    ],
)
def test_a_component_that_does_not_load_exits_2_naming_its_file(tiny_folder, tmp_path, capsys, damage):
    model = tmp_path / "model"
    shutil.copytree(tiny_folder, model)
    target = model / damage
    data = target.read_bytes()
    target.write_bytes(data[: len(data) // 2])  # cut short, as by an interrupted copy
    err = _exit_2(capsys, model, tmp_path)
    assert str(target) in err, err
    assert "Traceback" not in err


def test_training_output_on_a_model_folder_has_its_generation_defaults_in_cli_and_python(
    tiny_folder, tmp_path
):
    """A run on a folder's components (a LoRA or fine-tune of the small model) samples with that folder's steps,
    repaint and decoder fit, in `generate` / `eval` (`model_defaults`) as in `from_pretrained`."""
    from motif_video import MotifVideoPipeline
    from motif_video.defaults import model_defaults, stored_defaults

    components = tmp_path / "components"
    shutil.copytree(tiny_folder, components)
    stored = {"num_inference_steps": 7, "repaint_first_frame": True, "decoder_fit_steps": 5}
    (components / "generation_config.json").write_text(json.dumps(stored))
    run = _run_folder(tmp_path / "run", components=str(components))
    cli_defaults = model_defaults(str(run))
    assert (cli_defaults.num_inference_steps, cli_defaults.repaint_first_frame) == (7, True)
    assert (cli_defaults.decoder_fit_steps, cli_defaults.height) == (5, 64)  # the run's own size still wins
    assert MotifVideoPipeline.from_pretrained(str(run)).generation_defaults == stored_defaults(str(run))


def test_a_run_records_its_local_model_paths_absolute_and_loads_from_any_directory(
    tiny_folder, tmp_path, monkeypatch
):
    from motif_video import MotifVideoPipeline
    from motif_video.training.config import TrainConfig
    from motif_video.training.logs import MetricsLog

    started_in = tmp_path / "project"
    shutil.copytree(tiny_folder, started_in / "models" / "components")
    monkeypatch.chdir(started_in)
    config = TrainConfig(output_dir="runs/a")
    config.model.components, config.model.pretrained = "models/components", "small"
    MetricsLog(Path("runs/a"), config, main=True, start=0).close()
    tiny_transformer(3).save_pretrained("runs/a/transformer")
    recorded = json.loads(Path("runs/a/config.json").read_text())["model"]
    assert recorded["components"] == str(started_in / "models" / "components")
    assert recorded["pretrained"] == "small"  # a shipped name (or a Hub id) as typed
    monkeypatch.chdir(tmp_path)
    assert MotifVideoPipeline.from_pretrained(str(started_in / "runs" / "a")).transformer is not None


def test_an_older_run_with_relative_paths_loads_from_any_directory(tiny_folder, tmp_path, monkeypatch):
    """Runs recorded before paths were written absolute: a path as typed in the folder the run was started in."""
    from motif_video.defaults import stored_defaults

    started_in = tmp_path / "project"
    components = started_in / "models" / "components"
    shutil.copytree(tiny_folder, components)
    (components / "generation_config.json").write_text(json.dumps({"num_inference_steps": 7}))
    run = _run_folder(started_in / "runs" / "a", components="models/components")
    monkeypatch.chdir(tmp_path)
    assert stored_defaults(str(run)).num_inference_steps == 7
    out = tmp_path / "a.mp4"
    assert cli.main(["generate", "--model", str(run), "--prompt", "a red ball", "--output", str(out),
                     "--num-frames", "1", *FAST]) == 0  # fmt: skip


def _student(path, base_model):
    """A student folder: its own transformer and a generation_config.json naming its base model."""
    path.mkdir(parents=True)
    tiny_transformer(4).save_pretrained(path / "transformer")
    defaults = {"num_inference_steps": 2, "base_model": base_model, "distillation": {"method": "perflow"}}
    (path / "generation_config.json").write_text(json.dumps(defaults))
    return path


def test_a_student_finds_a_relative_base_model_from_any_directory(tiny_folder, tmp_path, monkeypatch, capsys):
    """A base_model recorded relative (as typed in the folder distill ran in, or relative to the student) loads from
    another working directory (before: looked for on the Hub), and one that is nowhere is named with the folders
    tried."""
    from motif_video import MotifVideoPipeline
    from motif_video.defaults import GenerationDefaults

    shutil.copytree(tiny_folder, tmp_path / "models" / "base")
    GenerationDefaults(height=64, width=96, num_frames=9).write(tmp_path / "models" / "base")
    typed = _student(tmp_path / "models" / "typed", "models/base")  # relative to the folder distill ran in
    beside = _student(tmp_path / "models" / "beside", "../base")  # relative to the student folder
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    for student in (typed, beside):
        pipe = MotifVideoPipeline.from_pretrained(student)
        assert pipe.generation_defaults.num_inference_steps == 2 and pipe.vae is not None
    out = elsewhere / "a.mp4"
    assert (
        cli.main(["generate", "--model", str(typed), "--prompt", "a red ball", "--output", str(out), *FAST])
        == 0
    )
    assert "96x64x9, 2 steps" in capsys.readouterr().out  # the base's size, the student's steps

    gone = _student(tmp_path / "models" / "gone", "./missing/base")
    err = _exit_2(capsys, gone, tmp_path)
    assert (
        f"its base_model './missing/base' (generation_config.json) is not a folder at {gone}/missing/base"
        in err
    )
    assert f"at {elsewhere}/missing/base nor above the student" in err
    hub_shaped = _student(
        tmp_path / "models" / "hub-shaped", "missing/base"
    )  # could be a Hub id: tried there too
    err = _exit_2(capsys, hub_shaped, tmp_path)
    assert "its base_model 'missing/base'" in err and "as a Hub id" in err


def test_distill_records_a_local_base_model_absolute(tmp_path, monkeypatch):
    from motif_video.distill.config import load_distill_config
    from motif_video.distill.objective import generation_defaults
    from motif_video.model_folder import recorded_base
    from tests.distill.recipe import RECIPE

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "base").mkdir(parents=True)
    config = load_distill_config(RECIPE, ["distill.base_model=runs/base"])
    assert generation_defaults(config).base_model == str(tmp_path / "runs" / "base")
    assert recorded_base("small") == "small" and recorded_base("owner/repo") == "owner/repo"


def test_a_checkpoint_of_a_run_moved_with_its_base_loads_as_the_run_does(tmp_path, capsys):
    """A full fine-tune of a pretrained folder, moved together with that folder (the run records it as an absolute
    path that is gone): its checkpoint finds the base beside it as the finished run does, for info and for
    generate (before: the run loaded and its checkpoint exited 2, its recorded pretrained folder not found)."""
    from motif_video.training.config import load_config
    from motif_video.training.trainer import train
    from tests.training.conftest import tiny_overrides, write_random_cache

    cache = write_random_cache(tmp_path / "cache", count=2)
    base = tmp_path / "old" / "base"
    tiny_transformer(0, layout="shared").save_pretrained(base)
    run = tmp_path / "old" / "run"
    full = {"model.pretrained": str(base), "checkpoint_every": 2}
    train(load_config(None, tiny_overrides(run, cache, max_steps=2, **full)))
    shutil.move(tmp_path / "old", tmp_path / "new")
    run, step = tmp_path / "new" / "run", tmp_path / "new" / "run" / "checkpoints" / "step-00000002"
    step_info = _info(capsys, step)
    assert step_info.pop("weights")["step"] == 2 and step_info == _info(capsys, run)
    frames = [_generated(capsys, model, tmp_path / f"{model.name}.mp4") for model in (step, run)]
    assert np.array_equal(*frames)  # at its last step: the run's own weights


def _generated(capsys, model: Path, out: Path) -> np.ndarray:
    """The frames `generate --model MODEL` writes to `out` (2 steps, the fast test settings)."""
    argv = ["generate", "--model", str(model), "--prompt", "a red ball", "--steps", "2", "--output", str(out)]
    assert cli.main([*argv, *FAST]) == 0, capsys.readouterr().err
    return read_mp4_frames(out)


def test_a_training_checkpoint_generates_and_exports_as_its_run_does(tmp_path, capsys):
    """`generate --model RUN/checkpoints/step-N` and `export` take a trainer checkpoint: the run's architecture and
    components with the checkpoint's trained weights (at the last step: the run's own frames and file), also before
    the run has written its folders, and for a LoRA run; what cannot load exits 2 saying what to use (before: "is
    not a model folder"). `info` reports such a checkpoint as its run, with the checkpoint's step as the weights
    (before: exit 2), a LoRA run's as its adapter's weights (before: as the transformer's, which are its base's),
    and refuses what generate refuses with generate's message."""
    from safetensors.torch import load_file

    from motif_video.training.config import load_config
    from motif_video.training.trainer import train
    from tests.training.conftest import tiny_overrides, write_random_cache

    cache = write_random_cache(tmp_path / "cache", count=2)
    run = tmp_path / "run"
    train(
        load_config(
            None, tiny_overrides(run, cache, max_steps=2, checkpoint_every=2, **{"optim.ema_decay": 0.5})
        )
    )
    step = run / "checkpoints" / "step-00000002"

    def generate(model, name) -> np.ndarray:
        return _generated(capsys, model, tmp_path / f"{name}.mp4")

    assert np.array_equal(generate(step, "step"), generate(run, "run"))  # its size from the run's buckets
    run_info, step_info = _info(capsys, run), _info(capsys, step)
    assert step_info.pop("weights") == {
        "checkpoint": str(step),
        "step": 2,
        "run": str(run),
        "holds": "transformer",
    }
    assert step_info == run_info  # the run's architecture, size and components
    capsys.readouterr()
    assert cli.main(["info", str(step)]) == 0
    assert f"transformer weights: the training checkpoint's, at step 2 ({step})" in capsys.readouterr().out
    for source, name in ((step, "step"), (run, "run")):
        assert cli.main(["export", str(source), "--output", str(tmp_path / f"{name}.safetensors")]) == 0
    exported = [load_file(str(tmp_path / f"{name}.safetensors")) for name in ("step", "run")]
    assert all(torch.equal(exported[0][k], exported[1][k]) for k in exported[1])
    latest = tmp_path / "latest"  # a link to the checkpoint: its run is found above the real folder
    latest.symlink_to(step, target_is_directory=True)
    assert cli.main(["export", str(latest), "--output", str(tmp_path / "linked.safetensors")]) == 0
    linked = load_file(str(tmp_path / "linked.safetensors"))
    assert all(torch.equal(linked[k], exported[0][k]) for k in exported[0])
    shutil.rmtree(run / "transformer")  # a run still training: its checkpoint is what generates
    (run / "checkpoints" / "step-00000004.tmp").mkdir()  # one being written is not offered
    assert f"its newest checkpoint is {step}," in _exit_2(capsys, run, tmp_path)
    generate(step, "unfinished")
    unfinished = _info(capsys, step)
    assert unfinished.pop("weights")["step"] == 2 and unfinished == run_info

    base = tmp_path / "base"  # a LoRA run: the checkpoint's adapter on the run's pretrained transformer
    tiny_transformer(0, layout="shared").save_pretrained(base)
    lora = {"lora.rank": 4, "model.pretrained": str(base), "checkpoint_every": 2}
    train(load_config(None, tiny_overrides(tmp_path / "lora-run", cache, max_steps=2, **lora)))
    lora_step = tmp_path / "lora-run" / "checkpoints" / "step-00000002"
    assert np.array_equal(generate(lora_step, "lora-step"), generate(tmp_path / "lora-run", "lora-run"))
    lora_info = _info(capsys, lora_step)
    lora_weights = lora_info.pop("weights")
    assert (lora_weights["step"], lora_weights["holds"]) == (2, "lora")
    assert lora_info == _info(capsys, tmp_path / "lora-run")
    capsys.readouterr()
    assert cli.main(["info", str(lora_step)]) == 0  # the adapter's weights; the transformer is the base's
    said = capsys.readouterr().out
    assert f"LoRA weights: the training checkpoint's, at step 2 ({lora_step})" in said
    assert "transformer weights" not in said

    copied = shutil.copytree(step, tmp_path / "elsewhere" / "step-00000002")  # without its run's recipe
    refused = _exit_2(capsys, copied, tmp_path)
    assert "make a transformer folder of it with" in refused
    assert _info_exit_2(capsys, copied).split("error: ")[1] == refused.split("error: ")[1]
    (run / "config.json").write_text(
        json.dumps({**json.loads((run / "config.json").read_text()), "distill": {}})
    )
    refused = _exit_2(capsys, step, tmp_path)
    assert "is a checkpoint of a distillation" in refused
    assert _info_exit_2(capsys, step).split("error: ")[1] == refused.split("error: ")[1]
