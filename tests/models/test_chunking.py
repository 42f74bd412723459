"""Token-chunked row-wise work at inference (`models.chunking`): same numbers, slices actually taken."""

from __future__ import annotations

import pytest
import torch

from motif_video.models import chunking, rope
from motif_video.models.blocks import FeedForward, SingleStreamBlock
from motif_video.models.chunking import rowwise
from motif_video.models.normalization import RMSNorm
from motif_video.testing import tiny_transformer

from .helpers import inputs


def test_rowwise_equals_one_piece_and_broadcasts_size_one_tensors():
    x, table = torch.randn(2, 11, 3), torch.randn(1, 11, 3)
    scale = torch.randn(2, 1, 3)  # size 1 along the token dim: passed whole to every slice
    calls = []

    def fn(a, b, c):
        calls.append(a.shape[1])
        return torch.cat([a * b + c, a.pow(2)], dim=-1)

    with torch.no_grad():
        whole = fn(x, table, scale)
        calls.clear()
        sliced = rowwise(fn, x, table, scale, chunk=4)
    assert calls == [4, 4, 3]
    assert torch.equal(sliced, whole)


def test_rowwise_runs_in_one_piece_under_autograd_or_when_off():
    x = torch.randn(1, 9, 2, requires_grad=True)
    calls = []

    def fn(a):
        calls.append(a.shape[1])
        return a * 2

    rowwise(fn, x, chunk=2).sum().backward()  # grad enabled: one call, gradients flow
    with torch.no_grad():
        rowwise(fn, x, chunk=None)
        rowwise(fn, x, chunk=9)
    assert calls == [9, 9, 9]
    assert torch.equal(x.grad, torch.full_like(x, 2.0))
    with torch.no_grad(), pytest.raises(ValueError, match="positive number of tokens or None, got 0"):
        rowwise(fn, x, chunk=0)


def test_chunked_forward_matches_the_unchunked_one(monkeypatch):
    """5-token slices for the MLPs, QK-norm and RoPE (all set by `enable_forward_chunking`)."""
    model = tiny_transformer(seed=3, std=0.2)
    kwargs = inputs(batch=2, frames=3, height=8, width=12, text=7)  # 3 x 4 x 6 = 72 video tokens
    with torch.no_grad():
        model.disable_forward_chunking()
        whole = model(**kwargs).sample
        model.enable_forward_chunking(5)
        row_calls = []
        for cls, name in (
            (FeedForward, "_rows"),
            (SingleStreamBlock, "_mlp_and_out"),
            (RMSNorm, "_normalise"),
        ):
            original = getattr(cls, name)

            def spy(self, *args, _original=original):
                row_calls.append(args[0].shape[1])
                return _original(self, *args)

            monkeypatch.setattr(cls, name, spy)
        sliced = model(**kwargs).sample
    assert row_calls and max(row_calls) == 5
    rotated = []
    monkeypatch.setattr(
        rope, "_rotate", lambda x, cos, sin, _f=rope._rotate: rotated.append(x.shape[1]) or _f(x, cos, sin)
    )
    with torch.no_grad():
        model(**kwargs)
    assert rotated and max(rotated) == 5
    assert (sliced - whole).abs().max() <= 1e-5 * whole.abs().max()


def test_forward_chunking_is_on_by_default_and_validated():
    model = tiny_transformer(seed=0)
    sizes = {m.chunk_tokens for m in model.modules() if hasattr(m, "chunk_tokens")}
    assert sizes == {chunking.DEFAULT_CHUNK_TOKENS}
    with pytest.raises(ValueError, match="chunk_size must be a positive number of tokens or None, got 0"):
        model.enable_forward_chunking(0)
