"""What a model folder holds and where its other components come from.

Three kinds of folder load as a pipeline:
- a pipeline folder in the released layout (`model_index.json` and one subfolder per component);
- a training output (`motif-video train --output DIR`): `transformer/` (or `lora/`) and the recipe it was trained
  with as `config.json`, whose `model.components` names the VAE, text encoder and tokenizer it was trained with;
- a distilled student (`motif-video distill --output DIR`): a training output with a `generation_config.json`
  that names its `base_model`, or, when that is null, takes its components from `config.json` as above.

`model.components: tiny` (the offline preset of `motif_video.training.components`) loads exactly those
components. A folder that fits none of these, or lacks a part, is a `ValueError` naming
what is missing; a component that does not load is a `ValueError` naming its file (`named_load_errors`).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TINY = "tiny"  # the components name of the offline stand-ins (recipes/tiny-cpu, tests)
TRAINING_CONFIG = "config.json"
PIPELINE_INDEX = "model_index.json"
# a trainer checkpoint's files (training.checkpoint)
CHECKPOINT_STATE = "state.json"
CHECKPOINT_WEIGHTS = "model.safetensors"


@dataclass(frozen=True)
class TrainingOutput:
    """A folder written by `motif-video train` or `distill`, and the parts it was trained with."""

    folder: Path
    components: str  # "tiny", a pipeline folder or a Hub id
    pretrained: str | None  # the transformer it started from (LoRA: the one its adapter applies to)
    buckets: list[list[int]]  # [frames, height, width], from the recipe's data section
    fps: float | None = None  # the rate its clips were resampled to (the recipe's data.fps)
    checkpoint: Path | None = None  # a trainer checkpoint of the run, whose weights replace its final folders

    @property
    def trained_sizes(self) -> list[list[int]] | None:
        """[[height, width], ...] of its buckets when it was trained from scratch (it knows no other size); None
        when it continued a pretrained transformer (which may know others) or names no buckets."""
        if self.pretrained is not None or not self.buckets:
            return None
        return [list(s) for s in dict.fromkeys((height, width) for _, height, width in self.buckets)]

    @property
    def size(self) -> tuple[int, int, int] | None:
        """(height, width, num_frames) of the first bucket with more than one frame: the size it was trained for."""
        for frames, height, width in self.buckets:
            if frames > 1:
                return height, width, frames
        return None


def training_output(folder: str | os.PathLike) -> TrainingOutput | None:
    """The training output `folder` is, or None when it is something else (a pipeline folder, a transformer...).
    A trainer checkpoint (`<run>/checkpoints/step-N`: state.json and model.safetensors) is its run's output with
    the checkpoint's weights (`TrainingOutput.checkpoint`).

    A folder with a training `config.json` but no weights, or no `model.components`, is a `ValueError` saying what
    is missing.
    """
    folder = Path(folder)
    if (folder / PIPELINE_INDEX).is_file():
        return None
    if (folder / CHECKPOINT_STATE).is_file() and (folder / CHECKPOINT_WEIGHTS).is_file():
        return _checkpoint_output(folder)
    config_path = folder / TRAINING_CONFIG
    config = _read_json(config_path)
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        return None  # e.g. a transformer's own config.json
    if not (folder / "transformer").is_dir() and not (folder / "lora").is_dir():
        # finished ones only: a `step-N.tmp` is a checkpoint still (or never to be) written
        checkpoints = sorted(
            p for p in (folder / "checkpoints").glob("step-*") if not p.name.endswith(".tmp")
        )
        hint = (
            f"; its newest checkpoint is {checkpoints[-1]}, which generate, export and info take "
            "(training not finished? re-run the same command to resume)"
            if checkpoints
            else ""
        )
        raise ValueError(f"training output {folder} has no transformer/ or lora/ folder{hint}")
    return _run_output(folder, config, config_path)


def _checkpoint_output(checkpoint: Path) -> TrainingOutput:
    """A trainer checkpoint as its run's output at that step: the run's recipe (`<run>/config.json`) names the
    architecture and the components, the checkpoint holds the weights."""
    # "." or a link to the checkpoint: its run is above the real folder
    run = checkpoint.resolve().parent.parent
    config_path = run / TRAINING_CONFIG
    config = _read_json(config_path)
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        raise ValueError(
            f"{checkpoint} is a training checkpoint, but its run's recipe {config_path} (the architecture and the "
            "components it was trained with) is not there: make a transformer folder of it with "
            "motif_video.training.export.transformer_from_checkpoint(CHECKPOINT, OUTPUT, preset=...)"
        )
    if "distill" in config:
        raise ValueError(
            f"{checkpoint} is a checkpoint of a distillation: its student loads once `motif-video distill` has "
            f"written it into {run} (re-run the same command to finish)"
        )
    return _run_output(run, config, config_path, checkpoint)


def _run_output(
    folder: Path, config: dict, config_path: Path, checkpoint: Path | None = None
) -> TrainingOutput:
    model = config["model"]
    components = model.get("components")
    if not components:
        raise ValueError(
            f"training output {folder}: {config_path} names no model.components (the VAE, text encoder and "
            "tokenizer it was trained with); pass a pipeline folder with those instead"
        )
    data = config.get("data") or {}
    buckets, fps = data.get("buckets") or [], data.get("fps")
    return TrainingOutput(
        folder, str(components), model.get("pretrained"), [list(b) for b in buckets], fps, checkpoint
    )


def _read_json(path: Path) -> Any:
    """The JSON in `path`, None when there is no such file; a ValueError naming it when it does not parse."""
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not readable JSON ({exc})") from exc


def components_folder(components: str, origin: Path) -> str:
    """Where `model.components` (or `model.pretrained`) lives: as given when it exists from the working directory or
    is no relative path ("tiny", a shipped name, a Hub id, or absolute, as runs record local paths: `recorded_path`);
    else from the training output `origin` or the nearest folder above it where it exists (a run recorded before
    paths were written absolute typed them from the folder it was started in, which usually holds its output)."""
    path = Path(components).expanduser()
    if components == TINY or path.exists() or _is_shipped(components):
        return components
    if path.is_absolute():  # a run moved with the runs it names: the end of the recorded path beside it
        return moved_beside(path, origin) or components
    for folder in (origin, *origin.resolve().parents):
        if (folder / path).exists():
            return str(folder / path)
    return components


def moved_beside(recorded: Path, origin: Path) -> str | None:
    """Where a recorded absolute path that is gone went when its folders were moved together with the run at
    `origin` (`/old/runs/base/transformer` for a run now in `/new/runs/lora`: `/new/runs/base/transformer`): its
    longest tail found in `origin` or a folder above it; None when no tail is there. Said on stderr when found."""
    import sys

    parts = recorded.parts[1:]
    for size in range(len(parts) - 1, 0, -1):
        tail = Path(*parts[-size:])
        for folder in (origin.resolve(), *origin.resolve().parents):
            if (folder / tail).exists():
                print(
                    f"note: {recorded} (recorded by {origin}) is gone; using {folder / tail}", file=sys.stderr
                )
                return str(folder / tail)
    return None


def resolve_base(defaults, folder: Path) -> str:
    """A student's `base_model` (`defaults`: its `GenerationDefaults`) as the loaders take it, from any working
    directory. A relative path: from the student `folder` where it is there (a base kept beside the student), else
    from the working directory (as recorded), else from the nearest folder above the student where it is there (a
    student written before `distill` recorded its base absolute names it as typed in the folder distill ran in,
    which usually holds both); a shipped model's name or a Hub id that no such folder holds, as recorded. An
    absolute path that is gone: its tail beside the student when the two were moved together (`moved_beside`). A
    ValueError naming the folders tried when none of these is there."""
    from .hub import shipped_model
    from .interop.lora_spec import looks_like_repo_id

    base = defaults.base_model
    path = Path(base).expanduser()
    if path.is_absolute():
        return base if path.is_dir() else (moved_beside(path, folder) or base)
    found = next((candidate for candidate in (folder / path, path) if candidate.is_dir()), None)
    if found is not None:
        return str(found) if found != path else base
    if shipped_model(base) is not None:
        return base
    above = [parent / path for parent in folder.resolve().parents]
    found = next((candidate for candidate in above if candidate.is_dir()), None)
    if found is not None:
        return str(found)
    if looks_like_repo_id(base):
        return base  # a Hub id; one that fails to download names the folders tried (`load_student_pipeline`)
    raise ValueError(missing_base(folder, base))


def missing_base(folder: Path, base: str) -> str:
    """The message for a student whose relative `base` is in none of the folders `resolve_base` tries."""
    return (
        f"student {folder}: its base_model {base!r} (generation_config.json) is not a folder at {folder / base}, "
        f"at {Path.cwd() / base} nor above the student; give that file's base_model the base model's path "
        "(absolute, or relative to the student folder)"
    )


def recorded_path(reference: str | None) -> str | None:
    """`reference` (a recipe's model.components or model.pretrained) as a run's config.json records it: a local path
    that exists, absolute, so the run loads from any directory; "tiny", shipped names and Hub ids as typed."""
    if reference is None or reference == TINY or not Path(reference).expanduser().exists():
        return reference
    return str(Path(reference).expanduser().resolve())


def recorded_base(reference: str) -> str:
    """A student's base model as its generation_config.json records it: a shipped model's folder by its name
    ("small": this install's path means nothing on another machine), another local folder absolute
    (`recorded_path`: the student loads from any directory), a name or Hub id as typed."""
    from .hub import shipped_name

    return shipped_name(reference) or recorded_path(reference) or reference


def _is_shipped(name: str) -> bool:
    from .hub import shipped_model

    return shipped_model(name) is not None


def tiny_pipeline(cls, components: dict[str, Any], dtype=None):
    """`cls` on the `tiny` components (`motif_video.training.components`, seed 0: the ones `model.components: tiny`
    trains with) where `components` names none, with the folder-less sampler and guidance defaults (Euler shift 15,
    APG scale 8)."""
    from .training.components import tiny_components

    c = tiny_components()
    parts = {"vae": c.vae, "text_encoder": c.text_encoder, "tokenizer": c.tokenizer, "scheduler": None,
             "guider": None, "feature_extractor": c.feature_extractor}  # fmt: skip
    pipe = cls(**{**parts, **components})
    pipe.folder_pipeline_class = None
    import torch

    return pipe.to(dtype=dtype) if dtype not in (None, torch.float32) else pipe  # the tiny parts are float32


def folder_defaults(folder: str | os.PathLike):
    """The folder's `GenerationDefaults` (generation_config.json); for a training output, with the size of its first
    bucket where the file names none (or with only that, when there is no file), its recipe's data.fps as its frame
    rate and, trained from scratch, its buckets' sizes as the only ones it knows. None when there is nothing."""
    from dataclasses import replace

    from .defaults import GenerationDefaults, mp4_rate

    stored = GenerationDefaults.read(folder)
    run = training_output(folder)
    if (
        run is not None and run.fps and (stored is None or stored.fps is None)
    ):  # the pace it learnt its motion at
        stored = replace(stored or GenerationDefaults(), fps=mp4_rate(run.fps))
    if run is None or run.size is None:
        return stored
    trained = stored.trained_sizes if stored is not None and stored.trained_sizes else run.trained_sizes
    if stored is not None and stored.height is not None:
        return replace(stored, trained_sizes=trained)
    height, width, frames = run.size
    return replace(
        stored or GenerationDefaults(), height=height, width=width, num_frames=frames, trained_sizes=trained
    )


def defaults_base(folder: Path, stored) -> str | None:
    """The model whose generation defaults fill what `folder`'s own (`stored`) leave None, as the pipelines load
    it: a student's `base_model`, else a training output's `model.components` (the pipeline folder it loads on: a
    LoRA on the small model samples with the small model's steps, repaint and decoder fit); None otherwise."""
    if stored is not None and stored.base_model:
        try:
            return resolve_base(stored, folder)
        except ValueError:  # loading the student says where its base was looked for
            return stored.base_model
    run = training_output(folder)
    if run is None or run.components == TINY:  # the tiny stand-ins store no defaults
        return None
    return components_folder(run.components, run.folder)


def load_training_output(cls, run: TrainingOutput, kwargs: dict[str, Any]):
    """`cls` on the run's components with its trained transformer (full, or its base with the LoRA adapter), with
    the run's generation_config.json (a student's), its first bucket's size and its components' as defaults."""
    from .defaults import GenerationDefaults, stored_defaults

    base = components_folder(run.components, run.folder)
    # the same as `generate` and `eval` read
    defaults = stored_defaults(run.checkpoint or run.folder) or GenerationDefaults()
    dtype = kwargs.get("torch_dtype") or kwargs.get("dtype")
    kwargs = dict(kwargs)
    if kwargs.get("transformer") is None:
        kwargs["transformer"] = _trained_transformer(run, base, dtype)
    if (run.folder / "vae").is_dir() and "vae" not in kwargs:
        from diffusers import AutoencoderKLWan

        with named_load_errors(run.folder / "vae"):
            kwargs["vae"] = AutoencoderKLWan.from_pretrained(run.folder / "vae", torch_dtype=dtype)
    if base == TINY:
        known = (
            "transformer",
            "vae",
            "text_encoder",
            "tokenizer",
            "scheduler",
            "guider",
            "feature_extractor",
        )
        pipe = tiny_pipeline(cls, {k: v for k, v in kwargs.items() if k in known}, dtype)
        pipe.generation_defaults = defaults
    else:
        pipe = cls.from_pretrained(base, **kwargs)
        pipe.generation_defaults = defaults.over(pipe.generation_defaults)
    return pipe


def _trained_transformer(run: TrainingOutput, base: str, dtype):
    from .hub import resolve_folder
    from .models import MotifVideoTransformer

    weights = run.checkpoint or run.folder
    if run.checkpoint is not None and not (weights / "lora").is_dir():
        import torch

        from .training.export import checkpoint_transformer

        # its trained weights, as the run's transformer/ holds them at its end
        with named_load_errors(weights):
            transformer = checkpoint_transformer(weights, ema=False)
        return transformer.to(dtype) if isinstance(dtype, torch.dtype) else transformer
    if (weights / "transformer").is_dir():
        with named_load_errors(weights / "transformer"):
            return MotifVideoTransformer.from_pretrained(weights / "transformer", torch_dtype=dtype)
    from .pipelines.students import load_lora

    if run.pretrained is None and base == TINY:
        raise ValueError(
            f"training output {run.folder} holds a LoRA (lora/) but its recipe names no model.pretrained"
        )
    source = resolve_folder(components_folder(run.pretrained or base, run.folder))
    source = source / "transformer" if (source / "transformer").is_dir() else source
    with named_load_errors(source):
        transformer = MotifVideoTransformer.from_pretrained(source, torch_dtype=dtype)
    with named_load_errors(weights / "lora"):
        load_lora(transformer, weights / "lora")
    return transformer


@dataclass(frozen=True)
class FolderParts:
    """Where a local model folder's parts are, as `from_pretrained` finds them (nothing loaded)."""

    # the folder of the transformer's config.json (a LoRA's: the one its adapter applies to); None for a full
    # training checkpoint, whose architecture is its run's recipe (`training.export.checkpoint_architecture`)
    transformer: Path | None
    # the pipeline folder of its tokenizer, text encoder and image processor; "tiny" for the offline stand-ins; None
    # where they are on the Hub (not downloaded)
    components: str | None
    # the training checkpoint (RUN/checkpoints/step-N) whose weights the transformer (or its LoRA) takes, else None
    checkpoint: Path | None = None


def folder_parts(folder: str | os.PathLike) -> FolderParts:
    """The parts of a local model folder of any kind that loads (a pipeline folder, a training output or checkpoint,
    a student): its own transformer or, for a LoRA, its base's; the components of its recipe or base model. A
    checkpoint's are its run's (`training_output`, as `from_pretrained` finds them), with the checkpoint's weights.
    A ValueError naming what is missing (`check_model_folder`), or a LoRA's base that is not a local folder."""
    from .defaults import GenerationDefaults, model_folder

    check_model_folder(folder)
    folder = Path(folder)
    stored = GenerationDefaults.read(folder)
    if stored is not None and stored.is_student:
        base = model_folder(resolve_base(stored, folder))
        parts = folder_parts(base) if base is not None else None
        components = parts.components if parts is not None else None
        if stored.adapter is None:
            return FolderParts(_own_transformer(folder), components)
        if parts is None:
            raise ValueError(
                f"student {folder} holds a LoRA on {stored.base_model!r}, which is no local folder"
            )
        return FolderParts(parts.transformer, components)
    run = training_output(folder)
    if run is None:
        return FolderParts(_own_transformer(folder), str(folder))
    found = components_folder(run.components, run.folder)
    local = model_folder(found) if found != TINY else None
    components = TINY if found == TINY else (str(local) if local is not None else None)
    if run.checkpoint is not None and not (folder / "lora").is_dir():
        return FolderParts(None, components, run.checkpoint)
    if (folder / "transformer").is_dir():
        return FolderParts(_own_transformer(folder), components)
    source = model_folder(components_folder(run.pretrained or run.components, run.folder))
    if source is None:
        raise ValueError(
            f"training output {folder} holds a LoRA on {run.pretrained or run.components!r}, which is no local folder"
        )
    transformer = source / "transformer" if (source / "transformer").is_dir() else source
    return FolderParts(transformer, components, run.checkpoint)


def _own_transformer(folder: Path) -> Path:
    if not (folder / "transformer" / "config.json").is_file():
        raise ValueError(f"{folder} has no transformer/config.json")
    return folder / "transformer"


# ------------------------------------------------------------------------------------------------- load failures
class LoadError(ValueError, OSError):
    """A component that did not load, with the file (or folder) at fault in the message. A `ValueError` (bad input,
    as our commands treat it) and an `OSError`, which diffusers' loaders raise for a folder they cannot use, so
    code written against them keeps catching it."""


@contextlib.contextmanager
def named_load_errors(folder: str | os.PathLike) -> Iterator[None]:
    """Turn any failure while loading from `folder` into a `LoadError` naming the file at fault (found by reading
    each config and weight file), else the folder. A `LoadError` from a nested load passes unchanged."""
    try:
        yield
    except LoadError:
        raise
    except Exception as exc:
        bad = find_unreadable_file(Path(folder))
        where = f"{bad[0]} ({bad[1]})" if bad else f"{folder}"
        raise LoadError(f"could not load {where}: {type(exc).__name__}: {exc}") from exc


def find_unreadable_file(folder: Path) -> tuple[Path, str] | None:
    """The first JSON or safetensors file under `folder` (two levels deep) that does not parse, with why."""
    if not folder.exists():
        return folder, "missing"
    files = [folder] if folder.is_file() else sorted([*folder.glob("*"), *folder.glob("*/*")])
    for path in files:
        if not path.is_file():
            continue
        try:
            if path.suffix == ".json":
                json.loads(path.read_text())
            elif path.suffix == ".safetensors":
                from safetensors import safe_open

                with safe_open(str(path), framework="pt") as f:
                    f.keys()
                _check_safetensors_length(path)
        except Exception as exc:
            return path, f"{type(exc).__name__}: {exc}"
    return None


def _check_safetensors_length(path: Path) -> None:
    """A safetensors file whose data is cut short (the header alone parses)."""
    import struct

    with open(path, "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_len))
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if path.stat().st_size < 8 + header_len + end:
        raise ValueError(
            f"truncated: {path.stat().st_size} bytes, the header promises {8 + header_len + end}"
        )


# the parts that are models, each with its config.json
MODEL_COMPONENTS = ("transformer", "vae", "text_encoder")


def check_model_folder(folder: str | os.PathLike) -> None:
    """Without loading anything: a local model folder is one of the kinds that load (a pipeline folder whose
    `model_index.json` components are all there, or a training output or student) and each of its config and
    weight files parses (`find_unreadable_file`). For a check before work is announced (`serve` at start: its
    workers would otherwise find out one after another); a `ValueError` naming the file or part at fault."""
    from .defaults import GENERATION_CONFIG_NAME, GenerationDefaults

    folder = Path(folder)
    bad = find_unreadable_file(folder)
    if bad is not None:
        raise LoadError(f"could not load {bad[0]} ({bad[1]})")
    index = folder / PIPELINE_INDEX
    if not index.is_file():
        # a student names its base model, as from_pretrained reads it
        stored = GenerationDefaults.read(folder)
        if training_output(folder) is None and not (stored is not None and stored.is_student):
            raise ValueError(
                f"{folder} is not a model folder: it has no {PIPELINE_INDEX} (a pipeline folder), no "
                f"{TRAINING_CONFIG} of a training output and no {GENERATION_CONFIG_NAME} naming a base_model "
                "(a student)"
            )
        return
    for name, spec in json.loads(index.read_text()).items():
        if name.startswith("_") or not isinstance(spec, list) or None in spec:
            continue  # diffusers' keys, and components the folder leaves out
        if not (folder / name).is_dir():
            raise ValueError(f"{index} names the component {name!r}, but {folder} has no {name}/ folder")
        if name in MODEL_COMPONENTS and not (folder / name / "config.json").is_file():
            raise LoadError(f"could not load {folder / name / 'config.json'} (missing)")
