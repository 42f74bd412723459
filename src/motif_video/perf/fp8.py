"""FP8 transformer linears through torchao (optional extra: `pip install 'motif-video[fp8]'`).

Two modes, separate on purpose:

| mode          | torchao config                                      | what it buys                         | device             |
|---------------|-----------------------------------------------------|--------------------------------------|--------------------|
| `weight_only` | `Float8WeightOnlyConfig`                            | memory: weights stored in float8 e4m3, computed in the activation dtype | any (CUDA, CPU) |
| `dynamic`     | `Float8DynamicActivationFloat8WeightConfig(PerRow)` | compute: float8 x float8 matmuls, activations scaled per row at run time | CUDA sm89+ (Ada, Hopper) |

Which layers. Only the `nn.Linear` layers inside the repeated blocks: attention projections (q, k, v, out, the
added-stream projections, text cross-attention) and the MLPs. Kept in full precision, because they are small, run
once per sample or are sensitive to quantisation: the embedders (patch convolution, text, image and timestep
projections), every AdaLN modulation linear (`norm1.linear`, `norm1_context.linear`, `norm.linear`), all norms
(LayerNorm, RMSNorm), and the output head (`norm_out`, `proj_out`). Linears whose in/out widths are not multiples
of 16 (float8 matmul tiles) are skipped as well; at the released width none is. On the released model this
converts 1,509,949,440 of 2,037,809,600 weights (74%); the modulation linears hold most of the rest.

`dynamic` also keeps the text-stream linears (`TEXT_STREAM_SUFFIXES`: the dual blocks' added-stream projections and
MLP, the cross-attention's keys and values) in the activation dtype. They see only the prompt's tokens (77 for a
typical prompt once padding is trimmed, against 114,080 video tokens at 1280x736x121), so they are a fraction of a
percent of the work, and torchao's per-row float8 matmul fails on H100 / H200 for such short, wide inputs
(`CUBLAS_STATUS_NOT_SUPPORTED` in cuBLASLt's heuristic when M <= 256 and K is large: pytorch/ao issue 4582; it is what
the GPU check of 2026-12-04 hit with every linear converted).

Error against bfloat16: not yet measured on a GPU (the one GPU run, 2026-12-04, failed on the text stream as said
above); `benchmarks/transformer_speed.py --fp8 MODE`
prints the relative L2 error of one forward against the exact bf16 run. On CPU in float32, weight-only FP8 changes
the tiny test model's output by a relative L2 of about 3e-4.

Apply after loading and moving the model to its device and dtype, and before `compile_repeated_blocks`.
"""

from __future__ import annotations

import importlib.util
from typing import Literal

import torch
from torch import nn

Fp8Mode = Literal["weight_only", "dynamic"]
FP8_MODES: tuple[str, ...] = ("weight_only", "dynamic")
BLOCK_PREFIXES = ("transformer_blocks.", "single_transformer_blocks.")
EXCLUDED_SUFFIXES = ("norm1.linear", "norm1_context.linear", "norm.linear")
DYNAMIC_MIN_CAPABILITY = (8, 9)
# Linears that see only the text tokens (the dual blocks' added stream, the cross-attention's keys and values).
TEXT_STREAM_SUFFIXES = (
    "attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj", "attn.to_add_out",
    "ff_context.net.0.proj", "ff_context.net.2", "cross_attn.to_k", "cross_attn.to_v",
)  # fmt: skip


def is_fp8_linear(module: nn.Module, name: str) -> bool:
    """The layer-selection rule (usable as torchao's `filter_fn`)."""
    return (
        isinstance(module, nn.Linear)
        and name.startswith(BLOCK_PREFIXES)
        and not name.endswith(EXCLUDED_SUFFIXES)
        and module.in_features % 16 == 0
        and module.out_features % 16 == 0
    )


def is_fp8_compute_linear(module: nn.Module, name: str) -> bool:
    """`dynamic` mode's rule: `is_fp8_linear` less the text-stream linears (`TEXT_STREAM_SUFFIXES`)."""
    return is_fp8_linear(module, name) and not name.endswith(TEXT_STREAM_SUFFIXES)


LAYER_RULES = {"weight_only": is_fp8_linear, "dynamic": is_fp8_compute_linear}


def fp8_layer_names(model: nn.Module, mode: str = "weight_only") -> list[str]:
    """Names of the linears that `quantize_fp8(model, mode)` converts."""
    rule = LAYER_RULES[mode]
    return [name for name, module in model.named_modules() if rule(module, name)]


def torchao_available() -> bool:
    return importlib.util.find_spec("torchao") is not None


_WEIGHTS_ONLY = (
    "for memory savings use FP8 weights (fp8 mode 'weight_only'; generate's --fp8, eval's --fp8 weight_only)"
)


def check_fp8_support(mode: str, device: torch.device) -> None:
    """Raise a clear error if `mode` cannot run on `device` here."""
    if mode not in FP8_MODES:
        raise ValueError(f"fp8 mode must be one of {FP8_MODES}, got {mode!r}")
    if mode == "dynamic":
        if device.type != "cuda":
            raise ValueError(
                f"FP8 compute (fp8 mode 'dynamic'; generate's --fp8-compute, eval's --fp8 dynamic) needs a CUDA "
                f"device with compute capability >= 8.9 (Ada, Hopper), the model is on {device.type}; {_WEIGHTS_ONLY}"
            )
        capability = torch.cuda.get_device_capability(device)
        if capability < DYNAMIC_MIN_CAPABILITY:
            raise ValueError(
                f"FP8 compute (fp8 mode 'dynamic'; generate's --fp8-compute, eval's --fp8 dynamic) needs compute "
                f"capability >= 8.9 (Ada, Hopper), this GPU has {capability[0]}.{capability[1]}; {_WEIGHTS_ONLY}"
            )

    if not torchao_available():
        raise ValueError(
            "FP8 needs torchao, which is not installed: pip install 'motif-video[fp8]' (or pip install torchao)"
        )


def quantize_fp8(model: nn.Module, mode: Fp8Mode) -> nn.Module:
    """Convert the selected linears of `model` in place to FP8 (`mode` as in the module docstring); returns it."""
    device = next(model.parameters()).device
    check_fp8_support(mode, device)
    try:
        from torchao.quantization import (
            Float8DynamicActivationFloat8WeightConfig,
            Float8WeightOnlyConfig,
            PerRow,
            quantize_,
        )
    except ImportError as exc:
        raise ValueError(f"FP8 needs a working torchao ({exc}): pip install 'motif-video[fp8]'") from exc

    if not fp8_layer_names(model, mode):
        raise ValueError(f"{type(model).__name__} has no linear layers that FP8 applies to")
    if mode == "weight_only":
        config = Float8WeightOnlyConfig()
    else:
        config = Float8DynamicActivationFloat8WeightConfig(granularity=PerRow())
    quantize_(model, config, filter_fn=LAYER_RULES[mode])
    return model
