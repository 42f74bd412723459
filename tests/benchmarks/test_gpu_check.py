"""benchmarks/gpu_check.py on the CPU: its dry run must give every section's rows, measured or n/a with a reason.

No GPU is around while the project is worked on, so the one prepared GPU run is kept working here: the `--tiny` dry
run goes through every row's code path (the same library calls as on the GPU, at toy size), and the full-size
components are checked to be the released architecture by building them on the meta device.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"

SPEED_ROWS = [
    "forward: ours exact (auto attention)",
    "guided step: ours exact",
    "forward: diffusers reference",
    "guided step: diffusers reference",
    "forward: attention sdpa",
    "forward: attention sdpa_cudnn",
    "forward: attention flash3",
    "forward: attention sage",
    "forward: step cache, skipped step",
    "forward: FP8 compute",
    "forward: fastest set",
    "forward: regional compile",
    "guided step: ours fastest set",
]
MEMORY_ROWS = [
    ("all on GPU", "off"),
    ("model offload", "off"),
    ("model offload + FP8 weights", "off"),
    ("model offload, forward chunking off", "off"),
    ("model offload + FP8 weights", "on"),
    ("group offload", "off"),
    ("all on GPU", "on"),
    ("model offload", "on"),
    ("group offload", "on"),
]
TRAIN_ROWS = ["dense", "TREAD", "TREAD / dense"]
# Rows that run on the CPU (the others need CUDA, torchao or an attention library: n/a there).
CPU_MEASURED = {
    "speed": [r for r in SPEED_ROWS if not r.endswith(("sdpa_cudnn", "flash3", "sage", "FP8 compute"))],
    "memory": [
        ("all on GPU", "off"),
        ("group offload", "off"),
        ("all on GPU", "on"),
        ("group offload", "on"),
    ],
    "train": TRAIN_ROWS,
}


def run_check(out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    env.pop("GPU_CHECK_STARTED_AT", None)
    cmd = [
        sys.executable,
        str(SCRIPT),
        "--device",
        "cpu",
        "--tiny",
        "--threads",
        "1",
        "--out",
        str(out),
        *extra,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def parse(markdown: str) -> dict[str, list[list[str]]]:
    """Section key (speed, memory, train: from the title) -> table rows as lists of cells."""
    sections: dict[str, list[list[str]]] = {}
    key = None
    for line in markdown.splitlines():
        if line.startswith("## "):
            title = line.lower()
            key = "speed" if "forward" in title else "memory" if "memory" in title else "train"
            sections[key] = []
        elif key and line.startswith("| "):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if cells[0] not in ("case", "mode"):  # not the header row
                sections[key].append(cells)
    return sections


def label_width(key: str) -> int:
    return 4 if key == "memory" else 1  # memory rows: mode, tiling, published, target


def find(rows: list[list[str]], label: str | tuple[str, str]) -> list[str]:
    wanted = (label,) if isinstance(label, str) else label
    matches = [r for r in rows if tuple(r[: len(wanted)]) == wanted]
    assert len(matches) == 1, f"{wanted}: {len(matches)} rows in {rows}"
    return matches[0]


def is_number(cell: str) -> bool:
    return re.fullmatch(r"-?[\d,]+(\.\d+)?x?", cell) is not None


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-check") / "gpu_check.md"
    proc = run_check(out)
    return out.read_text(), proc.stdout


def test_header_names_the_machine_versions_and_date(dry_run):
    text, _ = dry_run
    assert text.startswith("# motif-video GPU check")
    assert re.search(r"^- date: \d{4}-\d\d-\d\d \d\d:\d\d UTC$", text, re.M)
    assert re.search(r"^- GPU: none: CPU dry run", text, re.M)
    assert re.search(r"^- software: torch [\w.+]+, CUDA -, cuDNN -, Python 3\.\d+", text, re.M)


def test_every_section_has_every_row_measured_or_na_with_a_reason(dry_run):
    text, stdout = dry_run
    sections = parse(text)
    expected = {"speed": SPEED_ROWS, "memory": MEMORY_ROWS, "train": TRAIN_ROWS}
    assert set(sections) == set(expected)
    for key, labels in expected.items():
        assert len(sections[key]) == len(labels), (key, sections[key])
        for label in labels:
            row = find(sections[key], label)
            value = row[label_width(key)]
            assert is_number(value) or re.fullmatch(r"n/a: \S.{5,}", value), (key, row)
    assert "# motif-video GPU check" in stdout and "failed:" not in stdout  # the table is printed too


def test_the_cpu_rows_are_measured(dry_run):
    sections = parse(dry_run[0])
    for key, labels in CPU_MEASURED.items():
        for label in labels:
            row = find(sections[key], label)
            # memory on the CPU: no peak, but the call's seconds
            value = row[label_width(key)] if key != "memory" else row[6]
            assert is_number(value), (key, row)


def test_options_missing_here_say_why(dry_run):
    speed = parse(dry_run[0])["speed"]
    if importlib.util.find_spec("flash_attn_interface") is None:
        assert find(speed, "forward: attention flash3")[1] == "n/a: flash_attn_interface is not installed"
    assert "CUDA" in find(speed, "forward: FP8 compute")[1]
    memory = parse(dry_run[0])["memory"]
    assert "device is cpu" in find(memory, ("model offload", "off"))[4]


def test_reference_rows_agree_with_ours_in_float32(dry_run):
    """The check compares like with like: the reference's forward and guided step give our numbers."""
    speed = parse(dry_run[0])["speed"]
    for label in ("forward: diffusers reference", "guided step: diffusers reference"):
        assert float(find(speed, label)[4]) < 1e-4, find(speed, label)
    assert float(find(speed, "forward: ours exact (auto attention)")[4]) == 0.0
    assert float(find(speed, "forward: step cache, skipped step")[4]) < 1e-6  # same input: the cached output


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    del sys.modules["gpu_check"]


def test_rows_are_skipped_when_the_budget_is_spent_and_failures_do_not_stop_the_run(gpu_check, tmp_path):
    out = tmp_path / "table.md"
    report = gpu_check.Report(out, ["- header"])
    section = report.add(gpu_check.Section("speed", "Speed", ["case", "seconds", "note"], budget_s=600.0))
    run = gpu_check.Runner(report, section, "cpu")

    def unavailable():
        raise gpu_check.NotAvailable("sageattention is not installed")

    def broken():
        raise RuntimeError("CUDA out of memory")

    assert run.row(["measured"], lambda: ["1.000", "ok"]) == ["measured", "1.000", "ok"]
    assert run.row(["absent"], unavailable) is None
    assert run.row(["broken"], broken) is None
    assert run.row(["too long"], lambda: ["2.000", ""], cost_s=1e5) is None  # more than any machine has left
    section.budget_s = 0.0
    assert run.row(["spent"], lambda: ["3.000", ""]) is None
    assert section.rows == [
        ["measured", "1.000", "ok"],
        ["absent", "n/a: sageattention is not installed", ""],
        ["broken", "failed: RuntimeError: CUDA out of memory", ""],
        ["too long", section.rows[3][1], ""],
        ["spent", "skipped: 0 s of the 0 s budget left, needs ~0 s", ""],
    ]
    assert re.fullmatch(r"skipped: \d+ s of the 600 s budget left, needs ~100000 s", section.rows[3][1])
    saved = out.read_text()  # written after each row
    assert saved == report.markdown() and "| spent | skipped:" in saved


def test_full_size_components_are_the_released_architecture(gpu_check):
    """Built on the meta device: our 2B transformer, the 4.3B T5Gemma2 encoder of the released config (with its
    SigLIP tower) and the Wan 2.1 VAE (parameter counts from shared/spec/reference-implementation.md)."""
    import torch

    setup = gpu_check.Setup(
        "meta", torch.bfloat16, False, (1280, 736, 121), (832, 480, 121), 512, 77, "inductor"
    )
    c = gpu_check.build_components(setup)

    def count(m):
        return sum(p.numel() for p in m.parameters())

    assert count(c.transformer) == 2_037_809_600  # the released checkpoint's keys (separate layout)
    assert count(c.text_encoder) == 4_299_918_192
    assert count(c.vae) == 126_892_531
    assert c.text_encoder.config.text_config.hidden_size == c.transformer.config.text_embed_dim == 2560
    assert all(
        p.dtype == torch.bfloat16 for m in (c.transformer, c.text_encoder, c.vae) for p in m.parameters()
    )


def test_the_documented_device_command_is_the_same_everywhere():
    """The one-line device call in BENCHMARKS.md is the one the scripts' headers give."""
    command = "PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py --wheels .whl --out $OUT/gpu_check.md"
    for path in ("BENCHMARKS.md", "benchmarks/gpu_wheels.sh", "benchmarks/gpu_check.py"):
        assert command in (ROOT / path).read_text(), path
