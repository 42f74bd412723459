"""The generate options, declared once: argparse, request checks, JSON schema and pipeline call derived from them."""

from __future__ import annotations

import argparse
import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest

from motif_video import defaults as D
from motif_video.choices import PARALLEL_CHOICES
from motif_video.options import (
    GENERATE_OPTIONS,
    OPTIONS,
    GenerateRequest,
    add_arguments,
    parse_request,
    pipeline_kwargs,
    request_from_args,
    request_schema,
)

SRC = Path(__file__).resolve().parents[1] / "src"


def test_options_import_neither_torch_nor_diffusers():
    # The package's own __init__ is bypassed: this checks what options.py (and what it imports) pulls in.
    code = (
        "import sys, types; pkg = types.ModuleType('motif_video'); "
        f"pkg.__path__ = [{str(SRC / 'motif_video')!r}]; sys.modules['motif_video'] = pkg; "
        "import motif_video.options as o; o.request_schema(); "
        "print(sorted(m for m in ('torch', 'diffusers', 'transformers', 'numpy', 'PIL') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_request_field_is_one_declared_option():
    from dataclasses import fields

    assert [f.name for f in fields(GenerateRequest)] == [o.name for o in GENERATE_OPTIONS]
    assert OPTIONS["height"].type is int and OPTIONS["image"].type is Path and OPTIONS["fp8"].type is bool
    assert OPTIONS["parallel"].choices == PARALLEL_CHOICES and OPTIONS["fps"].default is None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser


def test_argparse_and_mapping_give_the_same_request(tmp_path):
    argv = ["--prompt", "a cat", "--height", "64", "--guidance", "cfg", "--compile", "--fp8", "--image",
            str(tmp_path / "a.png"), "--no-keep-first-frame", "--cache-threshold", "0.05"]  # fmt: skip
    from_cli = request_from_args(_parser().parse_args(argv))
    from_json = parse_request(
        {"prompts": "a cat", "height": 64, "guidance": "cfg", "compile": "inductor", "fp8": True,
         "image": str(tmp_path / "a.png"), "keep_first_frame": False, "cache_threshold": 0.05}
    )  # fmt: skip
    assert from_cli == from_json
    assert from_cli.prompts == ("a cat",) and from_cli.width is None and from_cli.fps is None
    defaults = request_from_args(_parser().parse_args(["--prompt", "x"]))
    assert defaults == parse_request({"prompts": ["x"]})  # argparse defaults are the declared ones


@pytest.mark.parametrize(
    "values, message",
    [
        ({"prompts": "a", "colour": "red"}, r"unknown field\(s\) \['colour'\]; known: \['attention_backend'"),
        ({"prompts": "a", "guidance": "pag"}, r"guidance must be one of \['apg', 'cfg', 'none'\], got 'pag'"),
        ({"prompts": "a", "parallel": "pipeline"}, r"parallel must be one of \['auto', 'none', 'context'"),
        ({"prompts": "a", "steps": 0}, "steps must be >= 1, got 0"),
        ({"prompts": "a", "seed": -1}, "seed must be in \\[0, 9223372036854775807\\], got -1"),
        (
            {"prompts": "a", "seed": 2**64},
            "seed must be in \\[0, 9223372036854775807\\], got 18446744073709551616",
        ),
        (
            {"prompts": "a", "decoder_fit_steps": 10**400},
            r"decoder_fit_steps must be in \[0, 1000\]",
        ),  # no overflow
        ({"prompts": "a", "steps": 2.5}, "steps must be an integer, got 2.5"),
        ({"prompts": "a", "steps": True}, "steps must be an integer, got True"),
        ({"prompts": "a", "shift": 0}, "shift must be > 0, got 0.0"),
        ({"prompts": "a", "guidance_scale": "high"}, "guidance_scale must be a number"),
        ({"prompts": "a", "fp8": "yes"}, "fp8 must be true or false"),
        ({"prompts": "a", "width": 100}, "width must be a positive multiple of 16, got 100"),
        ({"prompts": "a", "num_frames": 8}, r"num_frames must be 4k\+1"),
        ({"prompts": "a", "keep_first_frame": True}, "keep_first_frame .* needs image"),
        ({"prompts": "a", "device": "tpu"}, "device must be auto, cpu, cuda or cuda:N, got 'tpu'"),
        ({"prompts": "a", "fp8": True, "fp8_compute": True}, "exclusive"),
        ({"prompts": "a", "parallel": "guidance", "guidance": "none"}, "needs guidance apg or cfg"),
        ({"prompts": ["a", " "]}, "prompt must be non-empty"),
        ({"prompts": []}, "prompts must be one prompt or a non-empty list"),
        ({}, "prompts must be one prompt"),
    ],
)
def test_bad_values_name_the_field_and_what_it_allows(values, message):
    with pytest.raises(ValueError, match=message):
        parse_request(values)


def test_schema_describes_every_field():
    schema = request_schema()
    props = schema["properties"]
    assert list(props) == list(OPTIONS) and schema["required"] == ["prompts"]
    assert props["guidance"]["enum"] == ["apg", "cfg", "none", None]
    assert props["steps"] == {
        "type": ["integer", "null"], "minimum": 1, "description": "denoising steps (default: the model's, else 50)"
    }  # fmt: skip
    assert props["shift"]["exclusiveMinimum"] == 0 and props["fps"]["type"] == ["integer", "null"]
    assert (props["seed"]["minimum"], props["seed"]["maximum"]) == (0, 2**63 - 1)
    assert props["output"]["default"] == "output.mp4"
    assert set(request_schema(["video"])["properties"]) == {
        o.name for o in GENERATE_OPTIONS if o.group == "video"
    }
    json.dumps(schema)  # plain JSON


def test_pipeline_kwargs_are_parameters_of_the_pipeline_calls():
    from motif_video import MotifVideoImageToVideoPipeline, MotifVideoPipeline

    request = parse_request({"prompts": ["a", "b"], "steps": 3, "keep_first_frame": True, "image": "x.png"})
    t2v = pipeline_kwargs(request, "b", image_to_video=False)
    i2v = pipeline_kwargs(request, "b", image_to_video=True)
    assert t2v["prompt"] == "b" and t2v["num_inference_steps"] == 3 and "keep_first_frame" not in t2v
    assert i2v["keep_first_frame"] is True
    assert t2v["repaint_first_frame"] is None  # left to the model folder
    repaint = parse_request({"prompts": "a", "repaint_first_frame": False})
    assert pipeline_kwargs(repaint, "a", image_to_video=False)["repaint_first_frame"] is False
    assert set(t2v) <= set(inspect.signature(MotifVideoPipeline.__call__).parameters)
    assert set(i2v) <= set(inspect.signature(MotifVideoImageToVideoPipeline.__call__).parameters)


def test_a_model_trained_at_one_size_warns_about_others(tmp_path):
    from motif_video.defaults import GenerationDefaults, model_defaults

    GenerationDefaults(trained_sizes=[[64, 64], [32, 48]]).write(tmp_path)
    model = model_defaults(tmp_path)
    assert model.size_warning(64, 64) is None and model.size_warning(32, 48) is None
    warning = model.size_warning(128, 96)
    assert (
        "trained at 64x64 or 48x32 only; at 96x128" in warning and "leave --height and --width out" in warning
    )
    assert D.RELEASED.size_warning(128, 96) is None  # the released model knows any size
    assert model_defaults("small").size_warning(128, 128) is not None  # the shipped small model says so
    assert model_defaults("small-4step").size_warning(128, 128) is not None  # and its student, from its base
    for bad in ([64, 64], [[64]], [[64, 0]], [[64.0, 64]]):
        with pytest.raises(ValueError, match="trained_sizes must be"):
            GenerationDefaults(trained_sizes=bad)


def test_defaults_resolve_call_then_model_then_released(tmp_path):
    from motif_video.defaults import GenerationDefaults, model_defaults
    from motif_video.pipelines.guidance import GuidanceConfig

    GenerationDefaults(height=32, num_inference_steps=4).write(tmp_path)
    model = model_defaults(tmp_path)
    assert model.resolve(height=None, width=None, num_inference_steps=8) == {
        "height": 32, "width": D.WIDTH, "num_inference_steps": 8
    }  # fmt: skip
    assert model_defaults(tmp_path / "missing") == D.RELEASED
    cfg = GuidanceConfig()
    assert (cfg.mode, cfg.scale, cfg.norm_threshold, cfg.momentum, cfg.eta, cfg.norm_dims) == (
        D.GUIDANCE, D.GUIDANCE_SCALE, D.APG_NORM_THRESHOLD, D.APG_MOMENTUM, D.APG_ETA, D.APG_NORM_DIMS
    )  # fmt: skip
    with pytest.raises(ValueError, match="no generation defaults for"):
        model.resolve(colour="red")
