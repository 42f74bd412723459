"""Train a small Wan-architecture VAE (`AutoencoderKLWan`, 16 latent channels, 8x spatial / 4x temporal) on
procedural clips, and set its per-channel latent mean / std so normalised latents have unit scale.

Loss: L1 + MSE of the reconstruction from the posterior mode, plus a small KL term that keeps the posterior
close to N(0, 1). Clips are rendered on the fly from `motif_video.synthetic` (no disk), as random `frames`-long
windows of `clip_frames`-long scenes; the causal VAE then handles any 4k+1 length at inference.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from motif_video.condition_layout import GROUP, pixel_frames, place
from motif_video.evaluation.conditions import frame_changes
from motif_video.models.loading import save_atomically
from motif_video.synthetic.scenes import BACKGROUNDS, COLOURS, coverage, scene_at

logger = logging.getLogger(__name__)


@dataclass
class VaeTrainConfig:
    base_dim: int = 8
    dim_mult: tuple[int, ...] = (1, 2, 2)
    residual: bool = True  # Wan 2.2 layout: 2x2 patchify + residual down / up blocks with averaging shortcuts
    steps: int = 4500  # length of the cosine schedule ...
    stop_at: int | None = (
        2500  # ... and the step training stops at (None: the end), as the shipped VAE was trained
    )
    batch_size: int = 4
    frames: int = 9  # training window (4k + 1); 9 exercises the causal cache across chunks (5 does not)
    clip_frames: int = 33
    height: int = 64  # scenes are rendered at this size ...
    width: int = 64
    crop: int = 32  # ... and trained on random crop x crop windows (multiple of 8; 0 = whole frame)
    lr: float = 1e-3
    warmup_steps: int = 100
    betas: tuple[float, float] = (0.9, 0.99)
    min_lr_ratio: float = 0.1
    kl_weight: float = 1e-6
    seed: int = 1  # scene stream (the transformer's clips use seed 0)
    save_every: int = 250
    threads: int = 1


def small_vae(
    base_dim: int = 8, dim_mult: tuple[int, ...] = (1, 2, 4, 4), residual: bool = False, seed: int = 0
):
    """16 latent channels, 8x spatial / 4x temporal. `residual`: the Wan 2.2 layout (2x2 patchify, so one spatial
    downsampling fewer, and residual blocks whose averaging / duplicating shortcuts make the untrained network
    already a coarse autoencoder); `dim_mult` then has one level fewer."""
    from diffusers import AutoencoderKLWan

    torch.manual_seed(seed)
    levels = len(dim_mult) - 1
    if (2 if residual else 1) * 2**levels != 8:
        raise ValueError(f"dim_mult={dim_mult} with residual={residual} does not give 8x spatial compression")
    kwargs = dict(in_channels=12, out_channels=12, patch_size=2, is_residual=True) if residual else {}
    return AutoencoderKLWan(
        base_dim=base_dim,
        z_dim=16,
        dim_mult=list(dim_mult),
        num_res_blocks=1,
        temperal_downsample=[False] * (levels - 2) + [True, True],
        **kwargs,
    )


def render_window(scene, start: int, frames: int, clip_frames: int, height: int, width: int) -> torch.Tensor:
    """[3, frames, H, W] in [-1, 1]: frames start..start+frames-1 of the clip_frames-long clip of `scene`."""
    fg = np.array(COLOURS[scene.colour], np.float32)
    bg = np.array(BACKGROUNDS[scene.background], np.float32)
    out = np.empty((frames, height, width, 3), np.float32)
    for i in range(frames):
        a = coverage(scene, start + i, clip_frames, height, width)[..., None]
        out[i] = np.round(a * fg + (1 - a) * bg)
    return torch.from_numpy(out).permute(3, 0, 1, 2) / 127.5 - 1


def batch_at(config: VaeTrainConfig, step: int) -> torch.Tensor:
    rng = random.Random(config.seed * 7919 + step)
    clips = []
    for _ in range(config.batch_size):
        scene = scene_at(config.seed, rng.randrange(10**9))
        start = rng.randrange(config.clip_frames - config.frames + 1)
        clip = render_window(scene, start, config.frames, config.clip_frames, config.height, config.width)
        if config.crop:
            top = rng.randrange(0, config.height - config.crop + 1, 8)
            left = rng.randrange(0, config.width - config.crop + 1, 8)
            clip = clip[:, :, top : top + config.crop, left : left + config.crop]
        clips.append(clip)
    return torch.stack(clips)


def decode_unclamped(vae, z: torch.Tensor) -> torch.Tensor:
    """`AutoencoderKLWan` decoding (frame by frame through the causal cache) without the final clamp to [-1, 1],
    which would zero the gradient of every saturated pixel, including those saturated on the wrong side."""
    from diffusers.models.autoencoders.autoencoder_kl_wan import unpatchify

    vae.clear_cache()
    x = vae.post_quant_conv(z)
    frames = []
    for i in range(x.shape[2]):
        vae._conv_idx = [0]
        frames.append(
            vae.decoder(
                x[:, :, i : i + 1], feat_cache=vae._feat_map, feat_idx=vae._conv_idx, first_chunk=i == 0
            )
        )
    vae.clear_cache()
    out = torch.cat(frames, 2)
    if vae.config.patch_size is not None:
        out = unpatchify(out, patch_size=vae.config.patch_size)
    return out


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two tensors in [-1, 1] (peak-to-peak 2)."""
    mse = float(((a.clamp(-1, 1) - b.clamp(-1, 1)) ** 2).mean())
    return 10 * math.log10(4.0 / max(mse, 1e-12))


@torch.no_grad()
def evaluate(vae, clips: torch.Tensor) -> float:
    return evaluate_with_first_frame(vae, clips)[0]


@torch.no_grad()
def round_trip(vae, clips: torch.Tensor) -> torch.Tensor:
    """Clips [B, C, T, H, W] in [-1, 1] encoded (the posterior's mode) and decoded."""
    return vae.decode(vae.encode(clips).latent_dist.mode()).sample


@torch.no_grad()
def evaluate_with_first_frame(vae, clips: torch.Tensor) -> tuple[float, float]:
    """Reconstruction PSNR (dB) of whole clips and of their first frames (the I2V conditioning frame)."""
    y = round_trip(vae, clips)
    return psnr(y, clips), psnr(y[:, :, :1], clips[:, :, :1])


def reconstruction_loss(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return (y - x).abs().mean() + ((y - x) ** 2).mean()


def uint8_frames(clip: torch.Tensor) -> np.ndarray:
    """One clip [C, T, H, W] in [-1, 1] as uint8 frames [T, H, W, 3] (what a video file holds)."""
    return ((clip.clamp(-1, 1) + 1) * 127.5).round().permute(1, 2, 3, 0).to(torch.uint8).numpy()


def change_profile(videos: Iterable[np.ndarray]) -> np.ndarray:
    """The frame-to-frame changes (`evaluation.conditions.frame_changes`) of uint8 videos [T, H, W, 3] at each of the
    T - 1 steps, each video's over their median, averaged over videos. A causal VAE that decodes a latent frame's 4
    pixel frames more alike than the frames across groups shows it as a period of 4 (the steps 4k, k >= 1, high, the
    steps 4k + 3 low) where the true clips are flat."""
    changes = np.stack([frame_changes(v) for v in videos])  # [videos, T - 1]
    return (changes / np.maximum(np.median(changes, axis=1, keepdims=True), 1e-6)).mean(0)


def judder(profile: np.ndarray) -> float:
    """A `change_profile`'s mean at the steps that cross a latent group (4k, k >= 1) over its mean at the last step
    inside one (4k + 3): 1 for even motion, infinite when nothing changes at the steps inside."""
    if len(profile) < 5:
        raise ValueError(f"judder needs a profile of at least 5 steps (6 frames), got {len(profile)}")
    steps = np.arange(len(profile))
    across, inside = profile[(steps % 4 == 0) & (steps > 0)].mean(), profile[steps % 4 == 3].mean()
    return float(across / inside) if inside > 0 else float("inf")


def eval_clips(
    count: int = 4, frames: int = 33, height: int = 64, width: int = 64, seed: int = 123
) -> torch.Tensor:
    return torch.stack(
        [render_window(scene_at(seed, i), 0, frames, frames, height, width) for i in range(count)]
    )


@torch.no_grad()
def set_latent_stats(vae, clips: torch.Tensor) -> None:
    z = vae.encode(clips).latent_dist.mode()  # [B, 16, T, h, w]
    mean = z.mean(dim=(0, 2, 3, 4))
    std = z.std(dim=(0, 2, 3, 4)).clamp_min(1e-3)
    vae.register_to_config(
        latents_mean=[round(float(v), 5) for v in mean], latents_std=[round(float(v), 5) for v in std]
    )


@torch.no_grad()
def set_first_frame_stats(vae, clips: torch.Tensor, batch_size: int = 16) -> None:
    """Give latent frame 0 its own normalisation (`pipelines.latents`): the pair that maps its per-channel
    distribution over `clips` [B, 3, F, H, W] onto that of the other latent frames."""
    from motif_video.pipelines.latents import FIRST_FRAME_MEAN, FIRST_FRAME_STD, measure_first_frame_stats

    z = torch.cat([vae.encode(c).latent_dist.mode() for c in clips.split(batch_size)])
    mean, std = measure_first_frame_stats(z, vae.config.latents_mean, vae.config.latents_std)
    vae.register_to_config(**{FIRST_FRAME_MEAN: mean, FIRST_FRAME_STD: std})


def add_first_frame_stats(vae_folder: str | Path, count: int = 256, seed: int = 7) -> None:
    """`set_first_frame_stats` on `count` procedural 33-frame clips, written back into `vae_folder` atomically."""
    from diffusers import AutoencoderKLWan

    folder = Path(vae_folder)
    vae = AutoencoderKLWan.from_pretrained(folder).eval()
    set_first_frame_stats(vae, eval_clips(count=count, seed=seed))
    save_atomically(vae, folder, vae.save_pretrained)


@torch.no_grad()
def deterministic_posterior_(vae) -> None:
    """Make the posterior's std ~3e-7 (log-variance outputs of quant_conv: weight 0, bias -30), so the released I2V
    pipeline's `latent_dist.sample()` of the first frame equals the mode the transformer was trained on. The means,
    and so every latent, are unchanged."""
    z = vae.config.z_dim
    vae.quant_conv.weight[z:] = 0.0
    vae.quant_conv.bias[z:] = -30.0


def train_vae(config: VaeTrainConfig, output: str | Path) -> dict[str, float]:
    """Train from scratch into `output` (a diffusers folder); returns {"psnr": dB on 33-frame clips, "seconds"}."""
    if config.frames % 4 != 1:
        raise ValueError(f"frames={config.frames} must be 4k + 1")
    if config.threads:
        torch.set_num_threads(config.threads)
    output = Path(output)
    vae = small_vae(config.base_dim, config.dim_mult, config.residual).train()
    opt = torch.optim.AdamW(vae.parameters(), lr=config.lr, betas=config.betas, weight_decay=0.0)
    held_out = eval_clips(count=2)
    start = time.perf_counter()
    log = []
    for step in range(min(config.steps, config.stop_at or config.steps)):
        progress = step / max(config.steps - 1, 1)
        lr = config.lr * min(1.0, (step + 1) / max(config.warmup_steps, 1))
        lr *= config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
        for group in opt.param_groups:
            group["lr"] = lr
        x = batch_at(config, step)
        posterior = vae.encode(x).latent_dist
        y = decode_unclamped(vae, posterior.mode())
        loss = reconstruction_loss(y, x) + config.kl_weight * posterior.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        if (step + 1) % 50 == 0:
            print(json.dumps({"step": step + 1, "loss": round(loss.item(), 4)}), flush=True)
        if (step + 1) % config.save_every == 0 or step + 1 in (config.steps, config.stop_at):
            vae.eval()
            score = evaluate(vae, held_out)
            record = {
                "step": step + 1,
                "loss": loss.item(),
                "psnr": score,
                "seconds": time.perf_counter() - start,
            }
            log.append(record)
            logger.info("vae %s", record)
            print(json.dumps(record), flush=True)
            set_latent_stats(vae, held_out)
            deterministic_posterior_(vae)
            save_atomically(vae, output, vae.save_pretrained)
            vae.train()
    return {"psnr": log[-1]["psnr"], "seconds": time.perf_counter() - start}


def widen_decoder(vae, decoder_base_dim: int):
    """A copy of `vae` whose decoder is new (random, `decoder_base_dim` wide); encoder and latent stats kept."""
    from diffusers import AutoencoderKLWan

    if decoder_base_dim < 1:
        raise ValueError(f"decoder_base_dim must be a positive width, got {decoder_base_dim}")
    torch.manual_seed(0)
    config = {k: v for k, v in vae.config.items() if not k.startswith("_")}  # "_use_default_values" would win
    wider = AutoencoderKLWan.from_config({**config, "decoder_base_dim": decoder_base_dim})
    kept = {k: v for k, v in vae.state_dict().items() if not k.startswith("decoder.")}
    missing, unexpected = wider.load_state_dict(kept, strict=False)
    if unexpected or any(not k.startswith("decoder.") for k in missing):
        raise RuntimeError(f"widen_decoder: unexpected {unexpected}, missing {missing}")
    return wider


def finetune_decoder(
    vae_folder: str | Path,
    output: str | Path,
    steps: int = 500,
    frames: int = 33,
    crop: int = 32,
    batch_size: int = 2,
    lr: float = 2e-4,
    seed: int = 2,
    save_every: int = 100,
    train_encoder: bool = False,
    stop_at: int | None = None,
    decoder_base_dim: int | None = None,
    first_frame_weight: float = 0.0,
    first_frame_batch: int = 8,
    keep_latent_stats: bool = False,
    still_group_probability: float = 0.0,
    height: int = 64,
    width: int = 64,
) -> dict[str, float]:
    """Later stages: train the decoder (and post_quant_conv) on whole `frames`-long clips, so decoding stays sharp
    through many causal chunks. Unless `train_encoder`, the encoder, and so every latent and the latent statistics,
    are unchanged: a transformer trained on the earlier latents stays valid. With `train_encoder` (a full-frame
    stage before the transformer is trained) everything trains and the latent statistics are measured again.
    `decoder_base_dim` (without `train_encoder`): replace the decoder by a new, randomly initialised one of that
    width, keeping the encoder and its latents.
    `first_frame_weight`: add that weight times the loss on `first_frame_batch` single frames encoded alone. A
    clip's first frame is encoded and decoded without temporal context (its own latent frame), and is 1 frame in
    `frames` of the clip loss, so without this term it reconstructs worst of all frames; it is also the frame an
    I2V run starts from.
    `keep_latent_stats` (with `train_encoder`): keep the folder's latent mean / std instead of measuring them again,
    for an encoder fine-tune under a transformer already trained on these statistics (its latents then move only as
    far as the encoder does, and a short transformer fine-tune on the new latents follows).
    `still_group_probability` (decoder only): on that share of the steps one latent frame k >= 1 of the clip is
    replaced by the pipelines' encoding of one of its frames as a keyframe image (`still_group_latent`), the loss
    still against the true clip: a last image or keyframe reaches the decoder as such a still group after moving
    latents, which the plain clip loss never shows it (BENCHMARKS.md, "what limits a keyframe's PSNR").
    `height`, `width`: the size the training clips and single frames are rendered at (then cropped to `crop`, if
    given). A decoder for 128x128 video learns there the larger motion per frame that 64x64 clips never show it
    (BENCHMARKS.md, "The VAE is the ceiling at 128x128"); the held-out PSNR it prints stays at 64x64."""
    if first_frame_weight < 0 or first_frame_batch < 1:
        raise ValueError(
            f"first_frame_weight={first_frame_weight} must be >= 0 and first_frame_batch={first_frame_batch} >= 1"
        )
    if not 0.0 <= still_group_probability <= 1.0 or (still_group_probability and train_encoder):
        raise ValueError(
            f"still_group_probability={still_group_probability} must be in [0, 1], and 0 with train_encoder"
        )
    if height < 16 or width < 16 or height % 16 or width % 16 or crop > min(height, width):
        raise ValueError(
            f"height={height} and width={width} must be multiples of 16 and at least crop={crop}"
        )
    vae, params = _trainable_decoder(vae_folder, decoder_base_dim, train_encoder)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    size = dict(height=height, width=width)
    config = VaeTrainConfig(
        batch_size=batch_size, frames=frames, clip_frames=frames, crop=crop, seed=seed, **size
    )
    # single frames from anywhere in 33-frame scenes of another stream, whole (not cropped)
    images = VaeTrainConfig(
        batch_size=first_frame_batch, frames=1, clip_frames=33, crop=0, seed=seed + 1, **size
    )
    held_out = eval_clips(count=2)
    start = time.perf_counter()

    def loss_on(x: torch.Tensor, still: random.Random | None = None) -> torch.Tensor:
        with torch.set_grad_enabled(train_encoder):
            z = vae.encode(x).latent_dist.mode()
            if still is not None and z.shape[2] > 1:
                k = still.randrange(1, z.shape[2])
                frame = still.choice(pixel_frames(k))  # anywhere in latent frame k's group
                z = torch.cat([z[:, :, :k], still_group_latent(vae, x[:, :, frame]), z[:, :, k + 1 :]], dim=2)
        return reconstruction_loss(decode_unclamped(vae, z), x)

    record: dict[str, float] = _scores(vae, held_out)
    print(json.dumps({"step": 0, **record}), flush=True)
    for step in range(min(steps, stop_at or steps)):
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        draw = random.Random(seed * 104729 + step)
        loss = loss_on(batch_at(config, step), draw if draw.random() < still_group_probability else None)
        if first_frame_weight:
            loss = loss + first_frame_weight * loss_on(batch_at(images, step))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if (step + 1) % save_every == 0 or step + 1 in (steps, stop_at):
            record = {"step": step + 1, "loss": loss.item(), **_scores(vae, held_out)}
            record["seconds"] = time.perf_counter() - start
            print(json.dumps(record), flush=True)
            if train_encoder and not keep_latent_stats:
                set_latent_stats(vae, held_out)
            deterministic_posterior_(vae)
            save_atomically(vae, Path(output), vae.save_pretrained)
    # the last step always saves, so `record` holds the final scores
    return {k: record[k] for k in ("psnr", "first_frame_psnr")} | {"seconds": time.perf_counter() - start}


def still_group_latent(vae, image: torch.Tensor) -> torch.Tensor:
    """The raw latent [B, C, 1, h, w] the pipelines give an image [B, 3, H, W] placed at a frame past 0: a group of 4
    copies encoded after one more copy as context, the context latent dropped (`motif_video.condition_layout`)."""
    placement = place("keyframe", GROUP, 1, GROUP + 1)  # an image alone in latent frame 1's group
    seq = image[:, :, None][:, :, list(placement.encode)]
    return vae.encode(seq).latent_dist.mode()[:, :, placement.skip :]


def _trainable_decoder(vae_folder: str | Path, decoder_base_dim: int | None, train_encoder: bool):
    """The VAE of `vae_folder` (with a new decoder of `decoder_base_dim`, if given) and the parameters to train: the
    decoder and post_quant_conv, plus the encoder and quant_conv with `train_encoder`."""
    from diffusers import AutoencoderKLWan

    vae = AutoencoderKLWan.from_pretrained(vae_folder)
    if decoder_base_dim is not None and decoder_base_dim != vae.config.decoder_base_dim:
        vae = widen_decoder(vae, decoder_base_dim)
    vae.requires_grad_(False)
    params = [*vae.decoder.parameters(), *vae.post_quant_conv.parameters()]
    if train_encoder:
        params += [*vae.encoder.parameters(), *vae.quant_conv.parameters()]
    for p in params:
        p.requires_grad_(True)
    return vae, params


def _scores(vae, held_out: torch.Tensor) -> dict[str, float]:
    y = round_trip(vae.eval(), held_out)
    return {
        "psnr": psnr(y, held_out),
        "first_frame_psnr": psnr(y[:, :, :1], held_out[:, :, :1]),
        "last_still_psnr": last_still_psnr(vae, held_out),
        "judder": judder(change_profile(map(uint8_frames, y))),
    }


@torch.no_grad()
def last_still_psnr(vae, clips: torch.Tensor) -> float:
    """PSNR (dB) of the clips' last frame decoded from their latents with the last latent frame replaced by that
    frame's keyframe encoding (`still_group_latent`): how a last image comes out after moving latents."""
    z = vae.encode(clips).latent_dist.mode()
    z = torch.cat([z[:, :, :-1], still_group_latent(vae, clips[:, :, -1])], dim=2)
    return psnr(vae.decode(z).sample[:, :, -1:], clips[:, :, -1:])
