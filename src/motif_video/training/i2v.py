"""Image-to-video training: first-frame condition channels and the mask channel.

Condition layout (as the released I2V pipeline): 16 channels holding the normalised latent of the first frame at
latent frame 0 and zeros elsewhere, plus one mask channel that is 1 at latent frame 0; T2V samples get zeros in
all 17 channels. The Wan VAE is causal, so latent frame 0 of a clip is the encoding of its first frame alone and
the condition comes from the clip's own latents without another VAE pass.

The conditioning latent is blurred with the project's timestep-aware blur (`motif_video.conditioning`, the same
function the I2V pipeline calls at inference), each example with its own sampled sigma.
"""

from __future__ import annotations

import torch

from .. import conditioning as blur


def condition_channels(
    latents: torch.Tensor, sigma: torch.Tensor, conditioned: bool, blur_strength: float = 0.0
) -> torch.Tensor:
    """The 17 condition channels [B, 17, T, H, W] for latents [B, 16, T, H, W] and per-example sigma [B]."""
    b, c, t, h, w = latents.shape
    condition = latents.new_zeros(b, c + 1, t, h, w)
    if conditioned and t > 1:
        condition[:, :c, 0] = blur.timestep_aware_blur(latents[:, :, 0], sigma, blur_strength)
        condition[:, c, 0] = 1.0
    return condition
