"""Pieces of the small model's recipe (recipes/small): the small Wan VAE and its training loop, the token-preserving
text encoder."""

import json

import pytest
import torch
from recipes.small.components import small_text_encoder_config, token_preserving_
from recipes.small.vae import (
    VaeTrainConfig,
    change_profile,
    decode_unclamped,
    finetune_decoder,
    judder,
    round_trip,
    small_vae,
    train_vae,
    uint8_frames,
    widen_decoder,
)


@pytest.mark.parametrize("residual, dim_mult", [(False, (1, 2, 4, 4)), (True, (1, 2, 2))])
def test_small_vae_compresses_8x_space_4x_time_and_unclamped_decode_matches(residual, dim_mult):
    vae = small_vae(4, dim_mult, residual).eval()
    x = torch.rand(1, 3, 9, 32, 32) * 2 - 1
    with torch.no_grad():
        z = vae.encode(x).latent_dist.mode()
        assert z.shape == (1, 16, 3, 4, 4)
        raw = decode_unclamped(vae, z)
        ref = vae.decode(z).sample
    assert raw.shape == x.shape
    torch.testing.assert_close(raw.clamp(-1, 1), ref)


def test_small_vae_rejects_other_compressions():
    with pytest.raises(ValueError, match=r"dim_mult=\(1, 2, 4\) with residual=False"):
        small_vae(4, (1, 2, 4), False)
    with pytest.raises(ValueError, match="residual=True"):
        small_vae(4, (1, 2, 4, 4), True)


def test_train_vae_writes_a_loadable_folder_with_latent_stats(tmp_path, capsys):
    from diffusers import AutoencoderKLWan

    config = VaeTrainConfig(
        base_dim=4, dim_mult=(1, 2, 2), residual=True, steps=8, stop_at=3, batch_size=1, frames=5, crop=16,
        warmup_steps=1, save_every=2,
    )  # fmt: skip
    result = train_vae(config, tmp_path / "vae")
    assert result["psnr"] > 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [r["step"] for r in records if "psnr" in r] == [2, 3]  # saved every 2 steps and where it stopped
    vae = AutoencoderKLWan.from_pretrained(tmp_path / "vae")
    assert vae.config.patch_size == 2 and len(vae.config.latents_std) == 16
    assert all(s > 0 for s in vae.config.latents_std)
    saved = json.loads((tmp_path / "vae" / "config.json").read_text())
    assert saved["latents_mean"] == vae.config.latents_mean
    with pytest.raises(ValueError, match="frames=6 must be 4k"):
        train_vae(VaeTrainConfig(frames=6), tmp_path / "bad")


def test_wider_decoder_keeps_the_encoder_and_its_latents(tmp_path):
    from diffusers import AutoencoderKLWan

    vae = small_vae(4, (1, 2, 2), True).eval()
    vae.save_pretrained(tmp_path / "narrow")
    x = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    wider = widen_decoder(vae, 8).eval()
    assert wider.config.decoder_base_dim == 8 and wider.config.latents_std == vae.config.latents_std
    with torch.no_grad():
        torch.testing.assert_close(wider.encode(x).latent_dist.mode(), vae.encode(x).latent_dist.mode())
        assert wider.decode(vae.encode(x).latent_dist.mode()).sample.shape == x.shape
    count = lambda m: sum(p.numel() for p in m.decoder.parameters())  # noqa: E731
    assert count(wider) > 2 * count(vae)
    with pytest.raises(ValueError, match="decoder_base_dim must be a positive width, got 0"):
        widen_decoder(vae, 0)
    finetune_decoder(tmp_path / "narrow", tmp_path / "wide", steps=2, frames=5, crop=16, batch_size=1,
                     save_every=1, decoder_base_dim=8)  # fmt: skip
    trained = AutoencoderKLWan.from_pretrained(tmp_path / "wide").eval()
    assert trained.config.decoder_base_dim == 8
    with torch.no_grad():  # the encoder did not train
        torch.testing.assert_close(trained.encode(x).latent_dist.mode(), vae.encode(x).latent_dist.mode())


def test_token_preserving_encoder_keeps_each_word_apart():
    from transformers import T5Gemma2Encoder

    def features(encoder, ids):
        with torch.no_grad():
            return encoder(input_ids=torch.tensor([ids])).last_hidden_state[0]

    a, b = [2, 4, 20, 9, 6, 21, 10], [2, 4, 23, 9, 6, 21, 10]  # one word changed at position 2
    cosines = {}
    for preserve in (False, True):
        torch.manual_seed(0)
        encoder = T5Gemma2Encoder(small_text_encoder_config(40)).eval()
        if preserve:
            token_preserving_(encoder)
        cosines[preserve] = torch.nn.functional.cosine_similarity(
            features(encoder, a), features(encoder, b), dim=-1
        )
    assert cosines[True][2] < 0.4 < cosines[False][2]  # the changed word: far apart only when preserved
    others = torch.cat([cosines[True][:2], cosines[True][3:]])
    assert others.min() > 0.9 and others.max() < 1.0 - 1e-6  # the rest: close, yet carrying some context


def test_a_clips_first_frame_decodes_alone_as_in_the_clip():
    """The first-frame term of `finetune_decoder` trains on single frames because the causal VAE encodes and
    decodes a clip's first frame without temporal context: alone it reconstructs exactly as inside the clip."""
    vae = small_vae(4, (1, 2, 2), True).eval()
    x = torch.rand(1, 3, 9, 16, 16) * 2 - 1
    with torch.no_grad():
        whole = decode_unclamped(vae, vae.encode(x).latent_dist.mode())
        alone = decode_unclamped(vae, vae.encode(x[:, :, :1]).latent_dist.mode())
    torch.testing.assert_close(alone, whole[:, :, :1], atol=1e-5, rtol=1e-4)


def test_finetune_decoder_first_frame_term_trains_the_decoder_only(tmp_path, capsys):
    from diffusers import AutoencoderKLWan

    small_vae(4, (1, 2, 2), True).eval().save_pretrained(tmp_path / "base")
    kwargs = dict(steps=2, frames=5, crop=16, batch_size=1, save_every=2, first_frame_batch=2)
    for weight in (0.0, 1.0):
        result = finetune_decoder(
            tmp_path / "base", tmp_path / f"w{weight}", first_frame_weight=weight, **kwargs
        )
        assert set(result) == {"psnr", "first_frame_psnr", "seconds"}
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert all("first_frame_psnr" in r for r in records)
    base, plain, weighted = (
        AutoencoderKLWan.from_pretrained(tmp_path / name).state_dict() for name in ("base", "w0.0", "w1.0")
    )
    for key in base:
        if key.startswith("encoder."):
            torch.testing.assert_close(weighted[key], base[key])  # the encoder, so every latent, is unchanged
    changed = [k for k in base if k.startswith("decoder.") and not torch.equal(weighted[k], plain[k])]
    assert changed  # the extra term changes what the decoder learns
    with pytest.raises(ValueError, match="first_frame_weight=-1.0 must be >= 0"):
        finetune_decoder(tmp_path / "base", tmp_path / "bad", first_frame_weight=-1.0, **kwargs)


def test_finetune_with_encoder_measures_or_keeps_latent_stats(tmp_path):
    from diffusers import AutoencoderKLWan

    base = small_vae(4, (1, 2, 2), True).eval()
    base.register_to_config(latents_mean=[0.5] * 16, latents_std=[2.0] * 16)
    base.save_pretrained(tmp_path / "base")
    kwargs = dict(
        steps=2, frames=5, crop=16, batch_size=1, save_every=2, first_frame_batch=1, train_encoder=True
    )
    for keep in (False, True):
        finetune_decoder(tmp_path / "base", tmp_path / f"keep{keep}", keep_latent_stats=keep, **kwargs)
    old = AutoencoderKLWan.from_pretrained(tmp_path / "base")
    kept = AutoencoderKLWan.from_pretrained(tmp_path / "keepTrue")
    measured = AutoencoderKLWan.from_pretrained(tmp_path / "keepFalse")
    assert list(kept.config.latents_mean) == [0.5] * 16 and list(kept.config.latents_std) == [2.0] * 16
    assert list(measured.config.latents_std) != [2.0] * 16
    changed = [
        k
        for k, v in old.state_dict().items()
        if k.startswith("encoder.") and not torch.equal(v, kept.state_dict()[k])
    ]
    assert changed  # the encoder trained


def test_first_frame_stats_are_written_into_the_vae_folder(tmp_path):
    from diffusers import AutoencoderKLWan
    from recipes.small.vae import add_first_frame_stats, eval_clips

    from motif_video.pipelines.latents import FIRST_FRAME_MEAN, to_model_latents

    base = small_vae(4, (1, 2, 2), True).eval()
    base.register_to_config(latents_mean=[0.5] * 16, latents_std=[2.0] * 16)
    base.save_pretrained(tmp_path / "vae")
    add_first_frame_stats(tmp_path / "vae", count=6, seed=7)  # measured on the clips checked below
    vae = AutoencoderKLWan.from_pretrained(tmp_path / "vae")
    assert list(vae.config.latents_std) == [2.0] * 16 and len(vae.config[FIRST_FRAME_MEAN]) == 16
    assert not list((tmp_path).glob("vae.*"))  # written atomically: no temporary folder left
    with torch.no_grad():
        z = to_model_latents(vae.encode(eval_clips(count=6, seed=7)).latent_dist.mode(), vae.config)
    dims = (0, 2, 3, 4)  # per channel: frame 0 against the other frames pooled
    torch.testing.assert_close(z[:, :, :1].std(dims), z[:, :, 1:].std(dims), rtol=1e-3, atol=1e-5)
    torch.testing.assert_close(z[:, :, :1].mean(dims), z[:, :, 1:].mean(dims), rtol=0, atol=1e-4)


def test_still_group_latent_is_the_pipelines_keyframe_encoding():
    """The decoder stage's still groups are what the pipelines encode for a last image or keyframe."""
    from recipes.small.vae import still_group_latent

    from motif_video.condition_layout import place
    from motif_video.pipelines.conditions import encode_placed
    from motif_video.pipelines.latents import to_model_latents

    vae = small_vae(4, (1, 2, 2), True).eval()
    vae.register_to_config(latents_mean=[0.5] * 16, latents_std=[2.0] * 16)
    image = torch.rand(1, 3, 16, 16) * 2 - 1
    for frame in (5, 7, 8):  # anywhere in latent frame 2's group (pixel frames 5-8)
        placement = place("keyframe", frame, 1, 9)
        assert placement.latents == range(2, 3)
        with torch.no_grad():
            ours = to_model_latents(still_group_latent(vae, image), vae.config)
        torch.testing.assert_close(ours, encode_placed(vae, image, placement, "mode"))


def test_finetune_decoder_still_groups_train_the_decoder_only(tmp_path, capsys):
    from diffusers import AutoencoderKLWan

    small_vae(4, (1, 2, 2), True).eval().save_pretrained(tmp_path / "base")
    kwargs = dict(steps=2, frames=5, crop=0, batch_size=1, save_every=2)  # whole frames: the object moves
    for p in (0.0, 1.0):
        finetune_decoder(tmp_path / "base", tmp_path / f"p{p}", still_group_probability=p, **kwargs)
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert all(r["last_still_psnr"] > 0 for r in records)
    base, plain, still = (
        AutoencoderKLWan.from_pretrained(tmp_path / n).state_dict() for n in ("base", "p0.0", "p1.0")
    )
    assert all(torch.equal(still[k], base[k]) for k in base if k.startswith("encoder."))
    assert [k for k in base if k.startswith("decoder.") and not torch.equal(still[k], plain[k])]
    for bad in (dict(still_group_probability=1.5), dict(still_group_probability=0.5, train_encoder=True)):
        with pytest.raises(ValueError, match="still_group_probability=.* must be in \\[0, 1\\]"):
            finetune_decoder(tmp_path / "base", tmp_path / "bad", **bad, **kwargs)


def test_finetune_decoder_trains_at_the_size_asked_for(tmp_path):
    """The same seed and step at another rendering size is another batch, so other decoder weights; an unusable size
    is refused before anything trains."""
    from diffusers import AutoencoderKLWan

    small_vae(4, (1, 2, 2), True).eval().save_pretrained(tmp_path / "base")
    kwargs = dict(steps=1, frames=5, crop=0, batch_size=1, save_every=1)
    for size in (32, 64):
        finetune_decoder(tmp_path / "base", tmp_path / f"s{size}", height=size, width=size, **kwargs)
    small, default = (AutoencoderKLWan.from_pretrained(tmp_path / n).state_dict() for n in ("s32", "s64"))
    assert [k for k in small if k.startswith("decoder.") and not torch.equal(small[k], default[k])]
    for bad in (dict(height=40), dict(width=0), dict(height=32, width=32, crop=48)):
        with pytest.raises(ValueError, match="must be multiples of 16 and at least crop"):
            finetune_decoder(tmp_path / "base", tmp_path / "bad", **{**kwargs, **bad})
    assert not (tmp_path / "bad").exists()


def _moving_square(frames: int, place_of) -> torch.Tensor:
    """A white 8x8 square on black [1, 3, frames, 32, 32] in [-1, 1], at column place_of(i) in frame i."""
    clip = -torch.ones(1, 3, frames, 32, 32)
    for i in range(frames):
        left = place_of(i)
        clip[:, :, i, 12:20, left : left + 8] = 1.0
    return clip


def test_judder_is_one_for_even_motion_and_high_when_motion_waits_for_the_next_group():
    even = _moving_square(17, lambda i: i)
    # the square keeps latent frame k's first place through its 4 frames, then jumps: motion only across groups
    stutter = _moving_square(17, lambda i: 0 if i == 0 else 4 * ((i - 1) // 4) + 1)
    profile = change_profile([uint8_frames(even[0])])
    assert profile.shape == (16,)
    assert judder(profile) == pytest.approx(1.0)
    assert judder(change_profile([uint8_frames(stutter[0])])) > 100  # steps 4k + 3 change nothing
    # a round trip through a VAE goes through the same reading
    vae = small_vae(4, (1, 2, 2), True).eval()
    assert change_profile(map(uint8_frames, round_trip(vae, even))).shape == (16,)
    with pytest.raises(ValueError, match="at least 5 steps"):
        judder(change_profile([uint8_frames(even[0, :, :5])]))
