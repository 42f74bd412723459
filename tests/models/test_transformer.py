"""Behaviour of our transformer beyond parity: mask-free path, feature taps, checkpointing, routing, errors."""

import pytest
import torch

from motif_video import MotifVideoTransformer, Route
from motif_video.models import trim_text_padding
from motif_video.testing import tiny_transformer

from .helpers import TINY, inputs


@pytest.fixture(scope="module")
def model():
    return tiny_transformer(seed=11, std=0.2)


def _padded(kwargs, valid=(5, 3), total=9):
    """Pad each sample's text to `total` tokens with garbage after its valid length."""
    b = len(valid)
    text = torch.randn(b, total, TINY["text_embed_dim"])
    mask = torch.zeros(b, total, dtype=torch.bool)
    for i, n in enumerate(valid):
        text[i, :n] = kwargs["encoder_hidden_states"][i, :n]
        mask[i, :n] = True
    return {**kwargs, "encoder_hidden_states": text, "encoder_attention_mask": mask}


def test_masked_equals_trimmed(model):
    kwargs = inputs(batch=1, text=5)
    padded = _padded(kwargs, valid=(5,), total=12)
    with torch.no_grad():
        trimmed = model(**kwargs).sample  # no mask at all
        masked = model(**padded).sample
    assert (trimmed - masked).abs().max() <= 1e-5


def test_padding_content_is_ignored(model):
    kwargs = _padded(inputs(batch=2, text=5))
    other = dict(kwargs, encoder_hidden_states=kwargs["encoder_hidden_states"].clone())
    other["encoder_hidden_states"][0, 5:] = 100.0
    with torch.no_grad():
        assert (model(**kwargs).sample - model(**other).sample).abs().max() <= 1e-5


def test_mask_matters_when_padding_is_attended(model):
    kwargs = _padded(inputs(batch=1, text=5), valid=(5,), total=12)
    unmasked = dict(kwargs, encoder_attention_mask=None)
    with torch.no_grad():
        assert (model(**kwargs).sample - model(**unmasked).sample).abs().max() > 1e-3


def test_trim_text_padding():
    states = torch.randn(2, 6, 4)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 0]])
    trimmed, trimmed_mask = trim_text_padding(states, mask)
    assert trimmed.shape == (2, 3, 4) and torch.equal(trimmed, states[:, :3])
    assert trimmed_mask.tolist() == [[True, True, True], [True, True, False]]
    full, none = trim_text_padding(states, torch.tensor([[1, 1, 1, 0, 0, 0]] * 2))
    assert full.shape == (2, 3, 4) and none is None  # every kept token valid: no mask at all
    with pytest.raises(ValueError, match="masks every text token"):
        trim_text_padding(states, torch.zeros(2, 6))


def test_features_do_not_change_sample(model):
    kwargs = inputs()
    with torch.no_grad():
        plain = model(**kwargs)
        tapped = model(**kwargs, return_features=[0, "single_transformer_blocks.1", 4])
    assert plain.features == {}
    assert torch.equal(plain.sample, tapped.sample)
    assert set(tapped.features) == {0, "single_transformer_blocks.1", 4}
    n_tokens = 3 * 4 * 6
    assert tapped.features[0].shape == (2, n_tokens, 32)
    sample, features = model(**kwargs, return_dict=False, return_features=[1])
    assert torch.equal(sample, plain.sample) and set(features) == {1}


def test_unknown_feature_name(model):
    with pytest.raises(ValueError, match="unknown feature block 'blocks.3'"):
        model(**inputs(), return_features=["blocks.3"])
    with pytest.raises(ValueError, match="feature block index must be in 0..4"):
        model(**inputs(), return_features=[5])


def test_gradient_checkpointing_gives_same_values_and_gradients():
    def loss_and_grads(checkpointing):
        model = tiny_transformer(seed=12, std=0.2).train()
        if checkpointing:
            model.enable_gradient_checkpointing()
        out = model(**inputs()).sample
        loss = out.pow(2).mean()
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    loss_a, grads_a = loss_and_grads(False)
    loss_b, grads_b = loss_and_grads(True)
    assert torch.equal(loss_a, loss_b)
    assert grads_a.keys() == grads_b.keys() and len(grads_a) > 50
    for name in grads_a:
        assert torch.allclose(grads_a[name], grads_b[name], atol=1e-6), name


def test_routes_ignored_in_eval_and_ratio_zero_is_dense(model):
    kwargs = inputs()
    with torch.no_grad():
        dense = model(**kwargs).sample
        routed_eval = model(**kwargs, routes=[Route(1, 3, 0.5)]).sample
        assert torch.equal(dense, routed_eval)  # inference is always dense
        model.train()
        try:
            zero = model(**kwargs, routes=[Route(0, 3, 0.0), Route(4, 4, 0.0)]).sample
            half = model(**kwargs, routes=[{"start_layer": 1, "end_layer": 3, "ratio": 0.5}]).sample
        finally:
            model.eval()
    assert torch.equal(dense, zero)
    assert not torch.allclose(dense, half)


def test_route_keeps_dropped_tokens_and_positions():
    """Inside a route, dropped tokens keep their pre-route values; kept tokens see their own RoPE positions."""
    model = tiny_transformer(seed=13, std=0.2).train()
    kwargs = inputs(batch=2)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        out = model(**kwargs, routes=[Route(1, 2, 0.5)], routing_generator=generator, return_features=[0, 2])
        keep = torch.Generator().manual_seed(3)
        from motif_video.models.routing import select_tokens

        index = select_tokens(2, out.features[0].shape[1], 0.5, torch.device("cpu"), keep)
        before, after = out.features[0], out.features[2]
        dropped = torch.ones_like(before[..., 0], dtype=torch.bool).scatter(1, index, False)
        assert torch.equal(after[dropped], before[dropped])
        assert not torch.allclose(after[~dropped], before[~dropped])
        # The kept tokens equal blocks 1..2 run by hand on just those tokens with their original RoPE positions.
        from motif_video.models.rope import rope_tables, video_position_ids
        from motif_video.models.routing import gather_tokens, scatter_tokens

        model.eval()
        x = model.x_embedder(kwargs["hidden_states"])
        temb = model.time_text_embed(kwargs["timestep"])
        y, mask, n_image = model._embed_context(kwargs["encoder_hidden_states"], None, None)
        cos, sin = rope_tables(video_position_ids(3, 4, 6), TINY["rope_axes_dim"], TINY["rope_theta"])
        blocks = model.encoder_blocks
        x, y = blocks[0](x, y, temb, (cos, sin), mask, n_image)
        kept, kept_rope = gather_tokens(x, index), (gather_tokens(cos, index), gather_tokens(sin, index))
        for block in blocks[1:3]:
            kept, y = block(kept, y, temb, kept_rope, mask, n_image)
        assert torch.allclose(scatter_tokens(x, kept, index), after, atol=1e-5)


def test_invalid_routes():
    model = tiny_transformer(seed=1).train()
    with pytest.raises(ValueError, match="must lie inside one of the block ranges"):
        model(**inputs(), routes=[Route(3, 4, 0.5)])  # crosses from the encoder side into the decoder
    with pytest.raises(ValueError, match="overlap"):
        model(**inputs(), routes=[Route(0, 2, 0.5), Route(2, 3, 0.5)])
    with pytest.raises(ValueError, match="ratio must be in"):
        Route(0, 1, 1.0)
    with pytest.raises(ValueError, match="unknown route keys"):
        Route.parse({"start": 0, "end_layer": 1, "ratio": 0.1})


def test_bad_inputs(model):
    kwargs = inputs(height=7)
    with pytest.raises(ValueError, match="must be divisible by the patch size"):
        model(**kwargs)
    with pytest.raises(ValueError, match="timestep must be a scalar or have shape"):
        model(**{**inputs(), "timestep": torch.ones(3)})
    t2v = MotifVideoTransformer(**{**TINY, "image_embed_dim": None})
    with pytest.raises(ValueError, match="text-to-video only"):
        t2v(**inputs(), image_embeds=torch.randn(2, 3, 24))
    with pytest.raises(ValueError, match="unknown attention_kwargs"):
        model(**inputs(), attention_kwargs={"temperature": 2})


def test_invalid_config():
    with pytest.raises(ValueError, match="rope_axes_dim"):
        MotifVideoTransformer(**{**TINY, "rope_axes_dim": [4, 4, 4]})
    with pytest.raises(ValueError, match="num_decoder_layers must be in 0..num_single_layers"):
        MotifVideoTransformer(**{**TINY, "num_decoder_layers": 9})
    with pytest.raises(ValueError, match="qk_norm"):
        MotifVideoTransformer(**{**TINY, "qk_norm": "layer_norm"})


def test_new_model_starts_at_zero_prediction():
    model = MotifVideoTransformer(**TINY)
    with torch.no_grad():
        assert model(**inputs()).sample.abs().max() == 0
