"""Inference speed options applied from outside the model: regional compile, step caching, FP8."""
