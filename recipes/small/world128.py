"""The small model's 128x128x17 world, a research build that is not shipped (BENCHMARKS.md, "Small model: quality",
from "Why new triples fail"): the shipped VAE with its decoder fine-tuned for 128x128 video, the recipe's narrow
scenes rendered at 128x128x17 without the evaluation's held-out triples, and the shipped transformer continued in
that world stage by stage, as the runs reported there were made.

    PYTHONPATH=src python recipes/small/world128.py                 # into runs/small128, the folder runs/small128/model
    PYTHONPATH=src python recipes/small/world128.py --skip decoder  # reuse runs/small128/components
    PYTHONPATH=src python recipes/small/world128.py --resume        # go on after a stop: finished stages are skipped

Each stage's wall-clock seconds go to OUTPUT/timings.json; the whole build takes about 6 hours on 2 CPU threads.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from functools import partial
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the repository root makes `recipes.small` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from recipes.small.build import FINAL_STAGE, GENERATION, Stages, add_stage_options
from recipes.small.clips import NARROW, write_clips
from recipes.small.components import assemble
from recipes.small.vae import finetune_decoder

SHIPPED = Path("src/motif_video/assets/small")
SIZE = {"frames": 17, "height": 128, "width": 128}
# the decoder alone (encoder, and so every latent, kept) on 128x128 clips, which move twice as many pixels per frame
# as the 64x64 ones it was trained on: the shipped decoder leaves a ragged ghost behind a moving object there
DECODER = dict(steps=1000, crop=0, batch_size=1, lr=1e-4, first_frame_weight=1.0, first_frame_batch=2,
               still_group_probability=0.5, **SIZE)  # fmt: skip
# clip sets of one scene stream (narrow ranges, seed 0): name, count, share of captions without their colour word or
# background phrase (`write_clips`' partial_captions)
CLIPS = (("clips", 1200, 0.0), ("clips_more", 4800, 0.0), ("clips_partial", 4800, 0.3))
# every stage's settings beyond the recipe's config: the last shipped stage's condition patterns, no TREAD
WORLD = (f"data.buckets=[[{SIZE['frames']}, {SIZE['height']}, {SIZE['width']}]]", "cpu_threads=2",
         *(o for o in FINAL_STAGE[3] if not o.startswith("objective.")))  # fmt: skip
# (stage, steps, peak learning rate, weight of latent frame 0 in the loss, clip set), each from the previous stage's
# EMA weights on a new cosine schedule, the first from the `--base` folder's transformer (the runs reported started
# from `transformer9`, shipped until 2026-12-06; the shipped folder now holds `transformer10`). Weight 8 is the shipped last stage's;
# at 17 frames it is 8 of 12 parts of the gradient, for a frame the T2V sampler repaints, and weight 1 lifted seen
# shape. `transformer128_7` saw partial captions (a share 0.3 of one 4800-clip copy), as the runs were made; a control
# from there without them did better than one with a share of 0.5, so the later stages have full captions.
STAGES = (
    ("transformer128_1", 2000, 3e-4, 8, "clips"),
    ("transformer128_2", 5000, 5e-4, 8, "clips"),
    ("transformer128_3", 2500, 3e-4, 8, "clips"),
    ("transformer128_4", 2500, 3e-4, 8, "clips"),
    ("transformer128_5", 2500, 3e-4, 1, "clips"),
    ("transformer128_6", 2500, 3e-4, 1, "clips_more"),
    ("transformer128_7", 2500, 3e-4, 1, "clips_partial"),
    ("transformer128_8", 2500, 3e-4, 1, "clips_more"),
    ("transformer128_9", 2500, 3e-4, 1, "clips_more"),
    ("transformer128_10", 2500, 3e-4, 1, "clips_more"),
)
STAGE_NAMES = ("decoder", *(name for name, *_ in CLIPS), *(name for name, *_ in STAGES), "assemble")
GENERATION_128 = {
    **GENERATION,
    "num_frames": SIZE["frames"],
    "height": SIZE["height"],
    "width": SIZE["width"],
    "trained_sizes": [[SIZE["height"], SIZE["width"]]],
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output", type=Path, default=Path("runs/small128"))
    parser.add_argument(
        "--base",
        type=Path,
        default=SHIPPED,
        help="the small model folder it starts from: its transformer, and its components with a new decoder",
    )
    add_stage_options(parser, STAGE_NAMES)
    parser.add_argument(
        "overrides",
        nargs="*",
        help="transformer recipe overrides for every transformer stage, e.g. max_steps=100",
    )
    args = parser.parse_args(argv)
    args.no_hold_out = False  # the held-out triples are what this world is for
    return args


class World128(Stages):
    """This world's stages in order."""

    def decoder(self) -> Path:
        components = self.out / "components"

        def run():
            shutil.rmtree(components, ignore_errors=True)
            shutil.copytree(self.args.base, components, ignore=shutil.ignore_patterns("transformer"))
            print(finetune_decoder(components / "vae", components / "vae", **DECODER))

        self.stage("decoder", run)  # the encoder is kept, so the latent caches stay valid
        return components

    def clips(self) -> None:
        for name, count, share in CLIPS:
            write = partial(write_clips, self.out / name, count, fps=16, ranges=NARROW,
                            exclude=self.held_out, partial_captions=share, **SIZE)  # fmt: skip
            self.stage(name, write)

    def transformer_stages(self, components: Path) -> str:
        """Every transformer stage in order; returns the last one's name."""
        self.overrides = [f"model.components={components}", *WORLD]
        previous = self.args.base / "transformer"
        for name, steps, lr, weight, clips in STAGES:
            data = (f"data.path={self.out / clips}", f"data.cache={self.out / f'cache_{clips}'}")
            self.continued(name, previous, steps, lr, (*data, f"objective.first_frame_weight={weight}"))
            previous = name
        return previous

    def assemble(self, last: str, components: Path) -> None:
        transformer = self.out / last / "transformer-ema"
        self.stage("assemble", lambda: assemble(self.out / "model", components, transformer, GENERATION_128))


def main(argv: list[str] | None = None) -> None:
    world = World128(parse_args(argv))
    components = world.decoder()
    world.clips()
    world.assemble(world.transformer_stages(components), components)
    print(json.dumps(world.timings))


if __name__ == "__main__":
    main()
