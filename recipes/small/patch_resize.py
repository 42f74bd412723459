"""Resize a trained transformer's spatial patches to a finer size (coarse-to-fine training).

Only the two layers that touch patches change; every block keeps its weights. With r = old / new patch size:

- patch embedding: the new kernel is the old one summed over r x r blocks, so a new token of a patch x is the old
  token of x upsampled r times (nearest);
- output head: each new output pixel is the mean of the r x r old output pixels it covers.

So the resized model on a latent x computes exactly avgpool_r(old(upsample_r(x))): what the old model did at r times
the latent size, pooled back. Token positions are the integer grid of the new patches, so at the size it was
trained at the resized model sees r x r times more tokens than the old one did; it is an initialisation to train
from, not a drop-in replacement.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from motif_video.models import MotifVideoTransformer


def resize_patch(model: MotifVideoTransformer, patch_size: int) -> MotifVideoTransformer:
    """A new transformer with spatial patch size `patch_size` (dividing the current one), initialised from `model`."""
    old = model.config.patch_size
    if not isinstance(patch_size, int) or patch_size < 1 or old % patch_size:
        raise ValueError(
            f"patch_size must be a positive divisor of the model's patch size {old} (a finer patch), got {patch_size!r}"
        )
    if patch_size == old:
        return model
    r = old // patch_size
    config = {k: v for k, v in model.config.items() if not k.startswith("_")}
    config.update(
        patch_size=patch_size,
        cross_attention_layout=model.cross_attention_layout,
        guidance_embeds=model.guidance_embedder is not None,
    )
    # on the meta device, no storage: every tensor is assigned below (the model has parameters only, no buffers)
    with torch.device("meta"):
        resized = MotifVideoTransformer(**config)
    # weights of the new model's own (not shared with `model`), in the model's dtype and on its device
    state = {k: v.clone() for k, v in model.state_dict().items()}

    kernel = state["x_embedder.proj.weight"]  # [D, C, pt, p, p]
    d, c, pt = kernel.shape[:3]
    state["x_embedder.proj.weight"] = kernel.reshape(d, c, pt, patch_size, r, patch_size, r).sum(dim=(4, 6))

    # Head channels are ordered (c, t, h, w) inside a patch; average each r x r block of (h, w).
    out = model.config.out_channels
    weight = state["proj_out.weight"].reshape(out, pt, patch_size, r, patch_size, r, -1)
    state["proj_out.weight"] = weight.mean(dim=(3, 5)).reshape(out * pt * patch_size * patch_size, -1)
    bias = state["proj_out.bias"].reshape(out, pt, patch_size, r, patch_size, r)
    state["proj_out.bias"] = bias.mean(dim=(3, 5)).reshape(-1)

    # taken as they are (`assign`): the model's dtype and device without a `.to(dtype)`, on which diffusers warns of
    # modules to keep in float32 even when there are none
    resized.load_state_dict(state, strict=True, assign=True)
    return resized


def resize_pretrained(pretrained: str | Path, output: str | Path, patch_size: int) -> Path:
    """The transformer of `pretrained` (a transformer folder, or a model folder / name / Hub id with a `transformer/`
    subfolder) with patch size `patch_size`, saved to `output`."""
    from motif_video.training.setup import load_pretrained

    resize_patch(load_pretrained(str(pretrained)), patch_size).save_pretrained(output)
    return Path(output)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("pretrained")
    parser.add_argument("output")
    parser.add_argument("patch_size", type=int)
    args = parser.parse_args(argv)
    print(resize_pretrained(args.pretrained, args.output, args.patch_size))


if __name__ == "__main__":
    main()
