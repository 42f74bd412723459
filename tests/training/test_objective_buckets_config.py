"""The objective helpers in flow.py, the bucket sampler, I2V condition channels, and recipe configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from motif_video import flow
from motif_video.training.buckets import BucketBatchSampler
from motif_video.training.config import load_config
from motif_video.training.i2v import condition_channels
from motif_video.training.setup import lr_at

RECIPES = Path(__file__).parents[2] / "recipes"


def test_timestep_sampling_and_shift():
    g = torch.Generator().manual_seed(0)
    uniform = flow.sample_training_sigmas(20000, "uniform", generator=g)
    assert uniform.min() >= 0 and uniform.max() < 1 and abs(uniform.mean() - 0.5) < 0.01
    logit = flow.sample_training_sigmas(20000, "logit_normal", generator=g)
    assert abs(logit.mean() - 0.5) < 0.01 and logit.std() < uniform.std()
    shifted = flow.sample_training_sigmas(20000, "uniform", shift=3.0, generator=g)
    assert shifted.mean() > 0.6
    with pytest.raises(ValueError, match="uniform"):
        flow.sample_training_sigmas(2, "cosine")


def test_velocity_loss_and_text_dropout_and_bins():
    x0, noise = torch.randn(3, 4, 2), torch.randn(3, 4, 2)
    assert torch.equal(flow.velocity_loss(noise - x0, x0, noise), torch.zeros(3))
    assert torch.allclose(flow.velocity_loss(noise - x0 + 1, x0, noise), torch.ones(3))
    text, mask = torch.ones(2, 4, 3), torch.ones(2, 4, dtype=torch.bool)
    null, null_mask = torch.full((6, 3), 7.0), torch.tensor([1, 0, 0, 0, 0, 0], dtype=torch.bool)
    out, out_mask = flow.drop_text(text, mask, null, null_mask, torch.tensor([False, True]))
    assert torch.equal(out[0], text[0]) and torch.equal(out[1], null[:4])
    assert out_mask.tolist() == [[True] * 4, [True, False, False, False]]
    bins = flow.timestep_bins(torch.tensor([0.05, 0.07, 0.95]), torch.tensor([1.0, 3.0, 5.0]))
    assert bins == {"sigma_0.0-0.1": (4.0, 2), "sigma_0.9-1.0": (5.0, 1)}


def test_velocity_loss_weights_latent_frame_0():
    x0, noise = torch.zeros(2, 3, 4, 2, 2), torch.zeros(2, 3, 4, 2, 2)
    prediction = torch.zeros_like(x0)
    prediction[:, :, 0] = 2.0  # squared error 4 in latent frame 0, 0 elsewhere
    assert torch.allclose(flow.velocity_loss(prediction, x0, noise), torch.full((2,), 1.0))  # 4 / 4 frames
    assert torch.allclose(
        flow.velocity_loss(prediction, x0, noise, first_frame_weight=4.0), torch.full((2,), 16 / 7)
    )
    prediction[:, :, 0], prediction[:, :, 2] = 0.0, 1.0  # the weight does not touch the other frames' errors
    assert torch.allclose(
        flow.velocity_loss(prediction, x0, noise, first_frame_weight=4.0), torch.full((2,), 1 / 7)
    )
    with pytest.raises(ValueError, match="first_frame_weight=-1.0 must be >= 0"):
        flow.velocity_loss(prediction, x0, noise, first_frame_weight=-1.0)
    with pytest.raises(ValueError, match="objective.first_frame_weight must be >= 0, got -1.0"):
        load_config(None, ["objective.first_frame_weight=-1"])


def test_bucket_sampler_one_shape_per_step_and_ranks_partition_the_global_batch():
    buckets = ["video"] * 10 + ["image"] * 7
    ranks = [BucketBatchSampler(buckets, 2, world_size=2, rank=r, seed=3) for r in range(2)]
    assert ranks[0].steps_per_epoch == 2 + 1  # 10 // 4 + 7 // 4
    for step in range(9):
        parts = [s.batch_at(step) for s in ranks]
        assert all(len(p) == 2 for p in parts)
        assert len({buckets[i] for p in parts for i in p}) == 1  # one shape for every rank
        assert parts[0] + parts[1] == ranks[0].global_batch_at(step)
        assert not set(parts[0]) & set(parts[1])
    again = BucketBatchSampler(buckets, 2, world_size=2, rank=0, seed=3)
    assert [again.batch_at(s) for s in range(9)] == [ranks[0].batch_at(s) for s in range(9)]
    assert ranks[0].utilisation == pytest.approx(12 / 17)
    with pytest.raises(ValueError, match="global batch"):
        BucketBatchSampler(["a"] * 3, 2, world_size=2)


def test_i2v_condition_channels_and_blur():
    latents = torch.randn(2, 16, 3, 8, 8)
    sigma = torch.tensor([0.0, 1.0])
    cond = condition_channels(latents, sigma, conditioned=True, blur_strength=20.0)
    assert cond.shape == (2, 17, 3, 8, 8)
    assert torch.equal(cond[0, :16, 0], latents[0, :, 0])  # sigma 0: sharp
    assert not torch.allclose(cond[1, :16, 0], latents[1, :, 0])  # sigma 1: blurred
    assert cond[:, 16, 0].eq(1).all() and cond[:, :, 1:].eq(0).all()
    assert condition_channels(latents, sigma, conditioned=False).eq(0).all()
    off = condition_channels(latents, sigma, conditioned=True, blur_strength=0.0)
    assert off[:, :16, 0].equal(latents[:, :, 0])  # strength 0: the clean latent


def test_replaced_blur_key_names_its_replacement():
    assert load_config(None, ["i2v.blur_strength=2.5"]).i2v.blur_strength == 2.5
    with pytest.raises(ValueError, match="replaced by i2v.blur_strength"):
        load_config(None, ["i2v.blur_max_std=1.0"])


def test_every_recipe_loads_and_unknown_keys_fail():
    files = sorted(RECIPES.rglob("*.yaml"))
    assert len(files) >= 12  # tiny-cpu, lora, full fine-tune, ten curriculum stages
    for path in files:
        if path.parent.name == "distill":  # distillation recipes: a training recipe plus a `distill:` section
            from motif_video.distill.config import load_distill_config

            load_distill_config(path)
        else:
            load_config(path)
    with pytest.raises(ValueError, match="unknown key"):
        load_config(RECIPES / "tiny-cpu" / "config.yaml", ["optim.learning_rate=1"])
    with pytest.raises(ValueError, match="must be one of"):
        load_config(None, ["objective.timestep_sampling=cosine"])
    with pytest.raises(ValueError, match="key=value"):
        load_config(None, ["max_steps"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("log_every=0", "log_every must be >= 1, got 0"),
        ("max_steps=0", "max_steps must be >= 1, got 0"),
        ("keep_checkpoints=0", "keep_checkpoints must be >= 1, got 0"),
        ("cpu_threads=-1", "cpu_threads must be >= 0, got -1"),
        ("objective.text_dropout=2", r"objective.text_dropout must be in \[0, 1\], got 2"),
        ("i2v.probability=1.5", r"i2v.probability must be in \[0, 1\], got 1.5"),
        ("data.batch_size=0", "data.batch_size must be >= 1, got 0"),
        ("optim.lr=-1", "optim.lr must be > 0, got -1"),
        ("optim.lr=.nan", "optim.lr must be > 0, got nan"),
        ("optim.ema_decay=1.5", r"optim.ema_decay must be in \[0, 1\), got 1.5"),
        ("optim.betas=[0.9]", r"optim.betas must be two numbers in \[0, 1\), got \[0.9\]"),
        ("tread.routes=[{start_layer: 2, end_layer: 1, ratio: 0.5}]", r"tread.routes\[0\]: route needs"),
        ("optim=3", "^optim must be a mapping, got 3"),
    ],
)
def test_a_value_out_of_range_names_its_key_before_anything_runs(override, message):
    """Before: a ZeroDivisionError at the first log (log_every=0), an IndexError in Adam (one beta), every checkpoint
    deleted (keep_checkpoints=0), an untrained export (max_steps=0), or a probability of 1.5 taken as 1."""
    with pytest.raises(ValueError, match=message):
        load_config(RECIPES / "tiny-cpu" / "config.yaml", [override])


def test_learning_rate_schedule():
    config = load_config(
        None, ["optim.lr=1.0", "optim.warmup_steps=4", "optim.schedule=cosine", "max_steps=14"]
    )
    assert [lr_at(s, config) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_at(9, config) == pytest.approx(0.5) and lr_at(14, config) == pytest.approx(0.0)
