"""What the text-to-video and image-to-video pipelines share: loading, prompts, the denoising loop, decoding.

`__call__` of each pipeline is a handful of named stages (check, encode prompts, noise, condition, sample, decode);
the loop itself is `sample`. The sampler is flow-matching Euler with a static shift (`motif_video.flow`); the
`scheduler` component is kept for compatibility and read only for its shift.

Speed options reach the loop here: a `StepCache` (one cache branch per guidance pass; see `predict_velocity`) and
multi-process guidance (`motif_video.parallel.pipeline`: the cond and uncond passes on two ranks, predictions
exchanged). Context parallelism needs nothing from the loop: it is attached to the transformer with hooks.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Literal

import torch
from diffusers import DiffusionPipeline
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from diffusers.video_processor import VideoProcessor

from .. import defaults as D
from .. import flow
from ..defaults import GenerationDefaults
from ..hub import DEFAULT_MODEL_ID, resolve_folder
from ..options import GuidanceBatching, check_video_size
from ..perf.step_cache import StepCache
from . import prompts as P
from .guidance import GuidanceConfig, Guider, config_from_guider
from .latents import decode_latents
from .lora import MotifVideoLoraLoaderMixin
from .sampling import SamplerChoice, choose_shift, scheduler_config_of
from .students import embedded_guidance, load_student_pipeline

OutputType = Literal["pil", "np", "pt", "latent"]
OUTPUT_TYPES = ("pil", "np", "pt", "latent")
# "auto" batches cond + uncond into one forward when the video is at most this many tokens (per-call overhead
# dominates); above it, two mask-free passes let attention use the fastest kernels and halve activation memory.
AUTO_BATCH_MAX_TOKENS = 8192
# The diffusers loader arguments that also locate the folder.
_HUB_KWARGS = ("revision", "cache_dir", "local_files_only", "token")


@dataclass
class MotifVideoPipelineOutput(BaseOutput):
    """`frames`: per video, a list of PIL images (pil), [B, F, H, W, 3] in [0, 1] (np), [B, F, 3, H, W] (pt), or
    normalised latents [B, 16, T, h, w] (latent)."""

    frames: Any


@dataclass
class Conditioning:
    """The 17 extra input channels (first-frame latent + mask) and optional SigLIP tokens, shared by cond and uncond."""

    latent: torch.Tensor  # [B, 16, T, h, w]
    mask: torch.Tensor  # [B, 1, T, h, w]
    image_embeds: torch.Tensor | None = None  # [B, N_img, 1152]
    # I2V `keep_first_frame`: the starting noise of latent frame 0 [B, 16, 1, h, w] (None: frame 0 is generated)
    first_noise: torch.Tensor | None = None

    def at(self, sigma: float) -> Conditioning:
        """The conditioning used at noise level `sigma` (constant unless the I2V blur is on)."""
        return self

    def settle(self, latents: torch.Tensor, sigma: float) -> torch.Tensor:
        """`latents` at noise level `sigma` with latent frame 0 put on the first-frame latent's path (`latent` at
        frame 0, unblurred), (1 - sigma) * clean + sigma * its starting noise, so the sampler ends on it; unchanged
        without `first_noise`."""
        if self.first_noise is None:
            return latents
        settled = latents.clone()
        first = (1.0 - sigma) * self.latent[:, :, :1].float() + sigma * self.first_noise.float()
        settled[:, :, :1] = first.to(latents.dtype)
        return settled


@dataclass
class RunPlan:
    """One call's settings once the folder's defaults are filled in and checked: what both pipelines sample with."""

    prompts: list[str]
    negative_prompt: str | list[str]
    height: int
    width: int
    num_frames: int
    guidance: GuidanceConfig
    sigmas: torch.Tensor  # N + 1 values, float64


class MotifVideoBasePipeline(DiffusionPipeline, MotifVideoLoraLoaderMixin):
    model_cpu_offload_seq = "text_encoder->transformer->vae"
    _optional_components = ["scheduler", "guider", "feature_extractor"]
    _callback_tensor_inputs = ["latents", "prompt_embeds", "negative_prompt_embeds"]
    default_shift: float = D.SHIFT_T2V

    def __init__(
        self,
        transformer,
        vae,
        text_encoder,
        tokenizer,
        scheduler=None,
        guider=None,
        feature_extractor=None,
    ) -> None:
        super().__init__()
        # The transformer first: the pipeline's device is that of its first module.
        self.register_modules(
            transformer=transformer,
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            scheduler=scheduler,
            guider=guider,
            feature_extractor=feature_extractor,
        )
        # Saved folders keep the released model_index.json entry for the transformer.
        if transformer is not None:
            self.register_to_config(transformer=("diffusers", "MotifVideoTransformer3DModel"))
        self.vae_scale_spatial = vae.config.scale_factor_spatial if vae is not None else 8
        self.vae_scale_temporal = vae.config.scale_factor_temporal if vae is not None else 4
        self.video_processor = VideoProcessor(vae_scale_factor=self.vae_scale_spatial)
        self.release_text_encoder = True
        self.run_device: torch.device | None = None  # set by memory modes that move weights off the device
        self.last_sampler: SamplerChoice | None = None
        self.last_step_cache: StepCache | None = None  # the cache of the last call, to read its report
        # Set by `motif_video.parallel.pipeline.enable_parallel`: the process groups of the parallel modes in use.
        self.context_group: Any = None
        self.guidance_group: Any = None
        self.folder_pipeline_class: str | None = (
            None  # model_index.json `_class_name` of the folder loaded from
        )
        self._interrupt = False
        # Distilled students (pipelines/students.py): the folder's generation defaults, and the guidance scale a
        # guidance-distilled transformer takes as input (None for ordinary models).
        self.generation_defaults = GenerationDefaults()
        self.embedded_guidance: float | None = None

    # ------------------------------------------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | os.PathLike = DEFAULT_MODEL_ID, **kwargs: Any
    ) -> MotifVideoBasePipeline:
        """Load the released folder layout from a local folder or a Hub id, always with motif-video's transformer.

        Accepts diffusers' loader arguments (`torch_dtype`, `revision`, components to replace, ...). An offline or
        unreachable Hub gives a `ValueError` saying how to point at a local folder instead.
        """
        from ..models import MotifVideoTransformer

        hub = {k: kwargs[k] for k in _HUB_KWARGS if k in kwargs}
        folder = resolve_folder(pretrained_model_name_or_path, **hub)
        defaults = GenerationDefaults.read(folder)
        if defaults is not None and defaults.is_student and kwargs.get("transformer") is None:
            return load_student_pipeline(cls, folder, defaults, kwargs)
        dtype = kwargs.pop("torch_dtype", None) or kwargs.get("dtype")  # diffusers 0.42 renamed it `dtype`
        if dtype is not None:
            kwargs["dtype"] = dtype
        if kwargs.get("transformer") is None:
            kwargs["transformer"] = MotifVideoTransformer.from_pretrained(
                folder, subfolder="transformer", torch_dtype=dtype
            )
        kwargs.pop("local_files_only", None)
        pipe = super().from_pretrained(folder, local_files_only=True, **kwargs)
        index = folder / "model_index.json"
        pipe.folder_pipeline_class = (
            json.loads(index.read_text()).get("_class_name") if index.is_file() else None
        )
        pipe.generation_defaults = defaults or GenerationDefaults()
        return pipe

    @classmethod
    def from_pipe(cls, pipeline: MotifVideoBasePipeline, **components: Any) -> MotifVideoBasePipeline:
        """A pipeline of this class on `pipeline`'s modules (any replaced by keyword), with its folder's generation
        defaults and layout, e.g. `MotifVideoImageToVideoPipeline.from_pipe(t2v)` loads nothing twice."""
        unknown = sorted(set(components) - set(pipeline.components))
        if unknown:
            raise ValueError(f"unknown components {unknown}; known: {sorted(pipeline.components)}")
        new = cls(**{**pipeline.components, **components})
        new.generation_defaults = pipeline.generation_defaults
        new.folder_pipeline_class = pipeline.folder_pipeline_class
        return new

    # ------------------------------------------------------------------------------------------------- properties
    @property
    def device_for_run(self) -> torch.device:
        return self.run_device or self._execution_device

    @property
    def interrupt(self) -> bool:
        return self._interrupt

    def interrupt_now(self) -> None:
        """Stop after the current step (callable from a step callback)."""
        self._interrupt = True

    # --------------------------------------------------------------------------------------------------- stages
    def check_size(self, height: int, width: int, num_frames: int) -> None:
        check_video_size(width, height, num_frames)

    def plan_run(
        self,
        prompt: str | list[str] | None,
        negative_prompt: str | list[str] | None,
        size: tuple[int | None, int | None, int | None],
        num_inference_steps: int | None,
        guidance: str | GuidanceConfig | None,
        guidance_scale: float | None,
        shift: float | None,
        output_type: str,
        num_videos_per_prompt: int,
        **apg: Any,
    ) -> RunPlan:
        """Fill what the call left None from the folder's generation_config.json (else the released defaults:
        736x1280, 121 frames, 50 steps), check it, and resolve guidance (`apg`: eta, norm_dims, norm_threshold,
        momentum) and the sigma schedule. Sets `embedded_guidance` for guidance-distilled students."""
        height, width, num_frames = size
        height, width, num_frames, negative_prompt = self.generation_defaults.fill_size(
            height, width, num_frames, negative_prompt
        )
        self.check_size(height, width, num_frames)
        num_inference_steps, guidance, guidance_scale, shift = self.generation_defaults.fill(
            num_inference_steps, guidance, guidance_scale, shift
        )
        self._check_common(output_type, num_videos_per_prompt, num_inference_steps)
        guidance_cfg = self.guidance_config(guidance, scale=guidance_scale, **apg)
        guidance_cfg, self.embedded_guidance = embedded_guidance(self.transformer, guidance_cfg)
        self._interrupt = False
        return RunPlan(
            prompts=P.as_prompt_list(prompt),
            negative_prompt=negative_prompt,
            height=height,
            width=width,
            num_frames=num_frames,
            guidance=guidance_cfg,
            sigmas=flow.sampling_sigmas(num_inference_steps, self.choose_sampler(shift).shift),
        )

    def guidance_config(self, guidance: str | GuidanceConfig | None, **overrides: Any) -> GuidanceConfig:
        """Defaults (SYSTEM.md), then the folder's guider config, then call arguments."""
        if isinstance(guidance, GuidanceConfig):
            return guidance
        return config_from_guider(self.guider, mode=guidance, **overrides)

    def encode_prompt(
        self,
        prompt: str | list[str],
        negative_prompt: str | list[str] | None = None,
        num_videos_per_prompt: int = 1,
        do_guidance: bool = True,
        max_sequence_length: int = P.MAX_SEQUENCE_LENGTH,
        device: torch.device | None = None,
    ) -> tuple[P.PromptEmbeds, P.PromptEmbeds | None]:
        """Prompt (and negative prompt) embeddings repeated per video; None for the negative without guidance.

        `negative_prompt=None` means the default 39-term negative prompt; pass "" for an empty one.
        """
        device = device or self.device_for_run
        prompts = P.as_prompt_list(prompt)
        negatives = None
        if do_guidance:
            negative_prompt = P.DEFAULT_NEGATIVE_PROMPT if negative_prompt is None else negative_prompt
            negatives = (
                [negative_prompt] * len(prompts) if isinstance(negative_prompt, str) else negative_prompt
            )
            if len(negatives) != len(prompts):
                raise ValueError(f"negative_prompt has {len(negatives)} entries for {len(prompts)} prompts")
        self._text_encoder_to(device)
        dtype = self.transformer.dtype

        def encode(texts: list[str]) -> P.PromptEmbeds:
            embeds = P.encode_prompts(
                self.text_encoder, self.tokenizer, texts, device, dtype, max_sequence_length
            )
            return embeds.repeat_interleave(num_videos_per_prompt)

        cond = encode(prompts)
        uncond = encode(negatives) if negatives is not None else None
        return cond, uncond

    def prepare_latents(
        self,
        batch: int,
        height: int,
        width: int,
        num_frames: int,
        generator: torch.Generator | list[torch.Generator] | None,
        latents: torch.Tensor | None,
        device: torch.device,
    ) -> torch.Tensor:
        shape = (
            batch,
            self.vae.config.z_dim,
            (num_frames - 1) // self.vae_scale_temporal + 1,
            height // self.vae_scale_spatial,
            width // self.vae_scale_spatial,
        )
        dtype = self.transformer.dtype
        if latents is not None:
            if tuple(latents.shape) != shape:
                raise ValueError(f"latents must have shape {list(shape)}, got {list(latents.shape)}")
            return latents.to(device=device, dtype=dtype)
        if isinstance(generator, list) and len(generator) != batch:
            raise ValueError(f"got {len(generator)} generators for {batch} videos; pass one or one per video")
        return randn_tensor(shape, generator=generator, device=device, dtype=dtype)

    def choose_sampler(self, shift: float | None) -> SamplerChoice:
        self.last_sampler = choose_shift(scheduler_config_of(self.scheduler), self.default_shift, shift)
        return self.last_sampler

    # ------------------------------------------------------------------------------------------------------ loop
    def predict_velocity(
        self,
        latents: torch.Tensor,
        sigma: float,
        cond: P.PromptEmbeds,
        uncond: P.PromptEmbeds | None,
        conditioning: Conditioning,
        batching: GuidanceBatching = "auto",
        attention_kwargs: dict | None = None,
        step_cache: StepCache | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Conditional and unconditional velocities at `sigma`, as one batched forward or two passes (cond first).

        With a `step_cache`, each pass uses its own cache branch ("cond", "uncond"); a batched pass uses one branch
        ("cond+uncond": the whole batch skips or runs together), so "auto" batching picks two passes when caching.
        Under guidance parallelism (two ranks) rank 0 runs the cond pass and rank 1 the uncond pass, and the two
        predictions are all-gathered: the same numbers as two passes in one process.
        """
        hidden = torch.cat([latents, conditioning.latent, conditioning.mask], dim=1)
        timestep = torch.full(
            (hidden.shape[0],), flow.timestep_from_sigma(sigma), device=hidden.device, dtype=torch.float32
        )

        def forward(h, t, text: P.PromptEmbeds, image, branch: str):
            return self.transformer(
                hidden_states=h,
                timestep=t,
                encoder_hidden_states=text.embeds,
                encoder_attention_mask=text.mask,
                image_embeds=image,
                attention_kwargs=attention_kwargs,
                return_dict=False,
                **({} if self.embedded_guidance is None else {"guidance": self.embedded_guidance}),
                **({} if step_cache is None else {"step_cache": step_cache.branch(branch)}),
            )[0]

        image = conditioning.image_embeds
        if uncond is None:
            return forward(hidden, timestep, cond, image, "cond"), None
        if self.guidance_group is not None:
            from ..parallel.pipeline import exchange_guidance

            return exchange_guidance(
                self.guidance_group,
                lambda mine: forward(hidden, timestep, cond if mine == "cond" else uncond, image, mine),
            )
        if self._batch_guidance(batching, latents, step_cache is not None):
            both = P.concat(cond, uncond)
            image2 = None if image is None else torch.cat([image, image])
            out = forward(
                torch.cat([hidden, hidden]), torch.cat([timestep, timestep]), both, image2, "cond+uncond"
            )
            v_cond, v_uncond = out.chunk(2)
            return v_cond, v_uncond
        return forward(hidden, timestep, cond, image, "cond"), forward(
            hidden, timestep, uncond, image, "uncond"
        )

    def _batch_guidance(
        self, batching: GuidanceBatching, latents: torch.Tensor, caching: bool = False
    ) -> bool:
        if batching not in ("auto", "batched", "sequential"):
            raise ValueError(f"guidance_batching must be 'auto', 'batched' or 'sequential', got {batching!r}")
        if batching != "auto":
            return batching == "batched"
        if caching:  # one cache branch per guidance pass
            return False
        p, pt = self.transformer.config.patch_size, self.transformer.config.patch_size_t
        _, _, t, h, w = latents.shape
        return (t // pt) * (h // p) * (w // p) <= AUTO_BATCH_MAX_TOKENS

    def sample(
        self,
        latents: torch.Tensor,
        sigmas: torch.Tensor,
        cond: P.PromptEmbeds,
        uncond: P.PromptEmbeds | None,
        conditioning: Conditioning,
        guidance: GuidanceConfig,
        batching: GuidanceBatching = "auto",
        attention_kwargs: dict | None = None,
        callback_on_step_end=None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
        step_cache: StepCache | None = None,
    ) -> torch.Tensor:
        """Euler steps over `sigmas` (N + 1 values ending at 0) with guidance; returns the final latents.

        `step_cache` is reset first; its `report()` afterwards lists the steps each guidance branch skipped.
        """
        guider = Guider(guidance)
        self.last_step_cache = step_cache
        if step_cache is not None:
            step_cache.reset()
            if self.context_group is not None and step_cache.process_group is None:
                step_cache.process_group = self.context_group  # every rank must take the same decision
        steps = len(sigmas) - 1
        self._num_timesteps = steps
        inputs = callback_on_step_end_tensor_inputs or ["latents"]
        latents = conditioning.settle(latents, float(sigmas[0]))
        with self.progress_bar(total=steps) as bar:
            for i in range(steps):
                if self.interrupt:
                    break
                sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
                self._current_timestep = flow.timestep_from_sigma(sigma)
                v_cond, v_uncond = self.predict_velocity(
                    latents,
                    sigma,
                    cond,
                    uncond,
                    conditioning.at(sigma),
                    batching,
                    attention_kwargs,
                    step_cache,
                )
                velocity = guider(v_cond, v_uncond)
                latents = flow.euler_step(latents, velocity, sigma, sigma_next).to(v_cond.dtype)
                latents = conditioning.settle(latents, sigma_next)
                if callback_on_step_end is not None:
                    latents, cond, uncond = self._run_callback(
                        callback_on_step_end, inputs, i, sigma, latents, cond, uncond
                    )
                bar.update()
        self._current_timestep = None
        return latents

    def _run_callback(self, callback, inputs, i, sigma, latents, cond, uncond):
        available = {
            "latents": latents,
            "prompt_embeds": cond.embeds,
            "negative_prompt_embeds": None if uncond is None else uncond.embeds,
        }
        unknown = set(inputs) - set(available)
        if unknown:
            raise ValueError(
                f"callback tensor inputs {sorted(unknown)} unknown; allowed: {sorted(available)}"
            )
        t = torch.tensor(flow.timestep_from_sigma(sigma))
        out = callback(self, i, t, {k: available[k] for k in inputs}) or {}
        latents = out.get("latents", latents)
        if "prompt_embeds" in out:
            cond = P.PromptEmbeds(out["prompt_embeds"], cond.mask)
        if "negative_prompt_embeds" in out and uncond is not None:
            uncond = P.PromptEmbeds(out["negative_prompt_embeds"], uncond.mask)
        return latents, cond, uncond

    # ---------------------------------------------------------------------------------------------------- output
    def decode(self, latents: torch.Tensor, output_type: OutputType, stream: bool = True):
        if output_type == "latent":
            return latents
        video = decode_latents(self.vae, latents, output_device="cpu", stream=stream)
        return self.video_processor.postprocess_video(video.float(), output_type=output_type)

    # --------------------------------------------------------------------------------------------------- helpers
    def _text_encoder_to(self, device: torch.device) -> None:
        """Bring a released text encoder back before encoding (no-op under offload hooks)."""
        te = self.text_encoder
        if getattr(te, "_hf_hook", None) is None and not _has_group_offload(te) and te.device != device:
            te.to(device)

    def _release_text_encoder(self) -> None:
        """Move the text encoder off the accelerator once prompts (and the image) are encoded."""
        te = self.text_encoder
        if (
            not self.release_text_encoder
            or getattr(te, "_hf_hook", None) is not None
            or _has_group_offload(te)
        ):
            return
        if te.device.type != "cpu":
            te.to("cpu")
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    @staticmethod
    def _check_common(output_type: str, num_videos_per_prompt: int, num_inference_steps: int) -> None:
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {list(OUTPUT_TYPES)}, got {output_type!r}")
        if num_videos_per_prompt < 1:
            raise ValueError(f"num_videos_per_prompt must be >= 1, got {num_videos_per_prompt}")
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")

    @staticmethod
    def _callback_inputs(callback, tensor_inputs: list[str] | None) -> list[str] | None:
        if isinstance(callback, PipelineCallback | MultiPipelineCallbacks):
            return callback.tensor_inputs
        return tensor_inputs


def _has_group_offload(module: torch.nn.Module) -> bool:
    from diffusers.hooks.group_offloading import _is_group_offload_enabled

    return _is_group_offload_enabled(module)
