"""The released 2B configuration: it builds the released model (on the meta device) and round-trips exactly; the
constructor's defaults are diffusers'."""

import inspect
import json
from pathlib import Path

import diffusers
import torch

from motif_video import MotifVideoTransformer, build_transformer
from motif_video.presets import PRESETS, preset_config

# Every key and shape of the released checkpoint (transformer/diffusion_pytorch_model.safetensors, 902 tensors).
KEYS_FILE = Path(__file__).resolve().parents[1] / "data" / "released_state_dict_keys.txt"
RELEASED_PARAMETERS = 2_037_809_600
RELEASED_TENSORS = 902
# transformer/config.json of Motif-Technologies/Motif-Video-2B, as published (diffusers' format: sorted, indent 2).
RELEASED_CONFIG_JSON = """{
  "_class_name": "MotifVideoTransformer3DModel",
  "_diffusers_version": "0.36.0",
  "attention_head_dim": 128,
  "enable_text_cross_attention_dual": false,
  "enable_text_cross_attention_single": true,
  "image_embed_dim": 1152,
  "in_channels": 33,
  "mlp_ratio": 4.0,
  "norm_type": "layer_norm",
  "num_attention_heads": 12,
  "num_decoder_layers": 8,
  "num_layers": 12,
  "num_single_layers": 24,
  "out_channels": 16,
  "patch_size": 2,
  "patch_size_t": 1,
  "qk_norm": "rms_norm",
  "rope_axes_dim": [
    16,
    56,
    56
  ],
  "rope_theta": 10000.0,
  "text_embed_dim": 2560
}
"""


def _released_keys():
    shapes = {}
    for line in KEYS_FILE.read_text().splitlines():
        if line.strip():
            key, shape = line.split("\t")
            shapes[key] = tuple(int(s) for s in shape.strip("[]").split(", ") if s)
    return shapes


def _check_released(model):
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    released = _released_keys()
    assert len(released) == RELEASED_TENSORS
    assert sorted(set(ours) ^ set(released)) == []
    assert {k: v for k, v in ours.items() if released[k] != v} == {}
    assert sum(p.numel() for p in model.parameters()) == RELEASED_PARAMETERS


def test_released_config_builds_released_model_on_meta():
    """from_config, the constructor and the preset all build the released key set: the config decides."""
    config = json.loads(RELEASED_CONFIG_JSON)
    with torch.device("meta"):
        _check_released(MotifVideoTransformer.from_config(config))
        _check_released(MotifVideoTransformer(**{k: v for k, v in config.items() if not k.startswith("_")}))
    _check_released(build_transformer("motif-video-2b", device="meta"))


def test_released_config_round_trips_byte_for_byte():
    """Only `_diffusers_version` changes: diffusers writes its own version into every config it saves."""
    with torch.device("meta"):
        model = MotifVideoTransformer.from_config(json.loads(RELEASED_CONFIG_JSON))
    expected = RELEASED_CONFIG_JSON.replace('"0.36.0"', json.dumps(diffusers.__version__))
    assert model.to_json_string() == expected


def test_shared_layout_is_written_and_rebuilds(tmp_path):
    model = build_transformer("motif-video-2b", device="meta", cross_attention_layout="shared")
    assert sum(p.numel() for p in model.parameters()) == 1_962_308_032
    config = json.loads(model.to_json_string())
    assert config["cross_attention_layout"] == "shared"
    with torch.device("meta"):
        rebuilt = MotifVideoTransformer.from_config(config)
    assert rebuilt.state_dict().keys() == model.state_dict().keys()


def test_saved_tiny_folder_round_trips(tmp_path):
    released_like = {k: v for k, v in preset_config("tiny").items() if k != "cross_attention_layout"}
    model = MotifVideoTransformer(**released_like)
    model.save_pretrained(tmp_path / "m")
    saved = json.loads((tmp_path / "m" / "config.json").read_text())
    assert saved == {"_class_name": "MotifVideoTransformer3DModel", "_diffusers_version": diffusers.__version__,
                     **released_like}  # fmt: skip
    loaded = MotifVideoTransformer.from_pretrained(tmp_path / "m")
    assert loaded.cross_attention_layout == "separate"
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))


def test_defaults_equal_diffusers():
    """A config that leaves keys out builds the same model in both libraries."""
    reference = inspect.signature(diffusers.MotifVideoTransformer3DModel.__init__).parameters
    ours = inspect.signature(MotifVideoTransformer.__init__).parameters
    assert set(ours) - set(reference) == {"guidance_embeds", "cross_attention_layout"}
    for name, parameter in reference.items():
        if name != "self":
            assert ours[name].default == parameter.default, name
    with torch.device("meta"):
        a, b = MotifVideoTransformer(), diffusers.MotifVideoTransformer3DModel()
    assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}


def test_presets_are_complete():
    """Every preset names every constructor key but the students' guidance embedding (none relies on a default)."""
    keys = set(inspect.signature(MotifVideoTransformer.__init__).parameters) - {"self", "guidance_embeds"}
    for name, config in PRESETS.items():
        missing = keys - set(config) - ({"cross_attention_layout"} if name == "motif-video-2b" else set())
        assert missing == set(), (name, missing)
