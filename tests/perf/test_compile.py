"""Regional compile: same numbers as eager, every block compiled, no recompilation across denoising steps."""

from __future__ import annotations

import pytest
import torch

from motif_video.perf.compile import compile_repeated_blocks, is_compiled


def guided_step(model, inputs: dict, timestep: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One cond and one uncond pass (different text lengths), as a sampling loop makes them."""
    x = inputs["hidden_states"]
    with torch.no_grad():
        cond = model(x, timestep, inputs["encoder_hidden_states"]).sample
        uncond = model(x, timestep, inputs["uncond_hidden_states"]).sample
    return cond, uncond


def check_compiled_steps(model, inputs: dict, backend: str, atol: float) -> None:
    eager = [guided_step(model, inputs, t) for t in (999.0, 750.0, 500.0)]
    torch._dynamo.reset()
    compile_repeated_blocks(model, backend=backend)
    assert all(is_compiled(block) for block in model.repeated_blocks())
    compiled = [guided_step(model, inputs, 999.0)]  # compiles (cond and uncond text lengths)
    with torch._dynamo.config.patch(error_on_recompile=True):  # a new timestep value must not recompile
        compiled += [guided_step(model, inputs, t) for t in (750.0, 500.0)]
    for got, want in zip(compiled, eager):
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, atol=atol, rtol=0)
    assert (eager[0][0] - eager[1][0]).abs().max() > 1e-3  # the timestep does change the output


def test_regional_compile_matches_eager_without_recompiling(tiny_model, tiny_inputs) -> None:
    check_compiled_steps(tiny_model, tiny_inputs, backend="eager", atol=1e-6)


@pytest.mark.slow
def test_regional_compile_inductor(tiny_model, tiny_inputs) -> None:
    """The real code generator on CPU (about a minute on 2 shared cores)."""
    check_compiled_steps(tiny_model, tiny_inputs, backend="inductor", atol=1e-5)


def test_model_without_blocks_is_an_error() -> None:
    class Empty(torch.nn.Module):
        def repeated_blocks(self) -> list:
            return []

    with pytest.raises(ValueError, match="no blocks"):
        compile_repeated_blocks(Empty())
