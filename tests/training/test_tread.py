"""TREAD routing through the model: ratio 0 is exactly dense; dropped tokens keep their values and positions."""

from __future__ import annotations

import pytest
import torch

from motif_video.models import Route
from motif_video.models.rope import rope_tables, video_position_ids
from motif_video.models.routing import gather_tokens, scatter_tokens, select_tokens
from motif_video.testing import tiny_transformer


def _inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 33, 3, 8, 8, generator=g)
    text = torch.randn(2, 5, 32, generator=g)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)
    return x, torch.tensor([300.0, 700.0]), text, mask


@pytest.mark.parametrize("route", [Route(2, 3, 0.0), Route(0, 3, 0.0), Route(4, 4, 0.0)])
def test_ratio_zero_equals_dense_exactly(route):
    model = tiny_transformer().train()
    x, t, text, mask = _inputs()
    dense = model(x, t, text, mask).sample
    routed = model(
        x, t, text, mask, routes=[route], routing_generator=torch.Generator().manual_seed(0)
    ).sample
    assert torch.equal(routed, dense)


def test_routes_are_inactive_in_eval_mode():
    model = tiny_transformer().eval()
    x, t, text, mask = _inputs()
    dense = model(x, t, text, mask).sample
    assert torch.equal(model(x, t, text, mask, routes=[Route(2, 3, 0.5)]).sample, dense)


def test_ratio_half_keeps_dropped_tokens_and_positions():
    """Route 2..3 at ratio 0.5: dropped tokens leave block 3 exactly as they entered block 2; kept tokens equal a
    manual run of blocks 2..3 on the gathered tokens with their own (gathered) RoPE positions."""
    model = tiny_transformer().train()
    x, t, text, mask = _inputs()
    route = Route(2, 3, 0.5)
    with torch.no_grad():
        out = model(x, t, text, mask, return_features=[1, 3], routes=[route],
                    routing_generator=torch.Generator().manual_seed(7))  # fmt: skip
        before, after = out.features[1], out.features[3]  # [B, N, D] entering block 2, leaving block 3
        keep = select_tokens(2, before.shape[1], 0.5, before.device, torch.Generator().manual_seed(7))
        dropped = torch.ones(before.shape[:2], dtype=torch.bool).scatter(1, keep, False)
        assert keep.shape[1] == before.shape[1] // 2
        assert torch.equal(after[dropped], before[dropped])
        assert not torch.allclose(after[~dropped], before[~dropped])

        # Manual reference: the same kept tokens through blocks 2 and 3 with gathered RoPE tables.
        dense = model.eval()(x, t, text, mask, return_features=[1])
        assert torch.equal(dense.features[1], before)  # the route starts at block 2: block 1 is unaffected
        y, emask, image_tokens = model._embed_context(text, mask, None)
        temb = model.time_text_embed(t)
        # y entering block 2 is the text stream after block 1: rebuild it by running blocks 0..1 densely.
        hx = model.x_embedder(x)
        rope = rope_tables(video_position_ids(3, 4, 4), model.config.rope_axes_dim, model.config.rope_theta)
        for block in model.encoder_blocks[:2]:
            hx, y = block(hx, y, temb, rope, emask, image_tokens)
        assert torch.allclose(hx, before)
        part, rope_part = (
            gather_tokens(hx, keep),
            (gather_tokens(rope[0], keep), gather_tokens(rope[1], keep)),
        )
        for block in model.encoder_blocks[2:4]:
            part, y = block(part, y, temb, rope_part, emask, image_tokens)
        torch.testing.assert_close(after, scatter_tokens(hx, part, keep), rtol=1e-5, atol=1e-6)


def test_route_validation_names_the_allowed_range():
    model = tiny_transformer().train()
    x, t, text, mask = _inputs()
    with pytest.raises(ValueError, match="block ranges"):
        model(x, t, text, mask, routes=[Route(3, 4, 0.5)])  # crosses from the encoder into the decoder
    with pytest.raises(ValueError, match="ratio"):
        Route(0, 1, 1.0)


def test_trainer_routes_on_the_drawn_fraction_of_steps(tmp_path, monkeypatch):
    import pytest
    from tests.training.conftest import tiny_overrides, write_random_cache

    from motif_video.models import MotifVideoTransformer
    from motif_video.training.config import load_config
    from motif_video.training.trainer import train

    cache = write_random_cache(tmp_path / "cache", count=4)
    route = [{"start_layer": 2, "end_layer": 3, "ratio": 0.5}]
    forward = MotifVideoTransformer.forward

    def routed_steps(name, **extra):
        seen = []

        def spy(self, *args, routes=None, **kwargs):
            seen.append(bool(routes))
            return forward(self, *args, routes=routes, **kwargs)

        monkeypatch.setattr(MotifVideoTransformer, "forward", spy)
        overrides = tiny_overrides(tmp_path / name, cache, max_steps=8, **{"tread.routes": route, **extra})
        train(load_config(None, overrides))
        return seen

    assert routed_steps("always") == [True] * 8
    assert routed_steps("never", **{"tread.probability": 0.0}) == [False] * 8
    half = routed_steps("half", **{"tread.probability": 0.5})
    assert len(half) == 8 and 0 < sum(half) < 8
    assert routed_steps("half-again", **{"tread.probability": 0.5}) == half  # drawn from (seed, step)
    with pytest.raises(ValueError, match=r"tread.probability must be in \[0, 1\], got 1.5"):
        load_config(None, tiny_overrides(tmp_path / "bad", cache, **{"tread.probability": 1.5}))
