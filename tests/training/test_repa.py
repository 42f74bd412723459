"""REPA: teacher features on the student grid, the loss falls, gradients reach only the projector and blocks <= aligned."""

from __future__ import annotations

import pytest
import torch

from motif_video.testing import tiny_transformer
from motif_video.training.repa import Projector, alignment_loss, resample_to_grid, tiny_teacher


@pytest.mark.parametrize(("kind", "grid"), [("vjepa2", (3, 4, 4)), ("dinov2", (1, 4, 4))])
def test_teacher_features_land_on_the_student_grid(kind, grid):
    teacher = tiny_teacher(kind)
    frames = 9 if kind == "vjepa2" else 1
    pixels = torch.rand(2, 3, frames, 64, 64) * 2 - 1
    features = teacher(pixels)  # [B, t', h', w', C]
    assert features.shape[0] == 2 and features.shape[-1] == teacher.dim
    assert not features.requires_grad
    assert resample_to_grid(features, grid).shape == (2, grid[0] * grid[1] * grid[2], teacher.dim)


def test_alignment_loss_is_negative_cosine():
    a = torch.randn(2, 5, 8)
    assert torch.allclose(alignment_loss(a, 3 * a), torch.tensor(-1.0))
    assert torch.allclose(alignment_loss(a, -a), torch.tensor(1.0))


def _batch():
    g = torch.Generator().manual_seed(0)
    return (torch.randn(2, 33, 3, 8, 8, generator=g), torch.tensor([200.0, 800.0]),
            torch.randn(2, 4, 32, generator=g), torch.rand(2, 3, 9, 64, 64, generator=g) * 2 - 1)  # fmt: skip


def test_gradients_reach_only_projector_and_blocks_up_to_the_aligned_one():
    model = tiny_transformer().train()
    teacher = tiny_teacher("vjepa2")
    projector = Projector(32, teacher.dim, hidden=64)
    x, t, text, pixels = _batch()
    aligned = 1  # the second dual block
    out = model(x, t, text, return_features=[aligned])
    loss = alignment_loss(projector(out.features[aligned]), resample_to_grid(teacher(pixels), (3, 4, 4)))
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in projector.parameters())
    assert all(p.grad is None for p in teacher.parameters())
    for index, block in enumerate(model.repeated_blocks()):
        grads = [p.grad for p in block.parameters() if p.grad is not None and p.grad.abs().sum() > 0]
        if index <= aligned:
            assert grads, f"block {index} should receive gradients"
        else:
            assert not grads, f"block {index} is after the aligned block and must get no gradient"
    assert model.proj_out.weight.grad is None


def test_repa_loss_falls():
    model = tiny_transformer().train()
    teacher = tiny_teacher("dinov2")
    torch.manual_seed(0)
    projector = Projector(32, teacher.dim, hidden=64)
    x, t, text, pixels = _batch()
    target = resample_to_grid(teacher(pixels[:, :, :1]), (3, 4, 4))  # image teacher, broadcast over time
    params = [p for i, b in enumerate(model.repeated_blocks()) if i <= 1 for p in b.parameters()]
    optimizer = torch.optim.Adam([*params, *model.x_embedder.parameters(), *projector.parameters()], lr=3e-3)
    losses = []
    for _ in range(25):
        loss = alignment_loss(projector(model(x, t, text, return_features=[1]).features[1]), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0] - 0.3, losses


def test_trainer_runs_repa_for_the_first_steps_only(tmp_path):
    import json

    from tests.training.conftest import tiny_overrides, write_random_cache

    from motif_video.training.config import load_config
    from motif_video.training.trainer import train

    cache = write_random_cache(
        tmp_path / "cache", count=4, latent=(1, 4, 4)
    )  # 1 frame, 32x32: fast VAE decode
    extra = {"max_steps": 3, "repa.teacher": "tiny", "repa.kind": "dinov2", "repa.block": 1,
             "repa.until_step": 2, "repa.projector_dim": 32}  # fmt: skip
    train(load_config(None, tiny_overrides(tmp_path / "run", cache, **extra)))
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert ["repa_loss" in r for r in records] == [True, True, False]
