"""Row-wise work over token chunks at inference, so that wide temporaries exist for one chunk at a time.

At 1280x736x121 a hidden state is 114,080 tokens x 1536 (334 MiB in bfloat16), and a block's row-wise steps make
many times that at once: the MLP's 4x hidden layer and its GELU output, the single-stream block's [attention | MLP]
concatenation, the float32 copies inside QK-norm and RoPE. Each of those treats every token alone, so running it
over slices of the tokens and writing each slice's result into one output gives the same numbers with a fraction
of the memory (BENCHMARKS.md, "Transformer activation memory"). Under autograd everything runs in one piece: the
backward pass keeps every slice's activations anyway.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

# Tokens per slice: about the size of a 512x512 video's whole sequence, so small videos run in one piece.
DEFAULT_CHUNK_TOKENS = 16384


def rowwise(
    fn: Callable[..., torch.Tensor],
    *tensors: torch.Tensor,
    chunk: int | None = DEFAULT_CHUNK_TOKENS,
    dim: int = 1,
) -> torch.Tensor:
    """`fn(*tensors)` computed over slices of `chunk` positions along `dim` (every tensor is sliced there; a
    tensor of size 1 there is broadcast and passed whole). One call when `chunk` is None, autograd records, or
    there are at most `chunk` positions. `fn` must treat positions along `dim` independently."""
    length = max(t.shape[dim] for t in tensors)
    if chunk is None or length <= chunk or torch.is_grad_enabled():
        return fn(*tensors)
    if chunk < 1:
        raise ValueError(f"chunk must be a positive number of tokens or None, got {chunk}")
    out: torch.Tensor | None = None
    for start in range(0, length, chunk):
        size = min(chunk, length - start)
        part = fn(*(t if t.shape[dim] == 1 else t.narrow(dim, start, size) for t in tensors))
        if out is None:
            shape = list(part.shape)
            shape[dim] = length
            out = part.new_empty(shape)
        out.narrow(dim, start, size).copy_(part)
    assert out is not None
    return out
