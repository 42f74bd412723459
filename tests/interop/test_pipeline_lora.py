"""The pipelines' LoRA API (diffusers' conventions): several adapters, weights, fuse / unfuse, unload."""

from __future__ import annotations

import copy

import pytest
import torch

from motif_video.interop import lora_keys as K
from motif_video.interop.checkpoint import released_state_dict
from motif_video.pipelines import MotifVideoPipeline
from motif_video.testing import tiny_transformer

from .helpers import MODULES, merge_by_hand, random_adapter, run


def bare_pipeline(transformer):
    """A pipeline around the transformer alone: the LoRA API touches nothing else."""
    return MotifVideoPipeline(
        scheduler=None, vae=None, text_encoder=None, tokenizer=None, transformer=transformer
    )


@pytest.fixture
def base():
    return tiny_transformer(0)


def test_two_loras_at_weights_equal_weights_merged_by_hand(base, tmp_path):
    a, b = random_adapter(base, seed=1), random_adapter(base, seed=2, rank=2, alpha=1.0)
    merged = copy.deepcopy(base)
    merge_by_hand(merged, [(a, 0.8), (b, 0.5)])
    expected = run(merged)

    pipe = bare_pipeline(copy.deepcopy(base))
    from safetensors.torch import save_file

    save_file(K.to_comfyui(a), str(tmp_path / "a.safetensors"))  # from a file, ComfyUI keys
    pipe.load_lora_weights(str(tmp_path / "a.safetensors"), adapter_name="style")
    pipe.load_lora_weights(K.to_kohya(b), adapter_name="detail")  # from a dict, kohya keys
    assert sorted(pipe.get_active_adapters()) == ["detail", "style"]
    pipe.set_adapters(["style", "detail"], adapter_weights=[0.8, 0.5])
    out = run(pipe.transformer)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    assert (out - run(base)).abs().max() > 1e-2  # the adapters do change the output

    pipe.set_adapters(["style", "detail"], weights=[0.8, 0.5])  # the transformer's keyword works too
    torch.testing.assert_close(run(pipe.transformer), expected, atol=1e-5, rtol=0)
    pipe.set_adapters(["style"], adapter_weights=[1.0])  # one adapter alone
    only_a = copy.deepcopy(base)
    merge_by_hand(only_a, [(a, 1.0)])
    torch.testing.assert_close(run(pipe.transformer), run(only_a), atol=1e-5, rtol=0)


def test_fuse_matches_unfused_and_unfuse_restores_weights_exactly(base):
    pipe = bare_pipeline(copy.deepcopy(base))
    pipe.load_lora_weights(K.to_comfyui(random_adapter(base, seed=1)), adapter_name="style")
    pipe.load_lora_weights(K.to_comfyui(random_adapter(base, seed=2)), adapter_name="detail")
    pipe.set_adapters(["style", "detail"], adapter_weights=[0.8, 0.5])
    unfused = run(pipe.transformer)
    before = {k: v.clone() for k, v in pipe.transformer.state_dict().items() if "lora_" not in k}

    pipe.fuse_lora()
    assert pipe.num_fused_loras == 2
    changed = [
        k for k, v in pipe.transformer.state_dict().items() if k in before and not torch.equal(v, before[k])
    ]
    assert "transformer_blocks.0.attn.to_q.base_layer.weight" in changed
    torch.testing.assert_close(run(pipe.transformer), unfused, atol=1e-5, rtol=0)

    pipe.unfuse_lora()
    after = {k: v for k, v in pipe.transformer.state_dict().items() if "lora_" not in k}
    assert all(torch.equal(after[k], before[k]) for k in before)  # bit-exact

    pipe.fuse_lora()
    fused = run(pipe.transformer)
    pipe.unload_lora_weights()  # unload after fuse, as in diffusers: the LoRA stays baked into the weights
    assert not any("lora_" in k for k in pipe.transformer.state_dict())
    torch.testing.assert_close(run(pipe.transformer), fused, atol=0, rtol=0)
    assert not torch.allclose(run(pipe.transformer), run(base))
    released_state_dict(pipe.transformer)  # and it exports (before: the base model was written)

    # a fused adapter deleted stays merged; another fused and unfused later leaves it there
    pipe = bare_pipeline(copy.deepcopy(base))
    pipe.load_lora_weights(K.to_comfyui(random_adapter(base, seed=1)), adapter_name="style")
    pipe.fuse_lora()
    style = run(pipe.transformer)
    pipe.delete_adapters("style")
    pipe.load_lora_weights(K.to_comfyui(random_adapter(base, seed=2)), adapter_name="detail")
    pipe.fuse_lora()
    pipe.unfuse_lora()
    pipe.delete_adapters("detail")
    torch.testing.assert_close(run(pipe.transformer), style, atol=1e-5, rtol=0)  # before: back to the base


def test_adapter_names_and_errors(base):
    pipe = bare_pipeline(copy.deepcopy(base))
    name = pipe.load_lora_weights(K.to_comfyui(random_adapter(base, seed=1)))
    assert name == "default_0"
    with pytest.raises(ValueError, match="already in use"):
        pipe.load_lora_weights(K.to_comfyui(random_adapter(base, seed=2)), adapter_name="default_0")
    with pytest.raises(ValueError, match="no known format"):
        pipe.load_lora_weights({"model.weird.key": torch.zeros(1)})
    pipe.delete_adapters("default_0")
    assert not pipe.get_active_adapters()


def test_lora_folders_and_weight_names(base, tmp_path):
    from safetensors.torch import save_file

    from motif_video.pipelines.lora import read_lora_file

    (tmp_path / "run").mkdir()
    save_file(K.to_comfyui(random_adapter(base, seed=1)), str(tmp_path / "run" / "style.safetensors"))
    state, _ = read_lora_file(tmp_path / "run")  # the folder's one .safetensors file
    assert any(k.startswith("diffusion_model.") for k in state)
    assert read_lora_file(tmp_path / "run", weight_name="style.safetensors")[0].keys() == state.keys()
    with pytest.raises(ValueError, match="has no other.safetensors"):
        read_lora_file(tmp_path / "run", weight_name="other.safetensors")
    save_file(K.to_kohya(random_adapter(base, seed=2)), str(tmp_path / "run" / "second.safetensors"))
    with pytest.raises(ValueError, match="holds 2 .safetensors files"):
        read_lora_file(tmp_path / "run")


def test_lora_state_dict_and_save_lora_weights_take_diffusers_calls(base, tmp_path):
    """diffusers' calls: `lora_state_dict` returns the tensors (the metadata with `return_lora_metadata`) and
    `save_lora_weights(dir, transformer_lora_layers=peft_state, transformer_lora_adapter_metadata=config)` writes a
    file that loads back to the same model (before: a (state, metadata) tuple, and a TypeError for that call)."""
    from peft.utils import get_peft_model_state_dict

    pipe = bare_pipeline(copy.deepcopy(base))
    pipe.load_lora_weights(K.to_comfyui(random_adapter(base, seed=1)), adapter_name="style")
    expected = run(pipe.transformer)
    layers = get_peft_model_state_dict(pipe.transformer, adapter_name="style")
    config = pipe.transformer.peft_config["style"].to_dict()
    file = MotifVideoPipeline.save_lora_weights(
        tmp_path / "d", transformer_lora_layers=layers, transformer_lora_adapter_metadata=config
    )
    state = MotifVideoPipeline.lora_state_dict(tmp_path / "d")
    assert isinstance(state, dict) and all(k.startswith("transformer.") for k in state)
    state, metadata = MotifVideoPipeline.lora_state_dict(file, return_lora_metadata=True)
    assert "lora_adapter_metadata" in metadata
    other = bare_pipeline(copy.deepcopy(base))
    other.load_lora_weights(tmp_path / "d")
    torch.testing.assert_close(run(other.transformer), expected, atol=1e-6, rtol=0)
    # the transformer itself in diffusers' place, as before; no pickle; only the main process writes
    MotifVideoPipeline.save_lora_weights(tmp_path / "t", pipe.transformer, adapter_name="style")
    assert MotifVideoPipeline.lora_state_dict(tmp_path / "t").keys() == state.keys()
    with pytest.raises(ValueError, match="safetensors only"):
        MotifVideoPipeline.save_lora_weights(tmp_path / "p", layers, safe_serialization=False)
    assert MotifVideoPipeline.save_lora_weights(tmp_path / "r", layers, is_main_process=False) is None
    assert not (tmp_path / "r").exists()


def peft_folder(base, folder, **config):
    """`folder` as peft's `save_pretrained` writes it (`adapter_model.safetensors`, `adapter_config.json`) for a
    LoRA on `base` with `config`; returns the peft-wrapped copy of `base`, to compare outputs with."""
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(copy.deepcopy(base), LoraConfig(target_modules=["to_q", "to_k"], **config))
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    model.save_pretrained(folder)
    return model.get_base_model()


def test_a_peft_folder_loads_at_the_alpha_of_its_adapter_config(base, tmp_path):
    """peft's `save_pretrained` keeps alpha in `adapter_config.json` only (before: ignored, so alpha read as r and
    this LoRA applied at a quarter of its strength); `alpha_pattern` and `rank_pattern` are peft's."""
    patterns = {"rank_pattern": {"transformer_blocks.0.attn.to_k": 2}, "alpha_pattern": {"to_q": 4.0}}
    peft_model = peft_folder(base, tmp_path / "peftdir", r=4, lora_alpha=16, **patterns)
    pipe = bare_pipeline(copy.deepcopy(base))
    pipe.load_lora_weights(str(tmp_path / "peftdir"))
    torch.testing.assert_close(run(pipe.transformer), run(peft_model), atol=1e-5, rtol=0)
    state, metadata = MotifVideoPipeline.lora_state_dict(tmp_path / "peftdir", return_lora_metadata=True)
    adapter = K.parse_lora(state, K.linear_shapes(base), metadata)
    assert adapter["transformer_blocks.1.attn.to_k"].alpha == 16.0
    assert adapter["transformer_blocks.0.attn.to_q"].alpha == 4.0
    assert adapter["transformer_blocks.0.attn.to_k"].rank == 2


def test_a_peft_config_that_is_not_the_weights_is_refused(base, tmp_path):
    import json

    peft_folder(base, tmp_path / "peftdir", r=4, lora_alpha=16)
    config = json.loads((tmp_path / "peftdir" / "adapter_config.json").read_text())
    (tmp_path / "peftdir" / "adapter_config.json").write_text(json.dumps({**config, "r": 8}))
    with pytest.raises(ValueError, match=r"have rank 4 but its peft config gives r=8"):
        bare_pipeline(copy.deepcopy(base)).load_lora_weights(str(tmp_path / "peftdir"))


def test_a_peft_adapter_on_the_hub_brings_its_adapter_config(base, tmp_path, monkeypatch):
    """A Hub repo holding peft's files: `adapter_config.json` is downloaded beside the weights and read."""
    import shutil

    import huggingface_hub
    from huggingface_hub.errors import EntryNotFoundError

    peft_model = peft_folder(base, tmp_path / "repo", r=4, lora_alpha=16)
    (tmp_path / "cache").mkdir()

    def download(repo_id, filename, **hub):  # the Hub as a folder; each file copied only when asked for
        if not (tmp_path / "repo" / filename).is_file():
            raise EntryNotFoundError(f"{repo_id} has no {filename}")
        return shutil.copy(tmp_path / "repo" / filename, tmp_path / "cache" / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    pipe = bare_pipeline(copy.deepcopy(base))
    pipe.load_lora_weights("user/peft-lora", weight_name="adapter_model.safetensors")
    torch.testing.assert_close(run(pipe.transformer), run(peft_model), atol=1e-5, rtol=0)


def test_rslora_loads_at_its_scale_and_dora_and_biases_are_named(base, tmp_path):
    """rsLoRA scales by alpha / sqrt(r) (before: read as alpha / r, half the strength at r=4); DoRA and LoRA biases
    are refused as such (before: "keys in no known format")."""
    import json

    peft_model = peft_folder(base, tmp_path / "rs", r=4, lora_alpha=8, use_rslora=True)
    pipe = bare_pipeline(copy.deepcopy(base))
    pipe.load_lora_weights(str(tmp_path / "rs"))
    torch.testing.assert_close(run(pipe.transformer), run(peft_model), atol=1e-5, rtol=0)
    to_q = random_adapter(base, seed=1, rank=4)[MODULES[0]]
    state, _ = K.to_diffusers({MODULES[0]: to_q})
    config = {"transformer.r": 4, "transformer.lora_alpha": 8, "transformer.use_rslora": True}
    metadata = {K.DIFFUSERS_METADATA_KEY: json.dumps(config)}
    shapes = K.linear_shapes(base)
    assert K.parse_lora(state, shapes, metadata)["transformer_blocks.0.attn.to_q"].alpha == 16.0

    peft_folder(base, tmp_path / "dora", r=4, lora_alpha=8, use_dora=True)
    with pytest.raises(ValueError, match=r"DoRA is not supported.*to_q\.lora_magnitude_vector"):
        bare_pipeline(copy.deepcopy(base)).load_lora_weights(str(tmp_path / "dora"))
    with pytest.raises(ValueError, match=r"DoRA is not supported \(the peft config has use_dora=true\)"):
        K.parse_lora(state, shapes, {K.DIFFUSERS_METADATA_KEY: '{"r": 4, "use_dora": true}'})
    peft_folder(base, tmp_path / "bias", r=4, lora_alpha=8, lora_bias=True)
    with pytest.raises(ValueError, match=r"LoRA biases are not supported.*to_q\.lora_B\.bias"):
        bare_pipeline(copy.deepcopy(base)).load_lora_weights(str(tmp_path / "bias"))


def test_a_lora_with_non_finite_values_is_refused(base, tmp_path):
    from safetensors.torch import save_file

    state = K.to_comfyui(random_adapter(base, seed=1))
    key = "diffusion_model.transformer_blocks.0.attn.to_q.alpha"
    save_file({**state, key: torch.tensor(float("inf"))}, str(tmp_path / "inf.safetensors"))
    pipe = bare_pipeline(copy.deepcopy(base))
    with pytest.raises(ValueError, match=rf"LoRA tensor {key} in .*inf\.safetensors holds 1 NaN or infinite"):
        pipe.load_lora_weights(str(tmp_path))
    with pytest.raises(ValueError, match=rf"LoRA tensor {key} in the LoRA state dict holds 1 NaN"):
        pipe.load_lora_weights({**state, key: torch.tensor(float("nan"))})
    assert not getattr(pipe.transformer, "peft_config", None)


def test_unknown_keywords_are_named_and_hotswap_replaces_an_adapter(base, tmp_path):
    """`adapter_nam="t"` was dropped without a word (the LoRA loaded as default_0), and hotswap=True was ignored
    (the second LoRA loaded beside the first); diffusers' hotswap now replaces the named adapter's weights."""
    a, b = ({m: v for m, v in random_adapter(base, seed=s).items() if m != MODULES[-1]} for s in (1, 2))
    pipe = bare_pipeline(copy.deepcopy(base))
    with pytest.raises(
        ValueError, match=r"unknown keyword arguments \['adapter_nam'\]; it takes adapter_name"
    ):
        pipe.load_lora_weights(K.to_comfyui(a), adapter_nam="t")
    with pytest.raises(ValueError, match=r"lora_state_dict got unknown keyword arguments \['weights_name'\]"):
        MotifVideoPipeline.lora_state_dict(K.to_comfyui(a), weights_name="x.safetensors")
    with pytest.raises(ValueError, match="use_safetensors=False"):
        pipe.load_lora_weights(K.to_comfyui(a), use_safetensors=False)
    assert not getattr(pipe.transformer, "peft_config", None)

    pipe.load_lora_weights(K.to_comfyui(a), adapter_name="t", force_download=False, low_cpu_mem_usage=False)
    with pytest.raises(
        ValueError, match=r"hotswap=True replaces a loaded adapter's weights.*\['t'\]\), not 'u'"
    ):
        pipe.load_lora_weights(K.to_comfyui(b), adapter_name="u", hotswap=True)
    with pytest.raises(
        ValueError, match=r"hotswap needs one rank and alpha.*differ on 1 modules \(single_trans"
    ):
        pipe.load_lora_weights(K.to_comfyui(random_adapter(base, seed=3)), adapter_name="t", hotswap=True)
    pipe.load_lora_weights(K.to_comfyui(b), adapter_name="t", hotswap=True)
    assert list(pipe.transformer.peft_config) == ["t"]
    fresh = bare_pipeline(copy.deepcopy(base))
    fresh.load_lora_weights(K.to_comfyui(b), adapter_name="t")
    torch.testing.assert_close(run(pipe.transformer), run(fresh.transformer), atol=1e-6, rtol=0)
