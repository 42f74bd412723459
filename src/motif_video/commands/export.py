"""`motif-video export`: a transformer, student or LoRA as one file for ComfyUI / diffusers single-file / GGUF."""

from __future__ import annotations

import argparse
from pathlib import Path

DTYPES = ("float32", "bfloat16", "float16")


def register(sub: argparse._SubParsersAction) -> None:
    from ..interop.choices import LAYOUTS, WRITE_TYPES

    p = sub.add_parser(
        "export",
        help="write a transformer, student or LoRA as one ComfyUI-layout .safetensors, or a GGUF transformer",
        description="Export SOURCE (a model, transformer or student folder, or a training checkpoint "
        "RUN/checkpoints/step-N; a LoRA file or folder in diffusers, peft, kohya/musubi or ComfyUI format) as one "
        "file: transformers in the released checkpoint's naming "
        "(what ComfyUI and diffusers' from_single_file read), LoRAs with ComfyUI's diffusion_model. keys, with "
        "metadata; --gguf writes the transformer as GGUF.",
    )
    p.add_argument(
        "source",
        type=Path,
        help="model / transformer / student folder, training checkpoint folder, or LoRA file / folder",
    )
    p.add_argument(
        "--output", type=Path, required=True, help="the .safetensors (or .gguf with --gguf) to write"
    )
    p.add_argument(
        "--gguf",
        choices=WRITE_TYPES,
        default=None,
        help="write the transformer as GGUF of this type (default: off, safetensors)",
    )
    p.add_argument(
        "--guidance-scale",
        type=float,
        default=None,
        help="guidance-distilled student: the scale folded into the timestep embedding (default: the student's "
        "generation_config.json guidance_scale)",
    )
    p.add_argument(
        "--base-model",
        default=None,
        help="the base model a LoRA was trained on (folder, shipped name or Hub id), checked against its modules "
        "and written to the metadata (default: the student folder's base_model)",
    )
    p.add_argument(
        "--layout",
        choices=LAYOUTS,
        default=None,
        help="cross-attention layout of a transformer export: separate (the released file's, read by diffusers), "
        "shared (the paper's, read by Motif's ComfyUI nodes; only from a shared-layout model), auto: separate "
        "when a shared-layout model folds into it exactly, else shared (default: auto)",
    )
    p.add_argument(
        "--dtype",
        default=None,
        choices=DTYPES,
        help="weights dtype in a .safetensors export, a transformer's or a LoRA's (default: as stored)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..interop.export import export

    if args.dtype is not None and args.gguf:
        raise ValueError("--dtype applies to .safetensors exports; a GGUF file's types are set by --gguf")
    dtype = getattr(torch, args.dtype) if args.dtype else None
    result = export(
        args.source, args.output, args.gguf, args.guidance_scale, args.base_model, dtype, args.layout
    )
    print(f"wrote {result.path} ({result.kind}, {result.tensors} tensors)")
    for note in result.notes:
        print(f"  {note}")
    return 0
