"""The distillation recipe on the tiny model: the loss falls, resume is exact, the student loads and samples in
its configured number of steps with one transformer pass per step."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from motif_video.defaults import GENERATION_CONFIG_NAME
from motif_video.distill.config import load_distill_config
from motif_video.distill.objective import distill
from tests.distill.recipe import RECIPE
from tests.distill.recipe import overrides as _overrides
from tests.training.conftest import write_random_cache


@pytest.fixture(scope="module")
def distilled(tmp_path_factory, teacher_folder):
    tmp = tmp_path_factory.mktemp("distill")
    cache = write_random_cache(tmp / "cache", count=4, latent=(2, 8, 8))
    config = load_distill_config(RECIPE, _overrides(tmp / "student", teacher_folder, cache))
    return distill(config), tmp / "student", cache


def test_distillation_loss_falls(distilled):
    result, output, _ = distilled
    losses = result.losses
    assert len(losses) == 30
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.7 * first, (first, last)
    defaults = json.loads((output / GENERATION_CONFIG_NAME).read_text())
    assert defaults["num_inference_steps"] == 4 and defaults["guidance"] == "apg"
    assert defaults["guidance_scale"] == 2.0 and defaults["shift"] == 3.0
    assert defaults["distillation"]["method"] == "perflow"
    assert json.loads((output / "transformer" / "config.json").read_text())["guidance_embeds"] is True


def test_distillation_resume_is_exact(distilled, tmp_path, teacher_folder):
    result, _, cache = distilled
    split = tmp_path / "split"
    first = distill(load_distill_config(RECIPE, _overrides(split, teacher_folder, cache, max_steps=12)))
    second = distill(load_distill_config(RECIPE, _overrides(split, teacher_folder, cache, max_steps=30)))
    assert first.losses + second.losses == result.losses


def test_student_loads_and_samples_in_its_steps(distilled):
    from motif_video.pipelines import MotifVideoPipeline

    _, output, _ = distilled
    pipe = MotifVideoPipeline.from_pretrained(output)
    assert pipe.transformer.config.guidance_embeds is True
    calls: list[dict] = []
    hook = pipe.transformer.register_forward_pre_hook(
        lambda module, args, kwargs: calls.append(kwargs), with_kwargs=True
    )
    out = pipe("a red ball moves left", height=32, width=32, num_frames=5, output_type="latent",
               generator=torch.Generator().manual_seed(0))  # fmt: skip
    hook.remove()
    assert len(calls) == 4  # 4 steps, one pass each: no unconditional pass
    assert all(c["guidance"] == 2.0 for c in calls)
    assert calls[0]["hidden_states"].shape[0] == 1
    assert pipe.last_sampler.shift == 3.0
    assert torch.isfinite(out.frames).all()
    # Call arguments beat the stored defaults.
    calls.clear()
    hook = pipe.transformer.register_forward_pre_hook(
        lambda module, args, kwargs: calls.append(kwargs), with_kwargs=True
    )
    pipe("a red ball", height=32, width=32, num_frames=5, output_type="latent", num_inference_steps=2,
         guidance_scale=4.0)  # fmt: skip
    hook.remove()
    assert len(calls) == 2 and calls[0]["guidance"] == 4.0


def test_a_student_folder_with_its_own_vae_decodes_with_it(distilled, tmp_path):
    from motif_video.pipelines import MotifVideoPipeline

    _, output, _ = distilled
    student = tmp_path / "student"
    shutil.copytree(output, student)
    defaults = json.loads((student / GENERATION_CONFIG_NAME).read_text())
    base = MotifVideoPipeline.from_pretrained(defaults["base_model"])
    vae = base.vae
    with torch.no_grad():
        for p in vae.decoder.parameters():
            p.mul_(0.5)
    vae.save_pretrained(student / "vae")
    own = MotifVideoPipeline.from_pretrained(student)
    for key, value in vae.state_dict().items():
        torch.testing.assert_close(own.vae.state_dict()[key], value, msg=key)
    plain = MotifVideoPipeline.from_pretrained(output)  # without vae/: the base model's
    changed = [k for k, v in plain.vae.state_dict().items() if not torch.equal(v, own.vae.state_dict()[k])]
    assert changed and all(k.startswith("decoder.") for k in changed)


def test_bad_recipes_are_value_errors(teacher_folder, tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match="LoRA students fold one guidance scale"):
        load_distill_config(RECIPE, _overrides(tmp_path, teacher_folder, cache, **{"lora.rank": 4}))
    with pytest.raises(ValueError, match="distill.start must be one of"):
        load_distill_config(RECIPE, _overrides(tmp_path, teacher_folder, cache, **{"distill.start": "noise"}))
    with pytest.raises(ValueError, match="must hold one value"):
        load_distill_config(
            RECIPE, _overrides(tmp_path, teacher_folder, cache, **{"distill.guidance_embeds": False})
        )
    # before: a negative shift or momentum ran, and failed (or not) somewhere inside the first step
    for key, value, message in [
        ("distill.steps", 0, "distill.steps must be >= 1, got 0"),
        ("distill.shift", -1.0, "distill.shift must be > 0, got -1.0"),
        ("distill.teacher_shift", 0.0, "distill.teacher_shift must be > 0, got 0.0"),
        ("distill.momentum", 1.0, r"distill.momentum must be in \[0, 1\), got 1.0"),
        ("distill.norm_threshold", -2.0, "distill.norm_threshold must be >= 0, got -2.0"),
    ]:
        with pytest.raises(ValueError, match=message):
            load_distill_config(RECIPE, _overrides(tmp_path, teacher_folder, cache, **{key: value}))


def test_cli_distill_then_generate_with_the_student(teacher_folder, tmp_path, capsys):
    from motif_video.cli import main

    cache = write_random_cache(tmp_path / "cache", count=2, latent=(2, 8, 8))
    output = tmp_path / "cli-student"
    overrides = [
        o for o in _overrides(output, teacher_folder, cache) if not o.startswith(("output_dir", "max_steps"))
    ]
    assert (
        main(["distill", "--config", str(RECIPE), "--output", str(output), "--max-steps", "2", *overrides])
        == 0
    )
    assert "distilled to step 2" in capsys.readouterr().out
    video = tmp_path / "out.mp4"
    args = ["generate", "--model", str(output), "--prompt", "a red ball", "--height", "32", "--width", "32",
            "--num-frames", "5", "--seed", "0", "--output", str(video), "--device", "cpu"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "4 steps" in printed and "shift 3" in printed  # the student folder's generation_config.json
    assert video.is_file() and video.stat().st_size > 0


def test_lora_student_folds_one_scale_and_loads_as_an_adapter(teacher_folder, tmp_path):
    from motif_video.pipelines import MotifVideoPipeline

    cache = write_random_cache(tmp_path / "cache", count=2, latent=(2, 8, 8))
    extra = {
        "max_steps": 3,
        "lora.rank": 4,
        "distill.guidance_embeds": False,
        "distill.guidance_scales": [3.0],
    }
    distill(
        load_distill_config(RECIPE, _overrides(tmp_path / "lora-student", teacher_folder, cache, **extra))
    )
    defaults = json.loads((tmp_path / "lora-student" / GENERATION_CONFIG_NAME).read_text())
    assert defaults["adapter"] == "lora" and defaults["guidance"] == "none"
    assert defaults["distillation"]["folded_guidance_scale"] == 3.0
    assert not (tmp_path / "lora-student" / "transformer").exists()

    pipe = MotifVideoPipeline.from_pretrained(tmp_path / "lora-student")
    assert any("lora" in name for name, _ in pipe.transformer.named_parameters())
    calls: list[dict] = []
    hook = pipe.transformer.register_forward_pre_hook(lambda m, a, kw: calls.append(kw), with_kwargs=True)
    pipe("a red ball", height=32, width=32, num_frames=5, output_type="latent")
    hook.remove()
    assert len(calls) == 4 and "guidance" not in calls[0]  # guidance folded in: cond only, no uncond pass


def test_a_lora_student_is_read_by_the_checked_lora_loader(teacher_folder, tmp_path):
    """A student's lora/ goes through the checks every LoRA passes: a NaN in it is refused naming the tensor (the
    video would be black), and its peft adapter_config.json is read (rsLoRA's scale) as for `--lora`."""
    import re

    from safetensors.torch import save_file

    from motif_video.interop.export import read_safetensors
    from motif_video.pipelines import MotifVideoPipeline
    from motif_video.testing import tiny_transformer
    from motif_video.training.lora import add_lora, save_lora

    student = tmp_path / "student"
    student.mkdir()
    (student / GENERATION_CONFIG_NAME).write_text(
        json.dumps({"base_model": str(teacher_folder), "adapter": "lora", "num_inference_steps": 4})
    )
    model = tiny_transformer(0, layout="shared")
    add_lora(model, rank=2)
    file = save_lora(model, student / "lora")
    state, metadata = read_safetensors(file)
    # peft's layout: the config in adapter_config.json, not the header; rsLoRA scales by alpha / sqrt(r)
    (student / "lora" / "adapter_config.json").write_text(
        json.dumps({"r": 2, "lora_alpha": 4, "use_rslora": True})
    )
    save_file(state, str(file), {"format": "pt"})
    pipe = MotifVideoPipeline.from_pretrained(student)
    scales = [m.scaling["default"] for m in pipe.transformer.modules() if hasattr(m, "scaling")]
    assert scales and scales == pytest.approx([4 / 2**0.5] * len(scales))

    key = sorted(k for k in state if "lora_A" in k)[0]
    state[key][0, 0] = float("nan")
    save_file(state, str(file), metadata)
    with pytest.raises(ValueError, match=re.escape(key) + ".*NaN or infinite"):
        MotifVideoPipeline.from_pretrained(student)


def test_shipped_student_is_selected_by_name(distilled, tmp_path, monkeypatch, teacher_folder):
    from motif_video import hub
    from motif_video.distill.ship import ship_student
    from motif_video.pipelines import MotifVideoPipeline

    _, output, _ = distilled
    package = tmp_path / "package"
    (package / "assets").mkdir(parents=True)
    shutil.copytree(teacher_folder, package / "assets" / "tiny-teacher")
    monkeypatch.setattr(hub, "__file__", str(package / "hub.py"))
    assert hub.shipped_model("nope") is None and hub.shipped_model("../x") is None
    shipped = ship_student(output, package / "assets" / "tiny-4step", base_model="tiny-teacher")
    from safetensors import safe_open

    with safe_open(str(shipped / "transformer" / "diffusion_pytorch_model.safetensors"), "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F16"}  # noqa: SIM118
    pipe = MotifVideoPipeline.from_pretrained("tiny-4step")
    assert pipe.generation_defaults.num_inference_steps == 4
    assert pipe.generation_defaults.base_model == "tiny-teacher"
    assert pipe.transformer.config.guidance_embeds is True
    assert pipe.generation_defaults.decoder_fit_steps is None  # the base model's
    own = ship_student(
        output, package / "assets" / "tiny-4step", base_model="tiny-teacher", decoder_fit_steps=20
    )
    assert MotifVideoPipeline.from_pretrained(own).generation_defaults.decoder_fit_steps == 20


def test_shipping_casts_the_student_as_it_loads(tmp_path, diffusers_warnings):
    """`ship_student` writes the student's transformer in float16 without a `.to(dtype)` (on which diffusers warned
    of modules to keep in float32, naming none: `[]`)."""
    from safetensors import safe_open

    from motif_video.defaults import GenerationDefaults
    from motif_video.distill.ship import ship_student
    from motif_video.testing import tiny_transformer

    tiny_transformer(0).save_pretrained(tmp_path / "student" / "transformer")
    GenerationDefaults(num_inference_steps=4).write(tmp_path / "student")
    shipped = ship_student(tmp_path / "student", tmp_path / "shipped", base_model="small")
    assert diffusers_warnings == []
    with safe_open(str(shipped / "transformer" / "diffusion_pytorch_model.safetensors"), "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F16"}  # noqa: SIM118


def test_small_4step_recipe_follows_the_shipped_small_model():
    """The student's recipe folds in the guidance the teacher ships with and trains on the small build's last
    stage's clips and latents (recipes/small/build.py), so re-distilling it reproduces the shipped student."""
    from recipes.small.build import parse_args

    from motif_video.hub import shipped_model

    recipe = load_distill_config(RECIPE.parent / "small-4step.yaml")
    shipped = json.loads((shipped_model("small-4step") / "generation_config.json").read_text())
    shipping = f"--decoder-fit-steps {shipped['decoder_fit_steps']}"  # the student's own, as shipped
    assert shipping in (RECIPE.parent / "small-4step.yaml").read_text()
    guider = json.loads((shipped_model("small") / "guider" / "guider_config.json").read_text())
    assert recipe.distill.guidance_mode == "apg" and recipe.distill.guidance_scales == [
        guider["guidance_scale"]
    ]
    # the build's folder; its last stage (GROW_STAGE) trains on clips_grown / cache_grown
    out = parse_args([]).output
    assert (recipe.data.path, recipe.data.cache) == (str(out / "clips_grown"), str(out / "cache_grown"))


def test_the_students_frame_0_is_weighted_as_the_teachers_training_weighted_it(teacher_folder, tmp_path):
    """`objective.first_frame_weight` weights latent frame 0 in the distillation loss too (flow.frame_weighted_mse):
    the same first step (same student, targets and draws) gives another loss, and weight 1 the plain mean."""
    from motif_video import flow

    cache = write_random_cache(tmp_path / "cache", count=4, latent=(3, 8, 8))
    first = {}
    for weight in (1.0, 8.0):
        extra = {"max_steps": 1, "objective.first_frame_weight": weight}
        config = load_distill_config(
            RECIPE, _overrides(tmp_path / f"w{weight}", teacher_folder, cache, **extra)
        )
        first[weight] = distill(config).losses[0]
    assert first[1.0] != pytest.approx(first[8.0], rel=1e-3)
    error = torch.zeros(1, 1, 3, 1, 1)
    error[:, :, 0] = 1.0  # all the error in frame 0
    assert flow.frame_weighted_mse(error, torch.zeros_like(error), 8.0).item() == pytest.approx(8 / 10)
    assert flow.frame_weighted_mse(error, torch.zeros_like(error), 1.0).item() == pytest.approx(1 / 3)
