"""Typed training configuration, loaded from YAML / JSON / TOML recipe files plus `key=value` overrides.

Every key a recipe may set is a field below; anything else is an error that names the allowed keys. Defaults that
the technical report does not give are ours and are documented in docs/training.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..bounds import Bounds, above, at_least, check_keys, within
from ..hub import DEFAULT_MODEL_ID

TimestepSampling = Literal["uniform", "logit_normal"]
Schedule = Literal["constant", "cosine", "linear"]
Parallel = Literal["ddp", "fsdp2"]
MixedPrecision = Literal["auto", "no", "bf16", "fp16"]
TeacherKind = Literal["vjepa2", "dinov2"]


@dataclass
class ModelConfig:
    # a new model from `motif_video.presets` when `pretrained` is not set ("tiny" for smoke runs and tests)
    preset: str = "motif-video-2b"
    # transformer folder, or a model folder / Hub id with a `transformer/` subfolder
    pretrained: str | None = None
    # VAE, text encoder, tokenizer: a model folder / Hub id, or "tiny" (the offline preset of `components`)
    components: str = DEFAULT_MODEL_ID
    overrides: dict[str, Any] = field(default_factory=dict)  # preset config overrides for new models
    add_shared_cross_attention: bool = (
        False  # curriculum stage 9: insert zero-initialised SCA before training
    )
    gradient_checkpointing: bool = False
    max_text_tokens: int = 512


@dataclass
class DataConfig:
    path: str | None = None  # a folder of media + same-named .txt captions, or a .jsonl / .csv manifest
    cache: str | None = None  # a folder written by `motif-video cache` (used instead of `path`)
    generate_clips: int = (
        0  # write this many procedural clips into `path` when it holds no media (tiny recipe)
    )
    buckets: list[list[int]] = field(default_factory=lambda: [[9, 64, 64]])  # [frames (4k+1), height, width]
    fps: float = 24.0  # frames are resampled to this rate before taking `frames` of them
    batch_size: int = 1  # per rank
    caption_field: str = "caption"
    num_workers: int = 0
    # A second cache (written from `conditioned_path` when incomplete) whose items are drawn only on steps that
    # `i2v` conditions: clips whose frames do not follow from the caption alone (a path seen from its middle, as a
    # video extension's later windows show it), which an unconditioned text-to-video step would blur into its
    # mean. Those steps (the `conditioned_share` of them) draw from it, every other step from `cache`.
    conditioned_path: str | None = None
    conditioned_cache: str | None = None
    conditioned_share: float = 1.0  # the share of conditioned steps drawn from it (the rest from `cache`)


@dataclass
class ObjectiveConfig:
    timestep_sampling: TimestepSampling = "logit_normal"
    logit_mean: float = 0.0
    logit_std: float = 1.0
    shift: float = 1.0  # static training shift of sigma (>1: more noise)
    resolution_shift: bool = False  # multiply `shift` by sqrt(tokens / 4096) per bucket
    text_dropout: float = 0.1  # probability of the empty prompt (for classifier-free guidance)
    first_frame_weight: float = 1.0  # latent frame 0's weight in the loss, the others' 1 (flow.velocity_loss)
    loss_bins: int = 10  # per-sigma-bin loss logging


@dataclass
class RouteConfig:
    start_layer: int = 0
    end_layer: int = 0
    ratio: float = 0.5


@dataclass
class TreadConfig:
    routes: list[RouteConfig] = field(
        default_factory=list
    )  # global block indices (2B: dual 0-11, single 12-27, decoder 28-35)
    probability: float = 1.0  # fraction of steps that route (drawn per step); the others train the dense pass


@dataclass
class RepaConfig:
    teacher: str | None = (
        None  # local folder or Hub id of a V-JEPA 2 / DINOv2 model; "tiny-vjepa2"/"tiny-dinov2" in tests
    )
    kind: TeacherKind = "vjepa2"  # vjepa2 for video stages, dinov2 for image-only stages
    block: int = 8  # global index of the aligned block
    weight: float = 0.5  # lambda
    until_step: int = 0  # REPA is on for steps < until_step (early phase); 0 = off
    projector_dim: int = 2048
    image_size: int = (
        256  # teacher input size (short side); frames are resized to a multiple of the patch size
    )


@dataclass
class I2VConfig:
    probability: float = 0.0  # fraction of steps whose batch is conditioned (one draw per step)
    # Timestep-aware blur of the conditioning latent (motif_video.conditioning): std = blur_strength * sigma *
    # min(h, w) / 100 latent pixels; 0 = off. 1.0: 1% of the latent short side at pure noise.
    blur_strength: float = 1.0
    image_embeds: bool = True  # SigLIP tokens of the first frame (needs the text encoder's vision tower)
    # Conditioning patterns of a conditioned step, name -> relative weight (training.i2v.PATTERNS: first, last,
    # first_last, keyframes, prefix). The default is the released model's: the first frame only.
    patterns: dict[str, float] = field(default_factory=lambda: {"first": 1.0})
    max_keyframes: int = 3  # "keyframes": 1..max_keyframes random latent frames
    max_prefix: int = 3  # "prefix": the first 1..max_prefix latent frames (video extension's overlap)

    def __post_init__(self) -> None:
        from .i2v import check_patterns

        check_patterns(self.patterns, self.max_keyframes, self.max_prefix)


@dataclass
class LoraConfig:
    rank: int = 0  # 0 = full fine-tuning
    alpha: float | None = None  # defaults to rank
    dropout: float = 0.0
    target_modules: list[str] = field(
        default_factory=lambda: [
            "to_q",
            "to_k",
            "to_v",
            "to_out.0",
            "to_add_out",
            "add_q_proj",
            "add_k_proj",
            "add_v_proj",
        ]
    )


@dataclass
class OptimConfig:
    lr: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.0
    eps: float = 1e-8
    warmup_steps: int = 0
    schedule: Schedule = "constant"
    min_lr_ratio: float = 0.0  # floor of cosine / linear decay, as a fraction of lr
    grad_clip: float = 1.0  # 0 = off
    ema_decay: float = 0.0  # 0 = no EMA weights


@dataclass
class ValidationConfig:
    every: int = 0  # steps; 0 = off
    prompts: list[str] = field(default_factory=list)
    num_inference_steps: int = 20
    guidance_scale: float = 8.0


@dataclass
class TrainConfig:
    output_dir: str = "runs/train"
    seed: int = 0
    max_steps: int = 100
    mixed_precision: MixedPrecision = "auto"  # auto: bf16 on CUDA, float32 elsewhere
    parallel: Parallel = "ddp"  # with several processes; fsdp2 shards every repeated block
    log_every: int = 1
    checkpoint_every: int = 0  # steps; 0 = only at the end
    keep_checkpoints: int = 2
    resume: bool = True  # continue from the newest checkpoint in output_dir/checkpoints
    tensorboard: bool = True
    overfit_one_batch: bool = False  # debug: repeat step 0's batch, noise and timesteps every step
    cpu_threads: int = 0  # torch intra-op threads on CPU; 0 = torch's default (1 is fastest for tiny models)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    tread: TreadConfig = field(default_factory=TreadConfig)
    repa: RepaConfig = field(default_factory=RepaConfig)
    i2v: I2VConfig = field(default_factory=I2VConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)

    def __post_init__(self) -> None:
        check_ranges(self)
        d = self.data
        if d.conditioned_path and not d.conditioned_cache:
            raise ValueError(
                "data.conditioned_path needs data.conditioned_cache (the folder to cache it into)"
            )
        if d.conditioned_cache and not d.cache:
            raise ValueError(
                "data.conditioned_cache needs data.cache: both sets are drawn from latent caches"
            )
        if d.conditioned_cache and not 0 < self.i2v.probability < 1:
            raise ValueError(
                f"data.conditioned_cache is drawn on conditioned steps only: i2v.probability must be in (0, 1) "
                f"so that both sets are used, got {self.i2v.probability}"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------------------------------------------
# ranges


# Every numeric key's allowed values (None, where a key allows it, is not checked): a value outside is an error
# naming the key before anything is loaded, not a ZeroDivisionError or a silent no-op later.
RANGES: dict[str, Bounds] = {
    "max_steps": at_least(1),
    "log_every": at_least(1),
    "checkpoint_every": at_least(0),
    "keep_checkpoints": at_least(1),
    "cpu_threads": at_least(0),
    "model.max_text_tokens": at_least(1),
    "data.generate_clips": at_least(0),
    "data.fps": above(0),
    "data.batch_size": at_least(1),
    "data.conditioned_share": within(0, 1, low_open=True),
    "data.num_workers": at_least(0),
    "objective.logit_std": above(0),
    "objective.shift": above(0),
    "objective.text_dropout": within(0, 1),
    "objective.loss_bins": at_least(1),
    "objective.first_frame_weight": at_least(0),
    "tread.probability": within(0, 1),
    "repa.block": at_least(0),
    "repa.weight": at_least(0),
    "repa.until_step": at_least(0),
    "repa.projector_dim": at_least(1),
    "repa.image_size": at_least(1),
    "i2v.probability": within(0, 1),
    "i2v.blur_strength": at_least(0),
    "lora.rank": at_least(0),
    "lora.alpha": above(0),
    "lora.dropout": within(0, 1, high_open=True),
    "optim.lr": above(0),
    "optim.weight_decay": at_least(0),
    "optim.eps": above(0),
    "optim.warmup_steps": at_least(0),
    "optim.min_lr_ratio": within(0, 1),
    "optim.grad_clip": at_least(0),
    "optim.ema_decay": within(0, 1, high_open=True),
    "validation.every": at_least(0),
    "validation.num_inference_steps": at_least(1),
    "validation.guidance_scale": at_least(0),
}


def check_ranges(config: TrainConfig) -> None:
    """`RANGES`, the betas and the TREAD routes of a config; a ValueError naming the first key out of range."""
    check_keys(config, RANGES)
    betas = config.optim.betas
    if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
        raise ValueError(f"optim.betas must be two numbers in [0, 1), got {betas}")
    from ..models.routing import Route

    for i, route in enumerate(config.tread.routes):
        try:
            Route(route.start_layer, route.end_layer, route.ratio)
        except ValueError as exc:
            raise ValueError(f"tread.routes[{i}]: {exc}") from None


# ----------------------------------------------------------------------------------------------------------------
# loading


def read_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file {str(path)!r} does not exist")
    text = path.read_text()
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text) or {}
    elif suffix == ".json":
        data = json.loads(text)
    elif suffix == ".toml":
        import tomllib

        data = tomllib.loads(text)
    else:
        raise ValueError(f"config file {str(path)!r} must end in one of .yaml, .yml, .json, .toml")
    if not isinstance(data, dict):
        raise ValueError(f"config file {str(path)!r} must hold a mapping at the top level")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """`a.b=value` sets data['a']['b']; the value is parsed as YAML (numbers, booleans, lists, null)."""
    import yaml

    data = json.loads(json.dumps(data))  # deep copy
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r} must look like key=value (e.g. optim.lr=1e-4)")
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {item!r}: {part!r} is not a section")
        node[leaf] = yaml.safe_load(raw)
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    data = read_config_file(path) if path is not None else {}
    if (
        isinstance(data, dict) and "distill" in data
    ):  # else "unknown key(s) ['distill']", which says not what to run
        raise ValueError(
            f"{path} is a distillation recipe (its distill: section): run motif-video distill --config {path}"
        )
    return from_dict(TrainConfig, apply_overrides(data, overrides or []))


# Keys that existed once and changed meaning: an error that says what replaced them (never silently reinterpreted).
REPLACED_KEYS = {
    "i2v.blur_max_std": "i2v.blur_max_std (a std in latent pixels at sigma 1) was replaced by i2v.blur_strength: "
    "std = blur_strength * sigma * min(h, w) / 100 latent pixels, the definition shared with inference (see "
    "docs/conditioning.md); blur_max_std M on an h x w latent is blur_strength 100 * M / min(h, w)",
}
# Keys that were removed: null (as every earlier run's config.json holds) is dropped, any other value is an error.
REMOVED_KEYS = {
    "model.resize_patch": "model.resize_patch={value} is no longer a trainer key: resize the pretrained model's "
    "patches first (recipes/small/patch_resize.py writes the resized transformer folder) and set model.pretrained "
    "to that folder",
}


def from_dict(cls: type, data: dict[str, Any], where: str = "") -> Any:
    """Build dataclass `cls` from a mapping, recursing into nested sections; unknown keys are errors."""
    if not isinstance(data, dict):
        raise ValueError(f"{where.rstrip('.') or 'config'} must be a mapping, got {data!r}")
    for key in data:
        if f"{where}{key}" in REPLACED_KEYS:
            raise ValueError(REPLACED_KEYS[f"{where}{key}"])
        if f"{where}{key}" in REMOVED_KEYS and data[key] is not None:
            raise ValueError(REMOVED_KEYS[f"{where}{key}"].format(value=data[key]))
    data = {k: v for k, v in data.items() if f"{where}{k}" not in REMOVED_KEYS}
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in {where.rstrip('.') or 'config'}; allowed: {names}")
    kwargs = {name: _coerce(hints[name], value, f"{where}{name}") for name, value in data.items()}
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where + ".")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, where)
            except ValueError as exc:
                errors.append(str(exc))
        raise ValueError(errors[0])
    if origin is Literal:
        if value not in args:
            raise ValueError(f"{where} must be one of {list(args)}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ValueError(f"{where} must be a list, got {value!r}")
        return [_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)] if args else value
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{where} must be a mapping, got {value!r}")
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads "3e-4" as a string
            with contextlib.suppress(ValueError):
                value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(f"{where} must be a string, got {value!r}")
        return value
    return value
