"""Prompt(s) in, MP4(s) out: the library function behind `motif-video generate`.

A request (`motif_video.options.GenerateRequest`, checked field by field by `parse_request`) becomes a
`GenerationPlan` in `plan_generation`, which checks what depends on this machine and the files (CUDA, the image,
the output folder, the process count, the installed kernels) and resolves the model's defaults without loading it,
so bad input fails fast and leaves no file; `generate(request)` plans, loads, runs, writes.

Under `torchrun --nproc-per-node N` (WORLD_SIZE > 1) the ranks share the work as `parallel` says
(`motif_video.parallel.pipeline`): `context` and `guidance` make one video at a time together (rank 0 writes it),
`data` gives rank r the prompts r, r + N, ... (each rank writes its own); rank 0 prints the summary. Video i always
uses seed `seed + i`, so the outputs do not depend on the number of ranks.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from .defaults import fill_request
from .file_modes import write_safetensors
from .hub import check_model_reference
from .input_media import size_from_image, size_from_video
from .options import (
    VIDEO_TO_VIDEO_STRENGTH,
    GenerateRequest,
    check_conditions,
    check_video_size,
    conditioned,
    parse_keyframe,
)
from .pipelines.memory import MemoryPlan, check_offload, plan_for_budget
from .pipelines.speed import SpeedPlan, check_speed_plan
from .replay import media_files

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


@dataclass(frozen=True)
class GenerationPlan:
    """A request with everything decided: the model's defaults filled in, device, dtype, parallel mode, seed, files."""

    request: GenerateRequest  # size, steps and negative prompt resolved from the model's defaults
    device: str  # cpu, cuda or cuda:N
    dtype: str  # bfloat16, float16 or float32
    parallel: str  # none, context, guidance or data
    world_size: int
    seed: int
    outputs: tuple[Path, ...]  # one .mp4 per prompt
    # the video `generate --replay` makes again: its weights are compared with those loaded (a warning where they
    # differ, `replay.warn_changed_weights`)
    replayed: Path | None = None

    @property
    def memory(self) -> MemoryPlan:
        r = self.request
        if r.memory_budget is not None:
            plan = plan_for_budget(r.memory_budget, r.vae_tiling)
            if torch.device(self.device).type == "cpu" and plan.offload != "none":
                plan = MemoryPlan("none", False, r.vae_tiling, "memory budget ignored on the CPU")
            return plan
        return MemoryPlan(r.offload, r.fp8, r.vae_tiling)  # type: ignore[arg-type]

    @property
    def speed(self) -> SpeedPlan:
        r = self.request
        return SpeedPlan(r.compile, r.fp8_compute, r.attention_backend, r.cache_threshold)


def plan_generation(request: GenerateRequest, world_size: int | None = None) -> GenerationPlan:
    """Check everything that needs the machine or the files, without loading a model; raises ValueError."""
    world = world_size if world_size is not None else int(os.environ.get("WORLD_SIZE", "1"))
    check_model_reference(request.model)  # before anything is printed about the video
    given = [("image (--image)", request.image), ("last_image (--last-image)", request.last_image)]
    given += [("keyframe (--keyframe)", parse_keyframe(k)[0]) for k in request.keyframe]
    images = [path for _, path in given if path is not None]
    for role, path in given:
        if path is not None:
            _check_image(path, role)
    if request.video is not None:
        request = size_from_video(request)
    elif images:  # the first image given: its shape, not stretched
        from .pipelines.export import shown_size

        request = size_from_image(request, *shown_size(images[0]))
    request = fill_request(request)
    check_video_size(request.width, request.height, request.num_frames)
    check_conditions(request, request.num_frames)
    parallel = _parallel_mode(request, world)
    device = _device(request.device, world)
    dtype = request.dtype if request.dtype != "auto" else ("bfloat16" if device.type == "cuda" else "float32")
    check_offload(request.offload, device)
    check_speed_plan(SpeedPlan(request.compile, request.fp8_compute, request.attention_backend), device)
    if request.transformer_gguf is not None and not request.transformer_gguf.is_file():
        raise ValueError(f"transformer_gguf {str(request.transformer_gguf)!r} is not a file")
    _check_loras(request.lora)
    outputs = output_paths(request.output, request.prompts)
    check_not_an_input(outputs, media_files(request.values()))
    seed = request.seed if request.seed is not None else int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF
    return GenerationPlan(request, str(device), dtype, parallel, world, seed, tuple(outputs))


def condition_inputs(request: GenerateRequest) -> dict[str, Any]:
    """The pipeline's keyword arguments for the request's media: first and last image, keyframes, input video
    (files read)."""
    from .pipelines.conditions import VideoCondition
    from .pipelines.export import read_image, read_mp4_frames

    inputs: dict[str, Any] = {}
    if request.image is not None:
        inputs["image"] = read_image(request.image)
    if request.last_image is not None:
        inputs["last_image"] = read_image(request.last_image)
    if request.keyframe:
        inputs["conditions"] = [
            VideoCondition(image=read_image(path), frame_index=frame)
            for path, frame in map(parse_keyframe, request.keyframe)
        ]
    if request.video is not None:
        # only the frames it uses: a long input would otherwise be held whole (a minute of 1080p is 10 GB)
        inputs["video"] = read_mp4_frames(request.video, limit=request.num_frames)
        inputs["strength"] = request.strength if request.strength is not None else VIDEO_TO_VIDEO_STRENGTH
    return inputs


def _parallel_mode(request: GenerateRequest, world: int) -> str:
    mode = request.parallel
    if mode == "auto":
        mode = "none" if world == 1 else ("data" if len(request.prompts) >= world else "context")
    if mode != "none" and world == 1:
        raise ValueError(
            f"parallel {mode!r} needs several processes: torchrun --nproc-per-node N motif-video ..."
        )
    if mode == "none" and world > 1:
        raise ValueError(
            f"parallel 'none' with {world} processes would make every video {world} times; "
            "pick context, guidance or data"
        )
    if mode == "guidance" and world != 2:
        raise ValueError(f"parallel 'guidance' needs exactly 2 processes, got {world}")
    return mode


def _device(name: str, world: int) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and world > 1:
        name = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    return device


def _check_loras(specs: tuple[str, ...]) -> None:
    """Each LoRA a readable safetensors file, or a folder holding one, or a Hub repo id (read when the model
    loads); a scale that is not a number named as such."""
    from safetensors import safe_open

    from .interop.lora_spec import local_lora_file, parse_lora_spec

    for spec in specs:
        path, _ = parse_lora_spec(spec)
        head, sep, tail = spec.rpartition(":")
        if sep and not Path(path).expanduser().exists() and Path(head).expanduser().exists():
            raise ValueError(f"lora {spec!r}: the scale after ':' must be a number, got {tail!r}")
        file = local_lora_file(path)
        if file is None:
            continue
        try:
            with safe_open(str(file), framework="pt") as f:
                f.keys()
        except Exception as exc:
            raise ValueError(f"lora {str(file)!r} is not a readable safetensors file ({exc})") from exc


def _check_image(path: Path, role: str = "image") -> None:
    """An image the request names (`role`: which option names it) exists and decodes."""
    from .pipelines.export import check_decodes

    if not path.is_file():
        raise ValueError(f"{role} {str(path)!r} does not exist or is not a file")
    try:
        check_decodes(path)
    except Exception as exc:
        raise ValueError(
            f"{role} {str(path)!r} is not a readable image ({type(exc).__name__}: {exc})"
        ) from exc


def check_not_an_input(outputs: list[Path], sources: list[Path]) -> None:
    """Refuse an output that is one of the files the video is made from: writing it would replace the input (and
    a replay, which checks its inputs' hashes, could not be made)."""
    for source in sources:
        if not Path(source).exists():
            continue
        for out in map(Path, outputs):
            same = out.resolve() == Path(source).resolve() or (out.exists() and os.path.samefile(out, source))
            if same:
                raise ValueError(f"output {str(out)!r} is the input {str(source)!r}: give another --output")


def _slug(text: str, limit: int = 40) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit] or "video"


def output_paths(output: Path, prompts: list[str]) -> list[Path]:
    """One .mp4 path per prompt: `output` itself for one prompt (unless it is a folder), else files in the folder."""
    output = Path(output)
    if len(prompts) == 1 and not output.is_dir():
        if output.suffix.lower() != ".mp4":
            raise ValueError(f"output must be an .mp4 file or a folder, got {str(output)!r}")
        paths, folder = [output], output.parent
    else:
        if output.exists() and not output.is_dir():
            raise ValueError(
                f"output for {len(prompts)} prompts must be a folder, got the file {str(output)!r}"
            )
        if not output.exists() and output.suffix.lower() == ".mp4":
            raise ValueError(
                f"output {str(output)!r} names one MP4 file, but there are {len(prompts)} prompts: give a folder"
            )
        paths = [output / f"{i:03d}-{_slug(p)}.mp4" for i, p in enumerate(prompts)]
        folder = output if output.exists() else output.parent
    folder = folder if str(folder) else Path(".")
    if not folder.is_dir():
        existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
        if existing is not None and not existing.is_dir():
            raise ValueError(
                f"output {str(output)!r} is inside {str(existing)!r}, which is a file, not a folder"
            )
        raise ValueError(f"output folder {str(folder)!r} does not exist")
    _check_writable(folder)
    return paths


def _check_writable(folder: Path) -> None:
    """Create and remove a probe file (permission bits alone do not tell for root or read-only mounts)."""
    import tempfile

    try:
        fd, probe = tempfile.mkstemp(prefix=".motif-video-probe-", dir=folder)
    except OSError as exc:
        raise ValueError(f"output folder {str(folder)!r} is not writable ({exc.strerror})") from exc
    os.close(fd)
    os.unlink(probe)


# ------------------------------------------------------------------------------------------------------ running
def load_pipeline(plan: GenerationPlan):
    """The plan's pipeline, with its GGUF transformer (`transformer_gguf`) and LoRAs (`lora`, `fuse_lora`)."""
    from .pipelines import MotifVideoImageToVideoPipeline, MotifVideoPipeline
    from .pipelines.lora import apply_loras

    r = plan.request
    cls = MotifVideoImageToVideoPipeline if conditioned(r) else MotifVideoPipeline
    components, folded = {}, None
    if r.transformer_gguf is not None:
        from .interop.gguf_files import folded_guidance_scale, load_gguf_for_model

        components["transformer"] = load_gguf_for_model(r.transformer_gguf, r.model, DTYPES[plan.dtype])
        folded = folded_guidance_scale(r.transformer_gguf)
    pipe = cls.from_pretrained(r.model, dtype=DTYPES[plan.dtype], **components)
    # a student's guidance folded into the file: one pass per step, unless asked otherwise
    if folded is not None:
        pipe.generation_defaults = replace(pipe.generation_defaults, guidance="none", guidance_scale=None)
    apply_loras(pipe, r.lora, r.fuse_lora)
    return pipe


def generate(request: GenerateRequest | GenerationPlan, log=print) -> dict[str, Any]:
    """Plan (unless given a plan), load the pipeline, generate one video per prompt, write MP4s; returns what was
    written and measured.

    Under torchrun the process group is initialised here (and destroyed at the end if it was); every rank returns
    the same summary, and only rank 0 logs.
    """
    import torch.distributed as dist

    from .parallel import init_distributed

    plan = request if isinstance(request, GenerationPlan) else plan_generation(request)
    own_group = plan.world_size > 1 and not dist.is_initialized()
    rank = init_distributed()[0] if plan.world_size > 1 else 0
    if plan.world_size > 1:  # a random seed differs per rank: use rank 0's (the one printed)
        seed = [plan.seed]
        dist.broadcast_object_list(seed, src=0)
        plan = replace(plan, seed=seed[0])
    log = log if rank == 0 else (lambda *_: None)
    try:
        result = _generate_on_rank(plan, rank, log)
        if own_group:  # every rank done with the store before any tears the group down
            dist.barrier()
    finally:
        if own_group:
            dist.destroy_process_group()
    return result


def prepare_pipeline(plan: GenerationPlan, show_progress: bool = True):
    """Load the plan's pipeline and apply its memory and speed plans; returns (pipe, memory plan). Parallel modes
    are applied by `enable_parallel` (its plan is passed to each call).

    A long-lived worker (`motif-video serve`) calls this once and then `render_latents` / `write_video` per job.
    """
    from .pipelines.memory import apply_memory_plan
    from .pipelines.speed import apply_speed_plan

    pipe = load_pipeline(plan)
    pipe.set_progress_bar_config(disable=not show_progress)
    apply_memory_plan(pipe, plan.memory, torch.device(plan.device))
    apply_speed_plan(pipe, plan.speed)
    return pipe, plan.memory


def render_latents(
    pipe, plan: GenerationPlan, i: int, callback=None, parallel=None, inputs=None, fit_callback=None
):
    """The final latents of video i of the plan (seed `seed + i`); `callback` is the pipeline's
    `callback_on_step_end` and `fit_callback` its `callback_on_fit_step`, `parallel` the plan `enable_parallel`
    returned, `inputs` the request's media (`condition_inputs`). The call's keywords come from the option
    declarations (`options.pipeline_kwargs`)."""
    from .options import pipeline_kwargs

    kwargs = pipeline_kwargs(plan.request, plan.request.prompts[i], image_to_video=conditioned(plan.request))
    return pipe(
        **kwargs,
        **(inputs or {}),
        generator=torch.Generator("cpu").manual_seed(plan.seed + i),
        output_type="latent",
        parallel=parallel,
        callback_on_step_end=callback,
        callback_on_fit_step=fit_callback,
    ).frames


def write_video(pipe, latents, path: Path, plan: GenerationPlan) -> Path:
    """Decode latents and write them as an MP4 at `path` (atomically: the file appears only when complete), with
    the settings it was made with in its metadata (`motif_video.replay`: `generate --replay` reads them)."""
    from .pipelines.export import write_mp4
    from .replay import video_settings

    frames = pipe.decode(latents, "np")[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    settings = video_settings(plan, plan.outputs.index(path), pipe) if path in plan.outputs else None
    return write_mp4(frames, path, fps=plan.request.fps, metadata=settings)


def _generate_on_rank(plan: GenerationPlan, rank: int, log) -> dict[str, Any]:
    from .parallel.pipeline import enable_parallel

    r, device = plan.request, torch.device(plan.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    many = len(r.prompts) > 1  # several videos: one bar over them instead of one per video's steps
    pipe, memory = prepare_pipeline(plan, show_progress=rank == 0 and not many)
    if plan.replayed is not None and rank == 0:
        from .replay import warn_changed_weights

        warn_changed_weights(plan.replayed, r.values(), pipe)
    parallel = enable_parallel(pipe, plan.parallel)  # type: ignore[arg-type]
    over = f" over {plan.world_size} processes" if plan.world_size > 1 else ""
    log(f"memory mode: {memory.describe()}; speed: {plan.speed.describe()}; parallel: {plan.parallel}{over}")
    written, cache_lines = _render_videos(pipe, plan, rank, parallel, log, bar=many and rank == 0)
    written, cache_lines = _gather(plan.world_size, written, cache_lines, plan.parallel == "data")
    seconds = time.perf_counter() - start
    peak = _peak_memory_gb(device)
    for path in written:
        log(f"wrote {path}")
        if r.save_latents:
            log(f"wrote {latents_path(path)}")
    for i, line in cache_lines:
        log(f"step cache (threshold {r.cache_threshold:g}), video {i}: {line}")
    where = "GPU" if device.type == "cuda" else "process"
    log(
        f"time {seconds:.1f} s, peak {where} memory {peak:.2f} GB{' (rank 0)' if plan.world_size > 1 else ''}"
    )
    return {"outputs": written, "seconds": seconds, "peak_memory_gb": peak, "memory_plan": memory,
            "step_cache": dict(cache_lines)}  # fmt: skip


def _render_videos(
    pipe, plan: GenerationPlan, rank: int, parallel, log, bar: bool
) -> tuple[list[Path], list]:
    """This rank's videos: every one (context, guidance, none) or every N-th (data); written by rank 0 unless
    data-parallel (`bar`: one progress bar over the videos). Returns the paths written and the step cache's lines."""
    from tqdm.auto import tqdm

    from .pipelines.speed import cache_summary
    from .vocabulary import prompt_check

    r = plan.request
    inputs = condition_inputs(r)
    check_prompt = prompt_check(pipe.tokenizer)  # for a closed word list (the small model's), else None
    data_parallel = plan.parallel == "data"
    mine = range(rank, len(r.prompts), plan.world_size) if data_parallel else range(len(r.prompts))
    writes = data_parallel or rank == 0
    written, cache_lines = [], []
    for i in tqdm(mine, desc="videos", unit="video", disable=not bar):
        if check_prompt is not None and (warning := check_prompt(r.prompts[i])) is not None:
            log(f"warning: prompt {i}: {warning}")
        latents = render_latents(pipe, plan, i, parallel=parallel, inputs=inputs)
        if i == mine[0] and pipe.last_sampler is not None:
            log(f"sampler: Euler, shift {pipe.last_sampler.shift:g} ({pipe.last_sampler.source})")
        if r.cache_threshold is not None:  # the step cache enabled on the transformer (`apply_speed_plan`)
            cache_lines.append((i, cache_summary(pipe.transformer.cache_report())))
        if writes:
            path = plan.outputs[i]
            write_video(pipe, latents, path, plan)
            if r.save_latents:
                _save_latents(latents, latents_path(path), plan.seed + i)
            written.append(path)
    return written, cache_lines


def _gather(
    world: int, written: list[Path], cache_lines: list, data_parallel: bool
) -> tuple[list[Path], list]:
    """Every rank's outputs and cache reports, in prompt order (only data parallelism splits them)."""
    if world == 1 or not data_parallel:
        return written, cache_lines
    import torch.distributed as dist

    parts: list = [None] * world
    dist.all_gather_object(parts, (written, cache_lines))
    paths = sorted(p for part in parts for p in part[0])
    lines = sorted(line for part in parts for line in part[1])
    return paths, lines


def latents_path(video: Path) -> Path:
    """Where `--save-latents` writes a video's final latents: next to its MP4, as NAME.latents.safetensors."""
    return video.with_suffix(".latents.safetensors")


def _save_latents(latents: torch.Tensor, path: Path, seed: int) -> None:
    write_safetensors({"latents": latents}, path, metadata={"seed": str(seed)})


def _peak_memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB
