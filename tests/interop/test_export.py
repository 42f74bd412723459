"""`motif-video export` to one .safetensors: round trips, the released naming (read by diffusers' single-file loader),
the shared-layout and guidance folds, and clear refusals."""

from __future__ import annotations

import copy
import json
import os

import pytest
import torch
from safetensors import safe_open

from motif_video import __version__
from motif_video.cli import main
from motif_video.interop import lora_keys as K
from motif_video.interop.export import export, load_transformer_file, read_safetensors
from motif_video.testing import tiny_transformer

from .helpers import inputs, random_adapter, run, with_random_peft_lora


@pytest.fixture(scope="module")
def transformer_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export") / "transformer"
    tiny_transformer(0).save_pretrained(folder)
    return folder


def test_transformer_round_trip_keys_values_and_metadata(transformer_folder, tmp_path):
    from motif_video.models import MotifVideoTransformer

    model = MotifVideoTransformer.from_pretrained(transformer_folder)
    out = tmp_path / "motif.safetensors"
    result = export(transformer_folder, out)
    state, meta = read_safetensors(out)
    expected = model.state_dict()
    assert result.kind == "transformer" and sorted(state) == sorted(expected)  # bare released names
    assert all(torch.equal(state[k], expected[k]) for k in expected)
    assert meta["motif_video.kind"] == "transformer" and meta["motif_video.version"] == __version__
    assert meta["format"] == "pt" and "num_single_layers" in meta["motif_video.config"]
    loaded = load_transformer_file(out)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in expected.items())
    assert not list(tmp_path.glob(".*tmp"))  # the temporary file was renamed away
    mask = os.umask(0)
    os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~mask  # not safetensors' 0600


def test_diffusers_single_file_loader_reads_the_export(transformer_folder, tmp_path):
    """diffusers' `from_single_file` (identity key mapping for Motif-Video) reads our file as the same model."""
    from diffusers import MotifVideoTransformer3DModel

    from motif_video.models import MotifVideoTransformer

    out = export(transformer_folder, tmp_path / "motif.safetensors").path
    theirs = MotifVideoTransformer3DModel.from_single_file(
        str(out), config=str(transformer_folder), local_files_only=True
    )
    ours = MotifVideoTransformer.from_pretrained(transformer_folder)
    with torch.no_grad():
        torch.testing.assert_close(theirs(**inputs(), return_dict=False)[0], run(ours), atol=1e-5, rtol=0)


def test_shared_layout_is_folded_or_kept_and_never_changes_outputs(transformer_folder, tmp_path):
    shared = tiny_transformer(0, layout="shared")
    with torch.no_grad():
        for block in shared.single_transformer_blocks:
            if block.cross_attention_layout == "shared":
                block.cross_attn_query_norm.bias.zero_()
    shared.save_pretrained(tmp_path / "shared")
    result = export(tmp_path / "shared", tmp_path / "shared.safetensors")
    assert any("folded" in n for n in result.notes)
    state, _ = read_safetensors(result.path)
    assert not any("cross_attn_query" in k for k in state)
    assert "cross_attention_layout" not in json.loads(read_safetensors(result.path)[1]["motif_video.config"])
    loaded = load_transformer_file(result.path)
    assert loaded.cross_attention_layout == "separate"
    torch.testing.assert_close(run(loaded), run(shared), atol=1e-5, rtol=0)

    with torch.no_grad():
        shared.single_transformer_blocks[0].cross_attn_query_norm.bias.fill_(0.1)
    shared.save_pretrained(tmp_path / "biased")
    with pytest.raises(ValueError, match="cross_attn_query_norm.bias is non-zero"):
        export(tmp_path / "biased", tmp_path / "biased.safetensors", layout="separate")
    kept = export(tmp_path / "biased", tmp_path / "biased.safetensors")  # auto: the shared keys stay
    assert any("kept in the shared layout" in n for n in kept.notes)
    state, _meta = read_safetensors(kept.path)
    assert "single_transformer_blocks.0.cross_attn_query_proj.weight" in state
    assert json.loads(_meta["motif_video.config"])["cross_attention_layout"] == "shared"
    loaded = load_transformer_file(kept.path)
    assert loaded.cross_attention_layout == "shared"
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in shared.state_dict().items())
    with pytest.raises(ValueError, match="cannot be written in the shared layout"):
        export(transformer_folder, tmp_path / "x.safetensors", layout="shared")


def test_guidance_student_folds_at_its_scale_or_is_refused(transformer_folder, tmp_path):
    from motif_video.defaults import GenerationDefaults

    student = tiny_transformer(0, guidance_embeds=True)  # randomised: the guidance embedding is non-zero
    student.save_pretrained(tmp_path / "student" / "transformer")
    with pytest.raises(ValueError, match="guidance-distilled.*guidance scale"):
        export(tmp_path / "student", tmp_path / "s.safetensors")
    GenerationDefaults(guidance_scale=4.0, base_model="small", num_inference_steps=4).write(
        tmp_path / "student"
    )
    result = export(tmp_path / "student", tmp_path / "s.safetensors")  # the student's own scale
    assert any("guidance scale 4" in n for n in result.notes)
    folded = load_transformer_file(result.path)
    assert not folded.config.get("guidance_embeds", False)
    with torch.no_grad():
        expected = student(**inputs(), guidance=4.0).sample
        assert (expected - student(**inputs(), guidance=1.0).sample).abs().max() > 1e-3
    torch.testing.assert_close(run(folded), expected, atol=1e-5, rtol=0)
    _, meta = read_safetensors(result.path)
    assert meta["motif_video.folded_guidance_scale"] == "4.0"
    with pytest.raises(ValueError, match="has no guidance embedder"):
        export(transformer_folder, tmp_path / "x.safetensors", guidance_scale=4.0)  # not a student


def test_lora_export_round_trip_in_comfyui_layout(transformer_folder, tmp_path):
    from motif_video.pipelines import MotifVideoPipeline
    from motif_video.training.lora import save_lora

    base = tiny_transformer(0)
    trained = with_random_peft_lora(copy.deepcopy(base))
    save_lora(trained, tmp_path / "run" / "lora")
    result = export(
        tmp_path / "run" / "lora", tmp_path / "style.safetensors", base_model=str(transformer_folder.parent)
    )
    state, meta = read_safetensors(result.path)
    assert all(k.startswith("diffusion_model.") for k in state)
    assert (
        meta["motif_video.kind"] == "lora"
        and meta["motif_video.rank"] == "4"
        and meta["ss_network_alpha"] == "2"
    )
    original, original_meta = read_safetensors(tmp_path / "run" / "lora" / "pytorch_lora_weights.safetensors")
    shapes = K.linear_shapes(base)
    a, b = K.parse_lora(original, shapes, original_meta), K.parse_lora(state, shapes, meta)
    assert sorted(a) == sorted(b)
    assert all(torch.equal(a[m].down, b[m].down) and torch.equal(a[m].up, b[m].up) for m in a)
    assert all(a[m].alpha == b[m].alpha == 2.0 for m in a)

    pipe = MotifVideoPipeline(
        scheduler=None, vae=None, text_encoder=None, tokenizer=None, transformer=copy.deepcopy(base)
    )
    pipe.load_lora_weights(str(result.path), adapter_name="style")
    torch.testing.assert_close(run(pipe.transformer), run(trained), atol=1e-5, rtol=0)


def test_a_lora_training_output_exports_on_the_transformer_it_trained(transformer_folder, tmp_path):
    """`export runs/style` (a LoRA run, which `generate --model` loads) and `export runs/style/lora` take the base
    from the run's recorded transformer (before: the first was refused for the run's config.json keys, the second
    asked for --base-model)."""
    from motif_video.training.lora import save_lora

    trained = with_random_peft_lora(tiny_transformer(0))
    run_folder = tmp_path / "runs" / "style"
    save_lora(trained, run_folder / "lora")
    recipe = {"model": {"components": "tiny", "pretrained": str(transformer_folder)}, "data": {"fps": 24}}
    (run_folder / "config.json").write_text(json.dumps(recipe))
    for source in (run_folder, run_folder / "lora"):
        result = export(source, tmp_path / f"{source.name}.safetensors")
        state, meta = read_safetensors(result.path)
        assert result.kind == "lora" and meta["motif_video.base_model"] == str(transformer_folder)
        assert all(k.startswith("diffusion_model.") for k in state)


def test_refusals_are_clear(transformer_folder, tmp_path):
    lora = tmp_path / "l.safetensors"
    from safetensors.torch import save_file

    save_file(K.to_comfyui(random_adapter(tiny_transformer(0), seed=1)), str(lora))
    with pytest.raises(ValueError, match="GGUF holds a whole transformer"):
        export(lora, tmp_path / "l.gguf", gguf="Q8_0")
    with pytest.raises(ValueError, match="needs its base model"):
        export(lora, tmp_path / "out.safetensors")
    with pytest.raises(ValueError, match=r"must end in \.gguf"):
        export(transformer_folder, tmp_path / "t.safetensors", gguf="Q8_0")
    with pytest.raises(ValueError, match="neither a model folder"):
        export(tmp_path, tmp_path / "t.safetensors")
    with pytest.raises(ValueError, match="output folder .* does not exist"):
        export(transformer_folder, tmp_path / "typo" / "t.safetensors")
    assert not (tmp_path / "typo").exists()


def test_cli_export_and_exit_status(transformer_folder, tmp_path, capsys):
    out = tmp_path / "cli.safetensors"
    assert main(["export", str(transformer_folder), "--output", str(out), "--dtype", "bfloat16"]) == 0
    assert "transformer" in capsys.readouterr().out
    with safe_open(str(out), framework="pt") as f:
        assert f.get_tensor("proj_out.weight").dtype == torch.bfloat16
    assert main(["export", str(tmp_path / "missing"), "--output", str(out)]) == 2
    assert "neither an existing folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["export", str(transformer_folder), "--output", str(out), "--gguf", "Q4_K"])
    assert exit_info.value.code == 2


def test_export_names_what_it_was_given_instead(transformer_folder, tmp_path, capsys):
    """An exported transformer given as the source, a folder as the output, and the small model's shared layout
    asked in the separate one: each exits 2 saying what to give (before: "exporting the LoRA ... needs its base
    model", an IsADirectoryError traceback, "load this checkpoint in the shared layout")."""
    checkpoint = tmp_path / "t.safetensors"
    assert main(["export", str(transformer_folder), "--output", str(checkpoint)]) == 0
    capsys.readouterr()
    assert main(["export", str(checkpoint), "--output", str(tmp_path / "again.safetensors")]) == 2
    assert "holds no LoRA weights (a transformer checkpoint?)" in capsys.readouterr().err
    (tmp_path / "dir.safetensors").mkdir()
    assert main(["export", str(transformer_folder), "--output", str(tmp_path / "dir.safetensors")]) == 2
    assert "is a folder; give a file name ending in .safetensors" in capsys.readouterr().err
    assert main(["export", "small", "--layout", "separate", "--output", str(tmp_path / "s.safetensors")]) == 2
    assert "write it with layout auto or shared (--layout auto / shared)" in capsys.readouterr().err


def test_a_peft_folder_exports_with_the_alpha_of_its_adapter_config(transformer_folder, tmp_path):
    """peft's `save_pretrained` folder: alpha from `adapter_config.json` (before: r, a quarter of the strength)."""
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny_transformer(0), LoraConfig(r=4, lora_alpha=16, target_modules=["to_q"]))
    model.save_pretrained(tmp_path / "peftdir")
    result = export(
        tmp_path / "peftdir" / "adapter_model.safetensors",
        tmp_path / "p.safetensors",
        base_model=str(transformer_folder),
    )
    state, meta = read_safetensors(result.path)
    assert meta["motif_video.alpha"] == "16"
    assert all(v.item() == 16.0 for k, v in state.items() if k.endswith(".alpha"))


def test_a_lora_is_checked_against_the_base_models_own_layout(tmp_path):
    """The small model's cross-attention is in the shared layout: a LoRA on its `cross_attn_query_proj` exports,
    one on the separate layout's `cross_attn.to_q` (which it does not have) is refused (before: the other way
    round, the base always built in the separate layout)."""
    from safetensors.torch import save_file

    from motif_video.models import MotifVideoTransformer
    from motif_video.presets import PRESETS

    with torch.device("meta"):
        small = MotifVideoTransformer(**PRESETS["small"])
    modules = ("single_transformer_blocks.0.cross_attn_query_proj", "single_transformer_blocks.1.attn.to_q")
    save_file(K.to_comfyui(random_adapter(small, seed=1, modules=modules)), str(tmp_path / "sca.safetensors"))
    result = export(tmp_path / "sca.safetensors", tmp_path / "x.safetensors", base_model="small")
    state, _ = read_safetensors(result.path)
    assert "diffusion_model.single_transformer_blocks.0.cross_attn_query_proj.lora_down.weight" in state
    separate = {
        f"diffusion_model.single_transformer_blocks.0.cross_attn.to_q.lora_{part}.weight": torch.zeros(4, 128)
        for part in ("down", "up")
    }
    save_file(separate, str(tmp_path / "separate.safetensors"))
    with pytest.raises(ValueError, match=r"modules the transformer does not have.*cross_attn\.to_q"):
        export(tmp_path / "separate.safetensors", tmp_path / "y.safetensors", base_model="small")


def test_a_lora_export_takes_dtype_and_refuses_the_transformer_options(transformer_folder, tmp_path, capsys):
    """`export LORA --dtype float16` wrote float32, and `--layout` / `--guidance-scale` were dropped without a word."""
    from safetensors.torch import save_file

    lora = tmp_path / "l.safetensors"
    save_file(K.to_comfyui(random_adapter(tiny_transformer(0), seed=1)), str(lora))
    out = tmp_path / "half.safetensors"
    base = ["--base-model", str(transformer_folder)]
    assert main(["export", str(lora), "--output", str(out), *base, "--dtype", "float16"]) == 0
    state, _ = read_safetensors(out)
    assert {v.dtype for k, v in state.items() if not k.endswith(".alpha")} == {torch.float16}
    assert {v.dtype for k, v in state.items() if k.endswith(".alpha")} == {torch.float32}
    for extra, named in (
        (["--layout", "separate"], "--layout apply"),
        (["--guidance-scale", "4", "--layout", "auto"], "--guidance-scale and --layout apply"),
    ):
        assert main(["export", str(lora), "--output", str(tmp_path / "x.safetensors"), *base, *extra]) == 2
        assert f"is a LoRA: {named} to transformer exports only" in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists()


def test_a_shipped_base_model_is_recorded_by_its_name(tmp_path):
    """A run trained on the shipped small model records it as a path of this install; the export's metadata said
    that path (meaningless elsewhere) instead of "small"."""
    from safetensors.torch import save_file

    from motif_video.hub import shipped_model
    from motif_video.models import MotifVideoTransformer
    from motif_video.presets import PRESETS

    with torch.device("meta"):
        small = MotifVideoTransformer(**PRESETS["small"])
    adapter = random_adapter(small, seed=1, modules=("single_transformer_blocks.0.cross_attn_query_proj",))
    state, metadata = K.to_diffusers(adapter)
    run_folder = tmp_path / "runs" / "style"
    (run_folder / "lora").mkdir(parents=True)
    save_file(state, str(run_folder / "lora" / "pytorch_lora_weights.safetensors"), metadata)
    shipped = shipped_model("small")
    recipe = {"model": {"components": str(shipped), "pretrained": str(shipped / "transformer")}}
    (run_folder / "config.json").write_text(json.dumps(recipe))
    result = export(run_folder, tmp_path / "lora.safetensors")
    assert read_safetensors(result.path)[1]["motif_video.base_model"] == "small"
    result = export("small", tmp_path / "small.safetensors")
    assert read_safetensors(result.path)[1]["motif_video.base_model"] == "small"


def test_a_lora_student_whose_base_is_gone_exports_on_the_base_given(transformer_folder, tmp_path):
    """A LoRA student copied away from its base model exports with `--base-model` (before: the recorded base was
    looked for first, and its absence refused the export)."""
    from motif_video.training.lora import save_lora

    student = tmp_path / "student"
    save_lora(with_random_peft_lora(tiny_transformer(0)), student / "lora")
    (student / "generation_config.json").write_text(json.dumps({"base_model": "./gone", "adapter": "lora"}))
    with pytest.raises(ValueError, match="gone"):
        export(student, tmp_path / "a.safetensors")
    result = export(student, tmp_path / "b.safetensors", base_model=str(transformer_folder.parent))
    assert result.kind == "lora"
    assert read_safetensors(result.path)[1]["motif_video.base_model"] == str(transformer_folder.parent)
