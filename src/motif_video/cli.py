"""The `motif-video` command: parse, build a config, call one library function.

Each subcommand lives in `motif_video.commands.<name>` and registers its own parser.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = ["info", "generate", "extend", "train", "cache", "distill", "eval", "export", "serve"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="motif-video", description="Motif-Video 2B: generate, train, inspect."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"motif_video.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ValueError as exc:
        print(f"motif-video {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
