"""`motif-video eval`: offline scores of a procedural-scene model, or the VBench suite for a real model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..bounds import within
from ..condition_layout import DEFAULT_CROSSFADE, DEFAULT_OVERLAP
from .numbers import COUNT, SCALE, THREADS, number


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="score a model: offline (classical image analysis) or VBench",
        description="suite=offline (default): generate procedural prompts never trained on, of label combinations "
        "seen in training and of held-out ones (scored apart), over several seeds, T2V and I2V, and read every "
        "frame with classical image analysis (no downloaded models): colour and shape per clip, per frame and in "
        "frame 0, direction, I2V first-frame PSNR, temporal flicker, wall time per video. suite=vbench: write the VBench prompt suite's videos as "
        "{prompt}-{index}.mp4 (rank-strided under torchrun) and score them when the VBench weights are present.",
    )
    p.add_argument("--model", default="small", help="model folder, shipped name or Hub id (default: small)")
    p.add_argument("--suite", choices=["offline", "vbench"], default="offline", help="(default: offline)")
    p.add_argument(
        "--prompts",
        type=COUNT,
        default=20,
        help="offline: prompts per group, seen and held out (default: 20)",
    )
    p.add_argument(
        "--split",
        choices=["test", "validation"],
        default="test",
        help="offline: test (the reported figures) or validation (for choosing between builds) (default: test)",
    )
    p.add_argument("--seeds", type=COUNT, default=2, help="offline: seeds per prompt (default: 2)")
    p.add_argument("--steps", type=COUNT, help="denoising steps (default: the model's)")
    p.add_argument("--height", type=int, help="(default: the model's)")
    p.add_argument("--width", type=int, help="(default: the model's)")
    p.add_argument("--num-frames", type=COUNT, help="(default: the model's)")
    p.add_argument("--guidance-scale", type=SCALE, help="(default: the model's guider config)")
    p.add_argument(
        "--repaint-first-frame",
        action=argparse.BooleanOptionalAction,
        help="re-encode latent frame 0 from pixel frame 1 where no image gives it (default: the model's "
        "generation_config.json)",
    )
    p.add_argument(
        "--condition-guidance",
        type=float,
        help="image-to-video and --conditions: reconstruction guidance scale, 0 = off (default: the model's "
        "generation_config.json, else 0)",
    )
    p.add_argument(
        "--cache-threshold", type=SCALE, default=0.0, help="step cache threshold; 0 = off (default: 0)"
    )
    p.add_argument(
        "--fp8", choices=["weight_only", "dynamic"], help="FP8 transformer via torchao (default: off)"
    )
    p.add_argument("--no-i2v", action="store_true", help="offline: skip the image-to-video half")
    p.add_argument(
        "--conditions",
        nargs="?",
        const="first,last,first_last,keyframe,prefix",
        metavar="PATTERNS",
        help="offline: instead of the T2V/I2V suite, score conditions per pattern (comma list of first, last, "
        "first_last, keyframe, prefix; bare flag: all): PSNR of the conditioned frames and prompt accuracy "
        "(motif_video.evaluation.conditions)",
    )
    p.add_argument(
        "--extend",
        type=THREADS,
        default=0,
        metavar="K",
        help="offline, with --conditions: also extend each clip to K times its length and score the seams (default: off)",
    )
    p.add_argument(
        "--overlap",
        type=COUNT,
        default=None,
        help=f"offline, with --conditions: extension/prefix overlap, 4m+1 (default: {DEFAULT_OVERLAP}, or on a "
        "shorter clip the largest 4m+1 that leaves the window new frames)",
    )
    p.add_argument(
        "--crossfade",
        type=int,
        default=DEFAULT_CROSSFADE,
        metavar="N",
        help="offline, with --extend: generated frames each window fades in over (default: "
        f"{DEFAULT_CROSSFADE}: a fade over the overlap)",
    )
    p.add_argument(
        "--lora",
        action="append",
        default=[],
        metavar="PATH[:SCALE]",
        help="offline: a LoRA at an adapter weight (scale 1 when left out); repeat for several (default: none)",
    )
    p.add_argument(
        "--fuse-lora", action="store_true", help="offline: merge the LoRAs into the weights (default: off)"
    )
    p.add_argument("--threads", type=THREADS, default=0, help="torch CPU threads; 0 = torch's default")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    p.add_argument("--output", type=Path, default=Path("vbench-videos"), help="vbench: video folder")
    p.add_argument("--dimensions", nargs="*", help="vbench: dimensions (default: all)")
    p.add_argument(
        "--samples",
        type=number(int, within(1, 5)),
        default=5,
        help="vbench: videos per prompt, 1..5 (default: 5)",
    )
    p.add_argument("--seed", type=int, default=0, help="vbench: base seed (video i uses seed + i)")
    p.add_argument("--no-score", action="store_true", help="vbench: only write the videos")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..evaluation.offline import flatten

    if args.suite == "offline":
        from ..evaluation.offline import OfflineEvalConfig, run_offline_eval

        config = OfflineEvalConfig(
            model=args.model,
            prompts=args.prompts,
            seeds=args.seeds,
            split=args.split,
            steps=args.steps,
            height=args.height,
            width=args.width,
            num_frames=args.num_frames,
            guidance_scale=args.guidance_scale,
            repaint_first_frame=args.repaint_first_frame,
            condition_guidance=args.condition_guidance,
            cache_threshold=args.cache_threshold,
            fp8=args.fp8,
            i2v=not args.no_i2v,
            threads=args.threads,
            lora=tuple(args.lora),
            fuse_lora=args.fuse_lora,
        )
        if args.conditions is None and (
            args.extend or args.crossfade != DEFAULT_CROSSFADE or args.overlap is not None
        ):
            raise ValueError(
                f"--extend, --overlap and --crossfade apply to --conditions only (got --extend {args.extend}, "
                f"--overlap {args.overlap}, --crossfade {args.crossfade})"
            )
        if args.conditions is not None:
            from ..evaluation.conditions import run_condition_suite

            patterns = [p.strip() for p in args.conditions.split(",") if p.strip()]
            figures = run_condition_suite(config, patterns, args.extend, args.overlap, args.crossfade)
        else:
            figures = run_offline_eval(config.validate())
    else:
        figures = run_vbench(args)
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in flatten(figures).items():
            if value is None and ".se." in f".{key}":  # a standard error of one clip: there is none to show
                continue
            if key.endswith(".by_combination"):  # one line per combination
                for name, row in value.items():
                    cells = " ".join(
                        f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()
                    )
                    print(f"{key}: {name}: {cells}")
            else:
                print(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")
    return 0


def run_vbench(args: argparse.Namespace) -> dict:
    import torch

    from ..defaults import model_defaults
    from ..evaluation import vbench as vb
    from ..pipelines import MotifVideoPipeline

    if args.threads:
        torch.set_num_threads(args.threads)  # as the offline suites do (`evaluation.offline._load`)
    dimensions = args.dimensions or sorted(vb.WEIGHTS)
    if not args.no_score:
        vb.check_scorer(dimensions)  # fail before hours of generation
    rank, world, local = vb.dist_env()
    entries, source = vb.load_full_info()
    items = vb.for_rank(vb.suite_items(entries, dimensions, args.samples), rank, world)
    device = f"cuda:{local}" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    pipe = MotifVideoPipeline.from_pretrained(args.model, dtype=dtype).to(device)
    d = model_defaults(args.model)
    call = {
        "height": args.height or d.height,
        "width": args.width or d.width,
        "num_frames": args.num_frames or d.num_frames,
        "num_inference_steps": args.steps or d.num_inference_steps,
        "guidance_scale": args.guidance_scale,
        "negative_prompt": d.negative_prompt,
    }
    vb.write_videos(pipe, items, args.output, args.seed, **call)
    figures: dict = {
        "prompts_source": source,
        "videos_this_rank": len(items),
        "rank": rank,
        "world_size": world,
    }
    if world > 1:
        torch.distributed.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        torch.distributed.barrier()
    if not args.no_score and rank == 0:
        figures["vbench"] = vb.score(args.output, dimensions, args.output / "results", "motif-video", device)
    return figures
