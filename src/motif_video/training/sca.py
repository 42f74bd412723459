"""Insert Shared Cross-Attention into a model trained without it (curriculum stage 9).

The new model has the same weights plus, on every encoder-side single block (and dual block if asked), the
paper's query path (`cross_attn_query_proj`, LayerNorm `cross_attn_query_norm`) and a zero-initialised output
projection `cross_attn_out_proj`: at the moment of insertion the cross-attention adds exactly 0, so the model's
output is unchanged, and training then grows the new path from there.
"""

from __future__ import annotations

from typing import Any

import torch

from ..models import MotifVideoTransformer


def add_shared_cross_attention(
    model: MotifVideoTransformer, single: bool = True, dual: bool = False
) -> MotifVideoTransformer:
    """A copy of `model` with text cross-attention enabled on the chosen block kinds ("shared" layout)."""
    config: dict[str, Any] = {k: v for k, v in model.config.items() if not k.startswith("_")}
    if model.cross_attention_layout != "shared" and (
        config["enable_text_cross_attention_single"] or config["enable_text_cross_attention_dual"]
    ):
        raise ValueError(
            f"model already has cross-attention in the {model.cross_attention_layout!r} layout; "
            "insertion needs a model without it or with the 'shared' layout"
        )
    config["enable_text_cross_attention_single"] = config["enable_text_cross_attention_single"] or single
    config["enable_text_cross_attention_dual"] = config["enable_text_cross_attention_dual"] or dual
    param = next(model.parameters())
    with torch.device(param.device):
        new = MotifVideoTransformer(**{**config, "cross_attention_layout": "shared"}).to(param.dtype)
    result = new.load_state_dict(model.state_dict(), strict=False)
    if result.unexpected_keys:
        raise ValueError(f"unexpected keys when inserting cross-attention: {result.unexpected_keys[:5]}")
    bad = [k for k in result.missing_keys if ".cross_attn_" not in k]
    if bad:
        raise ValueError(f"keys missing outside the new cross-attention: {bad[:5]}")
    return new.train(model.training)
