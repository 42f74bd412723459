"""The training loop: one process, DDP or FSDP2 (accelerate); an objective's loss, AdamW, EMA, checkpoints, logs.

    setup.py          accelerator, model, optimiser, learning-rate schedule
    inputs.py         the dataset, this rank's batches, the model inputs of one batch
    draws.py          every random draw as a function of (seed, step, stream)
    objective.py      what the loop trains: flow_matching.py (default), distill/objective.py
    checkpoint.py     save and resume; export.py: the final folders; logs.py: metrics

Every random draw is a pure function of (seed, step, sample index), and the batch order a pure function of
(seed, step), so a resumed run repeats an uninterrupted one exactly, and N processes reproduce one process with the
same global batch (per-rank losses are averaged, as DDP averages gradients).
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import checkpoint as ckpt
from .config import TrainConfig
from .ema import EMA
from .export import is_exported
from .flow_matching import FlowMatching
from .inputs import StepBatches, TrainData, build_data, cached_skips, needs_encoders, prepare_inputs
from .logs import MetricsLog, reduce_losses
from .objective import Objective, StepDraws
from .setup import lr_at, make_accelerator, make_optimizer, trainable

logger = logging.getLogger(__name__)

SAME_SIGNAL_S = 1.0  # a signal this soon after the first is the same stop, delivered twice
ValidateFn = Callable[[nn.Module, int, Path, bool], None]  # (model, step, folder, is_main)


@dataclass
class TrainResult:
    output_dir: Path
    step: int
    losses: list[float] = field(default_factory=list)  # global mean loss of each step run by this call
    exported: bool = False  # whether this call wrote the final folders


@dataclass
class Run:
    """A run between setup and the end of its loop."""

    config: TrainConfig
    accelerator: Any
    objective: Objective
    data: TrainData
    components: Any
    model: nn.Module  # wrapped by the accelerator
    unwrapped: nn.Module
    optimizer: Any
    params: list[nn.Parameter]  # as the optimiser holds them (sharded under FSDP2): gradient clipping
    ema: EMA | None
    start: int
    resumed: bool
    logs: MetricsLog
    validate: ValidateFn | None


def train(
    config: TrainConfig,
    validate: ValidateFn | None = None,
    accelerator: Any = None,
    objective: Objective | None = None,
) -> TrainResult:
    """Train `config` (flow matching unless `objective` says otherwise) from its newest checkpoint, if any."""
    from tqdm.auto import tqdm

    if config.cpu_threads and not torch.cuda.is_available():
        torch.set_num_threads(config.cpu_threads)
    accelerator = accelerator or make_accelerator(config)
    run = start_run(config, accelerator, objective or FlowMatching(config), validate)
    loader = torch.utils.data.DataLoader(
        run.data.dataset, batch_sampler=StepBatches(run.data.sampler, run.start, config.max_steps, config.overfit_one_batch),
        collate_fn=run.data.collate, num_workers=config.data.num_workers,
    )  # fmt: skip
    bar = tqdm(
        total=config.max_steps, initial=run.start, desc="train", disable=not accelerator.is_main_process
    )
    losses: list[float] = []
    previous = None
    with stop_between_steps(accelerator.is_main_process) as stop:
        for step, batch in enumerate(loader, start=run.start):
            for reason, path in batch.pop("skipped", ()):  # decoded in a loader worker: counted here
                run.data.dataset.skipped.add(reason, path)
            # every sample of this rank's batch failed to decode: repeat the last one
            if "index" not in batch:
                batch = previous if previous is not None else stand_in_batch(run.data)
            previous = batch
            record = train_step(run, step, batch)
            losses.append(record["loss"])
            bar.update(1)
            bar.set_postfix(loss=f"{record['loss']:.4f}")
            after_step(run, record)
            if record["step"] < config.max_steps and on_any_rank(accelerator, stop.is_set()):
                if not periodic_checkpoint(config, record["step"]):  # else saved just now
                    save_checkpoint(run, record["step"])
                run.logs.close()
                bar.close()
                if accelerator.is_main_process:
                    logger.warning(
                        "interrupted: checkpoint at step %d; the same command resumes", record["step"]
                    )
                raise KeyboardInterrupt
    final, exported = finish_run(run)
    bar.close()
    return TrainResult(Path(config.output_dir), final, losses, exported)


@contextlib.contextmanager
def stop_between_steps(announce: bool) -> Iterator[threading.Event]:
    """An event set by Ctrl-C or SIGTERM, for the loop to checkpoint after the step it is in and stop: a step cut
    in the middle (inside the optimiser's update) could not be saved. A second signal stops at once, unless it comes
    within `SAME_SIGNAL_S` of the first: then it is the same stop, delivered twice (a job stopped by SLURM or
    systemd signals every process, and torchrun forwards the signal it got to its workers as well). Every rank of a
    multi-process run sets its own event; `on_any_rank` makes them stop together. `announce`: log the stop (the
    main process only, not once per rank)."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    first = 0.0

    def note(signum, frame):
        nonlocal first
        if stop.is_set():
            if time.monotonic() - first > SAME_SIGNAL_S:
                raise KeyboardInterrupt
            return
        first = time.monotonic()
        stop.set()
        if announce:
            logger.warning("stopping after this step, with a checkpoint (again to stop at once)")

    previous = {sig: signal.signal(sig, note) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            if handler is not None:  # None: set outside Python, nothing to put back
                signal.signal(sig, handler)


def on_any_rank(accelerator: Any, flag: bool) -> bool:
    """Whether `flag` is set on any process, the same answer on every one: one all-reduce of a scalar (MAX) on the
    backend's device, beside the step's own all-reduce of its losses."""
    if accelerator.num_processes == 1:
        return flag
    return bool(accelerator.reduce(torch.tensor([float(flag)], device=accelerator.device), reduction="max"))


def start_run(
    config: TrainConfig, accelerator: Any, objective: Objective, validate: ValidateFn | None
) -> Run:
    """Components, data, model and optimiser, resumed from the newest checkpoint when `config.resume`."""
    check_fresh_start(config)
    components = None
    if needs_encoders(config) or objective.needs_components() or config.validation.every:
        from .components import load_components

        components = load_components(config.model.components, accelerator.device)
    if config.validation.every and validate is None:
        from .validation import pipeline_validation

        validate = pipeline_validation(config, components)
    data = build_data(config, accelerator, components)
    model = objective.build_model()
    resume_from = ckpt.latest_checkpoint(config.output_dir) if config.resume else None
    start = 0
    if resume_from is not None:
        start = ckpt.load_state(resume_from)["step"]
        ckpt.load_weights(resume_from, model, objective.extras)
        logger.info("resuming from %s (step %d)", resume_from, start)
    extras = objective.extras
    extra_params = [p for module in extras.values() for p in module.parameters()]
    optimizer = make_optimizer(config, [p for _, p in trainable(model)] + extra_params)
    model, *wrapped, optimizer = accelerator.prepare(model, *extras.values(), optimizer)
    objective.extras = dict(zip(extras, wrapped))
    unwrapped = accelerator.unwrap_model(model)
    objective.prepare(accelerator, components, data)
    ema = EMA(trainable(unwrapped), config.optim.ema_decay) if config.optim.ema_decay else None
    if resume_from is not None:
        state = ckpt.load_optimizer(resume_from / "optimizer.pt")
        ckpt.load_optimizer_state(accelerator, model, optimizer, state)
        if ema is not None and (resume_from / "ema.safetensors").exists():
            ema.load_state_dict(ckpt.load_tensors(resume_from / "ema.safetensors"))
    params = [p for group in optimizer.param_groups for p in group["params"]]  # after sharding
    logs = MetricsLog(Path(config.output_dir), config, accelerator.is_main_process, start)
    return Run(config, accelerator, objective, data, components, model, unwrapped, optimizer, params, ema,
               start, resume_from is not None, logs, validate)  # fmt: skip


def check_fresh_start(config: TrainConfig) -> None:
    """A `ValueError` for `resume: false` in a folder that holds an earlier run's checkpoints: the new run's would
    be pruned as the older ones and a later resume would pick whichever is newest, mixing the two runs. Deleting
    them is left to the user, who may still want them."""
    newest = None if config.resume else ckpt.latest_checkpoint(config.output_dir)
    if newest is not None:
        raise ValueError(
            f"resume=false, but {newest.parent} holds checkpoints of an earlier run (newest: {newest.name}), "
            "which this run's would mix with: train into another folder (--output / output_dir=...), delete "
            f"{newest.parent} to start over, or leave resume=true to continue that run"
        )


def train_step(run: Run, step: int, batch: Any) -> dict[str, Any]:
    """One optimiser step on this rank's `batch`; returns the step's log record (global mean loss)."""
    config, accelerator = run.config, run.accelerator
    tic = time.perf_counter()
    inputs = prepare_inputs(batch, run.data, run.components, config, accelerator.device)
    lr = lr_at(step, config)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    rank = accelerator.process_index
    at = StepDraws(step, 0 if config.overfit_one_batch else step, rank * config.data.batch_size, rank)
    with accelerator.autocast():
        out = run.objective.compute_loss(run.model, inputs, at)
    accelerator.backward(out.loss)
    o = config.optim
    grad_norm = accelerator.clip_grad_norm_(run.params, o.grad_clip) if o.grad_clip > 0 else None
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    if run.ema is not None:
        run.ema.update([p for _, p in trainable(run.unwrapped)])

    mean_loss, bins = reduce_losses(accelerator, out.sample_losses, out.sigmas, config.objective.loss_bins)
    elapsed = time.perf_counter() - tic
    patch = run.unwrapped.config.patch_size**2 * run.unwrapped.config.patch_size_t
    tokens = out.sample_losses.numel() * math.prod(inputs["latents"].shape[2:]) // patch
    return {"step": step + 1, "loss": mean_loss, "lr": lr, "tokens_per_s": tokens * accelerator.num_processes / elapsed,
            "grad_norm": None if grad_norm is None else float(grad_norm), **out.metrics, "loss_bins": bins}  # fmt: skip


def periodic_checkpoint(config: TrainConfig, done: int) -> bool:
    """Whether `after_step` checkpoints after step `done` (the last step's is the final one, saved by
    `finish_run`)."""
    return bool(config.checkpoint_every) and done % config.checkpoint_every == 0 and done != config.max_steps


def after_step(run: Run, record: dict[str, Any]) -> None:
    """Log, checkpoint and validate after a step, each at its own interval."""
    config, done = run.config, record["step"]
    if done % config.log_every == 0 or done == config.max_steps:
        run.logs.write(record)
    if periodic_checkpoint(config, done):
        save_checkpoint(run, done)
    if run.validate is not None and config.validation.every and done % config.validation.every == 0:
        folder = Path(config.output_dir) / "validation" / f"step-{done:08d}"
        run.validate(run.unwrapped, done, folder, run.accelerator.is_main_process)


def finish_run(run: Run) -> tuple[int, bool]:
    """The last checkpoint and the objective's final folders; (the final step, whether it exported them).

    A resumed run with nothing left to do writes the folders only when they are missing: a run stopped between its
    last checkpoint and its export is exported from that checkpoint (the weights just loaded), instead of never."""
    final = max(run.start, run.config.max_steps)
    trained = final > run.start or not run.resumed
    if trained:
        save_checkpoint(run, final)
    export = trained or not is_exported(run.config)
    if export:
        run.objective.export(run.accelerator, run.model, run.ema)
    skipped = every_ranks_skips(run)
    if run.accelerator.is_main_process:
        skipped = skipped or cached_skips(run.config)
        logger.info("data: %s; bucket utilisation %.0f%%", skipped, 100 * run.data.sampler.utilisation)
    run.logs.close()
    return final, export


def stand_in_batch(data: TrainData) -> dict[str, Any]:
    """A batch of the first media item that decodes, for a first step whose every sample failed to (no batch before
    it to repeat)."""
    for index in range(len(data.dataset)):
        batch = data.collate([data.dataset[index]])
        if "index" in batch:
            batch.pop("skipped")
            return batch
    raise ValueError(f"none of the {len(data.dataset)} media items decodes ({data.dataset.skipped})")


def every_ranks_skips(run: Run):
    """The media dataset's skip report with every rank's files in it (each rank decodes its own share), or None for
    a run from a cache. Called by every rank."""
    report = getattr(run.data.dataset, "skipped", None)
    if report is None or run.accelerator.num_processes == 1:
        return report
    from accelerate.utils import gather_object

    for reason, path in gather_object([(r, p) for p, r in report.reasons.items()]):
        report.add(reason, path)
    return report


def save_checkpoint(run: Run, step: int) -> None:
    extras = run.objective.saved_extras(step)
    ckpt.save_checkpoint(run.accelerator, run.config, step, run.model, run.optimizer, run.ema, extras)
