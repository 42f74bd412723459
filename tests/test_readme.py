"""The README's shell blocks marked `<!-- runnable -->` run as written, in order, in one fresh folder, as a new
user runs them from a clone's root.

A marked block is a ```bash block right after a line `<!-- runnable -->`; mark only what runs on a CPU without the
Hub (the small and tiny models). Each command line runs with bash in a temporary folder holding the clone's files
the commands read (`recipes/`, `docs/`, `src/`, as links), so whatever they write lands there. The only rewriting:
`motif-video` and `.venv/bin/motif-video` become this interpreter's `-m motif_video.cli`, `.venv/bin/python` this
interpreter, and the set-up steps of a `&&` chain (`python3 -m venv`, `pip install`) and a run of the test suite
itself are left out: the tests already run in the environment they make. Under pytest-xdist (the README's `-n 2`)
a command's `--threads N` becomes `--threads 1`: the other worker holds a core, and two torch threads on one core
wait on each other at every operation (the README's `eval --threads 2` took 10 minutes so).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from motif_video.cli import KNOWN_NOTICES

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MARKER = "<!-- runnable -->"
LINKED = ("recipes", "docs", "src")
TIMEOUT_S = 600  # one command; the whole README takes about five minutes on 2 CPU cores


def runnable_blocks(text: str) -> list[list[str]]:
    """The command lines of every marked bash block, in order (comments and blank lines dropped, `\\` joined)."""
    blocks = []
    for match in re.finditer(r"^" + re.escape(MARKER) + r"\n```bash\n(.*?)^```", text, re.M | re.S):
        body = match.group(1).replace("\\\n", " ")
        lines = [line.strip() for line in body.splitlines()]
        blocks.append([line for line in lines if line and not line.startswith("#")])
    return blocks


def as_run_here(line: str, one_thread: bool = False) -> str | None:
    """The command line as the test runs it (see the module docstring; `one_thread`: under pytest-xdist); None when
    nothing is left to run."""
    kept = []
    for part in re.split(r"\s*&&\s*", line):
        words = part.split()
        if words[:3] == ["python3", "-m", "venv"] or (words and words[0].endswith("pip")):
            continue
        if "pytest" in words:
            continue
        kept.append(part)
    if not kept:
        return None
    python = shlex.quote(sys.executable)
    command = " && ".join(kept)
    if one_thread:
        command = re.sub(r"--threads \d+", "--threads 1", command)
    command = re.sub(r"(^|&& )(?:\.venv/bin/)?motif-video\b", rf"\g<1>{python} -m motif_video.cli", command)
    return re.sub(r"(^|&& )\.venv/bin/python\b", rf"\g<1>{python}", command)


def _outputs(command: str) -> list[str]:
    words = shlex.split(command, comments=True)
    return [
        words[i + 1] for i, w in enumerate(words[:-1]) if w == "--output" and words[i + 1].endswith(".mp4")
    ]


def test_the_marker_finds_the_blocks():
    blocks = runnable_blocks(README.read_text())
    commands = [c for block in blocks for c in block]
    assert len(blocks) >= 4, "the README's runnable blocks are gone"
    assert any("--model small" in c for c in commands)
    assert any(c.startswith("motif-video train") for c in commands)
    assert any(c.startswith("motif-video distill") for c in commands)
    first = as_run_here(blocks[0][0])
    assert first is not None and "-m venv" not in first and "pip install" not in first
    assert first.endswith("--output video.mp4 --threads 1") and "-m motif_video.cli generate" in first
    assert as_run_here(blocks[0][1]) is None  # the test suite itself
    evaluation = next(c for c in commands if c.startswith("motif-video eval") and "--threads 2" in c)
    assert "--threads 1" in as_run_here(evaluation, one_thread=True)
    assert "--threads 2" in as_run_here(evaluation)


def test_readme_commands_run_in_order(tmp_path):
    for name in LINKED:
        (tmp_path / name).symlink_to(ROOT / name, target_is_directory=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    for block in runnable_blocks(README.read_text()):
        for line in block:
            command = as_run_here(line, one_thread="PYTEST_XDIST_WORKER" in os.environ)
            if command is None:
                continue
            done = subprocess.run(
                ["bash", "-c", command],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=TIMEOUT_S,
            )
            if done.returncode != 0:
                pytest.fail(f"README command failed (exit {done.returncode}):\n{line}\n{done.stderr[-3000:]}")
            noise = [text for text in KNOWN_NOTICES.values() if text in done.stderr]
            assert not noise, f"{line}\nprinted the libraries' notices {noise}"
            for output in _outputs(line):
                assert (tmp_path / output).is_file(), f"{line}\ndid not write {output}"
