"""The allowed values of each choice option, written once as `Literal` types; the tuples are derived from them.

Pure Python: the option declarations (`motif_video.options`), the defaults' schema (`motif_video.defaults`), the
pipelines, memory modes and parallel modes all read these.
"""

from __future__ import annotations

from typing import Literal, get_args

GuidanceMode = Literal["apg", "cfg", "none"]
GuidanceBatching = Literal["auto", "batched", "sequential"]
OffloadMode = Literal["none", "model", "group", "sequential"]
ParallelMode = Literal["none", "context", "guidance", "data"]
ParallelChoice = Literal["auto", ParallelMode]  # auto: decided from the process and prompt counts
DtypeChoice = Literal["auto", "bfloat16", "float16", "float32"]

GUIDANCE_MODES: tuple[str, ...] = get_args(GuidanceMode)
GUIDANCE_BATCHING: tuple[str, ...] = get_args(GuidanceBatching)
OFFLOAD_MODES: tuple[str, ...] = get_args(OffloadMode)
PARALLEL_MODES: tuple[str, ...] = get_args(ParallelMode)
PARALLEL_CHOICES: tuple[str, ...] = get_args(ParallelChoice)
DTYPE_CHOICES: tuple[str, ...] = get_args(DtypeChoice)
