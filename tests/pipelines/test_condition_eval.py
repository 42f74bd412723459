"""`motif-video eval --conditions`'s scores (motif_video.evaluation.conditions): the seam measure, and a run of every
pattern and a 2x extension on the tiny model."""

from __future__ import annotations

import numpy as np
import pytest
from pipeline_test_utils import quiet

from motif_video import cli
from motif_video.evaluation.conditions import PATTERNS, inside_stretches, run_condition_eval, seam_scores
from motif_video.evaluation.suite import eval_suite


def _ramp(n=30):
    return np.stack([np.full((4, 4, 3), 2 * i, np.uint8) for i in range(n)])  # change 2 per frame


def test_seam_ratio_is_one_for_a_smooth_video_and_grows_with_a_jump():
    smooth = seam_scores(_ramp(), starts=[10, 20], overlap=5)
    assert smooth["seam_ratio"] == pytest.approx(1.0) and smooth["median_change"] == pytest.approx(2.0)
    jumpy = _ramp()
    jumpy[12:] += 20  # a jump of 22 inside the first boundary's transition (changes 9..14)
    scores = seam_scores(jumpy, starts=[10, 20], overlap=5)
    assert scores["seam_ratio_max"] == pytest.approx(11.0) and scores["seam_ratio"] == pytest.approx(6.0)
    outside = _ramp()
    outside[3:] += 20  # a jump far from the boundaries does not count as a seam
    assert seam_scores(outside, starts=[20], overlap=5)["seam_ratio"] == pytest.approx(1.0)


def test_stretches_inside_the_windows_score_what_a_boundary_without_a_seam_would():
    assert inside_stretches([0, 1, 2, 3, 4, 7, 8, 9, 12], 2) == [[0, 1], [2, 3], [7, 8]]
    assert inside_stretches([], 3) == [] and inside_stretches([5, 6], 3) == []
    smooth = seam_scores(_ramp(40), starts=[10, 20], overlap=5)  # boundary changes 9..14 and 19..24
    assert smooth["seam_ratio_inside"] == pytest.approx(1.0)  # stretches 0..5, 25..30 and 31..36
    bumpy = _ramp(40)
    bumpy[28:] += 6  # a change of 8 (4x the median) in stretch 25..30, away from both boundaries
    scores = seam_scores(bumpy, starts=[10, 20], overlap=5)
    assert scores["seam_ratio"] == pytest.approx(1.0) and scores["seam_ratio_inside"] == pytest.approx(2.0)
    short = seam_scores(_ramp(12), starts=[6], overlap=5)  # changes 0..4 inside: no stretch of 6
    assert np.isnan(short["seam_ratio_inside"])


def test_seam_with_a_crossfade_is_read_over_the_generated_frames_after_the_condition():
    # window at 10, condition 10..14 (the video's own frames), cross-fade 15..18: changes 14..18 are the boundary's
    in_condition = _ramp()
    in_condition[12:] += 20  # a jump among the conditioned frames is the video's own: not the seam
    scores = seam_scores(in_condition, starts=[10], overlap=5, crossfade=4)
    assert scores["seam_ratio"] == pytest.approx(1.0)
    after = _ramp()
    after[17:] += 20  # change 16 -> 17, inside the cross-fade
    assert seam_scores(after, starts=[10], overlap=5, crossfade=4)["seam_ratio"] == pytest.approx(11.0)
    entering = _ramp()
    entering[15:] += 20  # change 14 -> 15: the first cross-faded frame
    assert seam_scores(entering, starts=[10], overlap=5, crossfade=4)["seam_ratio"] == pytest.approx(11.0)
    leaving = _ramp()
    leaving[20:] += 20  # change 19 -> 20: past the first new-only frame (19), ordinary again
    assert seam_scores(leaving, starts=[10], overlap=5, crossfade=4)["seam_ratio"] == pytest.approx(1.0)


def test_every_pattern_and_extension_are_scored(tiny_folder):
    from motif_video import MotifVideoImageToVideoPipeline

    pipe = quiet(MotifVideoImageToVideoPipeline, tiny_folder)
    common = dict(height=64, width=96, num_frames=9, num_inference_steps=1, output_type="np", guidance="none")
    cases = eval_suite(1)[:1]
    result = run_condition_eval(pipe, cases, 1, common, PATTERNS, extend=2, overlap=5)
    assert set(result) == {*PATTERNS, "extension"}
    for pattern in PATTERNS:
        assert 0 < result[pattern]["psnr"] < 60 and 0 <= result[pattern]["colour"] <= 1
    ext = result["extension"]
    assert ext["factor"] == 2 and ext["seam_ratio"] > 0 and 0 <= ext["direction"] <= 1
    assert (
        0 <= ext["window_direction"] <= 1 and len(ext["window_direction_by_window"]) == 2
    )  # 9 -> 18 frames, step 4
    # 18 frames in windows at 5, 9 and 13: only changes 0..3 lie outside the boundaries, too few for a stretch
    assert ext["seam_ratio_inside"] is None


@pytest.mark.parametrize(
    "args, message",
    [
        (["--conditions", "middle"], "pattern must be one of"),
        (["--conditions", "--extend", "1"], "extend must be 0"),
        (["--conditions", "--extend", "3", "--overlap", "4"], "overlap must be 4m\\+1"),
        (["--conditions", "--condition-guidance", "-1"], "condition_guidance must be >= 0"),
        (["--condition-guidance", "-1"], "condition_guidance must be >= 0"),
        (["--conditions", "--crossfade", "8"], "--crossfade needs --extend"),
        (["--conditions", "--extend", "2", "--crossfade", "-1"], "crossfade must be a whole number"),
        (["--extend", "2"], "--extend, --overlap and --crossfade apply to --conditions only"),
        (["--crossfade", "4"], "--extend, --overlap and --crossfade apply to --conditions only"),
    ],
)
def test_bad_condition_eval_options_exit_2(args, message, capsys, monkeypatch):
    from motif_video.evaluation import offline

    monkeypatch.setattr(offline, "_load", lambda config: pytest.fail("loaded a model for bad input"))
    assert cli.main(["eval", "--model", "small", *args]) == 2
    assert __import__("re").search(message, capsys.readouterr().err)


def test_the_suite_reports_the_extension_guidance_beside_the_patterns(tiny_folder, tmp_path):
    """The patterns run at the folder's image-to-video guidance, the extension's windows at its extension default:
    the summary names both, so that its top-level `condition_guidance` does not read as the extension's."""
    import json
    import shutil

    from motif_video.evaluation.conditions import run_condition_suite
    from motif_video.evaluation.offline import OfflineEvalConfig

    folder = tmp_path / "model"
    shutil.copytree(tiny_folder, folder)
    size = {"height": 64, "width": 96, "num_frames": 9, "num_inference_steps": 1}
    (folder / "generation_config.json").write_text(json.dumps({**size, "extend_condition_guidance": 2.0}))
    config = OfflineEvalConfig(model=str(folder), prompts=1, seeds=1, threads=1, progress=False)
    result = run_condition_suite(config, ["prefix"], extend=2, overlap=5)
    assert result["condition_guidance"] == 0.0 and result["extend_condition_guidance"] == 2.0
    assert result["seen"]["extension"]["condition_guidance"] == 2.0
    assert "extend_condition_guidance" not in run_condition_suite(config, ["first"])  # overlap 9: not read
