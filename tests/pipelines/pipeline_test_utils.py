"""Constants and helpers shared by the pipeline tests (imported by module name; pytest puts this folder on sys.path)."""

from __future__ import annotations

PROMPT = "a red ball moving left over the sea"
SIZE = {"height": 64, "width": 96, "num_frames": 9}
# (eta, norm dims, norm threshold): as released in diffusers, and Motif's ComfyUI setting with clipping active.
APG_SETTINGS = [(1.0, (-1, -2, -4), 12.0), (0.0, (-1, -2, -3), 0.5)]


def reference_guider(eta=1.0, dims=(-1, -2, -4), threshold=12.0):
    """diffusers' APG configured like our defaults (the reference pipeline runs cond then uncond as two passes)."""
    from diffusers import AdaptiveProjectedGuidance

    return AdaptiveProjectedGuidance(
        guidance_scale=8.0,
        adaptive_projected_guidance_momentum=0.1,
        adaptive_projected_guidance_rescale=threshold,
        adaptive_projected_guidance_norm_dim=list(dims),
        eta=eta,
        use_original_formulation=True,
    )


def quiet(pipeline_class, folder, **kwargs):
    """`pipeline_class.from_pretrained(folder, **kwargs)` (ours or diffusers') with its progress bars off."""
    pipe = pipeline_class.from_pretrained(folder, **kwargs)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def check_folder_default(pipe, call, kw: dict, name: str, value, on, off) -> None:
    """With the folder's generation_config.json giving `name=value`, `call(pipe, **kw)` gives `on`, and the call's own
    `name=0` still gives `off` (the call's value wins)."""
    import torch

    from motif_video.defaults import GenerationDefaults

    saved = pipe.generation_defaults
    try:
        pipe.generation_defaults = GenerationDefaults(**{name: value})
        torch.testing.assert_close(call(pipe, **kw), on)
        assert torch.equal(call(pipe, **{name: 0}, **kw), off)
    finally:
        pipe.generation_defaults = saved
