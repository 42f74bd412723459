"""Memory modes: choosing from a budget, refusing what cannot work, group offload giving the same numbers."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from pipeline_test_utils import quiet

from motif_video.pipelines.memory import MemoryPlan, apply_memory_plan, check_offload, plan_for_budget


def test_budget_picks_the_least_offloading_mode():
    assert (plan_for_budget(80).offload, plan_for_budget(80).fp8) == ("none", False)
    assert (plan_for_budget(16).offload, plan_for_budget(16).fp8) == ("model", False)
    assert (plan_for_budget(11).offload, plan_for_budget(11).fp8) == ("model", True)
    low = plan_for_budget(6)
    assert (low.offload, low.fp8, low.vae_tiling) == ("group", True, True)
    assert "6 GB" in low.describe()
    with pytest.raises(ValueError, match="memory budget must be > 0"):
        plan_for_budget(0)


def test_offload_checks():
    with pytest.raises(ValueError, match="offload must be one of"):
        check_offload("disk", torch.device("cpu"))
    with pytest.raises(ValueError, match="accelerator"):
        check_offload("model", torch.device("cpu"))
    check_offload("group", torch.device("cpu"))


def test_fp8_without_torchao_says_how_to_install(tiny_folder, monkeypatch):
    import sys

    from motif_video import MotifVideoPipeline

    monkeypatch.setitem(sys.modules, "torchao.quantization", None)  # import fails as if not installed
    pipe = MotifVideoPipeline.from_pretrained(tiny_folder)
    with pytest.raises(ValueError, match=r"motif-video\[fp8\]"):
        apply_memory_plan(pipe, MemoryPlan("none", fp8=True), "cpu")


def test_group_offload_and_text_encoder_release_keep_the_numbers(tiny_folder):
    from motif_video import MotifVideoPipeline

    def run(p):
        kw = {"height": 64, "width": 96, "num_frames": 9, "num_inference_steps": 2, "output_type": "latent"}
        return p("a red ball", generator=torch.Generator().manual_seed(0), **kw).frames

    plain = quiet(MotifVideoPipeline, tiny_folder)
    plain.release_text_encoder = False
    expected = run(plain)
    grouped = quiet(MotifVideoPipeline, tiny_folder)
    apply_memory_plan(grouped, MemoryPlan("group", vae_tiling=True), "cpu")
    torch.testing.assert_close(run(grouped), expected, atol=0, rtol=0)


@pytest.mark.skipif(importlib.util.find_spec("torchao") is None, reason="torchao not installed (extra fp8)")
def test_fp8_weight_only_quantizes_the_transformer_and_stays_close(tiny_folder):
    from motif_video import MotifVideoPipeline

    def run(p):
        kw = {"height": 64, "width": 96, "num_frames": 9, "num_inference_steps": 2, "output_type": "latent"}
        return p("a red ball", generator=torch.Generator().manual_seed(0), guidance="none", **kw).frames

    pipe = quiet(MotifVideoPipeline, tiny_folder)
    expected = run(pipe)
    apply_memory_plan(pipe, MemoryPlan("none", fp8=True), "cpu")
    from motif_video.perf.fp8 import is_fp8_linear

    modules = list(pipe.transformer.named_modules())
    selected = [m for name, m in modules if is_fp8_linear(m, name)]
    kept = [m for name, m in modules if isinstance(m, torch.nn.Linear) and not is_fp8_linear(m, name)]
    assert selected and all("Float8" in type(m.weight).__name__ for m in selected)
    assert kept and not any("Float8" in type(m.weight).__name__ for m in kept)  # modulation, embedders, head
    out = run(pipe)
    err = (out - expected).abs().max() / expected.abs().max()
    assert 0 < err < 0.05  # quantised (not identical), and close
