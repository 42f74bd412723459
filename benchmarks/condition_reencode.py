"""Would re-encoding a conditioned group with its generated neighbours bring the video closer to the given image?

A last image or keyframe enters the latents as a still group (4 copies of the image, `encode_placed`), which decodes
to 24.5-25.4 dB at its frame after a moving clip's latents (`condition_ceiling.py`). The variant measured here runs
after sampling: decode, put the given image at its pixel frame, encode the whole clip again, and take the
conditioned latent frame (`group`) or it and every later one (`onward`) from that encode, then decode. `base` is the
pipeline's output as it is. Per pattern (`last`: frame F - 1, `keyframe`: frame F // 2) and group of the offline
suite: the mean PSNR (dB) at the conditioned frame and `pop`, the largest frame-to-frame change in the 4 steps up to
it over the clip's median change (1: no jump into the given frame).

    PYTHONPATH=src python benchmarks/condition_reencode.py --model small --split validation --cases 10 --seeds 2
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict

import numpy as np
import torch


def to_uint8(video: torch.Tensor) -> np.ndarray:
    """[1, 3, F, H, W] in [-1, 1] -> uint8 [F, H, W, 3] (`to_uint8_frames` of the [0, 1] frames)."""
    from motif_video.pipelines.export import to_uint8_frames

    return to_uint8_frames((video[0].permute(1, 2, 3, 0).numpy() + 1) / 2)


def pop(video: np.ndarray, frame: int) -> float:
    from motif_video.evaluation.conditions import frame_changes

    changes = frame_changes(video)
    return float(max(changes[max(frame - 4, 0) : frame + 1]) / np.median(changes))


def main() -> None:
    import PIL.Image

    from motif_video.evaluation.analysis import psnr_uint8
    from motif_video.evaluation.suite import eval_suite
    from motif_video.pipelines import MotifVideoImageToVideoPipeline, MotifVideoPipeline
    from motif_video.pipelines.conditions import VideoCondition
    from motif_video.pipelines.latents import decode_latents, to_model_latents
    from motif_video.synthetic import render

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="small")
    parser.add_argument("--split", default="validation", choices=("test", "validation"))
    parser.add_argument("--cases", type=int, default=10, help="per group (seen, held out)")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    pipe = MotifVideoImageToVideoPipeline.from_pipe(
        MotifVideoPipeline.from_pretrained(args.model, dtype=torch.float32)
    )
    pipe.set_progress_bar_config(disable=True)
    vae = pipe.vae
    defaults = pipe.generation_defaults.resolve(num_frames=None, height=None, width=None)
    f, h, w = defaults["num_frames"], defaults["height"], defaults["width"]
    scores: dict[tuple[str, str, str], list[tuple[float, float]]] = defaultdict(list)
    for case in eval_suite(args.cases, args.split):
        truth = render(case.scene, f, h, w)
        for pattern, k in (("last", f - 1), ("keyframe", f // 2)):
            image = PIL.Image.fromarray(truth[k])
            extra = (
                {"last_image": image}
                if pattern == "last"
                else {"conditions": [VideoCondition(image=image, frame_index=k)]}
            )
            for seed in range(args.seeds):
                generator = torch.Generator("cpu").manual_seed(seed)
                latents = pipe(prompt=case.prompt, generator=generator, output_type="latent", **extra).frames
                with torch.no_grad():
                    pixels = decode_latents(vae, latents)
                    base = to_uint8(pixels)
                    scores[(case.group, pattern, "base")].append(
                        (psnr_uint8(base[k], truth[k]), pop(base, k))
                    )
                    given = pixels.clone()
                    given[:, :, k] = torch.from_numpy(truth[k]).float().permute(2, 0, 1) / 127.5 - 1
                    encoded = to_model_latents(vae.encode(given).latent_dist.mode(), vae.config)
                    group = (k + 3) // 4
                    for name, frames in (("group", slice(group, group + 1)), ("onward", slice(group, None))):
                        mixed = latents.clone()
                        mixed[:, :, frames] = encoded[:, :, frames]
                        video = to_uint8(decode_latents(vae, mixed))
                        scores[(case.group, pattern, name)].append(
                            (psnr_uint8(video[k], truth[k]), pop(video, k))
                        )
    rows = {
        "/".join(key): {
            "psnr": round(statistics.mean(p for p, _ in values), 2),
            "pop": round(statistics.mean(q for _, q in values), 2),
            "clips": len(values),
        }
        for key, values in sorted(scores.items())
    }
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
