"""`motif-video extend`: continue a clip window by window into one longer MP4 (`motif_video.extension`)."""

from __future__ import annotations

import argparse
from pathlib import Path

# The generate options `extend` takes (declared in `motif_video.options`); the size is the clip's unless asked for
# (its own flags below: the clip is stretched to it), the frames come from the clip and the window, the output is
# the extended video.
EXTEND_OPTIONS = (
    "num_frames", "steps", "guidance", "guidance_scale", "guidance_batching", "shift", "negative_prompt", "seed",
    "model", "dtype", "device", "threads", "offload", "memory_budget", "attention_backend",
    "lora", "fuse_lora", "condition_guidance",
)  # fmt: skip


def register(sub: argparse._SubParsersAction) -> None:
    from ..condition_layout import DEFAULT_CROSSFADE, DEFAULT_OVERLAP
    from ..hub import DEFAULT_MODEL_ID
    from ..options import OPTIONS, add_arguments

    p = sub.add_parser(
        "extend",
        help="continue a video window by window (image-to-video on the last frames), written as one MP4",
        description="Extend CLIP to --seconds seconds in all: each window of --num-frames frames is conditioned on "
        "--overlap frames of the video so far and cross-faded into it (over the overlap, or over --crossfade "
        "frames it generates again after them). A clip that motif-video made records its prompt and "
        "model, which are used where --prompt and --model are not given. Bad input exits with status 2 before any "
        "model is loaded. The released weights saw only frame 0 as a condition; a clip prefix needs a model trained on it "
        "(recipes/motif-video-2b/conditions-lora.yaml).",
    )
    p.add_argument(
        "clip",
        type=Path,
        help="the video to continue (MP4; width and height multiples of 16, or resized by --width and --height)",
    )
    prompts = p.add_mutually_exclusive_group()
    prompts.add_argument(
        "--prompt",
        help="the prompt of every window (default: the last prompt the clip records, if it is ours)",
    )
    prompts.add_argument(
        "--prompt-file", type=Path, help="one prompt per line, one line per window (the last repeats)"
    )
    p.add_argument(
        "--seconds", type=float, required=True, help="length of the whole output video, in seconds"
    )
    p.add_argument(
        "--overlap",
        type=int,
        default=DEFAULT_OVERLAP,
        help=f"frames each window is conditioned on, 4m+1 (default: {DEFAULT_OVERLAP})",
    )
    p.add_argument(
        "--crossfade",
        type=int,
        default=DEFAULT_CROSSFADE,
        metavar="N",
        help="frames each window generates again over the end of the video so far and fades in over, hiding the "
        f"step after its condition (0: the fade runs over the overlap; default: {DEFAULT_CROSSFADE})",
    )
    p.add_argument("--output", type=Path, default=None, help="the MP4 written (default: CLIP-extended.mp4)")
    for name in ("width", "height"):
        p.add_argument(
            f"--{name}",
            type=int,
            default=None,
            help=f"{name} of the output in pixels, a multiple of 16: the clip is stretched to it first (default: "
            "the clip's own; a model trained at one size, like small's 64x64, wants that size)",
        )
    add_arguments(p, [OPTIONS[name] for name in EXTEND_OPTIONS if name != "model"])
    p.add_argument(
        "--model",
        default=None,
        help=f"{OPTIONS['model'].help} (default: the model the clip records, if it is ours, else {DEFAULT_MODEL_ID})",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..extension import run_extension
    from ..options import read_prompt_file

    if args.prompt is not None:
        prompts = [args.prompt]
    else:  # none: the clip's own (`extension.settings_from_record`)
        prompts = read_prompt_file(args.prompt_file) if args.prompt_file is not None else []
    values = {name: getattr(args, name) for name in (*EXTEND_OPTIONS, "width", "height")}
    output = args.output or args.clip.with_name(f"{args.clip.stem}-extended.mp4")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    run_extension(
        {**values, "prompts": prompts},
        args.clip,
        args.seconds,
        args.overlap,
        output,
        crossfade=args.crossfade,
    )
    return 0
