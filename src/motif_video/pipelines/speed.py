"""Speed options applied to a loaded pipeline: FP8 compute and regional compile; step-cache reports.

| option        | what it does                                                               | where it lives           |
|---------------|----------------------------------------------------------------------------|--------------------------|
| `fp8_compute` | torchao dynamic float8 activations x float8 weights in the block linears   | `perf/fp8.py` (`dynamic`) |
| `compile`     | `torch.compile` of each repeated block (one graph per block class)        | `perf/compile.py`         |
| attention     | the transformer's attention kernel, set on its attention modules            | `models/attention.py`     |
| step cache    | `transformer.enable_cache(FirstBlockCacheConfig(threshold))`, per guidance pass | `perf/step_cache.py` |

Order: memory plan (device placement, FP8 weight-only), then FP8 compute (needs the weights on the GPU), then
compile (compiles what the quantisation produced). FP8 compute is distinct from the `fp8` memory mode (weight-only
storage, computed in bf16); the two are exclusive.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

import torch

from ..perf.step_cache import BranchReport


@dataclass(frozen=True)
class SpeedPlan:
    """The speed options applied to a loaded pipeline's transformer (`apply_speed_plan`)."""

    compile_backend: str | None = (
        None  # a torch.compile backend ("inductor", "eager", ...); None = no compile
    )
    fp8_compute: bool = False
    attention_backend: str | None = (
        None  # the transformer's attention kernel; None: the process default (auto)
    )
    cache_threshold: float | None = None  # first-block step cache; None: off, 0: on but exact

    def describe(self) -> str:
        compiled = f"compile={self.compile_backend}" if self.compile_backend else "compile=off"
        attention = f", attention={self.attention_backend}" if self.attention_backend else ""
        cache = f", step_cache={self.cache_threshold:g}" if self.cache_threshold is not None else ""
        return f"{compiled}, fp8_compute={'on' if self.fp8_compute else 'off'}{attention}{cache}"


def compile_backends() -> list[str]:
    import torch._dynamo

    return sorted(torch._dynamo.list_backends(exclude_tags=()))


def check_speed_plan(plan: SpeedPlan, device: torch.device) -> None:
    """What this machine must offer for the plan, checked before loading a model (ValueError naming the value).
    The rules between options (FP8 compute excludes the FP8 memory mode and offloading) are `options.check_request`'s."""
    if plan.compile_backend is not None and plan.compile_backend not in compile_backends():
        raise ValueError(
            f"compile backend {plan.compile_backend!r} is unknown; available: {compile_backends()}"
        )
    if plan.attention_backend is not None:
        from ..models.attention import available_attention_backends

        if plan.attention_backend not in available_attention_backends():
            raise ValueError(
                f"attention backend {plan.attention_backend!r} is not available here; "
                f"available: {available_attention_backends()}"
            )
    if plan.fp8_compute:
        from ..perf.fp8 import check_fp8_support

        check_fp8_support("dynamic", device)


def apply_speed_plan(pipe, plan: SpeedPlan) -> None:
    """Set the attention kernel and the step cache, quantise (FP8 compute) and compile the pipeline's transformer in
    place, after the memory plan."""
    if plan.attention_backend is not None:
        from ..models.attention import use_attention_backend

        use_attention_backend(pipe.transformer, plan.attention_backend)
    if plan.cache_threshold is not None:
        from diffusers.hooks import FirstBlockCacheConfig

        pipe.transformer.enable_cache(FirstBlockCacheConfig(threshold=plan.cache_threshold))
    if plan.fp8_compute:
        from ..perf.fp8 import quantize_fp8

        quantize_fp8(pipe.transformer, "dynamic")
    if plan.compile_backend is not None:
        from ..perf.compile import compile_repeated_blocks

        compile_repeated_blocks(pipe.transformer, backend=plan.compile_backend)


def cache_summary(report: dict[Hashable, BranchReport]) -> str:
    """One line per guidance branch: which denoising steps reused the cache."""
    lines = []
    for name, r in report.items():
        lines.append(f"{name}: skipped {len(r.skipped)} of {r.calls} steps {r.skipped}")
    return "; ".join(lines) if lines else "no cached passes"
