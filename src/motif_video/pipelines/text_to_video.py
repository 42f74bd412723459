"""`MotifVideoPipeline`: text to video."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from ..choices import GuidanceBatching
from ..defaults import SHIFT_T2V
from . import prompts as P
from .base import MotifVideoBasePipeline, MotifVideoPipelineOutput, OutputType
from .guidance import GuidanceConfig
from .run_plan import GivenEmbeds
from .velocity import Conditioning

if TYPE_CHECKING:
    from ..parallel.pipeline import ParallelPlan


class MotifVideoPipeline(MotifVideoBasePipeline):
    """Text-to-video with Motif-Video 2B; a drop-in for diffusers' `MotifVideoPipeline`.

    Differences from the reference, all on purpose: the sampler is Euler with a static shift read from the
    scheduler config (15 when it names none); the default negative prompt is the 39-term trained one; prompt padding
    is trimmed so attention runs without a mask; cond and uncond may share one forward; decoding streams frames off
    the accelerator.
    """

    default_shift = SHIFT_T2V

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        negative_prompt: str | list[str] | None = None,
        height: int | None = None,
        width: int | None = None,
        num_frames: int | None = None,
        num_inference_steps: int | None = None,
        timesteps: list[float] | None = None,
        num_videos_per_prompt: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        prompt_attention_mask: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        negative_prompt_attention_mask: torch.Tensor | None = None,
        output_type: OutputType = "pil",
        return_dict: bool = True,
        attention_kwargs: dict[str, Any] | None = None,
        callback_on_step_end=None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
        max_sequence_length: int = P.MAX_SEQUENCE_LENGTH,
        vae_batch_size: int | None = None,
        guidance_scale: float | None = None,
        sigmas: list[float] | None = None,
        *,
        guidance: str | GuidanceConfig | None = None,
        apg_eta: float | None = None,
        apg_norm_dims: tuple[int, ...] | None = None,
        apg_norm_threshold: float | None = None,
        apg_momentum: float | None = None,
        shift: float | None = None,
        guidance_batching: GuidanceBatching = "auto",
        parallel: ParallelPlan | None = None,
        stream_decode: bool = True,
        video=None,
        strength: float = 1.0,
        repaint_first_frame: bool | None = None,
        decoder_fit_steps: int | None = None,
        callback_on_fit_step=None,
    ) -> MotifVideoPipelineOutput | tuple:
        """Generate videos. Size and negative prompt left None come from the folder's generation_config.json, else
        736x1280, 121 frames and the 39-term trained negative prompt; "" is an empty negative prompt. With `latents`
        given, a size left None is theirs (8 h x 8 w x 4 (T - 1) + 1 frames), as in diffusers.

        Guidance defaults to the folder's guider config, else APG (scale 8, norm threshold 12, momentum 0.1, eta 1,
        norm dims (-1, -2, -4)); `guidance` picks "apg", "cfg" or "none". `shift` overrides the scheduler config.
        Step caching is enabled on the transformer (`pipe.transformer.enable_cache(FirstBlockCacheConfig(threshold))`:
        skips steps whose first-block residual barely changed, threshold 0 is exact; `pipe.transformer.cache_report()`
        lists the skipped steps per guidance pass).
        `parallel`: the plan `motif_video.parallel.pipeline.enable_parallel` returned (under torchrun).
        diffusers' arguments work as there: `timesteps` / `sigmas` (N noise levels, then shifted like the default
        schedule, as diffusers' scheduler shifts them), `prompt_embeds` / `negative_prompt_embeds` and their masks
        (e.g. from `encode_prompt` of a pipeline loaded with `transformer=None`), `vae_batch_size`; a diffusers
        guider component other than APG (original formulation) or plain CFG runs through its own protocol.
        Video-to-video (SDEdit): `video` (a list of PIL frames, an [F, H, W, 3] array, an [F, 3, H, W] tensor or a
        video file's path, read as a `VideoCondition`'s) and `strength` in (0, 1]: the first N - int(N * strength) steps are
        skipped and sampling starts from the video's latents noised to the next sigma (1: from pure noise). Frame
        count left None: the video's, cut to 4k + 1 and to the folder's length; size left None: as `video_size`
        chooses it (the video's own, or its shape at the folder's size; the video is resized).
        `repaint_first_frame=True` re-encodes latent frame 0 from pixel frame 1 after sampling
        (`motif_video.pipelines.latents.repaint_first_latent`: for a model that draws the causal VAE's first-frame
        latent worse than the rest); None: the folder's generation_config.json, else off as released.
        `decoder_fit_steps`: Adam steps that fit the repainted latent through the decoder so that it decodes to
        pixel frame 1 (`motif_video.pipelines.decoder_fit`); None: the folder's generation_config.json, else 0.
        `callback_on_fit_step(pipe)` is called after each of those steps (`pipe.num_fit_steps` in all, known from the
        first `callback_on_step_end` on): a progress count past the sampling steps.
        """
        given = GivenEmbeds(
            prompt_embeds, prompt_attention_mask, negative_prompt_embeds, negative_prompt_attention_mask
        )
        self.check_call(
            prompt,
            negative_prompt,
            (height, width),
            given,
            callback_on_step_end,
            callback_on_step_end_tensor_inputs,
            fit_callback=callback_on_fit_step,
        )
        height, width, num_frames = self.latents_size(latents, height, width, num_frames)
        video = self.read_video(video, num_frames)
        height, width, num_frames = self.video_size(video, strength, height, width, num_frames)
        run = self.plan_run(
            prompt, negative_prompt, (height, width, num_frames), num_inference_steps, guidance, guidance_scale, shift,
            output_type, num_videos_per_prompt, parallel=parallel, given=given, schedule=(timesteps, sigmas),
            apg=dict(eta=apg_eta, norm_dims=apg_norm_dims, norm_threshold=apg_norm_threshold, momentum=apg_momentum),
            passes=dict(batching=guidance_batching, attention_kwargs=attention_kwargs),
        )  # fmt: skip
        fit_steps = self.decoder_fit_steps(decoder_fit_steps)  # errors before any model runs
        device = self.device_for_run
        cond, uncond = self.prompt_embeddings(run, num_videos_per_prompt, max_sequence_length, device, given)
        self._release_text_encoder()
        batch = len(run.prompts) * num_videos_per_prompt
        source = self.video_start(video, strength, run, "stretch", device) if video is not None else None
        latents = self.prepare_latents(
            batch, run.height, run.width, run.num_frames, generator, latents, device
        )
        if source is not None:
            run, latents = self.noised_start(run, source, latents, strength)
        conditioning = Conditioning()
        self._num_fit_steps = self.decoder_fit_step_count(
            latents, repaint_first_frame, conditioning, fit_steps
        )
        latents = self.sample(
            latents, run, cond, uncond, conditioning, callback_on_step_end, callback_on_step_end_tensor_inputs
        )
        latents = self.repaint_unconditioned_first_frame(
            latents, repaint_first_frame, conditioning, fit_steps, callback_on_fit_step
        )
        frames = self.decode(latents, output_type, stream_decode, vae_batch_size)
        self.maybe_free_model_hooks()
        return MotifVideoPipelineOutput(frames=frames) if return_dict else (frames,)
