"""`motif-video info`: parameter and token counts of a preset at a video size."""

from __future__ import annotations

import argparse
import json

from .. import presets


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("info", help="parameter and token counts of a model preset")
    parser.add_argument(
        "model",
        nargs="?",
        default="motif-video-2b",
        choices=sorted(presets.PRESETS),
        help="preset (default: motif-video-2b)",
    )
    parser.add_argument("--size", default="1280x736x121", help="WIDTHxHEIGHTxFRAMES (default: 1280x736x121)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..info import format_summary, model_summary, parse_size

    size = parse_size(args.size)
    layout = (
        "separate" if args.model == "motif-video-2b" else "shared"
    )  # the Hub file uses the diffusers layout
    model = presets.build_transformer(args.model, device="meta", cross_attention_layout=layout)
    summary = model_summary(model, size)
    print(json.dumps(summary, indent=2) if args.json else format_summary(args.model, summary))
    return 0
