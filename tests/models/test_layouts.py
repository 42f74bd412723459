"""Shared Cross-Attention: the paper's shared layout (B) against the diffusers layout (A) after the exact fold."""

import json

import pytest
import torch

from motif_video import MotifVideoTransformer
from motif_video.models.conversion import fold_shared_to_separate, to_separate_layout
from motif_video.testing import tiny_transformer

from .helpers import TINY, inputs


def _shared_model(bias: float = 0.0):
    """Small random weights everywhere (a calm network), strong cross-attention so its path dominates a change."""
    model = tiny_transformer(seed=5, layout="shared", std=0.05)
    with torch.no_grad():
        for block in model.single_transformer_blocks[:2]:
            block.cross_attn_query_proj.weight.normal_(0.0, 0.5)
            block.cross_attn_out_proj.weight.normal_(0.0, 0.5)
            block.cross_attn_query_norm.bias.fill_(bias)
            block.norm.linear.bias.normal_(0.0, 1.0)  # open the block's gate
    return model


def _io(image: bool = True):
    kwargs = inputs(text=6)
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[0, 4:] = False
    kwargs["encoder_attention_mask"] = mask
    if image:
        kwargs["image_embeds"] = torch.randn(
            2, 4, TINY["image_embed_dim"], generator=torch.Generator().manual_seed(7)
        )
    return kwargs


def test_fold_is_exact_with_zero_layernorm_bias():
    shared = _shared_model()
    separate = to_separate_layout(shared)
    assert separate.cross_attention_layout == "separate"
    with torch.no_grad():
        for image in (False, True):
            a = shared(**_io(image)).sample
            b = separate(**_io(image)).sample
            assert (a - b).abs().max() <= 1e-5
            assert a.abs().max() > 0.1


def test_cross_attention_matters_in_both_layouts():
    """Guard against a vacuous fold test: zeroing the cross-attention output changes the result."""
    shared = _shared_model()
    with torch.no_grad():
        before = shared(**_io()).sample
        for block in shared.single_transformer_blocks[:2]:
            block.cross_attn_out_proj.weight.zero_()
            block.cross_attn_out_proj.bias.zero_()
        assert (shared(**_io()).sample - before).abs().max() > 1e-3


def test_fold_refuses_nonzero_bias():
    shared = _shared_model(bias=0.05)
    with pytest.raises(ValueError, match="cross_attn_query_norm.bias is non-zero"):
        fold_shared_to_separate(shared.state_dict())


def test_layout_detected_on_load(tmp_path):
    shared = _shared_model(bias=0.05)  # not foldable: must load natively
    shared.save_pretrained(tmp_path / "b")
    loaded = MotifVideoTransformer.from_pretrained(tmp_path / "b")
    assert loaded.cross_attention_layout == "shared"
    assert any(k.endswith("cross_attn_query_proj.weight") for k in loaded.state_dict())
    with torch.no_grad():
        assert torch.equal(loaded(**_io()).sample, shared(**_io()).sample)


def test_layout_is_a_config_key_written_when_shared(tmp_path):
    """Absent means "separate" (the released checkpoint); the presets for new models say "shared"."""
    shared = MotifVideoTransformer(**TINY)
    separate = MotifVideoTransformer(**{**TINY, "cross_attention_layout": "separate"})
    default = MotifVideoTransformer(**{k: v for k, v in TINY.items() if k != "cross_attention_layout"})
    assert (shared.cross_attention_layout, default.cross_attention_layout) == ("shared", "separate")
    assert json.loads(shared.to_json_string())["cross_attention_layout"] == "shared"
    assert "cross_attention_layout" not in json.loads(separate.to_json_string())
    rebuilt = MotifVideoTransformer.from_config(json.loads(shared.to_json_string()))
    assert rebuilt.state_dict().keys() == shared.state_dict().keys()
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(shared) < count(separate)


def test_unknown_layout_rejected():
    with pytest.raises(ValueError, match="cross_attention_layout must be one of"):
        MotifVideoTransformer(**{**TINY, "cross_attention_layout": "merged"})
