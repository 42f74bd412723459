"""Image-to-video training: first-frame condition channels, the mask channel, and the timestep-aware blur.

Condition layout (as the released I2V pipeline): 16 channels holding the normalised latent of the first frame at
latent frame 0 and zeros elsewhere, plus one mask channel that is 1 at latent frame 0; T2V samples get zeros in
all 17 channels. The Wan VAE is causal, so latent frame 0 of a clip is the encoding of its first frame alone and
the condition comes from the clip's own latents without another VAE pass.

Timestep-aware blur (our formula; the report names the augmentation but not its form): the conditioning latent
frame is blurred by a Gaussian of standard deviation `max_std * sigma` latent pixels (separable, reflect padding,
radius ceil(3 std)), so at sigma -> 0 the condition is sharp and at pure noise it carries only coarse layout. The
blur discourages copying the conditioning frame verbatim at high noise. Inference uses the clean frame.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def gaussian_blur(x: torch.Tensor, std: float) -> torch.Tensor:
    """Blur x [B, C, H, W] with a separable Gaussian of `std` pixels (identity for std < 1e-3)."""
    if std < 1e-3:
        return x
    radius = max(1, math.ceil(3 * std))
    radius = min(radius, x.shape[-1] - 1, x.shape[-2] - 1)
    if radius < 1:
        return x
    offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (offsets / std) ** 2)
    kernel = (kernel / kernel.sum()).to(x.dtype)
    c = x.shape[1]
    x = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def blur_condition(frame: torch.Tensor, sigma: torch.Tensor, max_std: float) -> torch.Tensor:
    """frame [B, C, H, W], sigma [B]: each sample blurred with std = max_std * sigma_b."""
    return torch.cat(
        [gaussian_blur(frame[i : i + 1], max_std * float(sigma[i])) for i in range(frame.shape[0])]
    )


def condition_channels(
    latents: torch.Tensor, sigma: torch.Tensor, conditioned: bool, max_std: float = 0.0
) -> torch.Tensor:
    """The 17 condition channels [B, 17, T, H, W] for latents [B, 16, T, H, W]."""
    b, c, t, h, w = latents.shape
    condition = latents.new_zeros(b, c + 1, t, h, w)
    if conditioned and t > 1:
        condition[:, :c, 0] = blur_condition(latents[:, :, 0], sigma, max_std)
        condition[:, c, 0] = 1.0
    return condition
