"""What a faithful continuation of a procedural scene shows over a K-times extension, with no model at all.

For each case of the offline suite, the scene's own motion carried on past its clip (`synthetic.scenes.advance`,
`TRAVEL` of the frame per clip length): the first frame of the K x F-frame video where the object covers less than
one pixel (moving scenes), or, for growing ones, where its half-size passes half the frame side (it covers the frame).
The evaluator reads direction from the first and last quarter of the video, so a continuation whose object is gone
before the last quarter cannot read as its caption's direction.

    PYTHONPATH=src python benchmarks/extension_reach.py --extend 4 --cases 20

With `--wrap`, the moving scenes carried on over a ring instead (`Scene.wrap` from the scene's own
start: the object comes back in at the opposite edge), and the faithful video scored as the evaluator scores an
extension: its direction reading (`evaluation.analysis.read_clip`) and its seam ratio at the windows of
`motif-video extend` (`evaluation.conditions.seam_scores`), what a model that continues its prefix on the ring would
score; and the growing scenes carried on growing (past the frame's edges), with their direction reading.

    PYTHONPATH=src python benchmarks/extension_reach.py --extend 4 --cases 20 --wrap
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import replace


def main() -> None:
    from motif_video.evaluation.suite import eval_suite
    from motif_video.synthetic.scenes import GROWTH, advance, coverage

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--extend", type=int, default=4, help="video length in clip lengths")
    parser.add_argument("--cases", type=int, default=20, help="per group (seen, held out) of the test split")
    parser.add_argument("--frames", type=int, default=33)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument(
        "--wrap", action="store_true", help="carry moving scenes on over a ring and score them"
    )
    parser.add_argument("--overlap", type=int, default=9, help="window overlap of the seam reading (--wrap)")
    args = parser.parse_args()
    if args.wrap:
        print(json.dumps(wrapped_report(args), indent=1))
        return

    total = args.extend * args.frames
    clip = args.frames - 1  # frames per clip length of travel
    ends: dict[str, list[int | None]] = {"moving": [], "growing": []}
    for case in eval_suite(args.cases):
        scene = case.scene
        if scene.motion == "grows":
            size = (scene.radius * (1 + (GROWTH - 1) * t / clip) for t in range(total))
            ends["growing"].append(next((t for t, r in enumerate(size) if r > 0.5), None))
            continue
        shown = (
            coverage(advance(scene, t / clip), 0, args.frames, args.size, args.size).sum()
            for t in range(total)
        )
        ends["moving"].append(next((t for t, area in enumerate(shown) if area < 1), None))
    report: dict = {"video_frames": total, "last_quarter_from": total - total // 4}
    for kind, found in ends.items():
        frames = [e for e in found if e is not None]
        report[kind] = {
            "cases": len(found),
            "gone_or_filling": len(frames),
            "frame_min": min(frames, default=None),
            "frame_median": statistics.median(frames) if frames else None,
            "frame_max": max(frames, default=None),
        }
    print(json.dumps(report, indent=1))


def wrapped_report(args) -> dict:
    import numpy as np

    from motif_video.evaluation.analysis import read_clip
    from motif_video.evaluation.conditions import seam_scores
    from motif_video.evaluation.suite import eval_suite
    from motif_video.extension import plan_extension
    from motif_video.synthetic.scenes import advance, render

    total, clip = args.extend * args.frames, args.frames - 1
    plan = plan_extension(args.frames, total, args.frames, args.overlap)
    right, seams, grown = [], [], []
    for case in eval_suite(args.cases):
        scene = case.scene
        if scene.motion == "grows":  # growing on: larger, and past the frame's edges
            video = np.concatenate(
                [render(advance(scene, t / clip), 1, args.size, args.size) for t in range(total)]
            )
            grown.append(read_clip(video).motion == "grows")
            continue
        ring = replace(scene, wrap=True)  # on the ring from its own start
        video = np.concatenate(
            [render(advance(ring, t / clip), 1, args.size, args.size) for t in range(total)]
        )
        right.append(read_clip(video).motion == scene.motion)
        seams.append(seam_scores(video, plan.window_starts, args.overlap)["seam_ratio"])
    return {
        "video_frames": total,
        "moving_cases": len(right),
        "direction": sum(right) / len(right),
        "seam_ratio_mean": round(statistics.mean(seams), 3),
        "seam_ratio_max": round(max(seams), 3),
        "growing_cases": len(grown),
        "growing_direction": sum(grown) / len(grown) if grown else None,
    }


if __name__ == "__main__":
    main()
