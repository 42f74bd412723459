"""The sampler: flow-matching Euler with a static shift (SYSTEM.md section 3), and what a model folder's scheduler
config means for it.

The schedule itself and the Euler step live in `motif_video.flow`; this module only decides the shift and reports
scheduler configs it cannot honour (the published configs either store `flow_shift` where FlowMatchEuler ignores it,
or name DPM-Solver++, which the reference pipeline cannot run).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)


# Scheduler classes whose config describes the sampler we run: Euler steps on flow-matching sigmas.
EULER_FLOW_SCHEDULERS = ("FlowMatchEulerDiscreteScheduler",)


@dataclass(frozen=True)
class SamplerChoice:
    """The shift used and where it came from; `note` is non-empty when a config could not be honoured as written."""

    shift: float
    source: str
    note: str = ""


def choose_shift(
    scheduler_config: Mapping[str, Any] | None, default: float, override: float | None = None
) -> SamplerChoice:
    """Pick the static shift: an explicit `override`, else the config's `shift` (or `flow_shift`), else `default`.

    `scheduler_config` holds the scheduler's config keys plus `_class_name`. Keys that took the class default when the
    config was loaded (diffusers lists them in `_use_default_values`) are treated as absent.
    """
    if override is not None:
        if override <= 0:
            raise ValueError(f"shift must be > 0, got {override}")
        return SamplerChoice(float(override), "argument")
    if not scheduler_config:
        return SamplerChoice(default, "default")
    cfg = dict(scheduler_config)
    defaulted = set(cfg.get("_use_default_values", ()))
    name = cfg.get("_class_name", "?")
    written = {k: v for k, v in cfg.items() if k not in defaulted}
    shift = written.get("shift", written.get("flow_shift"))
    key = "shift" if "shift" in written else "flow_shift"
    notes = []
    if name not in EULER_FLOW_SCHEDULERS:
        notes.append(
            f"scheduler {name} cannot be honoured: motif-video samples with flow-matching Euler "
            f"(static shift), the released model's sampler"
        )
    if written.get("use_dynamic_shifting"):
        notes.append(
            "use_dynamic_shifting=True is ignored: the shift is static (dynamic shifting pins sigmas near 1)"
        )
    if shift is None or float(shift) <= 0:
        choice = SamplerChoice(default, f"default (scheduler config {name} names no shift)", "; ".join(notes))
    else:
        choice = SamplerChoice(float(shift), f"scheduler config {name}.{key}", "; ".join(notes))
    if choice.note:
        logger.warning("%s; using Euler with shift %g from %s", choice.note, choice.shift, choice.source)
    return choice


def scheduler_config_of(scheduler) -> dict[str, Any] | None:
    """The scheduler component's config as a dict with `_class_name`, or None without a scheduler."""
    if scheduler is None:
        return None
    cfg = dict(getattr(scheduler, "config", {}))
    cfg["_class_name"] = type(scheduler).__name__
    return cfg
