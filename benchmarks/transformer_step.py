"""One transformer forward: ours against diffusers' MotifVideoTransformer3DModel, same process, same weights.

Both models share the very same parameter tensors (no second copy of the weights). Inputs are what the released
pipeline feeds: the prompt padded to `--text-len` tokens with a key mask marking `--valid-tokens` real ones.
The reference attends with the mask; ours trims the padding and runs mask-free (exact: see the parity tests).

    python benchmarks/transformer_step.py --preset tiny --size 256x256x17
    python benchmarks/transformer_step.py --preset motif-video-2b --size 256x256x17 --repeats 1
    python benchmarks/transformer_step.py --preset motif-video-2b --size 1280x736x121 --device cuda --dtype bfloat16

Prints seconds per forward for each model, the ratio ours/reference (below 1 is faster), and peak memory
(CUDA: max allocated above the weights; CPU: peak resident-set growth of one forward in a fresh process).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

from motif_video import MotifVideoTransformer
from motif_video.info import latent_shape, parse_size
from motif_video.presets import preset_config


def cuda_peak(fn) -> int:
    """Bytes allocated at the peak of `fn()` above what was allocated before it."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def cpu_peak_in_child(which: str) -> int:
    """Peak resident-set growth of one forward of `which`, measured in a fresh process (the weights and inputs
    are built first; the growth is the forward's activations and workspace)."""
    out = subprocess.run(
        [sys.executable, __file__, *sys.argv[1:], "--memory-child", which],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(out.stdout.strip().splitlines()[-1])


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def build_pair(preset: str, device: torch.device, dtype: torch.dtype, seed: int = 0):
    """Our model with random weights, and the reference sharing the same tensors."""
    from diffusers import MotifVideoTransformer3DModel

    config = {
        k: v for k, v in preset_config(preset).items() if k != "cross_attention_layout"
    }  # diffusers' layout
    torch.manual_seed(seed)
    with torch.device("meta"):
        ours = MotifVideoTransformer(**config)
        reference = MotifVideoTransformer3DModel(**config)
    state = {}
    for name, param in ours.state_dict().items():
        state[name] = (torch.randn(param.shape, dtype=dtype, device=device) * 0.02).to(dtype)
        if name.endswith("weight") and param.ndim == 1:
            state[name] = torch.ones(param.shape, dtype=dtype, device=device)
    ours.load_state_dict(state, assign=True)
    reference.load_state_dict(state, assign=True)
    return ours.eval(), reference.eval()


def make_inputs(
    config: dict, size: tuple[int, int, int], text_len: int, valid: int, device, dtype, image_tokens: int
):
    t, h, w = latent_shape(*size)
    g = torch.Generator(device="cpu").manual_seed(1)
    mask = torch.zeros(1, text_len, dtype=torch.bool)
    mask[:, :valid] = True
    inputs = {
        "hidden_states": torch.randn(1, config["in_channels"], t, h, w, generator=g).to(device, dtype),
        "timestep": torch.tensor([500.0], device=device),
        "encoder_hidden_states": torch.randn(1, text_len, config["text_embed_dim"], generator=g).to(
            device, dtype
        ),
        "encoder_attention_mask": mask.to(device),
    }
    if image_tokens:
        inputs["image_embeds"] = torch.randn(1, image_tokens, config["image_embed_dim"], generator=g).to(
            device, dtype
        )
    return inputs


def time_interleaved(
    models: dict[str, torch.nn.Module], inputs: dict, repeats: int, device: torch.device, warmup: int = 1
) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """Median seconds per forward of each model, the models taking turns so machine load hits all alike."""
    times: dict[str, list[float]] = {name: [] for name in models}
    outputs: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for _ in range(warmup):
            for model in models.values():
                model(**inputs)
        for _ in range(repeats):
            for name, model in models.items():
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                outputs[name] = model(**inputs).sample
                if device.type == "cuda":
                    torch.cuda.synchronize()
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}, outputs


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="tiny", choices=["tiny", "motif-video-2b"])
    parser.add_argument("--size", default="256x256x17", help="WIDTHxHEIGHTxFRAMES in pixels")
    parser.add_argument(
        "--text-len", type=int, default=512, help="padded prompt length (the pipeline pads to 512)"
    )
    parser.add_argument("--valid-tokens", type=int, default=77, help="real prompt tokens inside the padding")
    parser.add_argument("--image-tokens", type=int, default=0, help="SigLIP tokens (I2V: 4096 at full size)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1, help="untimed forwards before timing")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--memory-child", choices=["ours", "reference"], help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    size = parse_size(args.size)
    ours, reference = build_pair(args.preset, device, dtype)
    inputs = make_inputs(
        preset_config(args.preset), size, args.text_len, args.valid_tokens, device, dtype, args.image_tokens
    )
    if args.memory_child:
        model = ours if args.memory_child == "ours" else reference
        base = _rss()
        with torch.no_grad():
            model(**inputs)
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base)
        return
    seconds, outputs = time_interleaved(
        {"reference": reference, "ours": ours}, inputs, args.repeats, device, args.warmup
    )
    ref_s, our_s = seconds["reference"], seconds["ours"]
    ref_out, our_out = outputs["reference"], outputs["ours"]
    if device.type == "cuda":
        with torch.no_grad():
            ref_mem = cuda_peak(lambda: reference(**inputs))
            our_mem = cuda_peak(lambda: ours(**inputs))
    else:
        del ours, reference
        ref_mem, our_mem = cpu_peak_in_child("reference"), cpu_peak_in_child("ours")
    diff = (our_out.float() - ref_out.float()).abs().max().item()
    scale = ref_out.float().abs().max().item()
    result = {
        "preset": args.preset,
        "size": args.size,
        "device": str(device) + (f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else ""),
        "dtype": args.dtype,
        "threads": torch.get_num_threads(),
        "text": f"{args.valid_tokens} valid of {args.text_len}",
        "reference_s": round(ref_s, 4),
        "ours_s": round(our_s, 4),
        "ratio_ours_over_reference": round(our_s / ref_s, 3),
        "reference_peak_mb": round(ref_mem / 2**20, 1),
        "ours_peak_mb": round(our_mem / 2**20, 1),
        "max_abs_diff": diff,
        "output_max_abs": scale,
    }
    print(json.dumps(result, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
