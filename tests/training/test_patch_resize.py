"""Patch resizing (recipes/small/patch_resize.py): the resized model computes the old one at r times the size,
pooled; the trainer trains the resized folder."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from recipes.small.patch_resize import resize_patch, resize_pretrained
from tests.models.helpers import inputs
from tests.training.conftest import tiny_overrides, write_random_cache

from motif_video.models import MotifVideoTransformer
from motif_video.testing import tiny_transformer
from motif_video.training.config import load_config
from motif_video.training.trainer import train


def test_resized_model_is_the_old_one_on_an_upsampled_latent_pooled():
    old = tiny_transformer(0, std=0.2, patch_size=2)
    new = resize_patch(old, 1).eval()
    assert new.config.patch_size == 1 and old.config.patch_size == 2
    assert new.x_embedder.proj.weight.shape[-2:] == (1, 1)
    assert new.proj_out.out_features == old.proj_out.out_features // 4
    old_state, new_state = old.state_dict(), new.state_dict()
    kept = [k for k in old_state if not k.startswith(("x_embedder.proj.", "proj_out."))]
    assert kept and all(torch.equal(old_state[k], new_state[k]) for k in kept)
    assert torch.equal(old_state["x_embedder.proj.bias"], new_state["x_embedder.proj.bias"])

    x = inputs(batch=1, frames=2, height=4, width=6)
    upsampled = {**x, "hidden_states": x["hidden_states"].repeat_interleave(2, -1).repeat_interleave(2, -2)}
    with torch.no_grad():
        expected = F.avg_pool3d(old(**upsampled).sample, kernel_size=(1, 2, 2))
        got = new(**x).sample
    assert got.shape == (1, 16, 2, 4, 6)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    # ... and not just the old model at the original size.
    with torch.no_grad():
        same_size = F.interpolate(old(**inputs(batch=1, frames=2, height=4, width=6)).sample, size=(2, 4, 6))
    assert (got - same_size).abs().max() > 1e-2


def test_resize_keeps_the_models_dtype_and_warns_of_nothing(diffusers_warnings):
    """The resized model has weights of its own in the old one's dtype, made without a `.to(dtype)` (on which
    diffusers warned of modules to keep in float32, naming none: `[]`)."""
    old = tiny_transformer(0, patch_size=2)
    new = resize_patch(old, 1)
    assert diffusers_warnings == []
    assert all(
        a.data_ptr() != b.data_ptr() for a, b in zip(old.state_dict().values(), new.state_dict().values())
    )
    assert {p.dtype for p in resize_patch(old.to(torch.bfloat16), 1).parameters()} == {torch.bfloat16}


def test_resize_refuses_a_patch_that_does_not_divide():
    model = tiny_transformer(0, patch_size=2)
    assert resize_patch(model, 2) is model
    for bad in (0, 3, 4, 1.0):
        with pytest.raises(ValueError, match="positive divisor of the model's patch size 2"):
            resize_patch(model, bad)


def test_trainer_trains_the_resized_pretrained_model(tmp_path):
    tiny_transformer(0, patch_size=2).save_pretrained(tmp_path / "pretrained")
    resize_pretrained(tmp_path / "pretrained", tmp_path / "resized", 1)
    cache = write_random_cache(tmp_path / "cache", count=2)
    overrides = tiny_overrides(tmp_path / "run", cache, max_steps=2)
    config = load_config(None, [*overrides, f"model.pretrained={tmp_path / 'resized'}"])
    result = train(config)
    assert len(result.losses) == 2
    exported = MotifVideoTransformer.from_pretrained(tmp_path / "run" / "transformer")
    assert exported.config.patch_size == 1

    # the former trainer key: an error that says where resizing went; null (earlier runs' config.json) is dropped
    with pytest.raises(ValueError, match=r"model.resize_patch=1 is no longer a trainer key.*patch_resize.py"):
        load_config(None, [*tiny_overrides(tmp_path / "bad", cache), "model.resize_patch=1"])
    assert load_config(None, [*overrides, "model.resize_patch=null"]).model.preset == "tiny"
