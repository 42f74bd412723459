"""Conditions beyond the first frame in the I2V pipeline: placement in the 17 channels, encoding on the VAE's
grouping, strength, blur and keep_first_frame on every conditioned frame, refusals before any model runs, and
video-to-video (SDEdit)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pipeline_test_utils import PROMPT, SIZE, quiet
from test_image_to_video import make_image

from motif_video import MotifVideoImageToVideoPipeline, MotifVideoPipeline
from motif_video.condition_layout import place
from motif_video.pipelines.conditions import VideoCondition
from motif_video.pipelines.latents import FIRST_FRAME_MEAN, FIRST_FRAME_STD, normalize_latents

H, W, F = SIZE["height"], SIZE["width"], SIZE["num_frames"]  # 9 frames: latent frames 0 | 1-4 | 5-8


@pytest.fixture(scope="module")
def pipe(strong_folder):
    return quiet(MotifVideoImageToVideoPipeline, strong_folder)


def _clip(n, seed=0):
    return torch.rand((n, 3, H, W), generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _hidden(p, steps=1, **kw):
    """The transformer's inputs at each step (and the call's output latents)."""
    seen = []
    hook = p.transformer.register_forward_hook(
        lambda m, a, k, o: seen.append(k["hidden_states"].clone()), with_kwargs=True
    )
    kw = {**SIZE, "num_inference_steps": steps, "generator": torch.Generator().manual_seed(0), **kw}
    kw.setdefault("first_frame_latent", "mode")
    try:
        out = p(prompt=PROMPT, output_type="latent", guidance="none", **kw).frames
    finally:
        hook.remove()
    return seen, out


def _encode(p, frames):
    z = p.vae.encode(frames.transpose(0, 1)[None]).latent_dist.mode()
    return normalize_latents(z, p.vae.config.latents_mean, p.vae.config.latents_std)


def test_last_image_lands_on_the_last_latent_frame(pipe):
    image = make_image(seed=1)
    seen, _ = _hidden(pipe, last_image=image)
    hidden = seen[0]
    assert hidden[:, 32].flatten(2).amax(-1).tolist() == [[0.0, 0.0, 1.0]]  # mask on latent frame 2 only
    assert hidden[:, 16:32, :2].eq(0).all()
    still = pipe.video_processor.preprocess(image, height=H, width=W)  # [1, 3, H, W]
    expected = _encode(pipe, still.repeat(5, 1, 1, 1))[:, :, 1:]  # a still group after itself as context
    torch.testing.assert_close(hidden[:, 16:32, 2:], expected, atol=1e-5, rtol=0)


def test_vae_first_frame_pair_normalises_the_first_latent_of_each_encode(strong_folder):
    p = quiet(MotifVideoImageToVideoPipeline, strong_folder)
    p.vae.register_to_config(**{FIRST_FRAME_MEAN: [0.3] * 16, FIRST_FRAME_STD: [2.0] * 16})
    first, last = make_image(), make_image(seed=1)
    hidden = _hidden(p, image=first, last_image=last)[0][0]
    z = p.vae.encode(p.video_processor.preprocess(first, height=H, width=W)[:, :, None]).latent_dist.mode()
    torch.testing.assert_close(hidden[:, 16:32, :1], (z - 0.3) / 2.0, atol=1e-5, rtol=0)
    # the last image is encoded after a context latent: it keeps latents_mean / latents_std
    still = p.video_processor.preprocess(last, height=H, width=W)
    expected = _encode(p, still.repeat(5, 1, 1, 1))[:, :, 1:]
    torch.testing.assert_close(hidden[:, 16:32, 2:], expected, atol=1e-5, rtol=0)


def test_first_and_last_and_strength(pipe):
    seen, _ = _hidden(pipe, image=make_image(), last_image=make_image(seed=1))
    assert seen[0][:, 32].flatten(2).amax(-1).tolist() == [[1.0, 0.0, 1.0]]
    key = VideoCondition(image=make_image(seed=2), frame_index=3, strength=0.5)
    seen, _ = _hidden(pipe, image=make_image(), conditions=[key])
    mask = seen[0][:, 32]
    assert mask[:, 0].eq(1).all() and mask[:, 1].eq(0.5).all() and mask[:, 2].eq(0).all()
    # first frame with the call's `image` is unchanged by the other conditions
    alone, _ = _hidden(pipe, image=make_image())
    torch.testing.assert_close(seen[0][:, 16:32, :1], alone[0][:, 16:32, :1], atol=0, rtol=0)


def test_clip_straddling_a_group_is_encoded_on_the_videos_grouping(pipe):
    clip = _clip(3)
    seen, _ = _hidden(
        pipe, conditions=[VideoCondition(video=clip, frame_index=3)]
    )  # pixels 3-5: latents 1, 2
    hidden = seen[0]
    assert hidden[:, 32].flatten(2).amax(-1).tolist() == [[0.0, 1.0, 1.0]]
    p = place("clip", 3, 3, F)
    assert p.encode == (0, 0, 0, 0, 1, 2, 2, 2, 2)
    expected = _encode(pipe, clip[list(p.encode)])[:, :, 1:]
    torch.testing.assert_close(hidden[:, 16:32, 1:], expected, atol=1e-5, rtol=0)
    # a clip prefix is the video's own causal encoding of its first frames
    prefix = _clip(5, seed=1)
    seen, _ = _hidden(pipe, conditions=[VideoCondition(video=prefix)])
    torch.testing.assert_close(seen[0][:, 16:32, :2], _encode(pipe, prefix), atol=1e-5, rtol=0)
    assert seen[0][:, 32].flatten(2).amax(-1).tolist() == [[1.0, 1.0, 0.0]]


def test_diffusers_ltx_conditions_are_taken(pipe):
    """diffusers' `LTXVideoCondition` (the same fields) conditions as ours does, in a list or alone (before:
    "conditions[0] must be a VideoCondition")."""
    from diffusers.pipelines.ltx.pipeline_ltx_condition import LTXVideoCondition

    key, clip = make_image(seed=2), [make_image(seed=s) for s in range(3, 8)]
    ours = [VideoCondition(video=clip), VideoCondition(image=key, frame_index=6, strength=0.5)]
    theirs = [LTXVideoCondition(video=clip), LTXVideoCondition(image=key, frame_index=6, strength=0.5)]
    torch.testing.assert_close(_hidden(pipe, conditions=theirs)[0][0], _hidden(pipe, conditions=ours)[0][0])
    alone = _hidden(pipe, image=make_image(), conditions=theirs[1])[0][0]
    torch.testing.assert_close(alone, _hidden(pipe, image=make_image(), conditions=[ours[1]])[0][0])


def test_file_paths_are_read_as_the_command_reads_them(pipe, strong_folder, tmp_path):
    """An image given as a path is read upright (its EXIF orientation) and a video as its frames, as the command
    line reads them (before: diffusers' "Input is in incorrect format")."""
    import PIL.Image

    from motif_video.pipelines.export import read_image, read_mp4_frames, write_mp4

    photo, exif = make_image(width=48, height=80), PIL.Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view": read upright, it is 80x48 as the other images
    photo.save(tmp_path / "photo.png", exif=exif)
    upright = read_image(tmp_path / "photo.png")
    clip = write_mp4(
        np.stack([np.asarray(make_image(seed=s)) for s in range(5)]), tmp_path / "clip.mp4", fps=8
    )
    frames = read_mp4_frames(clip)
    as_paths = dict(image=str(tmp_path / "photo.png"), last_image=tmp_path / "photo.png")
    as_images = dict(image=upright, last_image=upright)
    torch.testing.assert_close(
        _hidden(pipe, **as_paths)[0][0], _hidden(pipe, **as_images)[0][0], atol=0, rtol=0
    )
    for video in (str(clip), [str(tmp_path / "photo.png")] * 5):
        read = frames if isinstance(video, str) else [upright] * 5
        seen = _hidden(pipe, conditions=[VideoCondition(video=video, frame_index=3)])[0][0]
        expected = _hidden(pipe, conditions=[VideoCondition(video=read, frame_index=3)])[0][0]
        torch.testing.assert_close(seen, expected, atol=0, rtol=0)
    t2v = quiet(MotifVideoPipeline, strong_folder)
    common = dict(prompt=PROMPT, strength=0.5, num_inference_steps=1, guidance="none", output_type="latent")
    start = t2v(video=frames, generator=torch.Generator().manual_seed(0), **common).frames
    torch.testing.assert_close(
        t2v(video=clip, generator=torch.Generator().manual_seed(0), **common).frames, start
    )
    with pytest.raises(ValueError, match=r"video '.*photo.png' is an image \(png_pipe\), not a video"):
        t2v(video=str(tmp_path / "photo.png"), **common)


def test_a_video_file_is_decoded_only_as_far_as_the_call_uses_it(strong_folder, tmp_path, monkeypatch):
    """`video="long.mp4"` reads the frames the call can use (its num_frames, else the folder's length), not the
    whole file (before: every frame was decoded and held first)."""
    from motif_video.pipelines import export

    long = export.write_mp4(np.zeros((41, 64, 96, 3), np.uint8), tmp_path / "long.mp4", fps=8)
    decoded, frames = [], export.iter_mp4_frames
    monkeypatch.setattr(
        export, "iter_mp4_frames", lambda path: (decoded.append(1) or f for f in frames(path))
    )
    t2v = quiet(MotifVideoPipeline, strong_folder)
    common = dict(prompt=PROMPT, strength=0.5, num_inference_steps=1, guidance="none", output_type="latent")
    t2v(video=str(long), num_frames=5, generator=torch.Generator().manual_seed(0), **common)
    assert len(decoded) == 5


def test_keep_and_blur_apply_to_every_conditioned_frame(pipe):
    noise = torch.randn((1, 16, 3, 8, 12), generator=torch.Generator().manual_seed(3))
    common = dict(last_image=make_image(seed=1), latents=noise.clone(), steps=3)
    seen, kept = _hidden(pipe, keep_first_frame=True, **common)
    clean = seen[0][:, 16:32, 2:]
    torch.testing.assert_close(kept[:, :, 2:], clean, atol=1e-6, rtol=0)  # ends on the last image's latent
    _, free = _hidden(pipe, keep_first_frame=False, **common)
    assert (free[:, :, 2:] - clean).abs().max() > 1e-2
    blurred, _ = _hidden(pipe, conditioning_blur=30.0, **common)
    assert (blurred[0][:, 16:32, 2:] - clean).abs().max() > 1e-3  # the last frame is blurred at sigma 1 ...
    assert blurred[0][:, 16:32, :2].eq(0).all()  # ... and the unconditioned frames stay zero


def test_uint8_arrays_condition_as_their_images(pipe):
    """`np.asarray(PIL.Image.open(path))` as the first image, the last image and a clip's frames conditions exactly
    as the PIL images do (before: diffusers' processor took uint8 as [0, 1], giving the VAE [-1, 453])."""
    first, last = make_image(), make_image(seed=1)
    frames = [make_image(seed=s) for s in range(2, 5)]
    as_images = _hidden(pipe, image=first, last_image=last)[0][0]
    as_arrays = _hidden(pipe, image=np.asarray(first), last_image=np.asarray(last))[0][0]
    torch.testing.assert_close(as_arrays, as_images, atol=0, rtol=0)
    clip = _hidden(pipe, conditions=[VideoCondition(video=frames, frame_index=3)])[0][0]
    arrays = [np.asarray(f) for f in frames]
    for video in (arrays, np.stack(arrays), (np.stack(arrays) / 255).astype(np.float32)):
        seen = _hidden(pipe, conditions=[VideoCondition(video=video, frame_index=3)])[0][0]
        torch.testing.assert_close(seen, clip, atol=0, rtol=0)


def test_one_pixel_range_rule_for_images_and_videos():
    """Integers are 0-255, float arrays [0, 1], float tensors [0, 1] or (with a value below 0) [-1, 1], whatever
    the layout; a resampling's small overshoot is clipped, another scale or dtype refused."""
    from motif_video.pipelines.image_conditioning import pixel_range, unit_pixels

    for integers in (
        np.zeros((2, 2, 3), np.uint8),
        np.full((4, 2, 2, 3), 255),
        torch.zeros((3, 2, 2), dtype=torch.uint8),
    ):
        assert pixel_range(integers, "x") == (0.0, 255.0)
    assert pixel_range(np.full((2, 2, 3), 1.01), "x") == (0.0, 1.0)
    assert pixel_range(torch.full((3, 2, 2), 0.5), "x") == (0.0, 1.0)
    assert pixel_range(torch.tensor([-0.01, 0.5]), "x") == (-1.0, 1.0)  # diffusers: below 0 means [-1, 1]
    torch.testing.assert_close(
        unit_pixels(torch.tensor([-1.0, 0.0, 1.0]), "x"), torch.tensor([0.0, 0.5, 1.0])
    )
    np.testing.assert_array_equal(unit_pixels(np.array([0, 51, 255], np.uint8), "x"), np.float32([0, 0.2, 1]))
    np.testing.assert_array_equal(unit_pixels(np.array([-0.01, 1.01]), "x"), np.float32([0, 1]))
    with pytest.raises(
        ValueError, match=r"x: a float array's pixels must be in \[0, 1\].*got values in \[-0.5, 1\]"
    ):
        pixel_range(np.array([-0.5, 1.0]), "x")
    with pytest.raises(ValueError, match="x: pixels must have an integer .* or float dtype, got bool"):
        pixel_range(np.ones((2, 2, 3), bool), "x")


def test_video_tensors_in_0_1_are_read_as_diffusers_reads_them(pipe, strong_folder):
    """A clip tensor in [0, 1] conditions as the same clip in [-1, 1] (before: taken as [-1, 1], washed out), in a
    condition and for video-to-video, as diffusers' `VideoProcessor.preprocess_video` reads it."""
    unit = (_clip(5, seed=7) + 1) / 2
    signed = _hidden(pipe, conditions=[VideoCondition(video=unit * 2 - 1)])[0][0]
    torch.testing.assert_close(_hidden(pipe, conditions=[VideoCondition(video=unit)])[0][0], signed)
    frames = [f for f in unit]  # a list of [3, H, W] tensors: the range of the whole clip
    torch.testing.assert_close(_hidden(pipe, conditions=[VideoCondition(video=frames)])[0][0], signed)
    t2v = quiet(MotifVideoPipeline, strong_folder)
    common = dict(prompt=PROMPT, strength=0.5, num_inference_steps=2, guidance="none", output_type="latent")
    start = t2v(video=unit * 2 - 1, generator=torch.Generator().manual_seed(0), **common).frames
    torch.testing.assert_close(
        t2v(video=unit, generator=torch.Generator().manual_seed(0), **common).frames, start
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"conditions": [VideoCondition(image=make_image(), frame_index=9)]}, "frame 9 is outside"),
        ({"conditions": [VideoCondition(video=np.zeros((6, H, W, 3), np.uint8), frame_index=4)]}, "past the video"),
        ({"image": make_image(), "conditions": [VideoCondition(image=make_image(), frame_index=0)]}, "both condition"),
        ({"last_image": make_image(), "conditions": [VideoCondition(image=make_image(), frame_index=6)]},
         "both condition latent frame 2"),
        ({"conditions": [VideoCondition(image=make_image(), frame_index=2, strength=0)]}, "strength"),
        ({"image": None}, "image is required"),
        ({"image": None, "video": "clip.mp4", "strength": 0.6},
         r"video-to-video on the image-to-video pipeline needs a frame condition: image, last_image or conditions; "
         r"for video-to-video from the prompt alone use MotifVideoPipeline with video= and strength="),
        ({"image": 7}, "image must be a PIL image, an .* or an image file's path, got int"),
        ({"last_image": "missing.png"}, "last_image 'missing.png' does not exist or is not a file"),
        ({"conditions": [VideoCondition(image="https://x.org/a.png", frame_index=4)]},
         r"conditions\[0\].image 'https://x.org/a.png' is a URL, which is not fetched"),
        ({"conditions": [VideoCondition(video="missing.mp4")]}, r"conditions\[0\].video 'missing.mp4' does not exist"),
        ({"conditions": [{"image": make_image()}]},
         r"conditions\[0\] must be a VideoCondition \(or diffusers' LTXVideoCondition\), got dict"),
        ({"image": np.full((H, W, 3), 200.0)},
         r"image: a float array's pixels must be in \[0, 1\] \(0-255 needs an integer dtype\), got values in \[200, 200\]"),
        ({"last_image": np.full((H, W, 3), -0.5, np.float32)}, r"last_image: .* got values in \[-0.5, -0.5\]"),
        ({"conditions": [VideoCondition(video=[np.full((H, W, 3), 300)] * 5)]},
         r"conditions\[0\] \(video\): integer pixels must be in 0-255, got values in 300-300"),
        ({"image": torch.full((3, H, W), 255.0)}, r"image: a float tensor's pixels must be in \[0, 1\], or \[-1, 1\]"),
    ],
)  # fmt: skip
def test_bad_conditions_are_refused_before_any_model_runs(pipe, kwargs, message, monkeypatch):
    calls = []
    for name in ("transformer", "vae", "text_encoder"):
        module = getattr(pipe, name)
        monkeypatch.setattr(module, "forward", lambda *a, _n=name, **k: calls.append(_n))
    monkeypatch.setattr(pipe.vae, "encode", lambda *a, **k: calls.append("vae.encode"))
    with pytest.raises(ValueError, match=message):
        pipe(prompt=PROMPT, **SIZE, num_inference_steps=1, **kwargs)
    assert calls == []


def test_video_to_video_from_the_prompt_alone_runs_where_the_i2v_error_points(pipe):
    """The image-to-video pipeline's error for a video without a frame condition names MotifVideoPipeline.from_pipe
    with video= and strength=: that call runs."""
    t2v = MotifVideoPipeline.from_pipe(pipe)
    out = t2v(
        prompt=PROMPT, video=_clip(F), strength=0.6, num_inference_steps=2, output_type="latent", **SIZE
    )
    assert out.frames.shape[2] == (F - 1) // 4 + 1


def test_the_pipelines_size_a_video_as_the_command_does(strong_folder):
    """`video_size` of the pipelines is `input_media`'s rule: the start of a long video (the folder's length at
    most), its own size in multiples of 16, else its shape at the folder's pixel count (before: all its frames, and
    the folder's size, stretched)."""
    from motif_video.defaults import GenerationDefaults

    t2v = quiet(MotifVideoPipeline, strong_folder)
    t2v.generation_defaults = GenerationDefaults(height=64, width=96, num_frames=9)
    portrait = torch.zeros((13, 3, 90, 54))  # 13 frames of 54x90: no side a multiple of 16
    assert t2v.video_size(portrait, 0.5, None, None, None) == (96, 64, 9)  # (height, width, frames)
    frames = [np.zeros((90, 54, 3), np.uint8)] * 13  # a list of arrays (before: no shape to read)
    assert t2v.video_size(frames, 0.5, None, None, None) == (96, 64, 9)
    assert t2v.video_size(_clip(11), 0.5, None, None, None) == (H, W, 9)
    assert t2v.video_size(portrait, 0.5, 32, 48, 13) == (32, 48, 13)  # asked for: as asked


def test_video_to_video_starts_from_the_noised_video(strong_folder):
    t2v = quiet(MotifVideoPipeline, strong_folder)
    video = _clip(11, seed=4)  # 11 frames: 9 used (4k + 1), size from the video
    seen = []
    hook = t2v.transformer.register_forward_hook(
        lambda m, a, k, o: seen.append(
            (float(k["timestep"].flatten()[0]), k["hidden_states"][:, :16].clone())
        ),
        with_kwargs=True,
    )
    noise = torch.randn((1, 16, 3, 8, 12), generator=torch.Generator().manual_seed(5))
    try:
        out = t2v(prompt=PROMPT, video=video, strength=0.5, num_inference_steps=4, latents=noise.clone(),
                  guidance="none", output_type="latent").frames  # fmt: skip
    finally:
        hook.remove()
    assert out.shape == (1, 16, 3, 8, 12) and len(seen) == 2  # 4 - int(4 * 0.5) = 2 steps skipped
    sigmas = t2v.last_run.sigmas
    assert len(sigmas) == 3 and abs(seen[0][0] / 1000 - float(sigmas[0])) < 1e-6
    source = _encode(t2v, video[:9])
    s = float(sigmas[0])
    torch.testing.assert_close(seen[0][1], (1 - s) * source + s * noise, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match=r"strength must be in \(0, 1\]"):
        t2v(prompt=PROMPT, video=video, strength=0.0)
    with pytest.raises(ValueError, match="video has 11 frames; num_frames 13"):
        t2v(prompt=PROMPT, video=video, num_frames=13, num_inference_steps=1)
