"""Input embeddings: 3-D patches, timestep, text and image tokens; and the inverse patch layout."""

from __future__ import annotations

import math

import torch
from torch import nn


def timestep_sinusoid(timestep: torch.Tensor, dim: int = 256, max_period: float = 10000.0) -> torch.Tensor:
    """[B] timesteps on the 0..1000 scale -> [B, dim] float32 features laid out as [cos | sin]."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timestep.device) / half
    )
    angle = timestep.float()[:, None] * freqs[None]
    return torch.cat([angle.cos(), angle.sin()], dim=-1)


class MLPEmbedder(nn.Module):
    """Linear -> SiLU -> Linear."""

    def __init__(self, in_dim: int, dim: int) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, dim)
        self.act = nn.SiLU()
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(x)))


class TimestepEmbedding(nn.Module):
    """Timestep (0..1000) -> conditioning vector temb [B, D]."""

    frequency_dim = 256

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.timestep_embedder = MLPEmbedder(self.frequency_dim, dim)

    def forward(self, timestep: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """`dtype`: the model's compute dtype (that of the video tokens; with layerwise casting the weights are
        stored in another); default: the weights' dtype when it is half precision, else float32."""
        features = timestep_sinusoid(timestep, self.frequency_dim)
        if dtype is None:
            weight_dtype = self.timestep_embedder.linear_1.weight.dtype
            dtype = weight_dtype if weight_dtype in (torch.float16, torch.bfloat16) else features.dtype
        return self.timestep_embedder(features.to(dtype))


class GuidanceEmbedding(TimestepEmbedding):
    """Guidance scale -> vector added to temb [B, D], for guidance-distilled students (Meng et al. 2023).

    Embedded like the timestep: the sinusoid of `scale_factor * g` (scales 0..10 span the timestep range 0..1000)
    through an MLP. The MLP's output layer is zero-initialised by the transformer, so a new student starts as its
    teacher.
    """

    scale_factor = 100.0

    def forward(self, guidance: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        return super().forward(guidance.float() * self.scale_factor, dtype)


class PatchEmbed(nn.Module):
    """[B, C, T, H, W] latents -> [B, T' H' W', D] tokens (t-major, then h, then w)."""

    def __init__(self, in_channels: int, dim: int, patch_size: int, patch_size_t: int) -> None:
        super().__init__()
        patch = (patch_size_t, patch_size, patch_size)
        self.proj = nn.Conv3d(in_channels, dim, kernel_size=patch, stride=patch)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.proj(latents).flatten(2).transpose(1, 2)


class TextProjection(nn.Module):
    """Text-encoder states -> model width: Linear -> GELU(tanh) -> Linear."""

    def __init__(self, in_dim: int, dim: int) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, dim)
        self.act = nn.GELU(approximate="tanh")
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(x)))


class ImageProjection(nn.Module):
    """SigLIP image tokens -> model width: LayerNorm -> Linear -> GELU -> Linear -> LayerNorm (I2V)."""

    def __init__(self, in_dim: int, dim: int) -> None:
        super().__init__()
        self.norm_in = nn.LayerNorm(in_dim)
        self.linear_1 = nn.Linear(in_dim, in_dim)
        self.act = nn.GELU()
        self.linear_2 = nn.Linear(in_dim, dim)
        self.norm_out = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm_out(self.linear_2(self.act(self.linear_1(self.norm_in(x)))))


def unpatchify(
    tokens: torch.Tensor, grid: tuple[int, int, int], patch_size: int, patch_size_t: int
) -> torch.Tensor:
    """[B, T' H' W', C p_t p p] -> [B, C, T' p_t, H' p, W' p]; channel index inside a patch is c, then t, h, w."""
    t, h, w = grid
    b = tokens.shape[0]
    x = tokens.reshape(b, t, h, w, -1, patch_size_t, patch_size, patch_size)
    x = x.permute(0, 4, 1, 5, 2, 6, 3, 7)  # [B, C, T', p_t, H', p, W', p]
    return x.reshape(b, x.shape[1], t * patch_size_t, h * patch_size, w * patch_size)
