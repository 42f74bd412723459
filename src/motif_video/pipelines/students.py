"""Distilled students: a folder with its own transformer (or a LoRA adapter) that borrows every other component from
its `base_model` (the folder's `generation_config.json`, `motif_video.defaults`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..defaults import GenerationDefaults
from ..interop.lora_spec import LORA_WEIGHT_NAME
from ..model_folder import missing_base, resolve_base
from ..weights_fingerprint import LORA_COMPONENT, note_weight_files


def load_lora(model, folder: str | Path, adapter_name: str = "default") -> None:
    """Load the adapter `folder` holds (`LORA_WEIGHT_NAME`, as `training.lora.save_lora` writes it; a peft
    `adapter_config.json` beside it read too) into `model`, through the checks every LoRA passes
    (`interop.lora_keys.parse_lora`: known keys, modules and shapes that fit, finite values, a plain LoRA)."""
    from ..interop.lora_keys import linear_shapes, parse_lora
    from .lora import MotifVideoLoraLoaderMixin, read_lora_file

    file = Path(folder) / LORA_WEIGHT_NAME
    state, metadata = read_lora_file(folder, LORA_WEIGHT_NAME)
    adapter = parse_lora(state, linear_shapes(model), metadata, source=str(file))
    name = MotifVideoLoraLoaderMixin.load_lora_into_transformer(adapter, model, adapter_name)
    note_weight_files(model, LORA_COMPONENT + name, [file])


def load_student_transformer(folder: Path, defaults: GenerationDefaults, base: Path, dtype=None):
    """The student's transformer: `folder/transformer`, or the base model's with `folder/lora` loaded into it."""
    from ..models import MotifVideoTransformer

    if defaults.adapter is None:
        if not (folder / "transformer").is_dir():
            raise ValueError(f"student folder {folder} has no transformer/ subfolder (adapter is null)")
        return MotifVideoTransformer.from_pretrained(folder, subfolder="transformer", torch_dtype=dtype)
    if not (folder / "lora").is_dir():
        raise ValueError(f"student folder {folder} has no lora/ subfolder (adapter is 'lora')")
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
    """`cls.from_pretrained(base_model, transformer=<the student>)`, with the student's generation defaults; a
    `transformer` in `kwargs` (the student's weights loaded elsewhere, e.g. from a GGUF file) replaces its own."""
    from ..hub import resolve_folder, shipped_model

    base = resolve_base(defaults, folder)
    dtype = kwargs.get("torch_dtype") or kwargs.get("dtype")
    hub = {k: kwargs[k] for k in ("revision", "cache_dir", "local_files_only", "token") if k in kwargs}
    try:
        base_folder = resolve_folder(base, **hub)
    except ValueError as exc:  # a relative path found nowhere, tried as a Hub id: say where it was looked for
        if Path(base).expanduser().is_absolute() or shipped_model(base) is not None:
            raise
        raise ValueError(f"{missing_base(folder, base)}; as a Hub id: {exc}") from exc
    if kwargs.get("transformer") is None:
        kwargs = {
            **kwargs,
            "transformer": load_student_transformer(folder, defaults, base_folder, dtype),
        }
    # a student distilled on an earlier VAE's latents than its base model's carries that VAE
    if (folder / "vae").is_dir() and "vae" not in kwargs:
        from diffusers import AutoencoderKLWan

        kwargs["vae"] = AutoencoderKLWan.from_pretrained(folder / "vae", torch_dtype=dtype)
    pipe = cls.from_pretrained(base, **kwargs)
    pipe.generation_defaults = defaults.over(pipe.generation_defaults)  # size, negative prompt: the base's
    return pipe
