"""`motif-video export`: transformers, students and LoRAs as one file for ComfyUI, diffusers' single-file loader and
GGUF runtimes.

What a source path can be, and what is written:

| source | `.safetensors` | `--gguf TYPE` |
|---|---|---|
| model folder (`model_index.json`; or a shipped name / Hub id), transformer folder, full student folder | transformer, released naming | yes |

The cross-attention layout (`layout`): "separate" is the released file's (diffusers reads it); "auto" writes it
when a shared-layout model folds exactly and keeps the shared keys otherwise (`checkpoint.released_state_dict`).
| LoRA file (any format `lora_keys` reads), LoRA folder, LoRA student folder | LoRA, `diffusion_model.` keys | refused |

Every file carries metadata (`motif_video.kind`, `motif_video.version`, `motif_video.base_model`, the transformer's
`motif_video.config`; a LoRA's rank and alpha, also under kohya's `ss_network_dim` / `ss_network_alpha`) and is
written atomically (a temporary file, then a rename).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from ..file_modes import write_safetensors
from . import checkpoint, lora_keys
from .gguf_files import CONFIG_KEY, write_gguf
from .lora_spec import LORA_WEIGHT_NAME


@dataclass(frozen=True)
class ExportResult:
    path: Path
    kind: str  # "transformer" or "lora"
    tensors: int
    notes: tuple[str, ...] = ()


def export(
    source: str | os.PathLike,
    output: str | os.PathLike,
    gguf: str | None = None,
    guidance_scale: float | None = None,
    base_model: str | None = None,
    dtype: torch.dtype | None = None,
    layout: str | None = None,
) -> ExportResult:
    """Export `source` (see the module table) to `output`; `gguf` a type such as "Q8_0" for a GGUF transformer.
    `guidance_scale` and `layout` (default "auto") apply to transformers only: given for a LoRA they are errors."""
    from .. import __version__

    source, output = Path(source), Path(output)
    if not source.exists() and not str(source).endswith(".safetensors"):
        from ..hub import resolve_folder

        source = resolve_folder(str(source))  # a shipped model name ("small") or a Hub id
    expected = ".gguf" if gguf else ".safetensors"
    if output.suffix != expected:
        raise ValueError(f"--output must end in {expected} for this export, got {output}")
    if not output.parent.is_dir():  # as generate and extend: a mistyped folder is an error, not a new folder
        raise ValueError(f"output folder {str(output.parent)!r} does not exist")
    if output.is_dir():
        raise ValueError(f"--output {str(output)!r} is a folder; give a file name ending in {expected}")
    lora_file, base = find_lora(source, base_model)
    meta = {"motif_video.version": __version__}
    if lora_file is not None:
        _check_lora_options(source, gguf, guidance_scale, layout)
        return export_lora(lora_file, output, base, meta, dtype)
    transformer, notes, base, scale = _load_transformer(source, guidance_scale)
    state = checkpoint.released_state_dict(
        transformer, guidance_scale=scale, dtype=dtype, layout=layout or "auto"
    )
    if transformer.cross_attention_layout == "shared":
        shared = any(".cross_attn_query_proj." in k for k in state)
        notes = (
            *notes,
            "cross-attention kept in the shared layout (query LayerNorm with a bias: no exact fold); diffusers' "
            "single-file loader cannot read it, Motif's ComfyUI nodes and motif-video can"
            if shared
            else "shared cross-attention folded into the released separate layout",
        )
    meta.update(
        {
            "motif_video.kind": "transformer",
            "motif_video.base_model": _base_name(base_model or base or str(source)),
            CONFIG_KEY: json.dumps(checkpoint.released_config(transformer, state), sort_keys=True),
        }
    )
    if scale is not None:
        meta["motif_video.folded_guidance_scale"] = str(scale)
    if gguf:
        counts = write_gguf(state, output, gguf, meta)
        notes = (*notes, "tensor types: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    else:
        save_safetensors(state, output, meta)
    return ExportResult(output, "transformer", len(state), notes)


def _check_lora_options(
    source: Path, gguf: str | None, guidance_scale: float | None, layout: str | None
) -> None:
    """The transformer export's options, refused by name for a LoRA rather than dropped without a word."""
    if gguf:
        raise ValueError(
            f"{source} is a LoRA; GGUF holds a whole transformer: export the LoRA as .safetensors, or "
            "export the base model with --gguf and load the LoRA on top of it"
        )
    given = [
        name
        for name, value in (("--guidance-scale", guidance_scale), ("--layout", layout))
        if value is not None
    ]
    if given:
        raise ValueError(
            f"{source} is a LoRA: {' and '.join(given)} apply to transformer exports only (a LoRA's modules are "
            "those of its base model, in its layout); leave them out"
        )


def export_lora(
    lora_file: Path,
    output: Path,
    base_model: str | None,
    meta: dict[str, str],
    dtype: torch.dtype | None = None,
) -> ExportResult:
    """A LoRA file in any format, checked against the base transformer's modules, written in ComfyUI's layout with
    its down and up weights in `dtype` (default: as stored); the alphas stay float32 scalars, exact."""
    if base_model is None:
        raise ValueError(
            f"exporting the LoRA {lora_file} needs its base model (--base-model: folder, shipped name or Hub id) "
            "to check its modules and shapes"
        )
    state, file_meta = read_lora(lora_file)
    adapter = lora_keys.parse_lora(state, base_linear_shapes(base_model), file_meta, source=str(lora_file))
    ranks = Counter(layer.rank for layer in adapter.values())
    alphas = Counter(layer.alpha for layer in adapter.values())
    rank, alpha = ranks.most_common(1)[0][0], alphas.most_common(1)[0][0]
    meta = {
        **meta,
        "motif_video.kind": "lora",
        "motif_video.base_model": _base_name(base_model),
        "motif_video.rank": str(rank),
        "motif_video.alpha": f"{alpha:g}",
        "ss_network_dim": str(rank),
        "ss_network_alpha": f"{alpha:g}",
    }
    notes = ()
    if len(ranks) > 1 or len(alphas) > 1:
        notes = (
            f"ranks {dict(ranks)} and alphas {dict(alphas)} vary by module; each module's alpha key holds its own",
        )
    out = lora_keys.to_comfyui(adapter)
    if dtype is not None:
        out = {k: v if k.endswith(".alpha") else v.to(dtype) for k, v in out.items()}
    save_safetensors(out, output, meta)
    return ExportResult(output, "lora", len(out), notes)


def _base_name(base_model: str) -> str:
    """The base model as metadata records it: a shipped model by its name ("small"), not this install's path."""
    from ..hub import shipped_name

    return shipped_name(base_model) or base_model


def find_lora(source: Path, given_base: str | None = None) -> tuple[Path | None, str | None]:
    """(the LoRA file, its base model: `given_base`, else the one its folder names) when `source` is a LoRA file,
    LoRA folder, LoRA student, or a LoRA training output (or its lora/ folder: the base is the transformer it trained
    on). A student's recorded base is looked for only when no base is given (it may be gone where the LoRA was
    copied to)."""
    from ..defaults import GenerationDefaults
    from ..model_folder import components_folder, resolve_base, training_output

    if source.is_file():
        if source.suffix != ".safetensors":
            raise ValueError(f"{source} is not a .safetensors file (LoRA) nor a model folder")
        from safetensors import safe_open

        try:
            with safe_open(str(source), framework="pt") as f:
                names = list(f.keys())
        except Exception as exc:
            raise ValueError(f"{source} is not a readable safetensors file ({exc})") from exc
        if not any("lora" in name.lower() for name in names):
            raise ValueError(
                f"{source} holds no LoRA weights (a transformer checkpoint?): export reads a transformer from "
                "a model folder, a shipped name or a Hub id, and a LoRA from its file"
            )
        return source, given_base
    if not source.is_dir():
        raise ValueError(f"{source} does not exist")
    defaults = GenerationDefaults.read(source)
    if defaults is not None and defaults.adapter == "lora":
        return source / "lora" / LORA_WEIGHT_NAME, given_base or resolve_base(defaults, source)
    run_folder = (
        source.parent if source.name in ("lora", "lora-ema") else source
    )  # a LoRA run, or its adapter
    adapter = source if run_folder != source else source / "lora"
    run = training_output(run_folder)
    if run is not None and (adapter / LORA_WEIGHT_NAME).is_file():
        return adapter / LORA_WEIGHT_NAME, given_base or components_folder(
            run.pretrained or run.components, run.folder
        )
    if (source / LORA_WEIGHT_NAME).is_file():
        return source / LORA_WEIGHT_NAME, given_base
    return None, None


def _load_transformer(
    source: Path, guidance_scale: float | None
) -> tuple[Any, tuple[str, ...], str | None, float | None]:
    """The transformer of a model, transformer or student folder, or of a trainer checkpoint (the run's
    architecture with the checkpoint's trained weights, as `generate --model CHECKPOINT` samples with); the
    guidance scale to fold for a student."""
    from ..defaults import GenerationDefaults
    from ..model_folder import training_output
    from ..models import MotifVideoTransformer

    notes: list[str] = []
    run = training_output(source)
    folder = source / "transformer" if (source / "transformer" / "config.json").is_file() else source
    if run is not None and run.checkpoint is not None:
        from ..training.export import checkpoint_transformer

        transformer = checkpoint_transformer(source, ema=False)
    elif (folder / "config.json").is_file():
        transformer = MotifVideoTransformer.from_pretrained(folder)
    else:
        raise ValueError(
            f"{source} is neither a model folder (transformer/config.json), a transformer folder (config.json), "
            "a student folder, a training checkpoint nor a LoRA"
        )
    defaults = GenerationDefaults.read(source)
    base = defaults.base_model if defaults is not None else None
    scale = guidance_scale
    if getattr(transformer.config, "guidance_embeds", False):
        if scale is None and defaults is not None and defaults.guidance_scale is not None:
            scale = float(defaults.guidance_scale)
        if scale is not None:
            notes.append(f"guidance embedding folded at guidance scale {scale:g}")
    return transformer, tuple(notes), base, scale


def base_linear_shapes(base_model: str) -> dict[str, tuple[int, int]]:
    """The Linear shapes of a base model's transformer, built from its config alone (no weights are read)."""
    from ..hub import resolve_folder
    from ..models import MotifVideoTransformer
    from ..models.loading import read_config
    from ..presets import PRESETS

    if base_model in PRESETS:
        config = dict(PRESETS[base_model])
    elif (Path(base_model) / "config.json").is_file() and not (Path(base_model) / "transformer").is_dir():
        config = read_config(
            MotifVideoTransformer, Path(base_model)
        )  # a transformer folder (a run's pretrained)
    else:
        config = read_config(MotifVideoTransformer, resolve_folder(base_model, subfolder="transformer"))
    with torch.device("meta"):  # in the base's own cross-attention layout: its LoRAs target those modules
        model = MotifVideoTransformer(**config)
    return lora_keys.linear_shapes(model)


def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and header metadata of a safetensors file (a clear error for a truncated or foreign file)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})  # noqa: SIM118
    except Exception as exc:
        raise ValueError(f"cannot read {path} as safetensors: {exc}") from exc


def read_lora(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A LoRA file's tensors and metadata, with the peft config of `adapter_config.json` beside it (peft's
    `save_pretrained` folder) added to the metadata when the file's header holds none."""
    state, metadata = read_safetensors(path)
    return state, lora_keys.with_peft_config(metadata, path.parent / lora_keys.PEFT_CONFIG_NAME)


def save_safetensors(state: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> Path:
    """Write `state` with `metadata` (plus format=pt) to `path` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_safetensors(state, path, {"format": "pt", **metadata})


def load_transformer_file(path: str | os.PathLike, config: dict[str, Any] | None = None, dtype=None):
    """A transformer from a single-file export (`.safetensors` in the released naming); config from its metadata."""
    state, meta = read_safetensors(Path(path))
    if config is None:
        if CONFIG_KEY not in meta:
            raise ValueError(f"{path} carries no transformer config ({CONFIG_KEY}); pass the config")
        config = json.loads(meta[CONFIG_KEY])
    return checkpoint.transformer_from_state_dict(state, config, dtype)
