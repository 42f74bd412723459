"""Validation videos through MotifVideoPipeline during training, on the tiny recipe."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from motif_video.pipelines.export import read_mp4_info
from motif_video.training.config import load_config
from motif_video.training.trainer import train

RECIPE = Path(__file__).parents[2] / "recipes" / "tiny-cpu" / "config.yaml"


def test_tiny_recipe_writes_validation_videos(tmp_path):
    overrides = [
        f"output_dir={tmp_path}",
        "max_steps=2",
        "data.generate_clips=2",
        "data.batch_size=2",
        "checkpoint_every=0",
        "tensorboard=false",
        "validation.every=1",
        "validation.prompts=['a red ball moving left', 'a blue square moving up']",
        "validation.num_inference_steps=2",
    ]
    train(load_config(RECIPE, overrides))
    folders = sorted(p.name for p in (tmp_path / "validation").iterdir())
    assert folders == ["step-00000001", "step-00000002"]  # no step-N.tmp left behind
    for folder in folders:
        files = sorted(p.name for p in (tmp_path / "validation" / folder).iterdir())
        assert files == ["00.mp4", "01.mp4"]  # no .part files
    info = read_mp4_info(tmp_path / "validation" / "step-00000002" / "00.mp4")
    assert info == {"frames": 9, "width": 64, "height": 64, "fps": 24.0}


def test_validation_renders_the_given_model(tmp_path, monkeypatch, caplog):
    """The frames written are the pipeline's output for the model passed in (not a reloaded copy)."""
    import torch

    from motif_video.pipelines import export
    from motif_video.testing import tiny_transformer
    from motif_video.training.components import load_components
    from motif_video.training.validation import render_validation, validation_pipeline

    written = []
    real_write = export.write_mp4
    monkeypatch.setattr(
        export, "write_mp4", lambda frames, path, fps: written.append(frames) or real_write(frames, path, fps)
    )
    config = load_config(RECIPE, ["validation.prompts=['a red ball']", "validation.num_inference_steps=2"])
    components = load_components("tiny")
    model = tiny_transformer(0, std=0.2).train()
    paths = render_validation(config, model, components, tmp_path / "step-00000007")
    assert model.training  # restored
    assert paths == [tmp_path / "step-00000007" / "00.mp4"] and paths[0].is_file()
    expected = validation_pipeline(model, components)(
        "a red ball", height=64, width=64, num_frames=9, num_inference_steps=2, guidance_scale=8.0,
        generator=torch.Generator().manual_seed(config.seed), output_type="np",
    ).frames[0]  # fmt: skip
    np.testing.assert_allclose(written[0], expected, atol=1e-6)
    render_validation(config, tiny_transformer(1, std=0.2), components, tmp_path / "other")
    assert np.abs(written[1] - expected).max() > 1e-2  # another model gives another video
    # a diverged model (NaN weights): no video, a warning, and training goes on (writing NaN frames is an error)
    diverged = tiny_transformer(1, std=0.2)
    with torch.no_grad():
        next(diverged.parameters()).fill_(float("nan"))
    assert render_validation(config, diverged, components, tmp_path / "diverged") == []
    assert "validation prompt 0 gave non-finite frames" in caplog.text
