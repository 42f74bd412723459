"""`motif-video info`: parameter and token counts of a preset at a video size."""

from __future__ import annotations

import argparse
import json

from .. import presets
from .numbers import COUNT


def register(sub: argparse._SubParsersAction) -> None:
    from ..hub import shipped_models

    parser = sub.add_parser("info", help="parameter and token counts of a model preset or a shipped model")
    parser.add_argument(
        "model",
        nargs="?",
        default="motif-video-2b",
        choices=sorted({*presets.PRESETS, *shipped_models()}),
        help="preset, or a model shipped in the package such as the small model's student small-4step "
        "(default: motif-video-2b)",
    )
    parser.add_argument(
        "--size",
        default=None,
        help="WIDTHxHEIGHTxFRAMES (default: the size of the model shipped under the preset's name, e.g. small's "
        "64x64x33, else 1280x736x121)",
    )
    parser.add_argument(
        "--text-tokens",
        type=int,
        default=None,
        help="prompt tokens after trimming (default: the most the shipped model's tokenizer takes, e.g. small's 64, "
        "else 512)",
    )
    parser.add_argument(
        "--image-tokens",
        type=int,
        default=None,
        help="SigLIP tokens of the I2V image (default: the shipped model's, e.g. small's 16, else 4096)",
    )
    parser.add_argument(
        "--steps",
        type=COUNT,
        default=None,
        help="denoising steps for the per-video FLOPs (default: the shipped model's, e.g. small's 20, else 50)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..defaults import RELEASED, model_defaults
    from ..flops import flops_table, video_flops
    from ..hub import shipped_model
    from ..info import (
        RELEASED_IMAGE_TOKENS,
        RELEASED_TEXT_TOKENS,
        folder_token_budget,
        format_summary,
        model_summary,
        parse_size,
    )

    shipped = shipped_model(args.model)  # the model shipped under the preset's name gives its size and steps
    d = model_defaults(shipped) if shipped is not None else RELEASED
    student = shipped if shipped is not None and d.is_student else None
    if student is not None:  # a student's tokenizer, image processor and words are its base's
        shipped = shipped_model(d.base_model or "") or student
    size = parse_size(args.size or f"{d.width}x{d.height}x{d.num_frames}")
    args.steps = args.steps if args.steps is not None else d.num_inference_steps
    budget = (
        folder_token_budget(shipped) if shipped is not None else (RELEASED_TEXT_TOKENS, RELEASED_IMAGE_TOKENS)
    )
    text_tokens = args.text_tokens if args.text_tokens is not None else budget[0]
    image_tokens = args.image_tokens if args.image_tokens is not None else budget[1]
    for name, value in (("--text-tokens", text_tokens), ("--image-tokens", image_tokens)):
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    model, passes = _transformer(args.model, student)
    summary = model_summary(model, size, text_tokens=text_tokens, image_tokens=image_tokens)
    config = dict(model.config)
    vocabulary = _vocabulary(shipped)
    if args.json:
        summary["vocabulary"] = vocabulary
        summary["flops"] = {
            mode: {
                "per_forward": report.total,
                "attention": report.attention,
                "linear": report.linear,
                "per_guided_step": passes * report.total,
                "passes_per_step": passes,
                "per_video": passes * args.steps * report.total,
                "stages": {name: stage.total for name, stage in report.stages.items()},
            }
            for mode, report in (
                ("t2v", video_flops(config, size, text_tokens)),
                ("i2v", video_flops(config, size, text_tokens, image_tokens=image_tokens)),
            )
        }
        print(json.dumps(summary, indent=2))
    else:
        print(format_summary(args.model, summary))
        print(flops_table(config, size, text_tokens, args.steps, image_tokens, passes))
        if vocabulary is not None:
            from ..vocabulary import describe_vocabulary

            print(describe_vocabulary(vocabulary))
    return 0


def _transformer(name: str, student):
    """(the transformer on the meta device, transformer passes per step) of a preset, or of a shipped student's
    folder `student`: its own transformer config, one pass per step (the guidance is an input, not a second pass)."""
    if student is None:
        return presets.build_transformer(name, device="meta"), 2  # each preset names its layout
    import torch

    from ..models import MotifVideoTransformer

    config = MotifVideoTransformer.load_config(student / "transformer")
    with torch.device("meta"):
        return MotifVideoTransformer.from_config(config), 1


def _vocabulary(folder) -> list[str] | None:
    """The words of a shipped model folder (the small model's closed word list), else None."""
    from ..vocabulary import folder_vocabulary

    return folder_vocabulary(folder) if folder is not None else None
