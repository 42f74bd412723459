"""Prompt(s) in, MP4(s) out: the library function behind `motif-video generate`.

`GenerateRequest.validate()` checks everything that can be checked without loading a model (sizes, prompts, image,
output path, option values), so bad input fails fast and leaves no file; `generate(request)` loads, runs, writes.
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

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


@dataclass
class GenerateRequest:
    prompts: list[str]
    output: Path
    image: Path | None = None
    model: str = DEFAULT_MODEL_ID
    height: int = 736
    width: int = 1280
    num_frames: int = 121
    steps: int | None = None  # None: the model folder's generation_config.json, else 50
    guidance: str | None = None  # None: the folder's generation_config.json, else its guider (APG)
    guidance_scale: float | None = None
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
        self._check_device_and_dtype()
        if self.attention_backend is not None:
            from .models import available_attention_backends

            if self.attention_backend not in available_attention_backends():
                raise ValueError(
                    f"attention backend {self.attention_backend!r} is not available; "
                    f"available: {available_attention_backends()}"
                )
        if self.image is not None:
            _check_image(self.image)
        self.outputs = _output_paths(self.output, self.prompts)
        if self.seed is None:
            self.seed = int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF
        return self

    def _check_device_and_dtype(self) -> None:
        if self.device == "auto":
            self.device = "cuda" if torch.cuda.is_available() else "cpu"
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
    """Load the pipeline, generate one video per prompt, write MP4s; returns what was written and measured."""
    import contextlib

    import PIL.Image

    from .models import attention_backend
    from .pipelines.export import write_mp4
    from .pipelines.memory import apply_memory_plan

    request.validate()
    device = torch.device(request.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    pipe = load_pipeline(request)
    plan = request.memory_plan()
    apply_memory_plan(pipe, plan, device)
    log(f"memory mode: {plan.describe()}")
    image = PIL.Image.open(request.image).convert("RGB") if request.image is not None else None
    backend = (
        attention_backend(request.attention_backend)
        if request.attention_backend
        else contextlib.nullcontext()
    )
    written = []
    with backend:
        for i, (prompt, path) in enumerate(zip(request.prompts, request.outputs)):
            kwargs = {"image": image} if image is not None else {}
            latents = pipe(
                prompt=prompt,
                negative_prompt=request.negative_prompt,
                height=request.height,
                width=request.width,
                num_frames=request.num_frames,
                num_inference_steps=request.steps,
                guidance=request.guidance,
                guidance_scale=request.guidance_scale,
                shift=request.shift,
                generator=torch.Generator("cpu").manual_seed(request.seed + i),
                output_type="latent",
                **kwargs,
            ).frames
            if i == 0 and pipe.last_sampler is not None:
                log(f"sampler: Euler, shift {pipe.last_sampler.shift:g} ({pipe.last_sampler.source})")
            frames = pipe.decode(latents, "np")[0]
            path.parent.mkdir(parents=True, exist_ok=True)
            write_mp4(frames, path, fps=request.fps)
            if request.save_latents:
                _save_latents(latents, path.with_suffix(".latents.safetensors"), request.seed + i)
            written.append(path)
    seconds = time.perf_counter() - start
    peak = _peak_memory_gb(device)
    for path in written:
        log(f"wrote {path}")
    log(f"time {seconds:.1f} s, peak {'GPU' if device.type == 'cuda' else 'process'} memory {peak:.2f} GB")
    return {"outputs": written, "seconds": seconds, "peak_memory_gb": peak, "memory_plan": plan}


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
