"""The analytic FLOP counter against torch's own counter on tiny models, and the headline number."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from motif_video.cli import main
from motif_video.flops import format_flops, forward_flops, video_flops
from motif_video.models import attention_backend
from motif_video.presets import build_transformer, preset_config


def counted_flops(model, batch: int, grid: tuple[int, int, int], text: int, image: int) -> int:
    t, h, w = grid
    hidden = torch.randn(batch, 33, t, h, w)
    states = torch.randn(batch, text, model.config.text_embed_dim)
    image_embeds = torch.randn(batch, image, model.config.image_embed_dim) if image else None
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), attention_backend("math"), counter:
        model(hidden, torch.full((batch,), 500.0), states, image_embeds=image_embeds)
    return counter.get_total_flops()


@pytest.mark.parametrize(
    ("overrides", "batch", "image"),
    [
        ({}, 1, 0),
        ({}, 2, 5),
        ({"enable_text_cross_attention_dual": True, "cross_attention_layout": "separate"}, 1, 3),
        ({"enable_text_cross_attention_single": False, "num_decoder_layers": 2}, 2, 0),
    ],
)
def test_matches_torch_flop_counter(overrides: dict, batch: int, image: int) -> None:
    model = build_transformer("tiny", **overrides).eval()
    grid, text = (3, 8, 12), 7
    expected = counted_flops(model, batch, grid, text, image)
    ours = forward_flops(dict(model.config), grid, text, image, batch).total
    assert ours == pytest.approx(expected, rel=1e-3)


def test_headline_numbers_at_default_size() -> None:
    config = preset_config("motif-video-2b")
    report = video_flops(config, (1280, 736, 121), text_tokens=512)
    assert report.video_tokens == 114_080
    # Issue 5: "about 10 PFLOP" per guided step, 94% of it attention.
    assert 2 * report.total == pytest.approx(10.25e15, rel=0.01)
    assert report.attention_fraction == pytest.approx(0.941, abs=0.002)
    # The decoder attends over 2N tokens: 4 (2N)^2 D per block.
    assert report.stages["decoder"].attention == 8 * 4 * (2 * 114_080) ** 2 * 1536


def test_flops_scale_with_batch_and_reject_bad_counts() -> None:
    config = preset_config("tiny")
    one = forward_flops(config, (3, 8, 12), 4)
    assert forward_flops(config, (3, 8, 12), 4, batch=3).total == 3 * one.total
    with pytest.raises(ValueError, match="text_tokens"):
        forward_flops(config, (3, 8, 12), 0)
    assert format_flops(1.025e16) == "10.25 PFLOP"


def test_info_prints_flops(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "motif-video-2b", "--size", "1280x736x121"]) == 0
    out = capsys.readouterr().out
    assert "per guided step (cond + uncond) 10.25 PFLOP" in out
    assert "I2V (4096 image tokens)" in out
