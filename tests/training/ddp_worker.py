"""Run by test_trainer_distributed.py under `torch.distributed.run`: train, write the losses (and the run's last
log line) from rank 0. `BREAK_ON_RANK_1=NAME`: rank 1 cannot decode media file NAME."""

from __future__ import annotations

import json
import logging
import os
import sys

import torch

from motif_video.training import data
from motif_video.training.config import load_config
from motif_video.training.trainer import train


def break_one_file(name: str) -> None:
    decode = data.decode_frames

    def cut_short(path, indices):
        if path.name == name:
            raise OSError(f"{name} is cut short")
        return decode(path, indices)

    data.decode_frames = cut_short


if __name__ == "__main__":
    torch.set_num_threads(1)
    overrides, out = json.loads(sys.argv[1]), sys.argv[2]
    if os.environ.get("BREAK_ON_RANK_1") and os.environ["RANK"] == "1":
        break_one_file(os.environ["BREAK_ON_RANK_1"])
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    logging.getLogger("motif_video.training.trainer").addHandler(handler)
    logging.getLogger("motif_video.training.trainer").setLevel(logging.INFO)
    result = train(load_config(None, overrides))
    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_rank() == 0:
        with open(out, "w") as f:
            json.dump(
                {
                    "losses": result.losses,
                    "world_size": dist.get_world_size() if dist.is_initialized() else 1,
                    "data": [line for line in lines if line.startswith("data: ")],
                },
                f,
            )
