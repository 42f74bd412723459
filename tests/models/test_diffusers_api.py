"""diffusers' ModelMixin API on our transformer: loader options, layerwise casting, attention processors and
backends, single-file and GGUF loading, regional compile, and diffusers' cache configs."""

from __future__ import annotations

import pytest
import torch
from diffusers.hooks import FirstBlockCacheConfig, MagCacheConfig, TaylorSeerCacheConfig
from safetensors.torch import save_file

from motif_video import MotifVideoTransformer
from motif_video.models.layers import MotifAttnProcessor
from motif_video.perf.step_cache import share_cache_decisions
from motif_video.testing import tiny_transformer

from .helpers import inputs, reference_and_ours


def _out(model, kwargs=None, **extra):
    with torch.no_grad():
        return model(**(kwargs or inputs()), **extra).sample


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("api") / "m"
    tiny_transformer(3, std=0.2).save_pretrained(path)
    return path


def test_dtype_alias_and_variant_round_trip(folder, tmp_path):
    assert {
        p.dtype for p in MotifVideoTransformer.from_pretrained(folder, dtype=torch.bfloat16).parameters()
    } == {torch.bfloat16}
    model = MotifVideoTransformer.from_pretrained(folder)
    model.save_pretrained(tmp_path / "v", variant="fp16")
    assert sorted(p.name for p in (tmp_path / "v").iterdir()) == [
        "config.json", "diffusion_pytorch_model.fp16.safetensors"
    ]  # fmt: skip
    with pytest.raises(OSError, match="no file named diffusion_pytorch_model.safetensors"):
        MotifVideoTransformer.from_pretrained(tmp_path / "v")  # a variant-only folder, as diffusers
    loaded = MotifVideoTransformer.from_pretrained(tmp_path / "v", variant="fp16")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))


def test_device_map_and_low_cpu_mem_usage(folder):
    expected = _out(MotifVideoTransformer.from_pretrained(folder))
    for kwargs in ({"device_map": "cpu"}, {"low_cpu_mem_usage": False}):
        assert torch.equal(_out(MotifVideoTransformer.from_pretrained(folder, **kwargs)), expected)


def test_layerwise_casting_float8_storage():
    model = tiny_transformer(3, std=0.2).to(torch.bfloat16)
    kwargs = {k: v.bfloat16() if k != "timestep" else v for k, v in inputs(batch=1).items()}
    expected = _out(model, kwargs).float()
    model.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.bfloat16)
    assert model.transformer_blocks[0].ff.net[2].weight.dtype == torch.float8_e4m3fn
    actual = _out(model, kwargs)
    assert actual.dtype == torch.bfloat16
    # float8 weights: a few percent of the output's scale, never a crash or a different function.
    assert (actual.float() - expected).abs().max() <= 0.1 * expected.abs().max()


def test_attention_processors_are_listed_set_and_called():
    model = tiny_transformer(3, std=0.2)
    processors = model.attn_processors
    # 2 dual + 3 single self-attentions, and the separate cross-attention of the 2 encoder single blocks.
    assert len(processors) == 7 and all(isinstance(p, MotifAttnProcessor) for p in processors.values())

    class Counting(MotifAttnProcessor):
        calls = 0

        def attend(self, attn, q, k, v, mask):
            Counting.calls += 1
            return super().attend(attn, q, k, v, mask)

    expected = _out(model)
    model.set_attn_processor(Counting())
    assert torch.equal(_out(model), expected) and Counting.calls == 7
    model.set_attn_processor({name: MotifAttnProcessor() for name in processors})
    assert torch.equal(_out(model), expected)
    with pytest.raises(ValueError, match="does not match the number of attention layers"):
        model.set_attn_processor({"transformer_blocks.0.attn.processor": MotifAttnProcessor()})
    # diffusers' own processors expect diffusers' modules: refused when set (before: accepted, then a shape error)
    from diffusers.models.transformers.transformer_motif_video import MotifVideoAttnProcessor2_0

    with pytest.raises(ValueError, match="takes a MotifAttnProcessor .* got MotifVideoAttnProcessor2_0"):
        model.set_attn_processor(MotifVideoAttnProcessor2_0())
    assert torch.equal(_out(model), expected)


def test_fused_qkv_projections_compute_the_same():
    model = tiny_transformer(3, std=0.2, layout="shared")
    expected = _out(model)
    model.fuse_qkv_projections()
    assert hasattr(model.transformer_blocks[0].attn, "to_added_qkv")
    assert (_out(model) - expected).abs().max() <= 1e-5
    model.unfuse_qkv_projections()
    assert not hasattr(model.transformer_blocks[0].attn, "to_qkv")
    assert torch.equal(_out(model), expected)


def test_diffusers_attention_backend_against_reference():
    reference, ours = reference_and_ours(seed=4)
    kwargs = inputs()
    kwargs["encoder_attention_mask"] = torch.tensor([[1] * 7, [1] * 5 + [0] * 2])
    expected = _out(reference, kwargs)
    ours.set_attention_backend("native")
    assert {p._attention_backend.value for p in ours.attn_processors.values()} == {"native"}
    assert (_out(ours, kwargs) - expected).abs().max() <= 1e-5
    ours.reset_attention_backend()
    assert {p._attention_backend for p in ours.attn_processors.values()} == {None}


def test_from_single_file_safetensors(folder, tmp_path):
    model = MotifVideoTransformer.from_pretrained(folder)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "one.safetensors"))
    loaded = MotifVideoTransformer.from_single_file(tmp_path / "one.safetensors", config=folder)
    assert torch.equal(_out(loaded), _out(model))
    with pytest.raises(ValueError, match="only .safetensors and .gguf"):
        MotifVideoTransformer.from_single_file(tmp_path / "one.ckpt", config=folder)
    state = dict(model.state_dict())
    del state["proj_out.bias"]
    with pytest.raises(ValueError, match="1 missing: proj_out.bias"):
        MotifVideoTransformer.from_single_file(state, config=folder)


def test_from_single_file_gguf_quantized(folder, tmp_path):
    pytest.importorskip("gguf")
    from diffusers import GGUFQuantizationConfig
    from diffusers.quantizers.gguf.utils import GGUFLinear

    from motif_video.interop.gguf_files import write_gguf

    model = MotifVideoTransformer.from_pretrained(folder)
    write_gguf(model.state_dict(), tmp_path / "m.gguf", "Q8_0")
    loaded = MotifVideoTransformer.from_single_file(
        tmp_path / "m.gguf",
        config=folder,
        quantization_config=GGUFQuantizationConfig(compute_dtype=torch.float32),
    )
    assert any(isinstance(m, GGUFLinear) for m in loaded.modules())
    expected, actual = _out(model), _out(loaded)
    assert 0 < (actual - expected).abs().max() <= 0.02 * expected.abs().max()  # Q8_0: within 2 % of the scale


def test_from_pretrained_torchao_int8_quantized(folder):
    """diffusers' TorchAoConfig through our loader: the block linears hold int8 weights and the output stays
    within a few percent of the float model's."""
    pytest.importorskip("torchao")
    from diffusers import TorchAoConfig
    from torchao.quantization import Int8WeightOnlyConfig

    model = MotifVideoTransformer.from_pretrained(folder)
    loaded = MotifVideoTransformer.from_pretrained(
        folder, quantization_config=TorchAoConfig(Int8WeightOnlyConfig()), torch_dtype=torch.float32
    )
    assert (
        loaded.is_quantized and type(loaded.transformer_blocks[0].ff.net[2].weight).__name__ == "Int8Tensor"
    )
    expected, actual = _out(model), _out(loaded)
    assert 0 < (actual - expected).abs().max() <= 0.03 * expected.abs().max()


def test_diffusers_compile_repeated_blocks():
    model = tiny_transformer(3, std=0.2)
    expected = _out(model)
    model.compile_repeated_blocks(backend="eager")
    assert all(getattr(b, "_compiled_call_impl", None) is not None for b in model.repeated_blocks())
    assert (_out(model) - expected).abs().max() <= 1e-6


def _repeat(model, kwargs, context="cond"):
    """The same call twice in one cache context: the second may be skipped, and must then give the same output."""
    with torch.no_grad(), model.cache_context(context):
        return model(**kwargs).sample, model(**kwargs).sample


def test_first_block_cache_config_on_ddt_model_repeats_exactly_and_reports_skips():
    model = tiny_transformer(3, std=0.2)
    kwargs = inputs(batch=1)
    exact = _out(model, kwargs)
    model.enable_cache(FirstBlockCacheConfig(threshold=1e9))
    assert model.is_cache_enabled
    for context in ("cond", "uncond"):
        first, second = _repeat(model, kwargs, context)
        assert torch.equal(first, exact) and (second - exact).abs().max() <= 1e-5
    assert {name: r.skipped for name, r in model.cache_report().items()} == {"cond": [1], "uncond": [1]}
    model._reset_stateful_cache()  # what a pipeline call ends with: the report stays until the next run starts
    assert model.cache_report()["cond"].skipped == [1]
    _repeat(model, kwargs, "cond")
    assert list(model.cache_report()) == ["cond"]
    share_cache_decisions(model, "group")
    assert model._step_cache.process_group == "group"
    model.disable_cache()
    assert not model.is_cache_enabled and torch.equal(_out(model, kwargs), exact)


def test_diffusers_first_block_hooks_fail_on_the_ddt_decoder():
    """The measured reason for our stand-in: diffusers' hooks treat the decoder as more encoder blocks."""
    from diffusers.hooks import apply_first_block_cache

    from motif_video.models.compat import register_blocks_for_hooks

    model = tiny_transformer(3, std=0.2)
    register_blocks_for_hooks()
    apply_first_block_cache(model, FirstBlockCacheConfig(threshold=1e9))
    with pytest.raises(RuntimeError, match="size of tensor"):
        _repeat(model, inputs(batch=1))  # the tail's second stream is the encoder output, not text
    with pytest.raises(ValueError, match="MagCache"):
        tiny_transformer(3).enable_cache(MagCacheConfig(num_inference_steps=4))


def test_diffusers_caches_without_decoder_layers():
    """No DDT decoder: diffusers' own FirstBlockCache hooks run, and a repeated call returns the same prediction."""
    model = tiny_transformer(3, std=0.2, num_decoder_layers=0)
    kwargs = inputs(batch=1)
    exact = _out(model, kwargs)
    model.enable_cache(FirstBlockCacheConfig(threshold=1e9))
    assert model.cache_report() == {}  # diffusers' hooks, not our stand-in
    _, repeated = _repeat(model, kwargs)
    assert (repeated - exact).abs().max() <= 1e-5
    model.disable_cache()


def test_taylorseer_cache():
    model = tiny_transformer(3, std=0.2)
    model.enable_cache(TaylorSeerCacheConfig(cache_interval=2, disable_cache_before_step=1, max_order=1))
    kwargs = inputs(batch=1)
    outputs = []
    with torch.no_grad(), model.cache_context("cond"):
        for t in (900.0, 800.0, 700.0, 600.0):
            outputs.append(model(**{**kwargs, "timestep": t}).sample)
    model.disable_cache()
    exact = _out(model, {**kwargs, "timestep": 600.0})
    assert all(o.isfinite().all() for o in outputs)
    assert (outputs[-1] - exact).abs().max() < 0.5 * exact.abs().max()


def test_from_single_file_takes_the_configs_subfolder(folder, tmp_path):
    """diffusers' `subfolder`: the folder of `config` holding the transformer's config.json (before: a TypeError
    from the file reader it was handed to)."""
    import shutil

    model = MotifVideoTransformer.from_pretrained(folder)
    one = tmp_path / "one.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(one))
    for name in ("transformer", "denoiser"):
        (tmp_path / "pipe" / name).mkdir(parents=True)
        shutil.copy(folder / "config.json", tmp_path / "pipe" / name)
        loaded = MotifVideoTransformer.from_single_file(one, config=tmp_path / "pipe", subfolder=name)
        assert torch.equal(_out(loaded), _out(model))
    with pytest.raises(ValueError, match="has no subfolder 'vae'"):
        MotifVideoTransformer.from_single_file(one, config=tmp_path / "pipe", subfolder="vae")
    with pytest.raises(ValueError, match="config is a dict here: leave subfolder out"):
        MotifVideoTransformer.from_single_file(one, config=dict(model.config), subfolder="transformer")


def test_from_single_file_fetches_only_the_config_of_a_hub_id(folder, tmp_path, monkeypatch):
    """A Hub id as `config` is asked for its config.json alone (before: the whole repo, gigabytes of weights, to
    read one small file)."""
    import shutil

    from motif_video.hub import resolve_folder
    from motif_video.models import loading

    (tmp_path / "denoiser").mkdir()
    shutil.copy(folder / "config.json", tmp_path / "denoiser")
    asked = []

    def fetch(
        name, subfolder=None, allow_patterns=None, **hub
    ):  # a Hub download, as resolve_folder gives one
        if name != "someone/motif-video":
            return resolve_folder(name, subfolder=subfolder, allow_patterns=allow_patterns, **hub)
        asked.append((subfolder, allow_patterns))
        return folder if subfolder is None else tmp_path / subfolder

    monkeypatch.setattr(loading, "resolve_folder", fetch)
    model = MotifVideoTransformer.from_pretrained(folder)
    one = tmp_path / "one.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(one))
    for subfolder in (None, "denoiser"):
        loaded = MotifVideoTransformer.from_single_file(
            one, config="someone/motif-video", subfolder=subfolder
        )
        assert torch.equal(_out(loaded), _out(model))
    assert asked == [
        (None, ["config.json", "transformer/config.json"]),
        ("denoiser", ["denoiser/config.json"]),
    ]
