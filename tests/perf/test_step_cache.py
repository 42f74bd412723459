"""First-block step cache: exact at threshold 0, skips and reports at a large threshold, branches kept apart."""

from __future__ import annotations

import itertools

import pytest
import torch

from motif_video.flow import euler_step, sampling_sigmas, timestep_from_sigma
from motif_video.perf.step_cache import StepCache
from motif_video.presets import build_transformer
from motif_video.testing import randomize_


def sample(model, inputs: dict, cache: StepCache | None, steps: int = 5, branches=("cond", "uncond")):
    """A guided Euler loop (guidance scale 3); returns the final latents and the per-call outputs."""
    x = inputs["hidden_states"][:, :16].clone()
    condition = inputs["hidden_states"][:, 16:]
    texts = {"cond": inputs["encoder_hidden_states"], "uncond": inputs["uncond_hidden_states"]}
    sigmas = sampling_sigmas(steps, shift=3.0).tolist()
    outputs = []
    with torch.no_grad():
        for sigma, sigma_next in itertools.pairwise(sigmas):
            hidden = torch.cat([x, condition], dim=1)
            v = {}
            for name in branches:
                branch = cache.branch(name) if cache is not None else None
                v[name] = model(hidden, timestep_from_sigma(sigma), texts[name], step_cache=branch).sample
                outputs.append(v[name])
            velocity = v["cond"] if len(v) == 1 else v["uncond"] + 3.0 * (v["cond"] - v["uncond"])
            x = euler_step(x, velocity, sigma, sigma_next)
    return x, outputs


def count_block_calls(model) -> list[int]:
    calls = [0] * len(model.repeated_blocks())
    for i, block in enumerate(model.repeated_blocks()):
        block.register_forward_hook(lambda *_, i=i: calls.__setitem__(i, calls[i] + 1))
    return calls


def test_threshold_zero_is_exact(tiny_model, tiny_inputs) -> None:
    exact, exact_outputs = sample(tiny_model, tiny_inputs, None)
    cache = StepCache(threshold=0.0)
    cached, cached_outputs = sample(tiny_model, tiny_inputs, cache)
    assert torch.equal(cached, exact)
    assert all(torch.equal(a, b) for a, b in zip(cached_outputs, exact_outputs))
    report = cache.report()
    assert report["cond"].calls == 5 and report["cond"].skipped == [] and report["uncond"].skipped == []
    assert all(d > 0 for d in report["cond"].distances)


def test_large_threshold_skips_and_reports(tiny_model, tiny_inputs) -> None:
    calls = count_block_calls(tiny_model)
    exact, _ = sample(tiny_model, tiny_inputs, None)
    calls[:] = [0] * len(calls)
    cache = StepCache(threshold=1e9)
    cached, _ = sample(tiny_model, tiny_inputs, cache)
    assert cache.skipped_steps("cond") == [1, 2, 3, 4] == cache.skipped_steps("uncond")
    assert calls[0] == 10 and all(c == 2 for c in calls[1:])  # only block 0 runs on skipped steps
    assert (cached - exact).abs().max() > 1e-4  # skipping is an approximation: the test can see it


def test_threshold_between_distances_skips_some_steps(tiny_model, tiny_inputs) -> None:
    probe = StepCache(threshold=0.0)
    sample(tiny_model, tiny_inputs, probe, steps=6, branches=("cond",))
    distances = probe.report()["cond"].distances  # d of each step against the previous one
    cache = StepCache(threshold=sorted(distances)[len(distances) // 2] * 1.0001)
    sample(tiny_model, tiny_inputs, cache, steps=6, branches=("cond",))
    skipped = cache.skipped_steps("cond")
    assert 0 < len(skipped) < 5 and 0 not in skipped


def test_reset_between_generations(tiny_model, tiny_inputs) -> None:
    cache = StepCache(threshold=1e9)
    first, _ = sample(tiny_model, tiny_inputs, cache)
    cache.reset()
    assert cache.report() == {} and cache.skipped_steps("cond") == []
    second, _ = sample(tiny_model, tiny_inputs, cache)
    assert torch.equal(first, second)  # without the reset, step 0 would reuse the last generation's residual
    assert cache.skipped_steps("cond") == [1, 2, 3, 4]


def test_branches_keep_separate_state(tiny_model, tiny_inputs) -> None:
    """With interleaved cond/uncond calls each branch gives what a run of that branch alone gives."""
    cond, uncond = tiny_inputs["encoder_hidden_states"], tiny_inputs["uncond_hidden_states"]
    # Different latents per branch (test only) so that reusing the other branch's residual is clearly visible.
    latents = {"cond": tiny_inputs["hidden_states"], "uncond": tiny_inputs["hidden_states"].flip(-1)}
    timesteps = (1000.0, 960.0, 900.0)

    def run(cache: StepCache, texts: dict, names: dict) -> dict[str, list[torch.Tensor]]:
        out = {key: [] for key in texts}
        with torch.no_grad():
            for t in timesteps:
                for key, text in texts.items():
                    branch = cache.branch(names[key])
                    out[key].append(tiny_model(latents[key], t, text, step_cache=branch).sample)
        return out

    interleaved = StepCache(threshold=1e9)
    both = run(interleaved, {"cond": cond, "uncond": uncond}, {"cond": "cond", "uncond": "uncond"})
    alone = {key: run(StepCache(threshold=1e9), {key: text}, {key: key})[key]
             for key, text in (("cond", cond), ("uncond", uncond))}  # fmt: skip
    assert interleaved.skipped_steps("cond") == [1, 2] == interleaved.skipped_steps("uncond")
    for key in ("cond", "uncond"):
        assert all(torch.equal(a, b) for a, b in zip(both[key], alone[key]))
    # The bug this guards against: one state for both branches makes uncond reuse the cond residual.
    shared = run(StepCache(threshold=1e9), {"cond": cond, "uncond": uncond}, {"cond": "one", "uncond": "one"})
    assert (shared["uncond"][0] - alone["uncond"][0]).abs().max() > 1e-4


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="threshold must be >= 0"):
        StepCache(threshold=-0.1)


def test_cache_refuses_training_features(tiny_model, tiny_inputs) -> None:
    with pytest.raises(ValueError, match="step_cache is for sampling"):
        tiny_model(
            tiny_inputs["hidden_states"], 500.0, tiny_inputs["encoder_hidden_states"],
            return_features=[1], step_cache=StepCache(0.1).branch(),
        )  # fmt: skip


def test_without_decoder_layers(tiny_inputs) -> None:
    """No DDT decoder: full steps equal the uncached model; a skipped step adds the stored residual (output minus
    block 0's output at the last full step) to this step's block-0 output."""
    torch.manual_seed(0)
    model = build_transformer("tiny", num_decoder_layers=0).eval()
    randomize_(model, 0.05)
    exact, exact_outputs = sample(model, tiny_inputs, None, steps=3, branches=("cond",))
    cached, cached_outputs = sample(model, tiny_inputs, StepCache(threshold=0.0), steps=3, branches=("cond",))
    assert torch.equal(cached, exact) and all(
        torch.equal(a, b) for a, b in zip(cached_outputs, exact_outputs)
    )

    first_block = []
    model.transformer_blocks[0].register_forward_hook(lambda _m, _i, out: first_block.append(out[0]))
    cache = StepCache(threshold=1e9)
    hidden, text = tiny_inputs["hidden_states"], tiny_inputs["encoder_hidden_states"]
    with torch.no_grad():
        full = model(hidden, 900.0, text, step_cache=cache.branch()).sample
        skipped = model(hidden * 0.9, 800.0, text, step_cache=cache.branch()).sample
        block0_full, block0_now = first_block[0], first_block[1]
        uncached = model(hidden, 900.0, text, return_dict=False)[0]
    assert cache.skipped_steps() == [1] and torch.equal(full, uncached)
    from motif_video.models.embeddings import unpatchify

    head = model.proj_out(model.norm_out(block0_now + _last_tokens(model, hidden, 900.0, text) - block0_full,
                                         model.time_text_embed(torch.tensor([800.0]))))  # fmt: skip
    grid = (3, 4, 6)
    expected = unpatchify(head, grid, 2, 1)
    assert (skipped - expected).abs().max() <= 1e-5


def _last_tokens(model, hidden, t, text):
    """The video tokens the head reads (the last encoder block's output), captured with a hook."""
    tokens = []
    handle = model.single_transformer_blocks[-1].register_forward_hook(
        lambda _m, _i, out: tokens.append(out[0])
    )
    with torch.no_grad():
        model(hidden, t, text)
    handle.remove()
    return tokens[0]
