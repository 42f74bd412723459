"""Memory modes that compose: where weights live while a pipeline runs, and FP8 weight-only transformer weights.

none        every component on the device; the text encoder is released (moved to the CPU) after encoding
model       diffusers model CPU offload: text encoder, transformer, VAE each moved to the device in turn
group       diffusers group offload: transformer blocks (and text encoder / VAE layers) streamed to the device
sequential  diffusers sequential CPU offload: every layer moved to the device when it runs (least memory)
fp8         torchao Float8WeightOnlyConfig on the transformer's block linears (`perf.fp8`), compute in the pipeline dtype
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..choices import OFFLOAD_MODES, OffloadMode
from ..perf.fp8 import quantize_fp8

# Peak-memory targets at 1280x736x121 bf16 (issue 3) used to pick a mode from a budget; not yet measured on a GPU.
BUDGET_STEPS: list[tuple[float, OffloadMode, bool]] = [
    (24.0, "none", False),
    (12.0, "model", False),
    (10.0, "model", True),
]


@dataclass(frozen=True)
class MemoryPlan:
    offload: OffloadMode = "none"
    fp8: bool = False
    vae_tiling: bool = False
    reason: str = "requested"

    def describe(self) -> str:
        parts = [f"offload={self.offload}", f"fp8={'on' if self.fp8 else 'off'}"]
        parts.append(f"vae_tiling={'on' if self.vae_tiling else 'off'}")
        return f"{', '.join(parts)} ({self.reason})"


def plan_for_budget(budget_gb: float, vae_tiling: bool = False) -> MemoryPlan:
    """The least-offloading mode whose target peak fits `budget_gb` of accelerator memory."""
    if budget_gb <= 0:
        raise ValueError(f"memory budget must be > 0 GB, got {budget_gb}")
    for need, offload, fp8 in BUDGET_STEPS:
        if budget_gb >= need:
            return MemoryPlan(
                offload, fp8, vae_tiling, f"memory budget {budget_gb:g} GB >= {need:g} GB target"
            )
    return MemoryPlan(
        "group", True, True, f"memory budget {budget_gb:g} GB < 10 GB: group offload + FP8 + tiling"
    )


def check_offload(offload: str, device: torch.device) -> None:
    if offload not in OFFLOAD_MODES:
        raise ValueError(f"offload must be one of {list(OFFLOAD_MODES)}, got {offload!r}")
    if offload in ("model", "sequential") and device.type == "cpu":
        raise ValueError(
            f"offload {offload!r} needs an accelerator device (it moves weights between the CPU and the "
            "accelerator); device is cpu"
        )


def apply_memory_plan(pipe, plan: MemoryPlan, device: torch.device | str) -> None:
    """Place the pipeline's components on `device` according to `plan` (call once, before generating)."""
    device = torch.device(device)
    check_offload(plan.offload, device)
    if plan.fp8:
        quantize_fp8(pipe.transformer, "weight_only")
    if plan.vae_tiling:
        pipe.vae.enable_tiling()
    if plan.offload == "none":
        pipe.to(device)
    elif plan.offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif plan.offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    elif plan.offload == "group":
        from diffusers.hooks import apply_group_offloading

        stream = device.type == "cuda"
        pipe.transformer.enable_group_offload(
            onload_device=device,
            offload_device=torch.device("cpu"),
            offload_type="block_level",
            num_blocks_per_group=1,
            use_stream=stream,
        )
        for module in (m for m in (pipe.text_encoder, pipe.vae) if m is not None):
            apply_group_offloading(module, onload_device=device, offload_type="leaf_level", use_stream=stream)
    else:  # exhaustive: check_offload rejected anything else
        raise AssertionError(plan.offload)
