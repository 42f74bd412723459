"""Fast attention kernels behind the one entry point (`attention.py` registers them by name).

| name             | kernel                                                  | devices / dtypes                | mask        |
|------------------|---------------------------------------------------------|---------------------------------|-------------|
| `sdpa_flash`     | torch SDPA restricted to FlashAttention                 | CUDA fp16/bf16 (sm80+); CPU any | key padding |
| `sdpa_cudnn`     | torch SDPA restricted to cuDNN attention                | CUDA fp16/bf16 (sm80+)          | key padding |
| `sdpa_efficient` | torch SDPA restricted to memory-efficient attention     | CUDA                            | any         |
| `flash3`         | FlashAttention 3 (`flash_attn_interface.flash_attn_func`) | CUDA Hopper (sm90), fp16/bf16 | key padding |
| `sage`           | SageAttention (`sageattention.sageattn`), 8-bit QK / PV | CUDA (sm80+), fp16/bf16         | key padding |
| `auto`           | `flash3` on Hopper in fp16/bf16, else torch SDPA (which picks flash / cuDNN / efficient itself) | any | any |

Masks. The only mask the model makes is a key-padding mask [B, 1, 1, Lk] (prompt padding; none at all after the
transformer trims trailing padding, which is the common case). Kernels that take no mask handle a key-padding mask
exactly by running each sample over its valid keys only (one kernel call per sample). Any other mask shape is
refused with a ValueError. `auto` never picks `sage` because SageAttention quantises (not exact); select it by name.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

Kernel = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def is_hopper(device: torch.device | None = None) -> bool:
    return torch.cuda.is_available() and torch.cuda.get_device_capability(device)[0] == 9


def per_sample_key_padding(
    kernel: Kernel, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None
) -> torch.Tensor:
    """Run a mask-free `kernel` on [B, L, H, D] tensors under a key-padding mask [B, 1, 1, Lk], exactly.

    Masked keys receive zero weight, so attending over only the valid keys of each sample gives the same result.
    """
    if mask is None:
        return kernel(q, k, v)
    if mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[2] != 1 or mask.shape[-1] != k.shape[1]:
        raise ValueError(
            f"this attention backend takes no mask except a key-padding mask [B, 1, 1, {k.shape[1]}]; "
            f"got mask shape {list(mask.shape)}; use backend 'sdpa', 'sdpa_efficient' or 'math'"
        )
    mask = mask.to(torch.bool).expand(q.shape[0], 1, 1, -1)
    if bool(mask.all()):
        return kernel(q, k, v)
    outputs = []
    for b in range(q.shape[0]):
        keep = mask[b, 0, 0].nonzero().squeeze(-1)
        outputs.append(kernel(q[b : b + 1], k[b : b + 1, keep], v[b : b + 1, keep]))
    return torch.cat(outputs, dim=0)


def _sdpa_with(backends: list[SDPBackend], name: str) -> Kernel:
    def kernel(
        q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        try:
            with sdpa_kernel(backends):
                out = F.scaled_dot_product_attention(
                    q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask
                )
        except RuntimeError as exc:
            raise ValueError(
                f"attention backend {name!r} cannot run on {q.device.type} {q.dtype} tensors "
                f"of shape {list(q.shape)} ({exc}); use 'auto' or 'sdpa'"
            ) from exc
        return out.transpose(1, 2)

    return kernel


_flash = _sdpa_with([SDPBackend.FLASH_ATTENTION], "sdpa_flash")
_cudnn = _sdpa_with([SDPBackend.CUDNN_ATTENTION], "sdpa_cudnn")
_efficient = _sdpa_with([SDPBackend.EFFICIENT_ATTENTION], "sdpa_efficient")


def sdpa_flash(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if q.device.type == "cpu":  # the CPU flash kernel takes masks
        return _flash(q, k, v, mask)
    return per_sample_key_padding(_flash, q, k, v, mask)


def sdpa_cudnn(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return per_sample_key_padding(_cudnn, q, k, v, mask)


def sdpa_efficient(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None
) -> torch.Tensor:
    return _efficient(q, k, v, mask)


def _check_half(name: str, q: torch.Tensor) -> None:
    if q.device.type != "cuda" or q.dtype not in (torch.float16, torch.bfloat16):
        raise ValueError(
            f"attention backend {name!r} needs CUDA float16/bfloat16 tensors, got {q.device.type} {q.dtype}"
        )


def _flash3_kernel(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    from flash_attn_interface import flash_attn_func

    out = flash_attn_func(q, k, v, causal=False)  # [B, L, H, D] layout
    return out[0] if isinstance(out, tuple) else out  # some releases also return the log-sum-exp


def flash3(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    _check_half("flash3", q)
    return per_sample_key_padding(_flash3_kernel, q, k, v, mask)


def _sage_kernel(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    from sageattention import sageattn

    return sageattn(q, k, v, tensor_layout="NHD", is_causal=False)


def sage(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    _check_half("sage", q)
    return per_sample_key_padding(_sage_kernel, q, k, v, mask)


def flash3_available() -> bool:
    return has_module("flash_attn_interface") and is_hopper()


def sage_available() -> bool:
    return has_module("sageattention") and torch.cuda.is_available()


@torch.compiler.assume_constant_result
def _flash3_usable() -> bool:
    # A constant while tracing, so that `torch.compile` of a block does not break the graph here.
    return has_module("flash_attn_interface") and is_hopper()


def auto_choice(q: torch.Tensor) -> str:
    """The backend `auto` uses for these tensors: FA3 on Hopper in half precision, else torch SDPA."""
    if q.device.type == "cuda" and q.dtype in (torch.float16, torch.bfloat16) and _flash3_usable():
        return "flash3"
    return "sdpa"
