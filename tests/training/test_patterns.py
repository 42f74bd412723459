"""The I2V objective's conditioning-pattern sampler (training.i2v) and how the trainer uses it."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from motif_video.training.config import I2VConfig, TrainConfig, from_dict
from motif_video.training.flow_matching import FlowMatching
from motif_video.training.i2v import condition_channels, pattern_channels, sample_pattern


def _draws(patterns, t=8, n=2000, **kw):
    g = torch.Generator().manual_seed(0)
    return [sample_pattern(patterns, t, g, **kw) for _ in range(n)]


def test_patterns_are_drawn_with_their_weights():
    weights = {"first": 0.4, "last": 0.2, "first_last": 0.2, "keyframes": 0.1, "prefix": 0.1}
    counts = Counter(name for name, _ in _draws(weights))
    for name, w in weights.items():
        assert abs(counts[name] / 2000 - w) < 0.035, (name, counts)
    assert set(name for name, _ in _draws({"last": 1.0, "prefix": 0.0}, n=50)) == {"last"}


def test_each_pattern_has_its_mask():
    for name, mask in _draws({"first": 1, "last": 1, "first_last": 1, "keyframes": 1, "prefix": 1}, n=400):
        on = mask.nonzero().flatten().tolist()
        assert set(mask.unique().tolist()) <= {0.0, 1.0}
        if name == "first":
            assert on == [0]
        elif name == "last":
            assert on == [7]
        elif name == "first_last":
            assert on == [0, 7]
        elif name == "keyframes":
            assert 1 <= len(on) <= 3
        else:
            assert on == list(range(len(on))) and 1 <= len(on) <= 3
    prefixes = {int(m.sum()) for n, m in _draws({"prefix": 1}, t=3, max_prefix=5, n=200)}
    assert prefixes == {1, 2}  # at most T - 1: something is left to generate
    keys = Counter(int(m.sum()) for n, m in _draws({"keyframes": 1}, max_keyframes=2, n=300))
    assert set(keys) == {1, 2}
    assert _draws({"last": 1}, t=1, n=1)[0][1].tolist() == [1.0]  # one latent frame: frame 0


def test_bad_pattern_config_is_refused():
    with pytest.raises(ValueError, match=r"unknown pattern\(s\) \['middle'\]"):
        from_dict(TrainConfig, {"i2v": {"patterns": {"middle": 1.0}}})
    with pytest.raises(ValueError, match="weights must be numbers >= 0"):
        I2VConfig(patterns={"first": -1.0})
    with pytest.raises(ValueError, match="at least one weight must be > 0"):
        I2VConfig(patterns={"first": 0.0})
    with pytest.raises(ValueError, match="max_prefix must be an integer >= 1"):
        I2VConfig(max_prefix=0)


def _objective(patterns):
    config = from_dict(
        TrainConfig, {"seed": 3, "i2v": {"probability": 1.0, "patterns": patterns, "blur_strength": 0.0}}
    )
    return FlowMatching(config)


def test_trainer_default_is_the_released_objective_and_patterns_reach_the_channels():
    x0 = torch.randn(2, 16, 5, 4, 6, generator=torch.Generator().manual_seed(1))
    noise, sigma = torch.randn_like(x0), torch.tensor([0.3, 0.8])
    hidden, first = _objective({"first": 1.0}).model_input(x0, noise, sigma, 33, draw_step=7)
    assert first and hidden[:, 16:].equal(condition_channels(x0, sigma, True, 0.0))
    hidden, first = _objective({"last": 1.0}).model_input(x0, noise, sigma, 33, draw_step=7)
    assert not first  # no first frame: no SigLIP tokens
    assert hidden[:, 32].flatten(2).amax(-1).tolist() == [[0, 0, 0, 0, 1]] * 2
    assert hidden[:, 16:32, 4].equal(x0[:, :, 4]) and hidden[:, 16:32, :4].eq(0).all()
    # the same step draws the same pattern (every rank, a resumed run)
    a, _ = _objective({"keyframes": 1.0, "prefix": 1.0}).model_input(x0, noise, sigma, 33, draw_step=11)
    b, _ = _objective({"keyframes": 1.0, "prefix": 1.0}).model_input(x0, noise, sigma, 33, draw_step=11)
    assert a.equal(b)
    mask = torch.tensor([1.0, 0, 1, 0, 0])
    torch.testing.assert_close(pattern_channels(x0, sigma, mask)[:, :16, 2], x0[:, :, 2])


def test_recipes_teach_the_patterns():
    from pathlib import Path

    from recipes.small.build import FINAL_STAGE, HERE, STAGES

    from motif_video.training.config import load_config

    lora = load_config(Path(__file__).parents[2] / "recipes/motif-video-2b/conditions-lora.yaml")
    assert lora.lora.rank > 0 and lora.i2v.probability > 0
    assert set(lora.i2v.patterns) == {"first", "last", "first_last", "keyframes", "prefix"}
    small = load_config(HERE / "config.yaml", list(FINAL_STAGE[3]))
    assert small.i2v.patterns == lora.i2v.patterns and FINAL_STAGE[0] in STAGES
