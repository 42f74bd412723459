"""Decoder inversion: latent frames refined until chosen pixel frames decode to given images.

A conditioned latent frame holds the VAE encoder's latent of its image (a keyframe as a still group of 4 frames),
but the causal decoder turns it into pixels after the generated latents before it, which the encoder never saw:
on the small model a last frame encoded alone decodes at 28 dB, after the generated frames at 24-26 dB. And the
encoder itself can turn a frame unlike its training data into the wrong colour (the first-frame repaint's case,
`latents.repaint_first_latent`). `fit_latent_frames` therefore refines, in causal order, each latent frame that
holds a given pixel frame: Adam steps on that latent alone, through one chunk of the decoder with the context of
the latents before it, so that the given frames decode to their images and the group's other frames stay as they
decoded before (each step is one decoder chunk's forward and backward pass). The VAE's weights get no gradient.

`fit_step_count` counts the Adam steps a fit takes, for a progress bar (`progress`: called after each).

Needs the Wan VAE's causal decoder (`AutoencoderKLWan`: `decoder`, `post_quant_conv`, `clear_cache`, its feature
cache); tiling is not used while fitting.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import torch

from ..condition_layout import latent_index, pixel_frames
from .latents import WAN_DECODER_PARTS, decoder_step, has_wan_decoder, to_vae_frame

FIT_LR = 0.05  # Adam on normalised latents (unit scale): 50 steps reach the error's floor on the small model


def _check_vae(vae) -> None:
    if not has_wan_decoder(vae):
        missing = [name for name in WAN_DECODER_PARTS if not hasattr(vae, name)]
        raise ValueError(
            f"fitting latents through the decoder needs a Wan VAE (AutoencoderKLWan); {type(vae).__name__} has no "
            f"{missing}"
        )


def _chunk(vae, z: torch.Tensor, k: int, cache: list) -> tuple[torch.Tensor, list]:
    """Pixel frames [B, 3, n, H, W] of normalised latent frame `k` decoded after the feature cache `cache` (the
    latents before it), and the cache after it. `cache` itself is left as it was."""
    x = vae.post_quant_conv(to_vae_frame(z.to(vae.dtype), k, vae.config))
    vae._feat_map = list(cache)
    return decoder_step(vae, x, first=(k == 0)), list(vae._feat_map)


def fit_step_count(frames: Iterable[int], steps: int) -> int:
    """The Adam steps `fit_latent_frames` takes to fit the pixel frames `frames`: `steps` per latent frame holding
    one of them."""
    return steps * len({latent_index(frame) for frame in frames})


def fit_latent_frames(
    vae,
    latents: torch.Tensor,
    targets: Mapping[int, torch.Tensor],
    steps: int,
    lr: float = FIT_LR,
    progress: Callable[[], object] | None = None,
) -> torch.Tensor:
    """`latents` [1, C, T, h, w] (normalised, one video) with every latent frame that holds a pixel frame of
    `targets` (pixel frame -> image [3, H, W] in [-1, 1]) refined by `steps` Adam steps on the mean absolute error
    of its given frames against their images plus that of its other frames against how they decoded before. Frames
    are fitted in causal order, each after the latents before it as fitted. `steps` 0 returns `latents`.
    `progress` is called after each Adam step (`fit_step_count(targets, steps)` calls in all)."""
    if steps < 0:
        raise ValueError(f"decoder fit steps must be >= 0, got {steps}")
    if latents.ndim != 5 or latents.shape[0] != 1:
        raise ValueError(f"need the latents of one video [1, C, T, h, w], got shape {tuple(latents.shape)}")
    if steps == 0 or not targets:
        return latents
    _check_vae(vae)
    groups: dict[int, dict[int, torch.Tensor]] = {}
    for frame, image in targets.items():
        k = latent_index(frame)
        if k >= latents.shape[2]:
            raise ValueError(f"pixel frame {frame} is past the {latents.shape[2]} latent frames given")
        groups.setdefault(k, {})[frame - pixel_frames(k).start] = image
    out = latents.clone()
    vae.clear_cache()
    cache = list(vae._feat_map)
    try:
        for k in range(max(groups) + 1):
            if k in groups:
                z = out[:, :, k : k + 1]
                out[:, :, k : k + 1] = _fit_one(vae, z, k, cache, groups[k], steps, lr, progress)
            with torch.no_grad():
                _, cache = _chunk(vae, out[:, :, k : k + 1], k, cache)
    finally:
        vae.clear_cache()
    return out


def _fit_one(
    vae, z, k: int, cache: list, given: dict[int, torch.Tensor], steps: int, lr: float, progress
) -> torch.Tensor:
    with torch.no_grad():
        before, _ = _chunk(vae, z, k, cache)
    index = sorted(given)
    kept = [j for j in range(before.shape[2]) if j not in given]
    target = torch.stack([given[j] for j in index], dim=1)[None].to(before)  # [1, 3, n, H, W]
    param = z.detach().float().clone().requires_grad_(True)
    opt = torch.optim.Adam([param], lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            decoded, _ = _chunk(vae, param, k, cache)
            loss = (decoded[:, :, index] - target).abs().mean()
            if kept:
                loss = loss + (decoded[:, :, kept] - before[:, :, kept]).abs().mean()
            (grad,) = torch.autograd.grad(loss, param)
            param.grad = grad
            opt.step()
            if progress is not None:
                progress()
    return param.detach().to(z.dtype)
