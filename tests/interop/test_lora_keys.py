"""Every LoRA key format converts to the same canonical adapter; unknown or ill-fitting keys are errors."""

from __future__ import annotations

import pytest
import torch

from motif_video.interop import lora_keys as K
from motif_video.testing import tiny_transformer

from .helpers import random_adapter, with_random_peft_lora


@pytest.fixture(scope="module")
def transformer():
    return tiny_transformer(0)


@pytest.fixture(scope="module")
def shapes(transformer):
    return K.linear_shapes(transformer)


@pytest.fixture(scope="module")
def adapter(transformer):
    return random_adapter(transformer, seed=1)


def assert_same(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for module in a:
        assert torch.equal(a[module].down, b[module].down), module
        assert torch.equal(a[module].up, b[module].up), module
        assert a[module].alpha == pytest.approx(b[module].alpha, abs=0), module


def comfy_lora_ab(adapter):
    """ComfyUI's other spelling: `diffusion_model.` keys with peft's lora_A / lora_B names."""
    out = {}
    for m, layer in adapter.items():
        out[f"diffusion_model.{m}.lora_A.weight"] = layer.down
        out[f"diffusion_model.{m}.lora_B.weight"] = layer.up
        out[f"diffusion_model.{m}.alpha"] = torch.tensor(layer.alpha)
    return out


def test_each_format_converts_to_the_same_adapter(adapter, shapes):
    diffusers_sd, diffusers_meta = K.to_diffusers(adapter)
    peft_sd, peft_config = K.to_peft(adapter)
    written = {
        "diffusers": (diffusers_sd, diffusers_meta),
        "comfyui": (K.to_comfyui(adapter), None),
        "comfyui-AB": (comfy_lora_ab(adapter), None),
        "kohya": (K.to_kohya(adapter), None),
        "peft": (peft_sd, {K.DIFFUSERS_METADATA_KEY: __import__("json").dumps(peft_config)}),
    }
    expected_format = {"comfyui-AB": "comfyui"}
    for name, (state, meta) in written.items():
        assert K.detect_format(list(state)) == expected_format.get(name, name)
        assert_same(K.parse_lora(state, shapes, meta), adapter)


def test_key_spellings(adapter):
    comfy = K.to_comfyui(adapter)
    assert "diffusion_model.transformer_blocks.0.attn.to_q.lora_down.weight" in comfy
    assert "diffusion_model.transformer_blocks.0.attn.to_q.alpha" in comfy
    kohya = K.to_kohya(adapter)
    assert "lora_unet_single_transformer_blocks_0_cross_attn_to_out_0.lora_up.weight" in kohya
    diffusers, meta = K.to_diffusers(adapter)
    assert "transformer.transformer_blocks.0.attn.to_q.lora_A.weight" in diffusers
    assert K.DIFFUSERS_METADATA_KEY in meta


def test_trainer_adapter_file_reads_as_the_peft_model(tmp_path, shapes):
    """training/lora.py's file (diffusers format, config in the metadata) gives the adapter peft holds."""
    from safetensors import safe_open

    from motif_video.training.lora import save_lora

    model = with_random_peft_lora(tiny_transformer(0), std=0.1, params="lora_B")
    path = save_lora(model, tmp_path)
    with safe_open(str(path), framework="pt") as f:
        state, meta = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()  # noqa: SIM118
    adapter = K.parse_lora(state, shapes, meta)
    layer = adapter["transformer_blocks.0.attn.to_q"]
    peft_layer = model.get_submodule("transformer_blocks.0.attn.to_q")
    assert layer.alpha == 2.0 and layer.rank == 4
    assert torch.equal(layer.down, peft_layer.lora_A["default"].weight)
    assert torch.equal(layer.up, peft_layer.lora_B["default"].weight)


def test_missing_alpha_means_scale_one(adapter, shapes):
    state = {k: v for k, v in K.to_kohya(adapter).items() if not k.endswith(".alpha")}
    parsed = K.parse_lora(state, shapes)
    assert all(layer.alpha == layer.rank for layer in parsed.values())


def test_unknown_keys_are_errors_naming_them(adapter, shapes):
    comfy = K.to_comfyui(adapter)
    with pytest.raises(ValueError, match=r"no known format.*diffusion_model\.x_embedder\.proj\.diff"):
        K.parse_lora({**comfy, "diffusion_model.x_embedder.proj.diff": torch.zeros(1)}, shapes)
    with pytest.raises(
        ValueError, match=r"modules the transformer does not have.*transformer_blocks\.7\.attn\.to_q"
    ):
        K.parse_lora(
            {**comfy, "diffusion_model.transformer_blocks.7.attn.to_q.lora_down.weight": torch.zeros(4, 32)},
            shapes,
        )
    with pytest.raises(ValueError, match=r"modules the transformer does not have.*lora_unet_no_such_layer"):
        K.parse_lora(
            {**K.to_kohya(adapter), "lora_unet_no_such_layer.lora_up.weight": torch.zeros(4, 4)}, shapes
        )


def test_mixed_formats_incomplete_pairs_and_bad_shapes_are_errors(adapter, shapes):
    comfy, kohya = K.to_comfyui(adapter), K.to_kohya(adapter)
    with pytest.raises(ValueError, match="mixes key formats"):
        K.parse_lora({**comfy, **kohya}, shapes)
    half = {k: v for k, v in comfy.items() if "transformer_blocks.0.attn.to_q.lora_up" not in k}
    with pytest.raises(ValueError, match=r"without both down and up.*transformer_blocks\.0\.attn\.to_q"):
        K.parse_lora(half, shapes)
    key = "diffusion_model.transformer_blocks.0.attn.to_q.lora_down.weight"
    with pytest.raises(ValueError, match=r"do not fit the module's \[out, in\] = \[32, 32\]"):
        K.parse_lora({**comfy, key: torch.zeros(4, 31)}, shapes)
    with pytest.raises(ValueError, match="empty"):
        K.parse_lora({}, shapes)


def test_kohya_names_resolve_modules_with_underscores(shapes):
    """`add_q_proj`, `to_out.0` and `single_transformer_blocks` all hold underscores: the names come from the model."""
    names = K._kohya_names(shapes)
    assert names["transformer_blocks_1_attn_add_q_proj"] == "transformer_blocks.1.attn.add_q_proj"
    assert (
        names["single_transformer_blocks_0_cross_attn_to_out_0"]
        == "single_transformer_blocks.0.cross_attn.to_out.0"
    )
