"""argparse types for the commands' numeric flags: a value out of range exits 2 naming the flag and what is allowed,
before anything is loaded."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from ..bounds import Bounds, above, at_least


def number(kind: type, bounds: Bounds) -> Callable[[str], float]:
    """A flag's type: `kind` (int or float) within `bounds`."""
    what = "an integer" if kind is int else "a number"

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what} {bounds}, got {text!r}") from None
        if not bounds.allows(value):
            raise argparse.ArgumentTypeError(f"must be {what} {bounds}, got {text}")
        return value

    parse.__name__ = f"{kind.__name__} {bounds}"
    return parse


COUNT = number(int, at_least(1))  # prompts, seeds, steps, samples
THREADS = number(int, at_least(0))  # 0: torch's default
SCALE = number(float, at_least(0))  # guidance, cache thresholds
POSITIVE = number(float, above(0))
