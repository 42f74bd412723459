"""Prompt(s) in, MP4(s) out: the library function behind `motif-video generate`.

`GenerateRequest.validate()` checks everything that can be checked without loading a model (sizes, prompts, image,
output path, option values), so bad input fails fast and leaves no file; `generate(request)` loads, runs, writes.

Under `torchrun --nproc-per-node N` (WORLD_SIZE > 1) the ranks share the work as `parallel` says
(`motif_video.parallel.pipeline`): `context` and `guidance` make one video at a time together (rank 0 writes it),
`data` gives rank r the prompts r, r + N, ... (each rank writes its own); rank 0 prints the summary. Video i always
uses seed `seed + i`, so the outputs do not depend on the number of ranks.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .hub import DEFAULT_MODEL_ID
from .info import check_video_size
from .pipelines.export import DEFAULT_FPS
from .pipelines.guidance import GUIDANCE_MODES
from .pipelines.memory import OFFLOAD_MODES, MemoryPlan, plan_for_budget
from .pipelines.speed import SpeedPlan, check_speed_plan

PARALLEL_CHOICES = ("auto", "none", "context", "guidance", "data")
GUIDANCE_BATCHING = ("auto", "batched", "sequential")

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


@dataclass
class GenerateRequest:
    prompts: list[str]
    output: Path
    image: Path | None = None
    keep_first_frame: bool | None = None  # I2V only; None: the folder's generation_config.json, else off
    model: str = DEFAULT_MODEL_ID
    height: int = 736
    width: int = 1280
    num_frames: int = 121
    steps: int | None = None  # None: the model folder's generation_config.json, else 50
    guidance: str | None = None  # None: the folder's generation_config.json, else its guider (APG)
    guidance_scale: float | None = None
    guidance_batching: str = "auto"
    shift: float | None = None
    negative_prompt: str | None = None
    seed: int | None = None
    fps: int = DEFAULT_FPS
    dtype: str = "auto"
    device: str = "auto"
    offload: str = "none"
    fp8: bool = False
    vae_tiling: bool = False
    memory_budget: float | None = None
    attention_backend: str | None = None
    save_latents: bool = False
    compile: str | None = None  # torch.compile backend for the repeated blocks; None = off
    cache_threshold: float | None = None  # step cache threshold; None = no cache (0 = cache on, exact)
    fp8_compute: bool = False
    parallel: str = "auto"  # auto: none on one process; data for >= WORLD_SIZE prompts, else context
    world_size: int = 1  # from torchrun's WORLD_SIZE unless set
    outputs: list[Path] = field(default_factory=list)

    # ------------------------------------------------------------------------------------------------ validation
    def validate(self) -> GenerateRequest:
        """Check every input without loading a model; fill `outputs`, `seed`, `device`, `dtype`. Returns self."""
        if not self.prompts or any(not p.strip() for p in self.prompts):
            raise ValueError("prompt must be non-empty text (one per line in --prompt-file)")
        check_video_size(self.width, self.height, self.num_frames)
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.guidance is not None and self.guidance not in GUIDANCE_MODES:
            raise ValueError(f"guidance must be one of {list(GUIDANCE_MODES)}, got {self.guidance!r}")
        if self.guidance_batching not in GUIDANCE_BATCHING:
            raise ValueError(
                f"guidance batching must be one of {list(GUIDANCE_BATCHING)}, got {self.guidance_batching!r}"
            )
        if self.guidance_scale is not None and self.guidance_scale < 0:
            raise ValueError(f"guidance scale must be >= 0, got {self.guidance_scale}")
        if self.shift is not None and self.shift <= 0:
            raise ValueError(f"shift must be > 0, got {self.shift}")
        if self.fps <= 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")
        if self.offload not in OFFLOAD_MODES:
            raise ValueError(f"offload must be one of {list(OFFLOAD_MODES)}, got {self.offload!r}")
        if self.memory_budget is not None and self.memory_budget <= 0:
            raise ValueError(f"memory budget must be > 0 GB, got {self.memory_budget}")
        if self.cache_threshold is not None and not self.cache_threshold >= 0:
            raise ValueError(f"cache threshold must be >= 0 (0 = exact), got {self.cache_threshold}")
        self._check_parallel()
        self._check_device_and_dtype()
        check_speed_plan(self.speed_plan(), torch.device(self.device), self.fp8, self.offload)
        if self.attention_backend is not None:
            backends = user_attention_backends()
            if self.attention_backend not in backends:
                raise ValueError(
                    f"attention backend {self.attention_backend!r} is not available here; available: {backends}"
                )
        if self.image is not None:
            _check_image(self.image)
        elif self.keep_first_frame is not None:
            raise ValueError("--keep-first-frame / --no-keep-first-frame need --image (image-to-video)")
        self.outputs = _output_paths(self.output, self.prompts)
        if self.seed is None:
            self.seed = int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF
        return self

    def _check_parallel(self) -> None:
        if self.world_size == 1:
            self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if self.parallel not in PARALLEL_CHOICES:
            raise ValueError(f"parallel must be one of {list(PARALLEL_CHOICES)}, got {self.parallel!r}")
        if self.parallel == "auto":
            if self.world_size == 1:
                self.parallel = "none"
            else:
                self.parallel = "data" if len(self.prompts) >= self.world_size else "context"
        if self.parallel != "none" and self.world_size == 1:
            raise ValueError(
                f"parallel {self.parallel!r} needs several processes: torchrun --nproc-per-node N motif-video ..."
            )
        if self.parallel == "none" and self.world_size > 1:
            raise ValueError(
                f"parallel 'none' with {self.world_size} processes would make every video {self.world_size} "
                "times; pick context, guidance or data"
            )
        if self.parallel == "guidance":
            if self.world_size != 2:
                raise ValueError(f"parallel 'guidance' needs exactly 2 processes, got {self.world_size}")
            if self.guidance == "none":
                raise ValueError(
                    "parallel 'guidance' splits the cond and uncond passes: needs --guidance apg or cfg"
                )

    def _check_device_and_dtype(self) -> None:
        if self.device == "auto":
            self.device = "cuda" if torch.cuda.is_available() else "cpu"
        if self.device == "cuda" and self.world_size > 1:
            self.device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
        try:
            device = torch.device(self.device)
        except (RuntimeError, ValueError) as exc:
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}") from exc
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {self.device!r} requested but CUDA is not available; use --device cpu")
        if device.type not in ("cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if self.dtype == "auto":
            self.dtype = "bfloat16" if device.type == "cuda" else "float32"
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {['auto', *DTYPES]}, got {self.dtype!r}")
        if self.offload in ("model", "sequential") and device.type == "cpu":
            raise ValueError(f"offload {self.offload!r} needs an accelerator device; device is {self.device}")

    def memory_plan(self) -> MemoryPlan:
        if self.memory_budget is not None:
            plan = plan_for_budget(self.memory_budget, self.vae_tiling)
            if torch.device(self.device).type == "cpu" and plan.offload != "none":
                plan = MemoryPlan("none", False, self.vae_tiling, "memory budget ignored on the CPU")
            return plan
        return MemoryPlan(self.offload, self.fp8, self.vae_tiling)  # type: ignore[arg-type]

    def speed_plan(self) -> SpeedPlan:
        return SpeedPlan(self.compile, self.fp8_compute)


def user_attention_backends() -> list[str]:
    """The attention backends a user may pick here (`ulysses` is internal to context parallelism)."""
    from .models import available_attention_backends

    return [name for name in available_attention_backends() if name != "ulysses"]


def _check_image(path: Path) -> None:
    import PIL.Image

    if not path.is_file():
        raise ValueError(f"image {str(path)!r} does not exist or is not a file")
    try:
        with PIL.Image.open(path) as im:
            im.verify()
    except Exception as exc:
        raise ValueError(
            f"image {str(path)!r} is not a readable image ({type(exc).__name__}: {exc})"
        ) from exc


def _slug(text: str, limit: int = 40) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit] or "video"


def _output_paths(output: Path, prompts: list[str]) -> list[Path]:
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
        paths = [output / f"{i:03d}-{_slug(p)}.mp4" for i, p in enumerate(prompts)]
        folder = output if output.exists() else output.parent
    folder = folder if str(folder) else Path(".")
    if not folder.is_dir():
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
def load_pipeline(request: GenerateRequest):
    from .pipelines import MotifVideoImageToVideoPipeline, MotifVideoPipeline

    cls = MotifVideoPipeline if request.image is None else MotifVideoImageToVideoPipeline
    return cls.from_pretrained(request.model, dtype=DTYPES[request.dtype])


def generate(request: GenerateRequest, log=print) -> dict[str, Any]:
    """Load the pipeline, generate one video per prompt, write MP4s; returns what was written and measured.

    Under torchrun the process group is initialised here (and destroyed at the end if it was); every rank returns
    the same summary, and only rank 0 logs.
    """
    import torch.distributed as dist

    from .parallel import init_distributed

    request.validate()
    own_group = request.world_size > 1 and not dist.is_initialized()
    rank = init_distributed()[0] if request.world_size > 1 else 0
    if request.world_size > 1:  # a random seed differs per rank: use rank 0's (the one printed)
        seed = [request.seed]
        dist.broadcast_object_list(seed, src=0)
        request.seed = seed[0]
    log = log if rank == 0 else (lambda *_: None)
    try:
        result = _generate_on_rank(request, rank, log)
    finally:
        if own_group:
            dist.destroy_process_group()
    return result


def prepare_pipeline(request: GenerateRequest, show_progress: bool = True):
    """Load the request's pipeline and apply its memory, speed and parallel plans; returns (pipe, memory plan).

    A long-lived worker (`motif-video serve`) calls this once and then `render_latents` / `write_video` per job.
    """
    from .parallel.pipeline import enable_parallel
    from .pipelines.memory import apply_memory_plan
    from .pipelines.speed import apply_speed_plan

    pipe = load_pipeline(request)
    pipe.set_progress_bar_config(disable=not show_progress)
    plan = request.memory_plan()
    apply_memory_plan(pipe, plan, torch.device(request.device))
    apply_speed_plan(pipe, request.speed_plan())
    enable_parallel(pipe, request.parallel)  # type: ignore[arg-type]
    return pipe, plan


def render_latents(pipe, request: GenerateRequest, i: int, image=None, step_cache=None, callback=None):
    """The final latents of video i of the request (seed `seed + i`); `callback` is the pipeline's
    `callback_on_step_end`."""
    kwargs = {"image": image, "keep_first_frame": request.keep_first_frame} if image is not None else {}
    return pipe(
        prompt=request.prompts[i],
        negative_prompt=request.negative_prompt,
        height=request.height,
        width=request.width,
        num_frames=request.num_frames,
        num_inference_steps=request.steps,
        guidance=request.guidance,
        guidance_scale=request.guidance_scale,
        guidance_batching=request.guidance_batching,
        shift=request.shift,
        generator=torch.Generator("cpu").manual_seed(request.seed + i),
        output_type="latent",
        step_cache=step_cache,
        callback_on_step_end=callback,
        **kwargs,
    ).frames


def write_video(pipe, latents, path: Path, request: GenerateRequest) -> Path:
    """Decode latents and write them as an MP4 at `path` (atomically: the file appears only when complete)."""
    from .pipelines.export import write_mp4

    frames = pipe.decode(latents, "np")[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_mp4(frames, path, fps=request.fps)


def _generate_on_rank(request: GenerateRequest, rank: int, log) -> dict[str, Any]:
    import contextlib

    import PIL.Image

    from .models import attention_backend
    from .perf.step_cache import StepCache
    from .pipelines.speed import cache_summary

    device = torch.device(request.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    pipe, plan = prepare_pipeline(request, show_progress=rank == 0)
    log(f"memory mode: {plan.describe()}; speed: {request.speed_plan().describe()}; parallel: {request.parallel}"
        f"{f' over {request.world_size} processes' if request.world_size > 1 else ''}")  # fmt: skip
    image = PIL.Image.open(request.image).convert("RGB") if request.image is not None else None
    backend = (
        attention_backend(request.attention_backend)
        if request.attention_backend
        else contextlib.nullcontext()
    )
    data_parallel = request.parallel == "data"
    mine = (
        range(rank, len(request.prompts), request.world_size)
        if data_parallel
        else range(len(request.prompts))
    )
    writes = data_parallel or rank == 0
    cache = StepCache(request.cache_threshold) if request.cache_threshold is not None else None
    written, cache_lines = [], []
    with backend:
        for i in mine:
            path = request.outputs[i]
            latents = render_latents(pipe, request, i, image=image, step_cache=cache)
            if i == mine[0] and pipe.last_sampler is not None:
                log(f"sampler: Euler, shift {pipe.last_sampler.shift:g} ({pipe.last_sampler.source})")
            if cache is not None:
                cache_lines.append((i, cache_summary(cache.report())))
            if not writes:
                continue
            write_video(pipe, latents, path, request)
            if request.save_latents:
                _save_latents(latents, path.with_suffix(".latents.safetensors"), request.seed + i)
            written.append(path)
    written, cache_lines = _gather(request.world_size, written, cache_lines, data_parallel)
    seconds = time.perf_counter() - start
    peak = _peak_memory_gb(device)
    for path in written:
        log(f"wrote {path}")
    for i, line in cache_lines:
        log(f"step cache (threshold {request.cache_threshold:g}), video {i}: {line}")
    where = "GPU" if device.type == "cuda" else "process"
    log(
        f"time {seconds:.1f} s, peak {where} memory {peak:.2f} GB{' (rank 0)' if request.world_size > 1 else ''}"
    )
    return {"outputs": written, "seconds": seconds, "peak_memory_gb": peak, "memory_plan": plan,
            "step_cache": dict(cache_lines)}  # fmt: skip


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


def _save_latents(latents: torch.Tensor, path: Path, seed: int) -> None:
    from safetensors.torch import save_file

    tmp = path.with_name(f".{path.name}.part")
    save_file({"latents": latents.detach().cpu().contiguous()}, str(tmp), metadata={"seed": str(seed)})
    os.replace(tmp, path)


def _peak_memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB
