"""Resolve a model reference (local folder or Hugging Face Hub id) to a local folder."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_MODEL_ID = "Motif-Technologies/Motif-Video-2B"


def shipped_models() -> list[str]:
    """Names of the models shipped inside the package (`motif_video/assets/<name>`), e.g. "small"."""
    assets = Path(__file__).resolve().parent / "assets"
    return sorted(p.name for p in assets.iterdir() if p.is_dir()) if assets.is_dir() else []


def shipped_model(name: str) -> Path | None:
    """`motif_video/assets/<name>` when the package ships a model folder of that name ("small", a student)."""
    if not name or "/" in name or "\\" in name or name.startswith("."):
        return None
    folder = Path(__file__).resolve().parent / "assets" / name
    return folder if folder.is_dir() else None


def shipped_name(reference: str | os.PathLike) -> str | None:
    """The name of the shipped model whose folder (or `transformer/` in it) `reference` is, else None: what a file
    records as its base instead of this install's path, which means nothing on another machine."""
    path = Path(reference).expanduser()
    if not path.is_dir():
        return None
    path = path.resolve()
    folder = path.parent if path.name == "transformer" else path
    return folder.name if shipped_model(folder.name) == folder else None


def check_model_reference(name_or_path: str | os.PathLike) -> None:
    """Raise the `ValueError` `resolve_folder` would for a reference that is neither a folder, a shipped model nor
    shaped like a Hub repo id; downloads and loads nothing (so bad input fails before any work is announced)."""
    path = Path(name_or_path).expanduser()
    name = str(name_or_path)
    if path.exists():
        if not path.is_dir():
            raise ValueError(
                f"{path} is a file; expected a model folder (or a Hub repo id like {DEFAULT_MODEL_ID})"
            )
        return
    if shipped_model(name) is None and (name.count("/") != 1 or name.startswith((".", "/", "~"))):
        raise ValueError(
            f"{name!r} is neither an existing folder, a shipped model ({', '.join(shipped_models())}) "
            f"nor a Hub repo id like {DEFAULT_MODEL_ID!r}"
        )


def resolve_folder(
    name_or_path: str | os.PathLike,
    subfolder: str | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool | None = None,
    token: str | bool | None = None,
    allow_patterns: list[str] | None = None,
) -> Path:
    """A local folder as is, a model shipped in the package by name (`shipped_model`), or a Hub repo id downloaded
    (or found in the cache); `subfolder` is joined to it."""
    check_model_reference(name_or_path)
    path = Path(name_or_path).expanduser()
    if not path.exists() and (shipped := shipped_model(str(name_or_path))) is not None:
        path = shipped
    if path.exists():
        folder = path / subfolder if subfolder else path
        if not folder.is_dir():
            raise ValueError(f"{path} has no subfolder {subfolder!r}")
        return folder
    name = str(name_or_path)
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
            f"(`hf download {name} --local-dir DIR`) and pass the local folder DIR instead."
        ) from exc
    folder = Path(root) / subfolder if subfolder else Path(root)
    if not folder.is_dir():
        raise ValueError(f"Hub repo {name!r} has no subfolder {subfolder!r}")
    return folder
