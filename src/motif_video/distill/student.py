"""Students initialised from their teacher: the same weights, plus a zero-initialised guidance embedding."""

from __future__ import annotations

import torch

from ..models import MotifVideoTransformer


def student_from_teacher(
    teacher: MotifVideoTransformer, guidance_embeds: bool = True
) -> MotifVideoTransformer:
    """A new transformer with the teacher's config and weights; with `guidance_embeds`, a guidance embedding whose
    output layer is zero, so that at any guidance scale the student predicts exactly the teacher's conditional
    (unguided) velocity until it is trained."""
    config = {k: v for k, v in teacher.config.items() if not k.startswith("_")}
    config["guidance_embeds"] = guidance_embeds or bool(config.get("guidance_embeds", False))
    dtype = next(teacher.parameters()).dtype
    student = MotifVideoTransformer(**config).to(dtype)  # the config carries the layout
    result = student.load_state_dict(teacher.state_dict(), strict=False)
    if result.unexpected_keys or any(not k.startswith("guidance_embedder.") for k in result.missing_keys):
        raise ValueError(
            f"teacher and student weights differ beyond the guidance embedding: missing {result.missing_keys[:5]}, "
            f"unexpected {result.unexpected_keys[:5]}"
        )
    return student.to(next(teacher.parameters()).device)


def frozen_copy(model: torch.nn.Module) -> torch.nn.Module:
    """The teacher: an eval-mode copy that takes no gradients."""
    import copy

    return copy.deepcopy(model).eval().requires_grad_(False)
