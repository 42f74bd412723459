"""The sigma schedule and what scheduler configs mean for the sampler."""

from __future__ import annotations

import itertools

import pytest

from motif_video.flow import sampling_sigmas
from motif_video.pipelines.sampling import choose_shift, scheduler_config_of


def test_50_step_shift_15_schedule_matches_the_spec():
    """reference-implementation.md 1.4: first 1.0, 0.9986, 0.9972; last three 0.4891, 0.3846, 0.2344; then 0."""
    s = sampling_sigmas(50, 15.0).tolist()
    assert len(s) == 51
    assert s[:3] == pytest.approx([1.0, 0.9986, 0.9972], abs=5e-5)
    assert s[-4:] == pytest.approx([0.4891, 0.3846, 0.2344, 0.0], abs=5e-5)
    assert all(a > b for a, b in itertools.pairwise(s))


def test_schedule_equals_diffusers_flow_match_euler():
    import numpy as np
    from diffusers import FlowMatchEulerDiscreteScheduler

    sched = FlowMatchEulerDiscreteScheduler(shift=8.0)
    sched.set_timesteps(sigmas=np.linspace(1.0, 1 / 30, 30))
    np.testing.assert_allclose(sampling_sigmas(30, 8.0).numpy(), sched.sigmas.numpy(), atol=1e-6)


def _loaded(cls, **config):
    """The config dict of a scheduler loaded from a scheduler_config.json holding exactly `config`."""
    import json
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        with open(f"{d}/scheduler_config.json", "w") as f:
            json.dump({"_class_name": cls.__name__, **config}, f)
        return scheduler_config_of(cls.from_pretrained(d))


def test_flow_match_euler_shift_is_read():
    from diffusers import FlowMatchEulerDiscreteScheduler

    choice = choose_shift(_loaded(FlowMatchEulerDiscreteScheduler, shift=15.0), 8.0)
    assert (choice.shift, choice.note) == (15.0, "")


def test_flow_shift_stored_where_flow_match_euler_ignores_it_is_honoured():
    """The April release: FlowMatchEuler with `flow_shift: 15` silently ran at shift 1 in diffusers."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    choice = choose_shift(_loaded(FlowMatchEulerDiscreteScheduler, flow_shift=15.0), 8.0)
    assert choice.shift == 15.0 and "flow_shift" in choice.source


def test_dpm_solver_config_is_reported_not_silently_replaced(caplog):
    from diffusers import DPMSolverMultistepScheduler

    cfg = _loaded(
        DPMSolverMultistepScheduler,
        algorithm_type="dpmsolver++",
        prediction_type="flow_prediction",
        use_flow_sigmas=True,
        flow_shift=15.0,
        solver_order=2,
    )
    with caplog.at_level("WARNING"):
        choice = choose_shift(cfg, 8.0)
    assert choice.shift == 15.0 and "DPMSolverMultistepScheduler cannot be honoured" in choice.note
    assert "cannot be honoured" in caplog.text


def test_dynamic_shifting_is_reported():
    from diffusers import FlowMatchEulerDiscreteScheduler

    choice = choose_shift(
        _loaded(FlowMatchEulerDiscreteScheduler, shift=3.0, use_dynamic_shifting=True), 15.0
    )
    assert choice.shift == 3.0 and "use_dynamic_shifting" in choice.note


def test_defaults_and_override():
    assert choose_shift(None, 15.0).shift == 15.0
    assert choose_shift({"_class_name": "FlowMatchEulerDiscreteScheduler"}, 8.0).shift == 8.0
    assert choose_shift({"shift": 15.0}, 8.0, override=5.0).source == "argument"
    with pytest.raises(ValueError, match="shift must be > 0"):
        choose_shift(None, 15.0, override=0.0)
