"""FP8: which layers are converted, and the errors when torchao or the device cannot do it."""

from __future__ import annotations

import pytest
import torch

from motif_video.perf import fp8
from motif_video.presets import build_transformer


def test_layer_selection_on_the_released_config() -> None:
    model = build_transformer("motif-video-2b", device="meta")
    names = fp8.fp8_layer_names(model)
    # dual: 8 attention + 4 MLP linears; encoder single: q, k, v, proj_mlp, proj_out + 4 cross-attention; decoder: 5
    assert len(names) == 12 * 12 + 16 * 9 + 8 * 5
    assert (
        "transformer_blocks.0.attn.to_q" in names and "single_transformer_blocks.0.cross_attn.to_k" in names
    )
    assert "single_transformer_blocks.23.proj_out" in names
    excluded = ("norm", "embedder", "time_text_embed")
    assert not [n for n in names if any(part in n for part in excluded)]
    assert "proj_out" not in names  # the output head
    # 74% of the weights; the AdaLN modulation linears (510M parameters, one row per sample) stay in bf16.
    assert sum(model.get_submodule(n).weight.numel() for n in names) == 1_509_949_440


def test_dynamic_mode_keeps_the_text_stream_in_the_activation_dtype() -> None:
    model = build_transformer("motif-video-2b", device="meta")
    every, compute = fp8.fp8_layer_names(model), fp8.fp8_layer_names(model, "dynamic")
    text_side = sorted(set(every) - set(compute))
    # per dual block: the added stream's q, k, v, out and its MLP; per encoder single block: cross-attention k, v
    assert len(text_side) == 12 * 6 + 16 * 2
    assert "transformer_blocks.3.ff_context.net.2" in text_side
    assert "single_transformer_blocks.5.cross_attn.to_v" in text_side
    assert (
        "single_transformer_blocks.5.cross_attn.to_q" in compute
        and "transformer_blocks.3.ff.net.2" in compute
    )
    assert set(compute) < set(every)


def test_layer_selection_skips_untileable_widths() -> None:
    assert not fp8.is_fp8_linear(torch.nn.Linear(24, 32), "transformer_blocks.0.ff.net.2")
    assert fp8.is_fp8_linear(torch.nn.Linear(32, 32), "transformer_blocks.0.ff.net.2")
    assert not fp8.is_fp8_linear(torch.nn.Linear(32, 96), "transformer_blocks.0.norm1.linear")


def test_unknown_mode() -> None:
    with pytest.raises(ValueError, match="fp8 mode must be one of"):
        fp8.check_fp8_support("int4", torch.device("cpu"))


def test_missing_torchao_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fp8, "torchao_available", lambda: False)
    with pytest.raises(ValueError, match=r"motif-video\[fp8\]"):
        fp8.quantize_fp8(build_transformer("tiny"), "weight_only")


def test_dynamic_needs_a_recent_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fp8, "torchao_available", lambda: True)
    with pytest.raises(ValueError, match=r"needs a CUDA device with compute capability >= 8\.9"):
        fp8.quantize_fp8(build_transformer("tiny"), "dynamic")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    with pytest.raises(ValueError, match=r"this GPU has 8\.0"):
        fp8.check_fp8_support("dynamic", torch.device("cuda"))


def test_weight_only_on_cpu(tiny_model, tiny_inputs) -> None:
    pytest.importorskip("torchao", reason="torchao (the fp8 extra) is not installed")
    x, text = tiny_inputs["hidden_states"], tiny_inputs["encoder_hidden_states"]
    with torch.no_grad():
        exact = tiny_model(x, 500.0, text).sample
        fp8.quantize_fp8(tiny_model, "weight_only")
        quantized = tiny_model(x, 500.0, text).sample
    assert (
        type(tiny_model.transformer_blocks[0].attn.to_q.weight) is not torch.nn.Parameter
    )  # a float8 tensor
    assert type(tiny_model.proj_out.weight) is torch.nn.Parameter  # the head stays in full precision
    assert type(tiny_model.transformer_blocks[0].norm1.linear.weight) is torch.nn.Parameter
    error = ((quantized - exact).norm() / exact.norm()).item()
    assert 0 < error < 0.1


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("mode", ["weight_only", "dynamic"])
def test_fp8_on_gpu(mode: str, tiny_inputs) -> None:
    pytest.importorskip("torchao", reason="torchao (the fp8 extra) is not installed")
    if mode == "dynamic" and torch.cuda.get_device_capability() < (8, 9):
        pytest.skip("dynamic FP8 needs compute capability >= 8.9")
    torch.manual_seed(0)
    model = build_transformer("tiny", device="cuda").to(torch.bfloat16).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.05)
        inputs = {k: v.to("cuda", torch.bfloat16) for k, v in tiny_inputs.items()}
        exact = model(inputs["hidden_states"], 500.0, inputs["encoder_hidden_states"]).sample.float()
        fp8.quantize_fp8(model, mode)
        out = model(inputs["hidden_states"], 500.0, inputs["encoder_hidden_states"]).sample.float()
    assert ((out - exact).norm() / exact.norm()).item() < 0.1
