"""Retrain the shipped small model from scratch: VAE, tokenizer (+ random frozen text encoder), clips, transformer,
then assemble the half-precision folder.

    PYTHONPATH=src python recipes/small/build.py                 # everything into runs/small
    PYTHONPATH=src python recipes/small/build.py --ship           # ... and copy into src/motif_video/assets/small
    PYTHONPATH=src python recipes/small/build.py --skip vae       # reuse runs/small/vae
    PYTHONPATH=src python recipes/small/build.py --only clips_grown   # one stage: the distillation recipe's clips
    PYTHONPATH=src python recipes/small/build.py --resume         # go on after a stop: finished stages are skipped

Each stage's wall-clock seconds go to runs/small/timings.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the repository root makes `recipes.small` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from recipes.small.clips import NARROW, write_clips, write_grown_clips
from recipes.small.components import assemble, write_components
from recipes.small.vae import VaeTrainConfig, add_first_frame_stats, finetune_decoder, train_vae

from motif_video.evaluation.split import HELD_OUT
from motif_video.training.config import load_config
from motif_video.training.trainer import train

HERE = Path(__file__).parent
# Later transformer stages: the same recipe continued from the previous stage's EMA weights on a new cosine schedule
# (stage name, steps, peak learning rate, further overrides). More steps is what moved direction: T2V 0.2 (5000
# steps in all), 0.475 (9000), 0.8 (11500), 0.925 (15500, the last 4000 without TREAD).
CONTINUED = (
    ("transformer2", 4000, 5e-4, ()),
    ("transformer3", 2500, 3e-4, ()),
    ("transformer4", 4000, 3e-4, ("tread.probability=0",)),
)
# Then rounds of VAE training, each followed by the last transformer stage adapted to the new latents: the VAE's
# encoder and decoder together on whole 33-frame clips from the previous round's VAE, latent statistics kept
# (cosine schedules: steps, peak learning rate), then a transformer stage continued on the re-cached latents
# (stage name, steps, peak learning rate, further overrides). Each round's stages are vae_SUFFIX, components_SUFFIX
# and the transformer stage.
JOINT = (
    ("joint", ((1500, 2e-4), (3000, 2e-4)), ("transformer5", 3000, 3e-4, ("tread.probability=0",))),
    ("joint2", ((3000, 2e-4),), ("transformer6", 3000, 3e-4, ("tread.probability=0",))),
)
# Then the transformer once more on clips of the same labels with less size and place variation
# (`NARROW`), so that the mean clip of a caption keeps its shape: T2V shape 0.50 -> 0.80, I2V 0.65 -> 0.775.
NARROW_STAGE = ("transformer7", 3000, 3e-4, ("tread.probability=0",))
# Last, the VAE gets a normalisation of its own for latent frame 0 (components_f0: frame 0 is encoded alone, so its
# normalised std was 0.41 against 0.53-0.67 for the other frames; BENCHMARKS.md, "where frame 0 goes wrong"), and one
# stage from the narrow one on latents cached with it, latent frame 0 still weighted 4 in the loss (of the three
# variants measured, pair and weight together gave frame 0 from text most often), also teaches conditions beyond the
# first frame (last frame, first + last, keyframes, a clip prefix for `motif-video extend`) with the I2V pattern
# sampler (training.i2v) on half the steps; a last stage continues it.
FINAL_STAGE = ("transformer8", 4000, 3e-4, (
    "tread.probability=0", "objective.first_frame_weight=4", "i2v.probability=0.5", "i2v.max_prefix=3",
    "i2v.max_keyframes=3", "i2v.patterns={first: 0.3, last: 0.15, first_last: 0.2, keyframes: 0.15, prefix: 0.2}",
))  # fmt: skip
# Then the same stage once more with latent frame 0 weighted 8, on a lower learning rate.
LAST_STAGE = ("transformer9", 4000, 2e-4, (*FINAL_STAGE[3], "objective.first_frame_weight=8"))
# Last, the decoder alone on whole clips, half the steps with one latent frame replaced by a keyframe's still
# group (BENCHMARKS.md, "what limits a keyframe's PSNR"), on cosine schedules of (steps, peak learning rate), each
# from the last: the second added 0.3-0.4 dB at a generated last frame and keyframe, 0.1 on plain clips' frames.
KEYFRAME_DECODER = dict(frames=33, crop=0, batch_size=1, first_frame_weight=1.0, still_group_probability=0.5)
KEYFRAME_SCHEDULES = ((1000, 1e-4), (2000, 1e-4), (3000, 1e-4))
# Last, one more stage from the last one, on the narrow clips and growing scenes seen later in their growth (a
# larger object growing on, towards the frame's edges: `clips.write_grown_clips`, GROWN), with the last stage's
# settings at a lower learning rate. The transformer had only seen growth from the small start size, so a 4x
# extension's later windows, conditioned on a large object, shrank it and grew it again (4x extension of the test
# split's seen growing prompts: 1 of 4 read as growing -> 4 of 4; BENCHMARKS.md, "Growth past one clip"). Advanced
# up to 3 clip lengths (objects covering the frame) it lost colour in some frames (validation T2V held out, every
# frame's colour 0.95 -> 0.725); up to 1.25 it keeps it (0.825, per frame 0.986). The shipped one ran on 2 threads.
GROWN = (300, 7, (0.25, 1.25))  # clips, scene seed, clip lengths advanced
GROW_STAGE = ("transformer10", 1500, 1e-4, LAST_STAGE[3])
STAGES = (
    "vae",
    "vae_decoder",
    "vae_first_frame",
    "components",
    "clips",
    "transformer",
    *(name for name, *_ in CONTINUED),
    *(part for suffix, _, (name, *_) in JOINT for part in (f"vae_{suffix}", f"components_{suffix}", name)),
    "clips_narrow",
    NARROW_STAGE[0],
    "components_f0",
    FINAL_STAGE[0],
    LAST_STAGE[0],
    "components_keyframes",
    "clips_grown",
    GROW_STAGE[0],
    "assemble",
)
DECODER_STOP = 3000  # the shipped VAE's decoder fine-tune ran this many steps of its 3000-step schedule
GENERATION = {
    "height": 64,
    "width": 64,
    "num_frames": 33,
    "num_inference_steps": 20,
    "shift": 3.0,  # for I2V too (a folder's scheduler config counts as its text-to-video pipeline's)
    "negative_prompt": "",
    "conditioning_blur": load_config(HERE / "config.yaml").i2v.blur_strength,  # I2V blur as trained
    "keep_first_frame": True,  # I2V: the video starts on the image (26.5 dB where the model alone gives 23.9)
    "repaint_first_frame": True,  # T2V: frame 0 from pixel frame 1 (text-drawn frame 0 reads right in 0.65-0.85)
    "decoder_fit_steps": 50,  # and refined through the decoder (the encoder turns some frames the wrong colour)
    "extend_condition_guidance": 10.0,  # extension windows follow their prefix (seams 2.5-4.2 -> 1.5-1.8x the median)
    "trained_sizes": [[64, 64]],  # every stage's clips are 64x64: generate warns at other sizes
    "fps": round(
        load_config(HERE / "config.yaml").data.fps
    ),  # the clips' rate as trained: motion at its pace
}


def write_grown_stage_clips(folder: Path, clips: int, held_out) -> None:
    """`GROW_STAGE`'s clips: the narrow clips (as `clips_narrow`) and the `GROWN` growing scenes seen later."""
    count, seed, advance_range = GROWN
    write_clips(folder, clips, ranges=NARROW, exclude=held_out)
    write_grown_clips(folder, count, seed, ranges=NARROW, exclude=held_out, advance_range=advance_range)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output", type=Path, default=Path("runs/small"))
    parser.add_argument("--clips", type=int, default=1200)
    add_stage_options(parser, STAGES)
    parser.add_argument(
        "--ship", action="store_true", help="write the result into src/motif_video/assets/small"
    )
    parser.add_argument(
        "--shift",
        type=float,
        default=GENERATION["shift"],
        help="sampling shift (scheduler and generation configs)",
    )
    parser.add_argument(
        "--guidance-scale",
        type=float,
        default=1.0,
        help="APG scale stored in the guider config (1: chosen on the validation split with the first-frame repaint; "
        "2 drew frame 0 wrong more often, 4 overshot)",
    )
    parser.add_argument(
        "--no-hold-out",
        action="store_true",
        help="train on every label combination, the evaluation's held-out ones included "
        "(motif_video.evaluation.split; the shipped model was built so, before the split existed)",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        help="transformer recipe overrides for every transformer stage, e.g. max_steps=100",
    )
    return parser.parse_args(argv)


def add_stage_options(parser: argparse.ArgumentParser, names: tuple[str, ...]) -> None:
    """`--skip`, `--only` and `--resume`, which `Stages` reads."""
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--skip", nargs="*", default=[], choices=names)
    which.add_argument(
        "--only",
        nargs="+",
        default=[],
        choices=names,
        metavar="STAGE",
        help="run these stages alone, their inputs taken from earlier runs",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="skip the stages OUTPUT/timings.json records as finished; a transformer stage cut short goes on from "
        "its newest checkpoint (the trainer's own resume)",
    )


class Stages:
    """Stage bookkeeping for a build: each stage skipped when named in `--skip` or left out of `--only` (or, with
    `--resume`, when OUTPUT/timings.json records it as finished), its wall-clock seconds written to
    OUTPUT/timings.json once it has finished; transformer stages from `config.yaml` with the build's and the command
    line's overrides."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.out = args, args.output
        self.timings_path = self.out / "timings.json"
        self.timings = json.loads(self.timings_path.read_text()) if self.timings_path.is_file() else {}
        self.overrides: list[str] = []  # every transformer stage's, set by the first one
        self.held_out = () if args.no_hold_out else HELD_OUT  # label combinations the evaluation holds out

    def stage(self, name: str, fn) -> None:
        if name in self.args.skip or (self.args.only and name not in self.args.only):
            return
        if self.args.resume and name in self.timings:
            print(f"{name}: finished before ({self.timings[name]} s), skipped", flush=True)
            return
        start = time.perf_counter()
        fn()
        self.timings[name] = round(time.perf_counter() - start, 1)
        self.out.mkdir(parents=True, exist_ok=True)
        self.timings_path.write_text(json.dumps(self.timings, indent=2) + "\n")
        print(f"{name}: {self.timings[name]} s", flush=True)

    def vae_stage(self, name: str, train_fn, latents: Path) -> None:
        """A VAE stage: it makes the latent cache written with the previous VAE stale."""

        def run():
            shutil.rmtree(latents, ignore_errors=True)
            train_fn()

        self.stage(name, run)

    def config(self, *more: str):
        return load_config(HERE / "config.yaml", [*self.overrides, *more, *self.args.overrides])

    def continued(self, name: str, previous: str | Path, steps: int, lr: float, extra=()) -> None:
        """A transformer stage on a new cosine schedule from the EMA weights of stage `previous`, or from the
        transformer folder `previous` where it is a Path."""
        pretrained = previous if isinstance(previous, Path) else self.out / previous / "transformer-ema"
        more = [f"output_dir={self.out / name}", f"model.pretrained={pretrained}", f"max_steps={steps}",
                f"optim.lr={lr}", *extra]  # fmt: skip
        self.stage(name, lambda: train(self.config(*more)))


class Build(Stages):
    """The shipped small model's stages in order."""

    def vaes_and_data(self) -> None:
        out, args = self.out, self.args
        self.vae_stage("vae", lambda: print(train_vae(VaeTrainConfig(), out / "vae")), out / "cache")

        def decoder(**schedule):  # the decoder (encoder and latents kept) on whole 33-frame clips, batch 1
            return lambda: print(
                finetune_decoder(out / "vae", out / "vae", frames=33, crop=0, batch_size=1, **schedule)
            )

        self.stage("vae_decoder", decoder(steps=3000, lr=3e-4, stop_at=DECODER_STOP))
        # the decoder again, with single frames (the I2V conditioning frame) weighted in
        self.stage("vae_first_frame", decoder(steps=2000, lr=2e-4, first_frame_weight=1.0))
        self.stage(
            "components",
            lambda: write_components(
                out / "components", out / "vae", shift=args.shift, guidance_scale=args.guidance_scale
            ),
        )
        self.stage(
            "clips",
            lambda: write_clips(
                out / "clips", args.clips, frames=33, height=64, width=64, fps=16, exclude=self.held_out
            ),
        )

    def first_transformer(self) -> None:
        out = self.out
        self.overrides = [
            f"output_dir={out / 'transformer'}",
            f"model.components={out / 'components'}",
            f"data.path={out / 'clips'}",
            f"data.cache={out / 'cache'}",
        ]
        self.stage("transformer", lambda: train(self.config()))

    def joint_round(self, suffix: str, schedules, vae: Path) -> tuple[Path, Path]:
        """A round's VAE (encoder and decoder from the previous round's `vae`, latent statistics kept) and its
        components folder (the first one's, with that VAE); returns both folders."""
        out = self.out
        target, components = out / f"vae_{suffix}", out / f"components_{suffix}"

        def train_vae_round():
            for i, (steps, lr) in enumerate(schedules):  # the first from `vae`, the rest from `target`
                print(finetune_decoder(target if i else vae, target, frames=33, crop=0, batch_size=1,
                                       steps=steps, lr=lr, train_encoder=True, keep_latent_stats=True,
                                       first_frame_weight=1.0))  # fmt: skip

        def copy_components():
            shutil.rmtree(components, ignore_errors=True)
            shutil.copytree(out / "components", components, ignore=shutil.ignore_patterns("vae"))
            shutil.copytree(target, components / "vae")

        self.vae_stage(f"vae_{suffix}", train_vae_round, out / f"cache_{suffix}")
        self.stage(f"components_{suffix}", copy_components)
        return target, components

    def transformers(self) -> tuple[str, Path]:
        """Every transformer stage after the first; returns the last stage's name and its components folder."""
        out, previous = self.out, "transformer"
        for name, steps, lr, extra in CONTINUED:
            self.continued(name, previous, steps, lr, extra)
            previous = name
        vae, components = out / "vae", out / "components"
        for suffix, schedules, (name, steps, lr, extra) in JOINT:
            vae, components = self.joint_round(suffix, schedules, vae)
            new_latents = (
                f"model.components={components}",
                f"data.cache={out / f'cache_{suffix}'}",
            )  # re-cached
            self.continued(name, previous, steps, lr, (*new_latents, *extra))
            previous = name
        self.stage(
            "clips_narrow",
            lambda: write_clips(out / "clips_narrow", self.args.clips, ranges=NARROW, exclude=self.held_out),
        )

        def on_narrow_clips(stage, previous: str, components: Path, cache: str) -> None:
            """A stage of `NARROW_STAGE`'s form continued from `previous` on the narrow clips, cached in `cache`."""
            name, steps, lr, extra = stage
            data = (f"model.components={components}", f"data.path={out / 'clips_narrow'}",
                    f"data.cache={out / cache}")  # fmt: skip
            self.continued(name, previous, steps, lr, (*data, *extra))

        on_narrow_clips(NARROW_STAGE, previous, components, "cache_narrow")
        components_f0 = out / "components_f0"

        def first_frame_components():
            shutil.rmtree(components_f0, ignore_errors=True)
            shutil.copytree(components, components_f0)
            add_first_frame_stats(components_f0 / "vae")

        self.vae_stage("components_f0", first_frame_components, out / "cache_f0")
        on_narrow_clips(FINAL_STAGE, NARROW_STAGE[0], components_f0, "cache_f0")
        on_narrow_clips(LAST_STAGE, FINAL_STAGE[0], components_f0, "cache_f0")
        components = self.keyframe_decoder(components_f0)
        self.stage(
            "clips_grown",
            lambda: write_grown_stage_clips(out / "clips_grown", self.args.clips, self.held_out),
        )
        name, steps, lr, extra = GROW_STAGE
        data = (f"model.components={components}", f"data.path={out / 'clips_grown'}",
                f"data.cache={out / 'cache_grown'}")  # fmt: skip
        self.continued(name, LAST_STAGE[0], steps, lr, (*data, *extra))
        return name, components

    def keyframe_decoder(self, components: Path) -> Path:
        """`components` with the decoder fine-tuned on clips whose latent frames are now and then a keyframe's still
        group (`finetune_decoder`'s still_group_probability); the encoder, and so every latent and cache, is kept."""
        target = self.out / "components_keyframes"

        def run():
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(components, target)
            for steps, lr in KEYFRAME_SCHEDULES:
                print(
                    finetune_decoder(target / "vae", target / "vae", steps=steps, lr=lr, **KEYFRAME_DECODER)
                )

        self.stage("components_keyframes", run)
        return target

    def assemble(self, last: str, components: Path) -> None:
        target = Path("src/motif_video/assets/small") if self.args.ship else self.out / "model"
        transformer = self.out / last / "transformer-ema"
        generation = {**GENERATION, "shift": self.args.shift}
        self.stage("assemble", lambda: assemble(target, components, transformer, generation))


def main(argv: list[str] | None = None) -> None:
    build = Build(parse_args(argv))
    build.vaes_and_data()
    build.first_transformer()
    build.assemble(*build.transformers())
    print(json.dumps(build.timings))


if __name__ == "__main__":
    main()
