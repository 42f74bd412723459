"""Conditions beyond the first frame: images and clips at pixel-frame indices, encoded on the video's VAE grouping.

`VideoCondition` has the shape of diffusers' `LTXVideoCondition` (an image or a video, a frame index, a strength).
Where each one lands and which pixels are encoded is `motif_video.condition_layout` (pure, checked before any model
runs); here the pixels are resized, encoded by the causal VAE and laid into one condition latent [1, 16, t, h, w]
with one mask value per latent frame (the condition's strength), which `motif_video.conditioning.condition_channels`
turns into the 17 condition channels at every step.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch

from ..condition_layout import Placement, plan_layout
from .image_conditioning import (
    LATENT_MODES,
    LatentMode,
    ResizeMode,
    array_image,
    pixel_range,
    preprocess_image,
    unit_pixels,
)
from .latents import to_model_latents


@dataclass
class VideoCondition:
    """An image or a video clip that the generated video shows from pixel frame `frame_index` on.

    `image`: a PIL image, [H, W, 3] array or [3, H, W] tensor; `video`: a list of PIL images, [H, W, 3] arrays or
    [3, H, W] tensors, an [F, H, W, 3] array or an [F, 3, H, W] tensor; exactly one of the two; either may be a
    file's path, read by the pipeline (`as_video_condition`). Pixels (`image_conditioning.pixel_range`): integers
    0-255, float arrays [0, 1], float tensors [0, 1] or, with a value below 0, [-1, 1] (diffusers' rule).
    `frame_index`: the pixel frame of its first frame (negative: from the end, -1 is the last frame). `strength` in
    (0, 1]: the mask channel's value at the latent frames it conditions (1: as trained; only frames given at 1 are
    fitted by the decoder fit).
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


DIFFUSERS_CONDITION_MODULE = "diffusers.pipelines.ltx.pipeline_ltx_condition"
IMAGE_TYPES = "a PIL image, an [H, W, 3] array, a [3, H, W] tensor or an image file's path"


def media_path(media: str | os.PathLike, name: str) -> Path:
    """A path given for an image or a video, checked to be a file (a URL is not fetched: diffusers' `load_image`
    would, but the pipelines read no network)."""
    text = os.fspath(media)
    if text.startswith(("http://", "https://")):
        raise ValueError(
            f"{name} {text!r} is a URL, which is not fetched: download it and give the file's path"
        )
    if not Path(text).is_file():
        raise ValueError(f"{name} {text!r} does not exist or is not a file")
    return Path(text)


def image_input(image: Any, name: str) -> Any:
    """`image` read from its file when it is a path (`export.read_image`: RGB, turned by its EXIF orientation, as
    diffusers' `load_image` reads one), else as given; a ValueError naming `name` and the types taken for anything
    else (diffusers' processor would say only "Input is in incorrect format")."""
    if isinstance(image, str | os.PathLike):
        from .export import read_image

        path = media_path(image, name)
        try:
            return read_image(path)
        except OSError as exc:  # PIL's UnidentifiedImageError among them
            raise ValueError(f"{name} {str(path)!r} is not a readable image ({exc})") from exc
    if not isinstance(image, PIL.Image.Image | np.ndarray | torch.Tensor):
        raise ValueError(f"{name} must be {IMAGE_TYPES}, got {type(image).__name__}")
    return image


def video_input(video: Any, name: str, limit: int | None = None) -> Any:
    """`video` read from its file when it is a path (`export.read_mp4_frames`: uint8 [F, H, W, 3], upright; its
    first `limit` frames only), or from one image file per frame when it is a list of paths, else as given."""
    if isinstance(video, str | os.PathLike):
        from .export import check_video_file, read_mp4_frames

        path = media_path(video, name)
        check_video_file(path, f"{name} {str(path)!r}")
        return read_mp4_frames(path, limit)
    if isinstance(video, list | tuple) and any(isinstance(f, str | os.PathLike) for f in video):
        return [image_input(f, f"{name}[{i}]") for i, f in enumerate(video)]
    return video


def as_video_condition(c: Any, name: str) -> VideoCondition:
    """`c` as a `VideoCondition`: ours, or diffusers' `LTXVideoCondition` (the same four fields) converted, so a
    diffusers user's conditions work unchanged; a ValueError naming `name` for anything else. diffusers' module is
    looked up, not imported: a condition of its class means it is loaded already. An image or video given as a
    file's path is read (`image_input`, `video_input`)."""
    ltx = sys.modules.get(DIFFUSERS_CONDITION_MODULE)
    if ltx is not None and isinstance(c, ltx.LTXVideoCondition):
        c = VideoCondition(image=c.image, video=c.video, frame_index=c.frame_index, strength=c.strength)
    if not isinstance(c, VideoCondition):
        raise ValueError(
            f"{name} must be a VideoCondition (or diffusers' LTXVideoCondition), got {type(c).__name__}"
        )
    if c.image is not None:
        return dataclasses.replace(c, image=image_input(c.image, f"{name}.image"))
    return dataclasses.replace(c, video=video_input(c.video, f"{name}.video"))


def video_length(video: Any) -> int:
    if isinstance(video, list | tuple):
        return len(video)
    if isinstance(video, np.ndarray | torch.Tensor) and video.ndim == 4:
        return int(video.shape[0])
    raise ValueError(
        "a video must be a list of frames, an [F, H, W, 3] array or an [F, 3, H, W] tensor, "
        f"got {type(video).__name__}"
    )


def stacked_frames(video: Any, name: str = "video") -> list[PIL.Image.Image] | np.ndarray | torch.Tensor:
    """A video as a list of PIL images, an [F, H, W, 3] array or an [F, 3, H, W] tensor: a list of [H, W, 3] arrays
    or [3, H, W] tensors is stacked, so that its pixel range is read from the whole clip as one array's is."""
    video_length(video)
    if not isinstance(video, list | tuple):
        return video
    kinds = {PIL.Image.Image: "PIL images", np.ndarray: "arrays", torch.Tensor: "tensors"}
    found = {next((k for k in kinds if isinstance(f, k)), type(f)) for f in video}
    if len(found) != 1 or not found <= set(kinds):
        names = sorted(kinds.get(k, k.__name__) for k in found)
        raise ValueError(f"{name}: frames must be all PIL images, all arrays or all tensors, got {names}")
    kind = found.pop()
    if kind is PIL.Image.Image:
        return list(video)
    if len({tuple(f.shape) for f in video}) != 1:
        raise ValueError(f"{name}: frames of different shapes {sorted({tuple(f.shape) for f in video})}")
    return np.stack(video) if kind is np.ndarray else torch.stack(list(video))


def check_pixels(media: Any, name: str) -> None:
    """`pixel_range`'s ValueError for an image or a video given as arrays or tensors, before any model runs."""
    if isinstance(media, list | tuple):
        media = stacked_frames(media, name)
    if isinstance(media, np.ndarray | torch.Tensor):
        pixel_range(media, name)


def frame_size(video: Any) -> tuple[int, int]:
    """(height, width) of a video's frames."""
    video = stacked_frames(video)
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
    video_processor, c: VideoCondition, height: int, width: int, resize: ResizeMode, name: str = "condition"
) -> torch.Tensor:
    """The condition's frames [n, 3, H, W] in [-1, 1] at the video's size (images: "stretch" or "crop"; clips are
    resized as a whole, stretched). Arrays, tensors and lists of them are read by `image_conditioning.pixel_range`
    (an integer dtype is 0-255; a float array [0, 1]; a float tensor [0, 1], or [-1, 1] when a value is below 0, as
    diffusers' `VideoProcessor.preprocess_video` reads it), the range taken from the whole clip."""
    if c.image is not None:
        return preprocess_image(video_processor, c.image, height, width, resize, name)
    video = stacked_frames(c.video, name)
    if isinstance(video, torch.Tensor):
        frames = unit_pixels(video, name) * 2 - 1
        if tuple(frames.shape[-2:]) != (height, width):
            frames = torch.nn.functional.interpolate(
                frames, size=(height, width), mode="bilinear", antialias=True
            )
        return frames.clamp(-1, 1)
    if isinstance(video, np.ndarray):
        video = [array_image(a, name) for a in (unit_pixels(video, name) * 255).round().astype(np.uint8)]
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
