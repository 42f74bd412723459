"""Loading never guesses: every problem is an error that names what is wrong."""

import json

import pytest
import torch
from safetensors.torch import save_file

from motif_video import MotifVideoTransformer
from motif_video.testing import tiny_transformer

WEIGHTS = "diffusion_pytorch_model.safetensors"


@pytest.fixture()
def saved(tmp_path):
    model = tiny_transformer(seed=2)
    model.save_pretrained(tmp_path / "m")
    return model, tmp_path / "m"


def test_round_trip_is_exact(saved):
    model, folder = saved
    loaded = MotifVideoTransformer.from_pretrained(folder)
    assert not loaded.training
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b)


def test_torch_dtype(saved):
    _, folder = saved
    loaded = MotifVideoTransformer.from_pretrained(folder, torch_dtype=torch.bfloat16)
    assert {p.dtype for p in loaded.parameters()} == {torch.bfloat16}


def test_subfolder(saved):
    _, folder = saved
    loaded = MotifVideoTransformer.from_pretrained(folder.parent, subfolder="m")
    assert loaded.config.num_layers == 2


def test_truncated_checkpoint(saved):
    _, folder = saved
    data = (folder / WEIGHTS).read_bytes()
    (folder / WEIGHTS).write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated"):
        MotifVideoTransformer.from_pretrained(folder)


def test_missing_and_unexpected_keys_are_listed(saved):
    model, folder = saved
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    del state["proj_out.bias"]
    state["extra.weight"] = torch.zeros(3)
    save_file(state, str(folder / WEIGHTS))
    with pytest.raises(ValueError) as err:
        MotifVideoTransformer.from_pretrained(folder)
    assert "1 missing: proj_out.bias" in str(err.value)
    assert "1 unexpected: extra.weight" in str(err.value)


def test_shape_mismatch_is_listed(saved):
    model, folder = saved
    config = json.loads((folder / "config.json").read_text())
    config["text_embed_dim"] = 48
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        ValueError,
        match=r"shape mismatch: context_embedder.linear_1.weight: stored \[32, 32\], model \[32, 48\]",
    ):
        MotifVideoTransformer.from_pretrained(folder)


def test_unknown_config_key(saved):
    _, folder = saved
    config = json.loads((folder / "config.json").read_text())
    config["use_magic"] = True
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"config keys this model does not know: \['use_magic'\]"):
        MotifVideoTransformer.from_pretrained(folder)


def test_pickle_refused_unless_allowed(saved):
    model, folder = saved
    (folder / WEIGHTS).unlink()
    torch.save(model.state_dict(), folder / "diffusion_pytorch_model.bin")
    with pytest.raises(ValueError, match="pickled weights .* refused"):
        MotifVideoTransformer.from_pretrained(folder)
    loaded = MotifVideoTransformer.from_pretrained(folder, allow_pickle=True)
    assert torch.equal(loaded.proj_out.weight, model.proj_out.weight)


def test_sharded_checkpoint(tmp_path):
    model = tiny_transformer(seed=4)
    model.save_pretrained(tmp_path / "s", max_shard_size="50KB")
    assert (tmp_path / "s" / "diffusion_pytorch_model.safetensors.index.json").is_file()
    loaded = MotifVideoTransformer.from_pretrained(tmp_path / "s")
    assert torch.equal(loaded.proj_out.weight, model.proj_out.weight)
    # Re-saving unsharded removes the stale shards and the index.
    model.save_pretrained(tmp_path / "s")
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["config.json", WEIGHTS]


def test_not_a_model_folder(tmp_path):
    with pytest.raises(ValueError, match="no config.json"):
        MotifVideoTransformer.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="neither an existing folder, a shipped model .* nor a Hub repo id"):
        MotifVideoTransformer.from_pretrained(tmp_path / "missing")


def test_unreachable_hub_names_local_folder_alternative(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="pass the local folder"):
        MotifVideoTransformer.from_pretrained(
            "someone/not-a-cached-model", subfolder="transformer", local_files_only=True
        )


def test_unsupported_loader_option(saved):
    _, folder = saved
    with pytest.raises(ValueError, match="unknown option colour='red'"):
        MotifVideoTransformer.from_pretrained(folder, colour="red")


def test_failed_save_leaves_previous_checkpoint_intact(saved, monkeypatch):
    model, folder = saved
    before = (folder / WEIGHTS).read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("diffusers.models.modeling_utils.ModelMixin.save_pretrained", broken)
    with pytest.raises(OSError):
        model.save_pretrained(folder)
    assert (folder / WEIGHTS).read_bytes() == before
    assert sorted(p.name for p in folder.parent.iterdir()) == ["m"]  # no temporary folder left behind
