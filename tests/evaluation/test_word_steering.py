"""benchmarks/word_steering.py on the shipped small model: the colour word steers the high-noise estimate."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "word_steering.py"


def test_swapped_colour_word_steers_the_estimate(monkeypatch, capsys):
    argv = ["word_steering.py", "--model", "small", "--clips", "4", "--sigmas", "0.5", "0.95"]
    monkeypatch.setattr(sys, "argv", [*argv, "--words", "colour"])
    runpy.run_path(str(SCRIPT), run_name="__main__")
    result = json.loads(capsys.readouterr().out)
    assert result["clips"] == 4 and set(result) == {"model", "clips", "colour"}
    for figures in result["colour"].values():
        assert set(figures) == {"true", "swapped_reads_true", "swapped_reads_swapped"}
        assert all(0.0 <= v <= 1.0 for v in figures.values())
    colour = result["colour"]
    # Where the noisy clip shows the object, it decides; where it is noise, the word does (0.92 on 24 clips).
    assert colour["0.5"]["swapped_reads_true"] >= 0.75
    assert colour["0.95"]["swapped_reads_swapped"] >= 0.5
    assert colour["0.95"]["swapped_reads_true"] <= 0.25
