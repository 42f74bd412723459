"""Scores of conditions beyond the first frame (`motif-video eval --conditions`): per pattern, how closely the
generated video shows the given frames, and for video extension how visible the seams are.

Patterns, each from the case's ground-truth clip (`synthetic.scenes.render`) at the model's size:

    first       the clip's frame 0 as the first image
    last        its last frame as `last_image`
    first_last  both
    keyframe    its middle frame (F // 2) as a keyframe
    prefix      its first 4m + 1 frames (the extension overlap) as a clip at frame 0

`psnr` is the mean PSNR (dB) of the generated frames at the conditioned pixel frames against the given ones; the
prompt accuracies (colour, shape, direction, ... `scores.figures`) are of the whole generated clips.

Extension (`--extend K`): the ground-truth clip's first F frames extended to K * F frames with
`extension.extend_frames` (the same windows as `motif-video extend`), then the prompt accuracies over the whole
video and the seam: the largest frame-to-frame change (mean absolute difference, 0-255) inside each window
boundary's transition (from the frame before its cross-fade to the cross-fade's last frame: over the overlap, or
with `crossfade` > 0 over the generated frames after it) over the median frame-to-frame change elsewhere.
`seam_ratio` is the mean over boundaries, `seam_ratio_max` the worst; 1 means a boundary changes as much as an
ordinary frame step. Being the largest of several changes, a boundary's figure is above 1 even where nothing happens
there: `seam_ratio_inside` is the same figure for stretches of as many changes inside the windows (each run of
changes outside the boundaries cut into such stretches, the mean over them), what a boundary with no seam scores.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..extension import fade_span

PATTERNS = ("first", "last", "first_last", "keyframe", "prefix")


def check_patterns(patterns: Sequence[str]) -> None:
    if not patterns:
        raise ValueError(f"name at least one pattern of {list(PATTERNS)}")
    for p in patterns:
        if p not in PATTERNS:
            raise ValueError(f"pattern must be one of {list(PATTERNS)}, got {p!r}")


def frame_changes(video: np.ndarray) -> np.ndarray:
    """Mean absolute change (0-255) between consecutive frames of uint8 [N, H, W, 3]: N - 1 values."""
    v = video.astype(np.float32)
    return np.abs(v[1:] - v[:-1]).mean(axis=(1, 2, 3))


def seam_scores(
    video: np.ndarray, starts: Sequence[int], overlap: int, crossfade: int = 0
) -> dict[str, float]:
    """Seam ratios of a video whose windows start at each index in `starts` (`extension.ExtensionPlan`): the frames
    where two windows mix are s + first .. s + first + count - 1 (`extension.fade_span`: the overlap, or with a
    cross-fade the generated frames after it); change i (frame i to i + 1) belongs to the boundary when it enters,
    crosses or leaves them."""
    offset, count = fade_span(overlap, crossfade)
    changes = frame_changes(video)
    at_seam: set[int] = set()
    ratios_of: list[float] = []
    for s in starts:
        idx = [i for i in range(s + offset - 1, s + offset + count) if 0 <= i < len(changes)]
        at_seam.update(idx)
        ratios_of.append(max(changes[i] for i in idx))
    inside = [c for i, c in enumerate(changes) if i not in at_seam]
    median = float(np.median(inside)) if inside else float("nan")
    ratios = [float(r) / median if median > 0 else float("inf") for r in ratios_of]
    stretches = inside_stretches([i for i in range(len(changes)) if i not in at_seam], count + 1)
    inside_ratios = [float(max(changes[i] for i in span)) / median for span in stretches if median > 0]
    return {
        "seam_ratio": statistics.mean(ratios),
        "seam_ratio_max": max(ratios),
        "seam_ratio_inside": statistics.mean(inside_ratios) if inside_ratios else float("nan"),
        "median_change": median,
        "seam_change": statistics.mean(float(r) for r in ratios_of),
    }


def inside_stretches(indices: Sequence[int], length: int) -> list[list[int]]:
    """`indices` (sorted) cut into stretches of `length` consecutive ones, each run of consecutive indices from its
    start, a shorter rest left out."""
    stretches, run = [], []
    for i in [*indices, None]:
        if i is not None and run and i == run[-1] + 1:
            run.append(i)
            continue
        stretches += [run[k : k + length] for k in range(0, len(run) - length + 1, length)]
        run = [i] if i is not None else []
    return stretches


def pattern_call(pattern: str, truth: np.ndarray, overlap: int) -> tuple[dict[str, Any], list[int]]:
    """The pipeline keywords of `pattern` for the ground-truth clip uint8 [F, H, W, 3], and the pixel frames it
    conditions."""
    import PIL.Image

    from ..pipelines.conditions import VideoCondition

    f = len(truth)
    image = PIL.Image.fromarray
    if pattern == "first":
        return {"image": image(truth[0])}, [0]
    if pattern == "last":
        return {"last_image": image(truth[-1])}, [f - 1]
    if pattern == "first_last":
        return {"image": image(truth[0]), "last_image": image(truth[-1])}, [0, f - 1]
    if pattern == "keyframe":
        mid = f // 2
        return {"conditions": [VideoCondition(image=image(truth[mid]), frame_index=mid)]}, [mid]
    if pattern == "prefix":
        return {"conditions": [VideoCondition(video=truth[:overlap], frame_index=0)]}, list(range(overlap))
    raise ValueError(f"pattern must be one of {list(PATTERNS)}, got {pattern!r}")


def reads_overlap(patterns: Sequence[str], extend: int) -> bool:
    """Whether the suite runs the prefix pattern or an extension, the only two that read the overlap."""
    return "prefix" in patterns or extend >= 2


def suite_overlap(
    overlap: int | None, patterns: Sequence[str], extend: int, frames: int, crossfade: int
) -> int | None:
    """The overlap the suite's prefix pattern and extension run with: the one asked for, else the clip length's
    `condition_layout.default_overlap` (as `extend` takes it); as asked when neither of the two, the only ones that
    read it, is run."""
    from ..condition_layout import default_overlap

    if overlap is not None or not reads_overlap(patterns, extend):
        return overlap
    return default_overlap(frames, crossfade)


def run_condition_eval(
    pipe,
    cases: Sequence,
    seeds: int,
    common: dict[str, Any],
    patterns: Sequence[str] = PATTERNS,
    extend: int = 0,
    overlap: int | None = None,
    progress=None,
    crossfade: int = 0,
) -> dict[str, Any]:
    """Per pattern {psnr, prompt accuracies} over `cases` x `seeds` with the image-to-video `pipe` (`common`: height,
    width, num_frames, steps, ... of each call, output_type "np"); with `extend` >= 2, "extension" too, its windows
    cross-faded over `crossfade` generated frames (`extension.plan_extension`); `overlap` None: the clip length's
    `condition_layout.default_overlap`, as `extend` takes it."""
    import torch

    from ..extension import extend_frames, pipeline_window, plan_extension, window_guidance
    from ..synthetic.scenes import render
    from .analysis import psnr_uint8, read_clip, window_motions
    from .scores import figures

    check_patterns(patterns)
    h, w, f = common["height"], common["width"], common["num_frames"]
    overlap = suite_overlap(overlap, patterns, extend, f, crossfade)
    if reads_overlap(patterns, extend) and overlap >= f:
        raise ValueError(f"overlap ({overlap}) must be less than the clip's {f} frames")
    result: dict[str, Any] = {}
    for pattern in patterns:
        psnrs, readings = [], []
        for case in cases:
            truth = render(case.scene, f, h, w)
            extra, frames = pattern_call(pattern, truth, overlap)
            for seed in range(seeds):
                generator = torch.Generator("cpu").manual_seed(seed)
                video = pipe(prompt=case.prompt, generator=generator, **common, **extra).frames[0]
                clip = np.round(np.clip(video, 0, 1) * 255).astype(np.uint8)
                psnrs.append(statistics.mean(psnr_uint8(clip[i], truth[i]) for i in frames))
                readings.append((read_clip(clip), case.scene))
                if progress is not None:
                    progress()
        result[pattern] = {"psnr": statistics.mean(psnrs), **figures(readings)}
    if extend >= 2:
        seams, readings, windows = [], [], []
        call = {k: v for k, v in common.items() if k not in ("output_type",)}
        call["condition_guidance"] = window_guidance(pipe, call.get("condition_guidance"))  # as `extend` runs
        for case in cases:
            truth = render(case.scene, f, h, w)
            plan = plan_extension(f, extend * f, f, overlap, crossfade)
            for seed in range(seeds):
                frames: list[np.ndarray] = []
                make = pipeline_window(pipe, [case.prompt] * plan.windows, seed, overlap, **call)
                extend_frames(iter(truth), plan, make, frames.append)
                video = np.concatenate(frames)
                seams.append(seam_scores(video, plan.window_starts, overlap, crossfade))
                readings.append((read_clip(video), case.scene))
                if case.scene.motion != "grows":  # growth is read over the whole video only
                    windows.append(window_motions(video, scored_windows(plan), case.scene.motion))
                if progress is not None:
                    progress()
        result["extension"] = {
            "factor": extend,
            "crossfade": crossfade,
            "condition_guidance": call["condition_guidance"],
            **{
                k: statistics.mean(s[k] for s in seams)
                for k in ("seam_ratio", "median_change", "seam_change")
            },
            "seam_ratio_inside": _mean_of_known(s["seam_ratio_inside"] for s in seams),
            "seam_ratio_max": max(s["seam_ratio_max"] for s in seams),
            # each window's new frames read alone (`analysis.window_motions`; moving scenes): the share that move
            # the caption's way, and that share per window, first to last (None without a moving scene)
            "window_direction": statistics.mean(v for c in windows for v in c) if windows else None,
            "window_direction_by_window": [statistics.mean(v) for v in zip(*windows)] if windows else None,
            **figures(readings),
        }
    return result


def scored_windows(plan) -> list[tuple[int, int]]:
    """The new frames [a, b) of each window of an `extension.ExtensionPlan` that adds at least half a step (a last
    window of a few frames cannot show motion)."""
    return [
        (start + plan.shared, start + plan.shared + plan.new_frames(i))
        for i, start in enumerate(plan.window_starts)
        if plan.new_frames(i) >= plan.step / 2
    ]


def _mean_of_known(values) -> float | None:
    """The mean of the values that are not NaN; None (JSON null) when there are none."""
    known = [v for v in values if not np.isnan(v)]
    return statistics.mean(known) if known else None


def run_condition_suite(
    config,
    patterns: Sequence[str] = PATTERNS,
    extend: int = 0,
    overlap: int | None = None,
    crossfade: int = 0,
) -> dict[str, Any]:
    """`motif-video eval --conditions`: the offline suite's cases (`config`: an `offline.OfflineEvalConfig`, its I2V
    pipeline) scored per pattern (`run_condition_eval`), seen and held-out combinations apart; `overlap` None: the
    clip length's `condition_layout.default_overlap`."""
    import time

    import torch
    from tqdm.auto import tqdm

    from ..defaults import model_defaults
    from ..extension import plan_extension
    from .offline import _load
    from .suite import GROUPS, eval_suite

    config.validate()
    check_patterns(patterns)
    start = time.perf_counter()
    defaults = model_defaults(config.model)
    h, w = config.height or defaults.height, config.width or defaults.width
    f = config.num_frames or defaults.num_frames
    if extend == 1 or extend < 0:
        raise ValueError(f"extend must be 0 (off) or >= 2 (times the clip length), got {extend}")
    if crossfade and not extend:
        raise ValueError(
            f"--crossfade needs --extend (it joins extension windows), got crossfade {crossfade}"
        )
    overlap = suite_overlap(overlap, patterns, extend, f, crossfade)
    if extend:
        plan_extension(f, extend * f, f, overlap, crossfade)  # before loading: a bad overlap is an error now
    elif "prefix" in patterns and (overlap < 1 or (overlap - 1) % 4 or overlap >= f):
        raise ValueError(f"overlap must be 4m+1 frames and less than the clip's {f}, got {overlap}")
    config.i2v = True
    _, pipe, _ = _load(config)
    common = dict(height=h, width=w, num_frames=f, num_inference_steps=config.steps or defaults.num_inference_steps,
                  guidance_scale=config.guidance_scale, repaint_first_frame=config.repaint_first_frame,
                  negative_prompt=defaults.negative_prompt, output_type="np", guidance_batching="batched",
                  condition_guidance=config.condition_guidance)  # fmt: skip
    cases = eval_suite(config.prompts, config.split)
    total = len(cases) * config.seeds * (len(patterns) + (1 if extend >= 2 else 0))
    result: dict[str, Any] = {}
    with tqdm(total=total, desc="eval conditions", unit="video", disable=not config.progress) as bar:
        for group in GROUPS:
            mine = [c for c in cases if c.group == group]
            result[group] = run_condition_eval(
                pipe, mine, config.seeds, common, patterns, extend, overlap, bar.update, crossfade
            )
    result.update({"size": [f, h, w], "steps": common["num_inference_steps"], "seeds": config.seeds,
                   "prompts_per_group": config.prompts, "split": config.split, "model": config.model,
                   "overlap": overlap, "seconds": time.perf_counter() - start, "threads": torch.get_num_threads(),
                   **defaults.resolve(condition_guidance=config.condition_guidance)})  # fmt: skip
    if extend >= 2:  # the extension's windows run at the folder's extension default
        from ..extension import window_guidance

        result["extend_condition_guidance"] = window_guidance(pipe, config.condition_guidance)
    return result
