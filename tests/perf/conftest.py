from __future__ import annotations

import pytest
import torch

from motif_video.presets import build_transformer


@pytest.fixture
def tiny_model():
    """The tiny preset with random (non-zero) weights everywhere, in eval mode, float32."""
    torch.manual_seed(0)
    model = build_transformer("tiny").eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.05)
    return model


@pytest.fixture
def tiny_inputs():
    g = torch.Generator().manual_seed(1)
    return {
        "hidden_states": torch.randn(1, 33, 3, 8, 12, generator=g),
        "encoder_hidden_states": torch.randn(1, 7, 32, generator=g),
        "uncond_hidden_states": torch.randn(1, 4, 32, generator=g),
        "image_embeds": torch.randn(1, 5, 24, generator=g),
    }
