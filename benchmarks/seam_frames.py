"""Where an extension's seam is: the frame-to-frame change around each window boundary, frame by frame.

`motif-video eval --extend` reports one ratio per boundary (the largest change in the boundary's cross-fade over the
median change elsewhere); this prints the changes themselves, from two frames before a window starts to three
frames past its overlap, so a jump can be placed: inside the cross-fade (the window's reconstruction of the
condition differs from the frames it blends with) or after it (the window's first generated latent frame). With
`--strip DIR`, one PNG per case: a row per boundary, the same frames side by side.

    PYTHONPATH=src python benchmarks/seam_frames.py --model small --cases 3 --strip runs/seams
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    import PIL.Image

    from motif_video.evaluation.conditions import frame_changes
    from motif_video.evaluation.suite import prompt_suite
    from motif_video.extension import extend_frames, pipeline_window, plan_extension
    from motif_video.pipelines import MotifVideoImageToVideoPipeline
    from motif_video.synthetic import render

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="small")
    parser.add_argument("--cases", type=int, default=3)
    parser.add_argument("--extend", type=int, default=4, help="the video's length in clip lengths")
    parser.add_argument("--frames", type=int, default=33)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--overlap", type=int, default=9)
    parser.add_argument("--crossfade", type=int, default=0, help="generated frames each window fades in over")
    parser.add_argument(
        "--condition-guidance", type=float, default=None, help="the pipeline's condition_guidance"
    )
    parser.add_argument("--strip", type=Path, help="write a PNG of the frames around each boundary here")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipe = MotifVideoImageToVideoPipeline.from_pretrained(args.model, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    f, size, overlap = args.frames, args.size, args.overlap
    plan = plan_extension(f, args.extend * f, f, overlap, args.crossfade)
    starts = plan.window_starts
    shared = plan.shared
    offsets = list(range(-2, shared + 3))  # frames around a window start s: changes s+o -> s+o+1
    results = []
    guidance = {} if args.condition_guidance is None else {"condition_guidance": args.condition_guidance}
    for n, case in enumerate(prompt_suite(args.cases)):
        truth = render(case.scene, f, size, size)
        frames: list[np.ndarray] = []
        make = pipeline_window(
            pipe, [case.prompt] * plan.windows, 0, overlap, height=size, width=size, num_frames=f, **guidance
        )
        extend_frames(iter(truth), plan, make, frames.append)
        video = np.concatenate(frames)
        changes = frame_changes(video)
        rows = [[round(float(changes[s + o]), 2) for o in offsets if s + o < len(changes)] for s in starts]
        results.append(
            {"prompt": case.prompt, "median_change": round(float(np.median(changes)), 2), "changes": rows}
        )
        if args.strip:
            args.strip.mkdir(parents=True, exist_ok=True)
            strip = np.concatenate(
                [np.concatenate(list(video[s - 2 : s + shared + 3]), axis=1) for s in starts], axis=0
            )
            PIL.Image.fromarray(strip).save(args.strip / f"case{n}.png")
    print(
        json.dumps(
            {"model": args.model, "window_starts": starts, "offsets": offsets, "cases": results}, indent=1
        )
    )


if __name__ == "__main__":
    main()
