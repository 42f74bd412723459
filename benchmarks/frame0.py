"""Where a generated clip's first frames go wrong: one measurement per hypothesis, per latent frame.

Latent frame 0 holds pixel frame 0 alone (the causal VAE's first chunk); latent frame t >= 1 holds frames 4t-3..4t.
On `--clips` cases of the offline suite's seen group (rendered ground truth):

vae        round trip of the true clip: PSNR of frame 0 against the others, and whether each frame's colour reads
           right (the ceiling any transformer decoded by this VAE can reach)
data       statistics of the true clips' normalised latents per latent frame: mean over channels of |channel mean|
           and the rms of the channels' std (the normalisation makes both 0 / 1 over all frames)
one_step   x0 = x_sigma - sigma v, one transformer call with the caption, no guidance: error per latent frame
           relative to that frame's energy, and whether the decoded estimate's frames read the right colour
generated  the sampler's output with the folder's guidance (`guided`), without guidance (`unguided`), and with
           guidance on every latent frame but 0 (`guided_not_frame0`): the same latent statistics, and the decoded
           frames' colour; `renormed`: latent frame 0 of the guided output shrunk about its own per-channel means
           to the training clips' per-channel spatial std of frame 0 before decoding (a decode-side fix that would
           need no retraining)
decoder    the true latents with Gaussian noise of rms `--noise` added to every latent frame, decoded: colour by
           latent frame (is the decoder's first chunk more sensitive to the same error?)

    PYTHONPATH=src python benchmarks/frame0.py --model small --clips 12 --threads 1
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

GROUPS = ("frame 0", "frames 1-4", "frames 5-32")  # pixel frames of latent frame 0, latent frame 1, the rest


def by_latent_group(hits: list[bool]) -> list[bool | list[bool]]:
    return [hits[0], hits[1:5], hits[5:]]


def main() -> None:
    from motif_video import flow
    from motif_video.evaluation.analysis import frame_colours, object_masks, psnr_uint8
    from motif_video.evaluation.suite import prompt_suite
    from motif_video.pipelines import MotifVideoPipeline
    from motif_video.pipelines.latents import decode_latents, to_model_latents
    from motif_video.pipelines.velocity import Conditioning, PassOptions
    from motif_video.synthetic import render, scene_at

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="small")
    parser.add_argument("--clips", type=int, default=12)
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0.3, 0.6, 0.9])
    parser.add_argument("--noise", type=float, default=0.3, help="decoder: rms of the noise added to latents")
    parser.add_argument(
        "--stats-clips", type=int, default=48, help="training clips for the frame-0 statistics"
    )
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipe = MotifVideoPipeline.from_pretrained(args.model, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    vae, cfg = pipe.vae, pipe.vae.config
    size, frames = 64, 33

    def encode(clip: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(clip).permute(3, 0, 1, 2)[None].float() / 127.5 - 1
        with torch.no_grad():
            z = vae.encode(x).latent_dist.mode()
        return to_model_latents(z, cfg)

    def decode(z: torch.Tensor) -> np.ndarray:
        video = decode_latents(vae, z)[0].permute(1, 2, 3, 0).numpy()
        return np.round((video + 1) * 127.5).clip(0, 255).astype(np.uint8)

    def colours_right(clip: np.ndarray, colour: str) -> list[bool]:
        masks, dist, _ = object_masks(clip)
        return [c == colour for c in frame_colours(clip, masks, dist)]

    def frame_stats(z: torch.Tensor) -> tuple[list[float], list[float]]:
        """Per latent frame: mean over channels of |channel mean|, rms over channels of the channel std."""
        mean = z[0].mean(dim=(2, 3))  # [C, T]
        std = z[0].std(dim=(2, 3))
        return mean.abs().mean(0).tolist(), std.pow(2).mean(0).sqrt().tolist()

    # the training stream's statistics per channel and latent frame; never the evaluated clips
    train = torch.cat([encode(render(scene_at(0, i), frames, size, size)) for i in range(args.stats_clips)])
    f0_spatial_std = train[:, :, :1].std(dim=(3, 4), keepdim=True).mean(0, keepdim=True)  # [1, C, 1, 1, 1]
    spatial_std_by_frame = train.std(dim=(3, 4)).pow(2).mean(dim=(0, 1)).sqrt()  # [T]

    unguided_frames = {"n": 0}  # latent frames 0..n-1 get the conditional velocity alone (no guidance)
    predict = pipe.predict_velocity

    def predict_velocity(*a, **k):
        v_cond, v_uncond = predict(*a, **k)
        n = unguided_frames["n"]
        if v_uncond is not None and n:
            v_uncond = v_uncond.clone()
            v_uncond[:, :, :n] = v_cond[:, :, :n]  # a zero guidance difference: the guided velocity is v_cond
        return v_cond, v_uncond

    pipe.predict_velocity = predict_velocity

    tally: dict[str, list] = {}

    def add(key: str, value) -> None:
        tally.setdefault(key, []).append(value)

    generator = torch.Generator().manual_seed(0)
    for case in prompt_suite(args.clips):
        truth = case.scene.colour
        clip = render(case.scene, frames, size, size)
        z = encode(clip)
        rec = decode(z)
        add("vae_psnr", [psnr_uint8(rec[i], clip[i]) for i in range(frames)])
        add("vae_colour", colours_right(rec, truth))
        add("data_stats", frame_stats(z))
        cond = pipe.encode_texts([case.prompt], 512, torch.device("cpu"))
        empty = Conditioning()  # no first frame: zeros in the 17 condition channels
        noise = torch.randn(z.shape, generator=generator)
        for sigma in args.sigmas:
            x_sigma = flow.noisy_latents(z, noise, torch.tensor([sigma]))
            with torch.no_grad():
                v, _ = pipe.predict_velocity(x_sigma, sigma, cond, None, empty, PassOptions("sequential"))
            x0 = flow.predicted_x0(x_sigma, v, torch.tensor([sigma]))
            # error per latent frame relative to that frame's spatial variance (what draws the object)
            err = ((x0 - z) ** 2).mean(dim=(0, 1, 3, 4)) / z.var(dim=(3, 4)).mean(dim=(0, 1))
            add(f"one_step_{sigma}_rel_err", err.tolist())
            add(f"one_step_{sigma}_colour", colours_right(decode(x0), truth))
        for name, kwargs, skip in (
            ("guided", {}, 0),
            ("unguided", {"guidance": "none"}, 0),
            ("guided_not_frame0", {}, 1),
        ):
            unguided_frames["n"] = skip
            generator_ = torch.Generator().manual_seed(0)
            out = pipe(case.prompt, generator=generator_, output_type="latent", **kwargs).frames
            add(f"{name}_stats", frame_stats(out))
            add(f"{name}_colour", colours_right(decode(out), truth))
            if name == "guided":
                fixed = out.clone()
                g0 = out[:, :, :1]
                g_mean, g_std = g0.mean(dim=(3, 4), keepdim=True), g0.std(dim=(3, 4), keepdim=True)
                fixed[:, :, :1] = g_mean + (g0 - g_mean) / g_std.clamp_min(1e-3) * f0_spatial_std
                add("renormed_colour", colours_right(decode(fixed), truth))
        unguided_frames["n"] = 0
        noisy = z + args.noise * torch.randn(z.shape, generator=generator)
        add("decoder_noise_colour", colours_right(decode(noisy), truth))

    def colour_summary(key: str) -> list[float]:
        rows = np.array(tally[key], dtype=float)  # [clips, frames]
        return [round(rows[:, 0].mean(), 3), round(rows[:, 1:5].mean(), 3), round(rows[:, 5:].mean(), 3)]

    def per_latent(key: str, index: int | None = None) -> list[float]:
        rows = np.array([r if index is None else r[index] for r in tally[key]], dtype=float)
        return [round(v, 3) for v in rows.mean(0)]

    psnr = np.array(tally["vae_psnr"])
    result = {
        "model": args.model,
        "clips": args.clips,
        "colour right by pixel frames": list(GROUPS),
        "vae_psnr_db": {"frame 0": round(psnr[:, 0].mean(), 2), "frames 1-32": round(psnr[:, 1:].mean(), 2)},
        "vae_colour": colour_summary("vae_colour"),
        "data_abs_channel_mean_by_latent_frame": per_latent("data_stats", 0),
        "data_rms_channel_std_by_latent_frame": per_latent("data_stats", 1),
        "train_rms_spatial_std_by_latent_frame": [round(v, 3) for v in spatial_std_by_frame.tolist()],
        **{f"one_step_{s}_rel_err_by_latent_frame": per_latent(f"one_step_{s}_rel_err") for s in args.sigmas},
        **{f"one_step_{s}_colour": colour_summary(f"one_step_{s}_colour") for s in args.sigmas},
        **{
            f"{name}_{stat}_by_latent_frame": per_latent(f"{name}_stats", i)
            for name in ("guided", "unguided", "guided_not_frame0")
            for i, stat in enumerate(("abs_channel_mean", "rms_channel_std"))
        },
        **{
            f"{name}_colour": colour_summary(f"{name}_colour")
            for name in ("guided", "unguided", "guided_not_frame0", "renormed")
        },
        f"decoder_noise_{args.noise}_colour": colour_summary("decoder_noise_colour"),
    }
    print("{\n" + ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in result.items()) + "\n}")


if __name__ == "__main__":
    main()
