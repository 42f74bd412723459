"""Arguments shared by the recipe-driven commands (`train`, `distill`): a recipe file plus key=value overrides."""

from __future__ import annotations

import argparse
import os


def add_recipe_arguments(
    parser: argparse.ArgumentParser, example_recipe: str, example_overrides: str
) -> None:
    parser.add_argument("--config", required=True, help=f"recipe file, e.g. {example_recipe}")
    parser.add_argument("--output", help="output folder (overrides output_dir)")
    parser.add_argument("--max-steps", type=int, help="total optimiser steps (overrides max_steps)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help=f"e.g. {example_overrides}")


def recipe_overrides(args: argparse.Namespace) -> list[str]:
    """The key=value overrides with --output and --max-steps folded in."""
    overrides = list(args.overrides)
    if args.output:
        overrides.append(f"output_dir={args.output}")
    if args.max_steps is not None:
        overrides.append(f"max_steps={args.max_steps}")
    return overrides


def configure_logging() -> None:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")


def report(result, done: str, where: str) -> None:
    """A run's last line (`done`: "trained" or "distilled"; `where`: what its output folder holds), printed by rank 0
    only: under torchrun every rank returns the result."""
    if int(os.environ.get("RANK", "0")) != 0:
        return
    if result.losses:
        print(
            f"{done} to step {result.step}; last loss {result.losses[-1]:.4f}; {where} in {result.output_dir}"
        )
    else:
        print(nothing_trained(result))


def nothing_trained(result) -> str:
    """What a run that trained no step did (a `TrainResult` of one resumed at or past max_steps)."""
    done = "exported to" if result.exported else "its export is already in"
    return f"nothing to train: already at step {result.step}; {done} {result.output_dir}"
