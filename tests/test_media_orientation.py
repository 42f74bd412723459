"""Media are read as a player or viewer shows them: a phone's portrait clip (stored landscape with a display
rotation) and a phone's photo (stored sideways with an EXIF orientation) come out upright, in the pipelines'
conditions, the extension's clip, video-to-video and the trainer's data."""

from __future__ import annotations

import subprocess

import imageio_ffmpeg
import numpy as np
import PIL.Image
import pytest

from motif_video.generation import condition_inputs
from motif_video.options import parse_request
from motif_video.pipelines.export import (
    check_video_file,
    iter_mp4_frames,
    read_image,
    read_mp4_frames,
    write_mp4,
)
from motif_video.training.data import decode_frames, probe

H, W = 32, 48  # as stored: landscape


def stored_frames() -> np.ndarray:
    """5 frames, a red block in the top-left corner and a green one moving right along the bottom edge."""
    frames = np.zeros((5, H, W, 3), np.uint8)
    frames[:, :8, :8, 0] = 255
    for i in range(5):
        frames[i, -8:, 8 * i : 8 * i + 8, 1] = 255
    return frames


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """The same stored clip plain and with a display rotation of 90, -90 and 180 degrees (ffmpeg's
    -display_rotation, counterclockwise), the stream itself copied unchanged."""
    folder = tmp_path_factory.mktemp("rotated")
    plain = write_mp4(stored_frames(), folder / "plain.mp4", fps=8)
    out = {0: plain}
    for degrees in (90, -90, 180):
        path = folder / f"rot{degrees}.mp4"
        cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-y", "-display_rotation", str(degrees)]
        subprocess.run([*cmd, "-i", str(plain), "-c", "copy", str(path)], check=True)
        out[degrees] = path
    return out


@pytest.mark.parametrize("degrees", [90, -90, 180])
def test_a_rotated_clip_is_read_upright(clips, degrees):
    plain = read_mp4_frames(clips[0])
    upright = np.stack([np.rot90(f, degrees // 90) for f in plain])  # counterclockwise, as a player turns it
    assert np.array_equal(read_mp4_frames(clips[degrees]), upright)
    assert np.array_equal(np.stack(list(iter_mp4_frames(clips[degrees]))), upright)
    info = check_video_file(clips[degrees], "video")
    assert (info["height"], info["width"]) == upright.shape[1:3] and info["frames"] == 5
    # the trainer's reader: the size its buckets see and the frames it crops
    media = probe(clips[degrees])
    assert (media.height, media.width, media.frames) == (*upright.shape[1:3], 5)
    assert np.array_equal(decode_frames(clips[degrees], [0, 4]).numpy(), upright[[0, 4]])
    if (
        degrees == 90
    ):  # looked at: a quarter turn counterclockwise puts the top-left corner at the bottom-left
        ys, xs = np.nonzero(upright[0, ..., 0] > 128)
        assert ys.min() >= W - 8 and xs.max() < 8


def test_a_photo_with_an_exif_orientation_is_read_upright(tmp_path):
    stored = PIL.Image.fromarray(stored_frames()[0])
    exif = PIL.Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view", what a phone held upright writes
    path = tmp_path / "photo.png"
    stored.save(path, exif=exif)
    expected = np.asarray(stored.transpose(PIL.Image.Transpose.ROTATE_270))  # 90 degrees clockwise
    assert np.array_equal(np.asarray(read_image(path)), expected)
    # the command line's conditions (first frame, last frame, keyframes) and the trainer's image items
    request = parse_request(
        {"prompts": "a", "image": str(path), "last_image": str(path), "keyframe": [f"{path}@4"]}
    )
    inputs = condition_inputs(request)
    for image in (inputs["image"], inputs["last_image"], inputs["conditions"][0].image):
        assert np.array_equal(np.asarray(image), expected)
    media = probe(path)
    assert (media.height, media.width) == expected.shape[:2] == (W, H)
    assert np.array_equal(decode_frames(path, [0, 0]).numpy()[1], expected)
