"""Our transformer against diffusers' MotifVideoTransformer3DModel: same weights in, same numbers out."""

import pytest
import torch

from motif_video import MotifVideoTransformer

from .helpers import TINY, inputs, reference_and_ours

ATOL = 1e-5


def _compare(reference, ours, kwargs, atol=ATOL):
    with torch.no_grad():
        expected = reference(**kwargs).sample
        actual = ours(**kwargs).sample
    assert actual.shape == expected.shape
    assert actual.dtype == expected.dtype
    diff = (actual.float() - expected.float()).abs().max().item()
    assert diff <= atol, f"max abs difference {diff} > {atol}"
    return expected


@pytest.fixture(scope="module")
def models():
    return reference_and_ours(seed=3)


def test_text_only(models):
    out = _compare(*models, inputs())
    assert out.abs().max() > 0.1  # the comparison is not between two zero tensors


def test_image_embeddings(models):
    kwargs = inputs()
    kwargs["image_embeds"] = torch.randn(2, 5, TINY["image_embed_dim"])
    _compare(*models, kwargs)


def test_batch_of_two_with_different_padding(models):
    kwargs = inputs(text=9)
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[0, 6:] = 0
    mask[1, 3:] = 0
    kwargs["encoder_attention_mask"] = mask
    _compare(*models, kwargs)
    kwargs["image_embeds"] = torch.randn(2, 4, TINY["image_embed_dim"])
    _compare(*models, kwargs)


def test_single_frame(models):
    _compare(*models, inputs(frames=1))


def test_non_square_latent(models):
    _compare(*models, inputs(batch=1, frames=2, height=6, width=16))


def test_scalar_timestep(models):
    kwargs = inputs(batch=1)
    kwargs["timestep"] = kwargs["timestep"][0]
    with torch.no_grad():
        expected = models[0](**{**kwargs, "timestep": kwargs["timestep"][None]}).sample
        actual = models[1](**kwargs).sample
    assert (actual - expected).abs().max() <= ATOL


def test_bfloat16_within_tolerance(models):
    reference, ours = models
    reference_bf16 = type(reference).from_config(reference.config).to(torch.bfloat16).eval()
    reference_bf16.load_state_dict(reference.state_dict())
    ours_bf16 = (
        MotifVideoTransformer(**{**TINY, "cross_attention_layout": "separate"}).to(torch.bfloat16).eval()
    )
    ours_bf16.load_state_dict(ours.state_dict())
    kwargs = inputs(batch=1)
    kwargs = {
        k: v.to(torch.bfloat16) if v.is_floating_point() and v.ndim > 1 else v for k, v in kwargs.items()
    }
    with torch.no_grad():
        expected = reference_bf16(**kwargs).sample.float()
        actual = ours_bf16(**kwargs).sample.float()
        exact = ours(**{k: v.float() for k, v in kwargs.items()}).sample
    # Stated tolerance: bf16 against bf16 reference within 2e-2 of the output scale (one or two bf16 ulps
    # accumulated over the blocks); both within the usual bf16-vs-fp32 gap.
    scale = exact.abs().max().item()
    assert (actual - expected).abs().max().item() <= 2e-2 * scale
    assert (actual - exact).abs().max().item() <= 5e-2 * scale


def test_ours_saved_loads_in_reference(models, tmp_path):
    from diffusers import MotifVideoTransformer3DModel

    reference, ours = models
    ours.save_pretrained(tmp_path / "ours")
    loaded = MotifVideoTransformer3DModel.from_pretrained(tmp_path / "ours").eval()
    _compare(loaded, ours, inputs())


def test_reference_saved_loads_in_ours(models, tmp_path):
    reference, _ = models
    reference.save_pretrained(tmp_path / "ref")
    loaded = MotifVideoTransformer.from_pretrained(tmp_path / "ref")
    assert loaded.cross_attention_layout == "separate"
    _compare(reference, loaded, inputs())


@pytest.mark.parametrize(
    "overrides", [{"num_decoder_layers": 0}, {"num_decoder_layers": 0, "num_single_layers": 2}]
)
def test_without_decoder_layers(overrides):
    """diffusers' default (no DDT decoder): the head reads the encoder output, as in the reference."""
    reference, ours = reference_and_ours(seed=7, **overrides)
    kwargs = inputs()
    kwargs["encoder_attention_mask"] = torch.tensor([[1] * 7, [1] * 4 + [0] * 3])
    expected = _compare(reference, ours, kwargs)
    # Every encoder block reaches the output: changing the last single block changes the prediction.
    with torch.no_grad():
        ours.single_transformer_blocks[-1].proj_out.weight.add_(0.5)
        assert (ours(**kwargs).sample - expected).abs().max() > 1e-3
