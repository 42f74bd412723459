"""Run by test_trainer_distributed.py under `torch.distributed.run`: train, write the losses from rank 0."""

from __future__ import annotations

import json
import sys

import torch

from motif_video.training.config import load_config
from motif_video.training.trainer import train

if __name__ == "__main__":
    torch.set_num_threads(1)
    overrides, out = json.loads(sys.argv[1]), sys.argv[2]
    result = train(load_config(None, overrides))
    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_rank() == 0:
        with open(out, "w") as f:
            json.dump(
                {
                    "losses": result.losses,
                    "world_size": dist.get_world_size() if dist.is_initialized() else 1,
                },
                f,
            )
