"""Files we write get the mode any new file gets: 0o666 less the process umask.

safetensors (0.8) creates its files with mode 0600, as `tempfile.mkstemp` does, so model folders, LoRA files,
checkpoints and caches written through it would be readable by their owner alone whatever the umask says. Every
writer that goes through such a function calls `give_default_mode` on what it wrote, before moving it into place;
`write_safetensors` is that writer for one safetensors file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def umask() -> int:
    """The process umask (read by setting it and putting it back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def give_default_mode(*paths: str | os.PathLike) -> None:
    """chmod each file, and every file under each folder, to 0o666 less the umask."""
    mode = 0o666 & ~umask()
    for path in map(Path, paths):
        files = (p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            os.chmod(file, mode)


def write_safetensors(
    tensors: Mapping[str, Any], path: str | os.PathLike, metadata: dict[str, str] | None = None
):
    """Write `tensors` (detached, on the CPU, contiguous) with header `metadata` to `path` atomically: a hidden
    temporary file beside it, given the default mode, renamed into place; removed if anything fails."""
    from safetensors.torch import save_file

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
        give_default_mode(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
