"""Multi-process inference: context parallelism (Ulysses) over torch.distributed."""

from .context import ContextParallelHandle, enable_context_parallel, init_distributed

__all__ = ["ContextParallelHandle", "enable_context_parallel", "init_distributed"]
