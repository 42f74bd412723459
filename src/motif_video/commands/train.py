"""`motif-video train`: train or fine-tune from a recipe file plus key=value overrides."""

from __future__ import annotations

import argparse

from .recipe_args import add_recipe_arguments, configure_logging, recipe_overrides, report


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "train",
        help="train or fine-tune the transformer from a recipe",
        description="Train from a recipe (YAML / JSON / TOML). Multi-GPU: `accelerate launch -m motif_video.cli "
        "train ...` or `torchrun --nproc_per_node N -m motif_video.cli train ...`.",
    )
    add_recipe_arguments(parser, "recipes/tiny-cpu/config.yaml", "optim.lr=1e-4 data.batch_size=2")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..training.config import load_config
    from ..training.trainer import train

    configure_logging()
    overrides = recipe_overrides(args)
    report(train(load_config(args.config, overrides)), "trained", "output")
    return 0
