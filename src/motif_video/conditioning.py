"""The frame condition channels and their timestep-aware blur, built here for training and inference.

The transformer's input is [noisy latents (16) | condition channels (17)]: 16 channels holding the normalised VAE
latent of each conditioned latent frame and zeros elsewhere, and one mask channel that is the condition's strength
(1 as trained) at those frames and 0 elsewhere. As released only latent frame 0 (the first image) is conditioned;
the same channels carry a last frame, keyframes or a clip prefix (`motif_video.condition_layout` says which latent
frames a condition at a pixel frame covers). Text-to-video, and a video of a single latent frame (nothing to
condition, as released), get zeros in all 17. `condition_channels` builds them; the trainer (`training.i2v`) and the
pipelines (`pipelines.velocity`) call it.

Timestep-aware blur of the conditioning latent (the project's definition; docs/conditioning.md).

No public formula exists for Motif-Video's "timestep-aware blur". motif-video defines it once, here, for both
training and inference: a Gaussian blur of the normalised condition latent (the 16 condition channels at every
conditioned latent frame), each channel blurred spatially, with a standard deviation in latent pixels that grows linearly with
the flow noise level sigma:

    blur_std(sigma) = strength * sigma * min(h, w) / 100        (h, w: latent height and width)

At sigma = 1 and strength 1 the std is 1% of the latent short side (0.92 latent px = 7.4 image px at 1280x736); at
sigma = 0 the latent is untouched. Blurring the latent, not the pixels, works with cached latents in training and
costs no VAE encode per step at inference. Training blurs each example with its own sampled sigma; inference (off by
default: strength 0 is exactly the released conditioning) blurs with each step's sigma. Both call
`timestep_aware_blur`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

CONDITION_CHANNELS = 17  # 16 first-frame latent channels + 1 mask channel
MIN_BLUR_STD = (
    0.05  # latent pixels; below this a Gaussian kernel is the identity to float precision: skip the work
)


def blur_std(sigma: float, height: int, width: int, strength: float = 1.0) -> float:
    """Standard deviation in latent pixels of the blur at noise level `sigma` in [0, 1] on an h x w latent."""
    if not 0.0 <= sigma <= 1.0:
        raise ValueError(f"sigma must be in [0, 1], got {sigma}")
    if not strength >= 0:
        raise ValueError(f"blur strength must be >= 0 (0 = off), got {strength}")
    return strength * sigma * min(height, width) / 100.0


def gaussian_kernel1d(std: float, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """Normalised 1-D Gaussian of radius ceil(3 std)."""
    radius = max(1, math.ceil(3.0 * std))
    x = torch.arange(-radius, radius + 1, dtype=torch.float64, device=device)
    k = torch.exp(-0.5 * (x / std) ** 2)
    return (k / k.sum()).to(dtype)


def gaussian_blur(x: torch.Tensor, std: float) -> torch.Tensor:
    """Separable Gaussian blur over the last two dims of `x` [..., H, W] with reflect padding, each leading index
    (channel, frame) on its own; the kernel is cut to the image size. std <= MIN_BLUR_STD returns `x` itself."""
    if std <= MIN_BLUR_STD:
        return x
    shape = x.shape
    flat = x.reshape(-1, 1, shape[-2], shape[-1]).float()
    k = gaussian_kernel1d(std, torch.float32, x.device)
    r = k.numel() // 2
    r_h, r_w = min(r, shape[-2] - 1), min(r, shape[-1] - 1)  # reflect padding needs pad < size
    k_h, k_w = k[r - r_h : r + r_h + 1], k[r - r_w : r + r_w + 1]
    flat = F.pad(flat, (0, 0, r_h, r_h), mode="reflect") if r_h else flat
    flat = F.conv2d(flat, (k_h / k_h.sum()).view(1, 1, -1, 1))
    flat = F.pad(flat, (r_w, r_w, 0, 0), mode="reflect") if r_w else flat
    flat = F.conv2d(flat, (k_w / k_w.sum()).view(1, 1, 1, -1))
    return flat.reshape(shape).to(x.dtype)


def timestep_aware_blur(
    latents: torch.Tensor, sigma: float | torch.Tensor, strength: float = 1.0
) -> torch.Tensor:
    """Blur conditioning latents [B, C, (T,) h, w] for noise level `sigma`: Gaussian, std `blur_std(sigma, h, w)`.

    `sigma` is one float for the whole batch (inference: the step's sigma) or a [B] tensor (training: one sampled
    noise level per example). Strength 0 or sigma 0 returns the input unchanged.
    """
    h, w = latents.shape[-2], latents.shape[-1]
    if isinstance(sigma, torch.Tensor) and sigma.numel() > 1:
        if sigma.numel() != latents.shape[0]:
            raise ValueError(f"sigma has {sigma.numel()} values for a batch of {latents.shape[0]} latents")
        return torch.stack(
            [gaussian_blur(x, blur_std(float(s), h, w, strength)) for x, s in zip(latents, sigma.tolist())]
        )
    return gaussian_blur(latents, blur_std(float(sigma), h, w, strength))


def condition_channels(
    latents: torch.Tensor,
    condition: torch.Tensor | None,
    sigma: float | torch.Tensor = 0.0,
    blur_strength: float = 0.0,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """The 17 condition channels [B, 17, T, h, w] for `latents` [B, 16, T, h, w] (their dtype and device).

    `condition`: normalised condition latents [B, 16, t, h, w] placed from latent frame 0 (t <= T: a first frame is
    t = 1; frames past t are not conditioned); None: all zeros (text-to-video). `mask`: the mask value of each of
    the t frames, [t] (the same for the whole batch) or [B, t] (one pattern per example, as in training); 0 leaves
    a frame unconditioned (zeros in all 17 channels), a value in (0, 1] is the condition's strength; None: 1 on all
    t frames. The conditioned frames are blurred with `timestep_aware_blur(sigma, blur_strength)` (sigma one float,
    or one per example), each frame on its own: one definition for every conditioned frame. A video of one latent
    frame gets zeros (nothing to condition, as released).
    """
    b, c, t, h, w = latents.shape
    channels = latents.new_zeros(b, c + 1, t, h, w)
    if condition is None or t == 1:
        return channels
    n = condition.shape[2]
    if n > t:
        raise ValueError(f"condition has {n} latent frames for a video of {t}")
    if mask is None:
        mask = condition.new_ones(n)
    mask = mask.to(device=latents.device, dtype=torch.float32)
    if mask.shape[-1] != n or mask.ndim not in (1, 2):
        raise ValueError(
            f"mask must be [{n}] or [batch, {n}] for {n} condition frames, got {list(mask.shape)}"
        )
    mask = mask.expand(b, n)
    frames = (mask != 0).any(0).nonzero().flatten().tolist()  # the frames any example conditions
    if not frames:
        return channels
    if frames == list(range(frames[0], frames[-1] + 1)):
        picked = condition[:, :, frames[0] : frames[-1] + 1]  # a run of frames (a first frame: [:, :, :1])
    else:
        picked = condition[:, :, frames]
    blurred = timestep_aware_blur(picked, sigma, blur_strength)
    on = (mask[:, frames] != 0).to(blurred.dtype)[:, None, :, None, None]
    channels[:, :c, frames] = (blurred * on if bool((on == 0).any()) else blurred).to(channels.dtype)
    channels[:, c, :n] = mask.to(channels.dtype)[:, :, None, None]
    return channels
