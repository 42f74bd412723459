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
        assert set(figures) == {"true", "swapped_reads_true", "swapped_reads_swapped", "true_reads"}
        assert all(0.0 <= figures[k] <= 1.0 for k in ("true", "swapped_reads_true", "swapped_reads_swapped"))
        # every estimate is read as something (a colour name, or "None" without an object)
        assert abs(sum(figures["true_reads"].values()) - 1.0) < 1e-2
    colour = result["colour"]
    # Where the clip is mostly noise, the word decides (0.92 on 24 clips); where the noisy clip shows the object, the
    # clip holds the estimate to its true colour far more often and the swapped word takes it far less often.
    assert colour["0.95"]["swapped_reads_swapped"] >= 0.5
    assert colour["0.95"]["swapped_reads_true"] <= 0.25
    assert colour["0.5"]["swapped_reads_true"] >= colour["0.95"]["swapped_reads_true"] + 0.25
    assert colour["0.5"]["swapped_reads_swapped"] <= colour["0.95"]["swapped_reads_swapped"] - 0.25


def test_shape_figures_include_reading_shares_and_overlap_shift(monkeypatch, capsys):
    argv = ["word_steering.py", "--model", "small", "--clips", "2", "--sigmas", "0.3", "--words", "shape"]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(SCRIPT), run_name="__main__")
    figures = json.loads(capsys.readouterr().out)["shape"]["0.3"]
    assert set(figures) == {
        "true",
        "swapped_reads_true",
        "swapped_reads_swapped",
        "overlap_shift",
        "true_reads",
    }
    assert -1.0 <= figures["overlap_shift"] <= 1.0
    assert set(figures["true_reads"]) <= {"circle", "square", "triangle", "None"}
    assert abs(sum(figures["true_reads"].values()) - 1.0) < 1e-2
