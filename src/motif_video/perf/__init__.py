"""Inference speed options applied from outside the model: regional compile, step caching, FP8."""

from .compile import compile_repeated_blocks
from .step_cache import StepCache, StepCacheBranch

__all__ = ["StepCache", "StepCacheBranch", "compile_repeated_blocks"]
