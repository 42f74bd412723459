"""A distilled student against its teacher: agreement with the 50-step guided teacher, passes, CPU wall-clock.

For each prompt x seed, from the same initial noise, three samplers run at `--size`:
    teacher-50   the teacher, 50 Euler steps with APG (cond + uncond: 100 transformer passes)   the reference
    teacher-4    the teacher, 4 steps with APG (8 passes)                                     the naive baseline
    student-4    the student with its stored defaults (4 steps, guidance embedded: 4 passes)
Quality proxy (until the offline evaluator of the small model exists): relative RMS distance of the final latents
to teacher-50's, ||x - x_ref|| / ||x_ref||. Speed: seconds per video (transformer + sampler, no decode), median of
the prompts x seeds, one process, `--threads` torch threads.

    python benchmarks/distill_quality_speed.py --teacher FOLDER --student FOLDER [--size 64x64x9] [--seeds 4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from motif_video.info import parse_size
from motif_video.pipelines import MotifVideoPipeline

PROMPTS = [
    "a red square moves left",
    "a blue circle moves right",
    "a green square moves up",
    "a yellow ball moves down",
]


def run(pipe, prompt: str, seed: int, size, **kwargs):
    width, height, frames = size
    calls = []
    hook = pipe.transformer.register_forward_pre_hook(
        lambda m, a, kw: calls.append(kw["hidden_states"].shape[0]), with_kwargs=True
    )
    tic = time.perf_counter()
    latents = pipe(prompt, height=height, width=width, num_frames=frames, output_type="latent",
                   generator=torch.Generator().manual_seed(seed), **kwargs).frames  # fmt: skip
    seconds = time.perf_counter() - tic
    hook.remove()
    return latents, seconds, sum(calls)  # transformer passes = samples through the transformer


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--student", required=True)
    parser.add_argument("--size", default="64x64x9", help="WxHxF (default 64x64x9)")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    size = parse_size(args.size)
    teacher = MotifVideoPipeline.from_pretrained(args.teacher)
    student = MotifVideoPipeline.from_pretrained(args.student)
    teacher.set_progress_bar_config(disable=True)
    student.set_progress_bar_config(disable=True)
    shift = student.generation_defaults.shift
    scale = student.generation_defaults.guidance_scale
    rows: dict[str, dict[str, list[float]]] = {k: {"error": [], "seconds": [], "passes": []}
                                                for k in ("teacher-50", "teacher-4", "student-4")}  # fmt: skip
    for prompt in PROMPTS:
        for seed in range(args.seeds):
            ref, sec, n = run(
                teacher, prompt, seed, size, num_inference_steps=50, shift=shift, guidance_scale=scale
            )
            rows["teacher-50"]["error"].append(0.0)
            rows["teacher-50"]["seconds"].append(sec)
            rows["teacher-50"]["passes"].append(n)
            for name, pipe, kwargs in (
                ("teacher-4", teacher, {"num_inference_steps": 4, "shift": shift, "guidance_scale": scale}),
                ("student-4", student, {}),
            ):
                x, sec, n = run(pipe, prompt, seed, size, **kwargs)
                rows[name]["error"].append(float((x - ref).norm() / ref.norm()))
                rows[name]["seconds"].append(sec)
                rows[name]["passes"].append(n)
    summary = {
        name: {"rel_error_vs_teacher50": statistics.mean(r["error"]), "passes": statistics.mean(r["passes"]),
               "seconds_median": statistics.median(r["seconds"])}
        for name, r in rows.items()
    }  # fmt: skip
    t50 = summary["teacher-50"]["seconds_median"]
    for name in summary:
        summary[name]["speedup_vs_teacher50"] = t50 / summary[name]["seconds_median"]
    print(json.dumps({"size": args.size, "videos": len(PROMPTS) * args.seeds, "threads": args.threads,
                      "shift": shift, "guidance_scale": scale, "results": summary}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
