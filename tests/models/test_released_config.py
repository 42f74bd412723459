"""The released 2B configuration, built on the meta device: parameter count, keys and shapes."""

from pathlib import Path

import pytest

from motif_video import MotifVideoTransformer, build_transformer
from motif_video.presets import preset_config

KEYS_FILE = Path(__file__).resolve().parents[3] / "shared" / "spec" / "released_state_dict_keys.txt"

# Released key list, written down here so the test runs without ../shared as well (checked against it when present).
RELEASED_PARAMETERS = 2_037_809_600
RELEASED_TENSORS = 902


def _released_keys():
    if not KEYS_FILE.is_file():
        pytest.skip(f"{KEYS_FILE} not found")
    shapes = {}
    for line in KEYS_FILE.read_text().splitlines():
        if line.strip():
            key, shape = line.split("\t")
            shapes[key] = tuple(int(s) for s in shape.strip("[]").split(", ") if s)
    return shapes


def test_meta_build_has_released_parameter_count():
    model = build_transformer("motif-video-2b", device="meta", cross_attention_layout="separate")
    assert sum(p.numel() for p in model.parameters()) == RELEASED_PARAMETERS
    assert len(model.state_dict()) == RELEASED_TENSORS


def test_meta_build_keys_and_shapes_equal_released_checkpoint():
    model = build_transformer("motif-video-2b", device="meta", cross_attention_layout="separate")
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    released = _released_keys()
    assert len(released) == RELEASED_TENSORS
    assert sorted(set(ours) ^ set(released)) == []
    assert {k: v for k, v in ours.items() if released[k] != v} == {}


def test_shared_layout_parameter_count():
    model = build_transformer("motif-video-2b", device="meta")
    assert sum(p.numel() for p in model.parameters()) == 1_962_308_032


def test_released_config_round_trips(tmp_path):
    """config.json as released -> model -> save_pretrained -> the same keys and values."""
    import json

    import torch

    released = {
        "_class_name": "MotifVideoTransformer3DModel",
        "_diffusers_version": "0.36.0",
        **preset_config("tiny"),
    }
    model = MotifVideoTransformer(**preset_config("tiny"), cross_attention_layout="separate")
    model.save_pretrained(tmp_path / "m")
    saved = json.loads((tmp_path / "m" / "config.json").read_text())
    assert saved["_class_name"] == "MotifVideoTransformer3DModel"
    strip = lambda c: {k: v for k, v in c.items() if not k.startswith("_")}  # noqa: E731
    assert strip(saved) == strip(released)
    assert set(strip(saved)) == set(preset_config("motif-video-2b"))
    loaded = MotifVideoTransformer.from_pretrained(tmp_path / "m")
    assert strip(dict(loaded.config)) == strip(released)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
