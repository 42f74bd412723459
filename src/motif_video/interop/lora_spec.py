"""`--lora PATH[:SCALE]`: a LoRA reference and its adapter weight (pure Python: the option parsers read it)."""

from __future__ import annotations


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
