"""Reconstruction PSNR of a model's VAE on held-out procedural clips, and what the offline evaluator reads from the
reconstructions (the ceiling any transformer decoded by this VAE can reach on the same figures), and the judder of
the round trip: how much more the frames change across a latent group than inside one (`recipes.small.vae.judder`,
1 for even motion; the true clips' own figure beside it).

    PYTHONPATH=src python benchmarks/vae_psnr.py --model small --clips 16 --frames 33
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: `recipes.small`
    from diffusers import AutoencoderKLWan
    from recipes.small.vae import change_profile, judder, psnr, render_window, round_trip, uint8_frames

    from motif_video.evaluation.analysis import read_clip
    from motif_video.evaluation.scores import figures
    from motif_video.hub import resolve_folder
    from motif_video.synthetic import scene_at

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="small", help="model folder or shipped name (its vae/ subfolder)")
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--frames", type=int, default=33)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=123, help="scene stream (the training clips use 0 and 1)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    vae = AutoencoderKLWan.from_pretrained(resolve_folder(args.model), subfolder="vae").float().eval()
    scores, first, readings, truths, decoded = [], [], [], [], []
    for i in range(args.clips):
        scene = scene_at(args.seed, i)
        x = render_window(scene, 0, args.frames, args.frames, args.size, args.size)[None]
        y = round_trip(vae, x)
        scores.append(psnr(y, x))
        first.append(psnr(y[:, :, :1], x[:, :, :1]))
        rec = uint8_frames(y[0])
        truths.append(uint8_frames(x[0]))
        decoded.append(rec)
        readings.append((read_clip(rec), scene))
    print(
        json.dumps(
            {
                "psnr_db": round(float(np.mean(scores)), 2),
                "psnr_db_min": round(float(np.min(scores)), 2),
                "first_frame_psnr_db": round(float(np.mean(first)), 2),
                # what the offline evaluator reads from the reconstructions: per clip, per frame, frame 0
                "read": {k: round(v, 3) for k, v in figures(readings).items() if k != "se"},
                "judder": round(judder(change_profile(decoded)), 3),
                "judder_true": round(judder(change_profile(truths)), 3),
                "clips": args.clips,
                "frames": args.frames,
            }
        )
    )


if __name__ == "__main__":
    main()
