"""How much a caption's colour or shape word steers the transformer's one-step clean estimate, by noise level.

For held-out procedural clips: encode with the model's VAE, noise to sigma, predict x0 = x_sigma - sigma v once
(text only, no guidance) with the true caption and with the word swapped for another one, decode, and read the
result with the offline evaluator. At low sigma the noisy clip itself shows the answer; at high sigma only the word
can. A word the model has learnt makes the swapped caption's estimate read as the swapped word at high sigma.

Per word and sigma: `true` (the true caption's estimate reads as the truth), `swapped_reads_true` /
`swapped_reads_swapped` (the swapped caption's estimate reads as the old / the new word), and `true_reads` (what the
true caption's estimates read as, by share: an estimate that always reads the same, e.g. a blurred blob read as a
circle, scores the share of that word in the other figures without following the caption). For shape also
`overlap_shift`: the mean change, from the true caption to the swapped one, of the estimate's outline overlap (IoU,
per frame, as the evaluator measures it) with the swapped-in shape; above 0 when the word pulls the outline its way
even where the reading does not flip.

    PYTHONPATH=src python benchmarks/word_steering.py --model small --clips 24 --words colour shape
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

import torch


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: `recipes.small`
    from recipes.small.vae import render_window

    from motif_video import flow
    from motif_video.evaluation.analysis import object_masks, read_clip, shape_overlaps
    from motif_video.evaluation.suite import prompt_suite
    from motif_video.hub import resolve_folder
    from motif_video.models import MotifVideoTransformer
    from motif_video.pipelines.export import to_uint8_frames
    from motif_video.pipelines.latents import decode_latents
    from motif_video.synthetic import COLOURS, SHAPES
    from motif_video.training.components import load_components
    from motif_video.training.encoders import encode_text, encode_video

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="small", help="model folder or shipped name")
    parser.add_argument("--clips", type=int, default=24, help="held-out scenes of the offline suite")
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0.5, 0.7, 0.85, 0.95])
    parser.add_argument("--words", nargs="+", default=["colour", "shape"], choices=["colour", "shape"])
    parser.add_argument("--frames", type=int, default=33)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    folder = resolve_folder(args.model)
    components = load_components(str(folder))
    vae = components.vae.float()
    model = MotifVideoTransformer.from_pretrained(folder / "transformer").float().eval()
    extra = model.config.in_channels - model.config.out_channels  # I2V condition channels, left empty
    vocab = {"colour": list(COLOURS), "shape": list(SHAPES)}
    generator = torch.Generator().manual_seed(0)

    @torch.no_grad()
    def estimate(x_sigma: torch.Tensor, sigma: float, text: tuple[torch.Tensor, torch.Tensor]):
        """(labels, bool object masks [F, H, W]) of the decoded one-step clean estimate."""
        text, mask = text
        condition = x_sigma.new_zeros(1, extra, *x_sigma.shape[2:])
        v = model(
            torch.cat([x_sigma, condition], 1),
            encoder_hidden_states=text,
            encoder_attention_mask=mask,
            timestep=flow.timestep_from_sigma(torch.tensor([sigma])),
        ).sample
        video = decode_latents(vae, flow.predicted_x0(x_sigma, v, torch.tensor([sigma])))  # [1, 3, F, H, W]
        frames = to_uint8_frames((video[0].permute(1, 2, 3, 0).numpy() + 1) / 2)
        return read_clip(frames).labels(), object_masks(frames)[0]

    def overlap(masks, shape: str) -> float:
        """Mean over frames of the outline overlap with `shape` (0 for a frame without an object)."""
        per_frame = [shape_overlaps(m) for m in masks]
        return sum(o[shape] if o else 0.0 for o in per_frame) / len(per_frame)

    counts = {w: {s: Counter() for s in args.sigmas} for w in args.words}
    reads = {w: {s: Counter() for s in args.sigmas} for w in args.words}
    for i, case in enumerate(prompt_suite(args.clips)):
        x0 = encode_video(
            vae, render_window(case.scene, 0, args.frames, args.frames, args.size, args.size)[None]
        )
        noise = torch.randn(x0.shape, generator=generator)
        truth = case.scene.labels()
        others = {}  # word -> (the swapped-in word, its caption's text embedding), encoded once per clip
        for word in args.words:
            options = [w for w in vocab[word] if w != truth[word]]
            other = options[i % len(options)]
            prompt = re.sub(rf"\b{truth[word]}\b", other, case.prompt, count=1)
            others[word] = other, encode_text(components, [prompt], 32)
        text = encode_text(components, [case.prompt], 32)
        for sigma in args.sigmas:
            x_sigma = flow.noisy_latents(x0, noise, torch.tensor([sigma]))
            read, masks = estimate(x_sigma, sigma, text)
            for word, (other, swapped_text) in others.items():
                swapped, swapped_masks = estimate(x_sigma, sigma, swapped_text)
                c = counts[word][sigma]
                c["true"] += read[word] == truth[word]
                c["swapped_reads_true"] += swapped[word] == truth[word]
                c["swapped_reads_swapped"] += swapped[word] == other
                if word == "shape":
                    c["overlap_shift"] += overlap(swapped_masks, other) - overlap(masks, other)
                reads[word][sigma][str(read[word])] += 1
    result = {
        word: {
            str(s): {
                **{k: round(v / args.clips, 3) for k, v in c.items()},
                "true_reads": {k: round(v / args.clips, 3) for k, v in sorted(reads[word][s].items())},
            }
            for s, c in by_sigma.items()
        }
        for word, by_sigma in counts.items()
    }
    print(json.dumps({"model": args.model, "clips": args.clips, **result}, indent=1))


if __name__ == "__main__":
    main()
