"""diffusers' LoRA conventions on our pipelines, with every format `interop.lora_keys` reads.

`MotifVideoLoraLoaderMixin` builds on diffusers' `LoraBaseMixin` (which gives `set_adapters`, `disable_lora`,
`enable_lora`, `delete_adapters`, `get_active_adapters`, `unload_lora_weights`) and peft:

    pipe.load_lora_weights("style.safetensors", adapter_name="style")       # diffusers, kohya/musubi, ComfyUI keys
    pipe.load_lora_weights("user/repo", weight_name="x.safetensors", adapter_name="x")
    pipe.set_adapters(["style", "x"], adapter_weights=[0.8, 0.5])   # or weights=[...]
    pipe.fuse_lora(); ...; pipe.unfuse_lora()                               # unfuse restores the weights bit-exactly
    pipe.unload_lora_weights()                                      # after fuse_lora: the LoRA stays baked in

A file is converted to one canonical adapter on load; an unknown key, a module the transformer lacks or a shape that
does not fit is a `ValueError` naming it. `fuse_lora` keeps a copy of each weight it changes, so `unfuse_lora`
restores them exactly (peft's subtraction would leave rounding differences); the copy costs the memory of the
adapted layers' weights until `unfuse_lora`.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch
from diffusers.loaders.lora_base import LoraBaseMixin

from ..file_modes import write_safetensors
from ..interop import lora_keys
from ..interop.lora_keys import LORA_PREFIX
from ..interop.lora_spec import LORA_WEIGHT_NAME, local_lora_file
from ..weights_fingerprint import LORA_COMPONENT, note_weight_files


def save_lora(
    model: torch.nn.Module, folder: str | Path, adapter_name: str = "default", weight_name: str | None = None
) -> Path:
    """Write `model`'s adapter `adapter_name` as `folder/pytorch_lora_weights.safetensors` (atomically); returns
    the file."""
    from peft.utils import get_peft_model_state_dict

    state = get_peft_model_state_dict(model, adapter_name=adapter_name)
    return write_lora(state, model.peft_config[adapter_name].to_dict(), folder, weight_name)


def write_lora(
    state: dict[str, torch.Tensor],
    config: dict[str, Any] | None,
    folder: str | Path,
    weight_name: str | None = None,
) -> Path:
    """An adapter's peft state dict (keys without the `transformer.` prefix) and config written in diffusers' LoRA
    format: the keys prefixed, the config as the header's `lora_adapter_metadata`."""
    import json

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    metadata = {"format": "pt"}
    if config:
        config = {k: sorted(v) if isinstance(v, set) else v for k, v in config.items()}
        metadata["lora_adapter_metadata"] = json.dumps(
            {f"{LORA_PREFIX}.{k}": v for k, v in config.items()}, sort_keys=True
        )
    state = {f"{LORA_PREFIX}.{k}": v for k, v in state.items()}
    return write_safetensors(state, folder / (weight_name or LORA_WEIGHT_NAME), metadata)


# diffusers' options for reading a LoRA from the Hub, handed to `hf_hub_download`.
HUB_OPTIONS = ("revision", "cache_dir", "token", "local_files_only", "subfolder", "force_download")
# The other keywords diffusers' `load_lora_weights` / `lora_state_dict` take (checked by `_check_lora_kwargs`).
OTHER_OPTIONS = ("use_safetensors", "proxies", "low_cpu_mem_usage")


def lora_file(path_or_repo: str | os.PathLike, weight_name: str | None = None, **hub: Any) -> Path:
    """The .safetensors file of a LoRA: a file, a folder holding one, or a Hub repo id (downloaded, with the
    `adapter_config.json` beside it when it has one: a peft adapter's alpha is there)."""
    file = local_lora_file(path_or_repo, weight_name)
    if file is None:
        from huggingface_hub import hf_hub_download

        name = weight_name or LORA_WEIGHT_NAME
        file = Path(hf_hub_download(str(path_or_repo), name, **hub))
        _fetch_peft_config(str(path_or_repo), name, hub)
    return file


def read_lora_file(
    path_or_repo: str | os.PathLike, weight_name: str | None = None, **hub: Any
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, header metadata) of a LoRA (see `lora_file`). A peft folder's `adapter_config.json` joins the
    metadata as diffusers' `lora_adapter_metadata` when the header holds no config: it holds the LoRA's alpha."""
    from ..interop.export import read_lora

    return read_lora(lora_file(path_or_repo, weight_name, **hub))


def _fetch_peft_config(repo: str, weight_name: str, hub: dict[str, Any]) -> None:
    """Download the `adapter_config.json` beside `weight_name` in a Hub repo, if it has one (a peft adapter), so
    that it lies beside the downloaded weights."""
    import contextlib
    import posixpath

    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    config = posixpath.join(posixpath.dirname(weight_name), lora_keys.PEFT_CONFIG_NAME)
    with contextlib.suppress(EntryNotFoundError):  # a diffusers or ComfyUI LoRA has none
        hf_hub_download(repo, config, **hub)


class MotifVideoLoraLoaderMixin(LoraBaseMixin):
    """LoRA loading, weighting, fusing and unloading for the pipeline's transformer (diffusers' API)."""

    _lora_loadable_modules = ["transformer"]
    transformer_name = "transformer"

    @classmethod
    def lora_state_dict(
        cls,
        pretrained_model_name_or_path_or_dict: Any,
        weight_name: str | None = None,
        return_lora_metadata: bool = False,
        **kwargs: Any,
    ) -> dict[str, torch.Tensor] | tuple[dict[str, torch.Tensor], dict[str, str]]:
        """The LoRA's tensors as stored, and with `return_lora_metadata` its header metadata too, as diffusers'
        loaders return them (a dict is returned as is, with no metadata)."""
        _check_lora_kwargs("lora_state_dict", ("weight_name", "return_lora_metadata"), kwargs)
        if isinstance(pretrained_model_name_or_path_or_dict, dict):
            state, metadata = dict(pretrained_model_name_or_path_or_dict), {}
        else:
            state, metadata = read_lora_file(
                pretrained_model_name_or_path_or_dict, weight_name, **_hub(kwargs)
            )
        return (state, metadata) if return_lora_metadata else state

    def load_lora_weights(
        self,
        pretrained_model_name_or_path_or_dict: Any,
        adapter_name: str | None = None,
        weight_name: str | None = None,
        hotswap: bool = False,
        **kwargs: Any,
    ) -> str:
        """Load a LoRA (file, folder, Hub id or state dict; any supported format) as `adapter_name`; returns the
        name used (diffusers' `default_<n>` when none is given). The new adapter becomes active beside the others;
        with `hotswap` it replaces the weights of the loaded adapter `adapter_name` in place, as in diffusers.
        The keywords are diffusers' (`HUB_OPTIONS`, `OTHER_OPTIONS`); any other is an error naming it."""
        _check_lora_kwargs("load_lora_weights", ("adapter_name", "weight_name", "hotswap"), kwargs)
        source = pretrained_model_name_or_path_or_dict
        if not isinstance(source, dict):  # the file itself, to name in errors
            source = lora_file(source, weight_name, **_hub(kwargs))
        state, metadata = self.lora_state_dict(source, return_lora_metadata=True)
        transformer = getattr(self, self.transformer_name)
        shapes = lora_keys.linear_shapes(transformer)
        name = None if isinstance(source, dict) else str(source)
        adapter = lora_keys.parse_lora(state, shapes, metadata, source=name)
        loaded = self.load_lora_into_transformer(
            adapter, transformer, adapter_name, hotswap, kwargs.get("low_cpu_mem_usage", False)
        )
        # for the record of what a video was made with (`weights_fingerprint`): a state dict has no file to name
        note_weight_files(transformer, LORA_COMPONENT + loaded, [name] if name is not None else [])
        return loaded

    @classmethod
    def load_lora_into_transformer(
        cls,
        adapter: lora_keys.Adapter,
        transformer: torch.nn.Module,
        adapter_name: str | None = None,
        hotswap: bool = False,
        low_cpu_mem_usage: bool = False,
    ) -> str:
        """Add a canonical adapter to `transformer` through peft (per-module ranks and alphas kept), or with
        `hotswap` put its weights in place of the loaded adapter `adapter_name`'s (diffusers' and peft's hotswap)."""
        from diffusers.utils.peft_utils import get_adapter_name

        name = adapter_name or get_adapter_name(transformer)
        loaded = list(getattr(transformer, "peft_config", {}))
        if hotswap and name not in loaded:
            raise ValueError(
                f"hotswap=True replaces a loaded adapter's weights: pass its adapter_name (loaded: {loaded}), "
                f"not {name!r}"
            )
        if name in loaded and not hotswap:
            raise ValueError(f"adapter name {name!r} is already in use; pass another adapter_name")
        state, config = lora_keys.to_peft(adapter)
        if hotswap and (config["rank_pattern"] or config["alpha_pattern"]):
            # peft's hotswap matches the patterns against parameter names, which module names never match: these
            # modules would keep the old adapter's scale
            varying = sorted({*config["rank_pattern"], *config["alpha_pattern"]})
            raise ValueError(
                f"hotswap needs one rank and alpha for every module (peft's hotswap ignores per-module ones); "
                f"this LoRA's differ on {len(varying)} modules ({', '.join(varying[:5])}): load it with another "
                "adapter_name instead"
            )
        param = next(transformer.parameters())
        dtype = param.dtype if param.is_floating_point() else torch.float32
        state = {k: v.to(device=param.device, dtype=dtype) for k, v in state.items()}
        active = list(_active_adapters(transformer))
        # peft warns on every adapter after the first: several are the point here
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
            transformer.load_lora_adapter(
                state,
                prefix=None,
                adapter_name=name,
                metadata=config,
                hotswap=hotswap,
                low_cpu_mem_usage=low_cpu_mem_usage,
            )
        if active and not hotswap:  # diffusers activates only the new adapter; keep the earlier ones too
            transformer.set_adapters([*active, name])
        return name

    @classmethod
    def save_lora_weights(
        cls,
        save_directory: str | os.PathLike,
        transformer_lora_layers: dict[str, torch.Tensor] | torch.nn.Module | None = None,
        is_main_process: bool = True,
        weight_name: str | None = None,
        save_function: Any = None,
        safe_serialization: bool = True,
        transformer_lora_adapter_metadata: dict[str, Any] | None = None,
        *,
        adapter_name: str = "default",
    ) -> Path | None:
        """Write a LoRA as `save_directory/pytorch_lora_weights.safetensors` (or `weight_name`) in diffusers' format,
        atomically: diffusers' call (`transformer_lora_layers`, the adapter's state dict from peft's
        `get_peft_model_state_dict`, with its config as `transformer_lora_adapter_metadata`) or a transformer
        holding the adapter `adapter_name` in its place. Safetensors only: no pickle is written."""
        if not safe_serialization:
            raise ValueError(
                "save_lora_weights writes safetensors only (safe_serialization=False would pickle)"
            )
        if save_function is not None:
            raise ValueError(
                "save_function is not supported: LoRA files are written atomically as safetensors"
            )
        if transformer_lora_layers is None:
            raise ValueError(
                "pass transformer_lora_layers (an adapter's state dict, or a transformer holding it)"
            )
        if not is_main_process:
            return None
        if isinstance(transformer_lora_layers, torch.nn.Module):
            return save_lora(transformer_lora_layers, save_directory, adapter_name, weight_name)
        return write_lora(
            dict(transformer_lora_layers), transformer_lora_adapter_metadata, save_directory, weight_name
        )

    def set_adapters(
        self,
        adapter_names: list[str] | str,
        adapter_weights: float | list[float] | None = None,
        *,
        weights: float | list[float] | None = None,
    ) -> None:
        """Activate `adapter_names` at `adapter_weights` (diffusers' pipeline name; `weights`, the transformer's
        name, is accepted too)."""
        if weights is not None and adapter_weights is not None:
            raise ValueError("pass adapter_weights or weights, not both")
        super().set_adapters(adapter_names, adapter_weights if weights is None else weights)

    def fuse_lora(
        self,
        components: list[str] | None = None,
        lora_scale: float = 1.0,
        safe_fusing: bool = False,
        adapter_names: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        """Merge the active (or named) adapters into the weights; the weights before are kept for `unfuse_lora`."""
        from peft.tuners.tuners_utils import BaseTunerLayer

        transformer = getattr(self, self.transformer_name)
        saved = self.__dict__.setdefault("_weights_before_fuse", {})
        for name, module in transformer.named_modules():
            if isinstance(module, BaseTunerLayer) and name not in saved:
                saved[name] = module.get_base_layer().weight.detach().clone()
        super().fuse_lora(
            components=components or ["transformer"],
            lora_scale=lora_scale,
            safe_fusing=safe_fusing,
            adapter_names=adapter_names,
            **kwargs,
        )

    def unfuse_lora(self, components: list[str] | None = None, **kwargs: Any) -> None:
        """Undo `fuse_lora`: the weights are restored bit-exactly from the copies `fuse_lora` kept."""
        super().unfuse_lora(components=components or ["transformer"], **kwargs)
        transformer = getattr(self, self.transformer_name)
        saved = self.__dict__.pop("_weights_before_fuse", {})
        with torch.no_grad():
            for name, weight in saved.items():
                transformer.get_submodule(name).get_base_layer().weight.copy_(weight)

    def unload_lora_weights(self) -> None:
        """Remove every adapter. As in diffusers, what `fuse_lora` merged stays in the weights: fusing, then
        unloading, bakes a LoRA into the transformer (to export or save it); `unfuse_lora` first to drop it."""
        self.__dict__.pop("_weights_before_fuse", None)
        super().unload_lora_weights()

    def delete_adapters(self, adapter_names: list[str] | str) -> None:
        """Remove the named adapters; what a fused one merged stays in the weights (as in diffusers). The copies
        `fuse_lora` kept no longer describe the weights, so they go: a later `unfuse_lora` of an adapter still fused
        undoes it by peft's subtraction."""
        self.__dict__.pop("_weights_before_fuse", None)
        super().delete_adapters(adapter_names)


def _hub(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The Hub download options among a loader's keywords (`HUB_OPTIONS`)."""
    return {k: kwargs[k] for k in HUB_OPTIONS if k in kwargs}


def _check_lora_kwargs(method: str, named: tuple[str, ...], kwargs: dict[str, Any]) -> None:
    """Only diffusers' keywords (`named`: the method's own), each with a value this loader honours: a misspelt one
    (`adapter_nam=`) is named instead of dropped."""
    unknown = sorted(set(kwargs) - {*HUB_OPTIONS, *OTHER_OPTIONS})
    if unknown:
        allowed = ", ".join([*named, *HUB_OPTIONS, *OTHER_OPTIONS])
        raise ValueError(f"{method} got unknown keyword arguments {unknown}; it takes {allowed}")
    if kwargs.get("use_safetensors") is False:
        raise ValueError(
            "LoRAs are read from safetensors files only: use_safetensors=False (pickles) is not supported"
        )
    if kwargs.get("proxies") is not None:
        raise ValueError(
            "proxies is not supported: huggingface_hub takes proxies from the environment (HTTPS_PROXY)"
        )


def _active_adapters(transformer: torch.nn.Module) -> list[str]:
    if not getattr(transformer, "_hf_peft_config_loaded", False):
        return []
    return list(transformer.active_adapters())


def apply_loras(
    pipe: MotifVideoLoraLoaderMixin, specs: tuple[str, ...] | list[str], fuse: bool = False
) -> list[str]:
    """Load each `PATH[:SCALE]` as adapter `lora_<i>`, set their scales together, and fuse them if asked; returns
    the adapter names (`generate --lora` / `--fuse-lora`, `eval --lora`)."""
    from ..interop.lora_spec import parse_lora_spec

    if fuse and not specs:
        raise ValueError("fuse_lora (--fuse-lora) needs at least one lora (--lora PATH[:SCALE])")
    names, scales = [], []
    for i, spec in enumerate(specs):
        path, scale = parse_lora_spec(spec)
        names.append(pipe.load_lora_weights(path, adapter_name=f"lora_{i}"))
        scales.append(scale)
    if names:
        pipe.set_adapters(names, adapter_weights=scales)
        if fuse:
            pipe.fuse_lora(adapter_names=names)
    return names
