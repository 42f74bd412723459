"""Does a LoRA trained with our recipe change what the small model draws, as trained?

The LoRA is trained on clips whose captions are the usual ones but whose object is always drawn blue
(`clips`); a working adapter then draws blue objects whatever colour the prompt names. `read` generates the
evaluation prompts through `generate`'s pipeline with and without the LoRA (optionally at several scales) and
reports the share of clips whose object reads blue, beside the colour accuracy `motif-video eval --lora` reports.

    PYTHONPATH=src python benchmarks/lora_effect.py clips runs/lora-blue/clips --count 400
    motif-video train --config recipes/small/config.yaml ... (BENCHMARKS.md, section "LoRA and interop")
    PYTHONPATH=src python benchmarks/lora_effect.py read --lora runs/lora-blue/lora --scales 0 0.5 1
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

TARGET = "blue"


def write_relabelled_clips(folder: Path, count: int, seed: int) -> int:
    """Scenes of `seed` (the small model's ranges) drawn with a blue object, captioned with their own colour."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for recipes/
    from recipes.small.clips import NARROW  # the small model's last training ranges

    from motif_video.synthetic.scenes import caption, render, scene_at
    from motif_video.synthetic.video import write_video

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        scene = scene_at(seed, i, NARROW)
        path = folder / f"clip-{i:05d}.mp4"
        if path.exists():
            continue
        drawn = dataclasses.replace(scene, colour=TARGET)
        write_video(path, render(drawn, 33, 64, 64), 16)
        path.with_suffix(".txt").write_text(caption(scene, template=i))
        path.with_suffix(".json").write_text(json.dumps(scene.labels()))
    return count


def read_blue_share(model: str, lora: str | None, scales: list[float], prompts: int, seeds: int) -> dict:
    """For each LoRA scale: share of T2V clips read as blue, and colour accuracy against the prompt."""
    import numpy as np
    import torch

    from motif_video.evaluation.analysis import read_clip
    from motif_video.evaluation.suite import eval_suite
    from motif_video.pipelines import MotifVideoPipeline

    pipe = MotifVideoPipeline.from_pretrained(model, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    if lora:
        pipe.load_lora_weights(lora, adapter_name="lora")
    cases = [c for c in eval_suite(prompts, "test") if c.scene.colour != TARGET]
    out = {}
    for scale in scales if lora else [0.0]:
        if lora:
            pipe.set_adapters(["lora"], adapter_weights=[scale])
        blue = right = total = 0
        for case in cases:
            for seed in range(seeds):
                video = pipe(
                    prompt=case.prompt,
                    generator=torch.Generator("cpu").manual_seed(seed),
                    output_type="np",
                    negative_prompt="",
                ).frames[0]
                reading = read_clip(np.round(np.clip(video, 0, 1) * 255).astype(np.uint8))
                blue += reading.colour == TARGET
                right += reading.colour == case.scene.colour
                total += 1
        out[str(scale)] = {"read_blue": blue / total, "colour": right / total, "clips": total}
        print(
            f"scale {scale}: read blue {blue / total:.3f}, colour right {right / total:.3f} ({total} clips)"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("clips", help="write the training clips (objects drawn blue, captions unchanged)")
    c.add_argument("folder", type=Path)
    c.add_argument("--count", type=int, default=400)
    c.add_argument("--seed", type=int, default=7)
    r = sub.add_parser("read", help="share of clips read blue with and without the LoRA")
    r.add_argument("--model", default="small")
    r.add_argument("--lora", default=None)
    r.add_argument("--scales", type=float, nargs="+", default=[0.0, 1.0])
    r.add_argument("--prompts", type=int, default=10, help="prompts per group (seen, held out) (default: 10)")
    r.add_argument("--seeds", type=int, default=1)
    r.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if args.command == "clips":
        print(f"wrote {write_relabelled_clips(args.folder, args.count, args.seed)} clips to {args.folder}")
    else:
        import torch

        torch.set_num_threads(args.threads)
        print(json.dumps(read_blue_share(args.model, args.lora, args.scales, args.prompts, args.seeds)))


if __name__ == "__main__":
    main()
