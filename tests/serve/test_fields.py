"""The service's request fields: the shared option checks, the HTTP forms, the limits; the API loads no torch."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from motif_video.options import OPTIONS
from motif_video.serve.fields import (
    EXTEND_FIELDS,
    FIELDS,
    KEYFRAME_FRAMES,
    UPLOADS,
    FieldError,
    Limits,
    Uploads,
    from_form,
    schema,
    settings_from_fields,
)
from tests.conftest import corrupt_pixels_png

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
    assert settings["negative_prompt"] == ""
    assert (settings["image"], settings["last_image"], settings["keyframe"], settings["video"]) == (
        False,
        False,
        [],
        False,
    )
    assert 0 <= settings["seed"] < 2**31
    assert _settings(seed=3, width=32)["seed"] == 3 and _settings(width=32)["width"] == 32
    assert set(settings) == {*FIELDS, *UPLOADS} - {KEYFRAME_FRAMES, *EXTEND_FIELDS}


def test_fields_are_the_video_options_of_the_shared_declaration():
    assert set(FIELDS) == {KEYFRAME_FRAMES, *EXTEND_FIELDS} | {("prompt" if o.name == "prompts" else o.name) for o in OPTIONS.values()
                                             if o.group == "video" and o.name not in UPLOADS}  # fmt: skip
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
        ({"condition_guidance": 3.0}, "condition_guidance"),  # needs a frame condition
        ({"prompt": ["a", "b"]}, "prompt"),
        ({"image": "/etc/passwd"}, "image"),  # media are uploads, never paths
        ({"video": "/etc/passwd"}, "video"),
        ({"strength": 0.5}, "strength"),  # needs an input video
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
    assert from_form({"keyframe_frames": "16,-1"}) == {"keyframe_frames": [16, -1]}
    assert from_form({"extend_seconds": "2.5", "overlap": "5"}) == {"extend_seconds": 2.5, "overlap": 5}
    for name, text in (("steps", "many"), ("keyframe_frames", "16;-1"), ("overlap", "9.5")):
        with pytest.raises(FieldError) as err:
            from_form({name: text})
        assert err.value.field == name


def _png(size=(16, 16)) -> bytes:
    import PIL.Image

    buf = io.BytesIO()
    PIL.Image.new("RGB", size).save(buf, format="PNG")
    return buf.getvalue()


def _mp4(tmp_path, frames: int, size=(32, 48), fps: int = 24) -> bytes:
    import numpy as np

    from motif_video.pipelines.export import write_mp4

    video = np.zeros((frames, size[0], size[1], 3), np.uint8)
    video[:, :, :, 0] = np.linspace(0, 255, frames, dtype=np.uint8)[:, None, None]
    return write_mp4(video, tmp_path / "in.mp4", fps=fps).read_bytes()


def _with(uploads: Uploads, **fields):
    return settings_from_fields({"prompt": PROMPT, **fields}, model="small", limits=Limits(), uploads=uploads)


def test_uploads_must_be_images_or_a_video():
    assert _with(Uploads(image=_png()))["image"] is True
    for role in ("image", "last_image"):
        with pytest.raises(FieldError) as err:
            _with(Uploads(**{role: b"GIF89a not really"}))
        assert err.value.field == role and "not a readable image" in str(err.value)
        assert "object at 0x" not in str(err.value)  # no in-memory buffer's repr for the client
    with pytest.raises(FieldError) as err:
        _with(Uploads(keyframes=(b"nope",)), keyframe_frames=[8])
    assert err.value.field == "keyframe"
    # sound structure, corrupt pixels: refused before it is queued (before: queued, then failed in the worker)
    with pytest.raises(FieldError, match="image is not a readable image") as err:
        _with(Uploads(image=corrupt_pixels_png()))
    assert err.value.field == "image"
    with pytest.raises(FieldError) as err:
        _with(Uploads(video=b"\x00\x00\x00 not a video"))
    assert err.value.field == "video" and "the video upload is not a readable video" in str(err.value)
    assert "/tmp" not in str(err.value)  # the server's temporary file is not shown
    assert "Errno" not in str(err.value)  # nor PyAV's error number
    with pytest.raises(FieldError) as err:
        _with(Uploads(video=_png()))
    assert err.value.field == "video" and "is an image (png_pipe), not a video" in str(err.value)
    with pytest.raises(FieldError) as err:
        _with(Uploads(video=_png()), extend_seconds=2)
    assert err.value.field == "video" and "not a video" in str(err.value)
    with pytest.raises(FieldError) as err:
        _with(Uploads(video=_png()), extend_seconds=-3)
    assert err.value.field == "extend_seconds" and "extend_seconds must be a finite number > 0" in str(
        err.value
    )


def test_last_image_and_keyframes_are_placed_and_recorded():
    settings = _with(
        Uploads(image=_png(), last_image=_png(), keyframes=(_png(), _png())), keyframe_frames=[8, 16]
    )
    assert (settings["image"], settings["last_image"], settings["keyframe"]) == (True, True, [8, 16])
    # one frame per keyframe part, in order
    for frames in ([], [8], [8, 16, 24]):
        with pytest.raises(FieldError) as err:
            _with(Uploads(keyframes=(_png(), _png())), keyframe_frames=frames)
        assert err.value.field == KEYFRAME_FRAMES and "one frame per keyframe part" in str(err.value)
    # two conditions in one group of 4 frames, or past the clip: refused before anything is queued
    with pytest.raises(FieldError, match="both condition latent frame 8") as err:
        _with(Uploads(last_image=_png(), keyframes=(_png(),)), keyframe_frames=[30])
    with pytest.raises(FieldError, match="keyframe") as err:
        _with(Uploads(keyframes=(_png(),)), keyframe_frames=[33])
    assert err.value.field == "keyframe"


def test_an_input_video_gives_the_frames_size_and_strength(tmp_path):
    data = _mp4(tmp_path, 11)
    settings = _with(Uploads(video=data))
    assert settings["video"] is True and settings["strength"] == 0.7
    # cut to 4k + 1; the small model's own size, as for an image (it knows 64x64 only)
    assert (settings["num_frames"], settings["height"], settings["width"]) == (9, 64, 64)
    assert (
        settings["fps"] == 24 and _settings()["fps"] == 16
    )  # the video's; without one, the small model's rate
    filmed_at_30 = _mp4(tmp_path, 11, fps=30)
    assert _with(Uploads(video=filmed_at_30))["fps"] == 30  # its motion keeps its pace (before: played at 24)
    assert _with(Uploads(video=filmed_at_30), fps=12)["fps"] == 12
    assert _with(Uploads(video=data), strength=0.4, num_frames=5)["num_frames"] == 5
    with pytest.raises(FieldError, match="more than the video upload has") as err:
        _with(Uploads(video=data), num_frames=13)
    assert err.value.field == "num_frames"
    with pytest.raises(FieldError, match="num_frames must be at most 5 on this server") as err:
        settings_from_fields(
            {"prompt": PROMPT}, model="small", limits=Limits(max_frames=5), uploads=Uploads(video=data)
        )


def test_an_extension_takes_extends_settings_only(tmp_path):
    """Settings `extend` has no flag for were taken and ignored (an fps, a decoder fit); now 422 naming them. A clip
    at a frame rate no MP4 is written at is refused: an extension goes on at it (1000 fps: 60 s, 60000 frames)."""
    data = _mp4(tmp_path, 11, size=(32, 32))
    for name, value in (("fps", 12), ("decoder_fit_steps", 0), ("repaint_first_frame", True)):
        with pytest.raises(FieldError, match=f"{name} is not an extension setting") as err:
            _with(Uploads(video=data), extend_seconds=1.0, **{name: value})
        assert err.value.field == name
    assert _with(Uploads(video=data), extend_seconds=1.0, seed=3, steps=2, guidance_scale=1.0)["steps"] == 2
    with pytest.raises(FieldError, match=r"the clip is at 1000 fps, .* must be in \(0, 240\]") as err:
        _with(Uploads(video=_mp4(tmp_path, 11, size=(32, 32), fps=1000)), extend_seconds=1.0)
    assert err.value.field == "video"


def test_an_extension_is_planned_on_the_uploaded_clip(tmp_path):
    data = _mp4(tmp_path, 11, size=(32, 32))  # 11 frames at 24 fps
    settings = _with(Uploads(video=data), extend_seconds=1.0, overlap=5, crossfade=0, num_frames=9)
    # 24 frames in all: the clip's 11, then windows of 9 adding 4 each (9 - 5 conditioned): 4 windows
    assert (settings["extend_seconds"], settings["total_frames"], settings["windows"]) == (1.0, 24, 4)
    # the clip stretched to the small model's one size, as `extend` does
    assert (settings["num_frames"], settings["width"], settings["height"], settings["fps"]) == (
        9,
        64,
        64,
        24.0,
    )
    assert settings["video"] is True and settings["strength"] is None
    assert _with(Uploads(video=data), extend_seconds=1.0)["num_frames"] == 33  # the model's window
    # no overlap asked for: the window's default, recorded, so the same settings make the same video again
    assert _with(Uploads(video=data), extend_seconds=1.0)["overlap"] == 9
    assert _with(Uploads(video=data), extend_seconds=1.0, num_frames=9)["overlap"] == 5
    for fields, uploads, field in (
        ({"overlap": 5}, Uploads(video=data), "overlap"),  # without extend_seconds
        ({"extend_seconds": 1.0}, Uploads(), "extend_seconds"),  # no clip
        ({"extend_seconds": 1.0}, Uploads(video=data, image=_png()), "image"),
        ({"extend_seconds": 1.0, "strength": 0.5}, Uploads(video=data), "strength"),
        ({"extend_seconds": 0.3}, Uploads(video=data), "extend_seconds"),  # 7 frames: shorter than the clip
        ({"extend_seconds": 61.0}, Uploads(video=data), "extend_seconds"),  # over the server's limit
        ({"extend_seconds": "long"}, Uploads(video=data), "extend_seconds"),
        ({"extend_seconds": 1.0, "overlap": 4}, Uploads(video=data), "overlap"),  # not 4m+1
        ({"extend_seconds": 1.0, "overlap": 13}, Uploads(video=data), "video"),  # the clip has 11 frames
        ({"extend_seconds": 1.0, "crossfade": -1}, Uploads(video=data), "crossfade"),
        ({"extend_seconds": 1.0, "width": 40}, Uploads(video=data), "width"),
        ({"extend_seconds": 1.0}, Uploads(video=b"not a video"), "video"),
    ):
        with pytest.raises(FieldError) as err:
            _with(uploads, **fields)
        assert err.value.field == field, (fields, str(err.value))
    assert "/tmp" not in str(err.value) and "the video upload is not a readable video" in str(err.value)


def test_request_schema_is_the_options_schema_in_http_form():
    body = schema(multipart=True)
    assert body["required"] == ["prompt"] and body["properties"]["prompt"]["type"] == "string"
    for name in ("image", "last_image", "video"):
        assert body["properties"][name]["format"] == "binary" and name not in schema(False)["properties"]
    assert body["properties"]["keyframe"]["items"]["format"] == "binary"
    assert body["properties"]["guidance"]["enum"][:3] == ["apg", "cfg", "none"]
    assert set(schema(False)["properties"]) == set(FIELDS) - {KEYFRAME_FRAMES, *EXTEND_FIELDS}
    assert set(body["properties"]) == {*FIELDS, *UPLOADS}
    # what this server takes: seeds up to 2**31 - 1 (generate's schema goes to 2**63 - 1), sides in multiples of 16
    assert body["properties"]["seed"]["maximum"] == 2**31 - 1
    assert body["properties"]["width"]["multipleOf"] == 16 == body["properties"]["height"]["multipleOf"]


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


def test_the_api_speaks_of_fields_not_of_the_command_lines_flags():
    """Messages and descriptions are written once for `generate`; the API gives them with its own names."""
    for multipart in (False, True):
        for name, prop in schema(multipart)["properties"].items():
            assert "--" not in prop.get("description", ""), (name, prop["description"])
    assert schema(True)["properties"]["strength"]["description"].endswith("(default: 0.7 with video)")
    with pytest.raises(FieldError) as err:
        _with(Uploads(), strength=0.5)
    assert str(err.value) == "strength needs video", str(err.value)
    with pytest.raises(FieldError) as err:
        _with(Uploads(), prompt="  ")
    assert "--" not in str(err.value) and err.value.field == "prompt", str(err.value)


def test_a_finished_jobs_settings_name_no_mode_a_folders_own_guider_ran(tmp_path):
    """Where the folder's diffusers guider ran its own protocol (APG guiding the first half of the steps), no request
    mode describes it: the finished job's settings fill the scale and shift only, so that submitting them again makes
    the same video (before: guidance "apg" was filled in, and the same settings made another video)."""
    import json

    import torch

    from motif_video import MotifVideoPipeline
    from motif_video.serve.worker import filled_settings
    from motif_video.testing import write_tiny_pipeline_folder

    folder = write_tiny_pipeline_folder(tmp_path / "model")
    config = folder / "guider" / "guider_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "start": 0.0, "stop": 0.5}))
    pipe = MotifVideoPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    call = dict(height=32, width=32, num_frames=5, num_inference_steps=2, output_type="latent")
    first = pipe("a red ball", generator=torch.Generator().manual_seed(0), **call).frames
    settings = {"prompt": "a red ball", "guidance": None, "guidance_scale": None, "shift": None}
    filled = filled_settings(settings, pipe.last_run)
    assert filled["guidance"] is None and filled["guidance_scale"] == 8.0 and filled["shift"] == 15.0
    again = pipe("a red ball", generator=torch.Generator().manual_seed(0), guidance_scale=filled["guidance_scale"],
                 shift=filled["shift"], **call).frames  # fmt: skip
    torch.testing.assert_close(again, first, atol=0, rtol=0)
