"""REPA: align one block's video tokens to a frozen self-supervised teacher (early training phase only).

    teacher tokens  z  = teacher(pixels), resampled onto the student's (t, h, w) token grid       [B, N, C_t]
    student tokens  h  = block `block` output (requested through `return_features`)              [B, N, D]
    loss            L  = -mean_n cos(projector(h_n), z_n)                                          (scalar)
    total           loss_flow + weight * L   while step < until_step

Teachers come from transformers: V-JEPA 2 (`VJEPA2Model`, video; tubelets of 2 frames) for video stages and
DINOv2 (`Dinov2Model`, per frame) for image-only stages, from a local folder or a Hub id. Pixels are in [-1, 1];
both teachers expect ImageNet normalisation.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

TeacherKind = Literal["vjepa2", "dinov2"]
TEACHER_KINDS = ("vjepa2", "dinov2")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Projector(nn.Module):
    """The REPA MLP: Linear -> SiLU -> Linear -> SiLU -> Linear (student width -> teacher width)."""

    def __init__(self, dim: int, teacher_dim: int, hidden: int = 2048) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, teacher_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def alignment_loss(projected: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Negative cosine similarity, averaged over tokens and batch: projected, teacher [B, N, C]."""
    return -F.cosine_similarity(projected.float(), teacher.float(), dim=-1).mean()


class Teacher(nn.Module):
    """A frozen V-JEPA 2 or DINOv2 encoder returning patch features on its own grid [B, t', h', w', C]."""

    def __init__(self, model: nn.Module, kind: TeacherKind, image_size: int = 256) -> None:
        super().__init__()
        if kind not in TEACHER_KINDS:
            raise ValueError(f"REPA teacher kind must be one of {TEACHER_KINDS}, got {kind!r}")
        self.model, self.kind, self.image_size = model.eval().requires_grad_(False), kind, image_size
        self.patch = int(model.config.patch_size)
        self.tubelet = int(getattr(model.config, "tubelet_size", 1))
        self.dim = int(model.config.hidden_size)

    @classmethod
    def load(cls, name_or_path: str, kind: TeacherKind, image_size: int = 256) -> Teacher:
        from transformers import Dinov2Model, VJEPA2Model

        from ..hub import resolve_folder

        if kind not in TEACHER_KINDS:
            raise ValueError(f"REPA teacher kind must be one of {TEACHER_KINDS}, got {kind!r}")
        folder = resolve_folder(name_or_path)
        model = (VJEPA2Model if kind == "vjepa2" else Dinov2Model).from_pretrained(folder)
        return cls(model, kind, image_size)

    def train(self, mode: bool = True) -> Teacher:  # always frozen and in eval mode
        return super().train(False)

    def _prepare(self, pixels: torch.Tensor) -> torch.Tensor:
        """[B, 3, F, H, W] in [-1, 1] -> ImageNet-normalised [B, F, 3, H', W'] with H', W' multiples of the patch."""
        b, _, f, h, w = pixels.shape
        scale = self.image_size / min(h, w)
        size = [max(self.patch, round(s * scale / self.patch) * self.patch) for s in (h, w)]
        x = pixels.transpose(1, 2).flatten(0, 1).float()  # [B F, 3, H, W]
        x = F.interpolate((x + 1) / 2, size=size, mode="bilinear", antialias=True, align_corners=False)
        mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
        return ((x - mean) / std).unflatten(0, (b, f))

    @torch.no_grad()
    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self._prepare(pixels)  # [B, F, 3, H, W]
        b, f, _, h, w = x.shape
        gh, gw = h // self.patch, w // self.patch
        dtype = next(self.model.parameters()).dtype
        if self.kind == "vjepa2":
            # Whole tubelets: pad the clip by repeating its last frame (a single image becomes a static tubelet).
            pad = (-f) % self.tubelet
            x = torch.cat([x, x[:, -1:].expand(-1, pad, -1, -1, -1)], dim=1) if pad else x
            tokens = self.model(pixel_values_videos=x.to(dtype), skip_predictor=True).last_hidden_state
            return tokens.float().reshape(b, x.shape[1] // self.tubelet, gh, gw, -1)
        out = self.model(pixel_values=x.flatten(0, 1).to(dtype)).last_hidden_state  # [B F, 1 + R + gh gw, C]
        return out[:, -gh * gw :].float().reshape(b, f, gh, gw, -1)


def resample_to_grid(features: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
    """Teacher features [B, t', h', w', C] -> [B, t h w, C] on the student token grid (trilinear)."""
    x = features.permute(0, 4, 1, 2, 3)  # [B, C, t', h', w']
    if tuple(x.shape[2:]) != tuple(grid):
        x = F.interpolate(x, size=grid, mode="trilinear", align_corners=False)
    return x.flatten(2).transpose(1, 2)


def tiny_teacher(kind: TeacherKind, seed: int = 0) -> Teacher:
    """A random, tiny teacher for tests and the tiny recipe (no weights to download)."""
    from transformers import Dinov2Config, Dinov2Model, VJEPA2Config, VJEPA2Model

    torch.manual_seed(seed)
    if kind == "vjepa2":
        config = VJEPA2Config(
            crop_size=32, frames_per_clip=4, hidden_size=24, num_hidden_layers=1, num_attention_heads=2,
            mlp_ratio=2, patch_size=8, tubelet_size=2, pred_hidden_size=16, pred_num_hidden_layers=1,
            pred_num_attention_heads=2,
        )  # fmt: skip
        return Teacher(VJEPA2Model(config), "vjepa2", image_size=32)
    if kind == "dinov2":
        config = Dinov2Config(
            hidden_size=24,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=48,
            patch_size=8,
            image_size=32,
        )
        return Teacher(Dinov2Model(config), "dinov2", image_size=32)
    raise ValueError(f"REPA teacher kind must be one of {TEACHER_KINDS}, got {kind!r}")
