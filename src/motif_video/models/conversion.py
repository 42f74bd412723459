"""Convert between the two Shared Cross-Attention checkpoint layouts.

Layout "shared" (the paper / Motif's original code): `cross_attn_query_proj` (Linear), `cross_attn_query_norm`
(LayerNorm), `cross_attn_out_proj`; keys, values and QK-norms come from the block's self-attention.
Layout "separate" (diffusers, the Hub file): `cross_attn.{to_q,to_k,to_v,norm_q,norm_k,to_out.0}`.

shared -> separate is exact when the query LayerNorm has zero bias: LN(u) = gamma * C u / std(u) with
C = I - 11^T / D, and the per-head RMS QK-norm that follows removes the 1 / std(u) factor. So
to_q = diag(gamma) C W_qp (bias diag(gamma) C b_qp), to_k/to_v/norm_q/norm_k are copies of the self-attention
ones, and to_out.0 is cross_attn_out_proj. The reverse direction is not expressible in general.
"""

from __future__ import annotations

import torch

_SHARED = ".cross_attn_query_proj.weight"


def fold_shared_to_separate(
    state_dict: dict[str, torch.Tensor], atol: float = 0.0
) -> dict[str, torch.Tensor]:
    """A separate-layout copy of a shared-layout state dict; refuses a query LayerNorm bias with |beta| > atol."""
    out = dict(state_dict)
    prefixes = [k[: -len(_SHARED)] for k in state_dict if k.endswith(_SHARED)]
    for prefix in prefixes:
        beta = state_dict[f"{prefix}.cross_attn_query_norm.bias"]
        if beta.abs().max() > atol:
            raise ValueError(
                f"{prefix}.cross_attn_query_norm.bias is non-zero (max |beta| = {beta.abs().max():.3g} > {atol}); "
                "the fold to the separate layout would change outputs: load this checkpoint in the shared layout"
            )
        weight = state_dict[f"{prefix}.cross_attn_query_proj.weight"]
        bias = state_dict[f"{prefix}.cross_attn_query_proj.bias"]
        gamma = state_dict[f"{prefix}.cross_attn_query_norm.weight"]
        dim = weight.shape[0]
        centre = torch.eye(dim, dtype=torch.float64) - 1.0 / dim
        fold = gamma.double()[:, None] * centre  # diag(gamma) (I - 11^T / D)
        out[f"{prefix}.cross_attn.to_q.weight"] = (fold @ weight.double()).to(weight.dtype)
        out[f"{prefix}.cross_attn.to_q.bias"] = (fold @ bias.double()).to(bias.dtype)
        for name in (
            "to_k.weight",
            "to_k.bias",
            "to_v.weight",
            "to_v.bias",
            "norm_q.weight",
            "norm_k.weight",
        ):
            out[f"{prefix}.cross_attn.{name}"] = state_dict[f"{prefix}.attn.{name}"].clone()
        out[f"{prefix}.cross_attn.to_out.0.weight"] = state_dict[f"{prefix}.cross_attn_out_proj.weight"]
        out[f"{prefix}.cross_attn.to_out.0.bias"] = state_dict[f"{prefix}.cross_attn_out_proj.bias"]
        for name in ("query_proj.weight", "query_proj.bias", "query_norm.weight", "query_norm.bias"):
            del out[f"{prefix}.cross_attn_{name}"]
        del out[f"{prefix}.cross_attn_out_proj.weight"], out[f"{prefix}.cross_attn_out_proj.bias"]
    return out


def to_separate_layout(model: torch.nn.Module) -> torch.nn.Module:
    """A new model in the separate (diffusers) layout computing the same function as a shared-layout `model`."""
    if model.cross_attention_layout == "separate":
        return model
    state = fold_shared_to_separate(model.state_dict())
    with torch.device("meta"):
        config = {k: v for k, v in model.config.items() if not k.startswith("_")}
        converted = type(model)(**{**config, "cross_attention_layout": "separate"})
    converted.load_state_dict(state, strict=True, assign=True)
    return converted.train(model.training)
