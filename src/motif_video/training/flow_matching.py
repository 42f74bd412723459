"""The flow-matching objective of the technical report, with its extras: text dropout, image-to-video
conditioning, TREAD token routes and the REPA alignment loss.

One rank's loss of one batch:
    per sample          -> sigma, noise, text-dropout coin from `draws.step_generator(seed, step, sample index)`
    x_sigma             =  (1 - sigma) x0 + sigma eps; input = [x_sigma | 17 condition channels]
    loss                =  mean_b |v_pred - (eps - x0)|^2, latent frame 0 weighted by objective.first_frame_weight
                           (+ weight * REPA while step < repa.until_step)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .. import flow
from ..models import MotifVideoTransformer, Route
from . import draws
from .config import TrainConfig
from .i2v import condition_channels, pattern_channels, sample_pattern
from .objective import LossOutput, StepDraws
from .setup import build_model


@dataclass
class Repa:
    """REPA's frozen teacher and settings; its trainable projector is the objective's extra "projector"."""

    teacher: nn.Module
    block: int
    weight: float
    until_step: int


def build_repa(config: TrainConfig, model: MotifVideoTransformer) -> tuple[Repa, nn.Module] | None:
    """The teacher and a new projector (seeded with `seed + 1`), or None when REPA is off."""
    r = config.repa
    if r.until_step <= 0:
        return None
    if not r.teacher:
        raise ValueError("repa.until_step > 0 needs repa.teacher (a V-JEPA 2 / DINOv2 folder or Hub id)")
    from .repa import Projector, Teacher, tiny_teacher

    teacher = tiny_teacher(r.kind) if r.teacher == "tiny" else Teacher.load(r.teacher, r.kind, r.image_size)
    dim = model.config.num_attention_heads * model.config.attention_head_dim
    model._block_index(r.block)  # validates the index
    torch.manual_seed(config.seed + 1)
    projector = Projector(dim, teacher.dim, r.projector_dim)
    return Repa(teacher, r.block, r.weight, r.until_step), projector


class FlowMatching:
    """`objective.Objective` of flow matching; `train(config)` uses it unless given another."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.repa: Repa | None = None
        self.extras: dict[str, nn.Module] = {}
        self.components: Any = None
        self.null_text = self.null_mask = None

    def build_model(self) -> nn.Module:
        model = build_model(self.config)
        built = build_repa(self.config, model)
        if built is not None:
            self.repa, self.extras["projector"] = built
        return model

    def needs_components(self) -> bool:
        return self.config.repa.until_step > 0  # with cached latents the teacher sees their decoding

    def prepare(self, accelerator: Any, components: Any, data: Any) -> None:
        self.components = components
        self.null_text, self.null_mask = data.null_text, data.null_mask
        if self.repa is not None:
            self.repa.teacher.to(accelerator.device)

    def saved_extras(self, step: int) -> dict[str, nn.Module]:
        return self.extras if self.repa is not None and step <= self.repa.until_step else {}

    def export(self, accelerator: Any, model: nn.Module, ema: Any) -> None:
        from .export import export_model

        export_model(accelerator, self.config, model, ema)

    def compute_loss(self, model: nn.Module, inputs: dict[str, torch.Tensor], at: StepDraws) -> LossOutput:
        config = self.config
        repa_on = self.repa is not None and at.step < self.repa.until_step
        x0 = inputs["latents"]
        model_config = getattr(model, "module", model).config
        grid = token_grid(x0, model_config)
        sigma, noise, drop = draws.sample_noise(x0, config, at.draw_step, at.first_sample, math.prod(grid))
        text, mask = flow.drop_text(inputs["text"], inputs["text_mask"], self.null_text, self.null_mask, drop)
        hidden, conditioned = self.model_input(x0, noise, sigma, model_config.in_channels, at.draw_step)
        routes, route_gen = self.routes(at, x0.device)
        # A tuple, not the output dataclass: under mixed precision accelerate's fp32 conversion of the outputs
        # rebuilds a mapping as `type(out)(dict)`, which puts the whole dict into a dataclass's first field.
        outputs = model(
            hidden, flow.timestep_from_sigma(sigma), text, mask,
            image_embeds=inputs.get("image_embeds") if conditioned else None,
            return_features=[self.repa.block] if repa_on else (), routes=routes or None, routing_generator=route_gen,
            return_dict=False,
        )  # fmt: skip
        losses = flow.velocity_loss(outputs[0], x0, noise, config.objective.first_frame_weight)
        loss, metrics = losses.mean(), {}
        if repa_on:
            align = self.alignment_loss(outputs[1][self.repa.block], inputs, grid)
            loss = loss + self.repa.weight * align
            metrics["repa_loss"] = float(align.detach())
        return LossOutput(loss, losses.detach(), sigma.detach(), metrics)

    def model_input(
        self, x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor, in_channels: int, draw_step: int
    ) -> tuple[torch.Tensor, bool]:
        """[x_sigma | condition channels] (when the model takes them) and whether this step's first frame is
        conditioned (one coin and one pattern per step, the same on every rank; `i2v.sample_pattern`)."""
        hidden = flow.noisy_latents(x0, noise, sigma)
        if in_channels <= x0.shape[1]:
            return hidden, False
        i2v = self.config.i2v
        conditioned = draws.conditioned(self.config, draw_step)
        if not conditioned or i2v.patterns == {"first": 1.0}:  # the released objective
            condition = condition_channels(x0, sigma, conditioned, i2v.blur_strength)
            return torch.cat([hidden, condition], dim=1), conditioned
        generator = draws.step_generator(self.config.seed, draw_step, draws.PATTERN)
        _, mask = sample_pattern(i2v.patterns, x0.shape[2], generator, i2v.max_keyframes, i2v.max_prefix)
        condition = pattern_channels(x0, sigma, mask, i2v.blur_strength)
        # SigLIP tokens are of the first frame: given when the pattern conditions it
        return torch.cat([hidden, condition], dim=1), bool(mask[0] > 0)

    def routes(self, at: StepDraws, device: torch.device) -> tuple[list[Route], torch.Generator | None]:
        """This step's TREAD routes (all or none, drawn once per step) and this rank's token-choice generator."""
        tread, seed = self.config.tread, self.config.seed
        routes = [Route(r.start_layer, r.end_layer, r.ratio) for r in tread.routes]
        if routes and tread.probability < 1.0:
            routes = routes if draws.coin(seed, at.draw_step, draws.ROUTE_COIN) < tread.probability else []
        if not routes:
            return [], None
        return routes, draws.step_generator(seed, at.draw_step, draws.ROUTE_TOKENS + at.process_index, device)

    def alignment_loss(
        self, features: torch.Tensor, inputs: dict[str, torch.Tensor], grid: tuple[int, int, int]
    ) -> torch.Tensor:
        """REPA: the projected block features against the teacher's features of the clip's pixels."""
        from .repa import alignment_loss, resample_to_grid

        pixels = inputs.get("pixels")
        if pixels is None:  # cached latents: the teacher sees the VAE's reconstruction
            pixels = self._decode(inputs["latents"])
        target = resample_to_grid(self.repa.teacher(pixels.float()), grid)
        return alignment_loss(self.extras["projector"](features), target)

    def _decode(self, x0: torch.Tensor) -> torch.Tensor:
        from ..pipelines.latents import to_vae_latents

        vae = self.components.vae
        with torch.no_grad():
            return vae.decode(to_vae_latents(x0.float(), vae.config).to(next(vae.parameters()).dtype)).sample


def token_grid(latents: torch.Tensor, model_config: Any) -> tuple[int, int, int]:
    """The (t, h, w) token grid of latents [B, C, T, H, W] under the model's patch sizes."""
    t, h, w = latents.shape[2:]
    p, pt = model_config.patch_size, model_config.patch_size_t
    return (t // pt, h // p, w // p)
