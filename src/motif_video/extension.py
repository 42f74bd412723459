"""Video extension: continue a clip window by window into a long video, streamed to one MP4.

Each window is one image-to-video call of `window` frames that shares its first `overlap + crossfade` frames with
the video made so far: its first `overlap` frames are conditioned on those frames of the video (a clip prefix,
`VideoCondition(video=..., frame_index=0)`), and its next `crossfade` frames are generated again over the video's last
`crossfade` frames. `overlap` is 4m + 1 pixel frames, so the prefix is exactly the window's first m + 1 latent frames
on the causal VAE's grouping (frame 0 alone, then groups of 4): the condition covers whole latent frames.

The shared frames are joined with a linear cross-fade. With `crossfade` = 0 it runs over the condition: weight
(j + 1) / (overlap + 1) on the window at overlap frame j, and the window's first generated frame follows at once.
With `crossfade` = k > 0 the video keeps its conditioned frames (the window's reconstruction of them is dropped) and
the fade runs over the k generated frames, weight (j + 1) / (k + 1) at crossfade frame j: whatever the window's
first generated frames get wrong (the step from a given prefix to the model's own frames) is seen at 1 / (k + 1) of
its size and then dissolves, at the price of k more frames per window (`step` = window - overlap - crossfade).

Memory does not grow with the length: the input clip is read frame by frame and copied to the output, and only the
last `overlap + crossfade` frames made so far are kept (the next window's condition and blend); each window's frames
go to the writer as soon as they are blended. The MP4 is written to a part file and renamed when complete.

Prompts: one per window (`prompts[i]` for window i; the last one repeats when there are fewer), so a prompt file
tells a story.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .bounds import within
from .condition_layout import DEFAULT_CROSSFADE, DEFAULT_OVERLAP, GROUP, default_overlap
from .defaults import GenerationDefaults
from .input_media import clip_rate, video_size


@dataclass(frozen=True)
class ExtensionPlan:
    """How a clip of `input_frames` becomes `total_frames`: `windows` calls of `window` frames, each sharing
    `overlap + crossfade` frames with the video so far and adding `window - overlap - crossfade` (the last one cut to
    the total)."""

    input_frames: int
    total_frames: int
    window: int
    overlap: int
    crossfade: int = 0

    @property
    def shared(self) -> int:
        """Frames a window shares with the video before it: the condition, then the generated cross-fade."""
        return self.overlap + self.crossfade

    @property
    def step(self) -> int:
        return self.window - self.shared

    @property
    def windows(self) -> int:
        return math.ceil((self.total_frames - self.input_frames) / self.step)

    @property
    def window_starts(self) -> list[int]:
        """The output frame each window's first frame lands on (its shared frames, then its new ones)."""
        return [self.input_frames - self.shared + i * self.step for i in range(self.windows)]

    def new_frames(self, i: int) -> int:
        """Frames window i adds after its shared ones."""
        return min(self.step, self.total_frames - self.input_frames - i * self.step)


def plan_extension(
    input_frames: int,
    total_frames: int,
    window: int,
    overlap: int | None = None,
    crossfade: int = DEFAULT_CROSSFADE,
) -> ExtensionPlan:
    """Check and plan an extension (`overlap` None: the window's `default_overlap`); ValueError naming the value
    otherwise."""
    if window < 1 or (window - 1) % GROUP:
        raise ValueError(f"window must be 4k+1 frames (the model's num_frames), got {window}")
    if not isinstance(crossfade, int) or crossfade < 0:
        raise ValueError(f"crossfade must be a whole number of frames >= 0, got {crossfade!r}")
    if overlap is None:
        overlap = default_overlap(window, crossfade)
    if overlap < 1 or (overlap - 1) % GROUP or overlap >= window:
        raise ValueError(
            f"overlap must be 4m+1 frames (1, 5, 9, ...: whole latent frames) and less than the window ({window}), "
            f"got {overlap}"
        )
    if overlap + crossfade >= window:
        raise ValueError(
            f"overlap + crossfade ({overlap} + {crossfade}) must be less than the window ({window} frames), so that "
            "each window adds new frames"
        )
    if input_frames < overlap + crossfade:
        needs = (
            f"the overlap needs at least {overlap}"
            if not crossfade
            else (f"the overlap and cross-fade need at least {overlap + crossfade}")
        )
        raise ValueError(f"the clip has {input_frames} frames; {needs}")
    if total_frames <= input_frames:
        raise ValueError(
            f"the requested length ({total_frames} frames) must be longer than the clip ({input_frames} frames)"
        )
    return ExtensionPlan(input_frames, total_frames, window, overlap, crossfade)


def fade_span(overlap: int, crossfade: int = 0) -> tuple[int, int]:
    """(first, count): which of a window's `overlap + crossfade` shared frames mix it with the video. crossfade 0:
    the condition itself (0, overlap); else the generated frames after it (overlap, crossfade)."""
    return (overlap, crossfade) if crossfade else (0, overlap)


def blend_weights(overlap: int, crossfade: int = 0) -> np.ndarray:
    """The new window's weight at each of its `overlap + crossfade` shared frames: 0 before the fade (`fade_span`;
    the video's frames kept), (j + 1) / (count + 1) at fade frame j. Rising from 0 towards 1, never reaching it."""
    first, count = fade_span(overlap, crossfade)
    ramp = (np.arange(count, dtype=np.float32) + 1) / (count + 1)
    return np.concatenate([np.zeros(first, dtype=np.float32), ramp])


def blend(previous: np.ndarray, new: np.ndarray, crossfade: int = 0) -> np.ndarray:
    """Cross-fade uint8 frames [S, H, W, 3] from `previous` into `new`, the last `crossfade` of the S shared frames
    being generated ones (`blend_weights`)."""
    w = blend_weights(len(previous) - crossfade, crossfade)[:, None, None, None]
    mixed = previous.astype(np.float32) * (1 - w) + new.astype(np.float32) * w
    return np.clip(mixed + 0.5, 0, 255).astype(np.uint8)


@contextmanager
def mp4_stream(path: str | os.PathLike, width: int, height: int, fps: float, crf: int = 18, metadata=None):
    """A function writing uint8 frames [N, H, W, 3] to an MP4 as they come (the stream of
    `pipelines.export.write_mp4`, `add_h264_stream`); the file appears at `path` only when the block ends without an
    error."""
    from fractions import Fraction

    import av

    from .pipelines.export import _new_part_file, add_h264_stream

    path = Path(path)
    tmp = _new_part_file(path)
    try:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            rate = Fraction(fps).limit_denominator(1001)
            stream = add_h264_stream(container, rate, width, height, crf, metadata)

            def write(frames: np.ndarray) -> None:
                for frame in frames:
                    container.mux(
                        stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24"))
                    )

            yield write
            container.mux(stream.encode())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def window_guidance(pipe, asked: float | None) -> float:
    """The reconstruction guidance scale of every window: the one asked for, else the model folder's
    `extend_condition_guidance`, else its `condition_guidance` (0 as released)."""
    defaults = pipe.generation_defaults
    scale = asked if asked is not None else defaults.extend_condition_guidance
    return defaults.resolve(condition_guidance=scale)["condition_guidance"]


def steps_in_all(pipe, windows: int = 1) -> int:
    """The steps of a run of `windows` windows (one for a video generated whole), as `pipe` counts each window's
    after its first sampling step: its sampling steps and its decoder fit's (`num_timesteps` and `num_fit_steps`).
    What the progress of `extend` over its windows and of the service's jobs counts to."""
    return windows * ((pipe.num_timesteps or 0) + (pipe.num_fit_steps or 0))


def window_prompts(prompts: str | Sequence[str], windows: int) -> list[str]:
    """The prompt of each window: prompts[i], the last repeating (one string: every window's)."""
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    if not prompts:
        raise ValueError("extension needs at least one prompt")
    return [prompts[min(i, len(prompts) - 1)] for i in range(windows)]


def extend_frames(
    frames: Iterator[np.ndarray],
    plan: ExtensionPlan,
    make_window: Callable[[int, np.ndarray], np.ndarray],
    write: Callable[[np.ndarray], None],
) -> int:
    """Copy the clip's frames to `write`, then add the plan's windows: `make_window(i, context)` returns window i's
    uint8 frames [window, H, W, 3] given its condition [overlap, H, W, 3] (the `overlap` frames before the video's
    last `crossfade`). Returns the frames written. Holds at most `overlap + crossfade` frames besides the window
    being made."""
    tail: list[np.ndarray] = []
    written = 0
    for frame in frames:
        tail.append(frame)
        if len(tail) > plan.shared:
            write(tail.pop(0)[None])
            written += 1
    if written + len(tail) != plan.input_frames:
        raise ValueError(f"the clip has {written + len(tail)} frames, planned for {plan.input_frames}")
    shared = np.stack(tail)
    for i in range(plan.windows):
        window = make_window(i, shared[: plan.overlap])
        if window.shape[0] != plan.window or window.dtype != np.uint8:
            raise ValueError(
                f"window {i} must be uint8 [{plan.window}, H, W, 3], got {window.dtype} {window.shape}"
            )
        joined = np.concatenate([blend(shared, window[: plan.shared], plan.crossfade), window[plan.shared :]])
        keep = plan.shared + plan.new_frames(i)
        joined = joined[:keep]
        if i == plan.windows - 1:
            write(joined)
            written += len(joined)
        else:
            write(joined[: -plan.shared])
            written += len(joined) - plan.shared
            shared = joined[-plan.shared :]
    return written


def pipeline_window(
    pipe, prompts: list[str], seed: int, overlap: int, **call: Any
) -> Callable[[int, np.ndarray], np.ndarray]:
    """`make_window` for `extend_frames` from an image-to-video pipeline: window i conditioned on the context frames
    as a clip prefix, seed `seed + i`, the other keywords (num_frames, height, width, steps, ...) passed on."""
    import torch

    from .pipelines.conditions import VideoCondition
    from .pipelines.export import to_uint8_frames

    def make_window(i: int, context: np.ndarray) -> np.ndarray:
        condition = VideoCondition(video=context[-overlap:], frame_index=0)
        out = pipe(prompt=prompts[i], conditions=[condition], output_type="np",
                   generator=torch.Generator("cpu").manual_seed(seed + i), **call).frames  # fmt: skip
        return to_uint8_frames(out[0])

    return make_window


def extend_video(
    pipe,
    clip: str | os.PathLike,
    output: str | os.PathLike,
    prompts: Sequence[str],
    seconds: float,
    overlap: int | None = None,
    seed: int = 0,
    num_frames: int | None = None,
    crossfade: int = DEFAULT_CROSSFADE,
    fps: float | None = None,
    metadata: dict | None = None,
    height: int | None = None,
    width: int | None = None,
    **call: Any,
) -> dict[str, Any]:
    """Extend the video at `clip` to `seconds` seconds in all (at its own fps unless `fps`), writing one MP4 at
    `output`. `pipe`: a `MotifVideoImageToVideoPipeline`; `num_frames`: the window (default: the model's);
    `overlap`: the frames each window is conditioned on (default: the window's `condition_layout.default_overlap`);
    `height` / `width`: the output's size, the clip stretched to it (default: `extension_size`'s); `call`: more keywords
    for each pipeline call (num_inference_steps, guidance...; `condition_guidance` defaults to `window_guidance`'s).
    Returns the plan and the frames written."""
    check_extension_pipeline(pipe)
    info = check_clip(Path(clip))
    check_output(Path(output), Path(clip))
    name = f"clip {str(clip)!r}"
    # the clip's own unless given; out of range: the clip's error
    fps = clip_rate(info["fps"], name, fps)
    window = num_frames or pipe.generation_defaults.resolve(num_frames=None)["num_frames"]
    plan = clip_extension(info, seconds, window, overlap, crossfade, fps=fps, name=name)
    width, height = extension_size(clip, info, width, height, pipe.generation_defaults)
    call["condition_guidance"] = window_guidance(pipe, call.get("condition_guidance"))
    make_window = pipeline_window(
        pipe,
        window_prompts(prompts, plan.windows),
        seed,
        plan.overlap,
        num_frames=window,
        height=height,
        width=width,
        **call,
    )
    with mp4_stream(output, width, height, fps, metadata=metadata) as write:
        written = extend_frames(clip_frames(clip, width, height), plan, make_window, write)
    return {"plan": plan, "frames": written, "output": Path(output)}


def check_extension_pipeline(pipe) -> None:
    """A ValueError unless `pipe` is an image-to-video pipeline: each window is conditioned on the video's last
    frames (`conditions`), which a text-to-video pipeline does not take (it failed at the first window with a
    TypeError about `conditions`)."""
    from .pipelines import MotifVideoImageToVideoPipeline

    if not isinstance(pipe, MotifVideoImageToVideoPipeline):
        raise ValueError(
            f"extend_video needs an image-to-video pipeline (each window is conditioned on the video's last frames), "
            f"got {type(pipe).__name__}: pass MotifVideoImageToVideoPipeline.from_pipe(pipe)"
        )


def extension_size(
    clip, info: dict[str, Any], width: int | None, height: int | None, defaults: GenerationDefaults
) -> tuple[int, int]:
    """(width, height) of the extended video: as asked for (one side alone: the clip's other), else the clip's
    (`input_media.video_size`: kept in shape at the model's pixel count where not multiples of 16); multiples of 16
    (the model's patches) or a ValueError naming the value."""
    if width is None and height is None:
        return video_size(info["width"], info["height"], defaults)
    width = info["width"] if width is None else width
    height = info["height"] if height is None else height
    if width % 16 or height % 16 or width <= 0 or height <= 0:
        own = (width, height) == (info["width"], info["height"])
        raise ValueError(
            f"clip {str(clip)!r} is {info['width']}x{info['height']}; width and height must be multiples of 16 "
            "(give --width and --height to resize it)"
            if own
            else f"width and height must be positive multiples of 16, got {width}x{height}"
        )
    return width, height


def clip_extension(
    info: dict[str, Any],
    seconds: float,
    window: int,
    overlap: int | None,
    crossfade: int,
    fps: float | None = None,
    name: str = "the clip",
) -> ExtensionPlan:
    """The plan extending a clip (`check_clip`'s info; `name` names it in errors) to `seconds` seconds in all, at
    `fps` (default: its own, within `FPS_RANGE`: `input_media.clip_rate`); `overlap` None: the window's default
    (`plan_extension`)."""
    check_seconds(seconds)
    rate = clip_rate(info["fps"], name, fps)
    if round(seconds * rate) <= info["frames"]:  # in the seconds the user asked in
        raise ValueError(
            f"seconds ({seconds:g}) must be longer than the clip: it is {info['frames'] / rate:g} s "
            f"({info['frames']} frames at {rate:g} fps); seconds is the whole video's length, the clip included"
        )
    return plan_extension(info["frames"], round(seconds * rate), window, overlap, crossfade)


# An hour at 24 fps is about 1000 windows of the small model and days of the 2B one: more is taken for a typo.
MAX_SECONDS = 3600.0
SECONDS = within(0, MAX_SECONDS, low_open=True)  # the length an extension may ask for


def check_seconds(seconds: float) -> None:
    """The length an extension asks for: a number in `SECONDS`."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise ValueError(f"seconds must be a number {SECONDS}, got {seconds!r}")
    SECONDS.check("seconds", seconds)


def clip_frames(clip, width: int, height: int) -> Iterator[np.ndarray]:
    """The clip's frames one at a time, stretched to width x height where it has another size."""
    from .pipelines.export import iter_mp4_frames, resized_frames

    return resized_frames(iter_mp4_frames(clip), width, height)


def check_output(output: Path, clip: Path) -> None:
    """The extension's output: one .mp4 file (not a folder), in a folder that exists and can be written, and not
    the clip it extends."""
    from .generation import check_not_an_input, output_paths

    if output.is_dir():
        raise ValueError(f"output must be an .mp4 file, got the folder {str(output)!r}")
    check_not_an_input([output], [clip])
    output_paths(output, ["the extension"])


def check_clip(clip: Path) -> dict[str, Any]:
    """The clip's frame count, size and fps; ValueError when it is missing or not a readable video."""
    from .pipelines.export import check_video_file

    return check_video_file(clip, f"clip {str(clip)!r}")


def settings_from_record(values: dict[str, Any], clip: str | os.PathLike) -> tuple[dict[str, Any], list[str]]:
    """`values` with what they leave out taken from how `clip` was made (the settings `generate` and `extend` store in
    their MP4s): no prompts -> the clip's last prompt, model None -> the clip's model (else the released one). Also the
    list of what was taken, for the log; a ValueError when no prompt is given and the clip records none."""
    from .hub import DEFAULT_MODEL_ID
    from .pipelines.export import read_mp4_metadata

    record = read_mp4_metadata(clip) or {}
    recorded = record.get("prompts") or [record.get("prompt")]  # extend's: every window's; generate's: one
    last, model = recorded[-1] if isinstance(recorded, list) else None, record.get("model")
    prompt = last if isinstance(last, str) and last else None
    model = model if isinstance(model, str) and model else None
    values, taken = dict(values), []
    if not values.get("prompts"):
        if prompt is None:
            raise ValueError(
                f"give --prompt or --prompt-file: {str(clip)!r} records no prompt to go on with (only videos "
                "written by `motif-video generate` or `extend` do)"
            )
        values["prompts"] = [prompt]
        taken.append(f"prompt {prompt!r}")
    if values.get("model") is None:
        values["model"] = model or DEFAULT_MODEL_ID
        if model:
            taken.append(f"model {model}")
    return values, taken


def run_extension(
    values: dict[str, Any],
    clip: Path,
    seconds: float,
    overlap: int | None,
    output: Path,
    log=print,
    crossfade: int = DEFAULT_CROSSFADE,
    replayed: Path | None = None,
) -> dict:
    """`motif-video extend`: check everything (request, clip, plan, output) before loading, then extend (`overlap`
    None: the window's default, `condition_layout.default_overlap`). `replayed`: the video `extend --replay` makes
    again, whose weights are compared with those loaded (`replay.warn_changed_weights`)."""
    from tqdm.auto import tqdm

    from .defaults import model_defaults
    from .generation import plan_generation
    from .options import OPTIONS, parse_request

    values = dict(values)
    width, height = values.pop("width", None), values.pop("height", None)
    check_seconds(seconds)  # before the clip is read
    info = check_clip(clip)
    check_output(Path(output), clip)
    values, taken = settings_from_record(values, clip)
    if taken:
        log(f"{' and '.join(taken)}, as {clip} records")
    model = values.get("model", OPTIONS["model"].default)
    width, height = extension_size(clip, info, width, height, model_defaults(model))
    all_prompts = values.pop("prompts")
    all_prompts = [all_prompts] if isinstance(all_prompts, str) else list(all_prompts)
    for prompt in all_prompts:  # every window's prompt checked as generate checks one
        parse_request({"prompts": prompt})
    size = {"height": height, "width": width, "output": str(output)}
    request = parse_request({**values, **size, "prompts": all_prompts[:1]})  # one video: one output file
    gen = plan_generation(request)
    request = gen.request
    plan = clip_extension(info, seconds, request.num_frames, overlap, crossfade, name=f"clip {str(clip)!r}")
    resized = f", resized to {width}x{height}" if (width, height) != (info["width"], info["height"]) else ""
    shortened = (  # the default overlap, cut to fit a short window
        f" (the default for a {plan.window}-frame window)"
        if overlap is None and plan.overlap != DEFAULT_OVERLAP
        else ""
    )
    log(
        f"extending {clip} ({info['frames']} frames, {info['width']}x{info['height']} at {info['fps']:g} fps"
        f"{resized}) to "
        f"{plan.total_frames} frames: {plan.windows} window(s) of {plan.window} frames, overlap {plan.overlap}"
        f"{shortened}"
        f"{f', cross-fade {plan.crossfade}' if plan.crossfade else ''}; "
        f"seed {gen.seed}"
    )
    if (
        warning := model_defaults(request.model).size_warning(height, width, how="give --width and --height")
    ) is not None:
        log(f"warning: {warning}")
    if len(all_prompts) > plan.windows:  # a story longer than the video: say so rather than drop its end
        log(
            f"warning: {len(all_prompts)} prompts for {plan.windows} window(s): prompts {plan.windows + 1} to "
            f"{len(all_prompts)} are not used (a longer --seconds makes more windows)"
        )
        all_prompts = all_prompts[: plan.windows]
    from .generation import prepare_pipeline  # the model's libraries: only once everything above is checked
    from .pipelines import MotifVideoImageToVideoPipeline
    from .vocabulary import prompt_check

    # several windows: one bar over all their steps (sampling and decoder fit), and under it the window's own bars
    # (its steps, then its decoder fit), cleared when the window is done; on a terminal only (tqdm's disable=None):
    # where stderr is a log, which keeps every line a bar draws, the nested bars would fill it with their lines and
    # the cursor moves between them, and the windows' bar alone counts the steps
    many = plan.windows > 1
    pipe, _ = prepare_pipeline(gen)
    if not isinstance(pipe, MotifVideoImageToVideoPipeline):
        pipe = MotifVideoImageToVideoPipeline.from_pipe(pipe)  # a new pipeline: its own progress bar setting
    pipe.set_progress_bar_config(leave=not many, disable=None if many else False)
    if replayed is not None:
        from .replay import EXTEND_FORMAT, warn_changed_weights

        warn_changed_weights(replayed, request.values(), pipe, EXTEND_FORMAT)
    check_prompt = prompt_check(pipe.tokenizer)  # words the model does not know, as generate warns
    for i, prompt in enumerate(all_prompts):
        if check_prompt is not None and (warning := check_prompt(prompt)) is not None:
            log(f"warning: window {i + 1}'s prompt: {warning}" if many else f"warning: {warning}")
    if request.condition_guidance is None and window_guidance(pipe, None):
        log(f"reconstruction guidance {window_guidance(pipe, None):g} (the model's default for extension)")
    with tqdm(desc=f"{plan.windows} windows", unit="step", disable=not many) as bar:
        # after a sampling step, called (pipe, i, t, tensors), its tensors given back; or a fit step, called (pipe)
        def step_done(pipe, *step):
            if bar.total is None:  # the steps a window runs are known once the first one starts
                bar.total = steps_in_all(pipe, plan.windows)
            bar.update()
            return step[-1] if step else None

        written = write_extension(
            pipe, request, plan, clip, all_prompts, gen.seed, output, info["fps"], callback=step_done,
            fit_callback=step_done,
        )  # fmt: skip
    log(f"wrote {output} ({written} frames)")
    return {"plan": plan, "frames": written, "output": output}


def write_extension(
    pipe,
    request,
    plan: ExtensionPlan,
    clip: str | os.PathLike,
    prompts: Sequence[str],
    seed: int,
    output: str | os.PathLike,
    fps: float,
    callback=None,
    source: str | None = None,
    fit_callback=None,
) -> int:
    """Extend `clip` by `plan` with an image-to-video pipeline and a checked `GenerateRequest` (its steps, guidance,
    size and model), writing the MP4 at `output` with the settings in its metadata (`source`: what it was extended
    from, default the clip's path); `callback` and `fit_callback`: the pipeline's `callback_on_step_end` and
    `callback_on_fit_step` in every window. Used by `motif-video extend` and the service's workers. Returns the
    frames written."""
    from .replay import extension_settings

    call = dict(
        num_inference_steps=request.steps, guidance=request.guidance, guidance_scale=request.guidance_scale,
        guidance_batching=request.guidance_batching, shift=request.shift, negative_prompt=request.negative_prompt,
        keep_first_frame=request.keep_first_frame,
        condition_guidance=window_guidance(pipe, request.condition_guidance),
    )  # fmt: skip
    if callback is not None:
        call["callback_on_step_end"] = callback
    if fit_callback is not None:
        call["callback_on_fit_step"] = fit_callback
    prompts = window_prompts(prompts, plan.windows)
    make_window = pipeline_window(pipe, prompts, seed, plan.overlap, num_frames=plan.window,
                                  height=request.height, width=request.width, **call)  # fmt: skip
    settings = extension_settings(
        request, plan, prompts, seed, clip, source, fps, call["condition_guidance"], pipe
    )
    with mp4_stream(output, request.width, request.height, fps, metadata=settings) as write:
        return extend_frames(clip_frames(clip, request.width, request.height), plan, make_window, write)
