"""`motif-video train`: train or fine-tune from a recipe file plus key=value overrides."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "train",
        help="train or fine-tune the transformer from a recipe",
        description="Train from a recipe (YAML / JSON / TOML). Multi-GPU: `accelerate launch -m motif_video.cli "
        "train ...` or `torchrun --nproc_per_node N -m motif_video.cli train ...`.",
    )
    parser.add_argument("--config", required=True, help="recipe file, e.g. recipes/tiny-cpu/config.yaml")
    parser.add_argument("--output", help="output folder (overrides output_dir)")
    parser.add_argument("--max-steps", type=int, help="total optimiser steps (overrides max_steps)")
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value", help="e.g. optim.lr=1e-4 data.batch_size=2"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging

    from ..training.config import load_config
    from ..training.trainer import train

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    overrides = list(args.overrides)
    if args.output:
        overrides.append(f"output_dir={args.output}")
    if args.max_steps is not None:
        overrides.append(f"max_steps={args.max_steps}")
    result = train(load_config(args.config, overrides))
    if result.losses:
        print(
            f"trained to step {result.step}; last loss {result.losses[-1]:.4f}; output in {result.output_dir}"
        )
    return 0
