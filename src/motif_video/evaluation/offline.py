"""`motif-video eval` on a model trained on procedural scenes: generate the suite, read every frame, score it.

For every (case, seed): text-to-video from the caption, and (unless disabled) image-to-video from the case's
ground-truth first frame. The suite (`suite.eval_suite`) has `prompts` cases of label combinations seen in training
and `prompts` of held-out ones, scored separately (`scores.figures`: per clip, per frame, frame 0;
`scores.by_combination`: a few of them per label combination, under `by_combination`). I2V adds first-frame PSNR
against the condition image. `seconds_per_video` is the run's wall time (loading included) over
the videos it made; `generate_seconds_per_video` the pipeline calls alone (sampling + VAE decode). One progress bar
counts the videos; the pipelines' per-step bars are off.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..bounds import at_least, check_keys
from ..defaults import check_condition_guidance
from ..interop.lora_spec import parse_lora_spec
from ..options import check_video_size
from .analysis import psnr_uint8, read_clip
from .scores import by_combination, figures
from .suite import GROUPS, SPLITS, eval_suite

# the numeric settings' allowed values, as the command's flags declare them (`commands.numbers`)
RANGES = {
    "steps": at_least(1),
    "threads": at_least(0),
    "cache_threshold": at_least(0),
    "seeds": at_least(1),
    "prompts": at_least(1),
}


@dataclass
class OfflineEvalConfig:
    model: str = "small"
    prompts: int = 20  # per group (seen, held out)
    seeds: int = 2
    split: str = "test"  # "test" (reported) or "validation" (for choosing between builds)
    steps: int | None = None  # None: the model's generation_config.json
    height: int | None = None
    width: int | None = None
    num_frames: int | None = None
    guidance_scale: float | None = None
    repaint_first_frame: bool | None = None  # None: the model's generation_config.json
    condition_guidance: float | None = (
        None  # I2V reconstruction guidance; None: the model's generation_config.json
    )
    cache_threshold: float = 0.0  # step cache (First Block Cache) threshold; 0 = off
    fp8: str | None = None  # None, "weight_only" or "dynamic" (torchao)
    i2v: bool = True
    threads: int = 0  # torch CPU threads; 0 = leave as is
    progress: bool = True  # one bar over all videos (stderr)
    lora: tuple[
        str, ...
    ] = ()  # LoRAs as PATH[:SCALE] (`pipelines.lora.apply_loras`), so their effect is measured
    fuse_lora: bool = False

    def validate(self) -> OfflineEvalConfig:
        """Checks what can be checked before any model loads (a size a model cannot take among them)."""
        check_video_size(self.width, self.height, self.num_frames)
        check_keys(self, RANGES)
        if self.split not in SPLITS:
            raise ValueError(f"split {self.split!r} is not one of {list(SPLITS)}")
        if self.condition_guidance is not None:
            check_condition_guidance(self.condition_guidance)
        if self.fuse_lora and not self.lora:
            raise ValueError("fuse_lora (--fuse-lora) needs at least one lora (--lora PATH[:SCALE])")
        for spec in self.lora:
            parse_lora_spec(spec)
        return self


@contextlib.contextmanager
def step_cache_on(transformer: torch.nn.Module, threshold: float) -> Iterator[Any]:
    """The transformer's step cache (First Block Cache) at `threshold` for the block; None when 0 (off). After each
    video `transformer.cache_report()` holds that video's calls and skipped steps per guidance pass."""
    if threshold <= 0:
        yield None
        return
    from diffusers.hooks import FirstBlockCacheConfig

    transformer.enable_cache(FirstBlockCacheConfig(threshold=threshold))
    try:
        yield transformer
    finally:
        transformer.disable_cache()


def _load(config: OfflineEvalConfig):
    """The suite's pipelines (text-to-video, and image-to-video if `config.i2v`) and the LoRA the model folder
    brought (its `lora/`, or None), torch set to `config.threads` first: every suite run by `motif-video eval --threads N` samples on N threads, whose sums round differently from
    another count's (and from torch's default, even at the same count), enough to move a long extension's figures."""
    from ..pipelines import MotifVideoImageToVideoPipeline, MotifVideoPipeline

    if config.threads:
        torch.set_num_threads(config.threads)
    t2v = MotifVideoPipeline.from_pretrained(config.model, dtype=torch.float32)
    if config.fp8:
        from ..perf.fp8 import quantize_fp8

        try:
            quantize_fp8(t2v.transformer, config.fp8)
        except ImportError as exc:  # torchao missing or unusable here: a user error, not a crash
            raise ValueError(str(exc)) from exc
    # a training output or student that is a LoRA on its base loads it as its own transformer's adapter
    model_lora = f"{config.model}/lora" if getattr(t2v.transformer, "peft_config", None) else None
    if config.lora:
        from ..pipelines.lora import apply_loras

        apply_loras(t2v, config.lora, config.fuse_lora)
    # from_pipe keeps the folder's generation defaults (the I2V blur and first-frame settings it was trained for)
    i2v = MotifVideoImageToVideoPipeline.from_pipe(t2v) if config.i2v else None
    for pipe in (t2v, i2v):
        if pipe is not None:
            pipe.set_progress_bar_config(disable=True)
    return t2v, i2v, model_lora


def run_offline_eval(config: OfflineEvalConfig) -> dict[str, Any]:
    """Generate and score the suite. Returns {"t2v": {group: figures}, "i2v": {group: figures + first_frame_psnr},
    and the run's settings and timings}."""
    from tqdm.auto import tqdm

    from ..defaults import model_defaults

    config.validate()
    start = time.perf_counter()
    defaults = model_defaults(config.model)
    steps = config.steps or defaults.num_inference_steps
    height, width = config.height or defaults.height, config.width or defaults.width
    frames = config.num_frames or defaults.num_frames
    t2v, i2v, model_lora = _load(config)
    load_seconds = time.perf_counter() - start
    cases = eval_suite(config.prompts, config.split)
    modes = [("t2v", t2v)] + ([("i2v", i2v)] if i2v is not None else [])
    readings: dict[str, dict[str, list]] = {mode: {g: [] for g in GROUPS} for mode, _ in modes}
    first_psnr: dict[str, list[float]] = {g: [] for g in GROUPS}
    generate_seconds = 0.0
    skipped = calls = 0
    common = dict(
        height=height,
        width=width,
        num_frames=frames,
        num_inference_steps=steps,
        guidance_scale=config.guidance_scale,
        repaint_first_frame=config.repaint_first_frame,
        negative_prompt=defaults.negative_prompt,
        output_type="np",
        guidance_batching="batched",
    )
    bar = tqdm(
        total=len(cases) * config.seeds * len(modes), desc="eval", unit="video", disable=not config.progress
    )
    with bar, step_cache_on(t2v.transformer, config.cache_threshold) as cache:
        for case in cases:
            for seed in range(config.seeds):
                for mode, pipe in modes:
                    extra: dict[str, Any] = {}
                    if mode == "i2v":
                        import PIL.Image

                        condition = case.first_frame(height, width, frames)
                        extra["image"] = PIL.Image.fromarray(condition)
                        extra["condition_guidance"] = config.condition_guidance
                    generator = torch.Generator("cpu").manual_seed(seed)
                    called = time.perf_counter()
                    video = pipe(prompt=case.prompt, generator=generator, **common, **extra).frames[0]
                    generate_seconds += time.perf_counter() - called
                    if cache is not None:
                        for report in cache.cache_report().values():
                            calls += report.calls
                            skipped += len(report.skipped)
                    clip = np.round(np.clip(video, 0, 1) * 255).astype(np.uint8)
                    readings[mode][case.group].append((read_clip(clip), case.scene))
                    if mode == "i2v":
                        first_psnr[case.group].append(psnr_uint8(clip[0], condition))
                    bar.update()
    videos = sum(len(pairs) for by_group in readings.values() for pairs in by_group.values())
    result: dict[str, Any] = {}
    for mode, by_group in readings.items():
        result[mode] = {
            group: {**figures(pairs), "by_combination": by_combination(pairs)}
            for group, pairs in by_group.items()
        }
        if mode == "i2v":
            for group in GROUPS:
                result[mode][group]["first_frame_psnr"] = statistics.mean(first_psnr[group])
    result.update(
        {
            "videos": videos,
            "seconds_per_video": (time.perf_counter() - start) / videos,
            "generate_seconds_per_video": generate_seconds / videos,
            "load_seconds": load_seconds,
            "split": config.split,
            "prompts_per_group": config.prompts,
            "seeds": config.seeds,
            "steps": steps,
            "size": [frames, height, width],
            "cache_threshold": config.cache_threshold,
            "cache_skipped_fraction": skipped / calls if calls else 0.0,
            "fp8": config.fp8 or "off",
            **defaults.resolve(
                repaint_first_frame=config.repaint_first_frame,
                decoder_fit_steps=None,
                condition_guidance=config.condition_guidance,
            ),
            "model": config.model,
            "model_lora": model_lora,
            "lora": list(config.lora),
            "threads": torch.get_num_threads(),
        }
    )
    return result


def flatten(result: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"t2v": {"seen": {"colour": 1.0}}} -> {"t2v.seen.colour": 1.0}; a `by_combination` table stays one value."""
    flat: dict[str, Any] = {}
    for key, value in result.items():
        if isinstance(value, dict) and key != "by_combination":
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
