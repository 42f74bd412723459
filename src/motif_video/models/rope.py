"""3-D rotary position embedding as pure functions over position ids.

Positions are data: a token carries its integer (t, h, w) id, and the cos/sin tables are built from those ids.
Token routing and context parallelism gather ids together with tokens instead of rebuilding grids.
Tables are computed in float64 and returned in float32; the rotation itself runs in float32.
Pairs are interleaved: (x0, x1), (x2, x3), ... rotate together.
"""

from __future__ import annotations

import torch

from .chunking import DEFAULT_CHUNK_TOKENS, rowwise


def video_position_ids(
    frames: int, height: int, width: int, device: torch.device | str | None = None
) -> torch.Tensor:
    """Integer (t, h, w) ids of a token grid in t-major, then h, then w order: [frames * height * width, 3]."""
    grids = torch.meshgrid(
        torch.arange(frames, device=device),
        torch.arange(height, device=device),
        torch.arange(width, device=device),
        indexing="ij",
    )
    return torch.stack([g.reshape(-1) for g in grids], dim=-1)


def rope_tables(
    position_ids: torch.Tensor, axes_dim: tuple[int, ...] | list[int], theta: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables [..., sum(axes_dim)] (float32) for position ids [..., len(axes_dim)]."""
    if position_ids.shape[-1] != len(axes_dim):
        raise ValueError(
            f"position ids have {position_ids.shape[-1]} axes, rope_axes_dim has {len(axes_dim)}"
        )
    # float64 is unavailable on MPS; everywhere else the tables are built in double precision.
    dtype = torch.float32 if position_ids.device.type == "mps" else torch.float64
    angles = []
    for axis, dim in enumerate(axes_dim):
        if dim % 2:
            raise ValueError(f"every rope axis dimension must be even, got {list(axes_dim)}")
        freqs = 1.0 / theta ** (torch.arange(0, dim, 2, device=position_ids.device, dtype=dtype) / dim)
        angle = position_ids[..., axis].to(dtype)[..., None] * freqs  # [..., dim / 2]
        angles.append(angle.repeat_interleave(2, dim=-1))
    angle = torch.cat(angles, dim=-1)
    return angle.cos().float(), angle.sin().float()


def apply_rope(
    x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, chunk: int | None = DEFAULT_CHUNK_TOKENS
) -> torch.Tensor:
    """Rotate x [B, L, H, D] by tables [L, D] or [B, L, D]; computed in float32, returned in x's dtype (at
    inference `chunk` tokens at a time: `chunking.rowwise`)."""
    if cos.ndim == 2:
        cos, sin = cos[None, :, None, :], sin[None, :, None, :]
    else:
        cos, sin = cos[:, :, None, :], sin[:, :, None, :]
    return rowwise(_rotate, x, cos, sin, chunk=chunk)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    xf = x.float()
    x_even, x_odd = xf.unflatten(-1, (-1, 2)).unbind(-1)
    rotated = torch.stack([-x_odd, x_even], dim=-1).flatten(-2)  # (a, b) -> (-b, a)
    return (xf * cos + rotated * sin).to(x.dtype)
