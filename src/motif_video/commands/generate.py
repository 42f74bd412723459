"""`motif-video generate`: prompt(s) (and optionally a first frame) in, MP4(s) out."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..hub import DEFAULT_MODEL_ID


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate",
        help="text/image to video, written as MP4",
        description="Generate videos with Motif-Video 2B (text-to-video, or image-to-video with --image). "
        "Bad input exits with status 2 before any model is loaded.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", help="the prompt (this or --prompt-file is required)")
    src.add_argument(
        "--prompt-file", type=Path, help="text file with one prompt per line (blank lines skipped)"
    )
    p.add_argument(
        "--image",
        type=Path,
        default=None,
        help="first frame for image-to-video (default: none, text-to-video)",
    )
    p.add_argument(
        "--keep-first-frame",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="image-to-video: hold the first latent frame on the image's noise path so the video starts on the "
        "image (default: the model folder's generation_config.json, else off as released)",
    )
    p.add_argument(
        "--output",
        type=Path,
        default=Path("output.mp4"),
        help="MP4 file for one prompt, or a folder for several (default: output.mp4)",
    )
    p.add_argument(
        "--model",
        default=DEFAULT_MODEL_ID,
        help=f"local model folder, shipped model name (small) or Hub id (default: {DEFAULT_MODEL_ID})",
    )
    p.add_argument("--height", type=int, help="pixels, a multiple of 16 (default: the model's, else 736)")
    p.add_argument("--width", type=int, help="pixels, a multiple of 16 (default: the model's, else 1280)")
    p.add_argument("--num-frames", type=int, help="4k+1 frames (default: the model's, else 121)")
    p.add_argument("--steps", type=int, help="denoising steps (default: the model's, else 50)")
    p.add_argument(
        "--guidance",
        default=None,
        choices=["apg", "cfg", "none"],
        help="guidance method (default: the model's generation_config.json, else apg: scale 8, norm threshold 12, "
        "momentum 0.1)",
    )
    p.add_argument(
        "--guidance-scale",
        type=float,
        default=None,
        help="guidance scale (default: the model folder's guider config, else 8)",
    )
    p.add_argument(
        "--guidance-batching",
        default="auto",
        choices=["auto", "batched", "sequential"],
        help="cond and uncond in one batched forward or two passes; auto batches small videos (up to 8192 tokens) "
        "and uses two passes with a step cache (default: auto)",
    )
    p.add_argument(
        "--shift",
        type=float,
        default=None,
        help="sampler time shift (default: the folder's scheduler config; 15 for T2V, 8 for I2V)",
    )
    p.add_argument(
        "--negative-prompt",
        default=None,
        help='negative prompt (default: the 39-term trained negative prompt; "" for none)',
    )
    p.add_argument("--seed", type=int, default=None, help="random seed (default: random, printed)")
    p.add_argument("--fps", type=int, default=24, help="frames per second of the MP4 (default: 24)")
    p.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "bfloat16", "float16", "float32"],
        help="weights and compute dtype (default: auto: bfloat16 on CUDA, float32 on the CPU)",
    )
    p.add_argument(
        "--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto: cuda when available)"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch CPU threads; 0 = torch's default. Small models on a busy CPU: 1 is often much faster (default: 0)",
    )
    p.add_argument(
        "--offload",
        default="none",
        choices=["none", "model", "group", "sequential"],
        help="where weights live while generating (default: none, all on the device)",
    )
    p.add_argument(
        "--fp8",
        action="store_true",
        help="FP8 weight-only transformer (torchao; pip install motif-video[fp8]) (default: off)",
    )
    p.add_argument("--vae-tiling", action="store_true", help="decode the VAE in spatial tiles (default: off)")
    p.add_argument(
        "--memory-budget",
        type=float,
        default=None,
        help="GB of accelerator memory; picks --offload/--fp8 (overrides them; the choice is printed) (default: none)",
    )
    p.add_argument(
        "--attention-backend",
        default=None,
        help="attention kernel: auto (FlashAttention 3 on Hopper in half precision, else torch SDPA), sdpa, math, "
        "sdpa_flash, sdpa_cudnn, sdpa_efficient, flash3, sage; the ones installed and usable here are accepted "
        "(default: auto)",
    )
    p.add_argument(
        "--compile",
        nargs="?",
        const="inductor",
        default=None,
        metavar="BACKEND",
        help="regional torch.compile of the transformer blocks; BACKEND defaults to inductor (default: off)",
    )
    p.add_argument(
        "--cache-threshold",
        type=float,
        default=None,
        help="step cache (first-block residual): skip a step when the first block's output changed by less than "
        "this relative L1; 0 skips nothing (exact); other video models use 0.05-0.1, the quality cost here is "
        "not measured yet; forces separate cond and "
        "uncond passes; the skipped steps are printed (default: off)",
    )
    p.add_argument(
        "--fp8-compute",
        action="store_true",
        help="FP8 compute: torchao dynamic float8 activations and weights in the block linears, CUDA compute "
        "capability >= 8.9 (Ada, Hopper) only; not the --fp8 memory mode (default: off)",
    )
    p.add_argument(
        "--parallel",
        default="auto",
        choices=["auto", "none", "context", "guidance", "data"],
        help="under torchrun --nproc-per-node N: context (video tokens split over the ranks), guidance (cond and "
        "uncond passes on 2 ranks), data (rank r makes prompts r, r+N, ...); auto: none for one process, data "
        "when there are at least N prompts, else context (default: auto)",
    )
    p.add_argument(
        "--save-latents",
        action="store_true",
        help="also write the final latents next to each MP4 (.latents.safetensors) (default: off)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..generation import GenerateRequest, generate
    from ..model_defaults import KEYS, fill_defaults

    if args.threads < 0:
        raise ValueError(f"--threads must be >= 0 (0: torch's default), got {args.threads}")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    vars(args).update(
        fill_defaults({k: getattr(args, k) for k in KEYS}, args.model)
    )  # generation_config.json
    request = GenerateRequest(
        prompts=_prompts(args),
        output=args.output,
        image=args.image,
        keep_first_frame=args.keep_first_frame,
        model=args.model,
        height=args.height,
        width=args.width,
        num_frames=args.num_frames,
        steps=args.steps,
        guidance=args.guidance,
        guidance_scale=args.guidance_scale,
        guidance_batching=args.guidance_batching,
        shift=args.shift,
        negative_prompt=args.negative_prompt,
        seed=args.seed,
        fps=args.fps,
        dtype=args.dtype,
        device=args.device,
        offload=args.offload,
        fp8=args.fp8,
        vae_tiling=args.vae_tiling,
        memory_budget=args.memory_budget,
        attention_backend=args.attention_backend,
        save_latents=args.save_latents,
        compile=args.compile,
        cache_threshold=args.cache_threshold,
        fp8_compute=args.fp8_compute,
        parallel=args.parallel,
    ).validate()
    if int(os.environ.get("RANK", "0")) == 0:
        print(
            f"seed {request.seed}; {len(request.prompts)} prompt(s); {request.width}x{request.height}x"
            f"{request.num_frames}, {request.steps or 'default'} steps on {request.device} ({request.dtype})"
        )
    generate(request)
    return 0


def _prompts(args: argparse.Namespace) -> list[str]:
    if args.prompt is not None:
        return [args.prompt]
    try:
        text = args.prompt_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"prompt file {str(args.prompt_file)!r} is not readable ({exc})") from exc
    prompts = [line.strip() for line in text.splitlines() if line.strip()]
    if not prompts:
        raise ValueError(f"prompt file {str(args.prompt_file)!r} has no prompts")
    return prompts
