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
# float pixels this far past their range are a resampling's overshoot, clipped; further, another scale
PIXEL_TOLERANCE = 0.02


def dtype_kind(pixels: np.ndarray | torch.Tensor) -> Literal["integer", "float", "other"]:
    """Whether an array's or tensor's dtype is an integer (bool is not), a float, or neither."""
    if isinstance(pixels, torch.Tensor):
        if pixels.dtype.is_floating_point:
            return "float"
        return "other" if pixels.dtype == torch.bool or pixels.dtype.is_complex else "integer"
    if np.issubdtype(pixels.dtype, np.integer):
        return "integer"
    return "float" if np.issubdtype(pixels.dtype, np.floating) else "other"


def pixel_range(pixels: np.ndarray | torch.Tensor, name: str) -> tuple[float, float]:
    """(black, white): the values of `pixels` that stand for 0 and 1, by the one rule for images and videos.

    An integer dtype is 0-255 (`np.asarray(PIL.Image.open(path))`); a float array is [0, 1]; a float tensor is
    [0, 1], or [-1, 1] when it holds a value below 0 (diffusers' `VaeImageProcessor.preprocess`). A float array or
    tensor further than PIXEL_TOLERANCE outside that range (0-255 floats would turn white) is a ValueError naming
    the range found, as are integers outside 0-255 and other dtypes."""
    kind, shape = dtype_kind(pixels), tuple(pixels.shape)
    if kind == "other":
        raise ValueError(f"{name}: pixels must have an integer (0-255) or float dtype, got {pixels.dtype}")
    if 0 in shape:
        raise ValueError(f"{name}: has no pixels (shape {shape})")
    low, high = float(pixels.min()), float(pixels.max())
    if kind == "integer":
        if low < 0 or high > 255:
            raise ValueError(f"{name}: integer pixels must be in 0-255, got values in {low:g}-{high:g}")
        return 0.0, 255.0
    tensor = isinstance(pixels, torch.Tensor)
    black = -1.0 if tensor and low < 0 else 0.0
    if low < black - PIXEL_TOLERANCE or high > 1 + PIXEL_TOLERANCE:
        allowed = (
            "[0, 1], or [-1, 1] when some are below 0" if tensor else "[0, 1] (0-255 needs an integer dtype)"
        )
        raise ValueError(
            f"{name}: a float {'tensor' if tensor else 'array'}'s pixels must be in {allowed}, "
            f"got values in [{low:g}, {high:g}]"
        )
    return black, 1.0


def unit_pixels(pixels: np.ndarray | torch.Tensor, name: str) -> np.ndarray | torch.Tensor:
    """`pixels` (an array or tensor, any layout) as float32 in [0, 1], read by `pixel_range`."""
    black, white = pixel_range(pixels, name)
    if isinstance(pixels, torch.Tensor):
        return ((pixels.float() - black) / (white - black)).clamp(0, 1)
    return np.clip((pixels.astype(np.float32) - black) / (white - black), 0, 1)


def array_image(array: np.ndarray, name: str) -> PIL.Image.Image:
    """An image array ([H, W, 3]; also [H, W], [H, W, 1], [H, W, 4] or a batch of one) as the 8-bit RGB image it
    stands for (`pixel_range`), so that an array is resized exactly as the PIL image it came from."""
    pixels = unit_pixels(array, name)
    if pixels.ndim == 4 and pixels.shape[0] == 1:
        pixels = pixels[0]
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    if not (pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[-1] in (3, 4))):
        raise ValueError(f"{name}: an image array must be [H, W, 3], got shape {tuple(array.shape)}")
    return PIL.Image.fromarray((pixels * 255).round().astype(np.uint8)).convert("RGB")


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


def preprocess_image(
    video_processor, image, height: int, width: int, resize: ResizeMode, name: str = "image"
) -> torch.Tensor:
    """One image -> [1, 3, H, W] in [-1, 1]; "stretch" as released (no crop), "crop" keeps the aspect ratio. An array
    is the 8-bit image it stands for and a tensor is brought to [0, 1] first (`pixel_range`: diffusers' processor
    would take a uint8 array as [0, 1]); `name` says which input an error is about."""
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {list(RESIZE_MODES)}, got {resize!r}")
    if isinstance(image, np.ndarray):
        image = array_image(image, name)
    elif isinstance(image, torch.Tensor):
        image = unit_pixels(image, name)
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
