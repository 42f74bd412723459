"""LoRA state dicts in the community's key formats, converted to and from one canonical adapter.

The canonical adapter maps a transformer module path (diffusers naming, e.g. `transformer_blocks.0.attn.to_q`) to a
`LoraLayer(down [r, in], up [out, r], alpha)`; the layer adds `(alpha / r) * up @ down` to the module's weight.
The formats read:

| format | keys (for module `m`) | alpha |
|---|---|---|
| diffusers | `transformer.m.lora_A.weight`, `transformer.m.lora_B.weight` | `lora_adapter_metadata` (peft config), else r |
| peft | `m.lora_A.weight`, `m.lora_B.weight` (also under `base_model.model.`) | as diffusers, or `adapter_config.json` |
| kohya / musubi | `lora_unet_<m with . as _>.lora_down.weight`, `.lora_up.weight` | `.alpha` key, else r |
| comfyui | `diffusion_model.m.lora_down.weight` / `.lora_up.weight` (or `.lora_A` / `.lora_B`) | `.alpha` key, else r |

A peft config (diffusers' header metadata, or the `adapter_config.json` that peft's `save_pretrained` writes beside
`adapter_model.safetensors`) gives `lora_alpha` and its per-module `alpha_pattern`, matched as peft matches them; its
`r` / `rank_pattern` must agree with the weights' ranks. rsLoRA (`use_rslora`, scale alpha / sqrt(r)) is read as the
alpha giving that scale, alpha * sqrt(r). DoRA and LoRA biases are refused as such. A missing alpha means alpha = r (scale 1), as ComfyUI and
diffusers read such files. Every key must be understood:
an unknown key, a module the transformer does not have, a shape that does not fit the module, or a half of a pair
missing is a `ValueError` naming the keys; nothing is dropped silently.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

LoraFormat = Literal["diffusers", "peft", "kohya", "comfyui"]
LORA_FORMATS: tuple[str, ...] = ("diffusers", "peft", "kohya", "comfyui")

# Key prefix of each format (peft's saved files may also carry `base_model.model.`).
_PREFIXES: dict[str, tuple[str, ...]] = {
    "diffusers": ("transformer.",),
    "comfyui": ("diffusion_model.",),
    "kohya": ("lora_unet_",),
    "peft": ("base_model.model.", ""),
}
_DOWN = (".lora_A.weight", ".lora_down.weight")
_UP = (".lora_B.weight", ".lora_up.weight")
_ALPHA = ".alpha"
# The metadata key under which diffusers (and training/lora.py) store the peft LoRA config as JSON.
DIFFUSERS_METADATA_KEY = "lora_adapter_metadata"
# The file in which peft's `save_pretrained` stores the config, beside `adapter_model.safetensors`.
PEFT_CONFIG_NAME = "adapter_config.json"
# The diffusers pipeline LoRA file (`lora_spec.LORA_WEIGHT_NAME`) holds keys prefixed `transformer.`.
LORA_PREFIX = "transformer"


@dataclass(frozen=True)
class LoraLayer:
    """One module's low-rank update: weight += (alpha / rank) * up @ down."""

    down: torch.Tensor  # [r, in]
    up: torch.Tensor  # [out, r]
    alpha: float

    @property
    def rank(self) -> int:
        return int(self.down.shape[0])

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    def delta(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The weight update [out, in] this layer adds at adapter weight 1."""
        return self.scale * (self.up.to(dtype) @ self.down.to(dtype))


Adapter = dict[str, LoraLayer]


def linear_shapes(model: nn.Module) -> dict[str, tuple[int, int]]:
    """(out_features, in_features) of every Linear of `model` by module path: what a LoRA may target."""
    shapes = {}
    for name, module in model.named_modules():
        base = getattr(module, "base_layer", None)  # a module already wrapped by peft
        module = base if isinstance(base, nn.Linear) else module
        if isinstance(module, nn.Linear) and ".lora_" not in name and not name.endswith(".base_layer"):
            shapes[name] = (module.out_features, module.in_features)
    return shapes


def detect_format(keys: list[str]) -> LoraFormat:
    """The one format all `keys` are written in; a mix of formats or an unrecognised key is an error."""
    if not keys:
        raise ValueError("the LoRA state dict is empty")
    _refuse_variants(keys)
    found = Counter(_format_of(k) for k in keys)
    if None in found:
        unknown = [k for k in keys if _format_of(k) is None]
        raise ValueError(
            f"{len(unknown)} LoRA keys are in no known format ({', '.join(LORA_FORMATS)}): {_show(unknown)}"
        )
    if len(found) > 1:
        raise ValueError(f"the LoRA state dict mixes key formats: {dict(found)}")
    return next(iter(found))


def _refuse_variants(keys: list[str]) -> None:
    """LoRA variants whose keys are understood but whose update this adapter cannot express: named as what they
    are rather than as keys in no known format."""
    dora = [k for k in keys if "lora_magnitude_vector" in k or k.endswith(".dora_scale")]
    if dora:
        raise ValueError(
            f"DoRA is not supported: the LoRA holds {len(dora)} DoRA magnitude keys ({_show(dora)}); merge it into "
            "the model's weights, or train a plain LoRA"
        )
    biases = [k for k in keys if ".lora_" in k and k.endswith(".bias")]
    if biases:
        raise ValueError(
            f"LoRA biases are not supported (peft's lora_bias=True): {len(biases)} bias keys ({_show(biases)}); "
            "merge it into the model's weights, or train a LoRA without biases"
        )


def _format_of(key: str) -> LoraFormat | None:
    if not key.endswith((*_DOWN, *_UP, _ALPHA)):
        return None
    for fmt in ("diffusers", "comfyui", "kohya"):
        if key.startswith(_PREFIXES[fmt][0]):
            return fmt  # type: ignore[return-value]
    return "peft"


def parse_lora(
    state_dict: Mapping[str, torch.Tensor],
    shapes: Mapping[str, tuple[int, int]],
    metadata: Mapping[str, str] | None = None,
    source: str | None = None,
) -> Adapter:
    """The canonical adapter of a LoRA state dict in any known format, checked against the module `shapes`
    (`linear_shapes(transformer)`). `metadata` is the file's safetensors header (read for diffusers' peft config);
    `source` names the file in errors."""
    fmt = detect_format(list(state_dict))
    _check_finite(state_dict, source or "the LoRA state dict")
    parts: dict[str, dict[str, torch.Tensor]] = {}
    kohya_names = _kohya_names(shapes) if fmt == "kohya" else {}
    unknown_modules = []
    for key, value in state_dict.items():
        stem, part = _split(key)
        module = _module_of(stem, fmt, kohya_names)
        if module not in shapes:
            unknown_modules.append(key)
            continue
        if part in parts.setdefault(module, {}):
            raise ValueError(
                f"LoRA key {key} repeats the {part} of module {module} (written in two spellings)"
            )
        parts[module][part] = value
    if unknown_modules:
        raise ValueError(
            f"{len(unknown_modules)} LoRA keys name modules the transformer does not have (or that are not "
            f"Linear layers): {_show(unknown_modules)}"
        )
    config = _peft_config(metadata) if fmt in ("diffusers", "peft") else {}
    _check_config(config)
    adapter = {}
    incomplete = []
    for module, found in sorted(parts.items()):
        if "down" not in found or "up" not in found:
            incomplete.append(f"{module} (has {sorted(found)})")
            continue
        down, up = found["down"], found["up"]
        _check_shapes(module, down, up, shapes[module])
        rank = int(down.shape[0])
        _check_config_rank(config, module, rank)
        alpha = float(found["alpha"].item()) if "alpha" in found else _config_alpha(config, module, rank)
        adapter[module] = LoraLayer(down=down, up=up, alpha=alpha)
    if incomplete:
        raise ValueError(f"LoRA modules without both down and up weights: {_show(incomplete)}")
    return adapter


def _check_finite(state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Every tensor finite: one NaN or Inf in a LoRA spreads through the transformer and the video comes out
    black, with nothing else to say why."""
    for key, value in state_dict.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise ValueError(
                f"LoRA tensor {key} in {source} holds {bad} NaN or infinite values of {value.numel()}: the file is "
                "damaged or its training diverged, and the video made with it would be black"
            )


def _split(key: str) -> tuple[str, str]:
    for suffixes, part in ((_DOWN, "down"), (_UP, "up"), ((_ALPHA,), "alpha")):
        for suffix in suffixes:
            if key.endswith(suffix):
                return key[: -len(suffix)], part
    raise AssertionError(key)  # detect_format accepted only these suffixes


def _module_of(stem: str, fmt: str, kohya_names: Mapping[str, str]) -> str:
    if fmt == "kohya":
        return kohya_names.get(stem.removeprefix("lora_unet_"), stem)
    for prefix in _PREFIXES[fmt]:
        if prefix and stem.startswith(prefix):
            return stem[len(prefix) :]
    return stem


def _kohya_names(shapes: Mapping[str, tuple[int, int]]) -> dict[str, str]:
    """kohya's flattened module names (`transformer_blocks_0_attn_to_q`) -> module paths; clashes are errors."""
    names: dict[str, str] = {}
    for module in shapes:
        flat = module.replace(".", "_")
        if flat in names:
            raise ValueError(f"modules {names[flat]} and {module} have the same kohya name {flat}")
        names[flat] = module
    return names


def _check_shapes(module: str, down: torch.Tensor, up: torch.Tensor, shape: tuple[int, int]) -> None:
    out_features, in_features = shape
    if down.ndim != 2 or up.ndim != 2 or down.shape[0] != up.shape[1]:
        raise ValueError(
            f"LoRA of {module}: down {list(down.shape)} and up {list(up.shape)} are not [r, in] and [out, r]"
        )
    if down.shape[1] != in_features or up.shape[0] != out_features:
        raise ValueError(
            f"LoRA of {module}: down {list(down.shape)} / up {list(up.shape)} do not fit the module's "
            f"[out, in] = [{out_features}, {in_features}]"
        )


def _peft_config(metadata: Mapping[str, str] | None) -> dict:
    """The peft LoRA config stored by diffusers under `lora_adapter_metadata`, keys without their prefix."""
    if not metadata or DIFFUSERS_METADATA_KEY not in metadata:
        return {}
    try:
        raw = json.loads(metadata[DIFFUSERS_METADATA_KEY])
    except json.JSONDecodeError as exc:
        raise ValueError(f"{DIFFUSERS_METADATA_KEY} is not valid JSON: {exc}") from exc
    return {k.split(".", 1)[1] if k.startswith("transformer.") else k: v for k, v in raw.items()}


def with_peft_config(metadata: Mapping[str, str], config_file: Path) -> dict[str, str]:
    """`metadata` (a LoRA file's header) with the peft config in `config_file` (peft's `adapter_config.json` beside
    the weights) stored as diffusers stores it, under `lora_adapter_metadata`, when the header holds none: peft's
    `save_pretrained` keeps alpha there only, so without it alpha would read as r."""
    if DIFFUSERS_METADATA_KEY in metadata or not config_file.is_file():
        return dict(metadata)
    text = config_file.read_text()
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{config_file} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise ValueError(
            f"{config_file} holds a {type(config).__name__}, not a peft LoRA config (a JSON object)"
        )
    return {**metadata, DIFFUSERS_METADATA_KEY: text}


def _check_config(config: Mapping) -> None:
    """A peft config this loader reads exactly: a plain LoRA (rsLoRA's scale is converted to an alpha)."""
    if config.get("peft_type", "LORA") != "LORA":
        raise ValueError(
            f"the peft config is of a {config['peft_type']} adapter: only LORA adapters are read"
        )
    if config.get("use_dora"):
        raise ValueError("DoRA is not supported (the peft config has use_dora=true): train a plain LoRA")
    if config.get("lora_bias"):
        raise ValueError("LoRA biases are not supported (the peft config has lora_bias=true)")


def _check_config_rank(config: Mapping, module: str, rank: int) -> None:
    """The config's rank of `module` (`rank_pattern`, else `r`) is the weights' rank: a config that is not this
    LoRA's (another adapter's `adapter_config.json`) would give wrong alphas."""
    if "r" not in config:
        return
    expected = _pattern_value(config.get("rank_pattern"), module, config["r"])
    if int(expected) != rank:
        raise ValueError(
            f"LoRA of {module}: its weights have rank {rank} but its peft config gives r={expected}: the config "
            "(lora_adapter_metadata or adapter_config.json) does not belong to these weights"
        )


def _config_alpha(config: Mapping, module: str, rank: int) -> float:
    """The alpha of `module` in the canonical alpha / r scale: rsLoRA's alpha / sqrt(r) is alpha * sqrt(r) / r."""
    alpha = float(_pattern_value(config.get("alpha_pattern"), module, config.get("lora_alpha", rank)))
    return alpha * math.sqrt(rank) if config.get("use_rslora") else alpha


def _pattern_value(patterns: Mapping | None, module: str, default):
    """peft's per-module override: the value of the first pattern that matches `module` as peft matches it."""
    from peft.utils.other import get_pattern_key

    if not patterns:
        return default
    key = get_pattern_key(list(patterns), module)
    return patterns.get(key, default)


# ---------------------------------------------------------------------------------------------------- writing


def to_comfyui(adapter: Adapter) -> dict[str, torch.Tensor]:
    """ComfyUI's layout: `diffusion_model.<module>.lora_down.weight`, `.lora_up.weight`, `.alpha` (a scalar)."""
    out = {}
    for module, layer in sorted(adapter.items()):
        out[f"diffusion_model.{module}.lora_down.weight"] = layer.down
        out[f"diffusion_model.{module}.lora_up.weight"] = layer.up
        out[f"diffusion_model.{module}.alpha"] = torch.tensor(layer.alpha, dtype=torch.float32)
    return out


def to_kohya(adapter: Adapter) -> dict[str, torch.Tensor]:
    """kohya / musubi-tuner layout: `lora_unet_<module with . as _>.lora_down.weight`, `.lora_up.weight`, `.alpha`."""
    out = {}
    for module, layer in sorted(adapter.items()):
        flat = "lora_unet_" + module.replace(".", "_")
        out[f"{flat}.lora_down.weight"] = layer.down
        out[f"{flat}.lora_up.weight"] = layer.up
        out[f"{flat}.alpha"] = torch.tensor(layer.alpha, dtype=torch.float32)
    return out


def to_peft(adapter: Adapter, prefix: str = "") -> tuple[dict[str, torch.Tensor], dict]:
    """peft's state dict (`<prefix><module>.lora_A.weight` / `lora_B`) and the `LoraConfig` arguments that give each
    module its own rank and alpha (the most common ones as defaults, the others as patterns)."""
    if not adapter:
        raise ValueError("the LoRA adapter is empty")
    state = {}
    for module, layer in sorted(adapter.items()):
        state[f"{prefix}{module}.lora_A.weight"] = layer.down
        state[f"{prefix}{module}.lora_B.weight"] = layer.up
    rank = Counter(layer.rank for layer in adapter.values()).most_common(1)[0][0]
    alpha = Counter(layer.alpha for layer in adapter.values()).most_common(1)[0][0]
    config = {
        "r": rank,
        "lora_alpha": alpha,
        "target_modules": sorted(adapter),
        "rank_pattern": {m: layer.rank for m, layer in adapter.items() if layer.rank != rank},
        "alpha_pattern": {m: layer.alpha for m, layer in adapter.items() if layer.alpha != alpha},
        "lora_dropout": 0.0,
        "bias": "none",
    }
    return state, config


def to_diffusers(adapter: Adapter) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """diffusers' pipeline LoRA file: `transformer.`-prefixed peft keys and the config as `lora_adapter_metadata`."""
    state, config = to_peft(adapter, prefix="transformer.")
    metadata = {
        DIFFUSERS_METADATA_KEY: json.dumps({f"transformer.{k}": v for k, v in config.items()}, sort_keys=True)
    }
    return state, metadata


def _show(items: list[str], limit: int = 20) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")
