"""`generate --lora PATH[:SCALE]` / `--fuse-lora` / `--transformer-gguf` end to end on the tiny folder, and `eval --lora`."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from motif_video import cli
from motif_video.interop import lora_keys as K
from motif_video.interop.export import export
from motif_video.pipelines.export import read_mp4_frames, read_mp4_metadata, write_mp4
from motif_video.testing import TINY_GENERATE_ARGS, tiny_transformer
from motif_video.weights_fingerprint import file_sha256

from .helpers import merge_by_hand, random_adapter


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from motif_video.testing import write_tiny_pipeline_folder

    return write_tiny_pipeline_folder(tmp_path_factory.mktemp("tiny-interop"))


@pytest.fixture(scope="module")
def loras(folder, tmp_path_factory):
    """Two LoRA files of the tiny transformer, in ComfyUI and kohya keys."""
    root = tmp_path_factory.mktemp("loras")
    base = tiny_transformer(0)
    a, b = random_adapter(base, seed=1), random_adapter(base, seed=2, rank=2, alpha=1.0)
    save_file(K.to_comfyui(a), str(root / "a.safetensors"))
    save_file(K.to_kohya(b), str(root / "b.safetensors"))
    return root / "a.safetensors", root / "b.safetensors", a, b


def latents_of(model: str, tmp_path, name: str, *extra: str) -> torch.Tensor:
    out = tmp_path / f"{name}.mp4"
    args = ["generate", "--prompt", "a red ball", "--model", model, "--output", str(out), "--save-latents"]
    assert cli.main([*args, *TINY_GENERATE_ARGS, *extra]) == 0
    return load_file(str(tmp_path / f"{name}.latents.safetensors"))["latents"]


def test_generate_with_two_loras_equals_the_hand_merged_model(folder, loras, tmp_path):
    path_a, path_b, a, b = loras
    merged_folder = tmp_path / "merged"
    shutil.copytree(folder, merged_folder)
    shutil.rmtree(merged_folder / "transformer")
    merged = tiny_transformer(0)
    merge_by_hand(merged, [(a, 0.8), (b, 0.5)])
    merged.save_pretrained(merged_folder / "transformer")

    expected = latents_of(str(merged_folder), tmp_path, "merged")
    with_loras = latents_of(
        str(folder), tmp_path, "loras", "--lora", f"{path_a}:0.8", "--lora", f"{path_b}:0.5"
    )
    fused = latents_of(
        str(folder), tmp_path, "fused", "--lora", f"{path_a}:0.8", "--lora", f"{path_b}:0.5", "--fuse-lora"
    )
    plain = latents_of(str(folder), tmp_path, "plain")
    torch.testing.assert_close(with_loras, expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(fused, expected, atol=1e-4, rtol=0)
    assert (with_loras - plain).abs().max() > 1e-2


def test_generate_with_a_gguf_transformer(folder, loras, tmp_path, capsys):
    plain = latents_of(str(folder), tmp_path, "plain")
    f32 = export(folder, tmp_path / "t-f32.gguf", gguf="F32").path
    torch.testing.assert_close(
        latents_of(str(folder), tmp_path, "f32", "--transformer-gguf", str(f32)), plain, atol=1e-5, rtol=0
    )
    q8 = export(folder, tmp_path / "t-q8.gguf", gguf="Q8_0").path
    quantised = latents_of(str(folder), tmp_path, "q8", "--transformer-gguf", str(q8))
    assert 0 < (quantised - plain).abs().max() < 0.05 * plain.abs().max()
    # a LoRA on top of the packed layers (peft wraps diffusers' GGUFLinear)
    with_lora = latents_of(
        str(folder), tmp_path, "q8-lora", "--transformer-gguf", str(q8), "--lora", str(loras[0])
    )
    assert (with_lora - quantised).abs().max() > 1e-2
    record = read_mp4_metadata(tmp_path / "q8-lora.mp4")  # each file recorded once, checked at replay
    assert record["weights_sha256"] == {
        "lora": {str(loras[0]): file_sha256(loras[0])},
        "transformer_gguf": {str(q8): file_sha256(q8)},
    }
    assert record["weights_fingerprint"] == {}  # not the GGUF file (its transformer) again


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--fuse-lora"], "needs at least one lora"),
        (["--lora", "missing/file.safetensors/x"], "neither a file"),
        (["--lora", ":0.5"], "has a scale but no path"),
        (["--transformer-gguf", "nope.gguf"], "is not a file"),
        (["--transformer-gguf", "t.gguf", "--fp8"], "cannot be combined with fp8"),
    ],
)
def test_bad_interop_options_exit_2(folder, tmp_path, capsys, extra, message):
    out = tmp_path / "x.mp4"
    args = ["generate", "--prompt", "p", "--model", str(folder), "--output", str(out), *TINY_GENERATE_ARGS]
    assert cli.main([*args, *extra]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_eval_loads_the_loras_it_is_given(folder, loras):
    from motif_video.evaluation.offline import OfflineEvalConfig, _load

    path_a, path_b, _, _ = loras
    config = OfflineEvalConfig(model=str(folder), lora=(f"{path_a}:0.8", str(path_b)), i2v=True).validate()
    t2v, i2v, model_lora = _load(config)
    assert sorted(t2v.get_active_adapters()) == ["lora_0", "lora_1"] and model_lora is None
    assert i2v.transformer is t2v.transformer
    with pytest.raises(ValueError, match="needs at least one lora"):
        OfflineEvalConfig(model=str(folder), fuse_lora=True).validate()


def test_replay_refuses_a_lora_that_changed(folder, loras, tmp_path, capsys):
    """A video made with a LoRA records the file's SHA-256, as it does its images: a replay after the file changed
    is refused naming it (before: exit 0 and another video), and runs when --lora is given again. The file is
    recorded there only, not in the weights' fingerprint too (whose mismatch only warns); a record that holds it in
    both (as written before) replays as before."""
    path_a, _, a, _ = loras
    mine = tmp_path / "style.safetensors"
    shutil.copy(path_a, mine)
    out = tmp_path / "styled.mp4"
    args = ["generate", "--prompt", "a red ball", "--model", str(folder), *TINY_GENERATE_ARGS]
    assert cli.main([*args, "--lora", f"{mine}:0.8", "--output", str(out)]) == 0
    record = read_mp4_metadata(out)
    assert record["weights_sha256"] == {"lora": {str(mine): file_sha256(mine)}}
    transformer = folder / "transformer" / "diffusion_pytorch_model.safetensors"
    assert record["weights_fingerprint"] == {"transformer": file_sha256(transformer)}
    again = tmp_path / "again.mp4"
    capsys.readouterr()
    assert cli.main(["generate", "--replay", str(out), "--output", str(again)]) == 0
    assert again.read_bytes() == out.read_bytes() and "warning" not in capsys.readouterr().err
    both = {**record["weights_fingerprint"], "lora:lora_0": file_sha256(mine)}  # as written before
    older = write_mp4(
        read_mp4_frames(out), tmp_path / "older.mp4", metadata={**record, "weights_fingerprint": both}
    )
    assert cli.main(["generate", "--replay", str(older), "--output", str(again)]) == 0
    assert again.read_bytes() == out.read_bytes() and "warning" not in capsys.readouterr().err
    save_file(K.to_comfyui(random_adapter(tiny_transformer(0), seed=5)), str(mine))
    capsys.readouterr()
    assert cli.main(["generate", "--replay", str(out), "--output", str(again)]) == 2
    assert f"the weights {str(mine)!r} (--lora) changed since the video was made" in capsys.readouterr().err
    assert cli.main(["generate", "--replay", str(out), "--lora", str(mine), "--output", str(again)]) == 0


def test_a_students_gguf_file_runs_with_the_students_folder(tmp_path):
    """A GGUF export of the shipped student, given with the student's own folder, is that student (its steps and
    guidance embedding); before: the folder was refused as "not a model folder"."""
    gguf = export("small-4step", tmp_path / "s4.gguf", gguf="F32").path  # its guidance (1) folded in
    # no decoder fit: its Adam steps turn the two runs' last-digit differences (3e-6) into 1e-2
    plain = latents_of("small-4step", tmp_path, "s4", "--decoder-fit-steps", "0")
    args = ["--transformer-gguf", str(gguf), "--decoder-fit-steps", "0"]
    torch.testing.assert_close(
        latents_of("small-4step", tmp_path, "s4-gguf", *args), plain, atol=1e-4, rtol=0
    )


def test_a_gguf_file_of_another_model_is_named_before_sampling(folder, tmp_path, capsys):
    """The tiny transformer's GGUF file with the small model's folder: exit 2 naming the widths that differ
    (before: a shape error in the middle of sampling, exit 1)."""
    gguf = export(folder, tmp_path / "tiny.gguf", gguf="F32").path
    out = tmp_path / "x.mp4"
    argv = ["generate", "--prompt", "a red ball", "--model", "small", "--transformer-gguf", str(gguf)]
    assert cli.main([*argv, "--output", str(out), *TINY_GENERATE_ARGS]) == 2
    err = capsys.readouterr().err
    assert (
        "is a transformer for another model than small: " in err
        and "text_embed_dim 32 (the model's 64)" in err
    )
    assert not out.exists()


def test_a_lora_with_nan_values_is_refused_naming_the_tensor_and_file(folder, loras, tmp_path, capsys):
    """One NaN in a LoRA made an all-black video and exit 0; generate and export now refuse it at load."""
    state = K.to_comfyui(loras[2])
    key = "diffusion_model.transformer_blocks.0.attn.to_q.lora_up.weight"
    state[key] = state[key].clone()
    state[key][0, 0] = float("nan")
    save_file(state, str(tmp_path / "nan.safetensors"))
    out = tmp_path / "x.mp4"
    args = ["generate", "--prompt", "p", "--model", str(folder), "--output", str(out), *TINY_GENERATE_ARGS]
    assert cli.main([*args, "--lora", str(tmp_path / "nan.safetensors")]) == 2
    assert f"LoRA tensor {key} in {tmp_path / 'nan.safetensors'} holds 1 NaN" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(ValueError, match=rf"LoRA tensor {key} in .*nan\.safetensors holds 1 NaN"):
        export(tmp_path / "nan.safetensors", tmp_path / "n.safetensors", base_model=str(folder))


def test_a_pipeline_carrying_a_lora_is_saved_merged_or_not_at_all(folder, loras, tmp_path):
    """save_pretrained with LoRA layers in place wrote peft's keys (base_layer, lora_A), a folder no loader reads:
    refused before any file is written, naming the two ways out; merged and unloaded, it saves and reloads."""
    from motif_video import MotifVideoPipeline

    path_a, _, _, _ = loras
    pipe = MotifVideoPipeline.from_pretrained(folder)
    pipe.load_lora_weights(str(path_a), adapter_name="style")
    with pytest.raises(ValueError, match=r"carries LoRA adapter\(s\) \['style'\].*pipe.fuse_lora\(\)"):
        pipe.save_pretrained(tmp_path / "saved")
    assert not (tmp_path / "saved").exists() or not any((tmp_path / "saved").iterdir())
    pipe.fuse_lora()
    pipe.unload_lora_weights()
    pipe.save_pretrained(tmp_path / "saved")
    again = MotifVideoPipeline.from_pretrained(tmp_path / "saved")
    for key, value in pipe.transformer.state_dict().items():
        assert torch.equal(again.transformer.state_dict()[key], value), key
