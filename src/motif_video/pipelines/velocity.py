"""One denoising step's velocity: the conditional and unconditional transformer passes, and what they take.

`Conditioning` is what conditions every step besides the text (the 17 condition channels, built by
`motif_video.conditioning.condition_channels`, and the SigLIP tokens); `PassOptions` says how the passes run
(batched or two passes, guidance parallelism, a guidance-distilled student's embedded scale). Both are per call:
the pipelines build them in `plan_run` and pass them down, nothing is stored on the pipeline.

A cache enabled on the transformer from outside (`transformer.enable_cache(FirstBlockCacheConfig(...))`, diffusers'
API; `generate --cache-threshold`) sees each pass under its own `cache_context` name, as in diffusers' pipelines.

Guidance parallelism (`motif_video.parallel.pipeline`): rank 0 runs the cond pass and rank 1 the uncond pass, and
the two predictions are all-gathered: the same numbers as two passes in one process. Context parallelism needs
nothing here: it is attached to the transformer with hooks.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import torch

from .. import flow
from ..choices import GUIDANCE_BATCHING, GuidanceBatching
from ..conditioning import condition_channels
from . import prompts as P

# "auto" batches cond + uncond into one forward when the video is at most this many tokens (per-call overhead
# dominates); above it, two mask-free passes let attention use the fastest kernels and halve activation memory.
AUTO_BATCH_MAX_TOKENS = 8192


@dataclass
class Conditioning:
    """The frame conditioning of one call, shared by cond and uncond; text-to-video has none.

    `latent`: the normalised condition latents [B, 16, t, h, w] from latent frame 0 (a first frame: t = 1; None:
    zeros in all 17 channels); `mask`: each of the t frames' mask value [t] (0: not conditioned, else the
    condition's strength; None: 1 on all t, a first frame); `blur` the timestep-aware blur strength (0: the channels
    are the same at every step); `noise` the starting noise of those t latent frames [B, 16, t, h, w] when
    `keep_first_frame` holds every conditioned frame on its condition's path; `pixels` the frames given at strength
    1, pixel frame -> [B or 1, 3, H, W] in [-1, 1], for the decoder fit after sampling (`decoder_fit`); `guidance` the
    reconstruction guidance scale (`pipelines.reconstruction`; 0: off).
    """

    latent: torch.Tensor | None = None
    image_embeds: torch.Tensor | None = None  # [B, N_img, 1152] SigLIP tokens
    blur: float = 0.0
    noise: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    pixels: dict[int, torch.Tensor] = field(default_factory=dict)
    guidance: float = 0.0  # reconstruction guidance scale (`pipelines.reconstruction`); 0: off
    _channels: dict = field(default_factory=dict, repr=False)  # the last step's channels, by rounded sigma

    @property
    def gives_first_frame(self) -> bool:
        """Whether latent frame 0 is conditioned (an image or a clip prefix at frame 0)."""
        return self.latent is not None and (self.mask is None or float(self.mask[0]) > 0)

    def channels(self, latents: torch.Tensor, sigma: float) -> torch.Tensor:
        """The 17 condition channels [B, 17, T, h, w] at noise level `sigma` (computed once unless blurred)."""
        key = round(sigma, 6) if self.blur > 0 else None
        if key not in self._channels:
            self._channels.clear()
            self._channels[key] = condition_channels(latents, self.latent, sigma, self.blur, self.mask)
        return self._channels[key]

    def settle(self, latents: torch.Tensor, sigma: float) -> torch.Tensor:
        """`latents` at noise level `sigma` with each conditioned latent frame put on its condition latent's path
        (unblurred), (1 - sigma) * clean + sigma * its starting noise, so the sampler ends on it; a frame of strength
        m < 1 moves that fraction of the way. Unchanged without `noise`."""
        if self.noise is None or self.latent is None:
            return latents
        settled = latents.clone()
        t = self.latent.shape[2]
        path = (1.0 - sigma) * self.latent.float() + sigma * self.noise.float()
        if self.mask is None:
            settled[:, :, :t] = path.to(latents.dtype)
            return settled
        m = self.mask.to(path.device, torch.float32).view(1, 1, t, 1, 1)
        current = latents[:, :, :t].float()
        settled[:, :, :t] = torch.where(m > 0, m * path + (1 - m) * current, current).to(latents.dtype)
        return settled


@dataclass(frozen=True)
class PassOptions:
    """How the transformer passes of one call run."""

    batching: GuidanceBatching = "auto"
    attention_kwargs: dict[str, Any] | None = None
    guidance_group: Any = None  # two ranks: rank 0 runs cond, rank 1 uncond (`parallel.pipeline`)
    embedded_guidance: float | None = None  # a guidance-distilled student's input scale

    def __post_init__(self) -> None:
        if self.batching not in GUIDANCE_BATCHING:
            raise ValueError(
                f"guidance_batching must be one of {list(GUIDANCE_BATCHING)}, got {self.batching!r}"
            )


def predict_velocity(
    transformer,
    latents: torch.Tensor,
    sigma: float,
    cond: P.PromptEmbeds,
    uncond: P.PromptEmbeds | None,
    conditioning: Conditioning,
    options: PassOptions,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Conditional and unconditional velocities at `sigma`, as one batched forward or two passes (cond first).

    With a cache enabled on the transformer, each pass runs in its own cache context ("cond", "uncond"); a batched
    pass in one ("cond+uncond": the whole batch skips or runs together), so "auto" batching picks two passes then.
    """
    hidden = torch.cat([latents, conditioning.channels(latents, sigma)], dim=1)
    timestep = torch.full(
        (hidden.shape[0],), flow.timestep_from_sigma(sigma), device=hidden.device, dtype=torch.float32
    )
    image = conditioning.image_embeds
    extra = {} if options.embedded_guidance is None else {"guidance": options.embedded_guidance}

    def forward(h, t, text: P.PromptEmbeds, image, branch: str):
        with cache_context(transformer, branch):
            return transformer(
                hidden_states=h,
                timestep=t,
                encoder_hidden_states=text.embeds,
                encoder_attention_mask=text.mask,
                image_embeds=image,
                attention_kwargs=options.attention_kwargs,
                return_dict=False,
                **extra,
            )[0]

    if uncond is None:
        return forward(hidden, timestep, cond, image, "cond"), None
    if options.guidance_group is not None:
        from ..parallel.pipeline import exchange_guidance

        return exchange_guidance(
            options.guidance_group,
            lambda mine: forward(hidden, timestep, cond if mine == "cond" else uncond, image, mine),
        )
    if batch_guidance(transformer, options, latents):
        image2 = None if image is None else torch.cat([image, image])
        both = (torch.cat([hidden, hidden]), torch.cat([timestep, timestep]), P.concat(cond, uncond), image2)
        v_cond, v_uncond = forward(*both, "cond+uncond").chunk(2)
        return v_cond, v_uncond
    return forward(hidden, timestep, cond, image, "cond"), forward(hidden, timestep, uncond, image, "uncond")


def batch_guidance(transformer, options: PassOptions, latents: torch.Tensor) -> bool:
    """Whether cond and uncond share one forward: as asked, else ("auto") for small videos without a step cache."""
    if options.batching != "auto":
        return options.batching == "batched"
    if _caching(transformer):  # one cache context per guidance pass
        return False
    p, pt = transformer.config.patch_size, transformer.config.patch_size_t
    _, _, t, h, w = latents.shape
    return (t // pt) * (h // p) * (w // p) <= AUTO_BATCH_MAX_TOKENS


def guider_velocity(
    guider,
    transformer,
    latents: torch.Tensor,
    sigma: float,
    step: tuple[int, int],
    cond: P.PromptEmbeds,
    uncond: P.PromptEmbeds | None,
    conditioning: Conditioning,
    options: PassOptions,
) -> torch.Tensor:
    """The guided velocity from a diffusers guider component run through its own protocol (set_state,
    prepare_inputs, one pass per batch it asks for inside `cache_context`, then the guider's combination), as
    diffusers' pipelines do: how `SkipLayerGuidance`, APG's default formulation and the other guiders run here.
    `step`: (index, number of steps)."""
    hidden = torch.cat([latents, conditioning.channels(latents, sigma)], dim=1)
    t = flow.timestep_from_sigma(sigma)
    timestep = torch.full((hidden.shape[0],), t, device=hidden.device, dtype=torch.float32)
    # the state first: how many conditions a guider asks for can change with the step (its start / stop window)
    guider.set_state(step=step[0], num_inference_steps=step[1], timestep=torch.tensor(t))
    texts = (cond,) if guider.num_conditions == 1 or uncond is None else (cond, uncond)
    inputs = {"encoder_hidden_states": tuple(x.embeds for x in texts),
              "encoder_attention_mask": tuple(x.mask for x in texts)}  # fmt: skip
    state = guider.prepare_inputs(inputs)
    for batch in state:
        guider.prepare_models(transformer)
        with transformer.cache_context(getattr(batch, guider._identifier_key)):
            batch.noise_pred = transformer(
                hidden_states=hidden, timestep=timestep, image_embeds=conditioning.image_embeds,
                attention_kwargs=options.attention_kwargs, return_dict=False,
                **{name: getattr(batch, name) for name in inputs},
            )[0]  # fmt: skip
        guider.cleanup_models(transformer)
    return guider(state)[0]


def guider_needs_uncond(guider, num_steps: int) -> bool:
    """Whether a diffusers guider asks for an unconditional pass at any of `num_steps` steps. Its `num_conditions`
    follows the state of the step it was last set to (a start / stop window turns it off on some steps), so the
    question is put to every step of the call rather than to whatever state the previous call left."""
    for step in range(num_steps):
        guider.set_state(step=step, num_inference_steps=num_steps, timestep=torch.tensor(0.0))
        if guider.num_conditions > 1:
            return True
    return False


def cache_context(transformer, name: str):
    """The transformer's cache context `name` when a cache is enabled on it, else nothing."""
    return transformer.cache_context(name) if _caching(transformer) else contextlib.nullcontext()


def _caching(transformer) -> bool:
    """Whether a cache is enabled on the transformer (diffusers' `CacheMixin.is_cache_enabled`)."""
    return bool(getattr(transformer, "is_cache_enabled", False))
