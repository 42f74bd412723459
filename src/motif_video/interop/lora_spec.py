"""`--lora PATH[:SCALE]`: a LoRA reference and its adapter weight (pure Python: the option parsers read it)."""

from __future__ import annotations

import os
from pathlib import Path

LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"  # diffusers' file name for a LoRA in a folder


def parse_lora_spec(spec: str) -> tuple[str, float]:
    """("PATH", scale) from "PATH" (scale 1) or "PATH:SCALE"; PATH is a file, folder or Hub repo id."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"lora must be PATH or PATH:SCALE, got {spec!r}")
    path, sep, tail = spec.rpartition(":")
    if not sep:
        return spec, 1.0
    try:
        scale = float(tail)
    except ValueError:
        return spec, 1.0  # a colon that is part of the path
    if not path:
        raise ValueError(f"lora {spec!r} has a scale but no path; use PATH:SCALE")
    if scale != scale or abs(scale) == float("inf"):
        raise ValueError(f"lora {spec!r}: the scale must be a finite number, got {tail!r}")
    return path, scale


def looks_like_repo_id(name: str) -> bool:
    return name.count("/") == 1 and not name.startswith((".", "/", "~"))


def local_lora_file(path_or_repo: str | os.PathLike, weight_name: str | None = None) -> Path | None:
    """The .safetensors file a local LoRA names: the file itself, or the one its folder holds (`weight_name`, else
    diffusers' file name, in the folder or its `lora/`, else its only .safetensors file); None for a Hub repo id. A
    ValueError when it names none of these."""
    path = Path(path_or_repo).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        if weight_name:
            if not (path / weight_name).is_file():
                raise ValueError(f"{path} has no {weight_name}")
            return path / weight_name
        candidates = [path / LORA_WEIGHT_NAME, path / "lora" / LORA_WEIGHT_NAME]
        found = [c for c in candidates if c.is_file()] or sorted(path.glob("*.safetensors"))
        if len(found) != 1 and not (found and found[0] in candidates):
            raise ValueError(
                f"{path} holds {len(found)} .safetensors files and no {LORA_WEIGHT_NAME}: name the file "
                f"({path}/NAME.safetensors; weight_name= in Python)"
            )
        return found[0]
    if not looks_like_repo_id(str(path_or_repo)):
        raise ValueError(f"lora {str(path_or_repo)!r} is neither a file, a folder nor a Hub repo id")
    owner = Path(str(path_or_repo).split("/")[0]).expanduser()
    if owner.is_dir():  # `runs/typo`: a path under a local folder, not the repo of a Hub user named like it
        raise ValueError(f"lora {str(path_or_repo)!r} does not exist ({owner}/ is a local folder)")
    return None
