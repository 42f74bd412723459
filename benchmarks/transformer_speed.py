"""Seconds and peak memory of one transformer forward: the diffusers reference, our exact mode, each speed option.

Every option runs in its own subprocess (so that peak RSS on CPU belongs to that option alone), with the same
random weights (normal, std 0.02, seed 0) and inputs. Options, alone or combined with "+":

    reference    diffusers MotifVideoTransformer3DModel (same weights), all-valid text mask as its pipeline passes
    exact        our model, default attention (`auto`)
    compile      regional torch.compile of the repeated blocks (compile time reported separately)
    cache-skip   a step that the step cache skips (runs embed + block 0 + head); a computed step costs `exact`
    attn=NAME    an attention backend by name (sdpa_flash, sdpa_cudnn, sdpa_efficient, flash3, sage, math)
    fp8-weight   FP8 weight-only linears (torchao)
    fp8-dynamic  FP8 activation + weight linears (torchao, sm89+)

Examples:
    python benchmarks/transformer_speed.py --model tiny --size 256x256x17
    python benchmarks/transformer_speed.py --model motif-video-2b --layers 1,1,1 --size 128x128x9 --text-tokens 32
    python benchmarks/transformer_speed.py --device cuda --dtype bfloat16 --size 1280x736x121 \
        --options reference,exact,compile,cache-skip,attn=flash3,attn=sage,fp8-dynamic,compile+attn=flash3+fp8-dynamic
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from motif_video.flops import forward_flops
from motif_video.info import latent_shape, parse_size
from motif_video.presets import build_transformer, preset_config

DEFAULT_CPU_OPTIONS = "reference,exact,compile,cache-skip,attn=math"
DEFAULT_GPU_OPTIONS = (
    "reference,exact,compile,cache-skip,attn=sdpa_cudnn,attn=flash3,attn=sage,fp8-weight,fp8-dynamic,"
    "compile+attn=flash3+fp8-dynamic"
)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def model_overrides(args: argparse.Namespace) -> dict:
    overrides = {
        "cross_attention_layout": "separate"
    }  # the diffusers key layout, so the reference can load it
    if args.layers:
        dual, single, decoder = (int(v) for v in args.layers.split(","))
        overrides.update(num_layers=dual, num_single_layers=single + decoder, num_decoder_layers=decoder)
    return overrides


def make_inputs(config: dict, args: argparse.Namespace, device: str, dtype: torch.dtype) -> dict:
    t, h, w = latent_shape(*parse_size(args.size))
    g = torch.Generator().manual_seed(1)
    return {
        "hidden_states": torch.randn(args.batch, config["in_channels"], t, h, w, generator=g).to(device, dtype),
        "timestep": torch.full((args.batch,), 500.0, device=device),
        "encoder_hidden_states": torch.randn(args.batch, args.text_tokens, config["text_embed_dim"], generator=g)
        .to(device, dtype),
        "encoder_attention_mask": torch.ones(args.batch, args.text_tokens, dtype=torch.bool, device=device),
    }  # fmt: skip


def build(option_parts: list[str], args: argparse.Namespace, device: str, dtype: torch.dtype):
    torch.manual_seed(0)
    model = build_transformer(args.model, device=device, **model_overrides(args)).to(dtype).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.02)
    if "reference" in option_parts:
        from diffusers import MotifVideoTransformer3DModel

        config = json.loads(model.to_json_string())  # the released keys only
        config = {k: v for k, v in config.items() if not k.startswith("_")}
        state = model.state_dict()
        del model
        with torch.device(device):
            reference = MotifVideoTransformer3DModel(**config).to(dtype).eval()
        reference.load_state_dict(state)
        return reference
    return model


def run_worker(option: str, args: argparse.Namespace) -> dict:
    """Time one option in this process; returns a JSON-able record."""
    device, dtype = args.device, DTYPES[args.dtype]
    parts = option.split("+")
    model = build(parts, args, device, dtype)
    config = dict(model.config)
    inputs = make_inputs(config, args, device, dtype)
    call_kwargs: dict = {}
    backend = None
    for part in parts:
        if part in ("reference", "exact"):
            continue
        if part == "compile":
            from motif_video.perf import compile_repeated_blocks

            compile_repeated_blocks(model)
        elif part == "cache-skip":
            from motif_video.perf import StepCache

            call_kwargs["step_cache"] = StepCache(threshold=float("inf")).branch()
        elif part.startswith("attn="):
            backend = part.split("=", 1)[1]
        elif part in ("fp8-weight", "fp8-dynamic"):
            from motif_video.perf.fp8 import quantize_fp8

            quantize_fp8(model, "weight_only" if part == "fp8-weight" else "dynamic")
        else:
            raise ValueError(f"unknown option part {part!r}; see the module docstring")

    from motif_video.models import attention_backend

    def forward() -> torch.Tensor:
        with torch.no_grad():
            out = model(**inputs, **call_kwargs).sample
        if device == "cuda":
            torch.cuda.synchronize()
        return out

    context = attention_backend(backend) if backend else _null()
    with context:
        start = time.perf_counter()
        out = forward()  # warm-up (compiles; fills the step cache)
        first = time.perf_counter() - start
        if "compile" in parts:
            forward()
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            out = forward()
            times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    t, h, w = latent_shape(*parse_size(args.size))
    flops = forward_flops(config, (t, h, w), args.text_tokens, 0, args.batch).total
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    torch.save(out.float().cpu(), args.output)
    return {
        "option": option,
        "seconds": seconds,
        "first_call_seconds": first,
        "peak_gib": peak,
        "flops": flops,
    }


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def run_option(option: str, args: argparse.Namespace, workdir: Path) -> dict:
    output = workdir / f"{len(list(workdir.iterdir()))}.pt"
    cmd = [sys.executable, __file__, "--worker", option, "--output", str(output), *sys.argv[1:]]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode or not lines:
        reason = (proc.stderr.strip().splitlines() or ["failed"])[-1]
        return {"option": option, "error": reason[:160]}
    record = json.loads(lines[-1])
    record["output"] = str(output)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="motif-video-2b", choices=["tiny", "motif-video-2b"])
    parser.add_argument(
        "--layers", default=None, help="DUAL,SINGLE,DECODER block counts (default: the preset's)"
    )
    parser.add_argument("--size", default="1280x736x121", help="WIDTHxHEIGHTxFRAMES")
    parser.add_argument("--text-tokens", type=int, default=512)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--options", default=None, help="comma-separated options (see above)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="device peak, for FLOP utilisation")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--output", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    preset_config(args.model)

    if args.worker:
        print(json.dumps(run_worker(args.worker, args)))
        return

    options = (args.options or (DEFAULT_GPU_OPTIONS if args.device == "cuda" else DEFAULT_CPU_OPTIONS)).split(
        ","
    )
    with tempfile.TemporaryDirectory() as tmp:
        records = [run_option(option, args, Path(tmp)) for option in options]
        exact = next((r for r in records if r.get("option") == "exact" and "error" not in r), None)
        reference = next((r for r in records if r.get("option") == "reference" and "error" not in r), None)
        exact_out = torch.load(exact["output"]) if exact else None
        for r in records:
            if "error" not in r and exact_out is not None:
                out = torch.load(r["output"])
                r["rel_l2_vs_exact"] = ((out - exact_out).norm() / exact_out.norm().clamp_min(1e-30)).item()
    print(
        f"# {datetime.date.today()}  {platform.node()}  torch {torch.__version__}  threads {torch.get_num_threads()}"
    )
    print(f"# {' '.join(sys.argv)}")
    print(
        "| option | s / forward | vs reference | vs exact | first call s | peak GiB | TFLOP/s | rel L2 vs exact |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in records:
        if "error" in r:
            print(f"| {r['option']} | n/a: {r['error']} | | | | | | |")
            continue
        tflops = r["flops"] / r["seconds"] / 1e12
        util = f" ({100 * tflops / args.peak_tflops:.0f}%)" if args.peak_tflops else ""
        vs_ref = f"{reference['seconds'] / r['seconds']:.2f}x" if reference else "-"
        vs_exact = f"{exact['seconds'] / r['seconds']:.2f}x" if exact else "-"
        print(
            f"| {r['option']} | {r['seconds']:.4f} | {vs_ref} | {vs_exact} | {r['first_call_seconds']:.2f} | "
            f"{r['peak_gib']:.2f} | {tflops:.3f}{util} | {r.get('rel_l2_vs_exact', float('nan')):.1e} |"
        )
    print(
        f"# FLOPs per forward: {records[0].get('flops', float('nan')):.3e}; vs = speed-up (higher is faster)"
    )


if __name__ == "__main__":
    main()
