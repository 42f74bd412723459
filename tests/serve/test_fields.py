"""The service's request fields: the shared option checks, the HTTP forms, the limits; the API loads no torch."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from motif_video.options import OPTIONS
from motif_video.serve.fields import (
    FIELDS,
    NOT_FIELDS,
    FieldError,
    Limits,
    from_form,
    schema,
    settings_from_fields,
)

from .conftest import PROMPT, env


def _settings(**fields):
    return settings_from_fields({"prompt": PROMPT, **fields}, model="small", limits=Limits())


def test_settings_are_complete_with_the_models_defaults_and_a_recorded_seed():
    settings = _settings()
    assert (settings["width"], settings["height"], settings["num_frames"], settings["steps"]) == (
        64,
        64,
        33,
        20,
    )
    assert settings["negative_prompt"] == "" and settings["image"] is False
    assert 0 <= settings["seed"] < 2**31
    assert _settings(seed=3, width=32)["seed"] == 3 and _settings(width=32)["width"] == 32
    assert set(settings) == {*FIELDS, "image"}


def test_fields_are_the_video_options_of_the_shared_declaration():
    assert set(FIELDS) == {("prompt" if o.name == "prompts" else o.name) for o in OPTIONS.values()
                           if o.group == "video" and o.name not in ("image", *NOT_FIELDS)}  # fmt: skip
    for name in ("model", "device", "dtype", "offload", "output", "compile", "parallel"):
        with pytest.raises(FieldError) as err:
            _settings(**{name: "x"})
        assert err.value.field == name and "unknown field" in str(err.value)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"width": 24}, "width"),
        ({"num_frames": 8}, "num_frames"),
        ({"steps": 0}, "steps"),
        ({"guidance": "x"}, "guidance"),
        ({"shift": -1.0}, "shift"),
        ({"keep_first_frame": False}, "keep_first_frame"),
        ({"prompt": ["a", "b"]}, "prompt"),
        ({"image": "/etc/passwd"}, "image"),
    ],
)
def test_a_bad_field_is_named(fields, field):
    with pytest.raises(FieldError) as err:
        _settings(**fields)
    assert err.value.field == field, str(err.value)


def test_limits_apply_to_requests_and_to_the_models_defaults():
    small = Limits(max_width=32, max_steps=10)
    with pytest.raises(FieldError, match="width must be at most 32") as err:
        settings_from_fields({"prompt": PROMPT, "width": 48}, model="small", limits=small)
    assert err.value.field == "width"
    with pytest.raises(
        FieldError, match="at most 32 on this server, got 64"
    ):  # the small model's default width
        settings_from_fields({"prompt": PROMPT}, model="small", limits=small)


def test_form_text_takes_the_options_types():
    assert from_form({"prompt": "p", "steps": "3", "guidance_scale": "2.5", "keep_first_frame": "true",
                      "seed": ""}) == {"prompt": "p", "steps": 3, "guidance_scale": 2.5,
                                       "keep_first_frame": True, "seed": None}  # fmt: skip
    with pytest.raises(FieldError) as err:
        from_form({"steps": "many"})
    assert err.value.field == "steps"


def test_an_upload_must_be_an_image():
    import PIL.Image

    buf = io.BytesIO()
    PIL.Image.new("RGB", (16, 16)).save(buf, format="PNG")
    fields = {"prompt": PROMPT}
    assert settings_from_fields(fields, model="small", limits=Limits(), image=buf.getvalue())["image"] is True
    with pytest.raises(FieldError) as err:
        settings_from_fields(fields, model="small", limits=Limits(), image=b"GIF89a not really")
    assert err.value.field == "image"


def test_request_schema_is_the_options_schema_in_http_form():
    body = schema(multipart=True)
    assert body["required"] == ["prompt"] and body["properties"]["prompt"]["type"] == "string"
    assert body["properties"]["image"]["format"] == "binary" and "image" not in schema(False)["properties"]
    assert body["properties"]["guidance"]["enum"][:3] == ["apg", "cfg", "none"]
    assert set(schema(False)["properties"]) == set(FIELDS)


def test_a_jobs_warnings_are_the_ones_generate_prints():
    from motif_video.serve.app import job_view, settings_warnings

    warnings = settings_warnings("small")
    assert warnings({"prompt": PROMPT, "height": 64, "width": 64}) == []
    assert (
        warnings({"prompt": "An orange circle moving up on a gray background", "height": 64, "width": 64})
        == []
    )
    words, size = warnings({"prompt": "a cat on a blue background", "height": 32, "width": 48})
    assert "does not know the word(s) 'cat'" in words and "no 'blue' background" in words
    assert "trained at 64x64 only; at 48x32" in size and "leave width and height empty" in size
    assert (
        settings_warnings("Motif-Technologies/Motif-Video-2B")({"prompt": "a cat", "height": 32, "width": 32})
        == []
    )
    assert warnings({}) == []  # a record without these settings shows none rather than failing
    job = {"id": "x", "state": "queued", "step": 0, "steps": 2, "settings": {}, "created_at": 0.0, "started_at": None,
           "finished_at": None, "step_seconds": None, "attempts": 0, "worker": None, "error": None}  # fmt: skip
    assert job_view(job)["warnings"] == [] and job_view(job, ["w"])["warnings"] == ["w"]


def test_the_api_process_imports_no_torch():
    code = (
        "import sys; import motif_video.serve.app as app, motif_video.serve.store; "
        "app.settings_warnings('small')({'prompt': 'a cat', 'height': 32, 'width': 32}); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env(), capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr
