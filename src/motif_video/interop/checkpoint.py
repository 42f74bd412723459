"""The full transformer in the released checkpoint's naming, which ComfyUI, diffusers' single-file loader and GGUF
files share.

diffusers' single-file loader maps a Motif-Video checkpoint with the identity (`checkpoint_mapping_fn` in
`loaders/single_file_model.py`), and Motif's ComfyUI nodes and GGUF files use the same bare keys
(`x_embedder.proj.weight`, `transformer_blocks.0.attn.to_q.weight`, ...: `released_state_dict_keys.txt`), so the
released naming is our own state dict in the separate (diffusers) cross-attention layout. Two of our model kinds need
a conversion first:

- shared layout (the paper's `cross_attn_query_*`): folded into the separate layout (`models.conversion`), exact
  when the query LayerNorm has no bias. With a bias the fold would change outputs: layout "auto" then keeps the
  shared keys, the layout of Motif's original ComfyUI nodes (they detect `cross_attn_query_proj`) and of our
  loader, which diffusers' single-file loader cannot read; layout "separate" refuses. A separate-layout model
  cannot be written in the shared layout (no reverse conversion exists).
- guidance-embedded students (`guidance_embeds=True`): the released architecture has no guidance input. At one
  fixed guidance scale the embedding is a constant vector added to the timestep embedding, so it folds exactly into
  the bias of `time_text_embed.timestep_embedder.linear_2`; without a scale the export is refused.
"""

from __future__ import annotations

import json
from typing import Any

import torch
from torch import nn

from ..models.conversion import fold_shared_to_separate
from .choices import LAYOUTS

TIMESTEP_OUTPUT_BIAS = "time_text_embed.timestep_embedder.linear_2.bias"


def released_state_dict(
    model: nn.Module,
    guidance_scale: float | None = None,
    dtype: torch.dtype | None = None,
    layout: str = "auto",
) -> dict[str, torch.Tensor]:
    """`model`'s weights in the released naming (no guidance embedder), detached, on the CPU, the cross-attention in
    `layout` ("auto": separate when the fold is exact, else shared)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {list(LAYOUTS)}, got {layout!r}")
    if any(".lora_" in k for k in model.state_dict()):
        raise ValueError(
            "the transformer carries LoRA layers: to export with them, fuse them into the weights and remove the "
            "layers (pipe.fuse_lora(), then pipe.unload_lora_weights()); to export without them, "
            "pipe.unload_lora_weights() alone"
        )
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    own = getattr(model, "cross_attention_layout", "separate")
    if own == "separate" and layout == "shared":
        raise ValueError(
            "this transformer is in the separate cross-attention layout, which cannot be written in the shared "
            "layout (no reverse conversion exists): use layout separate or auto"
        )
    if own == "shared" and layout != "shared":
        try:
            state = fold_shared_to_separate(state)
        except ValueError as exc:
            if layout == "separate":
                why = str(exc).split("; the fold")[0]  # which bias, and how large
                raise ValueError(
                    f"this transformer's shared cross-attention has no exact fold into the separate layout ({why}): "
                    "write it with layout auto or shared (--layout auto / shared)"
                ) from exc
            # auto: no exact fold exists; the shared keys stay (the original ComfyUI layout)
    if getattr(model.config, "guidance_embeds", False):
        if guidance_scale is None:
            raise ValueError(
                "this transformer is guidance-distilled (guidance_embeds=True) and the released layout has no "
                "guidance input: pass the guidance scale to fold into it (e.g. --guidance-scale 4)"
            )
        state = fold_guidance(model, state, guidance_scale)
    elif guidance_scale is not None:
        raise ValueError(
            f"guidance_scale={guidance_scale} was given but this transformer has no guidance embedder "
            "(guidance_embeds=False): leave it out"
        )
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    return {k: v.contiguous() for k, v in state.items()}


@torch.no_grad()
def fold_guidance(model: nn.Module, state: dict[str, torch.Tensor], scale: float) -> dict[str, torch.Tensor]:
    """Add the guidance embedding of `scale` to the timestep MLP's output bias; drop the guidance embedder."""
    embedder = model.guidance_embedder
    param = next(embedder.parameters())
    constant = embedder(torch.tensor([float(scale)], device=param.device))[0]  # [D]
    out = {k: v for k, v in state.items() if not k.startswith("guidance_embedder.")}
    bias = out[TIMESTEP_OUTPUT_BIAS]
    out[TIMESTEP_OUTPUT_BIAS] = (bias.double() + constant.detach().cpu().double()).to(bias.dtype)
    return out


def released_config(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The `config.json` keys of `model` as exported with `state`: no `guidance_embeds` (the fold removes it), and
    `cross_attention_layout` only when `state` keeps the shared layout (absent means separate, as released)."""
    from ..models.loading import detect_cross_attention_layout

    config = json.loads(model.to_json_string())
    config = {
        k: v
        for k, v in config.items()
        if not k.startswith("_") and k not in ("guidance_embeds", "cross_attention_layout")
    }
    if detect_cross_attention_layout(list(state)) == "shared":
        config["cross_attention_layout"] = "shared"
    return config


def transformer_from_state_dict(
    state: dict[str, torch.Tensor], config: dict[str, Any], dtype: torch.dtype | None = None
) -> nn.Module:
    """A separate-layout `MotifVideoTransformer` of `config` holding `state` exactly (strict: keys and shapes)."""
    from ..models import MotifVideoTransformer
    from ..models.loading import check_state_dict, detect_cross_attention_layout

    layout = detect_cross_attention_layout(list(state)) or "separate"
    with torch.device("meta"):
        model = MotifVideoTransformer(**{**config, "cross_attention_layout": layout})
    check_state_dict(model, {k: tuple(v.shape) for k, v in state.items()}, "the checkpoint")
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()
