"""Strict loading and atomic saving of transformer folders (the released diffusers layout).

Loading is diffusers' `ModelMixin.from_pretrained` (so `quantization_config`, `device_map`, `low_cpu_mem_usage`,
variants and shards work as there) with our checks around it. It never guesses: an unknown config key or loader
option, a missing or unexpected weight, or a shape mismatch is an error that names the offending entries, checked
before any weight is read. Weights are read from safetensors; pickled `.bin` files are refused unless the caller
passes `allow_pickle=True` (and even then diffusers reads them with `weights_only=True`).
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from ..file_modes import give_default_mode
from ..hub import resolve_folder
from ..weights_fingerprint import note_weight_files

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
WEIGHTS_INDEX_NAME = "diffusion_pytorch_model.safetensors.index.json"
PICKLE_NAMES = ("diffusion_pytorch_model.bin", "diffusion_pytorch_model.bin.index.json")

# Options of diffusers' ModelMixin.from_pretrained (and those its pipeline loader passes), handed on unchanged.
DIFFUSERS_OPTIONS = frozenset(
    {
        "cache_dir", "device_map", "disable_mmap", "dtype", "flashpack_kwargs", "force_download",
        "ignore_mismatched_sizes", "local_files_only", "low_cpu_mem_usage", "max_memory", "offload_folder",
        "offload_state_dict", "output_loading_info", "proxies", "quantization_config", "revision", "subfolder",
        "token", "torch_dtype", "use_flashpack", "use_safetensors", "variant", "parallel_config",
        "keep_in_fp32_modules", "user_agent", "_commit_hash",
    }
)  # fmt: skip
# Options diffusers' pipeline loader passes to every component; accepted only with these values.
_PIPELINE_OPTIONS = {"provider": (None,), "sess_options": (None,), "provider_options": (None,),
                     "dduf_entries": (None,), "from_flax": (False,), "mirror": (None,)}  # fmt: skip


def detect_cross_attention_layout(keys: list[str]) -> str | None:
    """'separate' (diffusers `cross_attn.*`), 'shared' (`cross_attn_query_*`), or None when neither is present."""
    separate = any(".cross_attn.to_q." in k for k in keys)
    shared = any(".cross_attn_query_proj." in k for k in keys)
    if separate and shared:
        raise ValueError(
            "checkpoint mixes both cross-attention layouts (cross_attn.* and cross_attn_query_*)"
        )
    return "separate" if separate else "shared" if shared else None


def load_transformer(
    cls: type,
    base_from_pretrained: Callable[..., Any],
    pretrained_model_name_or_path: str | os.PathLike,
    **kwargs: Any,
) -> Any:
    """`base_from_pretrained` (diffusers') on the resolved local folder, after our checks; see the module doc.

    Ours on top of diffusers' options: `allow_pickle` (default False), `device` (move after loading), and shipped
    model names ("small"). Local folders, shipped models and Hub ids (downloaded first) are all accepted.
    """
    allow_pickle, device = kwargs.pop("allow_pickle", False), kwargs.pop("device", None)
    _check_loader_kwargs(cls, kwargs)
    hub = {
        k: kwargs.pop(k, None) for k in ("subfolder", "revision", "cache_dir", "local_files_only", "token")
    }
    folder = resolve_folder(pretrained_model_name_or_path, **hub)
    read_config(cls, folder)  # unknown keys named with the file they are in
    use_safetensors = kwargs.pop("use_safetensors", None)
    if use_safetensors is False and not allow_pickle:
        raise ValueError(
            "use_safetensors=False loads pickled weights: pass allow_pickle=True as well if you trust them"
        )
    if not allow_pickle:
        refuse_pickles(folder, kwargs.get("variant"))
    if (single := folder / _variant(WEIGHTS_NAME, kwargs.get("variant"))).is_file():
        _stored_shapes([single])  # a truncated file: our error before diffusers reads it
    kwargs["use_safetensors"] = None if allow_pickle else True
    output_loading_info = kwargs.pop("output_loading_info", False)
    model, info = base_from_pretrained(folder, output_loading_info=True, **kwargs)
    model.register_to_config(_name_or_path=str(pretrained_model_name_or_path))
    note_weight_files(model, "transformer", weight_files(folder, kwargs.get("variant")))
    model = model.to(device) if device is not None else model
    return (model, info) if output_loading_info else model


def load_single_file(
    cls: type,
    path_or_state_dict: str | os.PathLike | dict,
    config: str | os.PathLike | dict | None = None,
    torch_dtype: torch.dtype | None = None,
    dtype: torch.dtype | None = None,
    quantization_config: Any = None,
    device: str | torch.device | None = None,
    allow_pickle: bool = False,
    subfolder: str | None = None,
    **hub: Any,
) -> Any:
    """`from_single_file`: diffusers' file reading, quantizers and meta loading, with our checks (see the module).
    `subfolder` is, as in diffusers, the folder of `config` holding the transformer's config.json."""
    from accelerate import init_empty_weights
    from diffusers.loaders.single_file_utils import load_single_file_checkpoint
    from diffusers.models.model_loading_utils import load_model_dict_into_meta
    from diffusers.quantizers import DiffusersAutoQuantizer

    torch_dtype = dtype if dtype is not None else torch_dtype
    if isinstance(path_or_state_dict, dict):
        checkpoint = path_or_state_dict
    else:
        suffix = Path(str(path_or_state_dict)).suffix
        if suffix not in (".safetensors", ".gguf") and not allow_pickle:
            raise ValueError(
                f"{path_or_state_dict}: only .safetensors and .gguf files are read unless allow_pickle=True "
                "(pickles can run code when loaded)"
            )
        checkpoint = load_single_file_checkpoint(str(path_or_state_dict), **hub)
    quantizer = None
    if quantization_config is not None:
        quantizer = DiffusersAutoQuantizer.from_config(quantization_config)
        quantizer.validate_environment()
        torch_dtype = quantizer.update_torch_dtype(torch_dtype)
        checkpoint = quantizer.maybe_update_state_dict(checkpoint)
    config = _single_file_config(cls, config, list(checkpoint), subfolder)
    with init_empty_weights():
        model = cls.from_config(config)
    shapes = {k: tuple(getattr(v, "quant_shape", v.shape)) for k, v in checkpoint.items()}
    check_state_dict(
        model,
        shapes,
        str(path_or_state_dict) if not isinstance(path_or_state_dict, dict) else "the state dict",
    )
    if quantizer is not None:
        quantizer.preprocess_model(
            model=model, device_map=None, state_dict=checkpoint, keep_in_fp32_modules=[]
        )
    load_model_dict_into_meta(model, checkpoint, dtype=torch_dtype, device_map={"": torch.device(device or "cpu")},
                              hf_quantizer=quantizer, keep_in_fp32_modules=[], unexpected_keys=[])  # fmt: skip
    if quantizer is not None:
        quantizer.postprocess_model(model)
        model.hf_quantizer = quantizer
    if not isinstance(path_or_state_dict, dict) and Path(path_or_state_dict).is_file():
        note_weight_files(model, "transformer", [path_or_state_dict])
    return model.eval()


def _single_file_config(
    cls: type, config: str | os.PathLike | dict | None, keys: list[str], subfolder: str | None = None
) -> dict[str, Any]:
    """A model folder's (or Hub id's) transformer config (in its `subfolder`, else in `transformer/` when it has
    one), a dict, or the released config with the layout in `keys`. Without `config`, `subfolder` has nothing to
    name, as in diffusers (whose default config repo's transformer folder is the released config)."""
    if isinstance(config, dict):
        if subfolder:
            raise ValueError(
                f"subfolder={subfolder!r} names a folder of a model folder or Hub id given as config; "
                "config is a dict here: leave subfolder out"
            )
        return {k: v for k, v in config.items() if not k.startswith("_")}
    if config is not None:
        # a Hub id: its config files only, not the weights beside them
        if subfolder:
            return read_config(
                cls,
                resolve_folder(config, subfolder=subfolder, allow_patterns=[f"{subfolder}/{CONFIG_NAME}"]),
            )
        folder = resolve_folder(config, allow_patterns=[CONFIG_NAME, f"transformer/{CONFIG_NAME}"])
        return read_config(
            cls, folder / "transformer" if (folder / "transformer" / CONFIG_NAME).is_file() else folder
        )
    from ..presets import preset_config

    return {
        **preset_config("motif-video-2b"),
        "cross_attention_layout": detect_cross_attention_layout(keys) or "separate",
    }


def weight_files(folder: Path, variant: str | None = None) -> list[Path]:
    """The safetensors files holding a transformer folder's weights: the shards its index names, else its one file
    (none for pickled weights)."""
    index = folder / _variant(WEIGHTS_INDEX_NAME, variant)
    if index.is_file():
        return sorted({folder / name for name in json.loads(index.read_text())["weight_map"].values()})
    single = folder / _variant(WEIGHTS_NAME, variant)
    return [single] if single.is_file() else []


def refuse_pickles(folder: Path, variant: str | None) -> None:
    """A clear error for a folder whose only weights (of this variant) are pickles."""
    if any((folder / _variant(n, variant)).is_file() for n in (WEIGHTS_NAME, WEIGHTS_INDEX_NAME)):
        return
    pickles = [
        folder / _variant(p, variant) for p in PICKLE_NAMES if (folder / _variant(p, variant)).is_file()
    ]
    if pickles:
        raise ValueError(
            f"{folder} holds only pickled weights ({pickles[0].name}); pickles can run code when loaded, so they "
            "are refused. Convert them to safetensors, or pass allow_pickle=True if you trust the file."
        )


def check_checkpoint(model: torch.nn.Module, files: list[str | Path], where: str, quantized: bool) -> None:
    """Before diffusers reads the weights: the files' keys (and shapes, unless quantized) equal the model's."""
    stored = _stored_shapes([Path(f) for f in files])
    if quantized:  # quantizers change parameter shapes: check the names only
        expected = model.state_dict()
        stored = {k: tuple(expected[k].shape) if k in expected else shape for k, shape in stored.items()}
    check_state_dict(model, stored, where)


def read_config(cls: type, folder: Path) -> dict[str, Any]:
    """The constructor arguments stored in `folder/config.json` (metadata keys `_*` dropped)."""
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise ValueError(f"{folder} is not a transformer folder: it has no {CONFIG_NAME}")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
    allowed = config_keys(cls)
    config = {k: v for k, v in config.items() if not k.startswith("_") and k != "quantization_config"}
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise ValueError(
            f"{path} has config keys this model does not know: {unknown}; known keys: {sorted(allowed)}"
        )
    return config


def config_keys(cls: type) -> set[str]:
    """The keys a config of `cls` may hold: its constructor's arguments."""
    return set(inspect.signature(cls.__init__).parameters) - {"self"}


def check_state_dict(model: torch.nn.Module, stored: dict[str, tuple[int, ...]], where: Path | str) -> None:
    """Raise, naming every offending key, unless `stored` has exactly the model's keys and shapes."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(stored))
    unexpected = sorted(set(stored) - set(expected))
    mismatched = sorted(
        f"{k}: stored {list(stored[k])}, model {list(expected[k])}"
        for k in set(expected) & set(stored)
        if tuple(stored[k]) != expected[k]
    )
    problems = []
    for label, names in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
        if names:
            shown = ", ".join(names[:20]) + (f", ... ({len(names) - 20} more)" if len(names) > 20 else "")
            problems.append(f"{len(names)} {label}: {shown}")
    if problems:
        raise ValueError(
            f"weights in {where} do not match the model config:\n  "
            + "\n  ".join(problems)
            + _layout_hint(model, stored)
        )


def _layout_hint(model: torch.nn.Module, stored: dict[str, tuple[int, ...]]) -> str:
    layout = detect_cross_attention_layout(list(stored))
    configured = getattr(model, "cross_attention_layout", None)
    if layout is None or layout == configured:
        return ""
    return (
        f"\nThe weights hold the {layout!r} cross-attention layout but the config says {configured!r} (a config.json "
        f'without "cross_attention_layout" means "separate"): add "cross_attention_layout": "{layout}" to it.'
    )


def save_atomically(
    model: torch.nn.Module, save_directory: str | os.PathLike, save_fn: Callable[..., None], **kwargs: Any
) -> None:
    """Run `save_fn` into a temporary sibling folder, then move weights and finally config.json into place."""
    if kwargs.get("safe_serialization") is False:
        raise ValueError("motif-video saves safetensors only; safe_serialization=False is not supported")
    kwargs["safe_serialization"] = True
    dest = Path(save_directory)
    if dest.exists() and not dest.is_dir():
        raise ValueError(f"cannot save into {dest}: it exists and is not a folder")
    dest.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        save_fn(tmp, **kwargs)
        give_default_mode(tmp)  # safetensors writes 0600 files
        new_files = sorted(p.name for p in tmp.iterdir())
        # Stale weight files from an earlier save with another shard layout would be mistaken for current ones.
        for old in dest.glob("diffusion_pytorch_model*"):
            if old.name not in new_files:
                old.unlink()
        for name in sorted(
            new_files, key=lambda n: n == CONFIG_NAME
        ):  # config.json last: it marks completeness
            os.replace(tmp / name, dest / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _stored_shapes(files: list[Path]) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for file in files:
        if file.suffix != ".safetensors":
            shapes.update({k: tuple(v.shape) for k, v in _read_weights(file).items()})
            continue
        try:
            with safe_open(str(file), framework="pt") as f:
                for key in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                    shapes[key] = tuple(f.get_slice(key).get_shape())
        except Exception as exc:  # safetensors raises its own error types for truncated/corrupt headers
            raise ValueError(
                f"cannot read {file}: {exc} (is the file truncated or not safetensors?)"
            ) from exc
    return shapes


def _read_weights(file: Path) -> dict[str, torch.Tensor]:
    return torch.load(file, map_location="cpu", weights_only=True)


def _variant(name: str, variant: str | None) -> str:
    if not variant:
        return name
    stem, _, ext = name.partition(".")
    return f"{stem}.{variant}.{ext}"


def _check_loader_kwargs(cls: type, kwargs: dict[str, Any]) -> None:
    problems = []
    for key, value in kwargs.items():
        if key in _PIPELINE_OPTIONS:
            if value not in _PIPELINE_OPTIONS[key]:
                problems.append(f"{key}={value!r} is not supported (allowed: {_PIPELINE_OPTIONS[key]})")
        elif key not in DIFFUSERS_OPTIONS and key not in config_keys(cls):
            problems.append(f"unknown option {key}={value!r}")
    if problems:
        raise ValueError("cannot load the transformer: " + "; ".join(problems))
