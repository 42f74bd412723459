"""Timestep-aware blur of the image-to-video conditioning frame (the project's definition; see docs/conditioning.md).

No public formula exists for Motif-Video's "timestep-aware blur". motif-video defines it as a Gaussian blur of the
conditioning frame (pixels, before VAE encoding) whose standard deviation grows linearly with the flow noise level:

    blur_std_px(sigma) = strength * sigma * min(H, W) / 100

so at sigma = 1 (pure noise) and strength 1 the blur is 1% of the short side (7.4 px at 1280x736), and at sigma = 0
the frame is untouched. Training applies it with the sampled sigma of each example; inference (off by default, to
match the released pipeline) applies it at every step with that step's sigma. Both call `timestep_aware_blur`.
"""

from __future__ import annotations

import math

import torch

MIN_BLUR_STD_PX = 0.05  # below this a Gaussian kernel is the identity to float precision; skip the work


def blur_std_px(sigma: float, height: int, width: int, strength: float = 1.0) -> float:
    """Standard deviation in pixels of the conditioning blur at flow noise level `sigma` in [0, 1]."""
    if not 0.0 <= sigma <= 1.0:
        raise ValueError(f"sigma must be in [0, 1], got {sigma}")
    if strength < 0:
        raise ValueError(f"blur strength must be >= 0, got {strength}")
    return strength * sigma * min(height, width) / 100.0


def gaussian_kernel1d(std: float, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """Normalised 1-D Gaussian of radius ceil(3 std)."""
    radius = max(1, math.ceil(3.0 * std))
    x = torch.arange(-radius, radius + 1, dtype=torch.float64, device=device)
    k = torch.exp(-0.5 * (x / std) ** 2)
    return (k / k.sum()).to(dtype)


def gaussian_blur(images: torch.Tensor, std: float) -> torch.Tensor:
    """Separable Gaussian blur of [..., C, H, W] images with reflect padding; std <= MIN_BLUR_STD_PX is a no-op."""
    if std <= MIN_BLUR_STD_PX:
        return images
    shape = images.shape
    x = images.reshape(-1, 1, shape[-2], shape[-1])
    k = gaussian_kernel1d(std, torch.float32, images.device)
    r = k.numel() // 2
    r_h, r_w = min(r, shape[-2] - 1), min(r, shape[-1] - 1)  # reflect padding needs pad < size
    k_h, k_w = k[r - r_h : r + r_h + 1], k[r - r_w : r + r_w + 1]
    x = x.float()
    x = torch.nn.functional.pad(x, (0, 0, r_h, r_h), mode="reflect")
    x = torch.nn.functional.conv2d(x, (k_h / k_h.sum()).view(1, 1, -1, 1))
    x = torch.nn.functional.pad(x, (r_w, r_w, 0, 0), mode="reflect")
    x = torch.nn.functional.conv2d(x, (k_w / k_w.sum()).view(1, 1, 1, -1))
    return x.reshape(shape).to(images.dtype)


def timestep_aware_blur(
    images: torch.Tensor, sigma: float | torch.Tensor, strength: float = 1.0
) -> torch.Tensor:
    """Blur conditioning frames [B, ..., C, H, W] for noise level `sigma`: Gaussian, std `blur_std_px(sigma, H, W)`.

    `sigma` is one float for all, or a [B] tensor (training: one sampled noise level per example).
    """
    h, w = images.shape[-2], images.shape[-1]
    if isinstance(sigma, torch.Tensor) and sigma.numel() > 1:
        if sigma.numel() != images.shape[0]:
            raise ValueError(f"sigma has {sigma.numel()} values for a batch of {images.shape[0]} images")
        return torch.stack(
            [
                gaussian_blur(img, blur_std_px(float(s), h, w, strength))
                for img, s in zip(images, sigma.tolist())
            ]
        )
    return gaussian_blur(images, blur_std_px(float(sigma), h, w, strength))
