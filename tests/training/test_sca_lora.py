"""Shared Cross-Attention insertion leaves outputs unchanged; LoRA adapters round-trip with their scale."""

from __future__ import annotations

import torch
from safetensors import safe_open

from motif_video.models import MotifVideoTransformer
from motif_video.testing import tiny_transformer
from motif_video.training.lora import add_lora, load_lora, save_lora
from motif_video.training.sca import add_shared_cross_attention


def _inputs():
    g = torch.Generator().manual_seed(1)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.bool)
    return (
        torch.randn(2, 33, 3, 8, 8, generator=g),
        torch.tensor([100.0, 900.0]),
        torch.randn(2, 4, 32, generator=g),
        mask,
    )


def test_inserted_cross_attention_leaves_outputs_unchanged():
    base = tiny_transformer(enable_text_cross_attention_single=False, layout="shared")
    assert not any("cross_attn" in k for k in base.state_dict())
    with_sca = add_shared_cross_attention(base).eval()
    new_keys = [k for k in with_sca.state_dict() if "cross_attn" in k]
    assert new_keys and all(k.startswith("single_transformer_blocks.") for k in new_keys)
    assert with_sca.config.enable_text_cross_attention_single
    x, t, text, mask = _inputs()
    with torch.no_grad():
        assert torch.equal(with_sca(x, t, text, mask).sample, base(x, t, text, mask).sample)
    # The new path is live: once its output projection moves, text reaches the video through it.
    with torch.no_grad():
        with_sca.single_transformer_blocks[0].cross_attn_out_proj.weight.normal_(0, 0.1)
        assert not torch.allclose(with_sca(x, t, text, mask).sample, base(x, t, text, mask).sample)


def test_lora_adapter_round_trips_with_scale(tmp_path):
    model = tiny_transformer()
    x, t, text, mask = _inputs()
    with torch.no_grad():
        base = model(x, t, text, mask).sample
    trainable = add_lora(model, rank=4, alpha=8)
    assert trainable and all("lora_" in n for n in trainable)
    with torch.no_grad():
        assert torch.equal(model(x, t, text, mask).sample, base)  # B starts at zero
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
        tuned = model(x, t, text, mask).sample
        half = model(x, t, text, mask, attention_kwargs={"scale": 0.5}).sample
    assert not torch.allclose(tuned, base)
    path = save_lora(model, tmp_path / "lora")
    with safe_open(str(path), "pt") as f:
        assert all(k.startswith("transformer.") and ".lora_" in k for k in f.keys())  # noqa: SIM118
        assert '"transformer.r": 4' in f.metadata()["lora_adapter_metadata"]

    fresh = tiny_transformer()  # same seed: same base weights
    load_lora(fresh, tmp_path / "lora", adapter_name="style")
    with torch.no_grad():
        torch.testing.assert_close(fresh(x, t, text, mask).sample, tuned, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(
            fresh(x, t, text, mask, attention_kwargs={"scale": 0.5}).sample, half, rtol=1e-5, atol=1e-6
        )
        torch.testing.assert_close(
            fresh(x, t, text, mask, attention_kwargs={"scale": 0.0}).sample, base, rtol=1e-5, atol=1e-6
        )
    assert isinstance(fresh, MotifVideoTransformer)


def test_trainer_lora_run_saves_an_adapter(tmp_path):
    from tests.training.conftest import tiny_overrides, write_random_cache

    from motif_video.training.config import load_config
    from motif_video.training.trainer import train

    cache = write_random_cache(tmp_path / "cache", count=2)
    train(load_config(None, tiny_overrides(tmp_path / "run", cache, **{"max_steps": 2, "lora.rank": 4})))
    folder = tmp_path / "run" / "checkpoints" / "step-00000002"
    assert (folder / "lora" / "pytorch_lora_weights.safetensors").exists()
    fresh = tiny_transformer(layout="shared")  # the trainer's new models use the paper's layout
    load_lora(fresh, folder / "lora")
    assert any("lora_B" in n for n, _ in fresh.named_parameters())


def test_a_lora_runs_ema_is_exported_and_a_stale_one_goes(tmp_path):
    """With optim.ema_decay a LoRA run exports the adapter's EMA as lora-ema/ beside lora/ (before: saved in the
    checkpoints, never exported); run again in that folder without EMA, the old lora-ema/ goes (it would be taken
    for this run's)."""
    from safetensors.torch import load_file
    from tests.training.conftest import tiny_overrides, write_random_cache

    from motif_video.training.config import load_config
    from motif_video.training.trainer import train

    cache = write_random_cache(tmp_path / "cache", count=2)
    # random weights: a new model's zero-initialised outputs give its LoRA no gradient
    base = tmp_path / "base"
    tiny_transformer(0, layout="shared").save_pretrained(base)
    lora = {"lora.rank": 4, "optim.ema_decay": 0.5, "model.pretrained": str(base)}
    train(load_config(None, tiny_overrides(tmp_path / "run", cache, max_steps=3, **lora)))
    out = tmp_path / "run"
    plain = load_file(str(out / "lora" / "pytorch_lora_weights.safetensors"))
    ema = load_file(str(out / "lora-ema" / "pytorch_lora_weights.safetensors"))
    assert plain.keys() == ema.keys() and any(not torch.equal(plain[k], ema[k]) for k in plain)
    # evaluated, the run's report names the LoRA it brought (before: `lora: []`, as if the base were scored)
    from motif_video.evaluation.offline import OfflineEvalConfig, _load

    assert _load(OfflineEvalConfig(model=str(out), i2v=False).validate())[2] == f"{out}/lora"
    train(
        load_config(
            None, tiny_overrides(tmp_path / "run", cache, max_steps=4, **{**lora, "optim.ema_decay": 0})
        )
    )
    assert (out / "lora").is_dir() and not (out / "lora-ema").exists()
    # moved with the base it names (recorded as an absolute path): found beside it (before: exit 2, base gone)
    import shutil

    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.move(base, moved / "base")
    shutil.move(out, moved / "run")
    assert (
        _load(OfflineEvalConfig(model=str(moved / "run"), i2v=False).validate())[2] == f"{moved / 'run'}/lora"
    )
