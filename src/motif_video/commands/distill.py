"""`motif-video distill`: a few-step, guidance-free student from a recipe file plus key=value overrides."""

from __future__ import annotations

import argparse

from .recipe_args import add_recipe_arguments, configure_logging, recipe_overrides, report


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "distill",
        help="distil a teacher into a few-step, guidance-free student",
        description="Guidance + step distillation (piecewise rectified flow, docs/distillation.md) on the training "
        "machinery: checkpoints, exact resume, multi-GPU via `accelerate launch -m motif_video.cli distill ...`. "
        "The output folder loads with MotifVideoPipeline.from_pretrained(OUTPUT) and `motif-video generate "
        "--model OUTPUT`, using the student's step count, shift and guidance from generation_config.json.",
    )
    add_recipe_arguments(
        parser, "recipes/distill/tiny-cpu.yaml", "distill.steps=4 distill.guidance_scales=[4,8]"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..distill.config import load_distill_config
    from ..distill.objective import distill

    configure_logging()
    overrides = recipe_overrides(args)
    config = load_distill_config(args.config, overrides)
    report(distill(config), "distilled", "student")
    return 0
