"""`data.conditioned_cache`: a second cache drawn only on the steps `i2v` conditions (clips whose frames the caption
alone does not decide, e.g. a path seen from its middle), the other steps drawing only from `data.cache`."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file
from tests.training.conftest import tiny_overrides, write_random_cache

from motif_video.training import draws
from motif_video.training import trainer as trainer_module
from motif_video.training.buckets import BucketBatchSampler, ConditionedBatchSampler
from motif_video.training.config import load_config


def test_conditioned_steps_take_the_second_sets_batches():
    main, second = BucketBatchSampler(["a"] * 10, 2, seed=1), BucketBatchSampler(["a"] * 6, 2, seed=1)
    sampler = ConditionedBatchSampler(main, second, 10, lambda step: step % 3 == 0)
    for step in range(12):
        batch = sampler.batch_at(step)
        if step % 3 == 0:
            assert batch == [10 + i for i in second.batch_at(step)] and min(batch) >= 10
        else:
            assert batch == main.batch_at(step) and max(batch) < 10
    assert sampler.utilisation == pytest.approx(1.0)


def _marked_cache(folder, shift: float):
    """A random cache whose latents are moved by `shift`, so that a batch shows which cache it came from."""
    write_random_cache(folder, count=6, seed=1)
    shard = folder / "shard-00000.safetensors"
    tensors = load_file(str(shard))
    save_file({k: v + shift if k.endswith("latents") else v for k, v in tensors.items()}, str(shard))
    return folder


def test_training_draws_the_conditioned_cache_exactly_on_conditioned_steps(tmp_path, monkeypatch):
    cache = write_random_cache(tmp_path / "cache", count=6)
    second = _marked_cache(tmp_path / "paths", 100.0)
    config = load_config(
        None,
        [
            *tiny_overrides(tmp_path / "run", cache, max_steps=10),
            f"data.conditioned_cache={second}",
            "i2v.probability=0.5",
            "i2v.patterns={prefix: 1.0}",
        ],
    )
    seen = []
    prepare = trainer_module.prepare_inputs

    def spy(batch, *args, **kwargs):
        seen.append(float(batch["latents"].mean()))
        return prepare(batch, *args, **kwargs)

    monkeypatch.setattr(trainer_module, "prepare_inputs", spy)
    result = trainer_module.train(config)
    assert len(result.losses) == 10 and all(torch.isfinite(torch.tensor(result.losses)))
    expected = [draws.conditioned(config, step) for step in range(10)]
    assert 0 < sum(expected) < 10  # both kinds of step occur
    assert [m > 50 for m in seen] == expected


def test_a_share_of_conditioned_steps_draws_the_conditioned_cache(tmp_path):
    cache, second = write_random_cache(tmp_path / "cache", count=6), tmp_path / "paths"
    base = [
        *tiny_overrides(tmp_path / "run", cache),
        f"data.conditioned_cache={second}",
        "i2v.probability=0.5",
    ]
    config = load_config(None, [*base, "data.conditioned_share=0.5"])
    picks = [(draws.conditioned(config, s), draws.from_conditioned_cache(config, s)) for s in range(400)]
    assert all(c for c, second_set in picks if second_set)  # only conditioned steps draw it
    share = sum(s for _, s in picks) / sum(c for c, _ in picks)
    assert 0.4 < share < 0.6
    every = load_config(None, base)
    assert all(draws.from_conditioned_cache(every, s) == draws.conditioned(every, s) for s in range(100))


@pytest.mark.parametrize(
    "extra, word",
    [
        (["data.conditioned_path=clips"], "conditioned_cache"),
        (["data.conditioned_cache=paths", "data.cache=null", "data.path=clips"], "data.cache"),
        (["data.conditioned_cache=paths", "i2v.probability=0"], "probability"),
        (["data.conditioned_cache=paths", "i2v.probability=1.0"], "probability"),
        (["data.conditioned_cache=paths", "data.conditioned_share=0"], "conditioned_share"),
    ],
)
def test_conditioned_data_settings_that_cannot_work_are_refused(tmp_path, extra, word):
    base = tiny_overrides(tmp_path / "run", tmp_path / "cache")
    with pytest.raises(ValueError, match=word):
        load_config(None, [*base, "i2v.probability=0.5", *extra])
