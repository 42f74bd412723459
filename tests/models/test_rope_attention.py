"""RoPE as pure functions and the attention entry point."""

import math

import pytest
import torch

from motif_video.models import (
    attention,
    attention_backend,
    available_attention_backends,
    set_attention_backend,
)
from motif_video.models.attention import get_attention_backend
from motif_video.models.rope import apply_rope, rope_tables, video_position_ids


def test_position_ids_are_t_major():
    ids = video_position_ids(2, 3, 4)
    assert ids.shape == (24, 3)
    assert ids[0].tolist() == [0, 0, 0] and ids[1].tolist() == [0, 0, 1] and ids[4].tolist() == [0, 1, 0]
    assert ids[12].tolist() == [1, 0, 0] and ids[-1].tolist() == [1, 2, 3]


def test_rope_tables_closed_form():
    ids = torch.tensor([[3, 5, 7]])
    cos, sin = rope_tables(ids, (4, 6, 6), theta=10000.0)
    assert cos.dtype == torch.float32 and cos.shape == (1, 16)
    # axis h (dims 4..9): frequencies 1 / 10000^(2j/6), each repeated for an interleaved pair
    for j in range(3):
        angle = 5 / 10000 ** (2 * j / 6)
        assert cos[0, 4 + 2 * j] == pytest.approx(math.cos(angle), abs=1e-7)
        assert cos[0, 5 + 2 * j] == pytest.approx(math.cos(angle), abs=1e-7)
        assert sin[0, 4 + 2 * j] == pytest.approx(math.sin(angle), abs=1e-7)


def test_rope_matches_reference_table():
    from diffusers.models.embeddings import get_1d_rotary_pos_embed

    ids = video_position_ids(3, 4, 5)
    cos, sin = rope_tables(ids, (16, 56, 56), theta=10000.0)
    for axis, (start, dim) in enumerate(((0, 16), (16, 56), (72, 56))):
        ref_cos, ref_sin = get_1d_rotary_pos_embed(
            dim, ids[:, axis].float(), theta=10000.0, use_real=True, freqs_dtype=torch.float64
        )
        assert torch.allclose(cos[:, start : start + dim], ref_cos.float(), atol=1e-7)
        assert torch.allclose(sin[:, start : start + dim], ref_sin.float(), atol=1e-7)


def test_apply_rope_rotates_interleaved_pairs():
    x = torch.tensor([[[[1.0, 0.0, 2.0, 3.0]]]])  # [B=1, L=1, H=1, D=4]
    angle = torch.tensor([[0.5, 0.5, 1.0, 1.0]])
    out = apply_rope(x, angle.cos(), angle.sin())
    expected = torch.tensor(
        [math.cos(0.5), math.sin(0.5), 2 * math.cos(1) - 3 * math.sin(1), 2 * math.sin(1) + 3 * math.cos(1)]
    )
    assert torch.allclose(out[0, 0, 0], expected, atol=1e-6)
    # per-sample tables (routed tokens) give the same result as the shared table
    per_sample = apply_rope(x, angle.cos()[None], angle.sin()[None])
    assert torch.equal(out, per_sample)


def test_apply_rope_keeps_dtype_and_norm():
    x = torch.randn(2, 6, 3, 16, dtype=torch.bfloat16)
    cos, sin = rope_tables(video_position_ids(1, 2, 3), (4, 6, 6), 10000.0)
    out = apply_rope(x, cos, sin)
    assert out.dtype == torch.bfloat16
    assert torch.allclose(out.float().norm(dim=-1), x.float().norm(dim=-1), rtol=1e-2)


@pytest.mark.parametrize("masked", [False, True])
def test_sdpa_matches_math(masked):
    q, k, v = (torch.randn(2, 7, 3, 16) for _ in range(3))
    mask = None
    if masked:
        mask = torch.ones(2, 1, 1, 7, dtype=torch.bool)
        mask[0, ..., 4:] = False
    reference = attention(q, k, v, mask, backend="math")
    for name in available_attention_backends():
        assert torch.allclose(attention(q, k, v, mask, backend=name), reference, atol=1e-5), name
    if masked:  # the mask has an effect
        assert not torch.allclose(attention(q, k, v, None, backend="math"), reference, atol=1e-3)


def test_backend_selection():
    assert get_attention_backend() == "auto"
    with attention_backend("math"):
        assert get_attention_backend() == "math"
    assert get_attention_backend() == "auto"
    with pytest.raises(ValueError, match="unknown attention backend 'fast'; known:"):
        set_attention_backend("fast")
