"""The input video of video-to-video gives the request its frame count, size and frame rate where the request
leaves them; a size the model cannot take is kept in shape at the model's pixel count, not stretched."""

from __future__ import annotations

import numpy as np
import pytest

from motif_video.defaults import RELEASED as RELEASED_DEFAULTS
from motif_video.defaults import GenerationDefaults
from motif_video.input_media import fitted_size, same_shape, size_from_video
from motif_video.options import parse_request
from motif_video.pipelines.export import write_mp4

RELEASED = "Motif-Technologies/Motif-Video-2B"  # no stored size list: any size (736x1280 by default)


@pytest.mark.parametrize("width, height", [(1080, 1920), (1920, 1080), (720, 720), (1000, 562), (30, 2000)])
def test_same_shape_keeps_the_aspect_ratio_and_the_pixel_count(width, height):
    w, h = same_shape(width, height, 736 * 1280)
    assert w % 16 == 0 and h % 16 == 0 and w >= 16 and h >= 16
    if min(width, height) >= 500:
        assert abs(w / h - width / height) <= 16.1 / min(w, h)  # within one 16-pixel step of the shape
        assert abs(w * h / (736 * 1280) - 1) < 0.05


def _clip(tmp_path, width, height, fps=24):
    return write_mp4(np.zeros((9, height, width, 3), np.uint8), tmp_path / f"{width}x{height}.mp4", fps=fps)


def test_a_portrait_clip_is_kept_portrait(tmp_path):
    """Before: a 1080x1920-like clip (not multiples of 16) took the model's 1280x736 and was squeezed into it."""
    clip = _clip(tmp_path, 54, 96)  # 9:16, 54 not a multiple of 16
    request = size_from_video(parse_request({"prompts": "a", "video": str(clip), "model": RELEASED}))
    assert (request.width, request.height) == same_shape(54, 96, 736 * 1280) == (720, 1296)
    assert (request.num_frames, request.fps, request.strength) == (9, 24, 0.7)
    own = size_from_video(
        parse_request({"prompts": "a", "video": str(_clip(tmp_path, 48, 96)), "model": RELEASED})
    )
    assert (own.width, own.height) == (48, 96)  # multiples of 16: the clip's own size, as before
    asked = parse_request({"prompts": "a", "video": str(clip), "model": RELEASED, "width": 64, "height": 64})
    assert (size_from_video(asked).width, size_from_video(asked).height) == (64, 64)


def test_a_model_trained_at_one_size_keeps_it(tmp_path):
    """The small model knows 64x64 only: another shape would be off what it can draw, so the clip is stretched."""
    request = size_from_video(
        parse_request({"prompts": "a", "video": str(_clip(tmp_path, 54, 96)), "model": "small"})
    )
    assert (request.width, request.height) == (64, 64)  # the model's own size
    # so is a clip whose sides are multiples of 16 (before: kept at 48x96, and warned to leave the size out)
    for width, height in ((48, 96), (1600, 96)):
        clip = str(_clip(tmp_path, width, height))
        request = size_from_video(parse_request({"prompts": "a", "video": clip, "model": "small"}))
        assert (request.width, request.height) == (64, 64)


def test_fitted_size_keeps_the_models_size_for_its_own_shape_and_turns_for_others():
    """Within 5 % of the model's aspect ratio (a 16:9 photo or clip) the model's own 1280x736, as before; a portrait
    or square one keeps its shape at the model's pixel count."""
    assert fitted_size(1920, 1080, RELEASED_DEFAULTS) == (1280, 736)
    assert fitted_size(1080, 1920, RELEASED_DEFAULTS) == (720, 1296)
    assert fitted_size(1000, 1000, RELEASED_DEFAULTS) == (976, 976)
    assert fitted_size(1080, 1920, GenerationDefaults(height=64, width=64, trained_sizes=[[64, 64]])) == (
        64,
        64,
    )


def test_image_to_video_keeps_a_portrait_photos_shape(tmp_path):
    """`generate --image` without a size: a portrait phone photo (stored landscape, EXIF orientation 6) gives a
    portrait video (before: the model's landscape 1280x736, the photo squeezed into it); the service the same."""
    import io

    import PIL.Image

    from motif_video.generation import plan_generation
    from motif_video.serve.fields import Limits, Uploads, settings_from_fields

    photo = tmp_path / "photo.jpg"
    exif = PIL.Image.Exif()
    exif[0x0112] = 6
    PIL.Image.new("RGB", (1920, 1080)).save(photo, exif=exif)  # shown 1080 wide, 1920 high
    plan = plan_generation(
        parse_request(
            {"prompts": "a", "image": str(photo), "model": RELEASED, "output": str(tmp_path / "o.mp4")}
        )
    )
    assert (plan.request.width, plan.request.height) == (720, 1296)
    keyframe = plan_generation(
        parse_request(
            {"prompts": "a", "keyframe": [f"{photo}@8"], "model": RELEASED, "output": str(tmp_path / "k.mp4")}
        )
    )
    assert (keyframe.request.width, keyframe.request.height) == (720, 1296)
    asked = plan_generation(
        parse_request(
            {
                "prompts": "a",
                "image": str(photo),
                "model": RELEASED,
                "width": 640,
                "height": 640,
                "output": str(tmp_path / "a.mp4"),
            }
        )
    )
    assert (asked.request.width, asked.request.height) == (640, 640)
    data = io.BytesIO()
    PIL.Image.new("RGB", (1920, 1080)).save(data, format="JPEG", exif=exif)
    limits = Limits(max_width=2000, max_height=2000)
    settings = settings_from_fields(
        {"prompt": "a"}, model=RELEASED, limits=limits, uploads=Uploads(image=data.getvalue())
    )
    assert (settings["width"], settings["height"]) == (720, 1296)
    # a server's default limits (1280 a side): the shape scaled down to fit them, not refused (before: 422 for
    # height 1296, a size the request never named)
    upload = Uploads(image=data.getvalue())
    settings = settings_from_fields({"prompt": "a"}, model=RELEASED, limits=Limits(), uploads=upload)
    assert (settings["width"], settings["height"]) == (704, 1280)
    with pytest.raises(ValueError, match="height must be at most 1280"):  # a size asked for is still checked
        settings_from_fields({"prompt": "a", "height": 1296}, model=RELEASED, limits=Limits(), uploads=upload)


def test_a_long_video_gives_the_models_length_at_most(tmp_path):
    """A clip longer than the model's own clips gives its start (before: all of it, 4k + 1: a 30 s clip asked the
    2B model for 717 frames); --num-frames takes more."""
    long = write_mp4(np.zeros((45, 64, 64, 3), np.uint8), tmp_path / "long.mp4", fps=24)
    request = size_from_video(parse_request({"prompts": "a", "video": str(long), "model": "small"}))
    assert request.num_frames == 33  # the small model's length
    more = size_from_video(
        parse_request({"prompts": "a", "video": str(long), "model": "small", "num_frames": 41})
    )
    assert more.num_frames == 41
    released = size_from_video(parse_request({"prompts": "a", "video": str(long), "model": RELEASED}))
    assert released.num_frames == 45  # shorter than 121: all of it, cut to 4k + 1


def test_media_too_long_and_thin_do_not_choose_the_size(tmp_path, capsys):
    """A 4000x100 panorama (or a 1600x96 clip) would ask the model for a 6080x144 (1600x96) video: refused naming
    the ratio and the way out (name the size); with a size named, the media are resized to it as always."""
    import PIL.Image

    from motif_video import cli
    from motif_video.generation import plan_generation

    assert fitted_size(400, 100, RELEASED_DEFAULTS) == (1936, 480)  # 4:1 is still taken
    strip = tmp_path / "strip.png"
    PIL.Image.new("RGB", (4000, 100)).save(strip)
    out = tmp_path / "o.mp4"
    args = ["generate", "--prompt", "a", "--image", str(strip), "--model", RELEASED, "--output", str(out)]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert "media of 4000x100 (aspect 40.0:1) cannot choose the video's size" in err and "up to 4:1" in err
    assert not out.exists()
    named = {"prompts": "a", "image": str(strip), "model": RELEASED, "width": 1280, "height": 320}
    planned = plan_generation(parse_request({**named, "output": str(out)})).request
    assert (planned.width, planned.height) == (1280, 320)
    thin = parse_request({"prompts": "a", "video": str(_clip(tmp_path, 1600, 96)), "model": RELEASED})
    with pytest.raises(ValueError, match=r"media of 1600x96 \(aspect 16.7:1\)"):
        size_from_video(thin)


def test_video_to_video_decodes_only_the_frames_it_uses(tmp_path):
    """A long input video is read up to the request's frame count (before: every frame was decoded and held, 5.5 GB
    for a 2970-frame clip of which 33 were used)."""
    from motif_video.generation import condition_inputs, plan_generation

    long = write_mp4(np.zeros((61, 32, 32, 3), np.uint8), tmp_path / "long.mp4", fps=24)
    request = {"prompts": "a", "video": str(long), "model": "small", "output": str(tmp_path / "o.mp4")}
    plan = plan_generation(parse_request(request))
    assert plan.request.num_frames == 33
    assert condition_inputs(plan.request)["video"].shape == (33, 32, 32, 3)


def test_a_clip_above_240_fps_is_refused_by_video_to_video_as_by_extend(tmp_path):
    """One rule for the rate a video made from a clip is written at (its own unless another is given): before,
    video-to-video wrote a 1000 fps clip at 240 fps, its motion 4x slower, where `extend` refused it."""
    from motif_video.extension import clip_extension
    from motif_video.pipelines.export import read_mp4_info

    clip = _clip(tmp_path, 64, 64, fps=1000)
    values = {"prompts": "a", "video": str(clip), "model": "small"}
    expected = rf"video '{clip}' is at 1000 fps, the rate a video made from it is written at, which must be in \(0, 240\]"
    with pytest.raises(
        ValueError, match=expected + r": re-encode it at a lower rate or give the output's rate"
    ):
        size_from_video(parse_request(values))
    with pytest.raises(ValueError, match=expected + ": re-encode it at a lower rate$"):
        clip_extension(read_mp4_info(clip), 1.0, 33, 9, 0, name=f"video {str(clip)!r}")
    assert size_from_video(parse_request({**values, "fps": 24})).fps == 24  # another rate given: taken
    assert (
        size_from_video(parse_request({**values, "video": str(_clip(tmp_path, 32, 32, fps=240))})).fps == 240
    )
