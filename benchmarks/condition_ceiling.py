"""What limits a condition's PSNR beyond the first frame: the VAE alone, with no transformer.

On `--clips` ground-truth clips of the offline suite, for the first, middle and last pixel frames (the eval's
`first`, `keyframe` and `last` patterns), the PSNR (dB) of that frame after decoding:

in_clip     the clip's own latents (encoded whole): the ceiling of a transformer that reproduces the clip exactly
placed      the clip's latents with the conditioned latent frame replaced by the pipeline's encoding of the given
            image (`encode_placed`: a still group of 4 after a context frame, as `last_image` and keyframes are
            encoded); what a transformer that copies the condition into its output gets
alone       the placed encoding decoded on its own (context frame, then the still group)
other_group the placed case's PSNR at the other pixel frames of the same group (frames the image does not give:
            how far the still group pulls them towards the image)

    PYTHONPATH=src python benchmarks/condition_ceiling.py --model small --clips 12 --threads 1
"""

from __future__ import annotations

import argparse
import json
import statistics

import numpy as np
import torch


def main() -> None:
    from motif_video.condition_layout import pixel_frames, place
    from motif_video.evaluation.analysis import psnr_uint8
    from motif_video.evaluation.suite import prompt_suite
    from motif_video.pipelines import MotifVideoPipeline
    from motif_video.pipelines.conditions import encode_placed
    from motif_video.pipelines.latents import decode_latents, to_model_latents
    from motif_video.synthetic import render

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="small")
    parser.add_argument("--clips", type=int, default=12)
    parser.add_argument("--frames", type=int, default=33)
    parser.add_argument("--size", type=int, default=64, help="height and width of the clips")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipe = MotifVideoPipeline.from_pretrained(args.model, dtype=torch.float32)
    vae = pipe.vae
    size, f = args.size, args.frames

    def pixels(clip: np.ndarray) -> torch.Tensor:  # uint8 [F, H, W, 3] -> [F, 3, H, W] in [-1, 1]
        return torch.from_numpy(clip).permute(0, 3, 1, 2).float() / 127.5 - 1

    def decode(z: torch.Tensor) -> np.ndarray:
        video = decode_latents(vae, z)[0].permute(1, 2, 3, 0).numpy()
        return np.round((video + 1) * 127.5).clip(0, 255).astype(np.uint8)

    positions = {"first": 0, "keyframe": f // 2, "last": f - 1}
    rows: dict[str, dict[str, list[float]]] = {p: {} for p in positions}
    with torch.no_grad():
        for case in prompt_suite(args.clips):
            truth = render(case.scene, f, size, size)
            z = to_model_latents(
                vae.encode(pixels(truth).transpose(0, 1)[None]).latent_dist.mode(), vae.config
            )
            whole = decode(z)
            for name, frame in positions.items():
                p = place(name, frame, 1, f)
                image = pixels(truth[frame : frame + 1])
                zc = encode_placed(vae, image, p, "mode")
                swapped = z.clone()
                swapped[:, :, p.latents.start : p.latents.stop] = zc
                placed = decode(swapped)
                seq = image[list(p.encode)].transpose(0, 1)[None]
                alone = decode(to_model_latents(vae.encode(seq).latent_dist.mode(), vae.config))
                group = [i for k in p.latents for i in pixel_frames(k) if i != frame]
                got = {
                    "in_clip": psnr_uint8(whole[frame], truth[frame]),
                    "placed": psnr_uint8(placed[frame], truth[frame]),
                    "alone": psnr_uint8(alone[-1], truth[frame]),
                }
                if group:
                    got["other_group"] = statistics.mean(psnr_uint8(placed[i], truth[i]) for i in group)
                for k, v in got.items():
                    rows[name].setdefault(k, []).append(v)
    print(
        json.dumps(
            {p: {k: round(statistics.mean(v), 2) for k, v in r.items()} for p, r in rows.items()}, indent=1
        )
    )


if __name__ == "__main__":
    main()
