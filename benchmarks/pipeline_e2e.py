"""End-to-end pipeline benchmark: motif-video's `MotifVideoPipeline` vs diffusers' reference, in one run.

Each (implementation, memory mode) runs in its own subprocess so peak memory is its own. Reported per case:
median end-to-end seconds, median seconds per denoising step (from step-callback timestamps), and peak memory
(CUDA: max allocated; CPU: the worker's peak RSS minus its RSS after imports, i.e. weights + activations
+ allocator caches of loading and running once; Linux only).

CPU (tiny offline folder, float32; what BENCHMARKS.md records):
    PYTHONPATH=src python benchmarks/pipeline_e2e.py
GPU (released weights, default size, bf16, each memory mode):
    PYTHONPATH=src python benchmarks/pipeline_e2e.py --model Motif-Technologies/Motif-Video-2B \
        --size 1280x736x121 --dtype bfloat16 --device cuda --steps 3 --repeats 1 --modes none,model,group,fp8
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import sys
import tempfile
import time

PROMPT = "a red ball moving left over the sea"
# Reference-side equivalents of our memory modes (diffusers has no FP8 path of its own).
REFERENCE_MODES = {"none", "model", "group", "sequential"}


def worker(args: argparse.Namespace) -> list[dict]:
    """Load the implementation(s) in `args.impl` ("ours", "ref" or "both"), warm up, then time `repeats` runs.

    With "both", runs alternate (ours, ref, ours, ref, ...) so that load from other processes on a shared machine
    hits both alike; peak memory is then not separable and is reported only by single-implementation workers.
    """
    import torch

    from motif_video.info import parse_size

    width, height, frames = parse_size(args.size)
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    impls = ["ours", "ref"] if args.impl == "both" else [args.impl]
    rss_imported = _status_kib("VmRSS")
    pipes = {}
    for impl in impls:
        pipes[impl] = _load(impl, args.model, getattr(torch, args.dtype))
        _place(pipes[impl], impl, args.mode, device)
        pipes[impl].set_progress_bar_config(disable=True)
    stamps: list[float] = []

    def stamp(p, i, t, tensors):
        stamps.append(time.perf_counter())
        return {}

    def run(impl: str) -> tuple[float, list[float]]:
        # The reference defaults to an empty negative prompt and two passes; ours is pinned to the same work.
        extra = {"negative_prompt": ""}
        if impl == "ours":
            extra["guidance_batching"] = "sequential"
        stamps.clear()
        start = time.perf_counter()
        pipes[impl](
            PROMPT,
            height=height,
            width=width,
            num_frames=frames,
            num_inference_steps=args.steps,
            generator=torch.Generator().manual_seed(0),
            output_type="np",
            callback_on_step_end=stamp,
            **extra,
        )
        if device.type == "cuda":
            torch.cuda.synchronize()
        steps = [b - a for a, b in itertools.pairwise(stamps)]  # step 1..N-1: no encoding, no decoding
        return time.perf_counter() - start, steps

    for impl in impls:
        run(impl)  # warm-up
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    totals: dict[str, list[float]] = {impl: [] for impl in impls}
    per_step: dict[str, list[float]] = {impl: [] for impl in impls}
    for _ in range(args.repeats):
        for impl in impls:
            total, steps = run(impl)
            totals[impl].append(total)
            per_step[impl].extend(steps)
    if len(impls) > 1:
        peak = float("nan")
    elif device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**30
    else:
        peak = (_status_kib("VmHWM") - rss_imported) / 2**20
    return [
        {
            "impl": impl,
            "mode": args.mode,
            "seconds": statistics.median(totals[impl]),
            "seconds_per_step": statistics.median(per_step[impl]) if per_step[impl] else float("nan"),
            "peak_gb": peak,
        }
        for impl in impls
    ]


def _load(impl: str, model: str, dtype):
    if impl == "ours":
        from motif_video import MotifVideoPipeline

        return MotifVideoPipeline.from_pretrained(model, torch_dtype=dtype)
    from diffusers import AdaptiveProjectedGuidance
    from diffusers import MotifVideoPipeline as Reference

    guider = AdaptiveProjectedGuidance(
        guidance_scale=8.0,
        adaptive_projected_guidance_momentum=0.1,
        adaptive_projected_guidance_rescale=12.0,
        adaptive_projected_guidance_norm_dim=[-1, -2, -4],
        use_original_formulation=True,
    )
    return Reference.from_pretrained(model, torch_dtype=dtype, guider=guider)


def _place(pipe, impl: str, mode: str, device) -> None:
    if impl == "ours":
        from motif_video.pipelines.memory import MemoryPlan, apply_memory_plan

        plan = MemoryPlan("model", fp8=True) if mode == "fp8" else MemoryPlan(mode)
        apply_memory_plan(pipe, plan, device)
    elif mode == "none":
        pipe.to(device)
    elif mode == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif mode == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    elif mode == "group":
        pipe.transformer.enable_group_offload(
            onload_device=device,
            offload_type="block_level",
            num_blocks_per_group=1,
            use_stream=device.type == "cuda",
        )
        pipe.text_encoder.to(device)
        pipe.vae.to(device)


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":"))


def _spawn(args: argparse.Namespace, impl: str, mode: str, repeats: int | None = None) -> list[dict]:
    cmd = [
        sys.executable,
        __file__,
        "--impl",
        impl,
        "--mode",
        mode,
        "--model",
        args.model,
        "--size",
        args.size,
        "--steps",
        str(args.steps),
        "--repeats",
        str(repeats or args.repeats),
        "--dtype",
        args.dtype,
        "--device",
        args.device,
        "--threads",
        str(args.threads),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model folder or Hub id (default: a tiny offline folder)")
    ap.add_argument("--size", default="96x64x9", help="WIDTHxHEIGHTxFRAMES (default: 96x64x9)")
    ap.add_argument("--steps", type=int, default=10, help="denoising steps per run (default: 10)")
    ap.add_argument(
        "--repeats", type=int, default=5, help="timed runs per case after one warm-up (default: 5)"
    )
    ap.add_argument("--dtype", default="float32", help="torch dtype (default: float32)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: 2)")
    ap.add_argument(
        "--modes", default="none", help="comma list of none,model,group,sequential,fp8 (default: none)"
    )
    ap.add_argument("--impl", choices=["ours", "ref", "both"], help=argparse.SUPPRESS)
    ap.add_argument("--mode", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.impl:
        print(json.dumps(worker(args)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        if args.model is None:
            from motif_video.testing import write_tiny_pipeline_folder

            args.model = str(write_tiny_pipeline_folder(tmp))
        results = []
        for mode in args.modes.split(","):
            impls = ["ours", "ref"] if mode in REFERENCE_MODES else ["ours"]
            if args.device == "cpu" and len(impls) == 2:
                timing = {r["impl"]: r for r in _spawn(args, "both", mode)}
                for impl in impls:  # peak memory from separate processes, times from the interleaved run
                    (mem,) = _spawn(args, impl, mode, repeats=1)
                    results.append({**timing[impl], "peak_gb": mem["peak_gb"]})
            else:
                for impl in impls:
                    results.extend(_spawn(args, impl, mode))
    print(f"{'impl':<5} {'mode':<10} {'s/run':>8} {'s/step':>8} {'peak GB':>8}")
    for r in results:
        print(
            f"{r['impl']:<5} {r['mode']:<10} {r['seconds']:>8.3f} {r['seconds_per_step']:>8.4f} {r['peak_gb']:>8.3f}"
        )
    by = {(r["impl"], r["mode"]): r for r in results}
    for mode in args.modes.split(","):
        if ("ours", mode) in by and ("ref", mode) in by:
            o, f = by[("ours", mode)], by[("ref", mode)]
            print(
                f"{mode}: ours/ref time per run {o['seconds'] / f['seconds']:.2f}x, "
                f"per step {o['seconds_per_step'] / f['seconds_per_step']:.2f}x"
            )


if __name__ == "__main__":
    main()
