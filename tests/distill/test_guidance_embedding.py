"""The guidance-embedded student: starts as its teacher, saves/loads with the optional key, rejects misuse."""

from __future__ import annotations

import json

import pytest
import torch

from motif_video.distill.student import student_from_teacher
from motif_video.models import MotifVideoTransformer
from motif_video.testing import tiny_transformer


def _inputs(batch: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(batch, 33, 2, 8, 8, generator=g)
    text = torch.randn(batch, 5, 32, generator=g)
    return hidden, torch.tensor([700.0, 250.0][:batch]), text


@torch.no_grad()
def test_student_at_init_equals_teacher_unguided_prediction():
    teacher = tiny_transformer(0, layout="shared", std=0.2)
    student = student_from_teacher(teacher).eval()
    assert student.guidance_embedder is not None
    hidden, t, text = _inputs()
    expected = teacher(hidden, t, text).sample
    for scale in (0.0, 1.0, 8.0, torch.tensor([3.0, 12.0])):
        got = student(hidden, t, text, guidance=scale).sample
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
    # The embedding is live: a non-zero output layer changes the prediction, and differently per scale.
    torch.nn.init.normal_(student.guidance_embedder.timestep_embedder.linear_2.weight, std=0.5)
    a, b = student(hidden, t, text, guidance=1.0).sample, student(hidden, t, text, guidance=8.0).sample
    assert (a - expected).abs().max() > 1e-3 and (a - b).abs().max() > 1e-3


def test_guidance_key_saved_only_when_true_and_loads_strictly(tmp_path):
    teacher = tiny_transformer(0, layout="shared")
    teacher.save_pretrained(tmp_path / "teacher")
    assert "guidance_embeds" not in json.loads((tmp_path / "teacher" / "config.json").read_text())
    assert teacher.config.guidance_embeds is False  # in the config, written to config.json only when True

    student = student_from_teacher(teacher)
    torch.nn.init.normal_(student.guidance_embedder.timestep_embedder.linear_2.weight, std=0.1)
    student.save_pretrained(tmp_path / "student")
    saved = json.loads((tmp_path / "student" / "config.json").read_text())
    assert saved["guidance_embeds"] is True and saved["_class_name"] == "MotifVideoTransformer3DModel"
    loaded = MotifVideoTransformer.from_pretrained(tmp_path / "student")
    assert loaded.config.guidance_embeds is True
    for (name, a), b in zip(student.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name


def test_guidance_misuse_is_a_value_error():
    teacher = tiny_transformer(0)
    student = student_from_teacher(teacher)
    hidden, t, text = _inputs()
    with pytest.raises(ValueError, match="no guidance embedder"):
        teacher(hidden, t, text, guidance=8.0)
    with pytest.raises(ValueError, match="guidance=<scale>"):
        student(hidden, t, text)
    with pytest.raises(ValueError, match=r"guidance must be a scalar or have shape \[2\]"):
        student(hidden, t, text, guidance=torch.ones(3))
