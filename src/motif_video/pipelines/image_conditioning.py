"""Image-to-video inputs from the first frame: resized, encoded by the VAE (the latent the 17 condition channels are
built from, `motif_video.conditioning`) and by the text encoder's SigLIP tower (image tokens)."""

from __future__ import annotations

from typing import Literal

import numpy as np
import PIL.Image
import torch

from .latents import to_model_latents

ResizeMode = Literal["stretch", "crop"]
RESIZE_MODES = ("stretch", "crop")
LatentMode = Literal["sample", "mode"]
LATENT_MODES = ("sample", "mode")


def center_crop_box(src_w: int, src_h: int, dst_w: int, dst_h: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the largest centered box of the target aspect ratio."""
    if src_w * dst_h > src_h * dst_w:  # source is wider: crop width
        w = round(src_h * dst_w / dst_h)
        left = (src_w - w) // 2
        return left, 0, left + w, src_h
    h = round(src_w * dst_h / dst_w)
    top = (src_h - h) // 2
    return 0, top, src_w, top + h


def crop_to_aspect(image, width: int, height: int):
    """Center-crop a PIL image, an [H, W, C] array or a [C, H, W] / [1, C, H, W] tensor to width:height."""
    if isinstance(image, PIL.Image.Image):
        return image.crop(center_crop_box(image.width, image.height, width, height))
    if isinstance(image, np.ndarray):
        left, top, right, bottom = center_crop_box(image.shape[1], image.shape[0], width, height)
        return image[top:bottom, left:right]
    if isinstance(image, torch.Tensor):
        left, top, right, bottom = center_crop_box(image.shape[-1], image.shape[-2], width, height)
        return image[..., top:bottom, left:right]
    raise ValueError(f"image must be a PIL image, numpy array or torch tensor, got {type(image).__name__}")


def preprocess_image(video_processor, image, height: int, width: int, resize: ResizeMode) -> torch.Tensor:
    """One image -> [1, 3, H, W] in [-1, 1]; "stretch" as released (no crop), "crop" keeps the aspect ratio."""
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {list(RESIZE_MODES)}, got {resize!r}")
    # RGBA, L, P, CMYK: the VAE takes 3 channels
    if isinstance(image, PIL.Image.Image) and image.mode != "RGB":
        image = image.convert("RGB")
    if resize == "crop":
        image = crop_to_aspect(image, width, height)
    out = video_processor.preprocess(image, height=height, width=width)
    if out.shape[0] != 1:
        raise ValueError(f"each image must be a single image, got a batch of {out.shape[0]}")
    return out


@torch.no_grad()
def siglip_tokens(vision_tower, feature_extractor, frame: torch.Tensor) -> torch.Tensor:
    """SigLIP tokens [B, N, 1152] of frames [B, 3, H, W] in [-1, 1]: the vision tower's last hidden state (no
    multimodal projector), after the folder's SigLIP preprocessing."""
    pixels = ((frame.float() + 1) / 2).clamp(0, 1)
    inputs = feature_extractor.preprocess(
        images=pixels,
        do_resize=True,
        do_rescale=False,
        do_normalize=True,
        do_convert_rgb=True,
        return_tensors="pt",
    )
    dtype = next(vision_tower.parameters()).dtype
    return vision_tower(pixel_values=inputs["pixel_values"].to(frame.device, dtype)).last_hidden_state


@torch.no_grad()
def encode_first_frame(vae, frame: torch.Tensor, mode: LatentMode, generator=None) -> torch.Tensor:
    """Normalised VAE latent [B, 16, 1, h, w] of frames [B, 3, H, W]: a sample (as released) or the mode."""
    if mode not in LATENT_MODES:
        raise ValueError(f"first_frame_latent must be one of {list(LATENT_MODES)}, got {mode!r}")
    dist = vae.encode(frame[:, :, None].to(vae.dtype)).latent_dist
    z = dist.mode() if mode == "mode" else dist.sample(generator=generator)
    return to_model_latents(z, vae.config)
