"""Conditions beyond the first frame: images and clips at pixel-frame indices, encoded on the video's VAE grouping.

`VideoCondition` has the shape of diffusers' `LTXVideoCondition` (an image or a video, a frame index, a strength).
Where each one lands and which pixels are encoded is `motif_video.condition_layout` (pure, checked before any model
runs); here the pixels are resized, encoded by the causal VAE and laid into one condition latent [1, 16, t, h, w]
with one mask value per latent frame (the condition's strength), which `motif_video.conditioning.condition_channels`
turns into the 17 condition channels at every step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import PIL.Image
import torch

from ..condition_layout import Placement, plan_layout
from .image_conditioning import LATENT_MODES, LatentMode, ResizeMode, preprocess_image
from .latents import to_model_latents


@dataclass
class VideoCondition:
    """An image or a video clip that the generated video shows from pixel frame `frame_index` on.

    `image`: a PIL image, [H, W, 3] array or [3, H, W] tensor; `video`: a list of PIL images, an [F, H, W, 3] array
    (0-255 or 0-1) or an [F, 3, H, W] tensor in [-1, 1]; exactly one of the two. `frame_index`: the pixel frame of
    its first frame (negative: from the end, -1 is the last frame). `strength` in (0, 1]: the mask channel's value
    at the latent frames it conditions (1: as trained).
    """

    image: Any = None
    video: Any = None
    frame_index: int = 0
    strength: float = 1.0

    def __post_init__(self) -> None:
        if (self.image is None) == (self.video is None):
            raise ValueError("a VideoCondition needs exactly one of image or video")

    @property
    def num_frames(self) -> int:
        return 1 if self.image is not None else video_length(self.video)


def video_length(video: Any) -> int:
    if isinstance(video, list | tuple):
        return len(video)
    if isinstance(video, np.ndarray | torch.Tensor) and video.ndim == 4:
        return int(video.shape[0])
    raise ValueError(
        "a video must be a list of PIL images, an [F, H, W, 3] array or an [F, 3, H, W] tensor, "
        f"got {type(video).__name__}"
    )


def frame_size(video: Any) -> tuple[int, int]:
    """(height, width) of a video's frames."""
    first = video[0]
    if isinstance(first, PIL.Image.Image):
        return first.height, first.width
    if isinstance(video, np.ndarray):
        return int(video.shape[1]), int(video.shape[2])
    return int(video.shape[-2]), int(video.shape[-1])


def plan_conditions(conditions: list[VideoCondition], num_frames: int, first_image: bool) -> list[Placement]:
    """Placements of `conditions` (after the call's first image at frame 0 when `first_image`); ValueError for
    conflicts and frames outside the video (`condition_layout.plan_layout`)."""
    specs = [("image", 0, 1, 1.0)] if first_image else []
    for i, c in enumerate(conditions):
        if not isinstance(c, VideoCondition):
            raise ValueError(f"conditions[{i}] must be a VideoCondition, got {type(c).__name__}")
        kind = "image" if c.image is not None else "video"
        specs.append((f"conditions[{i}] ({kind})", c.frame_index, c.num_frames, c.strength))
    placed = plan_layout(specs, num_frames)
    return placed[1:] if first_image else placed


def condition_pixels(
    video_processor, c: VideoCondition, height: int, width: int, resize: ResizeMode
) -> torch.Tensor:
    """The condition's frames [n, 3, H, W] in [-1, 1] at the video's size (images: "stretch" or "crop"; clips are
    resized as a whole, stretched)."""
    if c.image is not None:
        return preprocess_image(video_processor, c.image, height, width, resize)
    video = c.video
    if isinstance(video, torch.Tensor):
        frames = video.float()
        if tuple(frames.shape[-2:]) != (height, width):
            frames = torch.nn.functional.interpolate(
                frames, size=(height, width), mode="bilinear", antialias=True
            )
        return frames.clamp(-1, 1)
    if isinstance(video, np.ndarray):
        arr = video.astype(np.float32) / (255.0 if video.dtype == np.uint8 else 1.0)
        video = [PIL.Image.fromarray((a * 255).round().clip(0, 255).astype(np.uint8)) for a in arr]
    return torch.cat([preprocess_image(video_processor, im, height, width, "stretch") for im in video])


@torch.no_grad()
def encode_placed(
    vae, pixels: torch.Tensor, placement: Placement, mode: LatentMode, generator=None
) -> torch.Tensor:
    """Normalised latents [1, 16, len(placement.latents), h, w] of one condition's frames [n, 3, H, W]: its
    encode sequence through the causal VAE, the context latent dropped."""
    if mode not in LATENT_MODES:
        raise ValueError(f"first_frame_latent must be one of {list(LATENT_MODES)}, got {mode!r}")
    seq = pixels[list(placement.encode)].transpose(0, 1)[None]  # [1, 3, F, H, W]
    dist = vae.encode(seq.to(vae.device, vae.dtype)).latent_dist
    z = dist.mode() if mode == "mode" else dist.sample(generator=generator)
    z = to_model_latents(z, vae.config)[:, :, placement.skip :]
    if z.shape[2] != len(placement.latents):
        raise ValueError(
            f"{placement.name}: encoded {z.shape[2]} latent frames, expected {len(placement.latents)}"
        )
    return z


def lay_out(
    first: torch.Tensor | None, placed: list[tuple[Placement, torch.Tensor]], batch: int
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """One condition latent [B, 16, t, h, w] (t: one past the last conditioned latent frame) and its mask [t] from
    the first-frame latent [B, 16, 1, h, w] (or None) and the other conditions' latents [1, 16, n, h, w]."""
    if first is None and not placed:
        return None, None
    like = first if first is not None else placed[0][1]
    t = max([1 if first is not None else 0] + [p.latents.stop for p, _ in placed])
    latent = like.new_zeros(batch, like.shape[1], t, like.shape[3], like.shape[4])
    mask = torch.zeros(t, dtype=torch.float32, device=like.device)
    if first is not None:
        latent[:, :, :1] = first
        mask[0] = 1.0
    for p, z in placed:
        latent[:, :, p.latents.start : p.latents.stop] = z.to(latent.dtype)
        mask[p.latents.start : p.latents.stop] = p.strength
    return latent, mask
