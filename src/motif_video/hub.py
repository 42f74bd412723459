"""Resolve a model reference (local folder or Hugging Face Hub id) to a local folder."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_MODEL_ID = "Motif-Technologies/Motif-Video-2B"
# Models shipped inside the package (src/motif_video/assets/NAME), loadable by name.
SHIPPED_MODELS = ("small",)


def shipped_folder(name: str) -> Path | None:
    """The folder of a model shipped with the package, or None when `name` is not one of SHIPPED_MODELS."""
    if name not in SHIPPED_MODELS:
        return None
    from importlib.resources import files

    folder = Path(str(files("motif_video") / "assets" / name))
    if not (folder / "model_index.json").is_file():
        raise ValueError(f"shipped model {name!r} is missing from this installation (looked in {folder})")
    return folder


def resolve_folder(
    name_or_path: str | os.PathLike,
    subfolder: str | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool | None = None,
    token: str | bool | None = None,
    allow_patterns: list[str] | None = None,
) -> Path:
    """A local folder as is, a shipped model's name (SHIPPED_MODELS, e.g. "small") when no such folder exists, or
    a Hub repo id downloaded (or found in the cache); `subfolder` is joined to it."""
    path = Path(name_or_path).expanduser()
    if not path.exists() and (shipped := shipped_folder(str(name_or_path))) is not None:
        path = shipped
    if path.exists():
        if not path.is_dir():
            raise ValueError(
                f"{path} is a file; expected a model folder (or a Hub repo id like {DEFAULT_MODEL_ID})"
            )
        folder = path / subfolder if subfolder else path
        if not folder.is_dir():
            raise ValueError(f"{path} has no subfolder {subfolder!r}")
        return folder
    name = str(name_or_path)
    if name.count("/") != 1 or name.startswith((".", "/", "~")):
        raise ValueError(
            f"{name!r} is neither an existing folder nor a Hub repo id like {DEFAULT_MODEL_ID!r} "
            f"(nor a shipped model: {', '.join(SHIPPED_MODELS)})"
        )
    from huggingface_hub import snapshot_download

    patterns = allow_patterns or ([f"{subfolder}/*"] if subfolder else None)
    try:
        root = snapshot_download(
            name,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=bool(local_files_only),
            token=token,
            allow_patterns=patterns,
        )
    except Exception as exc:  # offline, unreachable, gated, unknown repo: all end here
        raise ValueError(
            f"could not get {name!r} from the Hugging Face Hub ({type(exc).__name__}: {exc}). "
            "If this machine is offline or the Hub is unreachable, download the model elsewhere "
            f"(`huggingface-cli download {name} --local-dir DIR`) and pass the local folder DIR instead."
        ) from exc
    folder = Path(root) / subfolder if subfolder else Path(root)
    if not folder.is_dir():
        raise ValueError(f"Hub repo {name!r} has no subfolder {subfolder!r}")
    return folder
