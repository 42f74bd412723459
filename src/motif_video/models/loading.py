"""Strict loading and atomic saving of transformer folders (the released diffusers layout).

Loading never guesses: an unknown config key, a missing or unexpected weight, or a shape mismatch is an error that
names the offending entries. Weights are read with safetensors; pickled `.bin` files are refused unless the caller
passes `allow_pickle=True` (and even then they are read with `weights_only=True`).
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
from safetensors.torch import load_file

from ..hub import resolve_folder

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
WEIGHTS_INDEX_NAME = "diffusion_pytorch_model.safetensors.index.json"
PICKLE_NAMES = ("diffusion_pytorch_model.bin", "diffusion_pytorch_model.bin.index.json")

# Keyword arguments diffusers' pipeline loader may pass; each is accepted only with a value we honour.
_IGNORED_IF_DEFAULT = {
    "low_cpu_mem_usage": (True, False, None),  # we always build on the meta device and assign
    "device_map": (None,),
    "max_memory": (None,),
    "offload_folder": (None,),
    "offload_state_dict": (None, False),
    "quantization_config": (None,),
    "use_safetensors": (None, True),
    "output_loading_info": (False,),
    "provider": (None,),
    "sess_options": (None,),
    "disable_mmap": (False,),
    "dduf_entries": (None,),
    "use_flashpack": (False,),
    "flashpack_config": (None,),
    "from_flax": (False,),
    "force_download": (False,),
    "proxies": (None,),
    "mirror": (None,),
    "_commit_hash": None,  # any value
}


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
    pretrained_model_name_or_path: str | os.PathLike,
    subfolder: str | None = None,
    torch_dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
    allow_pickle: bool = False,
    variant: str | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool | None = None,
    token: str | bool | None = None,
    **kwargs: Any,
) -> Any:
    """Build `cls` from a folder's config.json on the meta device and assign its weights, strictly."""
    _check_loader_kwargs(kwargs)
    folder = resolve_folder(
        pretrained_model_name_or_path,
        subfolder=subfolder,
        revision=revision,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
        token=token,
    )
    config = read_config(cls, folder)
    files = weight_files(folder, allow_pickle=allow_pickle, variant=variant)
    shapes = _stored_shapes(files)
    layout = detect_cross_attention_layout(list(shapes))
    with torch.device("meta"):
        model = cls(**config, **({"cross_attention_layout": layout} if layout else {}))
    check_state_dict(model, shapes, folder)

    state: dict[str, torch.Tensor] = {}
    for file in files:
        state.update(_read_weights(file))
    if torch_dtype is not None:
        state = {k: v.to(torch_dtype) for k, v in state.items()}
    else:
        state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    model.register_to_config(_name_or_path=str(pretrained_model_name_or_path))
    model.eval()
    return model.to(device) if device is not None else model


def read_config(cls: type, folder: Path) -> dict[str, Any]:
    """The constructor arguments stored in `folder/config.json` (metadata keys `_*` dropped)."""
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise ValueError(f"{folder} is not a transformer folder: it has no {CONFIG_NAME}")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
    allowed = set(inspect.signature(cls.__init__).parameters) - {"self", *cls.ignore_for_config}
    allowed |= set(
        getattr(cls, "optional_config_keys", ())
    )  # keys saved only when set (e.g. guidance_embeds)
    config = {k: v for k, v in config.items() if not k.startswith("_")}
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise ValueError(
            f"{path} has config keys this model does not know: {unknown}; known keys: {sorted(allowed)}"
        )
    return config


def weight_files(folder: Path, allow_pickle: bool = False, variant: str | None = None) -> list[Path]:
    """The safetensors file(s) of a folder: one file or the shards named by an index."""
    name, index = _variant(WEIGHTS_NAME, variant), _variant(WEIGHTS_INDEX_NAME, variant)
    if (folder / name).is_file():
        return [folder / name]
    if (folder / index).is_file():
        shards = sorted(set(json.loads((folder / index).read_text())["weight_map"].values()))
        missing = [s for s in shards if not (folder / s).is_file()]
        if missing:
            raise ValueError(f"{folder / index} names shards that are not in the folder: {missing}")
        return [folder / s for s in shards]
    pickles = [
        folder / _variant(p, variant) for p in PICKLE_NAMES if (folder / _variant(p, variant)).is_file()
    ]
    if pickles:
        if not allow_pickle:
            raise ValueError(
                f"{folder} holds only pickled weights ({pickles[0].name}); pickles can run code when loaded, so they "
                "are refused. Convert them to safetensors, or pass allow_pickle=True if you trust the file."
            )
        if pickles[0].name.endswith(".index.json"):
            shards = sorted(set(json.loads(pickles[0].read_text())["weight_map"].values()))
            return [folder / s for s in shards]
        return pickles
    raise ValueError(f"{folder} has no weights: expected {name} or {index}")


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
        raise ValueError(f"weights in {where} do not match the model config:\n  " + "\n  ".join(problems))


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
    if file.suffix == ".safetensors":
        try:
            return load_file(str(file))
        except Exception as exc:
            raise ValueError(f"cannot read {file}: {exc} (is the file truncated?)") from exc
    return torch.load(file, map_location="cpu", weights_only=True)


def _variant(name: str, variant: str | None) -> str:
    if not variant:
        return name
    stem, _, ext = name.partition(".")
    return f"{stem}.{variant}.{ext}"


def _check_loader_kwargs(kwargs: dict[str, Any]) -> None:
    problems = []
    for key, value in kwargs.items():
        if key not in _IGNORED_IF_DEFAULT:
            problems.append(f"unknown option {key}={value!r}")
        elif _IGNORED_IF_DEFAULT[key] is not None and value not in _IGNORED_IF_DEFAULT[key]:
            problems.append(f"{key}={value!r} is not supported (allowed: {_IGNORED_IF_DEFAULT[key]})")
    if problems:
        raise ValueError("cannot load the transformer: " + "; ".join(problems))
