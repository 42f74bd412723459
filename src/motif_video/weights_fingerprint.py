"""Fingerprints of the weights a video is made with, recorded in its MP4 (`replay.video_settings`) so that a replay
on other weights says so (`replay.changed_weights`).

A loader notes on the model it loads the files it read (`note_weight_files`): the transformer's weights
(`models.loading`), a student's or training output's LoRA (`pipelines.students.load_lora`) and each LoRA loaded
with `load_lora_weights` (`--lora`), each under its component's name ("transformer", "lora:<adapter name>").
`weights_fingerprint(model)` fingerprints them when a video's record is made: a component's fingerprint is the
SHA-256 of its file, or for several files (a sharded transformer) the SHA-256 of their names and SHA-256s.

A file's SHA-256 is paid for once. One in the Hugging Face cache (`.../snapshots/<commit>/...`, a link to
`.../blobs/<sha256>`: the Hub names a large file's blob by its SHA-256) is named by its link, nothing read. Any other
is hashed the first time and its digest kept in `sha256.json` in the user's cache folder (`cache_folder`), keyed by
the file's path, size, inode, and modification and change times: later runs pay a `stat` while the file is
unchanged.

Pure Python: importing this module imports neither torch nor diffusers.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

CACHE_ENV = "MOTIF_VIDEO_CACHE"  # the cache folder, when set (else `$XDG_CACHE_HOME/motif-video`)
CACHE_NAME = "sha256.json"
CACHE_FORMAT = 1
WEIGHT_FILES = "_motif_video_weight_files"  # attribute of a loaded model: {component: [file, ...]}
LORA_COMPONENT = "lora:"  # + the adapter's name
# a component's fingerprint when its files were rewritten after loading
CHANGED_SINCE_LOADED = "changed since loaded"
_SHA256 = re.compile(r"[0-9a-f]{64}")


def note_weight_files(model: Any, component: str, files: Iterable[str | os.PathLike]) -> None:
    """Note on `model` that `component` of its weights was read from `files` (as given: a Hub cache link stays a
    link, which names its blob's SHA-256), with each file's identity as loaded (`_identity`), so that a file
    rewritten while the model is held (a folder trained further under a running service) is not fingerprinted as
    what was loaded."""
    notes = dict(getattr(model, WEIGHT_FILES, None) or {})
    notes[component] = [(str(f), _identity_now(f)) for f in files]
    setattr(model, WEIGHT_FILES, notes)


def _identity(path: str | os.PathLike) -> dict[str, int]:
    """What tells one version of a file from another without reading it: its size, inode, and modification and
    change times (a copy that keeps the modification time, `cp -p`, still changes the change time). OSError when it
    cannot be read."""
    stat = Path(path).resolve().stat()
    return {
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "ino": stat.st_ino,
        "ctime_ns": stat.st_ctime_ns,
    }


def _identity_now(path: str | os.PathLike) -> dict[str, int] | None:
    """`_identity`, None when the file cannot be read."""
    try:
        return _identity(path)
    except OSError:
        return None


def weights_fingerprint(model: Any, leave_out: Iterable[str | os.PathLike] = ()) -> dict[str, str]:
    """{component: SHA-256} of the weights `model` was loaded from (`note_weight_files`); `CHANGED_SINCE_LOADED` for a
    component whose files were rewritten after it was loaded (what was loaded is no longer there to hash). A LoRA
    adapter it no longer holds (deleted, unloaded), one loaded from a state dict (no file), a component whose
    files are gone and one read from files in `leave_out` alone (which a record keeps otherwise) are left out."""
    notes = getattr(model, WEIGHT_FILES, None) or {}
    adapters = set(getattr(model, "peft_config", None) or {})
    left_out = {Path(f).resolve() for f in leave_out}
    fingerprint = {}
    for component, files in notes.items():
        if not files or (
            component.startswith(LORA_COMPONENT) and component[len(LORA_COMPONENT) :] not in adapters
        ):
            continue
        paths = [Path(f) for f, _ in files]
        if left_out and all(f.resolve() in left_out for f in paths):
            continue
        if any(_identity_now(f) != identity for f, identity in files):
            if all(f.exists() for f in paths):
                fingerprint[component] = CHANGED_SINCE_LOADED
            continue
        with contextlib.suppress(OSError):
            fingerprint[component] = files_sha256(paths)
    return fingerprint


def files_sha256(files: list[Path]) -> str:
    """The SHA-256 of one file, or of several files' names and SHA-256s (one "name sha256" line each, by name)."""
    if len(files) == 1:
        return cached_sha256(files[0])
    lines = sorted(f"{f.name} {cached_sha256(f)}\n" for f in files)
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file, read whole."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def hub_blob_sha256(path: str | os.PathLike) -> str | None:
    """The SHA-256 a file in the Hugging Face cache is named by (its snapshot link's target, `blobs/<sha256>`), else
    None (a file elsewhere, or a small file whose blob the Hub names by its git hash)."""
    path = Path(path)
    if not path.is_symlink():
        return None
    target = path.resolve()
    return target.name if target.parent.name == "blobs" and _SHA256.fullmatch(target.name) else None


def cached_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file: named by the Hub cache (`hub_blob_sha256`), else kept from an earlier run while the
    file's identity (`_identity`) is unchanged, else read whole (and kept)."""
    if (blob := hub_blob_sha256(path)) is not None:
        return blob
    real = Path(path).resolve()
    key = _identity(real)
    files = _read_cache()
    entry = files.get(str(real))
    if (
        isinstance(entry, dict)
        and {k: entry.get(k) for k in key} == key
        and isinstance(entry.get("sha256"), str)
    ):
        return entry["sha256"]
    digest = file_sha256(real)
    _keep(str(real), {**key, "sha256": digest})
    return digest


def cache_folder() -> Path:
    """Where the digests are kept: `$MOTIF_VIDEO_CACHE`, else `$XDG_CACHE_HOME/motif-video`, else
    `~/.cache/motif-video`."""
    if folder := os.environ.get(CACHE_ENV):
        return Path(folder).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "motif-video"


def _read_cache() -> dict[str, Any]:
    """The kept digests by file path; empty when there are none yet or the file is unreadable (it is rewritten)."""
    try:
        stored = json.loads((cache_folder() / CACHE_NAME).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    ok = (
        isinstance(stored, dict)
        and stored.get("format") == CACHE_FORMAT
        and isinstance(stored.get("files"), dict)
    )
    return dict(stored["files"]) if ok else {}


def _keep(path: str, entry: dict[str, Any]) -> None:
    """Add one file's digest to the kept ones, under a lock on the cache folder (`.lock`), reading them again inside
    it: two processes hashing different files at once both keep theirs (without the lock the last writer's copy,
    read before the other wrote, drops the other's entry). Where no lock can be taken, kept without one."""
    with contextlib.ExitStack() as held:
        try:
            import fcntl

            cache_folder().mkdir(parents=True, exist_ok=True)
            lock = held.enter_context(open(cache_folder() / ".lock", "a"))  # closing it releases the lock
            fcntl.flock(lock, fcntl.LOCK_EX)
        except (ImportError, OSError):
            pass
        _write_cache({**_read_cache(), path: entry})


def _write_cache(files: dict[str, Any]) -> None:
    """Keep `files` (those still there) atomically: a reader sees the old file or the new one, never a part. A cache
    that cannot be written (a read-only home) is left as it is: the digest is computed again next time."""
    from .file_modes import give_default_mode

    folder = cache_folder()
    live = {path: entry for path, entry in files.items() if os.path.exists(path)}
    tmp = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{CACHE_NAME}.", dir=folder)
        with os.fdopen(fd, "w") as f:
            json.dump({"format": CACHE_FORMAT, "files": live}, f, indent=0, sort_keys=True)
        give_default_mode(tmp)
        os.replace(tmp, folder / CACHE_NAME)
    except OSError:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
