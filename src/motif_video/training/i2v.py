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

from .. import conditioning


def condition_channels(
    latents: torch.Tensor, sigma: torch.Tensor, conditioned: bool, blur_strength: float = 0.0
) -> torch.Tensor:
    """The 17 condition channels [B, 17, T, H, W] for latents [B, 16, T, H, W] and per-example sigma [B]: the
    clip's own latent frame 0 when `conditioned` (`motif_video.conditioning.condition_channels`), else zeros."""
    first = latents[:, :, :1] if conditioned else None
    return conditioning.condition_channels(latents, first, sigma, blur_strength)
