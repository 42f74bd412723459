"""The `motif-video` command: parse, build a config, call one library function."""

from __future__ import annotations

import argparse
import json
import sys

from . import presets


def _info(args: argparse.Namespace) -> int:
    from .info import format_summary, model_summary, parse_size

    size = parse_size(args.size)
    layout = "separate" if args.model == "motif-video-2b" else "shared"  # the Hub file uses the diffusers layout
    model = presets.build_transformer(args.model, device="meta", cross_attention_layout=layout)
    summary = model_summary(model, size)
    print(json.dumps(summary, indent=2) if args.json else format_summary(args.model, summary))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="motif-video", description="Motif-Video 2B: generate, train, inspect.")
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="parameter and token counts of a model preset")
    info.add_argument("model", nargs="?", default="motif-video-2b", choices=sorted(presets.PRESETS), help="preset (default: motif-video-2b)")
    info.add_argument("--size", default="1280x736x121", help="WIDTHxHEIGHTxFRAMES (default: 1280x736x121)")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.set_defaults(func=_info)
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
