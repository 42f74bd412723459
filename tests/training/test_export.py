"""A trainer checkpoint as a loadable transformer folder (`export.transformer_from_checkpoint`)."""

import json

import pytest
import torch
from safetensors.torch import save_file

from motif_video.models import MotifVideoTransformer
from motif_video.presets import build_transformer
from motif_video.training.export import transformer_from_checkpoint


def test_transformer_from_checkpoint_builds_the_runs_own_architecture_with_ema_weights(tmp_path):
    overrides = {"num_single_layers": 2, "rope_theta": 100.0}
    model = build_transformer("tiny", **overrides)
    step = tmp_path / "run" / "checkpoints" / "step-00000010"
    step.mkdir(parents=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(step / "model.safetensors"))
    ema = {k: v + 1.0 for k, v in state.items() if k.startswith("proj_out")}
    save_file(ema, str(step / "ema.safetensors"))
    config = {"model": {"preset": "tiny", "overrides": overrides}}
    (tmp_path / "run" / "config.json").write_text(json.dumps(config))

    out = transformer_from_checkpoint(step, tmp_path / "out")
    loaded = MotifVideoTransformer.from_pretrained(out)
    assert loaded.config.rope_theta == 100.0 and loaded.config.num_single_layers == 2
    for key, value in loaded.state_dict().items():
        torch.testing.assert_close(value, ema.get(key, state[key]), msg=key)

    config["model"]["overrides"] = {}  # the run's config no longer describes the checkpoint
    (tmp_path / "run" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="does not match preset 'tiny'"):
        transformer_from_checkpoint(step, tmp_path / "out2")

    (tmp_path / "run" / "config.json").unlink()
    with pytest.raises(ValueError, match="config.json not found: pass the checkpoint's preset"):
        transformer_from_checkpoint(step, tmp_path / "out3")

    # a fine-tuning run: the architecture is its pretrained folder's
    model.save_pretrained(tmp_path / "pretrained")
    (tmp_path / "run" / "config.json").write_text(
        json.dumps({"model": {"pretrained": str(tmp_path / "pretrained")}})
    )
    loaded = MotifVideoTransformer.from_pretrained(transformer_from_checkpoint(step, tmp_path / "out4"))
    assert loaded.config.num_single_layers == 2
    for key, value in loaded.state_dict().items():
        torch.testing.assert_close(value, ema.get(key, state[key]), msg=key)
