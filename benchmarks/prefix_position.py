"""Does the model continue a prefix from wherever it is on its path? The prefix pattern (a clip's first 9 frames
at frame 0) on each case's ground-truth clip, and on the same scene advanced `--advance` clip lengths along its path
(`synthetic.scenes.advance`: 0.75 is where a 4x extension's second window starts). Printed per case: the median
frame-to-frame change of the generated clip and the changes from frame 6 to 13, around the window's first generated
latent frame (pixel frames 9-12); a model that takes the prefix as the caption's start shows a jump there only for
the advanced scenes. Moving cases only (an advanced growing scene is the same scene).

    PYTHONPATH=src python benchmarks/prefix_position.py --model small --cases 8 --seeds 2 --threads 2
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch


def main() -> None:
    from motif_video.evaluation.conditions import frame_changes, pattern_call
    from motif_video.evaluation.suite import eval_suite
    from motif_video.pipelines import MotifVideoImageToVideoPipeline
    from motif_video.synthetic import render
    from motif_video.synthetic.scenes import advance

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="small")
    parser.add_argument("--cases", type=int, default=8, help="suite cases per group (seen, held out)")
    parser.add_argument("--split", default="validation", choices=("test", "validation"))
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--advance", type=float, default=0.75)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipe = MotifVideoImageToVideoPipeline.from_pretrained(args.model, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    size, frames, overlap = 64, 33, 9
    rows, jumps = [], {"start": [], "advanced": []}
    for case in eval_suite(args.cases, args.split):
        if case.scene.motion == "grows":
            continue
        for name, scene in (("start", case.scene), ("advanced", advance(case.scene, args.advance))):
            extra, _ = pattern_call("prefix", render(scene, frames, size, size), overlap)
            changes = []
            for seed in range(args.seeds):
                video = pipe(prompt=case.prompt, generator=torch.Generator().manual_seed(seed), height=size,
                             width=size, num_frames=frames, output_type="np", **extra).frames[0]  # fmt: skip
                changes.append(frame_changes(np.round(np.clip(video, 0, 1) * 255).astype(np.uint8)))
            c = np.mean(changes, axis=0)
            median = float(np.median(c))
            jumps[name].append(float(c[overlap - 1 : overlap + 3].max()) / median)
            rows.append({"prompt": case.prompt, "prefix": name, "median_change": round(median, 2),
                         "changes_6_to_13": [round(float(x), 2) for x in c[6:13]]})  # fmt: skip
    summary = {k: round(float(np.mean(v)), 2) for k, v in jumps.items() if v}
    print(json.dumps({"model": args.model, "advance": args.advance, "jump_over_median": summary, "cases": rows},
                     indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
