"""MP4 writing: the same frames give the same bytes (any core count), the settings travel in the file, the mode
follows the umask."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest

from motif_video.pipelines.export import read_mp4_info, read_mp4_metadata, write_mp4

# 256x256: large enough for x264's automatic thread count (which follows the cores) to change the stream
_CLIP = """
import numpy as np
rng = np.random.default_rng(0)
base = rng.integers(0, 255, (32, 32, 3))
frames = np.stack([np.kron(np.roll(base, f, axis=1), np.ones((8, 8, 1))) for f in range(33)])
frames = np.clip(frames + rng.integers(-10, 10, frames.shape), 0, 255).astype(np.uint8)
"""


def _clip() -> np.ndarray:
    scope: dict = {}
    exec(_CLIP, scope)
    return scope["frames"]


def _digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_same_frames_give_the_same_bytes_on_every_run_and_core_count(tmp_path):
    frames = _clip()
    digests = {_digest(write_mp4(frames, tmp_path / f"{i}.mp4", metadata={"seed": 1})) for i in range(3)}
    assert len(digests) == 1
    # a fresh process pinned to one core (x264's automatic thread count would differ from this one's)
    one_core = (
        "import os\n"
        "os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n"
        f"{_CLIP}\n"
        "from motif_video.pipelines.export import write_mp4\n"
        f"write_mp4(frames, {str(tmp_path / 'pinned.mp4')!r}, metadata={{'seed': 1}})\n"
    )
    subprocess.run([sys.executable, "-c", one_core], check=True)
    assert _digest(tmp_path / "pinned.mp4") == digests.pop()
    assert read_mp4_info(tmp_path / "pinned.mp4") == {"frames": 33, "width": 256, "height": 256, "fps": 24.0}


def test_streamed_mp4_is_encoded_as_write_mp4_encodes(tmp_path):
    """`motif-video extend` streams its output (`extension.mp4_stream`); the same frames, fps and metadata give the
    bytes `write_mp4` gives, so the streamed video gets the same reproducible encoder settings."""
    from motif_video.extension import mp4_stream

    frames = _clip()
    write_mp4(frames, tmp_path / "whole.mp4", fps=24, metadata={"seed": 1})
    with mp4_stream(tmp_path / "streamed.mp4", 256, 256, 24, metadata={"seed": 1}) as write:
        write(frames[:10])
        write(frames[10:])
    assert _digest(tmp_path / "streamed.mp4") == _digest(tmp_path / "whole.mp4")


def test_same_bytes_from_processes_that_loaded_a_model(tmp_path):
    """A 32x32 clip of the small model (image-to-video of a flat red image, as the service tests make): with x264's
    lookahead thread it gave another stream in some of the processes that had loaded the model (a served video
    differed from `generate`'s); without it, the same bytes in each."""
    import PIL.Image
    import torch

    from motif_video import MotifVideoImageToVideoPipeline

    pipe = MotifVideoImageToVideoPipeline.from_pretrained("small")
    pipe.set_progress_bar_config(disable=True)
    frames = pipe(
        image=PIL.Image.new("RGB", (32, 32), (200, 30, 30)), prompt="a red circle moving left on a black background",
        height=32, width=32, num_frames=5, num_inference_steps=2, generator=torch.Generator().manual_seed(6),
        output_type="np",
    ).frames[0]  # fmt: skip
    np.save(tmp_path / "frames.npy", frames)
    script = (
        "import sys, numpy as np\n"
        "from motif_video import MotifVideoPipeline\n"
        "from motif_video.pipelines.export import write_mp4\n"
        "MotifVideoPipeline.from_pretrained('small')\n"
        f"write_mp4(np.load({str(tmp_path / 'frames.npy')!r}), sys.argv[1])\n"
    )
    paths = [tmp_path / f"p{i}.mp4" for i in range(5)]
    for path in paths:
        subprocess.run([sys.executable, "-c", script, str(path)], check=True, capture_output=True)
    assert len({_digest(p) for p in paths}) == 1


def test_metadata_round_trips(tmp_path):
    settings = {
        "prompt": "un cercle rouge ↑",
        "seed": 7,
        "shift": 3.0,
        "negative_prompt": None,
        "size": [64, 64],
    }
    path = write_mp4(np.zeros((5, 32, 32, 3), np.uint8), tmp_path / "a.mp4", metadata=settings)
    assert read_mp4_metadata(path) == settings
    assert read_mp4_metadata(write_mp4(np.zeros((5, 32, 32, 3), np.uint8), tmp_path / "b.mp4")) is None
    (tmp_path / "c.mp4").write_bytes(b"not a video")
    with pytest.raises(ValueError, match="c.mp4' is not a readable video"):
        read_mp4_metadata(tmp_path / "c.mp4")


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_mode_follows_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        path = write_mp4(np.zeros((1, 16, 16, 3), np.uint8), tmp_path / "clip.mp4")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]  # no temporary file left


def test_frame_strip_places_every_nth_frame_side_by_side(tmp_path):
    from motif_video.pipelines.export import frame_strip, read_mp4_frames, write_frame_strip

    frames = np.zeros((9, 8, 10, 3), np.uint8)
    frames[:, :, :, 0] = np.arange(9)[:, None, None] * 20  # frame i is red level 20 i
    strip = frame_strip(frames, every=4, scale=2, gap=1)
    assert strip.shape == (2 * 10, 2 * 3 * 12, 3)  # frames 0, 4, 8 of (8 + 2) x (10 + 2), doubled
    assert [strip[10, 2 * (12 * k + 6), 0] for k in range(3)] == [0, 80, 160]
    assert strip[0, 0].tolist() == [255, 255, 255]
    path = write_mp4(frames, tmp_path / "clip.mp4")
    assert read_mp4_frames(path).shape == (9, 8, 10, 3)
    png = write_frame_strip(path, tmp_path / "strip.png", every=4, scale=1)
    assert png.is_file()


def test_frames_with_non_finite_values_are_an_error_not_a_black_video(tmp_path):
    """NaN frames were cast to 0: a black video written with exit 0."""
    frames = np.full((4, 16, 16, 3), 0.5, np.float32)
    frames[2:, 3, 3, 0] = np.nan
    with pytest.raises(
        ValueError, match=r"model produced non-finite values .* in 2 of 4 frames \(first: frame 2\)"
    ):
        write_mp4(frames, tmp_path / "nan.mp4")
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads in /proc")
def test_reading_frames_leaves_no_threads_behind(tmp_path):
    """A frame's conversion to RGB runs on the calling thread. PyAV's default starts swscale slice threads that
    stay alive with the frame, and a training loader's worker forked while they exist can wait on them forever."""
    import av

    from motif_video.pipelines.export import upright_frame

    rng = np.random.default_rng(0)
    path = tmp_path / "clip.mp4"
    write_mp4(list(rng.integers(0, 255, (3, 256, 256, 3), dtype=np.uint8)), path, fps=8)
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
        threads = len(os.listdir("/proc/self/task"))
        arrays = [upright_frame(frame) for frame in frames]
        assert len(os.listdir("/proc/self/task")) == threads
    assert [a.shape for a in arrays] == [(256, 256, 3)] * 3
