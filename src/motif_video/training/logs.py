"""What a run reports: the global loss and per-sigma-bin losses of each step, written to metrics.jsonl (entries
past a resumed step are dropped first) and TensorBoard on the main process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from .config import TrainConfig


def reduce_losses(
    accelerator, losses: torch.Tensor, sigmas: torch.Tensor, num_bins: int
) -> tuple[float, dict[str, float]]:
    """Global mean loss and per-sigma-bin mean losses across ranks."""
    table = torch.zeros(num_bins + 1, 2, device=losses.device)
    index = (sigmas.float().clamp(0, 1 - 1e-6) * num_bins).long()
    table.index_put_((index, torch.zeros_like(index)), losses.float(), accumulate=True)
    table.index_put_(
        (index, torch.ones_like(index)), torch.ones_like(losses, dtype=torch.float), accumulate=True
    )
    table[num_bins, 0], table[num_bins, 1] = losses.float().sum(), losses.numel()
    if accelerator.num_processes > 1:
        table = accelerator.reduce(table, reduction="sum")
    bins = {f"sigma_{b / num_bins:.1f}-{(b + 1) / num_bins:.1f}": float(table[b, 0] / table[b, 1])
            for b in range(num_bins) if table[b, 1] > 0}  # fmt: skip
    return float(table[num_bins, 0] / table[num_bins, 1]), bins


def recorded_config(config: TrainConfig) -> dict[str, Any]:
    """The recipe as the run's config.json records it, with its local model paths absolute (`recorded_path`): the
    run loads as a model from any directory, not only from the one it was started in."""
    from ..model_folder import recorded_path

    recorded = config.to_dict()
    model = recorded["model"]
    model["pretrained"], model["components"] = (
        recorded_path(model["pretrained"]),
        recorded_path(model["components"]),
    )
    return recorded


def read_metrics(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """(line, record) of each entry of a metrics.jsonl. A last line that does not parse is dropped: it is what a run
    killed mid-write leaves. Any other bad line is a `ValueError` naming the file and line."""
    lines = path.read_text().splitlines()
    entries = []
    for number, line in enumerate(lines, start=1):
        if not line:
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            if number == len(lines):
                break
            raise ValueError(f"{path} line {number} is not JSON ({exc}): {line[:80]!r}") from exc
        if not isinstance(record, dict) or not isinstance(record.get("step"), int):
            raise ValueError(
                f"{path} line {number} is not a metrics record (no whole-number step): {line[:80]!r}"
            )
        entries.append((line, record))
    return entries


class MetricsLog:
    """metrics.jsonl and TensorBoard of one run (writes on the main process only); also writes OUTPUT/config.json."""

    def __init__(self, output: Path, config: TrainConfig, main: bool, start: int) -> None:
        self.main, self.writer = main, None
        self.path = output / "metrics.jsonl"
        if not main:
            return
        output.mkdir(parents=True, exist_ok=True)
        (output / "config.json").write_text(json.dumps(recorded_config(config), indent=1))
        if self.path.exists():
            kept = [line for line, record in read_metrics(self.path) if record["step"] <= start]
            self.path.write_text("".join(line + "\n" for line in kept))
        if config.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(output / "tensorboard"))

    def write(self, record: dict[str, Any]) -> None:
        if not self.main:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "step":
                    self.writer.add_scalar(f"train/{key}", value, record["step"])
            for key, value in record.get("loss_bins", {}).items():
                self.writer.add_scalar(f"loss_bins/{key}", value, record["step"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
