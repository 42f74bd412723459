"""The one attention entry point of the model, with pluggable backends.

Every attention call in the transformer goes through `attention(q, k, v, mask)` with tensors laid out as
[batch, tokens, heads, head_dim]. Backends are plain functions registered by name; the one used is chosen per model
(`use_attention_backend(model, name)`: each attention module keeps its own, applied from outside like compile), else
per context (`attention_backend("name")`), else as the process default (`set_attention_backend`). The default, `auto`, picks per call
from the tensors' device and dtype (FlashAttention 3 on Hopper in half precision, else torch SDPA). The fast
kernels (`sdpa_flash`, `sdpa_cudnn`, `sdpa_efficient`, `flash3`, `sage`) and their mask rules are described in
`attention_kernels.py`; each is tested against `math`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F

from . import attention_kernels as kernels

AttentionFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]
Backend = str | AttentionFn  # a registered backend's name, or the function itself

_BACKENDS: dict[str, AttentionFn] = {}
_BACKEND_AVAILABLE: dict[str, Callable[[], bool]] = {}
_active: str = "auto"


def register_attention_backend(
    name: str, fn: AttentionFn, available: Callable[[], bool] = lambda: True
) -> None:
    """Register `fn(q, k, v, mask) -> out` ([B, L, H, D] in and out; mask is bool [B, 1, 1|Lq, Lk] or None)."""
    _BACKENDS[name] = fn
    _BACKEND_AVAILABLE[name] = available


def available_attention_backends() -> list[str]:
    return [name for name, ok in _BACKEND_AVAILABLE.items() if ok()]


def _check_backend(name: str) -> str:
    if name not in _BACKENDS:
        raise ValueError(f"unknown attention backend {name!r}; known: {sorted(_BACKENDS)}")
    if not _BACKEND_AVAILABLE[name]():
        raise ValueError(
            f"attention backend {name!r} is not available here; available: {available_attention_backends()}"
        )
    return name


def set_attention_backend(name: str) -> None:
    """Make `name` the process-wide default backend."""
    global _active
    _active = _check_backend(name)


def get_attention_backend() -> str:
    return _active


@contextlib.contextmanager
def attention_backend(name: str) -> Iterator[None]:
    """Use backend `name` inside the `with` block."""
    global _active
    previous, _active = _active, _check_backend(name)
    try:
        yield
    finally:
        _active = previous


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    backend: Backend | None = None,
) -> torch.Tensor:
    """Scaled dot-product attention (scale 1/sqrt(head_dim)) over [B, L, H, D] tensors; `backend` a registered
    name or a function, None for the process default."""
    if callable(backend):
        return backend(q, k, v, mask)
    return _BACKENDS[backend or _active](q, k, v, mask)


def use_attention_backend(
    model: torch.nn.Module, backend: Backend | None
) -> dict[torch.nn.Module, Backend | None]:
    """Make every attention module of `model` use `backend` (None: the process default); returns each module's
    previous backend, for `restore_attention_backends`. Applied from outside, like compile: nothing global changes."""
    if isinstance(backend, str):
        _check_backend(backend)
    from .layers import QKVHeads

    previous = {}
    for module in model.modules():
        if isinstance(module, QKVHeads):
            previous[module] = module.attention_backend
            module.attention_backend = backend
    return previous


def restore_attention_backends(previous: dict[torch.nn.Module, Backend | None]) -> None:
    for module, backend in previous.items():
        module.attention_backend = backend


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    out = F.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask
    )
    return out.transpose(1, 2)


def _math(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Reference implementation in float32: every other backend is tested against this one."""
    qf, kf, vf = (t.float().transpose(1, 2) for t in (q, k, v))
    scores = qf @ kf.transpose(-1, -2) / q.shape[-1] ** 0.5
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return (scores.softmax(-1) @ vf).transpose(1, 2).to(q.dtype)


def _auto(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return _BACKENDS[kernels.auto_choice(q)](q, k, v, mask)


register_attention_backend("auto", _auto)
register_attention_backend("sdpa", _sdpa)
register_attention_backend("math", _math)
register_attention_backend("sdpa_flash", kernels.sdpa_flash)
register_attention_backend("sdpa_cudnn", kernels.sdpa_cudnn, torch.cuda.is_available)
register_attention_backend("sdpa_efficient", kernels.sdpa_efficient, torch.cuda.is_available)
register_attention_backend("flash3", kernels.flash3, kernels.flash3_available)
register_attention_backend("sage", kernels.sage, kernels.sage_available)
