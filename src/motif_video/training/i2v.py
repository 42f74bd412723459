"""Image-to-video training: the condition channels and the mask channel, for a sampled conditioning pattern.

Condition layout (as the I2V pipeline): 16 channels holding the normalised latent of each conditioned latent frame
and zeros elsewhere, plus one mask channel that is 1 at those frames; T2V samples get zeros in all 17 channels. The
conditions come from the clip's own latents without another VAE pass: the Wan VAE is causal, so latent frame 0 is
the encoding of the first frame alone and latent frame k the encoding of pixel frames 4k-3..4k after the frames
before them (the pipeline encodes a keyframe image as a still group of 4, `motif_video.condition_layout`).

Patterns (`sample_pattern`; weights in the config's `i2v.patterns`, one pattern per step, the same on every rank):

    first        latent frame 0 (the released model's only pattern; image-to-video)
    last         the last latent frame (a video that ends on an image)
    first_last   both
    keyframes    1..max_keyframes distinct random latent frames
    prefix       latent frames 0..k-1, k in 1..max_prefix (video extension: the previous window's last 4(k-1)+1 frames)

The conditioning latent is blurred with the project's timestep-aware blur (`motif_video.conditioning`, the same
function the I2V pipeline calls at inference), each example with its own sampled sigma.
"""

from __future__ import annotations

import torch

from .. import conditioning

PATTERNS = ("first", "last", "first_last", "keyframes", "prefix")


def check_patterns(patterns: dict[str, float], max_keyframes: int = 3, max_prefix: int = 3) -> None:
    """Known names, weights >= 0 with a positive sum, maxima >= 1; ValueError naming the value otherwise."""
    unknown = sorted(set(patterns) - set(PATTERNS))
    if unknown:
        raise ValueError(f"i2v.patterns: unknown pattern(s) {unknown}; allowed: {list(PATTERNS)}")
    bad = {
        k: v for k, v in patterns.items() if isinstance(v, bool) or not isinstance(v, int | float) or v < 0
    }
    if bad:
        raise ValueError(f"i2v.patterns: weights must be numbers >= 0, got {bad}")
    if not sum(patterns.values()) > 0:
        raise ValueError(f"i2v.patterns: at least one weight must be > 0, got {patterns}")
    for name, value in (("max_keyframes", max_keyframes), ("max_prefix", max_prefix)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"i2v.{name} must be an integer >= 1, got {value!r}")


def sample_pattern(
    patterns: dict[str, float],
    num_latent_frames: int,
    generator: torch.Generator,
    max_keyframes: int = 3,
    max_prefix: int = 3,
) -> tuple[str, torch.Tensor]:
    """(name, mask [T] of 0/1) of one conditioning pattern drawn with `patterns`' weights from `generator`. A video of
    one latent frame is conditioned on it whatever the pattern (the channels are zeros there anyway, as released)."""
    t = num_latent_frames
    names = [n for n in PATTERNS if patterns.get(n, 0) > 0]
    weights = torch.tensor([float(patterns[n]) for n in names], dtype=torch.float64)
    name = names[int(torch.multinomial(weights, 1, generator=generator))]
    mask = torch.zeros(t)
    if name == "first" or t == 1:
        mask[0] = 1
    elif name == "last":
        mask[t - 1] = 1
    elif name == "first_last":
        mask[0] = mask[t - 1] = 1
    elif name == "keyframes":
        k = int(torch.randint(1, min(max_keyframes, t) + 1, (1,), generator=generator))
        mask[torch.randperm(t, generator=generator)[:k]] = 1
    else:  # prefix: at most t - 1 frames, so something is left to generate
        k = int(torch.randint(1, min(max_prefix, t - 1) + 1, (1,), generator=generator))
        mask[:k] = 1
    return name, mask


def pattern_channels(
    latents: torch.Tensor, sigma: torch.Tensor, mask: torch.Tensor, blur_strength: float = 0.0
) -> torch.Tensor:
    """The 17 condition channels for latents [B, 16, T, H, W] with the clip's own latents at the frames where
    `mask` [T] is 1 (blurred per example with its sigma [B]; `motif_video.conditioning.condition_channels`)."""
    return conditioning.condition_channels(latents, latents, sigma, blur_strength, mask=mask)


def condition_channels(
    latents: torch.Tensor, sigma: torch.Tensor, conditioned: bool, blur_strength: float = 0.0
) -> torch.Tensor:
    """The 17 condition channels [B, 17, T, H, W] for latents [B, 16, T, H, W] and per-example sigma [B]: the
    clip's own latent frame 0 when `conditioned` (`motif_video.conditioning.condition_channels`), else zeros."""
    first = latents[:, :, :1] if conditioned else None
    return conditioning.condition_channels(latents, first, sigma, blur_strength)
