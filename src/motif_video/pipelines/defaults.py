"""Generation defaults stored beside a model: `generation_config.json`, and student folders that reuse a base model.

A distilled student is a folder holding `transformer/` (a full student) or `lora/` (an adapter) and this file:

    {"num_inference_steps": 4, "shift": 15.0, "guidance": "apg", "guidance_scale": 8.0,
     "base_model": "small", "adapter": null, "distillation": {...how it was made...}}

`base_model` (a folder, a shipped model name or a Hub id) supplies every other component (VAE, text encoder,
tokenizer, scheduler, guider), so a student ships without copies of them; a student folder that also holds `vae/`
(one distilled on the latents of an earlier VAE than its base model's) decodes with that one. Call arguments always
win over these defaults; a full model folder may carry the same file with only the generation keys.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..model_defaults import RELEASED_DEFAULTS

GENERATION_CONFIG_NAME = "generation_config.json"
ADAPTERS = (None, "lora")


@dataclass(frozen=True)
class GenerationDefaults:
    num_inference_steps: int | None = None
    shift: float | None = None
    guidance: str | None = None  # "apg", "cfg" or "none"
    guidance_scale: float | None = None
    base_model: str | None = None
    adapter: str | None = (
        None  # None: `transformer/` holds the student; "lora": `lora/` adapts the base model's
    )
    distillation: dict[str, Any] = field(default_factory=dict)  # provenance, not read by the pipeline
    # Size and negative prompt a model was trained for (read by `generate` and `eval`; the released model has none).
    height: int | None = None
    width: int | None = None
    num_frames: int | None = None
    negative_prompt: str | None = None
    conditioning_blur: float | None = None  # I2V: the timestep-aware blur strength the model was trained with
    keep_first_frame: bool | None = None  # I2V: hold latent frame 0 on the image's path (the I2V pipeline)

    def __post_init__(self) -> None:
        if self.num_inference_steps is not None and self.num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {self.num_inference_steps}")
        if self.guidance not in (None, "apg", "cfg", "none"):
            raise ValueError(f"guidance must be one of apg, cfg, none, got {self.guidance!r}")
        if self.adapter not in ADAPTERS:
            raise ValueError(f"adapter must be one of {list(ADAPTERS)}, got {self.adapter!r}")

    @property
    def is_student(self) -> bool:
        """A folder that borrows its other components from `base_model`."""
        return self.base_model is not None

    def fill(self, steps: int | None, guidance: Any, scale: float | None, shift: float | None):
        """Call arguments with these defaults (then the pipeline's own: 50 steps) where the call left None."""
        steps = steps if steps is not None else (self.num_inference_steps or RELEASED_DEFAULTS["steps"])
        guidance = guidance if guidance is not None else self.guidance
        scale = scale if scale is not None else self.guidance_scale
        shift = shift if shift is not None else self.shift
        return steps, guidance, scale, shift

    def over(self, base: GenerationDefaults) -> GenerationDefaults:
        """These defaults, with `base`'s wherever these are None (a student over its base model's)."""
        merged = {
            f.name: getattr(self, f.name) if getattr(self, f.name) is not None else getattr(base, f.name)
            for f in fields(self)
        }
        return GenerationDefaults(**merged)

    def fill_size(self, height: int | None, width: int | None, num_frames: int | None, negative_prompt: Any):
        """Size and negative prompt where the call left None: this model's, else the released model's 736x1280,
        121 frames (a None negative prompt stays None: the pipeline's trained default)."""
        released = RELEASED_DEFAULTS
        height = height if height is not None else (self.height or released["height"])
        width = width if width is not None else (self.width or released["width"])
        num_frames = num_frames if num_frames is not None else (self.num_frames or released["num_frames"])
        negative_prompt = negative_prompt if negative_prompt is not None else self.negative_prompt
        return height, width, num_frames, negative_prompt

    @classmethod
    def read(cls, folder: str | os.PathLike) -> GenerationDefaults | None:
        path = Path(folder) / GENERATION_CONFIG_NAME
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON: {exc}") from exc
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{path} has unknown keys {unknown}; known: {sorted(known)}")
        return cls(**data)

    def write(self, folder: str | os.PathLike) -> Path:
        """Write atomically (a temporary file, then a rename)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{GENERATION_CONFIG_NAME}.tmp"
        tmp.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")
        os.replace(tmp, folder / GENERATION_CONFIG_NAME)
        return folder / GENERATION_CONFIG_NAME


def resolve_base(defaults: GenerationDefaults, folder: Path) -> str:
    """`base_model` as given, or relative to the student folder when that names an existing folder."""
    base = defaults.base_model
    relative = folder / base
    return str(relative) if not Path(base).is_absolute() and relative.is_dir() else base


def load_student_transformer(folder: Path, defaults: GenerationDefaults, base: Path, dtype=None):
    """The student's transformer: `folder/transformer`, or the base model's with `folder/lora` loaded into it."""
    from ..models import MotifVideoTransformer

    if defaults.adapter is None:
        if not (folder / "transformer").is_dir():
            raise ValueError(f"student folder {folder} has no transformer/ subfolder (adapter is null)")
        return MotifVideoTransformer.from_pretrained(folder, subfolder="transformer", torch_dtype=dtype)
    if not (folder / "lora").is_dir():
        raise ValueError(f"student folder {folder} has no lora/ subfolder (adapter is 'lora')")
    from ..training.lora import load_lora

    transformer = MotifVideoTransformer.from_pretrained(base, subfolder="transformer", torch_dtype=dtype)
    load_lora(transformer, folder / "lora")
    return transformer


def embedded_guidance(transformer, guidance):
    """For a guidance-distilled transformer: (a cond-only config, the scale it takes as input); else (config, None).

    `guidance` is a `GuidanceConfig`; mode "none" embeds scale 0 (cond only, as APG at scale 0).
    """
    from .guidance import GuidanceConfig

    if not getattr(transformer.config, "guidance_embeds", False):
        return guidance, None
    scale = 0.0 if guidance.mode == "none" else float(guidance.scale)
    return GuidanceConfig(mode="none"), scale


def load_student_pipeline(cls, folder: Path, defaults: GenerationDefaults, kwargs: dict[str, Any]):
    """`cls.from_pretrained(base_model, transformer=<the student>)`, with the student's generation defaults."""
    from ..hub import resolve_folder

    base = resolve_base(defaults, folder)
    dtype = kwargs.get("torch_dtype") or kwargs.get("dtype")
    hub = {k: kwargs[k] for k in ("revision", "cache_dir", "local_files_only", "token") if k in kwargs}
    kwargs = {
        **kwargs,
        "transformer": load_student_transformer(folder, defaults, resolve_folder(base, **hub), dtype),
    }
    # a student distilled on an earlier VAE's latents than its base model's carries that VAE
    if (folder / "vae").is_dir() and "vae" not in kwargs:
        from diffusers import AutoencoderKLWan

        kwargs["vae"] = AutoencoderKLWan.from_pretrained(folder / "vae", torch_dtype=dtype)
    pipe = cls.from_pretrained(base, **kwargs)
    pipe.generation_defaults = defaults.over(pipe.generation_defaults)  # size, negative prompt: the base's
    return pipe
