"""How a video was made, stored in its MP4 and read back: `generate` writes `video_settings(...)` as the file's
metadata (`pipelines.export.write_mp4`), and `generate --replay VIDEO.mp4` makes the same video again from it.

The record holds the request's option values for that one video (its prompt, its seed `seed + i`, size, steps,
negative prompt, guidance, shift, model, dtype, ...: every `options.GenerateRequest` field except where and how the
process runs), what the pipeline resolved from the model's defaults (`resolved`: steps, shift and where it came
from, guidance and scale), the model folder's Hub revision when it came from the Hub, the SHA-256 of every image
or video it was made from (`media_sha256`), the SHA-256 of every LoRA and GGUF transformer file the request names
(`weights_sha256`: one changed since refuses the replay), a fingerprint of the other weights it was made with
(`weights_fingerprint`: the transformer's, a student's LoRA, `motif_video.weights_fingerprint`; one that differs is
warned about), and the motif-video version: each weight file in one of the two. Replaying passes the
same option values, so the model's defaults are resolved again exactly as they were: with the same model the frames
are identical (and, the encoder being deterministic, so is the file). Weights changed since (a local model folder
trained further) give another video: the replay says so on stderr, naming what changed (`warn_changed_weights`), and
goes on. `extend` writes `extension_settings(...)` the same way, and `extend --replay` reads it back
(`extend_replay_values`).

Pure Python: importing this module imports neither torch nor diffusers.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .weights_fingerprint import (
    CHANGED_SINCE_LOADED,
    LORA_COMPONENT,
    cached_sha256,
    file_sha256,
    weights_fingerprint,
)

FORMAT = "motif-video generate 1"
EXTEND_FORMAT = "motif-video extend 1"
# Fields not replayed: where the video goes and how this process runs (the replaying command decides them).
NOT_REPLAYED = ("prompts", "output", "threads", "parallel", "save_latents")
# The request fields that name input files, each hashed into a generated video's record (`media_sha256`).
MEDIA_FIELDS = ("image", "last_image", "keyframe", "video")
# The request fields an extension records and replays (`motif-video extend`'s options; its size is its own).
EXTEND_FIELDS = (
    "num_frames", "steps", "guidance", "guidance_scale", "guidance_batching", "shift", "negative_prompt", "model",
    "dtype", "device", "offload", "memory_budget", "attention_backend", "lora", "fuse_lora", "condition_guidance",
    "width", "height",
)  # fmt: skip


def _json(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [_json(v) for v in value]
    return value


def video_settings(plan, i: int, pipe=None) -> dict[str, Any]:
    """The record of video i of a `generation.GenerationPlan` (`pipe`: the pipeline that just made it, for what it
    resolved)."""
    from . import __version__

    r = plan.request
    values = absolute_paths(r.values())
    record: dict[str, Any] = {"format": FORMAT, "motif_video": __version__, "prompt": r.prompts[i]}
    record.update({k: _json(v) for k, v in values.items() if k not in NOT_REPLAYED})
    record["seed"] = plan.seed + i
    record["media_sha256"] = {str(path): file_sha256(path) for path in media_files(values)}
    record["weights_sha256"] = weights_sha256(values)
    record["weights_fingerprint"] = pipeline_fingerprint(pipe, values)
    run = getattr(pipe, "last_run", None)
    if run is not None:
        guidance, scale = run_guidance(run)
        record["resolved"] = {
            "steps": len(run.sigmas) - 1,
            "shift": run.sampler.shift,
            "shift_source": run.sampler.source,
            "guidance": guidance,
            "guidance_scale": scale,
            "height": run.height,
            "width": run.width,
            "num_frames": run.num_frames,
            "dtype": plan.dtype,
            "device": plan.device,
        }
    folder = getattr(getattr(pipe, "config", None), "_name_or_path", None)
    record["revision"] = hub_revision(folder) if folder else None
    return record


def run_guidance(run) -> tuple[str, float]:
    """The guidance a pipeline run used (`pipe.last_run`): its mode ("apg", "cfg", "none"; "embedded" for a
    distilled student's guidance embedding; "guider: CLASS" where a diffusers guider of the folder ran its own
    protocol, which no mode describes) and scale."""
    embedded = run.passes.embedded_guidance
    if embedded is not None:
        return "embedded", embedded
    if run.guider is not None:
        return f"guider: {type(run.guider).__name__}", run.guidance.scale
    return run.guidance.mode, run.guidance.scale


def extension_settings(
    request, plan, prompts, seed: int, clip, source: str | None, fps: float, guidance: float, pipe=None
):
    """The record of an extended video (`extension.write_extension`): the request's fields, each window's prompt, the
    seed, the plan, the reconstruction guidance the windows ran with, what it was extended from (`source`, else
    the clip's path, with the clip's SHA-256), and the fingerprint of `pipe`'s weights; `extend --replay` reads it."""
    from . import __version__

    values = absolute_paths(request.values())
    record: dict[str, Any] = {
        "format": EXTEND_FORMAT,
        "motif_video": __version__,
        "extended_from": source or _absolute(clip),
    }
    if source is None:
        record["extended_from_sha256"] = file_sha256(clip)
    record["weights_sha256"] = weights_sha256(values)
    record["weights_fingerprint"] = pipeline_fingerprint(pipe, values)
    record.update({k: _json(values[k]) for k in EXTEND_FIELDS})
    record.update(prompts=list(prompts), seed=seed, overlap=plan.overlap, crossfade=plan.crossfade,
                  window=plan.window, frames=plan.total_frames, fps=fps, condition_guidance=guidance)  # fmt: skip
    return record


def absolute_paths(values: dict[str, Any]) -> dict[str, Any]:
    """`values` (a request's) with every local file or folder they name absolute, as a video records them, so that
    `--replay` finds them from any directory: the model, the media (a keyframe's PATH of PATH@FRAME), the LoRAs (the
    PATH of PATH:SCALE) and a GGUF transformer. What does not exist as typed (a Hub id, a shipped model's name such as
    "small", a preset) stays as typed. A record written before holds the paths as typed, read from the directory the
    replay runs in."""
    from .interop.lora_spec import parse_lora_spec
    from .options import parse_keyframe

    values = dict(values)
    for field in ("model", "transformer_gguf", "image", "last_image", "video"):
        if values.get(field):
            values[field] = _absolute(values[field])
    if values.get("keyframe"):
        values["keyframe"] = [
            f"{_absolute(path)}@{frame}" for path, frame in map(parse_keyframe, values["keyframe"])
        ]
    if values.get("lora"):
        values["lora"] = [_with_absolute(spec, parse_lora_spec(spec)[0]) for spec in values["lora"]]
    return values


def _absolute(path: str | Path) -> str:
    """`path` absolute (symbolic links kept, as typed) where it exists, else as typed (a Hub id, a shipped name)."""
    local = Path(path).expanduser()
    return os.path.abspath(local) if local.exists() else str(path)


def _with_absolute(spec: str, path: str) -> str:
    """A LoRA's PATH:SCALE spec with its PATH absolute (`_absolute`) and its tail as it is."""
    return _absolute(path) + str(spec)[len(path) :]


def hub_revision(folder: str | Path) -> str | None:
    """The commit of a Hugging Face cache snapshot folder (`.../snapshots/<commit>`), else None."""
    match = re.search(r"[\\/]snapshots[\\/]([0-9a-f]{40})(?:[\\/]|$)", str(folder))
    return match.group(1) if match else None


def pipeline_fingerprint(pipe, values: dict[str, Any]) -> dict[str, str]:
    """{component: SHA-256} of the weights `pipe`'s transformer was loaded from (`weights_fingerprint`), but for the
    files the request `values` name besides its model (its LoRAs, a GGUF transformer), which `weights_sha256`
    records: each file is recorded once."""
    transformer = getattr(pipe, "transformer", None)
    if transformer is None:
        return {}
    named = [f for files in weight_files(values).values() for f in files]
    return weights_fingerprint(transformer, leave_out=named)


# The request fields that choose the weights a video is made with.
WEIGHT_FIELDS = ("model", "transformer_gguf", "lora")


def changed_weights(record: dict[str, Any], values: dict[str, Any], current: dict[str, str]) -> list[str]:
    """What differs between the weights a recorded video was made with (its `weights_fingerprint`) and `current`,
    those of the pipeline about to make it again, one line per component; nothing when the replay's request
    `values` ask for other weights (`WEIGHT_FIELDS`: another video is what was asked for), or when the record is
    from before fingerprints were kept. A component the record also hashed in `weights_sha256` (a LoRA or GGUF file,
    which records written before each file was recorded once hold in both) is checked there, not here."""
    recorded = record.get("weights_fingerprint")
    # as recorded: a folder given again by another relative path is the same one
    asked = absolute_paths(values)
    if not recorded or any(_json(asked.get(k)) != record.get(k) for k in WEIGHT_FIELDS):
        return []
    hashed = {h for hashes in (record.get("weights_sha256") or {}).values() for h in hashes.values()}
    recorded = {component: h for component, h in recorded.items() if h not in hashed}
    lines = []
    for component in sorted({*recorded, *current}):
        then, now = recorded.get(component), current.get(component)
        if then == now:
            continue
        what = (
            f"LoRA adapter {component[len(LORA_COMPONENT) :]!r}"
            if component.startswith(LORA_COMPONENT)
            else component
        )
        if then is None:
            lines.append(f"the {what} loaded now was not used when the video was made")
        elif then == CHANGED_SINCE_LOADED:
            lines.append(
                f"the {what}'s file was rewritten after it was loaded to make the video: the weights then are not "
                "known, and may differ from those loaded now"
            )
        elif now is None:
            lines.append(f"the {what} the video was made with is not loaded now")
        else:
            lines.append(
                f"the {what}'s weights differ from those the video was made with (sha256 {then[:12]}... then, "
                f"{now[:12]}... now)"
            )
    return lines


def warn_changed_weights(video: str | Path, values: dict[str, Any], pipe, kind: str = FORMAT) -> None:
    """On stderr, a warning for each component of `pipe`'s weights that is not what `video` (a `kind` record) was
    made with (`changed_weights`): the replay goes on, and its video will differ."""
    import sys

    for line in changed_weights(_record(video, kind), values, pipeline_fingerprint(pipe, values)):
        print(f"warning: replay of {str(video)!r}: {line}: the video made now will differ", file=sys.stderr)


def replay_values(video: str | Path, given: Iterable[str] = ()) -> dict[str, Any]:
    """The request fields (`options.parse_request` input) that make `video` again; a ValueError when the file holds
    no motif-video record, or its image is gone or changed (unless `given`, the fields the caller sets, has it)."""
    from .options import OPTIONS

    record = _record(video, FORMAT)
    values = {k: v for k, v in record.items() if k in OPTIONS and k not in NOT_REPLAYED}
    values["prompts"] = [record["prompt"]]
    hashes = dict(record.get("media_sha256") or {})
    if record.get("image") is not None:  # a record from before media_sha256 hashed the image alone
        hashes.setdefault(record["image"], record.get("image_sha256"))
    check_weights(record, given)
    for field in MEDIA_FIELDS:
        if field in given:
            continue
        for path in media_files({field: record.get(field)}):
            what = {"keyframe": "keyframe image", "last_image": "last image"}.get(field, field)
            _check_source(
                path,
                hashes.get(str(path)),
                f"the video was made from the {what} {str(path)!r}, which is not there; pass it with "
                f"--{field.replace('_', '-')}",
                f"the {what} {str(path)!r} changed since the video was made",
            )
    return values


def _check_source(path: Path, sha256: str | None, missing: str, changed: str, digest=file_sha256) -> None:
    """A ValueError ("replay: " + `missing` or `changed`) unless the file a video was made from is there and, where
    its record holds one, has that SHA-256 (`digest`: how it is computed)."""
    if not path.is_file():
        raise ValueError(f"replay: {missing}")
    if sha256 not in (None, digest(path)):
        raise ValueError(f"replay: {changed}")


def weights_sha256(values: dict[str, Any]) -> dict[str, dict[str, str]]:
    """SHA-256 of the local weight files a request loads besides its model (`weight_files`), per field, each read
    once (`cached_sha256`)."""
    files = weight_files(values)
    return {field: {str(f): cached_sha256(f) for f in paths} for field, paths in files.items() if paths}


def weight_files(values: dict[str, Any]) -> dict[str, list[Path]]:
    """The local weight files a request loads besides its model, per field: each LoRA's file (one on the Hub is named
    by its repo id, not by a file) and a GGUF transformer."""
    from .interop.lora_spec import local_lora_file, parse_lora_spec

    loras = [local_lora_file(parse_lora_spec(spec)[0]) for spec in values.get("lora") or ()]
    files = {"lora": [f for f in loras if f is not None], "transformer_gguf": []}
    if values.get("transformer_gguf"):
        files["transformer_gguf"].append(Path(values["transformer_gguf"]))
    return files


def check_weights(record: dict[str, Any], given: Iterable[str]) -> None:
    """A ValueError unless every weight file the record hashed (`weights_sha256`) is there unchanged; a field the
    caller sets again (`given`) is not checked."""
    for field, hashes in (record.get("weights_sha256") or {}).items():
        if field in given:
            continue
        flag = f"--{field.replace('_', '-')}"
        for path, sha256 in hashes.items():
            _check_source(
                Path(path),
                sha256,
                f"the video was made with the weights {path!r} ({flag}), which are not there; pass them with {flag}",
                f"the weights {path!r} ({flag}) changed since the video was made; pass {flag} to use them anyway",
                digest=cached_sha256,
            )


def media_files(values: dict[str, Any]) -> list[Path]:
    """The files a request's media fields name (`MEDIA_FIELDS`; a keyframe's PATH@FRAME read as its PATH)."""
    from .options import parse_keyframe

    files = []
    for field in MEDIA_FIELDS:
        value = values.get(field)
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if item:
                files.append(parse_keyframe(item)[0] if field == "keyframe" else Path(item))
    return files


def extend_replay_values(video: str | Path, clip: str | Path | None = None) -> dict[str, Any]:
    """What `extend --replay VIDEO` runs: the clip (`clip`, else the one the video was extended from, checked to be
    there and unchanged), the seconds, overlap and cross-fade, and the request fields with every window's prompt."""
    record = _record(video, EXTEND_FORMAT)
    if clip is None:
        clip = Path(record["extended_from"])
        _check_source(
            clip,
            record.get("extended_from_sha256"),
            f"the video was extended from {str(clip)!r}, which is not there; pass that clip as CLIP",
            f"the clip {str(clip)!r} changed since the video was extended from it",
        )
    check_weights(record, ())
    values = {k: record[k] for k in EXTEND_FIELDS if k in record}
    values.update(prompts=record["prompts"], seed=record["seed"], num_frames=record["window"])
    return {"clip": Path(clip), "seconds": record["frames"] / record["fps"], "overlap": record["overlap"],
            "crossfade": record["crossfade"], "values": values}  # fmt: skip


def _record(video: str | Path, kind: str) -> dict[str, Any]:
    """The settings `kind` (FORMAT or EXTEND_FORMAT) stored in `video`; a ValueError naming what it holds instead."""
    from .pipelines.export import read_mp4_metadata

    path = Path(video)
    if not path.is_file():
        raise ValueError(f"replay: {str(path)!r} is not a file")
    record = read_mp4_metadata(path) or {}
    if record.get("format") == kind:
        return record
    command, what = (
        {FORMAT: "generate", EXTEND_FORMAT: "extend"},
        {FORMAT: "generation", EXTEND_FORMAT: "extension"},
    )
    other = command.get(record.get("format"))
    held = f"was made by `motif-video {other}`: replay it with `motif-video {other} --replay`" if other else (
        f"holds no motif-video {what[kind]} settings (only videos written by `motif-video {command[kind]}` do)")  # fmt: skip
    raise ValueError(f"replay: {str(path)!r} {held}")
