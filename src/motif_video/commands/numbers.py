"""argparse types for the commands' numeric flags: a value out of range exits 2 naming the flag and what is allowed,
before anything is loaded."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def number(
    kind: type, low: float, *, above: bool = False, high: float | None = None
) -> Callable[[str], float]:
    """A flag's type: `kind` (int or float), at least `low` (more than `low` with `above`), at most `high`."""
    allowed = (
        f"{'> ' if above else '>= '}{low:g}"
        if high is None
        else f"in {'(' if above else '['}{low:g}, {high:g}]"
    )
    what = "an integer" if kind is int else "a number"

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what} {allowed}, got {text!r}") from None
        too_low = value <= low if above else value < low
        if not math.isfinite(value) or too_low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {what} {allowed}, got {text}")
        return value

    parse.__name__ = f"{kind.__name__} {allowed}"
    return parse


COUNT = number(int, 1)  # prompts, seeds, steps, samples
THREADS = number(int, 0)  # 0: torch's default
SCALE = number(float, 0)  # guidance, cache thresholds
