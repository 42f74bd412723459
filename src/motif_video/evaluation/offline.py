"""`motif-video eval` on a model trained on procedural scenes: generate the suite, read each clip, score it.

For every (case, seed): text-to-video from the caption, and (unless disabled) image-to-video from the case's
ground-truth first frame. Each clip is read by `analysis.read_clip`; accuracies are the fraction of clips whose
read label equals the prompt's. I2V adds first-frame PSNR against the condition image. Timing covers the
pipeline call (sampling + VAE decode), not loading.
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

from .analysis import psnr_uint8, read_clip
from .suite import SUITE_SEED, prompt_suite


@dataclass
class OfflineEvalConfig:
    model: str = "small"
    prompts: int = 20
    seeds: int = 2
    steps: int | None = None  # None: the model's generation_config.json
    height: int | None = None
    width: int | None = None
    num_frames: int | None = None
    guidance_scale: float | None = None
    cache_threshold: float = 0.0  # step cache (First Block Cache) threshold; 0 = off
    fp8: str | None = None  # None, "weight_only" or "dynamic" (torchao)
    i2v: bool = True
    suite_seed: int = SUITE_SEED
    threads: int = 0  # torch CPU threads; 0 = leave as is


@contextlib.contextmanager
def step_cache_on(transformer: torch.nn.Module, threshold: float) -> Iterator[Any]:
    """Pass a fresh `StepCache` branch to every transformer call (a kwargs forward pre-hook), reset per video."""
    if threshold <= 0:
        yield None
        return
    from ..perf.step_cache import StepCache

    cache = StepCache(threshold)

    def hook(module, args, kwargs):
        return args, {**kwargs, "step_cache": cache.branch("batch")}

    handle = transformer.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield cache
    finally:
        handle.remove()


def _score(readings: list[tuple[dict, dict]]) -> dict[str, float]:
    def accuracy(key: str, truth_key: str | None = None) -> float:
        return sum(read[key] == truth[truth_key or key] for read, truth in readings) / len(readings)

    return {
        "color_accuracy": accuracy("colour"),
        "shape_accuracy": accuracy("shape"),
        "direction_accuracy": accuracy("motion"),
        "background_accuracy": accuracy("background"),
    }


def run_offline_eval(config: OfflineEvalConfig, log=print) -> dict[str, Any]:
    """Generate and score the suite; returns one flat dict of figures (T2V keys bare, I2V keys prefixed i2v_)."""
    from ..model_defaults import generation_defaults
    from ..pipelines import MotifVideoImageToVideoPipeline, MotifVideoPipeline

    if config.seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {config.seeds}")
    if config.threads:
        torch.set_num_threads(config.threads)
    defaults = generation_defaults(config.model)
    steps = config.steps or defaults["steps"]
    height, width = config.height or defaults["height"], config.width or defaults["width"]
    frames = config.num_frames or defaults["num_frames"]
    negative = defaults.get("negative_prompt")
    t2v = MotifVideoPipeline.from_pretrained(config.model, dtype=torch.float32)
    if config.fp8:
        from ..perf.fp8 import quantize_fp8

        try:
            quantize_fp8(t2v.transformer, config.fp8)
        except ImportError as exc:  # torchao missing or unusable here: a user error, not a crash
            raise ValueError(str(exc)) from exc
    # from_pipe keeps the folder's generation defaults (the I2V blur and first-frame settings it was trained for)
    i2v = MotifVideoImageToVideoPipeline.from_pipe(t2v) if config.i2v else None
    cases = prompt_suite(config.prompts, config.suite_seed)
    results: dict[str, list] = {"t2v": [], "i2v": []}
    seconds: list[float] = []
    first_psnr: list[float] = []
    flicker: dict[str, list[float]] = {"t2v": [], "i2v": []}
    skipped = 0
    calls = 0
    common = dict(
        height=height,
        width=width,
        num_frames=frames,
        num_inference_steps=steps,
        guidance_scale=config.guidance_scale,
        negative_prompt=negative,
        output_type="np",
        guidance_batching="batched",
    )
    with step_cache_on(t2v.transformer, config.cache_threshold) as cache:
        for case in cases:
            truth = {
                "colour": case.scene.colour,
                "shape": case.scene.shape,
                "motion": case.scene.motion,
                "background": case.scene.background,
            }
            for seed in range(config.seeds):
                for mode, pipe in (("t2v", t2v), ("i2v", i2v)):
                    if pipe is None:
                        continue
                    extra: dict[str, Any] = {}
                    if mode == "i2v":
                        import PIL.Image

                        condition = case.first_frame(height, width, frames)
                        extra["image"] = PIL.Image.fromarray(condition)
                    generator = torch.Generator("cpu").manual_seed(seed)
                    start = time.perf_counter()
                    video = pipe(prompt=case.prompt, generator=generator, **common, **extra).frames[0]
                    seconds.append(time.perf_counter() - start)
                    if cache is not None:
                        report = cache.report().get("batch")
                        calls += report.calls if report else 0
                        skipped += len(report.skipped) if report else 0
                        cache.reset()
                    clip = np.round(np.clip(video, 0, 1) * 255).astype(np.uint8)
                    reading = read_clip(clip)
                    results[mode].append((reading.labels(), truth))
                    flicker[mode].append(reading.flicker)
                    if mode == "i2v":
                        first_psnr.append(psnr_uint8(clip[0], condition))
            log(f"{case.prompt}: {results['t2v'][-1][0]}")
    figures: dict[str, Any] = {**_score(results["t2v"]), "temporal_flicker": statistics.mean(flicker["t2v"])}
    if i2v is not None:
        figures.update({f"i2v_{k}": v for k, v in _score(results["i2v"]).items()})
        figures["i2v_first_frame_psnr"] = statistics.mean(first_psnr)
        figures["i2v_temporal_flicker"] = statistics.mean(flicker["i2v"])
    figures.update(
        {
            "videos": len(seconds),
            "seconds_per_video": statistics.median(seconds),
            "steps": steps,
            "size": [frames, height, width],
            "cache_threshold": config.cache_threshold,
            "cache_skipped_fraction": skipped / calls if calls else 0.0,
            "fp8": config.fp8 or "off",
            "model": config.model,
            "prompts": config.prompts,
            "seeds": config.seeds,
            "threads": torch.get_num_threads(),
        }
    )
    return figures
