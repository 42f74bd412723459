"""Run under `torchrun --nproc-per-node 2`: `motif-video generate` in each parallel mode (see test_generate_parallel).

argv: MODEL_FOLDER OUT_FOLDER PROMPT_FILE. Initialises gloo once, so that the four runs share one process group.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from motif_video import cli
from motif_video.parallel import init_distributed
from motif_video.testing import TINY_GENERATE_ARGS

TINY = TINY_GENERATE_ARGS


def main(model: str, out: str, prompt_file: str) -> None:
    torch.set_num_threads(1)
    sys.stdout.reconfigure(line_buffering=True)  # rank 0's markers and logs in order through the pipe
    rank, _ = init_distributed()
    common = ["--model", model, "--save-latents", *TINY]
    runs = {
        "context": ["--prompt", "a red ball", "--parallel", "context"],
        "guidance": ["--prompt", "a red ball", "--parallel", "guidance"],
        "context-cache": [
            "--prompt",
            "a red ball",
            "--parallel",
            "context",
            "--cache-threshold",
            "1.0",
            "--steps",
            "3",
        ],
        "data": ["--prompt-file", prompt_file, "--parallel", "data"],
    }
    for name, args in runs.items():
        output = Path(out) / name
        target = output if name == "data" else output / "clip.mp4"
        if rank == 0:
            print(f"== {name}")
        assert cli.main(["generate", "--output", str(target), *common, *args]) == 0  # args last: they win


if __name__ == "__main__":
    main(*sys.argv[1:])
