"""GGUF export and loading: the layout diffusers' GGUF loader reads, quantisation error bounds, output PSNR."""

from __future__ import annotations

import math

import pytest
import torch

from motif_video.interop.export import export
from motif_video.interop.gguf_files import load_gguf_transformer, read_gguf, write_gguf
from motif_video.testing import tiny_transformer

from .helpers import inputs, run

gguf = pytest.importorskip("gguf")


def psnr(x: torch.Tensor, ref: torch.Tensor) -> float:
    """Peak signal-to-noise ratio of `x` against `ref`, the peak being ref's largest magnitude."""
    mse = (x - ref).pow(2).mean().item()
    return math.inf if mse == 0 else 10 * math.log10(ref.abs().max().item() ** 2 / mse)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gguf") / "transformer"
    tiny_transformer(0).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def model(folder):
    from motif_video.models import MotifVideoTransformer

    return MotifVideoTransformer.from_pretrained(folder)


@pytest.mark.parametrize(("qtype", "divisor", "min_psnr"), [("Q8_0", 127, 40.0), ("Q4_0", 8, 15.0)])
def test_quantised_export_within_its_error_and_psnr(folder, model, tmp_path, qtype, divisor, min_psnr):
    from diffusers.quantizers.gguf.utils import GGUFLinear, dequantize_gguf_tensor

    path = tmp_path / f"t-{qtype}.gguf"
    result = export(folder, path, gguf=qtype)
    state, meta = read_gguf(path)
    assert meta["general.architecture"] == "motif_video" and meta["motif_video.kind"] == "transformer"
    expected = model.state_dict()
    assert sorted(state) == sorted(expected)  # the released (bare) names
    quantised = [k for k, v in state.items() if hasattr(v, "quant_type")]
    assert "transformer_blocks.0.ff.net.0.proj.weight" in quantised
    assert not any(k.endswith("bias") or k.startswith(("x_embedder", "proj_out")) for k in quantised)
    assert f"{qtype} {len(quantised)}" in result.notes[0]
    for key in quantised:  # each weight within its blocks' quantisation step
        weight = expected[key]
        blocks = weight.reshape(-1, 32)
        bound = blocks.abs().amax(dim=1, keepdim=True) / divisor * (1 + 1e-3) + 1e-8
        error = (dequantize_gguf_tensor(state[key]).reshape(-1, 32) - blocks).abs()
        assert (error <= bound).all(), key
    for key in set(state) - set(quantised):
        assert torch.equal(state[key], expected[key]), key  # F32: exact

    loaded = load_gguf_transformer(path)
    assert isinstance(loaded.get_submodule("transformer_blocks.0.ff.net.0.proj"), GGUFLinear)
    quality = psnr(run(loaded), run(model))
    print(f"\n{qtype}: output PSNR against float32 {quality:.1f} dB")
    assert quality > min_psnr


def test_diffusers_gguf_loader_reads_our_file_as_we_do(folder, tmp_path):
    """diffusers' `from_single_file` + `GGUFQuantizationConfig` gives the same output as our loader."""
    from diffusers import GGUFQuantizationConfig, MotifVideoTransformer3DModel

    path = export(folder, tmp_path / "t.gguf", gguf="Q8_0").path
    theirs = MotifVideoTransformer3DModel.from_single_file(
        str(path),
        config=str(folder),
        local_files_only=True,
        quantization_config=GGUFQuantizationConfig(compute_dtype=torch.float32),
    )
    with torch.no_grad():
        torch.testing.assert_close(
            theirs(**inputs(), return_dict=False)[0], run(load_gguf_transformer(path)), atol=1e-6, rtol=0
        )


def test_float_gguf_is_exact_and_config_can_come_from_the_folder(folder, model, tmp_path):
    from motif_video.models.loading import read_config

    path = tmp_path / "t.gguf"
    write_gguf(model.state_dict(), path, "F32")  # no embedded config, as in Motif's published files
    with pytest.raises(ValueError, match="carries no transformer config"):
        load_gguf_transformer(path)
    loaded = load_gguf_transformer(path, config=read_config(type(model), folder))
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())


def test_refusals(model, tmp_path):
    with pytest.raises(ValueError, match="Q4_K.*llama-quantize"):
        write_gguf(model.state_dict(), tmp_path / "k.gguf", "Q4_K")
    writer = gguf.GGUFWriter(str(tmp_path / "flux.gguf"), arch="flux")
    writer.add_tensor("x", torch.zeros(4).numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ValueError, match="architecture 'flux', not 'motif_video'"):
        read_gguf(tmp_path / "flux.gguf")
    (tmp_path / "junk.gguf").write_bytes(b"not a gguf file")
    with pytest.raises(ValueError, match="cannot read"):
        read_gguf(tmp_path / "junk.gguf")


def test_comfy_orig_shape_and_prefixed_names_are_read(model, tmp_path):
    """ComfyUI-GGUF's conventions: a tensor stored reshaped with `comfy.gguf.orig_shape.<name>`, and
    `model.diffusion_model.`-prefixed names."""
    weight = model.state_dict()["proj_out.weight"]
    writer = gguf.GGUFWriter(str(tmp_path / "c.gguf"), arch="motif_video")
    writer.add_array("comfy.gguf.orig_shape.model.diffusion_model.proj_out.weight", list(weight.shape))
    writer.add_tensor("model.diffusion_model.proj_out.weight", weight.reshape(-1).numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    state, _ = read_gguf(tmp_path / "c.gguf")
    assert list(state) == ["proj_out.weight"] and torch.equal(state["proj_out.weight"], weight)
