"""Analytic FLOPs of one transformer forward at any video size.

Convention (the one `torch.utils.flop_counter.FlopCounterMode` uses): 2 FLOPs per multiply-accumulate of every
matrix product (linear layers, the patch convolution, Q K^T and P V in attention); element-wise work (norms,
RoPE, softmax, activations, modulation arithmetic) is not counted. Attention over Lq queries and Lk keys at
model width D costs 4 Lq Lk D.

Token counts follow the transformer: N video tokens (T' H' W' after 2x2x1 patches), E_t text tokens (after trailing
padding is trimmed), E_i image tokens (I2V only, 4096 SigLIP tokens in the released pipeline). The encoder side
attends over N + E_t + E_i tokens, the text cross-attention queries N video tokens against E_t text keys, and the
DDT decoder attends over 2N tokens. A guided denoising step runs the transformer twice (cond and uncond).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .info import RELEASED_IMAGE_TOKENS, latent_shape

TIMESTEP_FREQUENCY_DIM = 256  # width of the sinusoidal timestep features


@dataclass(frozen=True)
class StageFlops:
    linear: int = 0
    attention: int = 0

    @property
    def total(self) -> int:
        return self.linear + self.attention

    def __add__(self, other: StageFlops) -> StageFlops:
        return StageFlops(self.linear + other.linear, self.attention + other.attention)

    def __mul__(self, factor: int) -> StageFlops:
        return StageFlops(self.linear * factor, self.attention * factor)


@dataclass(frozen=True)
class ForwardFlops:
    """FLOPs of one forward, per stage: embed, dual, single (encoder side), decoder, head."""

    stages: dict[str, StageFlops]
    video_tokens: int
    text_tokens: int
    image_tokens: int
    batch: int

    @property
    def linear(self) -> int:
        return sum(s.linear for s in self.stages.values())

    @property
    def attention(self) -> int:
        return sum(s.attention for s in self.stages.values())

    @property
    def total(self) -> int:
        return self.linear + self.attention

    @property
    def attention_fraction(self) -> float:
        return self.attention / self.total


def _attention(queries: int, keys: int, dim: int) -> int:
    return 4 * queries * keys * dim


def forward_flops(
    config: Mapping[str, Any],
    latent_grid: tuple[int, int, int],
    text_tokens: int,
    image_tokens: int = 0,
    batch: int = 1,
) -> ForwardFlops:
    """FLOPs of one transformer forward on latents of (T, H, W) = `latent_grid` (before patchify)."""
    if text_tokens < 1:
        raise ValueError(f"text_tokens must be >= 1, got {text_tokens}")
    if image_tokens < 0 or batch < 1:
        raise ValueError(f"image_tokens must be >= 0 and batch >= 1, got {image_tokens} and {batch}")
    c = config
    d = c["num_attention_heads"] * c["attention_head_dim"]
    hidden = int(d * c["mlp_ratio"])
    p, pt = c["patch_size"], c["patch_size_t"]
    t, h, w = latent_grid
    n = (t // pt) * (h // p) * (w // p)
    e = text_tokens + image_tokens  # encoder-stream tokens
    encoder_single = c["num_single_layers"] - c["num_decoder_layers"]

    def cross(enabled: bool) -> StageFlops:
        # query (N) + key/value (E_t) + output (N) projections; N queries attend to E_t text keys.
        if not enabled:
            return StageFlops()
        return StageFlops(2 * (2 * n + 2 * text_tokens) * d * d, _attention(n, text_tokens, d))

    embed = StageFlops(
        2 * n * c["in_channels"] * pt * p * p * d  # patch convolution
        + 2 * (TIMESTEP_FREQUENCY_DIM * d + d * d)  # timestep MLP (one row per sample)
        + 2 * text_tokens * (c["text_embed_dim"] * d + d * d)  # text projection
        + (2 * image_tokens * (c["image_embed_dim"] ** 2 + c["image_embed_dim"] * d) if image_tokens else 0)
    )
    dual_block = StageFlops(
        2 * 2 * d * 6 * d  # two AdaLN-Zero modulations (one row per sample)
        + 2 * (n + e) * d * d * 4  # q, k, v, out projections of both streams
        + 2 * (n + e) * 2 * d * hidden,  # both feed-forwards
        _attention(n + e, n + e, d),
    ) + cross(c["enable_text_cross_attention_dual"])

    def single_block(tokens: int, with_cross: bool) -> StageFlops:
        return StageFlops(
            2 * d * 3 * d  # AdaLN-Zero modulation
            + 2 * tokens * (3 * d * d + d * hidden + (d + hidden) * d),  # q, k, v, proj_mlp, proj_out
            _attention(tokens, tokens, d),
        ) + cross(with_cross)

    head = StageFlops(2 * d * 2 * d + 2 * n * d * pt * p * p * c["out_channels"])
    stages = {
        "embed": embed,
        "dual": dual_block * c["num_layers"],
        "single": single_block(n + e, c["enable_text_cross_attention_single"]) * encoder_single,
        "decoder": single_block(2 * n, False) * c["num_decoder_layers"],
        "head": head,
    }
    stages = {name: flops * batch for name, flops in stages.items()}
    return ForwardFlops(stages, n, text_tokens, image_tokens, batch)


def video_flops(
    config: Mapping[str, Any],
    size: tuple[int, int, int],
    text_tokens: int = 512,
    image_tokens: int = 0,
    batch: int = 1,
) -> ForwardFlops:
    """`forward_flops` for a video of (width, height, frames) pixels."""
    t, h, w = latent_shape(*size)
    return forward_flops(config, (t, h, w), text_tokens, image_tokens, batch)


def format_flops(value: float) -> str:
    """1.02e16 -> '10.20 PFLOP'."""
    for unit, scale in (("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6)):
        if abs(value) >= scale:
            return f"{value / scale:.2f} {unit}"
    return f"{value:.0f} FLOP"


def flops_table(
    config: Mapping[str, Any],
    size: tuple[int, int, int],
    text_tokens: int,
    steps: int,
    image_tokens: int = RELEASED_IMAGE_TOKENS,
    passes: int = 2,
) -> str:
    """Human-readable FLOPs per forward (per stage), per step and per video, for T2V and I2V (with `image_tokens`
    SigLIP tokens); `passes` transformer forwards per step (2: cond and uncond; 1: a guidance-embedded student)."""
    w, h, f = size
    lines = [f"FLOPs at {w}x{h}x{f}, {text_tokens} text tokens (matmuls only, 2 per multiply-add):"]
    modes = {"T2V": 0}
    if config.get("image_embed_dim"):
        modes["I2V"] = image_tokens
    for mode, image_tokens in modes.items():
        report = video_flops(config, size, text_tokens, image_tokens)
        lines.append(f"  {mode} ({image_tokens} image tokens): per stage  linear / attention")
        for name, stage in report.stages.items():
            lines.append(
                f"    {name:<10} {format_flops(stage.linear):>14} {format_flops(stage.attention):>14}"
            )
        step = "per guided step (cond + uncond)" if passes == 2 else f"per step ({passes} pass)"
        lines.append(
            f"    per forward {format_flops(report.total)} ({100 * report.attention_fraction:.1f}% attention); "
            f"{step} {format_flops(passes * report.total)}; "
            f"per video ({steps} steps) {format_flops(passes * steps * report.total)}"
        )
    return "\n".join(lines)
