"""`motif-video distill`: a few-step, guidance-free student from a recipe file plus key=value overrides."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "distill",
        help="distil a teacher into a few-step, guidance-free student",
        description="Guidance + step distillation (piecewise rectified flow, docs/distillation.md) on the training "
        "machinery: checkpoints, exact resume, multi-GPU via `accelerate launch -m motif_video.cli distill ...`. "
        "The output folder loads with MotifVideoPipeline.from_pretrained(OUTPUT) and `motif-video generate "
        "--model OUTPUT`, using the student's step count, shift and guidance from generation_config.json.",
    )
    parser.add_argument("--config", required=True, help="recipe file, e.g. recipes/distill/tiny-cpu.yaml")
    parser.add_argument("--output", help="output folder (overrides output_dir)")
    parser.add_argument("--max-steps", type=int, help="total optimiser steps (overrides max_steps)")
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value", help="e.g. distill.steps=4 distill.guidance_scales=[4,8]"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging

    from ..distill.config import load_distill_config
    from ..distill.objective import distill

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    overrides = list(args.overrides)
    if args.output:
        overrides.append(f"output_dir={args.output}")
    if args.max_steps is not None:
        overrides.append(f"max_steps={args.max_steps}")
    config = load_distill_config(args.config, overrides)
    result = distill(config)
    if result.losses:
        print(
            f"distilled to step {result.step}; last loss {result.losses[-1]:.4f}; student in {result.output_dir}"
        )
    return 0
