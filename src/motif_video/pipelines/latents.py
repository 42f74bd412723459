"""Latent space: per-channel (de)normalisation with the VAE's statistics, and memory-lean decoding.

The VAE config's `latents_mean` / `latents_std` normalise every latent frame. A causal VAE encodes the first frame
of a sequence alone, so latent frame 0 has a distribution of its own (on the small model's VAE its normalised std is
0.41 where the other frames have 0.53-0.67). A VAE config may therefore carry a second pair,
`_first_frame_latents_mean` / `_first_frame_latents_std`, used instead for the first latent of every encoded or
decoded sequence; they map frame 0's per-channel distribution onto that of the other frames. Without them (the
released VAE) every frame uses the first pair. The leading underscore keeps diffusers from warning about an unknown
config key; it loads and saves like any other.

`repaint_first_latent` replaces a generated latent frame 0 (the causal VAE's image latent, the one latent a
transformer draws from text least well) by the VAE's own encoding of pixel frame 1 decoded from the latents: the
pipelines' `repaint_first_frame` option, for frame 0 that no condition gives.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch

FIRST_FRAME_MEAN = "_first_frame_latents_mean"
FIRST_FRAME_STD = "_first_frame_latents_std"


def _stats(values: Sequence[float], like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(1, -1, 1, 1, 1)


def normalize_latents(z: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """VAE latent -> model latent: (z - mean) / std per channel."""
    return (z - _stats(mean, z)) / _stats(std, z)


def denormalize_latents(z: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Model latent -> VAE latent: z * std + mean per channel."""
    return z * _stats(std, z) + _stats(mean, z)


def first_frame_stats(config: Mapping) -> tuple[list[float], list[float]] | None:
    """The VAE config's frame-0 mean / std pair, or None when it has none (every frame uses latents_mean / std)."""
    mean, std = config.get(FIRST_FRAME_MEAN), config.get(FIRST_FRAME_STD)
    if mean is None and std is None:
        return None
    channels = len(config["latents_mean"])
    if mean is None or std is None or len(mean) != channels or len(std) != channels:
        raise ValueError(
            f"VAE config needs both {FIRST_FRAME_MEAN} and {FIRST_FRAME_STD} with {channels} values each, got "
            f"{None if mean is None else len(mean)} and {None if std is None else len(std)}"
        )
    if min(std) <= 0:
        raise ValueError(f"{FIRST_FRAME_STD} must be positive, got minimum {min(std)}")
    return list(mean), list(std)


def latent_norm(config: Mapping) -> dict[str, list[float] | None]:
    """Every value that decides how a VAE config normalises latents (the frame-0 pair None when absent): what a
    latent cache records, to be compared with the VAE it is used with."""
    keys = ("latents_mean", "latents_std", FIRST_FRAME_MEAN, FIRST_FRAME_STD)
    return {k: None if config.get(k) is None else [float(v) for v in config.get(k)] for k in keys}


def _per_frame(z: torch.Tensor, config: Mapping, fn) -> torch.Tensor:
    rest = fn(z, config["latents_mean"], config["latents_std"])
    first = first_frame_stats(config)
    if first is None:
        return rest
    return torch.cat([fn(z[:, :, :1], *first), rest[:, :, 1:]], dim=2)


def to_model_latents(z: torch.Tensor, config: Mapping) -> torch.Tensor:
    """The VAE's latents [B, C, T, h, w] of one encoded sequence -> the transformer's normalised latents (index 0 by
    the frame-0 statistics when the config has them)."""
    return _per_frame(z, config, normalize_latents)


def to_vae_latents(z: torch.Tensor, config: Mapping) -> torch.Tensor:
    """The inverse of `to_model_latents`: normalised latents of one sequence to decode -> the VAE's latents."""
    return _per_frame(z, config, denormalize_latents)


def to_vae_frame(z: torch.Tensor, index: int, config: Mapping) -> torch.Tensor:
    """`to_vae_latents` of latent frame `index` of a sequence alone, z [B, C, 1, h, w] (frame 0 by its own pair)."""
    if index == 0:
        return to_vae_latents(z, config)
    return denormalize_latents(z, config["latents_mean"], config["latents_std"])


def measure_first_frame_stats(
    latents: torch.Tensor, mean: Sequence[float], std: Sequence[float]
) -> tuple[list[float], list[float]]:
    """The frame-0 pair for VAE latents [B, C, T, h, w] (T >= 2) normalised so far by `mean` / `std`: frame 0's
    per-channel mean and std become those of frames 1..T-1.

    With n = (z - mean) / std, frame 0 maps to (n0 - m0) / s0 * s + m (m0, s0 of frame 0; m, s of the rest), which
    is (z0 - mean') / std' with std' = std * s0 / s and mean' = mean + std * m0 - std' * m.
    """
    if latents.ndim != 5 or latents.shape[2] < 2:
        raise ValueError(f"need latents [B, C, T>=2, h, w], got shape {tuple(latents.shape)}")
    n = normalize_latents(latents.double(), mean, std)
    dims = (0, 2, 3, 4)
    m0, s0 = n[:, :, :1].mean(dims), n[:, :, :1].std(dims).clamp_min(1e-6)
    m, s = n[:, :, 1:].mean(dims), n[:, :, 1:].std(dims)
    mean_t, std_t = torch.tensor(mean, dtype=n.dtype), torch.tensor(std, dtype=n.dtype)
    std_first = std_t * s0 / s
    mean_first = mean_t + std_t * m0 - std_first * m
    return [round(float(v), 6) for v in mean_first], [round(float(v), 6) for v in std_first]


# What a Wan VAE (`AutoencoderKLWan`) has that lets us drive its causal decoder's frame loop ourselves.
WAN_DECODER_PARTS = ("clear_cache", "post_quant_conv", "decoder", "_feat_map")


def has_wan_decoder(vae) -> bool:
    return all(hasattr(vae, n) for n in WAN_DECODER_PARTS)


def decoder_step(vae, x: torch.Tensor, first: bool) -> torch.Tensor:
    """One step of the causal decoder's frame loop, as `AutoencoderKLWan._decode` runs it: post-quant-conv latent
    frame x [B, C, 1, h, w] -> its pixel frames [B, 3, n, H, W] (unpatchified, not clamped), after the VAE's
    feature cache, which it advances."""
    from diffusers.models.autoencoders.autoencoder_kl_wan import unpatchify

    vae._conv_idx = [0]
    out = vae.decoder(x, feat_cache=vae._feat_map, feat_idx=vae._conv_idx, first_chunk=first)
    patch = getattr(vae.config, "patch_size", None)
    return out if patch is None else unpatchify(out, patch_size=patch)


def _streamable(vae) -> bool:
    """Whether `vae` is a Wan VAE whose frame loop we can drive ourselves (no tiling, no patchified output)."""
    return (
        has_wan_decoder(vae)
        and not getattr(vae, "use_tiling", False)
        and getattr(vae.config, "patch_size", None) is None
    )


@torch.no_grad()
def decode_latents(
    vae, latents: torch.Tensor, output_device: torch.device | str = "cpu", stream: bool = True
) -> torch.Tensor:
    """Decode normalised latents [B, 16, T, h, w] to video [B, 3, F, H, W] in [-1, 1] on `output_device`.

    One video at a time. With `stream` (Wan VAE, no tiling) the causal decoder runs latent frame by latent frame, the
    way `AutoencoderKLWan.decode` does, but each decoded chunk moves to `output_device` at once, so the full-size
    video never sits on the accelerator and is never concatenated there (the stock decode concatenates on the device
    after every frame, which makes it the memory peak at 1280x736x121). Same numbers as `vae.decode`.
    """
    cfg = vae.config
    videos = []
    for z in latents.split(1):
        z = to_vae_latents(z.to(vae.dtype), cfg)
        if not (stream and _streamable(vae)):
            videos.append(vae.decode(z, return_dict=False)[0].to(output_device))
            continue
        vae.clear_cache()
        x = vae.post_quant_conv(z)
        chunks = []
        for i in range(x.shape[2]):
            out = decoder_step(vae, x[:, :, i : i + 1], first=(i == 0))
            chunks.append(out.clamp(-1.0, 1.0).to(output_device))
        vae.clear_cache()
        videos.append(torch.cat(chunks, dim=2))
    return torch.cat(videos)


def _frame_1(vae, latents: torch.Tensor) -> torch.Tensor:
    """Pixel frame 1 [1, 3, 1, H, W] of one video's normalised latents (decoding latent frames 0-1 alone)."""
    return decode_latents(vae, latents[:, :, :2], output_device=latents.device)[:, :, 1:2].to(vae.dtype)


def _encode_alone(vae, frame: torch.Tensor) -> torch.Tensor:
    return to_model_latents(vae.encode(frame).latent_dist.mode(), vae.config)


def has_frame_to_repaint_from(latents: torch.Tensor) -> bool:
    """Whether `latents` [B, 16, T, h, w] hold a latent frame 1 for `repaint_first_latent` to repaint frame 0 from
    (T >= 2); it returns latents of one frame unchanged."""
    return latents.shape[2] >= 2


def repaint_fit_step_count(latents: torch.Tensor, fit_steps: int) -> int:
    """The decoder-fit steps `repaint_first_latent` takes on `latents` with `fit_steps`: that many per video, none
    when there is no frame to repaint from (`has_frame_to_repaint_from`)."""
    return latents.shape[0] * fit_steps if has_frame_to_repaint_from(latents) else 0


@torch.no_grad()
def repaint_first_latent(
    vae, latents: torch.Tensor, fit_steps: int = 0, progress: Callable[[], object] | None = None
) -> torch.Tensor:
    """`latents` [B, 16, T, h, w] (normalised, T >= 2) with latent frame 0 re-encoded from pixel frame 1.

    The causal VAE encodes pixel frame 0 alone into latent frame 0 and every later group of 4 frames after it, so
    the two kinds of latent differ; a model may draw the group latents right and the image latent wrong (the small
    model: frame 0 too light, orange read as yellow, while frames 1-32 are right). Decoding latent frames 0-1 gives
    pixel frames 0-4; frame 1 depends on latent frame 1 and on frame 0 only through the decoder's causal context, so
    it is the closest frame the model drew right. Encoding it alone gives an image latent that the decoder turns back
    into that frame, and decoding with it also clears what the old frame 0 carried into frames 1-4. Frame 0 then
    shows frame 1's content (one frame of hold: at 16-24 fps a 40-60 ms pause before the motion).

    With `fit_steps`, a second round: frame 1 decoded again after the new latent (so that the old frame 0's colour
    is no longer in it), encoded alone, and that latent fitted until it decodes to this frame
    (`decoder_fit.fit_latent_frames`). The encoder alone can turn a frame it was not trained on into the wrong colour
    (on the small model a red object with a dark green fringe, which a bad frame 0 leaves in frame 1, encodes to a
    latent that decodes green). Latents of one frame are returned unchanged. `progress` is called after each fit
    step (`repaint_fit_step_count` calls in all).
    """
    from .decoder_fit import fit_latent_frames

    if not has_frame_to_repaint_from(latents):
        return latents
    repainted = latents.clone()
    for b in range(latents.shape[0]):
        video = repainted[b : b + 1]
        video[:, :, :1] = _encode_alone(vae, _frame_1(vae, video)).to(latents.dtype)
        if fit_steps:
            frame = _frame_1(vae, video)
            video[:, :, :1] = _encode_alone(vae, frame).to(latents.dtype)
            video[:] = fit_latent_frames(vae, video, {0: frame[0, :, 0]}, fit_steps, progress=progress)
    return repainted
