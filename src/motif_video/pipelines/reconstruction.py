"""Reconstruction guidance: each step's velocity also pulls the model's clean estimate of the given latent frames
toward their conditions, through the model's joint denoising of the whole clip.

The condition channels tell the model what the given frames are, and a model trained on a pattern copies them into
its estimate of those frames; what it does with the other frames is up to how well it learnt to continue them. A
clip prefix away from a scene's start (video extension) or a keyframe at a position the model never trained on can
be read from the channels and then ignored by the frames around it. Reconstruction guidance (the conditional
sampling of "Video Diffusion Models", Ho et al. 2022) asks the model instead: one more pass sees the noisy clip
without the condition channels, so its clean estimate of the given frames follows from the clip as a whole; the
gradient of that estimate's squared error against the given latents, taken with respect to the noisy clip, says
how every frame should move for the given frames to come out right, and is added to the velocity:

    x0 = x - sigma * v(x, no channels)        err = sum_f m_f |x0_f - y_f|^2 over the given frames f
    velocity += scale * 0.5 * d err / d x / sigma

(the clean estimate moves by -scale * 0.5 * grad: at scale 1 a model whose estimate of a frame depended on that
frame alone would be corrected exactly). `m_f` is each frame's mask value (a condition's strength). The given
frames themselves are still held by `keep_first_frame` where it is on. Cost: one forward and one backward pass of
the transformer per step, with activations kept for the backward.
"""

from __future__ import annotations

import torch

from .. import flow
from . import prompts as P
from .velocity import cache_context


def reconstruction_pull(
    transformer,
    latents: torch.Tensor,
    sigma: float,
    text: P.PromptEmbeds,
    given: torch.Tensor,
    mask: torch.Tensor | None,
    scale: float,
) -> torch.Tensor:
    """The velocity term [B, 16, T, h, w] that pulls the clean estimate of the first `given.shape[2]` latent frames
    toward `given` [B, 16, t, h, w], weighted per frame by `mask` [t] (None: 1 on all t); zeros where `scale` is 0."""
    if scale == 0:
        return torch.zeros_like(latents)
    if sigma <= 0:
        raise ValueError(f"reconstruction guidance needs a noise level > 0, got sigma {sigma}")
    t = given.shape[2]
    weight = torch.ones(t) if mask is None else mask.detach()
    weight = weight.to(latents.device, torch.float32).view(1, 1, t, 1, 1)
    x = latents.detach().to(transformer.dtype).requires_grad_(True)
    channels = x.new_zeros(x.shape[0], transformer.config.in_channels - x.shape[1], *x.shape[2:])
    timestep = torch.full(
        (x.shape[0],), flow.timestep_from_sigma(sigma), device=x.device, dtype=torch.float32
    )
    with torch.enable_grad(), cache_context(transformer, "reconstruction"):
        velocity = transformer(
            hidden_states=torch.cat([x, channels], dim=1),
            timestep=timestep,
            encoder_hidden_states=text.embeds,
            encoder_attention_mask=text.mask,
            image_embeds=None,
            return_dict=False,
        )[0]
        clean = x.float() - sigma * velocity.float()
        error = ((clean[:, :, :t] - given.float()) ** 2 * weight).sum()
        (grad,) = torch.autograd.grad(error, x)
    return (scale * 0.5 / sigma) * grad.to(latents.dtype)
