"""The options of a generation request, each declared once: `motif-video generate`'s flags, the request checks (for
the command line and for a service's JSON fields) and the pipeline call are all derived from `GENERATE_OPTIONS`.

    add_arguments(parser)           argparse flags (help, defaults, choices)
    parse_request(mapping)          field -> value in, a checked `GenerateRequest` out, or a ValueError naming the
                                    field and what it allows
    request_schema(groups)          JSON schema of the fields (type, default, enum, bounds, description)
    pipeline_kwargs(request)        the keyword arguments of a pipeline call for one of the request's prompts

Checks here need nothing but the values (types, choices, ranges, the video size rule, options that exclude each
other); what depends on the machine or the files (CUDA present, image readable, output writable, process count)
is checked by `motif_video.generation.plan_generation` before any model is loaded. A None default means "decided
later": by the model folder's generation_config.json, else the released defaults (`motif_video.defaults`).

Pure Python (dataclasses, argparse, re): importing this module imports neither torch nor diffusers.
"""

from __future__ import annotations

import argparse
import math
import re
import typing
from collections.abc import Iterable, Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, get_args

from . import defaults as D
from .bounds import Bounds, above, at_least, within
from .choices import (
    DTYPE_CHOICES,
    GUIDANCE_BATCHING,
    GUIDANCE_MODES,
    OFFLOAD_MODES,
    PARALLEL_CHOICES,
)
from .condition_layout import plan_layout
from .hub import DEFAULT_MODEL_ID
from .interop.lora_spec import parse_lora_spec

DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")

# What a field is about: the video (per request), where it is written, how the process runs (per process: a service
# sets these when it starts, not per request).
Group = Literal["video", "output", "run"]
GROUPS: tuple[str, ...] = get_args(Group)
CliKind = Literal["value", "switch", "negatable", "optional_value", "prompt", "append"]


@dataclass(frozen=True)
class Option:
    """One generate option: its field, type, default, allowed values and help; everything else is derived."""

    name: str  # the request field (and JSON key); the flag is --name-with-dashes
    type: type  # int, float, str, bool or Path (prompts: str, one or more)
    default: Any
    help: str
    group: Group
    choices: tuple[Any, ...] | None = None
    bounds: Bounds | None = None  # numbers only
    default_text: str | None = None  # the help's "(default: ...)" where the value alone does not say it
    pipeline: str | None = (
        None  # the pipeline call's keyword for this value; None: not passed to the pipeline
    )
    i2v_only: bool = False  # passed to the pipeline only for image-to-video
    cli: CliKind = "value"  # "append": a repeatable flag, the value a tuple of its type
    const: Any = None  # optional_value: the value of the bare flag
    metavar: str | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def allowed(self) -> str:
        """What the option accepts, in words (for error messages and the schema's description)."""
        if self.choices is not None:
            return f"one of {list(self.choices)}"
        if self.bounds is not None:
            return f"{self.type.__name__} {self.bounds}"
        return "a path" if self.type is Path else self.type.__name__

    def check(self, value: Any) -> Any:
        """`value` converted to this option's type and checked; ValueError naming the field otherwise."""
        if self.cli == "append":
            if not isinstance(value, list | tuple):
                raise ValueError(f"{self.name} must be a list of {self.allowed}, got {value!r}")
            return tuple(_convert(self, v) for v in value)
        if value is None:
            if self.default is None:
                return None
            raise ValueError(f"{self.name} must be {self.allowed}, got None")
        value = _convert(self, value)
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"{self.name} must be one of {list(self.choices)}, got {value!r}")
        if self.bounds is not None:
            self.bounds.check(self.name, value)
        return value


def _convert(option: Option, value: Any) -> Any:
    kind, name = option.type, option.name
    if kind is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{name} must be a number, got {value!r}")
        if not math.isfinite(value):  # inf and nan pass every bound check and no pipeline can use them
            raise ValueError(f"{name} must be a finite number, got {value!r}")
        return float(value)
    if kind is Path:
        if not isinstance(value, str | Path):
            raise ValueError(f"{name} must be a path, got {value!r}")
        return Path(value)
    if not isinstance(value, str):
        raise ValueError(f"{name} must be text, got {value!r}")
    return value


def option(default: Any, help: str, group: Group, **details: Any) -> Any:
    """A request field with its option details (`Option`'s fields after `group`); name and type are the field's."""
    return field(default=default, metadata={"option": {"help": help, "group": group, **details}})


SEED_MAX = 2**63 - 1  # torch generators take seeds below 2**64; video i's is seed + i
_NEGATIVE = 'the 39-term trained negative prompt; "" for none'
_GUIDANCE = (
    f"the model's generation_config.json, else its guider config, else {D.GUIDANCE}: scale {D.GUIDANCE_SCALE:g}, "
    f"norm threshold {D.APG_NORM_THRESHOLD:g}, momentum {D.APG_MOMENTUM:g}"
)


@dataclass(frozen=True)
class GenerateRequest:
    """A generation request, checked by `parse_request`: each field is one option, declared here once."""

    # ---------------------------------------------------------------------------------------------------- video
    prompts: tuple[str, ...] = field(
        metadata={
            "option": {
                "help": "the prompt (this, --prompt-file or --replay is required)",
                "group": "video",
                "cli": "prompt",
                "pipeline": "prompt",
            }
        }
    )
    image: Path | None = option(
        None, "first frame for image-to-video", "video", default_text="none, text-to-video"
    )
    last_image: Path | None = option(
        None,
        "image the video ends on (its last frame); the released weights saw frame 0 only: other positions need a "
        "model trained on them (recipes/motif-video-2b/conditions-lora.yaml)",
        "video",
    )
    keyframe: tuple[str, ...] = option(
        (),
        "image at a pixel frame, PATH@FRAME (FRAME from 0; negative counts from the end); repeatable, one per group "
        "of 4 frames",
        "video",
        cli="append",
        metavar="PATH@FRAME",
    )
    video: Path | None = option(
        None,
        "input video for video-to-video (SDEdit); its frame count (cut to 4k+1, at most the model's) when "
        "--num-frames is not given",
        "video",
    )
    strength: float | None = option(
        None,
        "video-to-video: how much of the sampling is redone, in (0, 1]: 1 starts from pure noise",
        "video",
        bounds=within(0, 1, low_open=True),
        default_text="0.7 with --video",
    )
    keep_first_frame: bool | None = option(
        None,
        "image-to-video: hold every conditioned latent frame (first image, last image, keyframes) on its image's noise "
        "path so the video shows the image there",
        "video",
        cli="negatable",
        pipeline="keep_first_frame",
        i2v_only=True,
        default_text="the model folder's generation_config.json, else off as released",
    )
    repaint_first_frame: bool | None = option(
        None,
        "re-encode latent frame 0 from pixel frame 1 after sampling when no image gives frame 0 (for a model that "
        "draws the first frame's latent worse than the rest, as the small model does; refined through the decoder "
        "by --decoder-fit-steps)",
        "video",
        cli="negatable",
        pipeline="repaint_first_frame",
        default_text="the model folder's generation_config.json, else off as released",
    )
    decoder_fit_steps: int | None = option(
        None,
        "after sampling, Adam steps that fit each latent frame holding a given frame (first / last image, keyframe, "
        "clip, repainted frame 0) through the VAE decoder so those frames decode to their images; each step is one "
        "decoder chunk's forward and backward pass; 0: off",
        "video",
        bounds=within(
            0, 1000
        ),  # the small model runs 50 (its student 20); thousands would only hold a worker
        pipeline="decoder_fit_steps",
        default_text="the model folder's generation_config.json, else 0 as released",
    )
    condition_guidance: float | None = option(
        None,
        "image-to-video: reconstruction guidance scale; each step also pulls the model's own estimate of the given "
        "frames (first / last image, keyframes, a clip prefix) toward them, through one more transformer pass without "
        "the condition channels and its backward, so that the frames around them follow (video extension's seams); "
        "0: off",
        "video",
        bounds=at_least(0),
        pipeline="condition_guidance",
        i2v_only=True,
        default_text="the model folder's generation_config.json, else 0 as released",
    )
    height: int | None = option(
        None,
        "pixels, a multiple of 16",
        "video",
        bounds=at_least(16),
        pipeline="height",
        default_text=f"the model's, else {D.HEIGHT}; with an image or video, their shape kept at the model's size",
    )
    width: int | None = option(
        None,
        "pixels, a multiple of 16",
        "video",
        bounds=at_least(16),
        pipeline="width",
        default_text=f"the model's, else {D.WIDTH}; with an image or video, their shape kept at the model's size",
    )
    num_frames: int | None = option(
        None,
        "4k+1 frames",
        "video",
        bounds=at_least(1),
        pipeline="num_frames",
        default_text=f"the model's, else {D.NUM_FRAMES}",
    )
    steps: int | None = option(
        None,
        "denoising steps",
        "video",
        bounds=at_least(1),
        pipeline="num_inference_steps",
        default_text=f"the model's, else {D.STEPS}",
    )
    guidance: str | None = option(
        None, "guidance method", "video", choices=GUIDANCE_MODES, pipeline="guidance", default_text=_GUIDANCE
    )
    guidance_scale: float | None = option(
        None,
        "guidance scale",
        "video",
        bounds=at_least(0),
        pipeline="guidance_scale",
        default_text=f"the model's generation_config.json or guider config, else {D.GUIDANCE_SCALE:g}",
    )
    guidance_batching: str = option(
        "auto",
        "cond and uncond in one batched forward or two passes; auto batches small videos (up to 8192 "
        "tokens) and uses two passes with a step cache",
        "video",
        choices=GUIDANCE_BATCHING,
        pipeline="guidance_batching",
    )
    shift: float | None = option(
        None,
        "sampler time shift",
        "video",
        bounds=above(0),
        pipeline="shift",
        default_text=f"the folder's scheduler config; {D.SHIFT_T2V:g} for T2V, {D.SHIFT_I2V:g} for I2V",
    )
    negative_prompt: str | None = option(
        None, "negative prompt", "video", pipeline="negative_prompt", default_text=_NEGATIVE
    )
    seed: int | None = option(
        None,
        "random seed; video i (an extension's window i) uses seed + i",
        "video",
        bounds=within(0, SEED_MAX),
        default_text="random, printed",
    )
    fps: int | None = option(
        None,
        "frames per second of the MP4",
        "video",
        bounds=D.FPS_RANGE,
        default_text=f"the model's (its generation_config.json; {D.FPS} as released), or with --video the input "
        "video's, rounded: the pace their motion was made at",
    )
    # --------------------------------------------------------------------------------------------------- output
    output: Path = option(
        Path("output.mp4"),
        "MP4 file for one prompt, or a folder for several",
        "output",
        default_text="output.mp4; with --replay VIDEO.mp4, VIDEO-replay.mp4 beside it",
    )
    save_latents: bool = option(
        False,
        "also write the final latents next to each MP4 (.latents.safetensors)",
        "output",
        cli="switch",
        default_text="off",
    )
    # ------------------------------------------------------------------------------------------------------ run
    model: str = option(
        DEFAULT_MODEL_ID, "local model folder, shipped model name (small, small-4step) or Hub id", "run"
    )
    dtype: str = option(
        "auto",
        "weights and compute dtype",
        "run",
        choices=DTYPE_CHOICES,
        default_text="auto: bfloat16 on CUDA, float32 on the CPU",
    )
    device: str = option("auto", "auto, cpu, cuda or cuda:N", "run", default_text="auto: cuda when available")
    threads: int = option(
        0,
        "torch CPU threads; 0 = torch's default. Small models on a busy CPU: 1 is often much faster",
        "run",
        bounds=at_least(0),
    )
    offload: str = option(
        "none",
        "where weights live while generating",
        "run",
        choices=OFFLOAD_MODES,
        default_text="none, all on the device",
    )
    fp8: bool = option(
        False,
        "FP8 weight-only transformer (torchao; pip install motif-video[fp8])",
        "run",
        cli="switch",
        default_text="off",
    )
    vae_tiling: bool = option(
        False, "decode the VAE in spatial tiles", "run", cli="switch", default_text="off"
    )
    memory_budget: float | None = option(
        None,
        "GB of accelerator memory; picks --offload/--fp8 (overrides them; the choice is printed)",
        "run",
        bounds=above(0),
        default_text="none",
    )
    attention_backend: str | None = option(
        None,
        "attention kernel: auto (FlashAttention 3 on Hopper in half precision, else torch SDPA), sdpa, math, "
        "sdpa_flash, sdpa_cudnn, sdpa_efficient, flash3, sage; the ones installed and usable here are accepted",
        "run",
        default_text="auto",
    )
    compile: str | None = option(
        None,
        "regional torch.compile of the transformer blocks; BACKEND defaults to inductor",
        "run",
        cli="optional_value",
        const="inductor",
        metavar="BACKEND",
        default_text="off",
    )
    cache_threshold: float | None = option(
        None,
        "step cache (first-block residual): skip a step when the first block's output changed by less than "
        "this relative L1; 0 skips nothing (exact); other video models use 0.05-0.1, the quality cost here is not "
        "measured yet; forces separate cond and uncond passes; the skipped steps are printed",
        "run",
        bounds=at_least(0),
        default_text="off",
    )
    fp8_compute: bool = option(
        False,
        "FP8 compute: torchao dynamic float8 activations and weights in the block linears, CUDA compute "
        "capability >= 8.9 (Ada, Hopper) only; not the --fp8 memory mode",
        "run",
        cli="switch",
        default_text="off",
    )
    lora: tuple[str, ...] = option(
        (),
        "a LoRA (file, folder or Hub id; diffusers, kohya/musubi or ComfyUI keys) at an adapter weight, "
        "PATH[:SCALE] (scale 1 when left out); repeat the flag for several",
        "run",
        cli="append",
        metavar="PATH[:SCALE]",
        default_text="none",
    )
    fuse_lora: bool = option(
        False,
        "merge the LoRAs into the transformer's weights once before sampling (steps then cost what they cost "
        "without a LoRA)",
        "run",
        cli="switch",
        default_text="off",
    )
    transformer_gguf: Path | None = option(
        None,
        "a GGUF transformer (Motif's published files, or `motif-video export --gguf`) in place of the model "
        "folder's; quantised layers stay packed and are dequantised as they run",
        "run",
        default_text="none: the model folder's transformer",
    )
    parallel: str = option(
        "auto",
        "under torchrun --nproc-per-node N: context (video tokens split over the ranks), guidance (cond and "
        "uncond passes on 2 ranks), data (rank r makes prompts r, r+N, ...); auto: none for one process, data when "
        "there are at least N prompts, else context",
        "run",
        choices=PARALLEL_CHOICES,
    )

    def values(self, group: Group | None = None) -> dict[str, Any]:
        """The option values (of one group), keyed by field."""
        return {o.name: getattr(self, o.name) for o in GENERATE_OPTIONS if group in (None, o.group)}


def _field_type(hint: Any) -> type:
    """int, float, str, bool or Path from a field's annotation (`X | None` -> X; the prompts tuple -> str)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is tuple:
        return str
    return args[0] if args else hint


def _options() -> tuple[Option, ...]:
    hints = typing.get_type_hints(GenerateRequest)
    return tuple(
        Option(
            f.name,
            _field_type(hints[f.name]),
            None if f.default is MISSING else f.default,
            **f.metadata["option"],
        )
        for f in fields(GenerateRequest)
    )


GENERATE_OPTIONS: tuple[Option, ...] = _options()
OPTIONS: dict[str, Option] = {o.name: o for o in GENERATE_OPTIONS}


def parse_request(values: Mapping[str, Any], base: GenerateRequest | None = None) -> GenerateRequest:
    """A `GenerateRequest` from field -> value (JSON types, or Path for paths); fields left out take `base`'s values
    (default: the option defaults). Raises ValueError naming the field and what it allows."""
    unknown = sorted(set(values) - set(OPTIONS))
    if unknown:
        raise ValueError(f"unknown field(s) {unknown}; known: {sorted(OPTIONS)}")
    checked = {name: OPTIONS[name].check(value) for name, value in values.items() if name != "prompts"}
    if "prompts" in values or base is None:
        checked["prompts"] = _check_prompts(values.get("prompts"))
    request = replace(base, **checked) if base is not None else GenerateRequest(**checked)
    check_request(request)
    return request


def _check_prompts(value: Any) -> tuple[str, ...]:
    prompts = [value] if isinstance(value, str) else value
    if not isinstance(prompts, list | tuple) or not prompts:
        raise ValueError("prompts must be one prompt or a non-empty list of prompts")
    if any(not isinstance(p, str) or not p.strip() for p in prompts):
        raise ValueError("prompt must be non-empty text (one per line in --prompt-file)")
    return tuple(prompts)


def check_video_size(width: int | None, height: int | None, frames: int | None) -> None:
    """Width and height multiples of 16, frames 4k + 1 (the VAE's 8x spatial, 4x temporal, and 2x2 patches); a
    value left None (the model's default, checked once filled) is not checked."""
    for name, value in (("width", width), ("height", height)):
        if value is not None and (value <= 0 or value % 16):
            raise ValueError(f"{name} must be a positive multiple of 16, got {value}")
    if frames is not None and (frames < 1 or (frames - 1) % 4):
        raise ValueError(f"num_frames must be 4k+1 (1, 5, 9, ..., 121), got {frames}")


def check_request(r: GenerateRequest) -> None:
    """The rules between fields and the ones a choice list cannot say (no machine or file is looked at)."""
    check_video_size(r.width, r.height, r.num_frames)
    if not conditioned(r) and r.keep_first_frame is not None:
        raise ValueError(
            "keep_first_frame (--keep-first-frame / --no-keep-first-frame) needs image (--image), last_image "
            "(--last-image) or keyframe (--keyframe)"
        )
    if r.strength is not None and r.video is None:
        raise ValueError("strength (--strength) needs video (--video)")
    for spec in r.keyframe:
        parse_keyframe(spec)
    if r.num_frames is not None:
        check_conditions(r, r.num_frames)
    if not DEVICE_PATTERN.fullmatch(r.device):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {r.device!r}")
    if r.fp8 and r.fp8_compute:
        raise ValueError("fp8 (weight-only memory mode) and fp8_compute are exclusive; pick one")
    if r.fp8_compute and r.offload != "none":
        raise ValueError(
            f"fp8_compute needs the transformer on the GPU (offload none), got offload {r.offload!r}"
        )
    for spec in r.lora:
        parse_lora_spec(spec)
    if r.fuse_lora and not r.lora:
        raise ValueError("fuse_lora (--fuse-lora) needs at least one lora (--lora PATH[:SCALE])")
    if r.transformer_gguf is not None and (r.fp8 or r.fp8_compute or r.fuse_lora):
        raise ValueError(
            "transformer_gguf keeps the weights quantised: it cannot be combined with fp8, fp8_compute or fuse_lora"
        )
    if r.parallel == "guidance" and r.guidance == "none":
        raise ValueError("parallel 'guidance' splits the cond and uncond passes: needs guidance apg or cfg")


def check_generation_request(r: GenerateRequest) -> None:
    """A request for one video (not an extension's windows, which are conditioned on their clip): reconstruction
    guidance pulls the sample toward given frames, so without a frame condition it would be taken and do nothing
    (a video-to-video input is a start, not a condition)."""
    if not conditioned(r) and r.condition_guidance is not None:
        raise ValueError(
            "condition_guidance (--condition-guidance) needs image (--image), last_image (--last-image) or "
            "keyframe (--keyframe); an extension (extend) takes it for its windows"
        )


MEDIA_FIELDS = ("image", "last_image", "keyframe", "video")  # fields naming files on this machine
VIDEO_TO_VIDEO_STRENGTH = 0.7  # --video without --strength


def conditioned(r: GenerateRequest) -> bool:
    """Whether the request conditions frames (the image-to-video pipeline runs it)."""
    return r.image is not None or r.last_image is not None or bool(r.keyframe)


def parse_keyframe(spec: str) -> tuple[Path, int]:
    """PATH@FRAME -> (path, frame); ValueError naming the spec otherwise."""
    path, sep, frame = str(spec).rpartition("@")
    try:
        index = int(frame)
    except ValueError:
        index = None
    if not sep or not path or index is None:
        raise ValueError(f"keyframe must be PATH@FRAME (e.g. key.png@16), got {spec!r}")
    return Path(path), index


def condition_specs(r: GenerateRequest) -> list[tuple[str, int, int, float]]:
    """(name, frame, length, strength) of the request's images, for `condition_layout.plan_layout`."""
    specs = [("image (--image)", 0, 1, 1.0)] if r.image is not None else []
    if r.last_image is not None:
        specs.append(("last_image (--last-image)", -1, 1, 1.0))
    specs += [(f"keyframe {spec!r}", parse_keyframe(spec)[1], 1, 1.0) for spec in r.keyframe]
    return specs


def check_conditions(r: GenerateRequest, num_frames: int) -> None:
    """The request's images at their frames of a `num_frames` video: in range, one per group of 4 frames."""
    plan_layout(condition_specs(r), num_frames)


def pipeline_kwargs(request: GenerateRequest, prompt: str, image_to_video: bool) -> dict[str, Any]:
    """The pipeline call's keyword arguments for `prompt` (the image and the generator are the caller's)."""
    kwargs = {
        o.pipeline: getattr(request, o.name)
        for o in GENERATE_OPTIONS
        if o.pipeline is not None and o.name != "prompts" and (image_to_video or not o.i2v_only)
    }
    return {"prompt": prompt, **kwargs}


# --------------------------------------------------------------------------------------------------- argparse
def add_arguments(parser: argparse.ArgumentParser, options: Iterable[Option] = GENERATE_OPTIONS) -> None:
    """One flag per option (the prompts as --prompt, --prompt-file or --replay: one is needed, as
    `request_from_args` says, not argparse, so that a mistyped flag is named first)."""
    for o in options:
        default = o.default_text or ("none" if o.default is None else str(o.default))
        help_ = f"{o.help} (default: {default})"
        if o.cli == "prompt":
            # one of them is needed (`request_from_args` says so): a required group would name it before a
            # mistyped flag (--promt) could be named
            src = parser.add_mutually_exclusive_group()
            src.add_argument("--prompt", help=o.help)
            src.add_argument(
                "--prompt-file", type=Path, help="text file with one prompt per line (blank lines skipped)"
            )
            src.add_argument(
                "--replay",
                type=Path,
                metavar="VIDEO.mp4",
                help="make a video again from the settings `generate` stored in it (prompt, seed, size, steps, "
                "model...); flags given as well override them",
            )
        elif o.cli == "switch":
            parser.add_argument(o.flag, dest=o.name, action="store_true", help=help_)
        elif o.cli == "negatable":
            parser.add_argument(o.flag, dest=o.name, action=argparse.BooleanOptionalAction, default=o.default,
                                help=help_)  # fmt: skip
        elif o.cli == "append":
            parser.add_argument(
                o.flag, dest=o.name, action="append", default=[], metavar=o.metavar, help=help_
            )
        elif o.cli == "optional_value":
            parser.add_argument(o.flag, dest=o.name, nargs="?", const=o.const, default=o.default, metavar=o.metavar,
                                help=help_)  # fmt: skip
        else:
            parser.add_argument(
                o.flag, dest=o.name, type=o.type, default=o.default, choices=o.choices, help=help_
            )


def read_prompt_file(path: Path) -> list[str]:
    """The non-blank lines of a prompt file, stripped."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"prompt file {str(path)!r} is not readable ({exc})") from exc
    prompts = [line.strip() for line in text.splitlines() if line.strip()]
    if not prompts:
        raise ValueError(f"prompt file {str(path)!r} has no prompts")
    return prompts


def given_values(values: dict[str, Any], given: set[str] | None = None) -> dict[str, Any]:
    """The option values a command line set, what `--replay` puts over the stored ones: those named in `given` (the
    flags on the command line, `cli.given_flags`); without it, those other than their option's default (None, where a
    command leaves a value to be decided later, and an empty list, a repeatable's default, count as not given)."""
    if given is not None:
        return {k: v for k, v in values.items() if k in given}
    return {k: v for k, v in values.items() if v not in (None, []) and v != OPTIONS[k].default}


def request_from_args(args: argparse.Namespace) -> GenerateRequest:
    """The request of parsed `add_arguments` flags (reads --prompt-file)."""
    values = {name: getattr(args, name) for name in OPTIONS if name != "prompts"}
    if getattr(args, "replay", None) is not None:
        from .replay import replay_values

        given = given_values(values, getattr(args, "given", None))
        if "output" not in given:
            given["output"] = args.replay.with_name(f"{args.replay.stem}-replay.mp4")
        return parse_request({**replay_values(args.replay, given), **given})
    if args.prompt is None and args.prompt_file is None:
        raise ValueError("generate needs --prompt, --prompt-file or --replay")
    prompts = [args.prompt] if args.prompt is not None else read_prompt_file(args.prompt_file)
    return parse_request({"prompts": prompts, **values})


# ------------------------------------------------------------------------------------------------------ schema
_JSON_TYPES = {int: "integer", float: "number", str: "string", bool: "boolean", Path: "string"}


def request_schema(groups: Iterable[Group] = GROUPS) -> dict[str, Any]:
    """A JSON schema (draft 2020-12) of the request fields in `groups`; null means "the default decides"."""
    properties: dict[str, Any] = {}
    for o in GENERATE_OPTIONS:
        if o.group not in tuple(groups):
            continue
        if o.name == "prompts":
            prop: dict[str, Any] = {
                "type": "array",
                "items": {"type": "string", "minLength": 1},
                "minItems": 1,
            }
        elif o.cli == "append":
            prop = {"type": "array", "items": {"type": _JSON_TYPES[o.type]}, "default": list(o.default)}
        else:
            kind = _JSON_TYPES[o.type]
            prop = {"type": [kind, "null"] if o.default is None else kind}
            if o.default is not None:
                prop["default"] = str(o.default) if isinstance(o.default, Path) else o.default
            if o.choices is not None:
                prop["enum"] = list(o.choices) + ([None] if o.default is None else [])
            if o.bounds is not None:
                prop.update(o.bounds.schema())
        default = o.default_text or ("none" if o.default is None else str(o.default))
        prop["description"] = f"{o.help} (default: {default})"
        properties[o.name] = prop
    required = ["prompts"] if "prompts" in properties else []
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}
