"""`motif-video generate`: prompt(s) (and optionally a first frame) in, MP4(s) out.

The flags come from the option declarations (`motif_video.options`); this module only parses and calls."""

from __future__ import annotations

import argparse
import os
from dataclasses import replace


def register(sub: argparse._SubParsersAction) -> None:
    from ..options import add_arguments

    p = sub.add_parser(
        "generate",
        help="text/image to video, written as MP4",
        description="Generate videos with Motif-Video 2B (text-to-video, or image-to-video with --image). "
        "Bad input exits with status 2 before any model is loaded.",
    )
    add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..defaults import model_defaults
    from ..generation import generate, plan_generation
    from ..options import VIDEO_TO_VIDEO_STRENGTH, check_generation_request, request_from_args
    from ..pipelines.run_plan import first_kept_step

    request = request_from_args(args)
    check_generation_request(request)
    if request.threads:
        import torch

        torch.set_num_threads(request.threads)
    plan = plan_generation(request)
    if args.replay is not None:
        plan = replace(plan, replayed=args.replay)
    r = plan.request
    if int(os.environ.get("RANK", "0")) == 0:
        steps = f"{r.steps} steps"
        if r.video is not None:  # video-to-video runs the last steps only
            strength = r.strength if r.strength is not None else VIDEO_TO_VIDEO_STRENGTH
            steps = f"{r.steps - first_kept_step(r.steps, strength)} of {steps} (strength {strength:g})"
        print(
            f"seed {plan.seed}; {len(r.prompts)} prompt(s); {r.width}x{r.height}x{r.num_frames}, "
            f"{steps} on {plan.device} ({plan.dtype})"
        )
        if (warning := model_defaults(r.model).size_warning(r.height, r.width)) is not None:
            print(f"warning: {warning}")
    generate(plan)
    return 0
