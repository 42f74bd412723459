"""Files the library writes through safetensors (which creates 0600 files) get 0o666 less the umask, as any new
file does: model folders, checkpoints, caches, LoRA files."""

from __future__ import annotations

import os

import pytest
import torch

from motif_video.file_modes import give_default_mode


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield 0o640
    os.umask(old)


def _modes(folder) -> dict[str, int]:
    return {p.name: p.stat().st_mode & 0o777 for p in folder.rglob("*") if p.is_file()}


def test_model_folders_checkpoints_and_loras_follow_the_umask(tmp_path, umask_027):
    from motif_video.pipelines.lora import save_lora
    from motif_video.testing import tiny_transformer
    from motif_video.training.cache import _write_atomic
    from motif_video.training.checkpoint import save_tensors
    from motif_video.training.lora import add_lora

    model = tiny_transformer(0)
    model.save_pretrained(tmp_path / "model")
    (tmp_path / "ckpt").mkdir()
    save_tensors({"w": torch.zeros(3)}, tmp_path / "ckpt" / "model.safetensors")
    _write_atomic(
        {"w": torch.zeros(3)}, tmp_path / "ckpt" / "shard-00000.safetensors"
    )  # the latent cache's writer
    add_lora(model, rank=2)
    save_lora(model, tmp_path / "lora")
    modes = _modes(tmp_path)
    assert {"diffusion_pytorch_model.safetensors", "config.json", "model.safetensors",
            "pytorch_lora_weights.safetensors", "shard-00000.safetensors"} <= set(modes)  # fmt: skip
    assert set(modes.values()) == {umask_027}, modes


def test_give_default_mode_reaches_every_file_under_a_folder(tmp_path, umask_027):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/x", "a/b/y", "z"):
        (tmp_path / name).write_text("")
        os.chmod(tmp_path / name, 0o600)
    give_default_mode(tmp_path / "a", tmp_path / "z")
    assert set(_modes(tmp_path).values()) == {umask_027}


def test_write_safetensors_is_atomic_and_follows_the_umask(tmp_path, umask_027, monkeypatch):
    from safetensors import safe_open

    from motif_video.file_modes import write_safetensors

    path = write_safetensors(
        {"w": torch.arange(6.0).view(2, 3).t()}, tmp_path / "a.safetensors", {"seed": "3"}
    )
    with safe_open(str(path), framework="pt") as f:
        assert torch.equal(f.get_tensor("w"), torch.arange(6.0).view(2, 3).t()) and f.metadata() == {
            "seed": "3"
        }
    assert _modes(tmp_path) == {"a.safetensors": umask_027}

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr("motif_video.file_modes.os.replace", fail)  # the file is written, the rename fails
    with pytest.raises(OSError, match="disk full"):
        write_safetensors({"w": torch.zeros(2)}, tmp_path / "b.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.safetensors"]  # nothing half-written left
