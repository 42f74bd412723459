"""Generation defaults, in one place: the released model's, and those a model folder stores beside it.

Every layer reads them from here: the pipelines fill what a call leaves None, `generate` and `eval` resolve a
model's defaults before loading it (to check sizes and print them), the option declarations (`motif_video.options`)
name them in their help, and distillation writes a student's. Pure Python: no torch import.

Order, for each value: the call's argument, else the model folder's `generation_config.json` (a student's over its
base model's), else the released model's below. Guidance and shift have no released value here: the folder's guider
and scheduler configs give them, then `GUIDANCE` / `SHIFT_T2V` / `SHIFT_I2V`.

A distilled student is a folder holding `transformer/` (a full student) or `lora/` (an adapter) and this file:

    {"num_inference_steps": 4, "shift": 15.0, "guidance": "apg", "guidance_scale": 8.0,
     "base_model": "small", "adapter": null, "distillation": {...how it was made...}}

`base_model` (a folder, a shipped model name or a Hub id) supplies every other component (VAE, text encoder,
tokenizer, scheduler, guider), so a student ships without copies of them (`motif_video.pipelines.students`). A full
model folder may carry the same file with only the generation keys.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .bounds import within
from .choices import GUIDANCE_MODES

# ---------------------------------------------------------------------------------------------- released model
HEIGHT = 736
WIDTH = 1280
NUM_FRAMES = 121
STEPS = 50
FPS = 24
MAX_FPS = 240  # what an MP4 of ours is written at, at most
FPS_RANGE = within(0, MAX_FPS, low_open=True)  # the frame rates a video of ours may be written at
SHIFT_T2V = 15.0  # when the folder's scheduler config names none
SHIFT_I2V = 8.0  # image-to-video, unless the folder is an image-to-video one (see `pipelines.sampling`)
# Guidance when the folder has no guider config: APG, original formulation (`pipelines.guidance`).
GUIDANCE = "apg"
GUIDANCE_SCALE = 8.0
APG_NORM_THRESHOLD = 12.0
APG_MOMENTUM = 0.1
APG_ETA = 1.0
APG_NORM_DIMS = (-1, -2, -4)  # W, H, C of a [B, C, T, H, W] velocity: one norm per latent frame
CONDITIONING_BLUR = 0.0  # I2V timestep-aware blur strength: off, as released
KEEP_FIRST_FRAME = False  # I2V: the model generates latent frame 0 from the condition channels, as released
REPAINT_FIRST_FRAME = False  # latent frame 0 as the model generated it, as released (`pipelines.latents`)
DECODER_FIT_STEPS = 0  # given frames keep their encoder latents, as released (`pipelines.decoder_fit`)
CONDITION_GUIDANCE = 0.0  # no reconstruction guidance, as released (`pipelines.reconstruction`)
# A None negative prompt means the pipeline's 39-term trained one (`pipelines.prompts.DEFAULT_NEGATIVE_PROMPT`).

GENERATION_CONFIG_NAME = "generation_config.json"
ADAPTERS = (None, "lora")


@dataclass(frozen=True)
class GenerationDefaults:
    """The schema of `generation_config.json`; None: no default here (the next source in order decides)."""

    num_inference_steps: int | None = None
    shift: float | None = None
    guidance: str | None = None  # "apg", "cfg" or "none"
    guidance_scale: float | None = None
    base_model: str | None = None
    adapter: str | None = (
        None  # None: `transformer/` holds the student; "lora": `lora/` adapts the base model's
    )
    distillation: dict[str, Any] = field(default_factory=dict)  # provenance, not read by the pipeline
    # Size and negative prompt a model was trained for (the released model has none).
    height: int | None = None
    width: int | None = None
    num_frames: int | None = None
    negative_prompt: str | None = None
    conditioning_blur: float | None = None  # I2V: the timestep-aware blur strength the model was trained with
    keep_first_frame: bool | None = None  # I2V: hold latent frame 0 on the image's path (the I2V pipeline)
    repaint_first_frame: bool | None = None  # latent frame 0 from pixel frame 1 where no condition gives it
    decoder_fit_steps: int | None = None  # fit given / repainted frames through the decoder (0: off)
    condition_guidance: float | None = (
        None  # I2V: reconstruction guidance scale (`pipelines.reconstruction`; 0: off)
    )
    # video extension (`extension`): the reconstruction guidance scale of its windows when the call gives none
    # (None: `condition_guidance`, as for any image-to-video call)
    extend_condition_guidance: float | None = None
    # [[height, width], ...]: the only frame sizes the model was trained at, for a model that knows no others (the
    # small one: 64x64); other sizes are warned about (`size_warning`). None: any size (the released model)
    trained_sizes: list[list[int]] | None = None
    # frames per second of the clips the model was trained on: the MP4's rate when a call names none, so its motion
    # plays at the pace it learnt (the small model's clips were resampled to 16; the released model's are 24)
    fps: int | None = None

    def __post_init__(self) -> None:
        if self.fps is not None:
            FPS_RANGE.check("fps", self.fps)
        if self.num_inference_steps is not None and self.num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {self.num_inference_steps}")
        if self.guidance not in (None, *GUIDANCE_MODES):
            raise ValueError(f"guidance must be one of {list(GUIDANCE_MODES)}, got {self.guidance!r}")
        if self.adapter not in ADAPTERS:
            raise ValueError(f"adapter must be one of {list(ADAPTERS)}, got {self.adapter!r}")
        if self.decoder_fit_steps is not None and self.decoder_fit_steps < 0:
            raise ValueError(f"decoder_fit_steps must be >= 0, got {self.decoder_fit_steps}")
        for scale in (self.condition_guidance, self.extend_condition_guidance):
            if scale is not None:
                check_condition_guidance(scale)
        for size in self.trained_sizes or ():
            if not (
                isinstance(size, list | tuple)
                and len(size) == 2
                and all(isinstance(v, int) and v > 0 for v in size)
            ):
                raise ValueError(
                    f"trained_sizes must be [[height, width], ...] of positive whole numbers, got {size!r}"
                )

    def knows_size(self, height: int, width: int) -> bool:
        """Whether the model can draw at height x width: any size unless it lists `trained_sizes`, else one of them."""
        return not self.trained_sizes or [height, width] in [list(size) for size in self.trained_sizes]

    def size_warning(
        self, height: int, width: int, how: str = "leave --height and --width out"
    ) -> str | None:
        """A warning for a size the model was not trained at (None when it was, or when it knows any size)."""
        if self.knows_size(height, width):
            return None
        sizes = [tuple(s) for s in self.trained_sizes]
        known = " or ".join(f"{w}x{h}" for h, w in sizes)
        return (
            f"the model was trained at {known} only; at {width}x{height} expect noise rather than the prompt "
            f"({how} for its size)"
        )

    @property
    def is_student(self) -> bool:
        """A folder that borrows its other components from `base_model`."""
        return self.base_model is not None

    def over(self, base: GenerationDefaults) -> GenerationDefaults:
        """These defaults, with `base`'s wherever these are None (a student over its base model's)."""
        merged = {
            f.name: getattr(self, f.name) if getattr(self, f.name) is not None else getattr(base, f.name)
            for f in fields(self)
        }
        return GenerationDefaults(**merged)

    def resolve(self, **values: Any) -> dict[str, Any]:
        """`values` (keyed by field name) with each None replaced by this default, else the released model's."""
        unknown = sorted(set(values) - {f.name for f in fields(self)})
        if unknown:
            raise ValueError(f"no generation defaults for {unknown}")
        merged = self.over(RELEASED)
        return {k: v if v is not None else getattr(merged, k) for k, v in values.items()}

    def fill(self, steps: int | None, guidance: Any, scale: float | None, shift: float | None):
        """(steps, guidance, guidance scale, shift) where the call left None (then the pipeline's own: 50 steps)."""
        r = self.resolve(num_inference_steps=steps, guidance=guidance, guidance_scale=scale, shift=shift)
        return r["num_inference_steps"], r["guidance"], r["guidance_scale"], r["shift"]

    def fill_size(self, height: int | None, width: int | None, num_frames: int | None, negative_prompt: Any):
        """(height, width, num_frames, negative prompt) where the call left None: this model's, else the released
        model's 736x1280, 121 frames (a None negative prompt stays None: the pipeline's trained default)."""
        r = self.resolve(height=height, width=width, num_frames=num_frames, negative_prompt=negative_prompt)
        return r["height"], r["width"], r["num_frames"], r["negative_prompt"]

    @classmethod
    def read(cls, folder: str | os.PathLike) -> GenerationDefaults | None:
        path = Path(folder) / GENERATION_CONFIG_NAME
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON: {exc}") from exc
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{path} has unknown keys {unknown}; known: {sorted(known)}")
        return cls(**data)

    def write(self, folder: str | os.PathLike) -> Path:
        """Write atomically (a temporary file, then a rename; the temporary file is removed if anything fails)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{GENERATION_CONFIG_NAME}.tmp"
        try:
            tmp.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")
            os.replace(tmp, folder / GENERATION_CONFIG_NAME)
        finally:
            tmp.unlink(missing_ok=True)
        return folder / GENERATION_CONFIG_NAME


def check_condition_guidance(scale: float) -> float:
    """`scale` when it is a usable reconstruction guidance scale (>= 0), else ValueError naming it."""
    if scale < 0:
        raise ValueError(f"condition_guidance must be >= 0 (0 = off), got {scale}")
    return scale


# The released model's values for the keys it has one for (guidance and shift come from its folder's configs).
RELEASED = GenerationDefaults(
    num_inference_steps=STEPS,
    height=HEIGHT,
    width=WIDTH,
    num_frames=NUM_FRAMES,
    conditioning_blur=CONDITIONING_BLUR,
    keep_first_frame=KEEP_FIRST_FRAME,
    repaint_first_frame=REPAINT_FIRST_FRAME,
    decoder_fit_steps=DECODER_FIT_STEPS,
    condition_guidance=CONDITION_GUIDANCE,
    fps=FPS,
)


def mp4_rate(fps: float) -> int:
    """A frame rate (a clip's, a recipe's data.fps) as a video of ours is written at: rounded, in `FPS_RANGE`."""
    return min(max(round(fps), 1), MAX_FPS)


def fill_request(request: Any) -> Any:
    """A generate request (`options.GenerateRequest`) with the size, frame count, steps, negative prompt and frame
    rate it left None taken from its model's defaults (its folder's generation_config.json, else the released
    model's), as `generate` and the service fill them; guidance and shift stay for the pipeline's configs."""
    filled = model_defaults(request.model).resolve(
        height=request.height,
        width=request.width,
        num_frames=request.num_frames,
        num_inference_steps=request.steps,
        negative_prompt=request.negative_prompt,
        fps=request.fps,
    )
    filled["steps"] = filled.pop("num_inference_steps")
    return replace(request, **filled)


def model_folder(model: str | os.PathLike) -> Path | None:
    """A local folder or a shipped model's; None for a Hub id (not downloaded just to read its defaults)."""
    from .hub import shipped_model

    path = Path(model).expanduser()
    return path if path.is_dir() else shipped_model(str(model))


def stored_defaults(model: str | os.PathLike, _depth: int = 0) -> GenerationDefaults | None:
    """The model's `GenerationDefaults` over those of the model it builds on (a student's base model, a training
    output's components; a chain up to 4 deep), as the pipelines load it; None when none of them has any."""
    from .model_folder import defaults_base, folder_defaults  # a training output's size comes from its recipe

    folder = model_folder(model)
    if folder is None:
        return None
    stored = folder_defaults(folder)
    base_model = defaults_base(folder, stored)
    if base_model is not None and _depth < 4:
        base = stored_defaults(base_model, _depth + 1)
        if base is not None:
            stored = base if stored is None else stored.over(base)
    return stored


def model_defaults(model: str | os.PathLike) -> GenerationDefaults:
    """What a model generates with when a call leaves a value None: its stored defaults over the released model's."""
    stored = stored_defaults(model)
    return RELEASED if stored is None else stored.over(RELEASED)
