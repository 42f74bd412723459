"""The allowed range of a number, declared once and read three ways: the check (a ValueError naming the value and
what is allowed), the same words in help texts and messages, and JSON schema keywords. The generate options
(`options.Option`), the training recipe's keys (`training.config.RANGES`) and the commands' numeric flags
(`commands.numbers`) all declare their ranges with it, so ">= 1", "> 0" and "in [0, 1)" mean the same everywhere.

Pure Python: importing this module imports neither torch nor numpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Bounds:
    """Numbers from `low` to `high` (None: no limit on that side), each end excluded where it is `open`. NaN and
    infinities are never allowed: no setting can use them, and they pass comparisons unnoticed."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def allows(self, value: float) -> bool:
        if isinstance(value, float) and not math.isfinite(value):  # an int compares exactly, however large
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def check(self, name: str, value: Any) -> Any:
        """`value` itself when allowed, else a ValueError "NAME must be BOUNDS, got VALUE"."""
        if not self.allows(value):
            raise ValueError(f"{name} must be {self}, got {value}")
        return value

    def __str__(self) -> str:
        """'>= 1', '> 0', '<= 10', 'in [0, 1)'."""
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {_number(self.low)}"
        if self.low is None:
            return f"{'<' if self.high_open else '<='} {_number(self.high)}"
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"in {left}{_number(self.low)}, {_number(self.high)}{right}"

    def schema(self) -> dict[str, float]:
        """JSON schema (draft 2020-12) keywords: minimum / exclusiveMinimum, maximum / exclusiveMaximum."""
        keywords: dict[str, float] = {}
        if self.low is not None:
            keywords["exclusiveMinimum" if self.low_open else "minimum"] = self.low
        if self.high is not None:
            keywords["exclusiveMaximum" if self.high_open else "maximum"] = self.high
        return keywords


def check_keys(config: Any, ranges: dict[str, Bounds]) -> None:
    """Each "section.key" (or "key") of `ranges` read from `config` by attribute and checked against its bounds
    (None, where a key allows it, is not checked); a ValueError naming the first key out of range."""
    for key, bounds in ranges.items():
        section, _, name = key.rpartition(".")
        value = getattr(getattr(config, section) if section else config, name)
        if value is not None:
            bounds.check(key, value)


def at_least(low: float) -> Bounds:
    return Bounds(low)


def above(low: float) -> Bounds:
    return Bounds(low, low_open=True)


def within(low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> Bounds:
    return Bounds(low, high, low_open, high_open)


def _number(value: float | None) -> str:
    """An int as it is (2**63 - 1 exactly, not 9.22337e+18), a whole float as an int, else the shortest form."""
    if isinstance(value, int):
        return str(value)
    return str(int(value)) if float(value).is_integer() else f"{value:g}"
