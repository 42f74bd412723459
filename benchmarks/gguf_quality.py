"""GGUF transformers against the float one: file size, load time and memory, and output PSNR.

For each type the model's transformer is exported (`motif-video export --gguf TYPE`), loaded in a fresh process
(median load seconds of 3, MiB held by the transformer's tensors: quantised weights stay packed) as the float folder
is (`from_pretrained` of the safetensors), and the videos of the offline suite's prompts are generated with it in place
of the float transformer (same seeds): PSNR of the decoded frames and of one transformer output against float32.

    PYTHONPATH=src python benchmarks/gguf_quality.py --model small --types Q8_0 Q4_0 --prompts 5
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def psnr(x: np.ndarray, ref: np.ndarray, peak: float) -> float:
    mse = float(np.mean((x.astype(np.float64) - ref.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(peak**2 / mse)


def _load_in_child(kind: str, path: str, repeats: int, queue) -> None:
    torch.set_num_threads(1)
    from motif_video.interop.gguf_files import load_gguf_transformer
    from motif_video.models import MotifVideoTransformer

    load = MotifVideoTransformer.from_pretrained if kind == "safetensors" else load_gguf_transformer
    seconds = []
    for _ in range(repeats):  # the first load also warms the file cache; the median is reported
        start = time.perf_counter()
        model = load(path)
        seconds.append(time.perf_counter() - start)
    held = sum(t.nbytes for t in [*model.parameters(), *model.buffers()]) / 2**20
    queue.put({"load_seconds": float(np.median(seconds)), "tensor_mib": held})


def measure_load(kind: str, path: Path, repeats: int = 3) -> dict:
    """Load seconds (median of `repeats`, in a fresh process: nothing cached in memory) and the tensors' MiB."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_load_in_child, args=(kind, str(path), repeats, queue))
    child.start()
    result = queue.get()
    child.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="small")
    parser.add_argument("--types", nargs="+", default=["Q8_0", "Q4_0"])
    parser.add_argument(
        "--prompts", type=int, default=5, help="prompts per group of the offline suite (default: 5)"
    )
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from motif_video.evaluation.suite import eval_suite
    from motif_video.hub import resolve_folder
    from motif_video.interop.export import export
    from motif_video.interop.gguf_files import load_gguf_transformer
    from motif_video.pipelines import MotifVideoPipeline

    folder = resolve_folder(args.model)
    pipe = MotifVideoPipeline.from_pretrained(args.model, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    prompts = [case.prompt for case in eval_suite(args.prompts, "test")]

    def videos(p) -> list[np.ndarray]:
        return [
            p(prompt=prompt, generator=torch.Generator("cpu").manual_seed(0), output_type="np").frames[0]
            for prompt in prompts
        ]

    g = torch.Generator().manual_seed(0)
    cfg = pipe.transformer.config
    probe = {
        "hidden_states": torch.randn(1, cfg.in_channels, 3, 8, 8, generator=g),
        "timestep": torch.tensor([700.0]),
        "encoder_hidden_states": torch.randn(1, 12, cfg.text_embed_dim, generator=g),
    }
    with torch.no_grad():
        ref_out = pipe.transformer(**probe).sample.numpy()
    ref_videos = videos(pipe)
    rows = {
        "float32 safetensors": {
            "file_mib": sum(p.stat().st_size for p in (folder / "transformer").glob("*.safetensors")) / 2**20,
            **measure_load("safetensors", folder / "transformer"),
        }
    }
    with tempfile.TemporaryDirectory() as tmp:
        for qtype in args.types:
            path = Path(tmp) / f"transformer-{qtype}.gguf"
            start = time.perf_counter()
            export(folder, path, gguf=qtype)
            row = {"export_seconds": time.perf_counter() - start, "file_mib": path.stat().st_size / 2**20}
            row.update(measure_load("gguf", path))
            quantised = MotifVideoPipeline.from_pipe(pipe, transformer=load_gguf_transformer(path))
            quantised.set_progress_bar_config(disable=True)
            with torch.no_grad():
                out = quantised.transformer(**probe).sample.numpy()
            row["transformer_output_psnr_db"] = psnr(out, ref_out, float(np.abs(ref_out).max()))
            row["video_psnr_db"] = float(
                np.mean([psnr(v, r, 1.0) for v, r in zip(videos(quantised), ref_videos)])
            )
            rows[f"GGUF {qtype}"] = row
    print(json.dumps({"model": args.model, "videos": len(prompts), "rows": rows}, indent=2))
    keys = [
        "file_mib",
        "load_seconds",
        "tensor_mib",
        "transformer_output_psnr_db",
        "video_psnr_db",
    ]
    print("| format | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for name, row in rows.items():
        cells = [f"{row[k]:.3g}" if k in row else "-" for k in keys]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
