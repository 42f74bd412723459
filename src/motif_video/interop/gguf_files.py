"""GGUF transformer files: writing (the `gguf` package) and loading, dequantised per layer on the fly.

The layout is the one of Motif's published GGUF files and of diffusers' GGUF loader (itself city96's ComfyUI-GGUF
convention): `general.architecture` = "motif_video", tensors under the released (bare diffusers) names, numpy shape
order (GGUF stores dimensions reversed; the reader undoes it), 1-D and small tensors and the input/output layers in
F32, every other weight in the chosen type. A weight whose row length is not a multiple of the type's block size
falls back to F16. The `comfy.gguf.orig_shape.<name>` convention (a reshaped tensor's real shape) is honoured on load.

Loading keeps quantised Linear weights packed and swaps those layers for diffusers' `GGUFLinear`, which dequantises
the weight at each call (so memory holds the packed bytes); other quantised tensors are dequantised once on load.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .choices import WRITE_TYPES

GGUF_ARCH = "motif_video"
# Kept in F32 whatever the type: the input embeddings and the output head (city96's convention for DiTs).
F32_PREFIXES = (
    "x_embedder.",
    "context_embedder.",
    "image_embedder.",
    "time_text_embed.",
    "norm_out.",
    "proj_out.",
)
SMALL_TENSOR = 1024  # tensors of at most this many values stay in F32
CONFIG_KEY = "motif_video.config"
ORIG_SHAPE_KEY = "comfy.gguf.orig_shape."
PREFIXES_STRIPPED = ("model.diffusion_model.", "diffusion_model.")


def tensor_type(name: str, shape: tuple[int, ...], qtype: str) -> str:
    """The GGUF type `name` is written in for a file of type `qtype`."""
    import gguf

    numel = int(np.prod(shape)) if shape else 1
    if len(shape) <= 1 or numel <= SMALL_TENSOR or name.startswith(F32_PREFIXES) or qtype == "F32":
        return "F32"
    block, _ = gguf.GGML_QUANT_SIZES[getattr(gguf.GGMLQuantizationType, qtype)]
    return qtype if shape[-1] % block == 0 else "F16"


def write_gguf(
    state: dict[str, torch.Tensor],
    path: str | os.PathLike,
    qtype: str,
    metadata: dict[str, str] | None = None,
) -> dict[str, int]:
    """Write `state` (released naming) as a GGUF file of type `qtype`, atomically; returns tensor counts per type."""
    import gguf

    if qtype not in WRITE_TYPES:
        raise ValueError(
            f"GGUF type {qtype!r} cannot be written here; allowed: {', '.join(WRITE_TYPES)} (K-quants such as Q4_K: "
            "export F16 and convert it with llama.cpp's llama-quantize)"
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    writer = gguf.GGUFWriter(str(tmp), arch=GGUF_ARCH)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_file_type(_file_type(qtype))
    for key, value in sorted((metadata or {}).items()):
        writer.add_string(key, value)
    counts: dict[str, int] = {}
    for name, tensor in state.items():
        kind = tensor_type(name, tuple(tensor.shape), qtype)
        counts[kind] = counts.get(kind, 0) + 1
        data = tensor.detach().float().cpu().numpy()
        gtype = getattr(gguf.GGMLQuantizationType, kind)
        if kind == "F32":
            writer.add_tensor(name, data)
        elif kind == "F16":
            writer.add_tensor(name, data.astype(np.float16))
        else:
            writer.add_tensor(name, gguf.quants.quantize(data, gtype), raw_dtype=gtype)
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return counts


def _file_type(qtype: str) -> int:
    import gguf

    names = {"F32": "ALL_F32", "F16": "MOSTLY_F16", "BF16": "MOSTLY_BF16"}
    return int(getattr(gguf.LlamaFileType, names.get(qtype, f"MOSTLY_{qtype}")))


def gguf_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The string metadata of a Motif-Video GGUF file (no tensor is read); other architectures are refused."""
    return _open(path)[1]


def _open(path: str | os.PathLike) -> tuple[Any, dict[str, str]]:
    import gguf

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"GGUF file {path} does not exist")
    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as exc:  # gguf raises bare ValueErrors/struct errors for foreign or truncated files
        raise ValueError(f"cannot read {path} as GGUF: {exc}") from exc
    metadata = {
        name: str(field.parts[field.data[-1]], "utf-8")
        for name, field in reader.fields.items()
        if len(field.types) == 1 and field.types[0] == gguf.GGUFValueType.STRING
    }
    arch = metadata.get("general.architecture")
    if arch != GGUF_ARCH:
        raise ValueError(f"{path} is a GGUF file of architecture {arch!r}, not {GGUF_ARCH!r} (Motif-Video)")
    return reader, metadata


def read_gguf(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state dict, string metadata) of a Motif-Video GGUF file; quantised tensors are diffusers `GGUFParameter`s."""
    from diffusers.models.model_loading_utils import load_gguf_checkpoint

    reader, metadata = _open(path)
    shapes = {
        name[len(ORIG_SHAPE_KEY) :]: tuple(int(field.parts[i][0]) for i in field.data)
        for name, field in reader.fields.items()
        if name.startswith(ORIG_SHAPE_KEY)
    }
    state = {}
    for name, tensor in load_gguf_checkpoint(str(path)).items():
        if name in shapes:
            if hasattr(tensor, "quant_type"):
                raise ValueError(f"{path}: quantised tensor {name} is stored reshaped; this is not supported")
            tensor = tensor.reshape(shapes[name])
        key = next((name[len(p) :] for p in PREFIXES_STRIPPED if name.startswith(p)), name)
        state[key] = tensor
    return state, metadata


def stored_shape(tensor: torch.Tensor) -> tuple[int, ...]:
    """The logical shape of a tensor read from GGUF (a quantised one decodes to `quant_shape`)."""
    return tuple(getattr(tensor, "quant_shape", tensor.shape))


def load_gguf_transformer(
    path: str | os.PathLike,
    config: dict[str, Any] | None = None,
    compute_dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
) -> nn.Module:
    """A `MotifVideoTransformer` whose quantised Linear layers stay packed (diffusers' `GGUFLinear`).

    `config`: the transformer's `config.json` keys; default: the one our exports embed (Motif's files carry none:
    pass the model folder's `transformer/config.json`).
    """
    from diffusers.quantizers.gguf.utils import GGUFLinear, dequantize_gguf_tensor

    from ..models import MotifVideoTransformer
    from ..models.loading import check_state_dict, detect_cross_attention_layout

    state, metadata = read_gguf(path)
    if config is None:
        if CONFIG_KEY not in metadata:
            raise ValueError(
                f"{path} carries no transformer config ({CONFIG_KEY}); give the model folder whose "
                "transformer/config.json it belongs to"
            )
        config = json.loads(metadata[CONFIG_KEY])
    config = {k: v for k, v in config.items() if not k.startswith("_")}
    layout = detect_cross_attention_layout(list(state)) or "separate"
    with torch.device("meta"):
        model = MotifVideoTransformer(**{**config, "cross_attention_layout": layout})
    check_state_dict(model, {k: stored_shape(v) for k, v in state.items()}, path)

    packed = {
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and hasattr(state.get(f"{name}.weight"), "quant_type")
    }
    for name in packed:
        old = model.get_submodule(name)
        with torch.device("meta"):
            new = GGUFLinear(
                old.in_features, old.out_features, old.bias is not None, compute_dtype=compute_dtype
            )
        new.requires_grad_(False)
        model.set_submodule(name, new)
    for key, value in state.items():
        module_name, _, attr = key.rpartition(".")
        module = model.get_submodule(module_name)
        if module_name in packed and attr == "weight":
            param = value  # a GGUFParameter: stays packed
        else:
            value = dequantize_gguf_tensor(value) if hasattr(value, "quant_type") else value
            param = nn.Parameter(value.to(compute_dtype), requires_grad=False)
        if attr in module._parameters:
            module._parameters[attr] = param
        else:
            module._buffers[attr] = param.data
    model.register_to_config(_name_or_path=str(path))
    model.eval()
    return model.to(device) if device is not None else model


def load_gguf_for_model(
    path: str | os.PathLike, model: str, compute_dtype: torch.dtype = torch.float32
) -> nn.Module:
    """The GGUF transformer that replaces `model`'s (a folder, shipped name or Hub id): its config is the one the
    file embeds, else `model`'s `transformer/config.json` (a student folder's own, else its base model's). A file
    whose embedded config does not fit the model's other components (`INTERFACE`: the latent, text and image widths
    they exchange with the transformer) is a ValueError naming the keys, before any weight is read."""
    embedded = gguf_metadata(path).get(CONFIG_KEY)
    if embedded is None:
        return load_gguf_transformer(path, _model_transformer_config(model), compute_dtype)
    try:
        config = _model_transformer_config(model)
    except ValueError:  # the file's own config is enough to build it; there is nothing to compare with
        config = {}
    theirs = json.loads(embedded)
    differ = [k for k in INTERFACE if k in theirs and k in config and theirs[k] != config[k]]
    if differ:
        pairs = ", ".join(f"{k} {theirs[k]} (the model's {config[k]})" for k in differ)
        raise ValueError(f"GGUF file {str(path)!r} is a transformer for another model than {model}: {pairs}")
    return load_gguf_transformer(path, None, compute_dtype)


def folded_guidance_scale(path: str | os.PathLike) -> float | None:
    """The guidance scale folded into a distilled student's exported transformer (`export --guidance-scale`, or the
    student's own): a pipeline runs it without guidance, cond only. None for a file without one."""
    value = gguf_metadata(path).get("motif_video.folded_guidance_scale")
    return None if value is None else float(value)


# The transformer config keys the rest of a pipeline depends on: latent channels in and out, the patch, the text
# encoder's and the image tower's widths.
INTERFACE = ("in_channels", "out_channels", "patch_size", "patch_size_t", "text_embed_dim", "image_embed_dim")


def _model_transformer_config(model: str) -> dict:
    """`model`'s transformer config: its `transformer/config.json`, else (a student with an adapter) its base's."""
    from ..defaults import GenerationDefaults
    from ..hub import resolve_folder
    from ..models import MotifVideoTransformer
    from ..models.loading import read_config

    folder = resolve_folder(model, allow_patterns=["*.json", "*/*.json"])
    if not (folder / "transformer" / "config.json").is_file():
        defaults = GenerationDefaults.read(folder)
        if defaults is None or defaults.base_model is None:
            raise ValueError(f"{model} has no transformer/config.json to read the GGUF file's config from")
        from ..model_folder import resolve_base

        folder = resolve_folder(resolve_base(defaults, folder), allow_patterns=["*.json", "*/*.json"])
    return read_config(MotifVideoTransformer, folder / "transformer")
