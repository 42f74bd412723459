"""`motif-video info`: parameter and token counts of a preset, a shipped model or a local model folder at a video
size."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .. import presets
from .numbers import COUNT


def register(sub: argparse._SubParsersAction) -> None:
    from ..hub import shipped_models

    parser = sub.add_parser(
        "info", help="parameter and token counts of a model preset, a shipped model or a local model folder"
    )
    parser.add_argument(
        "model",
        nargs="?",
        default="motif-video-2b",
        help=f"preset ({', '.join(sorted(presets.PRESETS))}), a model shipped in the package "
        f"({', '.join(shipped_models())}, e.g. the small model's student small-4step), or a local model folder as "
        "`generate --model` takes it: a pipeline folder, a training output, a training checkpoint "
        "RUN/checkpoints/step-N or a distilled student (default: motif-video-2b)",
    )
    parser.add_argument(
        "--size",
        default=None,
        help="WIDTHxHEIGHTxFRAMES (default: the model folder's size, e.g. small's 64x64x33, else 1280x736x121)",
    )
    parser.add_argument(
        "--text-tokens",
        type=int,
        default=None,
        help="prompt tokens after trimming (default: the most the model folder's tokenizer takes, e.g. small's 64, "
        "else 512)",
    )
    parser.add_argument(
        "--image-tokens",
        type=int,
        default=None,
        help="SigLIP tokens of the I2V image (default: the model folder's, e.g. small's 16, else 4096)",
    )
    parser.add_argument(
        "--steps",
        type=COUNT,
        default=None,
        help="denoising steps for the per-video FLOPs (default: the model folder's, e.g. small's 20, else 50)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..defaults import RELEASED, model_defaults
    from ..flops import flops_table, video_flops
    from ..info import format_summary, model_summary, parse_size
    from ..model_folder import folder_parts

    folder = _model_folder(args.model)  # the model shipped under a preset's name gives its size and steps
    parts = folder_parts(folder) if folder is not None else None  # a student's tokenizer is its base's
    d = model_defaults(folder) if folder is not None else RELEASED
    size = parse_size(args.size or f"{d.width}x{d.height}x{d.num_frames}")
    args.steps = args.steps if args.steps is not None else d.num_inference_steps
    budget, vocabulary = _components(parts.components if parts is not None else None)
    text_tokens = args.text_tokens if args.text_tokens is not None else budget[0]
    image_tokens = args.image_tokens if args.image_tokens is not None else budget[1]
    for name, value in (("--text-tokens", text_tokens), ("--image-tokens", image_tokens)):
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    model = _transformer(args.model, parts)
    weights = _checkpoint_weights(parts) if parts is not None and parts.checkpoint else None
    # a guidance-distilled student takes the guidance as an input, a folded one none: one pass per step
    passes = 1 if model.config.guidance_embeds or d.guidance == "none" else 2
    summary = model_summary(model, size, text_tokens=text_tokens, image_tokens=image_tokens)
    config = dict(model.config)
    if args.json:
        summary["vocabulary"] = vocabulary
        if weights is not None:
            summary["weights"] = weights
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
        if weights is not None:
            print(
                f"{'LoRA' if weights['holds'] == 'lora' else 'transformer'} weights: the training checkpoint's, at "
                f"step {weights['step']} ({weights['checkpoint']}); the rest is its run's ({weights['run']})"
            )
    return 0


def _model_folder(name: str) -> Path | None:
    """The folder of a shipped model or of a local model folder; None for a preset (built from its config); a
    ValueError naming what is allowed otherwise."""
    from ..hub import shipped_model, shipped_models

    shipped = shipped_model(name)
    if shipped is not None:
        return shipped
    if name in presets.PRESETS:
        return None
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    raise ValueError(
        f"model must be a preset ({', '.join(sorted(presets.PRESETS))}), a model shipped in the package "
        f"({', '.join(shipped_models())}) or a local model folder, got {name!r}"
        + (" (a file)" if path.exists() else " (no such folder)")
    )


def _transformer(name: str, parts):
    """The transformer on the meta device: a preset's, or the one a model folder's `parts` (`FolderParts`) name (a
    full training checkpoint's: its run's architecture)."""
    if parts is None:
        return presets.build_transformer(name, device="meta")  # each preset names its layout
    if parts.transformer is None:
        from ..training.export import checkpoint_architecture

        return checkpoint_architecture(parts.checkpoint)
    import torch

    from ..models import MotifVideoTransformer

    config = MotifVideoTransformer.load_config(parts.transformer)
    with torch.device("meta"):
        return MotifVideoTransformer.from_config(config)


def _checkpoint_weights(parts) -> dict:
    """The training checkpoint whose weights the model takes (`parts`: a checkpoint's `FolderParts`), its step, its
    run (which gives the rest) and what it holds: a LoRA run's, the adapter ("lora", on the transformer its parts
    name), else the transformer (its parts name none: its architecture is its run's recipe)."""
    from ..model_folder import training_output
    from ..training.checkpoint import load_state

    checkpoint = parts.checkpoint
    return {
        "checkpoint": str(checkpoint),
        "step": load_state(checkpoint)["step"],
        "run": str(training_output(checkpoint).folder),
        "holds": "transformer" if parts.transformer is None else "lora",
    }


def _components(components: str | None) -> tuple[tuple[int, int], list[str] | None]:
    """((text, image) tokens at most, the closed word list or None) of a model's tokenizer, image processor and
    text encoder: a pipeline folder's, the offline stand-ins' ("tiny"), else (None) the released model's."""
    from ..info import RELEASED_IMAGE_TOKENS, RELEASED_TEXT_TOKENS, folder_token_budget, token_budget
    from ..model_folder import TINY
    from ..vocabulary import folder_vocabulary, tokenizer_vocabulary

    if components is None:
        return (RELEASED_TEXT_TOKENS, RELEASED_IMAGE_TOKENS), None
    if components != TINY:
        return folder_token_budget(components), folder_vocabulary(components)
    from ..training.components import text_encoder_config, tiny_feature_extractor, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    budget = token_budget(
        {"model_max_length": tokenizer.model_max_length},
        tiny_feature_extractor().to_dict(),
        text_encoder_config().to_dict(),
    )
    return budget, tokenizer_vocabulary(tokenizer)
