"""The training loop: accelerate (one process, DDP or FSDP2), flow-matching loss, TREAD, REPA, I2V, EMA, checkpoints.

One step, per rank:
    batch (one bucket)  -> latents x0 [B, 16, T, h, w], text [B, E, C] + mask (from the cache or encoded now)
    per sample          -> sigma, noise, text-dropout coin from `step_generator(seed, step, global sample index)`
    x_sigma             =  (1 - sigma) x0 + sigma eps; input = [x_sigma | 17 condition channels]
    loss                =  mean_b |v_pred - (eps - x0)|^2  (+ weight * REPA while step < until_step)

Every random draw is a pure function of (seed, step, sample index), and the batch order a pure function of
(seed, step) (`buckets.BucketBatchSampler`), so a resumed run repeats an uninterrupted one exactly, and N processes
reproduce one process with the same global batch (per-rank losses are averaged, as DDP averages gradients).
TREAD's token choice is drawn per rank and is the one draw that depends on how the batch is split.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from .. import flow
from ..models import MotifVideoTransformer, Route
from . import checkpoint as ckpt
from .buckets import BucketBatchSampler
from .config import TrainConfig
from .ema import EMA
from .i2v import condition_channels

logger = logging.getLogger(__name__)

ValidateFn = Callable[[nn.Module, int, Path, bool], None]  # (model, step, folder, is_main)


@dataclass
class TrainResult:
    output_dir: Path
    step: int
    losses: list[float] = field(default_factory=list)  # global mean loss of each step run by this call


def step_generator(seed: int, step: int, stream: int, device: torch.device | str = "cpu") -> torch.Generator:
    """The generator of one (step, stream): streams 1.. are global sample indices, 0 the step itself."""
    g = torch.Generator(device=device)
    g.manual_seed(((seed * 1_000_003 + step) * 1_000_033 + stream) % (2**63 - 1))
    return g


def lr_at(step: int, config: TrainConfig) -> float:
    """Linear warm-up, then constant, cosine or linear decay to min_lr_ratio * lr at max_steps."""
    o = config.optim
    if step < o.warmup_steps:
        return o.lr * (step + 1) / o.warmup_steps
    if o.schedule == "constant":
        return o.lr
    progress = min(1.0, (step - o.warmup_steps) / max(1, config.max_steps - o.warmup_steps))
    if o.schedule == "cosine":
        factor = 0.5 * (1 + math.cos(math.pi * progress))
    elif o.schedule == "linear":
        factor = 1 - progress
    else:
        raise ValueError(f"optim.schedule must be constant, cosine or linear, got {o.schedule!r}")
    return o.lr * (o.min_lr_ratio + (1 - o.min_lr_ratio) * factor)


# ----------------------------------------------------------------------------------------------------------------
# setup


def make_accelerator(config: TrainConfig):
    from accelerate import Accelerator

    cuda = torch.cuda.is_available()
    precision = config.mixed_precision if config.mixed_precision != "auto" else ("bf16" if cuda else "no")
    kwargs: dict[str, Any] = {}
    if config.parallel == "fsdp2":
        from accelerate import FullyShardedDataParallelPlugin

        kwargs["fsdp_plugin"] = FullyShardedDataParallelPlugin(
            fsdp_version=2,
            auto_wrap_policy="transformer_based_wrap",
            transformer_cls_names_to_wrap=["DualStreamBlock", "SingleStreamBlock"],
            reshard_after_forward=True,
            state_dict_type="FULL_STATE_DICT",
        )
    if 0 < config.i2v.probability < 1:  # the image projection is idle on text-to-video steps
        from accelerate import DistributedDataParallelKwargs

        kwargs["kwargs_handlers"] = [DistributedDataParallelKwargs(find_unused_parameters=True)]
    return Accelerator(cpu=not cuda, mixed_precision=precision, **kwargs)


def build_model(config: TrainConfig) -> MotifVideoTransformer:
    from ..presets import build_transformer

    m = config.model
    torch.manual_seed(config.seed)
    if m.pretrained:
        from ..hub import resolve_folder

        folder = resolve_folder(m.pretrained)
        folder = folder / "transformer" if (folder / "transformer").is_dir() else folder
        model = MotifVideoTransformer.from_pretrained(folder)
        if m.resize_patch is not None:
            from ..models.patch_resize import resize_patch

            model = resize_patch(model, m.resize_patch)
    else:
        model = build_transformer(m.preset, **m.overrides)
    if m.add_shared_cross_attention:
        from .sca import add_shared_cross_attention

        model = add_shared_cross_attention(model)
    if config.lora.rank:
        from .lora import add_lora

        lo = config.lora
        add_lora(model, lo.rank, lo.alpha, lo.dropout, lo.target_modules)
    if config.i2v.probability == 0 and model.image_embedder is not None:
        model.image_embedder.requires_grad_(False)  # text-to-video training never uses it
    if m.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    return model.train()


@dataclass
class TrainData:
    dataset: torch.utils.data.Dataset
    sampler: BucketBatchSampler
    collate: Callable[[list[Any]], Any]
    null_text: torch.Tensor
    null_mask: torch.Tensor
    cached: bool


def _expand(path: str | None, config: TrainConfig) -> str | None:
    return None if path is None else path.replace("{output_dir}", config.output_dir)


def build_data(config: TrainConfig, accelerator: Any, components: Any) -> TrainData:
    from .cache import CachedDataset, build_cache, collate_cached, read_index
    from .data import MediaDataset, check_buckets, collate, list_media
    from .encoders import encode_text

    d = config.data
    path, cache = _expand(d.path, config), _expand(d.cache, config)
    if path is None and cache is None:
        raise ValueError(
            "set data.path (media folder or manifest) or data.cache (a `motif-video cache` folder)"
        )
    if path and d.generate_clips and accelerator.is_main_process and not list_media_safe(path):
        from .synthetic import write_moving_squares

        frames, height, width = check_buckets(d.buckets)[0]
        write_moving_squares(
            path, d.generate_clips, frames, height, width, fps=round(d.fps), seed=config.seed
        )
    accelerator.wait_for_everyone()
    if cache and path and accelerator.is_main_process and not _cache_complete(cache):
        media = MediaDataset(list_media(path, d.caption_field), check_buckets(d.buckets), d.fps)
        logger.info("caching %d items into %s (%s)", len(media), cache, media.skipped)
        build_cache(
            media,
            components,
            cache,
            max_tokens=config.model.max_text_tokens,
            image_embeds=bool(config.i2v.probability and config.i2v.image_embeds),
        )
    accelerator.wait_for_everyone()
    if cache:
        read_index(cache)
        dataset = CachedDataset(cache)
        null_text, null_mask, collate_fn, cached = dataset.null_text, dataset.null_mask, collate_cached, True
    else:
        dataset = MediaDataset(list_media(path, d.caption_field), check_buckets(d.buckets), d.fps)
        if accelerator.is_main_process:
            logger.info("%d media items; %s", len(dataset), dataset.skipped)
        text, mask = encode_text(components, [""], config.model.max_text_tokens)
        null_text, null_mask, collate_fn, cached = text[0].float().cpu(), mask[0].cpu(), collate, False
    sampler = BucketBatchSampler(
        dataset.buckets, d.batch_size, accelerator.num_processes, accelerator.process_index, config.seed
    )
    return TrainData(dataset, sampler, collate_fn, null_text, null_mask, cached)


def list_media_safe(path: str) -> bool:
    from .data import list_media

    return Path(path).exists() and bool(list_media(path))


def _cache_complete(cache: str) -> bool:
    index = Path(cache) / "index.json"
    return index.is_file() and "skipped" in json.loads(index.read_text())


class StepBatches:
    """The batch sampler of the DataLoader: this rank's indices for steps start..stop-1."""

    def __init__(
        self, sampler: BucketBatchSampler, start: int, stop: int, repeat_first: bool = False
    ) -> None:
        self.sampler, self.start, self.stop, self.repeat_first = sampler, start, stop, repeat_first

    def __iter__(self):
        return (self.sampler.batch_at(0 if self.repeat_first else s) for s in range(self.start, self.stop))

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


# ----------------------------------------------------------------------------------------------------------------
# one step


def needs_components(config: TrainConfig) -> bool:
    d = config.data
    raw = d.cache is None or not _cache_complete(_expand(d.cache, config) or "")
    return raw or config.repa.until_step > 0


def prepare_inputs(
    batch: dict[str, Any], data: TrainData, components: Any, config: TrainConfig, device
) -> dict:
    """Latents, text, mask, image tokens and pixels (when available) of one batch, on `device`."""
    from .encoders import encode_image_tokens, encode_text, encode_video

    if data.cached:
        out = {k: batch[k].to(device) for k in ("latents", "text", "text_mask")}
        if "image_embeds" in batch:
            out["image_embeds"] = batch["image_embeds"].to(device)
        return out
    pixels = batch["pixels"]
    text, mask = encode_text(components, batch["caption"], config.model.max_text_tokens)
    out = {"latents": encode_video(components.vae, pixels).to(device), "text": text.float().to(device),
           "text_mask": mask.to(device), "pixels": pixels.to(device)}  # fmt: skip
    if config.i2v.probability and config.i2v.image_embeds:
        out["image_embeds"] = encode_image_tokens(components, pixels[:, :, 0]).float().to(device)
    return out


def sample_noise(
    latents: torch.Tensor, config: TrainConfig, step: int, first_sample: int, tokens: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """sigma [B], noise like latents, text-drop flags [B]: each sample from its own (seed, step, index) stream."""
    o = config.objective
    shift = o.shift * (flow.resolution_shift(tokens) if o.resolution_shift else 1.0)
    sigmas, noises, drops = [], [], []
    for i in range(latents.shape[0]):
        g = step_generator(config.seed, step, first_sample + i + 1)
        sigmas.append(flow.sample_training_sigmas(1, o.timestep_sampling, logit_mean=o.logit_mean, logit_std=o.logit_std, shift=shift, generator=g))  # fmt: skip
        noises.append(torch.randn(latents.shape[1:], generator=g))
        drops.append(torch.rand(1, generator=g) < o.text_dropout)
    device = latents.device
    return (
        torch.cat(sigmas).to(device),
        torch.stack(noises).to(device, latents.dtype),
        torch.cat(drops).to(device),
    )


@dataclass
class Repa:
    teacher: nn.Module
    projector: nn.Module
    block: int
    weight: float
    until_step: int


def build_repa(config: TrainConfig, model: MotifVideoTransformer) -> Repa | None:
    r = config.repa
    if r.until_step <= 0:
        return None
    if not r.teacher:
        raise ValueError("repa.until_step > 0 needs repa.teacher (a V-JEPA 2 / DINOv2 folder or Hub id)")
    from .repa import Projector, Teacher, tiny_teacher

    teacher = tiny_teacher(r.kind) if r.teacher == "tiny" else Teacher.load(r.teacher, r.kind, r.image_size)
    dim = model.config.num_attention_heads * model.config.attention_head_dim
    model._block_index(r.block)  # validates the index
    torch.manual_seed(config.seed + 1)
    return Repa(teacher, Projector(dim, teacher.dim, r.projector_dim), r.block, r.weight, r.until_step)


def compute_loss(
    model: nn.Module,
    inputs: dict[str, torch.Tensor],
    data: TrainData,
    config: TrainConfig,
    step: int,
    first_sample: int,
    repa: Repa | None,
    components: Any,
    process_index: int,
    draw_step: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, float]]:
    """Mean loss of this rank's batch, per-sample flow losses [B], sigmas [B], extra metrics.

    Random draws come from the streams of `draw_step` (default: `step`).
    """
    repa_on = repa is not None and step < repa.until_step
    step = step if draw_step is None else draw_step
    x0 = inputs["latents"]
    t, h, w = x0.shape[2:]
    unwrapped = getattr(model, "module", model)
    p, pt = unwrapped.config.patch_size, unwrapped.config.patch_size_t
    grid = (t // pt, h // p, w // p)
    sigma, noise, drop = sample_noise(x0, config, step, first_sample, grid[0] * grid[1] * grid[2])
    text, mask = flow.drop_text(inputs["text"], inputs["text_mask"], data.null_text, data.null_mask, drop)

    hidden = flow.noisy_latents(x0, noise, sigma)
    conditioned = False
    if unwrapped.config.in_channels > x0.shape[1]:
        coin = torch.rand(1, generator=step_generator(config.seed, step, 0)).item()
        conditioned = coin < config.i2v.probability
        hidden = torch.cat(
            [hidden, condition_channels(x0, sigma, conditioned, config.i2v.blur_strength)], dim=1
        )
    image_embeds = inputs.get("image_embeds") if conditioned else None

    routes = [Route(r.start_layer, r.end_layer, r.ratio) for r in config.tread.routes]
    if routes and config.tread.probability < 1.0:  # the same draw on every rank: a step routes or it does not
        coin = torch.rand(1, generator=step_generator(config.seed, step, 2 * 10**9)).item()
        routes = routes if coin < config.tread.probability else []
    route_gen = step_generator(config.seed, step, 10**9 + process_index, device=x0.device) if routes else None
    out = model(
        hidden, flow.timestep_from_sigma(sigma), text, mask, image_embeds=image_embeds,
        return_features=[repa.block] if repa_on else (), routes=routes or None, routing_generator=route_gen,
    )  # fmt: skip
    losses = flow.velocity_loss(out.sample, x0, noise)
    loss = losses.mean()
    metrics: dict[str, float] = {}
    if repa_on:
        from .encoders import latent_stats
        from .repa import alignment_loss, resample_to_grid

        pixels = inputs.get("pixels")
        if pixels is None:  # cached latents: the teacher sees the VAE's reconstruction
            mean, std = latent_stats(components.vae, x0)
            with torch.no_grad():
                pixels = components.vae.decode(
                    (x0 * std + mean).to(next(components.vae.parameters()).dtype)
                ).sample
        target = resample_to_grid(repa.teacher(pixels.float()), grid)
        align = alignment_loss(repa.projector(out.features[repa.block]), target)
        loss = loss + repa.weight * align
        metrics["repa_loss"] = float(align.detach())
    return loss, losses.detach(), sigma.detach(), metrics


# ----------------------------------------------------------------------------------------------------------------
# checkpoints


def _trainable(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def _full(t: torch.Tensor) -> torch.Tensor:
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def save_checkpoint(accelerator, config, step, model, optimizer, ema, repa) -> None:
    unwrapped = accelerator.unwrap_model(model)
    names = {n for n, _ in _trainable(unwrapped)}
    state = accelerator.get_state_dict(model)  # full weights on the main process (gathers FSDP2 shards)
    optim_state = _optimizer_state(accelerator, model, optimizer)
    ema_state = {k: _full(v) for k, v in ema.state_dict().items()} if ema is not None else None
    if accelerator.is_main_process:
        tmp = ckpt.begin(config.output_dir, step)
        keep = (lambda k: k in names) if config.lora.rank else (lambda k: True)
        ckpt.save_tensors({k: v for k, v in state.items() if keep(k)}, tmp / "model.safetensors")
        if config.lora.rank:
            from .lora import save_lora

            save_lora(unwrapped, tmp / "lora")
        if ema_state is not None:
            ckpt.save_tensors(ema_state, tmp / "ema.safetensors")
        if repa is not None and step <= repa.until_step:
            proj = accelerator.unwrap_model(repa.projector)
            ckpt.save_tensors(proj.state_dict(), tmp / "projector.safetensors")
        ckpt.save_optimizer(optim_state, tmp / "optimizer.pt")
        ckpt.save_state(
            tmp, {"step": step, "world_size": accelerator.num_processes, "config": config.to_dict()}
        )
        ckpt.commit(tmp, config.keep_checkpoints)
    accelerator.wait_for_everyone()


def export_model(accelerator, config: TrainConfig, model: nn.Module, ema: EMA | None) -> None:
    """The final weights as loadable folders: OUTPUT/transformer (+ transformer-ema), or OUTPUT/lora under LoRA."""
    unwrapped = accelerator.unwrap_model(model)
    state = accelerator.get_state_dict(model)
    ema_state = {k: _full(v) for k, v in ema.state_dict().items()} if ema is not None else None
    if not accelerator.is_main_process:
        return
    output = Path(config.output_dir)
    if config.lora.rank:
        from .lora import save_lora

        save_lora(unwrapped, output / "lora")
        return
    layout = unwrapped.cross_attention_layout
    config_dict = {k: v for k, v in unwrapped.config.items() if not k.startswith("_")}
    for name, weights in (("transformer", state), ("transformer-ema", ema_state)):
        if weights is None:
            continue
        with torch.device("meta"):
            export = MotifVideoTransformer(**config_dict, cross_attention_layout=layout)
        export.load_state_dict({**state, **weights}, strict=True, assign=True)
        export.save_pretrained(output / name)


def _optimizer_state(accelerator, model, optimizer) -> dict[str, Any]:
    from accelerate.utils import DistributedType

    if accelerator.distributed_type == DistributedType.FSDP:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return get_optimizer_state_dict(model, optimizer.optimizer, options=options)
    return optimizer.state_dict()


def _load_optimizer(accelerator, model, optimizer, state: dict[str, Any]) -> None:
    from accelerate.utils import DistributedType

    if accelerator.distributed_type == DistributedType.FSDP:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
        set_optimizer_state_dict(model, optimizer.optimizer, state, options=options)
    else:
        optimizer.load_state_dict(state)


def load_weights(folder: Path, model: nn.Module, repa: Repa | None) -> None:
    """Trainable weights (and the REPA projector) from a checkpoint, into the not-yet-wrapped modules."""
    state = ckpt.load_tensors(folder / "model.safetensors")
    result = model.load_state_dict(state, strict=False)
    if result.unexpected_keys:
        raise ValueError(f"checkpoint {folder} has keys this model lacks: {result.unexpected_keys[:3]}")
    projector = folder / "projector.safetensors"
    if repa is not None and projector.exists():
        repa.projector.load_state_dict(ckpt.load_tensors(projector))


# ----------------------------------------------------------------------------------------------------------------
# objectives: what the loop trains (flow matching by default; `motif_video.distill` plugs in a distillation one)


class Objective(Protocol):
    def build_model(self, config: TrainConfig) -> nn.Module: ...

    def prepare(self, config: TrainConfig, accelerator: Any, components: Any) -> None:
        """Called once before the loop: move frozen helpers (a teacher) to the device, encode fixed inputs."""

    def compute_loss(self, model: nn.Module, inputs: dict[str, torch.Tensor], data: TrainData,
                     config: TrainConfig, step: int, first_sample: int, repa: Repa | None, components: Any,
                     process_index: int, draw_step: int | None = None,
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, float]]: ...  # fmt: skip

    def export(self, accelerator: Any, config: TrainConfig, model: nn.Module, ema: EMA | None) -> None: ...


class FlowMatching:
    """The flow-matching objective of the technical report: `build_model`, `compute_loss`, `export_model`."""

    def build_model(self, config: TrainConfig) -> nn.Module:
        return build_model(config)

    def prepare(self, config: TrainConfig, accelerator: Any, components: Any) -> None:
        return None

    def compute_loss(self, *args: Any, **kwargs: Any):
        return compute_loss(*args, **kwargs)

    def export(self, accelerator: Any, config: TrainConfig, model: nn.Module, ema: EMA | None) -> None:
        export_model(accelerator, config, model, ema)


# ----------------------------------------------------------------------------------------------------------------
# the loop


def default_validation(config: TrainConfig, components: Any) -> ValidateFn:
    """Validation videos through `MotifVideoPipeline` with the trainer's components (see `validation.py`)."""
    from .validation import pipeline_validation

    return pipeline_validation(config, components)


def train(
    config: TrainConfig,
    validate: ValidateFn | None = None,
    accelerator: Any = None,
    objective: Objective | None = None,
) -> TrainResult:
    from tqdm.auto import tqdm

    objective = objective or FlowMatching()
    if config.cpu_threads and not torch.cuda.is_available():
        torch.set_num_threads(config.cpu_threads)
    accelerator = accelerator or make_accelerator(config)
    device = accelerator.device
    output = Path(config.output_dir)
    components = None
    if needs_components(config) or config.validation.every:
        from .encoders import load_components

        components = load_components(config.model.components, device)
    if config.validation.every and validate is None:
        validate = default_validation(config, components)
    data = build_data(config, accelerator, components)

    model = objective.build_model(config)
    repa = build_repa(config, model)
    start = 0
    resume_from = ckpt.latest_checkpoint(output) if config.resume else None
    if resume_from is not None:
        start = ckpt.load_state(resume_from)["step"]
        load_weights(resume_from, model, repa)
        logger.info("resuming from %s (step %d)", resume_from, start)

    params = [p for _, p in _trainable(model)] + (list(repa.projector.parameters()) if repa else [])
    o = config.optim
    optimizer = torch.optim.AdamW(
        params, lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay, eps=o.eps
    )
    if repa is not None:
        repa.teacher.to(device)
        model, repa.projector, optimizer = accelerator.prepare(model, repa.projector, optimizer)
    else:
        model, optimizer = accelerator.prepare(model, optimizer)
    unwrapped = accelerator.unwrap_model(model)
    objective.prepare(config, accelerator, components)
    params = [p for group in optimizer.param_groups for p in group["params"]]  # after sharding
    ema = EMA(_trainable(unwrapped), o.ema_decay) if o.ema_decay else None
    if resume_from is not None:
        _load_optimizer(accelerator, model, optimizer, ckpt.load_optimizer(resume_from / "optimizer.pt"))
        if ema is not None and (resume_from / "ema.safetensors").exists():
            ema.load_state_dict(ckpt.load_tensors(resume_from / "ema.safetensors"))

    logs = _Logs(output, config, accelerator.is_main_process, start)
    loader = torch.utils.data.DataLoader(
        data.dataset, batch_sampler=StepBatches(data.sampler, start, config.max_steps, config.overfit_one_batch),
        collate_fn=data.collate, num_workers=config.data.num_workers,
    )  # fmt: skip
    bar = tqdm(total=config.max_steps, initial=start, desc="train", disable=not accelerator.is_main_process)
    losses: list[float] = []
    previous = None
    for step, batch in enumerate(loader, start=start):
        tic = time.perf_counter()
        if batch is None:  # every sample of this rank's batch failed to decode: repeat the last one
            batch = previous
        previous = batch
        inputs = prepare_inputs(batch, data, components, config, device)
        lr = lr_at(step, config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        first = accelerator.process_index * config.data.batch_size
        draw_step = 0 if config.overfit_one_batch else step  # which step's random draws to use
        with accelerator.autocast():
            loss, sample_losses, sigmas, extra = objective.compute_loss(
                model,
                inputs,
                data,
                config,
                step,
                first,
                repa,
                components,
                accelerator.process_index,
                draw_step,
            )
        accelerator.backward(loss)
        grad_norm = accelerator.clip_grad_norm_(params, o.grad_clip) if o.grad_clip > 0 else None
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if ema is not None:
            ema.update([p for _, p in _trainable(unwrapped)])

        mean_loss, bins = _reduce(accelerator, sample_losses, sigmas, config.objective.loss_bins)
        losses.append(mean_loss)
        elapsed = time.perf_counter() - tic
        tokens = (
            sample_losses.numel()
            * math.prod(inputs["latents"].shape[2:])
            // (unwrapped.config.patch_size**2 * unwrapped.config.patch_size_t)
        )
        done = step + 1
        if done % config.log_every == 0 or done == config.max_steps:
            record = {"step": done, "loss": mean_loss, "lr": lr, "tokens_per_s": tokens * accelerator.num_processes / elapsed,
                      "grad_norm": None if grad_norm is None else float(grad_norm), **extra, "loss_bins": bins}  # fmt: skip
            logs.write(record)
        bar.update(1)
        bar.set_postfix(loss=f"{mean_loss:.4f}")
        if config.checkpoint_every and done % config.checkpoint_every == 0 and done != config.max_steps:
            save_checkpoint(accelerator, config, done, model, optimizer, ema, repa)
        if validate is not None and config.validation.every and done % config.validation.every == 0:
            validate(unwrapped, done, output / "validation" / f"step-{done:08d}", accelerator.is_main_process)
    final = max(start, config.max_steps)
    if final > start or resume_from is None:
        save_checkpoint(accelerator, config, final, model, optimizer, ema, repa)
        objective.export(accelerator, config, model, ema)
    if accelerator.is_main_process:
        logger.info(
            "data: %s; bucket utilisation %.0f%%",
            getattr(data.dataset, "skipped", "cached"),
            100 * data.sampler.utilisation,
        )
    bar.close()
    logs.close()
    return TrainResult(output, final, losses)


def _reduce(
    accelerator, losses: torch.Tensor, sigmas: torch.Tensor, num_bins: int
) -> tuple[float, dict[str, float]]:
    """Global mean loss and per-sigma-bin mean losses across ranks."""
    table = torch.zeros(num_bins + 1, 2, device=losses.device)
    index = (sigmas.float().clamp(0, 1 - 1e-6) * num_bins).long()
    table.index_put_((index, torch.zeros_like(index)), losses.float(), accumulate=True)
    table.index_put_(
        (index, torch.ones_like(index)), torch.ones_like(losses, dtype=torch.float), accumulate=True
    )
    table[num_bins, 0], table[num_bins, 1] = losses.float().sum(), losses.numel()
    if accelerator.num_processes > 1:
        table = accelerator.reduce(table, reduction="sum")
    bins = {f"sigma_{b / num_bins:.1f}-{(b + 1) / num_bins:.1f}": float(table[b, 0] / table[b, 1])
            for b in range(num_bins) if table[b, 1] > 0}  # fmt: skip
    return float(table[num_bins, 0] / table[num_bins, 1]), bins


class _Logs:
    """metrics.jsonl (entries past a resumed step are dropped first) and TensorBoard, on the main process."""

    def __init__(self, output: Path, config: TrainConfig, main: bool, start: int) -> None:
        self.main, self.writer = main, None
        self.path = output / "metrics.jsonl"
        if not main:
            return
        output.mkdir(parents=True, exist_ok=True)
        (output / "config.json").write_text(json.dumps(config.to_dict(), indent=1))
        if self.path.exists():
            kept = [
                line
                for line in self.path.read_text().splitlines()
                if line and json.loads(line)["step"] <= start
            ]
            self.path.write_text("".join(line + "\n" for line in kept))
        if config.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(output / "tensorboard"))

    def write(self, record: dict[str, Any]) -> None:
        if not self.main:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "step":
                    self.writer.add_scalar(f"train/{key}", value, record["step"])
            for key, value in record.get("loss_bins", {}).items():
                self.writer.add_scalar(f"loss_bins/{key}", value, record["step"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
