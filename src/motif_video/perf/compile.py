"""Regional `torch.compile`: compile each repeated block, not the whole model.

All dual-stream blocks share one compiled graph, and so do all single-stream blocks (parameters are graph inputs),
so compile time is that of a few blocks, not 36. The timestep reaches the blocks as the embedding `temb` [B, D]:
a new value each denoising step, the same shape, hence no recompilation across steps. A new video size, text
length or batch size compiles once more (then the shapes are marked dynamic by torch's automatic-dynamic rule).
"""

from __future__ import annotations

from typing import Any

from torch import nn

DEFAULT_RECOMPILE_LIMIT = 32


def compile_repeated_blocks(
    model: nn.Module,
    *,
    backend: str = "inductor",
    mode: str | None = None,
    dynamic: bool | None = None,
    fullgraph: bool = False,
    recompile_limit: int | None = DEFAULT_RECOMPILE_LIMIT,
) -> nn.Module:
    """Compile every block of `model.repeated_blocks()` in place and return the model.

    `recompile_limit` raises torch's per-code-object cache limit (default 8) because the block classes appear with
    several guard sets (with and without cross-attention, mask or no mask, T2V and I2V); None leaves it alone.
    """
    import torch

    blocks = model.repeated_blocks()
    if not blocks:
        raise ValueError(f"{type(model).__name__}.repeated_blocks() returned no blocks to compile")
    if recompile_limit is not None:
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, recompile_limit)
    options: dict[str, Any] = {"backend": backend, "dynamic": dynamic, "fullgraph": fullgraph}
    if mode is not None:
        options["mode"] = mode
    for block in blocks:
        block.compile(**options)
    return model


def is_compiled(block: nn.Module) -> bool:
    return getattr(block, "_compiled_call_impl", None) is not None
