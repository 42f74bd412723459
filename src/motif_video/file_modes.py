"""Files we write get the mode any new file gets: 0o666 less the process umask.

safetensors (0.8) creates its files with mode 0600, as `tempfile.mkstemp` does, so model folders, LoRA files,
checkpoints and caches written through it would be readable by their owner alone whatever the umask says. Every
writer that goes through such a function calls `give_default_mode` on what it wrote, before moving it into place.
"""

from __future__ import annotations

import os
from pathlib import Path


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
