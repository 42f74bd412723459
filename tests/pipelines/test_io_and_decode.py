"""Decoding (streamed == stock VAE decode), latent normalisation, MP4 writing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from motif_video.pipelines.export import read_mp4_info, write_mp4
from motif_video.pipelines.latents import (
    FIRST_FRAME_MEAN,
    FIRST_FRAME_STD,
    decode_latents,
    denormalize_latents,
    first_frame_stats,
    measure_first_frame_stats,
    normalize_latents,
    to_model_latents,
    to_vae_latents,
)


def test_streamed_decode_equals_vae_decode():
    from motif_video.testing import tiny_vae

    vae = tiny_vae()
    z = torch.randn(2, 16, 3, 4, 6, generator=torch.Generator().manual_seed(0))
    mean, std = vae.config.latents_mean, vae.config.latents_std
    # One video at a time, as decode_latents does (a batch of 2 rounds differently in the convolutions, ~1e-6).
    expected = torch.cat(
        [vae.decode(denormalize_latents(v, mean, std), return_dict=False)[0] for v in z.split(1)]
    )
    streamed = decode_latents(vae, z, stream=True)
    assert streamed.shape == (2, 3, 9, 32, 48)
    torch.testing.assert_close(streamed, expected, atol=0, rtol=0)
    vae.enable_tiling()  # tiling falls back to the stock path
    assert decode_latents(vae, z[:1]).shape == (1, 3, 9, 32, 48)


def test_latent_normalisation_round_trip():
    mean, std = [float(i) for i in range(16)], [1.0 + i for i in range(16)]
    z = torch.randn(1, 16, 2, 3, 3)
    torch.testing.assert_close(denormalize_latents(normalize_latents(z, mean, std), mean, std), z)
    assert normalize_latents(z, mean, std)[0, 3].mean().item() == pytest.approx(
        ((z[0, 3] - 3) / 4).mean().item()
    )


def _config(first: bool) -> dict:
    config = {
        "latents_mean": [0.1 * i for i in range(16)],
        "latents_std": [1.0 + 0.05 * i for i in range(16)],
    }
    if first:
        config |= {
            FIRST_FRAME_MEAN: [-0.2 * i for i in range(16)],
            FIRST_FRAME_STD: [0.5 + 0.01 * i for i in range(16)],
        }
    return config


def test_first_frame_pair_applies_to_latent_frame_0_only():
    z = torch.randn(2, 16, 3, 2, 2, generator=torch.Generator().manual_seed(1))
    plain, first = _config(False), _config(True)
    # Without the pair: the per-channel normalisation of every frame (the released behaviour).
    torch.testing.assert_close(to_model_latents(z, plain), normalize_latents(z, *plain.values()))
    n = to_model_latents(z, first)
    torch.testing.assert_close(n[:, :, 1:], normalize_latents(z[:, :, 1:], *plain.values()))
    torch.testing.assert_close(n[:, :, :1], (z[:, :, :1] + 0.2 * torch.arange(16.0).view(1, -1, 1, 1, 1))
                               / (0.5 + 0.01 * torch.arange(16.0)).view(1, -1, 1, 1, 1))  # fmt: skip
    torch.testing.assert_close(to_vae_latents(n, first), z)
    assert not torch.allclose(to_vae_latents(n, plain), z)


def test_first_frame_pair_must_be_whole():
    config = _config(True)
    assert first_frame_stats(_config(False)) is None
    with pytest.raises(
        ValueError, match=f"{FIRST_FRAME_MEAN}.*{FIRST_FRAME_STD}.*16 values each, got 16 and None"
    ):
        first_frame_stats({**config, FIRST_FRAME_STD: None})
    with pytest.raises(ValueError, match="got 3 and 16"):
        first_frame_stats({**config, FIRST_FRAME_MEAN: [0.0] * 3})
    with pytest.raises(ValueError, match="must be positive, got minimum 0.0"):
        first_frame_stats({**config, FIRST_FRAME_STD: [0.0] * 16})


def test_measured_pair_gives_frame_0_the_other_frames_distribution():
    g = torch.Generator().manual_seed(2)
    z = torch.randn(64, 16, 5, 4, 4, generator=g) * (1 + torch.rand(1, 16, 1, 1, 1, generator=g))
    z[:, :, 0] = 0.3 * z[:, :, 0] - 0.7  # frame 0: narrower and shifted, as a causal VAE's lone first frame
    config = _config(False)
    mean, std = measure_first_frame_stats(z, config["latents_mean"], config["latents_std"])
    n = to_model_latents(z, {**config, FIRST_FRAME_MEAN: mean, FIRST_FRAME_STD: std}).double()
    dims = (0, 2, 3, 4)
    torch.testing.assert_close(n[:, :, :1].mean(dims), n[:, :, 1:].mean(dims), atol=1e-4, rtol=0)
    torch.testing.assert_close(n[:, :, :1].std(dims), n[:, :, 1:].std(dims), atol=1e-4, rtol=1e-4)
    before = normalize_latents(z, config["latents_mean"], config["latents_std"]).double()
    assert (before[:, :, :1].std(dims) / before[:, :, 1:].std(dims)).max() < 0.5  # it did have to move
    with pytest.raises(ValueError, match="T>=2"):
        measure_first_frame_stats(z[:, :, :1], config["latents_mean"], config["latents_std"])


def test_vae_folder_keeps_the_pair_and_decode_uses_it(tmp_path):
    from diffusers import AutoencoderKLWan

    from motif_video.testing import tiny_vae

    vae = tiny_vae()
    first = _config(True)
    vae.register_to_config(**{k: first[k] for k in (FIRST_FRAME_MEAN, FIRST_FRAME_STD)})
    vae.save_pretrained(tmp_path / "vae")
    loaded = AutoencoderKLWan.from_pretrained(tmp_path / "vae")
    assert first_frame_stats(loaded.config) == (first[FIRST_FRAME_MEAN], first[FIRST_FRAME_STD])
    z = torch.randn(1, 16, 3, 4, 6, generator=torch.Generator().manual_seed(0))
    expected = loaded.decode(to_vae_latents(z, loaded.config), return_dict=False)[0]
    torch.testing.assert_close(decode_latents(loaded, z, stream=True), expected, atol=0, rtol=0)
    plain = loaded.decode(
        denormalize_latents(z, *(loaded.config[k] for k in ("latents_mean", "latents_std")))
    )[0]
    assert (plain[:, :, 0] - expected[:, :, 0]).abs().max() > 1e-3  # frame 0 decodes from other latents


def test_mp4_round_trip(tmp_path):
    frames = np.random.default_rng(0).random((9, 64, 96, 3)).astype(np.float32)
    path = write_mp4(frames, tmp_path / "clip.mp4", fps=24)
    assert read_mp4_info(path) == {"frames": 9, "width": 96, "height": 64, "fps": 24.0}
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]  # no temporary file left


def test_mp4_failure_leaves_nothing(tmp_path):
    with pytest.raises(ValueError, match="frames must be"):
        write_mp4(np.zeros((9, 64, 96)), tmp_path / "bad.mp4")
    with pytest.raises(ValueError, match="fps"):
        write_mp4(np.zeros((9, 64, 96, 3)), tmp_path / "bad.mp4", fps=0)
    assert list(tmp_path.iterdir()) == []
