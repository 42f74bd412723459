"""Every attention backend against the float32 `math` reference, with and without a key-padding mask."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from motif_video.models import attention, attention_backend, available_attention_backends
from motif_video.models import attention_kernels as kernels
from motif_video.models.attention import get_attention_backend

CPU_BACKENDS = ["auto", "sdpa", "sdpa_flash"]
GPU_BACKENDS = ["sdpa_cudnn", "sdpa_efficient", "flash3", "sage"]
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def qkv(batch: int = 2, lq: int = 40, lk: int = 40, device: str = "cpu", dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(batch, n, 4, 32, generator=g).to(device, dtype) for n in (lq, lk, lk)]


def key_padding(batch: int, lk: int, valid: list[int], device: str = "cpu") -> torch.Tensor:
    mask = torch.zeros(batch, 1, 1, lk, dtype=torch.bool, device=device)
    for b, n in enumerate(valid):
        mask[b, ..., :n] = True
    return mask


@pytest.mark.parametrize("name", CPU_BACKENDS)
@pytest.mark.parametrize("masked", [False, True])
def test_cpu_backends_match_math(name: str, masked: bool) -> None:
    q, k, v = qkv()
    mask = key_padding(2, 40, [40, 23]) if masked else None
    expected = attention(q, k, v, mask, backend="math")
    with attention_backend(name):
        out = attention(q, k, v, mask)
    torch.testing.assert_close(out, expected, atol=2e-6, rtol=1e-5)


def test_masked_rows_differ_from_unmasked() -> None:
    """The mask matters: the comparison above can fail."""
    q, k, v = qkv()
    masked = attention(q, k, v, key_padding(2, 40, [40, 23]), backend="math")
    assert (masked[1] - attention(q, k, v, None, backend="math")[1]).abs().max() > 1e-2


@pytest.mark.parametrize("lq", [40, 7])
def test_per_sample_key_padding_is_exact(lq: int) -> None:
    """The wrapper that gives mask-free kernels (FA3, Sage, CUDA flash) a key-padding mask."""
    q, k, v = qkv(lq=lq)
    mask = key_padding(2, 40, [17, 31])

    def mask_free(q, k, v):
        return F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        ).transpose(1, 2)

    out = kernels.per_sample_key_padding(mask_free, q, k, v, mask)
    torch.testing.assert_close(out, attention(q, k, v, mask, backend="math"), atol=2e-6, rtol=1e-5)


def test_other_masks_are_refused() -> None:
    q, k, v = qkv()
    full = torch.ones(2, 1, 40, 40, dtype=torch.bool)
    with pytest.raises(ValueError, match="key-padding mask"):
        kernels.per_sample_key_padding(lambda q, k, v: q, q, k, v, full)


def test_auto_is_the_default_and_picks_sdpa_on_cpu() -> None:
    assert get_attention_backend() == "auto"
    q, _, _ = qkv()
    assert kernels.auto_choice(q) == "sdpa"
    assert kernels.auto_choice(q.bfloat16()) == "sdpa"


def test_unknown_and_unavailable_backends_are_errors() -> None:
    with pytest.raises(ValueError, match="unknown attention backend 'nope'"), attention_backend("nope"):
        pass
    if not torch.cuda.is_available():
        assert not set(GPU_BACKENDS) & set(available_attention_backends())
        with pytest.raises(ValueError, match="not available here"), attention_backend("flash3"):
            pass


def test_half_precision_kernels_refuse_cpu_tensors() -> None:
    q, k, v = qkv()
    with pytest.raises(ValueError, match="needs CUDA float16/bfloat16"):
        kernels.flash3(q, k, v, None)
    with pytest.raises(ValueError, match="needs CUDA float16/bfloat16"):
        kernels.sage(q, k, v, None)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("name", CPU_BACKENDS + GPU_BACKENDS)
@pytest.mark.parametrize("masked", [False, True])
def test_gpu_backends_match_math(name: str, masked: bool) -> None:
    if name not in available_attention_backends():
        pytest.skip(f"backend {name} is not installed / not supported on this GPU")
    q, k, v = qkv(lq=300, lk=300, device="cuda", dtype=torch.bfloat16)
    mask = key_padding(2, 300, [300, 177], device="cuda") if masked else None
    expected = attention(q, k, v, mask, backend="math").float()
    with attention_backend(name):
        out = attention(q, k, v, mask).float()
    if name == "sage":  # 8-bit quantised attention: close, not exact
        assert F.cosine_similarity(out.flatten(), expected.flatten(), dim=0) > 0.995
    else:
        torch.testing.assert_close(out, expected, atol=2e-2, rtol=2e-2)
