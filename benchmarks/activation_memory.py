"""Activation memory of one transformer block at the released width, with and without token chunking.

Counts the bytes of every tensor alive during one inference forward (a TorchDispatchMode that adds each new
storage's size and a finalizer that takes it off again), weights and buffers excluded, and reports the peak in
MiB and in hidden states (tokens x 1536 in the chosen dtype): the memory a GPU's allocator would need above the
weights, counted exactly on the CPU. One model per block kind at the released width: one dual-stream block, or one
encoder-side single-stream block (with its text cross-attention), the embedders and the head around it.

    PYTHONPATH=src python benchmarks/activation_memory.py                 # 640x368x33 (8,280 tokens), bfloat16
    PYTHONPATH=src python benchmarks/activation_memory.py --chunk 2048    # slices of 2,048 tokens

Chunking (`models.chunking`) slices the MLP, QK-norm and RoPE; its saving depends on the slice's share of the
sequence (the default 16,384 tokens is 14 % of a 1280x736x121 sequence; `--chunk 2048` at the default size is 25 %).
"""

from __future__ import annotations

import argparse
import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

BLOCKS = {"dual": (1, 0), "single": (0, 1)}  # num_layers, num_single_layers


class LiveBytes(TorchDispatchMode):
    """Bytes of the storages made while active and still alive; `peak` is the most at any op."""

    def __init__(self, ignore: list[torch.Tensor]) -> None:
        super().__init__()
        self.ignore = {t.untyped_storage().data_ptr() for t in ignore}
        self.alive: set[int] = set()
        self.live = self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            if not isinstance(tensor, torch.Tensor):
                continue
            storage = tensor.untyped_storage()
            key, size = storage.data_ptr(), storage.nbytes()
            if size == 0 or key in self.alive or key in self.ignore:
                continue
            self.alive.add(key)
            self.live += size
            weakref.finalize(storage, self._free, key, size)
        self.peak = max(self.peak, self.live)
        return out

    def _free(self, key: int, size: int) -> None:
        self.live -= size
        self.alive.discard(key)


def one_block_model(block: str, dtype: torch.dtype) -> torch.nn.Module:
    """The released width with one block of kind `block`, the embedders and the head; random weights."""
    from motif_video.presets import build_transformer

    dual, single = BLOCKS[block]
    torch.manual_seed(0)
    model = build_transformer(
        "motif-video-2b", num_layers=dual, num_single_layers=single, num_decoder_layers=0
    )
    return model.eval().to(dtype)


def peak_bytes(model: torch.nn.Module, size: tuple[int, int, int], chunk: int | None) -> tuple[int, int]:
    """(peak activation bytes, tokens) of one forward of `model` with `chunk`-token slices (None: whole)."""
    width, height, frames = size
    dtype = next(model.parameters()).dtype
    model.enable_forward_chunking(chunk)
    t = (frames - 1) // 4 + 1
    x = torch.randn(1, 33, t, height // 8, width // 8, dtype=dtype)
    text = torch.randn(1, 77, model.config.text_embed_dim, dtype=dtype)
    mode = LiveBytes([*model.parameters(), *model.buffers()])
    with torch.no_grad(), mode:
        model(x, 500.0, text)
    return mode.peak, t * (height // 16) * (width // 16)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", default="640x368x33", help="WIDTHxHEIGHTxFRAMES (default 640x368x33)")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    parser.add_argument("--chunk", type=int, default=2048, help="tokens per slice for the chunked rows")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    size = tuple(int(v) for v in args.size.split("x"))
    dtype = getattr(torch, args.dtype)
    print(
        "| block | tokens | chunk | peak activations MiB | hidden states | vs unchunked |\n|---|---|---|---|---|---|"
    )
    for block in BLOCKS:
        model = one_block_model(block, dtype)
        whole, tokens = peak_bytes(model, size, None)
        sliced, _ = peak_bytes(model, size, args.chunk)
        unit = tokens * 1536 * dtype.itemsize
        for chunk, peak in ((None, whole), (args.chunk, sliced)):
            print(f"| {block} | {tokens:,} | {chunk or 'off'} | {peak / 2**20:.0f} | {peak / unit:.1f} | "
                  f"{peak / whole:.2f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
