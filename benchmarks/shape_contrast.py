"""Guidance on the shape word alone: does a negative prompt that names another shape make the drawn shape follow?

Text-to-video on the evaluation split's cases (seen and held-out combinations apart), each twice: with the model's
own settings, and with guidance at `--scale` against the caption with its shape word swapped (circle -> square,
otherwise -> circle), so that the guided difference is the shape word's effect and nothing else. Read by the offline
evaluator (`evaluation.scores.figures`: colour, shape per clip and per frame, direction).

    PYTHONPATH=src python benchmarks/shape_contrast.py --model small --prompts 10 --seeds 2 --scale 3
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch


def other_shape(shape: str) -> str:
    return "square" if shape == "circle" else "circle"


def main() -> None:
    from motif_video.defaults import model_defaults
    from motif_video.evaluation.analysis import read_clip
    from motif_video.evaluation.scores import figures
    from motif_video.evaluation.suite import GROUPS, eval_suite
    from motif_video.pipelines import MotifVideoPipeline

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="small")
    parser.add_argument("--prompts", type=int, default=10, help="cases per group")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--scale", type=float, default=3.0, help="guidance scale against the swapped caption")
    parser.add_argument("--split", default="validation")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipe = MotifVideoPipeline.from_pretrained(args.model, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    defaults = model_defaults(args.model)
    cases = eval_suite(args.prompts, args.split)

    def own(case):
        return {"negative_prompt": defaults.negative_prompt}

    def contrast(case):
        negative = case.prompt.replace(case.scene.shape, other_shape(case.scene.shape))
        assert negative != case.prompt, case.prompt
        return {"negative_prompt": negative, "guidance_scale": args.scale}

    settings = {"model's own": own, f"against the swapped shape, scale {args.scale:g}": contrast}
    result = {}
    for name, keywords in settings.items():
        readings = {g: [] for g in GROUPS}
        for case in cases:
            for seed in range(args.seeds):
                video = pipe(prompt=case.prompt, output_type="np", guidance_batching="batched",
                             generator=torch.Generator("cpu").manual_seed(seed), **keywords(case)).frames[0]  # fmt: skip
                clip = np.round(np.clip(video, 0, 1) * 255).astype(np.uint8)
                readings[case.group].append((read_clip(clip), case.scene))
        result[name] = {
            g: {
                k: round(float(v), 3)
                for k, v in figures(pairs).items()
                if k in ("colour", "colour_frames", "shape", "shape_frames", "direction")
            }
            for g, pairs in readings.items()
        }
    print(json.dumps({"model": args.model, "split": args.split, "prompts": args.prompts, "seeds": args.seeds,
                      "figures": result}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
