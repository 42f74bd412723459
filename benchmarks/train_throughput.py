"""Training throughput: video tokens per second of full steps (forward, backward, AdamW), dense vs TREAD.

CPU (tiny preset):
    PYTHONPATH=src python benchmarks/train_throughput.py --preset tiny --size 256x256x17 --threads 1
GPU (released config at 480p x 121 frames, FSDP2 + activation checkpointing, bf16), one line per process count:
    torchrun --nproc_per_node 8 benchmarks/train_throughput.py --preset motif-video-2b --size 832x480x121 \
        --fsdp2 --checkpointing
Prints one JSON object per mode (tokens_per_s, step_s, peak memory per GPU) and the TREAD / dense ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from motif_video.flow import noisy_latents, timestep_from_sigma, velocity_loss
from motif_video.models import Route
from motif_video.presets import build_transformer


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--size", default="256x256x17", help="WIDTHxHEIGHTxFRAMES in pixels")
    parser.add_argument("--batch", type=int, default=1, help="per process")
    parser.add_argument("--text-tokens", type=int, default=64)
    parser.add_argument("--ratio", type=float, default=0.5, help="TREAD ratio of dropped video tokens")
    parser.add_argument(
        "--route", default=None, help="START:END global blocks (default: every encoder-side block)"
    )
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch default)")
    parser.add_argument("--fsdp2", action="store_true", help="shard every repeated block (torchrun, CUDA)")
    parser.add_argument(
        "--checkpointing", action="store_true", help="activation checkpointing of every block"
    )
    return parser.parse_args(argv)


def setup(args: argparse.Namespace):
    cuda = torch.cuda.is_available()
    if args.threads:
        torch.set_num_threads(args.threads)
    if "RANK" in os.environ:
        torch.distributed.init_process_group("nccl" if cuda else "gloo")
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    torch.manual_seed(0)
    model = build_transformer(args.preset, device=str(device)).train()
    if args.checkpointing:
        model.enable_gradient_checkpointing()
    if args.fsdp2:
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        for block in model.repeated_blocks():
            fully_shard(block, mp_policy=policy)
        fully_shard(model, mp_policy=policy)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    return model, optimizer, device


def run(args: argparse.Namespace, model, optimizer, device, routes: list[Route] | None) -> dict:
    width, height, frames = (int(v) for v in args.size.split("x"))
    t, h, w = (frames - 1) // 4 + 1, height // 8, width // 8
    c = model.config
    tokens = args.batch * (t // c.patch_size_t) * (h // c.patch_size) * (w // c.patch_size)
    g = torch.Generator(device=device).manual_seed(0)
    x0 = torch.randn(args.batch, 16, t, h, w, device=device, generator=g)
    cond = torch.zeros(args.batch, c.in_channels - 16, t, h, w, device=device)
    text = torch.randn(args.batch, args.text_tokens, c.text_embed_dim, device=device, generator=g)
    cuda = device.type == "cuda"
    times = []
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    for step in range(args.warmup + args.steps):
        if cuda:
            torch.cuda.synchronize(device)
        tic = time.perf_counter()
        noise = torch.randn(x0.shape, device=device, generator=g)
        sigma = torch.rand(args.batch, device=device, generator=g)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            out = model(torch.cat([noisy_latents(x0, noise, sigma), cond], 1), timestep_from_sigma(sigma), text,
                        routes=routes, routing_generator=g)  # fmt: skip
            loss = velocity_loss(out.sample, x0, noise).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize(device)
        if step >= args.warmup:
            times.append(time.perf_counter() - tic)
    step_s = sorted(times)[len(times) // 2]  # median
    world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    result = {"mode": "tread" if routes else "dense", "tokens_per_step": tokens * world, "step_s": step_s,
              "tokens_per_s": tokens * world / step_s}  # fmt: skip
    if cuda:
        result["peak_memory_gib_per_gpu"] = torch.cuda.max_memory_allocated(device) / 2**30
    return result


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    model, optimizer, device = setup(args)
    if args.route:
        start, end = (int(v) for v in args.route.split(":"))
    else:
        start, end = 0, len(model.encoder_blocks) - 1  # every encoder-side block
    dense = run(args, model, optimizer, device, None)
    tread = run(args, model, optimizer, device, [Route(start, end, args.ratio)])
    tread["route"] = {"start_layer": start, "end_layer": end, "ratio": args.ratio}
    main_rank = not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0
    if main_rank:
        meta = {"preset": args.preset, "size": args.size, "batch_per_process": args.batch, "threads": torch.get_num_threads(),
                "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"}  # fmt: skip
        print(json.dumps({**meta, **dense}))
        print(json.dumps({**meta, **tread}))
        print(json.dumps({"tread_over_dense": tread["tokens_per_s"] / dense["tokens_per_s"]}))
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
