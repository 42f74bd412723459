"""PeRFlow targets in closed form: constant teacher fields, window boundaries, the two start points."""

from __future__ import annotations

import torch

from motif_video import flow
from motif_video.distill import perflow
from motif_video.pipelines.guidance import GuidanceConfig, Guider


def test_substeps_follow_the_teacher_schedule():
    sig = flow.sampling_sigmas(4, 3.0)
    a, b = sig[torch.tensor([0, 3])], sig[torch.tensor([1, 4])]
    steps = perflow.window_substeps(a, b, 12, 3.0)
    assert steps.shape == (2, 13)
    torch.testing.assert_close(steps[:, 0], a)
    torch.testing.assert_close(steps[:, -1], b)
    # Window 0 of a 4-step schedule with 12 sub-steps is the first 12 steps of the teacher's 48-step schedule
    # (up to the final 1/N point of `sampling_sigmas`).
    teacher = flow.sampling_sigmas(48, 3.0)
    assert (steps[0, :-1] - teacher[:12]).abs().max() < 0.03
    assert bool((steps[:, 1:] < steps[:, :-1]).all())


def test_constant_field_gives_the_guided_velocity_as_target():
    cond, uncond = torch.full((2, 16, 2, 4, 4), 0.3), torch.full((2, 16, 2, 4, 4), -0.1)
    cond[1] = 0.5

    def velocity(x, sigma):
        return cond, uncond

    x0, noise = torch.zeros(2, 16, 2, 4, 4), torch.randn(2, 16, 2, 4, 4)
    scale = torch.tensor([2.0, 4.0])
    g = GuidanceConfig(mode="cfg")
    out = perflow.window_targets(velocity, x0, noise, torch.tensor([1, 2]), torch.zeros(2), scale,
                                 flow.sampling_sigmas(4, 1.0), 5, 1.0, g)  # fmt: skip
    expected = uncond + scale.view(-1, 1, 1, 1, 1) * (cond - uncond)
    torch.testing.assert_close(out.velocity, expected)
    torch.testing.assert_close(out.sigma, torch.tensor([0.75, 0.5]))


def test_apg_per_sample_scale_matches_the_pipeline_guider():
    g = torch.Generator().manual_seed(0)
    conds = [torch.randn(2, 16, 2, 4, 4, generator=g) for _ in range(3)]
    unconds = [torch.randn(2, 16, 2, 4, 4, generator=g) for _ in range(3)]
    teacher = GuidanceConfig(norm_threshold=3.0, momentum=0.1)
    running = None
    for scale in (2.0, 8.0):
        guider = Guider(GuidanceConfig(scale=scale, norm_threshold=3.0, momentum=0.1))
        running = None
        for c, u in zip(conds, unconds):
            ours, running = perflow.guided_velocity(c, u, torch.full((2,), scale), teacher, running)
            torch.testing.assert_close(ours, guider(c, u))


def test_teacher_start_equals_data_start_in_the_first_window_and_differs_later():
    w = torch.randn(16, 16)

    def velocity(x, sigma):  # a state-dependent field, so the start point matters
        cond = torch.einsum("bcthw,cd->bdthw", x, w) * 0.1
        return cond, 0.5 * cond

    x0, noise = torch.randn(2, 16, 2, 4, 4), torch.randn(2, 16, 2, 4, 4)
    args = (torch.ones(2), flow.sampling_sigmas(4, 2.0), 4, 2.0, GuidanceConfig(mode="cfg"))
    first = torch.tensor([0, 0])
    a = perflow.window_targets(velocity, x0, noise, first, torch.zeros(2), *args, start="data")
    b = perflow.window_targets(velocity, x0, noise, first, torch.zeros(2), *args, start="teacher")
    torch.testing.assert_close(a.velocity, b.velocity)
    later = torch.tensor([2, 0])
    c = perflow.window_targets(velocity, x0, noise, later, torch.zeros(2), *args, start="data")
    d = perflow.window_targets(velocity, x0, noise, later, torch.zeros(2), *args, start="teacher")
    assert (
        c.x[0] - d.x[0]
    ).abs().max() > 1e-3  # window 2 starts from the teacher's trajectory, not from data
    torch.testing.assert_close(c.x[1], d.x[1])  # the window-0 sample is untouched by the others' windows
