"""`motif-video extend`: continue a clip window by window into one longer MP4 (`motif_video.extension`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..replay import EXTEND_FIELDS

# The generate options `extend` takes (declared in `motif_video.options`): those an extension records
# (`replay.EXTEND_FIELDS`; the size has its own flags below, the clip stretched to it), the seed and the threads.
EXTEND_OPTIONS = (*(n for n in EXTEND_FIELDS if n not in ("width", "height")), "seed", "threads")


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
        nargs="?",
        help="the video to continue (MP4; resized by --width and --height, else kept where the model can take its "
        "size, or kept in shape at the model's size; a model of one size, like small, takes that size); "
        "with --replay it may be left out: the clip the video was extended from",
    )
    p.add_argument(
        "--replay",
        type=Path,
        metavar="VIDEO.mp4",
        help="make an extended video again from the settings `extend` stored in it (its clip, prompts, seed, "
        "length, model...); flags given as well override them",
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
        "--seconds",
        type=float,
        help="length of the whole output video, in seconds (required unless --replay)",
    )
    p.add_argument(
        "--overlap",
        type=int,
        default=None,
        help=f"frames each window is conditioned on, 4m+1 (default: {DEFAULT_OVERLAP}, or on a shorter window the "
        "largest 4m+1 that leaves the window new frames: 5 for a 9-frame window)",
    )
    p.add_argument(
        "--crossfade",
        type=int,
        default=DEFAULT_CROSSFADE,
        metavar="N",
        help="frames each window generates again over the end of the video so far and fades in over, hiding the "
        f"step after its condition (0: the fade runs over the overlap; default: {DEFAULT_CROSSFADE})",
    )
    p.add_argument(
        "--output",
        type=Path,
        default=None,
        help="the MP4 written (default: CLIP-extended.mp4, with --replay VIDEO-replay.mp4)",
    )
    for name in ("width", "height"):
        p.add_argument(
            f"--{name}",
            type=int,
            default=None,
            help=f"{name} of the output in pixels, a multiple of 16: the clip is stretched to it first (default: "
            "the clip's own where its sides are multiples of 16, else its shape at the model's pixel count; a "
            "model trained at one size, like small's 64x64, takes that size)",
        )
    at = EXTEND_OPTIONS.index("model")  # its own flag: its default is the clip's model
    add_arguments(p, [OPTIONS[name] for name in EXTEND_OPTIONS[:at]])
    p.add_argument(
        "--model",
        default=None,
        help=f"{OPTIONS['model'].help} (default: the model the clip records, if it is ours, else {DEFAULT_MODEL_ID})",
    )
    add_arguments(p, [OPTIONS[name] for name in EXTEND_OPTIONS[at + 1 :]])
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..extension import run_extension
    from ..options import read_prompt_file

    if args.prompt is not None:
        prompts = [args.prompt]
    else:  # none: the clip's own (`extension.settings_from_record`)
        prompts = read_prompt_file(args.prompt_file) if args.prompt_file is not None else []
    values = {name: getattr(args, name) for name in (*EXTEND_OPTIONS, "width", "height")}
    if args.replay is not None:
        plan, values = replayed(args, values, prompts)
        output = args.output or args.replay.with_name(f"{args.replay.stem}-replay.mp4")
    elif args.clip is None or args.seconds is None:
        raise ValueError("extend needs CLIP and --seconds (or --replay VIDEO.mp4)")
    else:
        plan = {
            "clip": args.clip,
            "seconds": args.seconds,
            "overlap": args.overlap,
            "crossfade": args.crossfade,
        }
        values["prompts"] = prompts
        output = args.output or args.clip.with_name(f"{args.clip.stem}-extended.mp4")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    run_extension(values, plan["clip"], plan["seconds"], plan["overlap"], output, crossfade=plan["crossfade"],
                  replayed=args.replay)  # fmt: skip
    return 0


def replayed(args: argparse.Namespace, values: dict, prompts: list[str]) -> tuple[dict, dict]:
    """The plan (clip, seconds, overlap, crossfade) and request values of `--replay`, with the flags given on the
    command line over them (even where a flag's value is its default: `--overlap 9` over a recorded 5)."""
    from ..condition_layout import DEFAULT_CROSSFADE
    from ..options import given_values
    from ..replay import extend_replay_values

    stored = extend_replay_values(args.replay, args.clip)
    given = getattr(args, "given", None)  # the flags on the command line (`cli.given_flags`)
    if given is None:  # a namespace built another way: a value other than its flag's default counts as given
        defaults = {"seconds": None, "overlap": None, "crossfade": DEFAULT_CROSSFADE}
        given = {k for k, default in defaults.items() if getattr(args, k) != default}
    plan = {"clip": stored["clip"]}
    for key in ("seconds", "overlap", "crossfade"):
        plan[key] = getattr(args, key) if key in given else stored[key]
    values = {**stored["values"], **given_values(values, given)}
    if prompts:
        values["prompts"] = prompts
    return plan, values
