"""What the text-to-video and image-to-video pipelines share: loading, prompts, the denoising loop, decoding.

`__call__` of each pipeline is a handful of named stages (check, encode prompts, noise, condition, sample, decode);
the loop itself is `sample`. The sampler is flow-matching Euler with a static shift (`motif_video.flow`); the
`scheduler` component is kept for compatibility and read only for its shift.

Each call's settings travel as a `RunPlan` (`run_plan.py`: size, guidance, sigmas, sampler, and `PassOptions`:
batching, guidance parallelism) through the stages; the pipeline keeps no per-call state besides `last_run`, the
plan of the last call (`last_sampler` reads it). One step's transformer passes are `velocity.predict_velocity`.
Context parallelism needs nothing from the loop: it is attached to the transformer with hooks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

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
from ..notices import LOADER_NOTICES, dropped
from ..options import check_video_size
from . import prompts as P
from .decoder_fit import fit_latent_frames, fit_step_count
from .guidance import GuidanceConfig, Guider, config_from_guider, runs_own_protocol
from .latents import decode_latents, repaint_first_latent, repaint_fit_step_count, to_model_latents
from .lora import MotifVideoLoraLoaderMixin
from .reconstruction import reconstruction_pull
from .run_plan import GivenEmbeds, RunPlan, call_prompts, call_sigmas, check_strength, first_kept_step
from .sampling import SamplerChoice, choose_shift, scheduler_config_of
from .students import embedded_guidance, load_student_pipeline
from .velocity import Conditioning, PassOptions, guider_velocity, predict_velocity

if TYPE_CHECKING:
    from ..parallel.pipeline import ParallelPlan

OutputType = Literal["pil", "np", "pt", "latent"]
OUTPUT_TYPES = ("pil", "np", "pt", "latent")
# The diffusers loader arguments that also locate the folder.
_HUB_KWARGS = ("revision", "cache_dir", "local_files_only", "token")


@dataclass
class MotifVideoPipelineOutput(BaseOutput):
    """`frames`: per video, a list of PIL images (pil), [B, F, H, W, 3] in [0, 1] (np), [B, F, 3, H, W] (pt), or
    normalised latents [B, 16, T, h, w] (latent)."""

    frames: Any


class MotifVideoBasePipeline(DiffusionPipeline, MotifVideoLoraLoaderMixin):
    model_cpu_offload_seq = "text_encoder->transformer->vae"
    _optional_components = ["scheduler", "guider", "feature_extractor"]
    # diffusers' three, then the masks of the embeddings shown (which a callback may return with new embeddings)
    _callback_tensor_inputs = [
        "latents",
        "prompt_embeds",
        "negative_prompt_embeds",
        "prompt_attention_mask",
        "negative_prompt_attention_mask",
    ]
    default_shift: float = D.SHIFT_T2V

    def __init__(
        self,
        scheduler,
        vae,
        text_encoder,
        tokenizer,
        transformer,
        guider=None,
        feature_extractor=None,
    ) -> None:
        """diffusers' order of components (scheduler, vae, text_encoder, tokenizer, transformer, guider,
        feature_extractor); `scheduler` and `guider` may be None (the released sampler and guidance)."""
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
        self.release_text_encoder = True  # move the text encoder off the accelerator once prompts are encoded
        # Set when loading: the folder's model_index.json `_class_name`, the scheduler the folder gave (a scheduler
        # passed in, or set later, is the caller's and always honoured) and its generation defaults.
        self.folder_pipeline_class: str | None = None
        self.folder_scheduler = None
        self.generation_defaults = GenerationDefaults()
        self.last_run: RunPlan | None = (
            None  # the plan of the last call (its sampler, its step cache's report)
        )
        self._interrupt = False
        self._guidance_scale: float | None = None
        self._num_timesteps: int | None = None
        self._num_fit_steps: int | None = None
        self._current_timestep: torch.Tensor | None = None

    # ------------------------------------------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | os.PathLike = DEFAULT_MODEL_ID, **kwargs: Any
    ) -> MotifVideoBasePipeline:
        """Load the released folder layout from a local folder or a Hub id, always with motif-video's transformer.

        Accepts diffusers' loader arguments (`torch_dtype`, `revision`, components to replace, ...). Without a dtype
        every component loads in float32, the text encoder too (diffusers' models do; transformers >= 5 would keep a
        text encoder's stored dtype). An offline or unreachable Hub gives a `ValueError` saying how to point at a
        local folder instead.
        """
        from ..model_folder import load_training_output, named_load_errors, training_output
        from ..models import MotifVideoTransformer

        if (
            kwargs.get("torch_dtype") is None
            and kwargs.get("dtype") is None
            and "quantization_config" not in kwargs
        ):
            # float32 unless asked (or a quantization config chooses): transformers >= 5 would load the text encoder
            # in its stored dtype (the small folder's float16), and the pipeline would not give what `generate` gives
            kwargs.pop("torch_dtype", None)
            kwargs["dtype"] = torch.float32
        hub = {k: kwargs[k] for k in _HUB_KWARGS if k in kwargs}
        folder = resolve_folder(pretrained_model_name_or_path, **hub)
        defaults = GenerationDefaults.read(folder)
        if defaults is not None and defaults.is_student:
            with named_load_errors(folder):
                return load_student_pipeline(cls, folder, defaults, kwargs)
        run = training_output(folder)  # `motif-video train` / `distill` output: components from its recipe
        if run is not None:
            return load_training_output(cls, run, kwargs)
        if not (folder / "model_index.json").is_file():
            raise ValueError(
                f"{folder} is not a model folder: no model_index.json (a pipeline folder), no config.json of a "
                "training output, no generation_config.json of a student"
            )
        dtype = kwargs.pop("torch_dtype", None) or kwargs.get("dtype")  # diffusers 0.42 renamed it `dtype`
        if dtype is not None:
            kwargs["dtype"] = dtype  # a dtype, or per component {"transformer": ..., "default": ...}
        transformer_dtype = (
            dtype.get("transformer", dtype.get("default")) if isinstance(dtype, dict) else dtype
        )
        if "transformer" not in kwargs:
            with named_load_errors(folder / "transformer"):
                kwargs["transformer"] = MotifVideoTransformer.from_pretrained(
                    folder,
                    subfolder="transformer",
                    torch_dtype=transformer_dtype,
                    variant=kwargs.get("variant"),
                )
        kwargs.pop("local_files_only", None)
        with named_load_errors(folder), dropped(LOADER_NOTICES):  # diffusers' notices for this load only
            pipe = super().from_pretrained(folder, local_files_only=True, **kwargs)
        index = folder / "model_index.json"
        pipe.folder_pipeline_class = (
            json.loads(index.read_text()).get("_class_name") if index.is_file() else None
        )
        pipe.folder_scheduler = None if "scheduler" in kwargs else pipe.scheduler
        pipe.generation_defaults = defaults or GenerationDefaults()
        return pipe

    @classmethod
    def from_pipe(cls, pipeline: DiffusionPipeline, **kwargs: Any) -> MotifVideoBasePipeline:
        """A pipeline of this class on `pipeline`'s modules (any replaced by keyword), with its folder's generation
        defaults and layout, e.g. `MotifVideoImageToVideoPipeline.from_pipe(t2v)` loads nothing twice. As diffusers'
        `from_pipe`: `torch_dtype` (or `dtype`) casts the new pipeline, and `pipeline` may be diffusers' own Motif
        pipeline (its modules, the released defaults)."""
        dtype = kwargs.pop("torch_dtype", None) or kwargs.pop("dtype", None)
        known = set(pipeline.components)
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise ValueError(
                f"unknown components {unknown}; known: {sorted(known)} (and torch_dtype / dtype)"
            )
        new = cls(**{**pipeline.components, **kwargs})
        new.generation_defaults = getattr(pipeline, "generation_defaults", None) or GenerationDefaults()
        new.folder_pipeline_class = getattr(pipeline, "folder_pipeline_class", None)
        new.folder_scheduler = getattr(pipeline, "folder_scheduler", None)
        return new.to(dtype=dtype) if dtype is not None else new

    def save_pretrained(self, save_directory: str | os.PathLike, *args: Any, **kwargs: Any) -> None:
        """diffusers' `save_pretrained` (same arguments), with the pipeline's generation defaults written as the
        folder's `generation_config.json` when it has any, so that `from_pretrained` of the saved folder generates
        what this pipeline does (and one an earlier save left there removed when it has none). Written first, so that `push_to_hub=True` uploads it too; a student's link to its
        base model (`base_model`, `adapter`) is left out: the saved folder holds every component."""
        transformer = getattr(self, "transformer", None)
        if transformer is not None and hasattr(transformer, "check_no_lora_layers"):
            transformer.check_no_lora_layers()  # before any file is written
        defaults = dataclasses.replace(self.generation_defaults, base_model=None, adapter=None)
        if defaults != GenerationDefaults():
            defaults.write(save_directory)
        else:  # none: a file an earlier save left there would give the folder defaults this pipeline lacks
            (Path(save_directory) / D.GENERATION_CONFIG_NAME).unlink(missing_ok=True)
        super().save_pretrained(save_directory, *args, **kwargs)

    # ------------------------------------------------------------------------------------------------- properties
    @property
    def device_for_run(self) -> torch.device:
        """Where the call's tensors live: the device, or the onload device under offloading (diffusers' rule)."""
        return self._execution_device

    @property
    def last_sampler(self) -> SamplerChoice | None:
        return self.last_run.sampler if self.last_run is not None else None

    @property
    def interrupt(self) -> bool:
        return self._interrupt

    # diffusers' callback conventions: a `callback_on_step_end` may read these and change `_guidance_scale` (dynamic
    # guidance) or set `_interrupt`.
    @property
    def guidance_scale(self) -> float | None:
        return self._guidance_scale

    @property
    def do_classifier_free_guidance(self) -> bool:
        return self.last_run is not None and self.last_run.needs_uncond

    @property
    def num_timesteps(self) -> int | None:
        return self._num_timesteps

    @property
    def num_fit_steps(self) -> int | None:
        """The decoder-fit steps the call runs after its `num_timesteps` sampling steps (`decoder_fit_step_count`),
        known from before its first sampling step; None before a call."""
        return self._num_fit_steps

    @property
    def current_timestep(self) -> torch.Tensor | None:
        """The step's timestep (1000 sigma) as a 0-d tensor on the run's device, as diffusers' pipelines give it;
        None outside the denoising loop."""
        return self._current_timestep

    @property
    def attention_kwargs(self) -> dict[str, Any] | None:
        return self.last_run.passes.attention_kwargs if self.last_run is not None else None

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
        apg: dict[str, Any],
        passes: dict[str, Any],
        parallel: ParallelPlan | None = None,
        given: GivenEmbeds | None = None,
        schedule: tuple[list[float] | None, list[float] | None] = (None, None),
    ) -> RunPlan:
        """Fill what the call left None from the folder's generation_config.json (else the released defaults:
        736x1280, 121 frames, 50 steps), check it, and resolve guidance (`apg`: eta, norm_dims, norm_threshold,
        momentum), the sigma schedule and how the transformer passes run (`passes`: `PassOptions` fields).
        `given`: precomputed prompt embeddings; `schedule`: the call's (timesteps, sigmas), diffusers' arguments."""
        height, width, num_frames = size
        height, width, num_frames, negative_prompt = self.generation_defaults.fill_size(
            height, width, num_frames, negative_prompt
        )
        self.check_size(height, width, num_frames)
        call_shift = shift
        num_inference_steps, guidance, guidance_scale, shift = self.generation_defaults.fill(
            num_inference_steps, guidance, guidance_scale, shift
        )
        sigmas = call_sigmas(*schedule)
        num_inference_steps = num_inference_steps if sigmas is None else len(sigmas)
        self._check_common(output_type, num_videos_per_prompt, num_inference_steps)
        external = self.guider if guidance is None and runs_own_protocol(self.guider) else None
        if external is not None:
            if guidance_scale is not None:
                external = external.new(guidance_scale=guidance_scale)
            guidance_cfg = GuidanceConfig(scale=getattr(external, "guidance_scale", D.GUIDANCE_SCALE))
        else:
            guidance_cfg = self.guidance_config(guidance, scale=guidance_scale, **apg)
        guidance_cfg, embedded = embedded_guidance(self.transformer, guidance_cfg)
        sampler = self.choose_sampler(shift)
        if call_shift is None and shift is not None:  # generation_config.json chose it, not the call
            sampler = dataclasses.replace(sampler, source=D.GENERATION_CONFIG_NAME)
        passes = PassOptions(
            **passes, embedded_guidance=embedded, guidance_group=parallel.guidance_group if parallel else None
        )
        self._interrupt, self._guidance_scale = False, guidance_cfg.scale
        self.last_run = RunPlan(
            prompts=call_prompts(prompt, given),
            negative_prompt=negative_prompt,
            height=height,
            width=width,
            num_frames=num_frames,
            guidance=guidance_cfg,
            sampler=sampler,
            sigmas=flow.sampling_sigmas(num_inference_steps, sampler.shift)
            if sigmas is None
            else torch.cat([flow.shift_sigmas(sigmas, sampler.shift), sigmas.new_zeros(1)]),
            passes=passes,
            guider=external,
        )
        return self.last_run

    def guidance_config(self, guidance: str | GuidanceConfig | None, **overrides: Any) -> GuidanceConfig:
        """Defaults (SYSTEM.md), then the folder's guider config, then call arguments."""
        if isinstance(guidance, GuidanceConfig):
            return guidance
        return config_from_guider(self.guider, mode=guidance, **overrides)

    def encode_prompt(
        self,
        prompt: str | list[str] | None,
        negative_prompt: str | list[str] | None = None,
        num_videos_per_prompt: int = 1,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        prompt_attention_mask: torch.Tensor | None = None,
        negative_prompt_attention_mask: torch.Tensor | None = None,
        max_sequence_length: int = P.MAX_SEQUENCE_LENGTH,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
        """diffusers' `encode_prompt`: (prompt_embeds, negative_prompt_embeds, prompt_attention_mask,
        negative_prompt_attention_mask), repeated per video; the negative ones are None unless a negative prompt
        (or its embeddings) is given. Encoded ones are padded to `max_sequence_length` tokens as diffusers' are (zero
        states, False mask), so that separately encoded prompts concatenate and diffusers' pipeline takes them.
        Needs only the text encoder and tokenizer: a pipeline loaded with `transformer=None` precomputes embeddings
        for later calls (`prompt_embeds=`, ...)."""
        device = device or self.device_for_run
        given = GivenEmbeds(
            prompt_embeds, prompt_attention_mask, negative_prompt_embeds, negative_prompt_attention_mask
        )
        cond = GivenEmbeds.embeds(given.prompt, given.prompt_mask)
        if cond is None:
            cond = self.encode_texts(P.as_prompt_list(prompt), max_sequence_length, device, dtype)
            cond = P.pad_to(cond, max_sequence_length)
        uncond = GivenEmbeds.embeds(given.negative, given.negative_mask)
        if uncond is None and negative_prompt is not None:
            negatives = (
                [negative_prompt] * cond.embeds.shape[0]
                if isinstance(negative_prompt, str)
                else negative_prompt
            )
            uncond = self.encode_texts(list(negatives), max_sequence_length, device, dtype, "negative prompt")
            uncond = P.pad_to(uncond, max_sequence_length)
        cond = cond.repeat_interleave(num_videos_per_prompt)
        uncond = uncond.repeat_interleave(num_videos_per_prompt) if uncond is not None else None
        return (
            cond.embeds,
            None if uncond is None else uncond.embeds,
            cond.mask,
            None if uncond is None else uncond.mask,
        )

    def prompt_embeddings(
        self,
        run: RunPlan,
        num_videos_per_prompt: int,
        max_sequence_length: int,
        device: torch.device,
        given: GivenEmbeds | None = None,
    ) -> tuple[P.PromptEmbeds, P.PromptEmbeds | None]:
        """The run's prompt and (when guidance needs it) negative prompt embeddings, repeated per video: given ones
        as they are, the others encoded. A None negative prompt is the default 39-term one; "" an empty one."""
        given = given or GivenEmbeds()
        cond = GivenEmbeds.embeds(given.prompt, given.prompt_mask)
        if cond is None:
            cond = self.encode_texts(run.prompts, max_sequence_length, device)
            cond.full_length = max_sequence_length  # what encode_prompt pads to, shown to a step callback
        uncond = GivenEmbeds.embeds(given.negative, given.negative_mask)
        if uncond is None and run.needs_uncond:
            negative = P.DEFAULT_NEGATIVE_PROMPT if run.negative_prompt is None else run.negative_prompt
            negatives = [negative] * len(run.prompts) if isinstance(negative, str) else negative
            if len(negatives) != len(run.prompts):
                raise ValueError(
                    f"negative_prompt has {len(negatives)} entries for {len(run.prompts)} prompts"
                )
            uncond = self.encode_texts(list(negatives), max_sequence_length, device, name="negative prompt")
            uncond.full_length = max_sequence_length
        if not run.needs_uncond:
            uncond = None
        dtype = self.transformer.dtype
        cond = P.PromptEmbeds(cond.embeds.to(device, dtype), cond.mask.to(device), cond.full_length)
        if uncond is not None:
            uncond = P.PromptEmbeds(
                uncond.embeds.to(device, dtype), uncond.mask.to(device), uncond.full_length
            )
            uncond = uncond.repeat_interleave(num_videos_per_prompt)
        return cond.repeat_interleave(num_videos_per_prompt), uncond

    def encode_texts(
        self,
        texts: list[str],
        max_sequence_length: int,
        device: torch.device,
        dtype: torch.dtype | None = None,
        name: str = "prompt",
    ) -> P.PromptEmbeds:
        """Text-encoder states of `texts` in the transformer's dtype (the text encoder's without a transformer).
        Without a text encoder or tokenizer (a pipeline loaded with `text_encoder=None`), a ValueError naming what
        is missing and the embeddings to pass instead (`name`: "prompt" or "negative prompt")."""
        missing = [c for c in ("text_encoder", "tokenizer") if getattr(self, c, None) is None]
        if missing:
            arg = name.replace(" ", "_") + "_embeds"
            raise ValueError(
                f"the {name} needs a text encoder and tokenizer to encode, and this pipeline has no "
                f"{' or '.join(missing)}: pass {arg} and {arg.replace('embeds', 'attention_mask')} instead (e.g. "
                "from `encode_prompt` of a pipeline that has them), or load the pipeline with them"
            )
        self._text_encoder_to(device)
        if dtype is None:
            dtype = (self.transformer if self.transformer is not None else self.text_encoder).dtype
        return P.encode_prompts(self.text_encoder, self.tokenizer, texts, device, dtype, max_sequence_length)

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

    def latents_size(
        self, latents: torch.Tensor | None, height: int | None, width: int | None, num_frames: int | None
    ) -> tuple[int | None, int | None, int | None]:
        """Size left None taken from given `latents` [B, 16, T, h, w], as diffusers takes it: the VAE's factors
        times theirs, 8 h x 8 w x 4 (T - 1) + 1 frames. A size given that disagrees with them is refused by
        `prepare_latents`, naming the shape that size needs."""
        if latents is None or latents.ndim != 5:
            return height, width, num_frames
        t, h, w = latents.shape[2:]
        return (
            h * self.vae_scale_spatial if height is None else height,
            w * self.vae_scale_spatial if width is None else width,
            (t - 1) * self.vae_scale_temporal + 1 if num_frames is None else num_frames,
        )

    # ------------------------------------------------------------------------------------- video-to-video (SDEdit)
    def read_video(self, video, num_frames: int | None):
        """The `video=` input, read when it is a file's path: only as many frames as the call can use (`num_frames`,
        else the folder's own length), so a long file is not decoded whole."""
        from .conditions import video_input

        limit = (
            num_frames
            if num_frames is not None
            else self.generation_defaults.resolve(num_frames=None)["num_frames"]
        )
        return video_input(video, "video", limit=limit)

    def video_size(
        self, video, strength: float, height: int | None, width: int | None, num_frames: int | None
    ) -> tuple[int | None, int | None, int | None]:
        """Size left None taken from an input video as the command and the service take it: its frame count
        (`input_media.video_frames`: cut to 4k + 1 and to the folder's length) and its height and width
        (`input_media.video_size`: its own in multiples of 16, one of `trained_sizes` for a folder that lists them,
        else its shape at the folder's pixel count, and refused past 4:1; the video is resized to them). Checks `strength` first; without a video, a strength other than 1 is an error
        (it would be ignored)."""
        from ..input_media import video_frames
        from ..input_media import video_size as shaped
        from .conditions import frame_size, video_length

        if video is None:
            if strength != 1.0:
                raise ValueError(
                    f"strength {strength!r} needs video (video-to-video); without one it does nothing"
                )
            return height, width, num_frames
        check_strength(strength)
        n = video_length(video)
        if n < 1:
            raise ValueError("video has no frames")
        if num_frames is None:
            num_frames = video_frames(n, self.generation_defaults)
        if height is None and width is None:
            h, w = frame_size(video)
            width, height = shaped(w, h, self.generation_defaults)
        return height, width, num_frames

    def video_start(
        self, video, strength: float, run: RunPlan, resize: str, device: torch.device
    ) -> torch.Tensor:
        """The normalised latents [1, 16, T, h, w] of the input video's first `run.num_frames` frames at the run's
        size (the VAE's mode: no generator drawn), after checking `strength` and the video's length."""
        from .conditions import VideoCondition, condition_pixels, video_length

        check_strength(strength)
        n = video_length(video)
        if n < run.num_frames:
            raise ValueError(f"video has {n} frames; num_frames {run.num_frames} needs at least that many")
        frames = condition_pixels(
            self.video_processor, VideoCondition(video=video), run.height, run.width, "stretch", "video"
        )[: run.num_frames]
        z = self.vae.encode(frames.transpose(0, 1)[None].to(device, self.vae.dtype)).latent_dist.mode()
        return to_model_latents(z, self.vae.config)

    def noised_start(
        self, run: RunPlan, source: torch.Tensor, noise: torch.Tensor, strength: float
    ) -> tuple[RunPlan, torch.Tensor]:
        """SDEdit: skip the first N - int(N * strength) steps (diffusers' video-to-video rule) and start from the
        input video's latents noised to the first kept sigma, (1 - sigma) * video + sigma * noise."""
        start = first_kept_step(len(run.sigmas) - 1, strength)
        sigma = float(run.sigmas[start])
        latents = (1.0 - sigma) * source.float() + sigma * noise.float()
        self.last_run = dataclasses.replace(run, sigmas=run.sigmas[start:])
        return self.last_run, latents.to(noise.dtype)

    def choose_sampler(self, shift: float | None) -> SamplerChoice:
        return choose_shift(scheduler_config_of(self.scheduler), self.default_shift, shift)

    # ------------------------------------------------------------------------------------------------------ loop
    def predict_velocity(
        self,
        latents: torch.Tensor,
        sigma: float,
        cond: P.PromptEmbeds,
        uncond: P.PromptEmbeds | None,
        conditioning: Conditioning,
        passes: PassOptions | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Conditional and unconditional velocities at `sigma` (`pipelines.velocity.predict_velocity`)."""
        passes = passes if passes is not None else PassOptions()
        return predict_velocity(self.transformer, latents, sigma, cond, uncond, conditioning, passes)

    def sample(
        self,
        latents: torch.Tensor,
        run: RunPlan,
        cond: P.PromptEmbeds,
        uncond: P.PromptEmbeds | None,
        conditioning: Conditioning,
        callback_on_step_end=None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
    ) -> torch.Tensor:
        """Euler steps over the plan's sigmas (N + 1 values ending at 0) with guidance; returns the final latents.

        A cache enabled on the transformer reports the steps each guidance pass skipped in
        `transformer.cache_report()`.
        """
        guider, sigmas = Guider(run.guidance), run.sigmas
        steps = len(sigmas) - 1
        self._num_timesteps = steps
        inputs = self._callback_inputs(callback_on_step_end, callback_on_step_end_tensor_inputs) or [
            "latents"
        ]
        latents = conditioning.settle(latents, float(sigmas[0]))
        with self.progress_bar(total=steps) as bar:
            for i in range(steps):
                if self.interrupt:
                    break
                sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
                self._current_timestep = torch.tensor(flow.timestep_from_sigma(sigma), device=latents.device)
                if run.guider is not None:
                    velocity = guider_velocity(
                        run.guider, self.transformer, latents, sigma, (i, steps), cond, uncond, conditioning,
                        run.passes,
                    )  # fmt: skip
                else:
                    v_cond, v_uncond = self.predict_velocity(
                        latents, sigma, cond, uncond, conditioning, run.passes
                    )
                    velocity = guider(v_cond, v_uncond, self._guidance_scale)
                if conditioning.guidance and conditioning.latent is not None:
                    velocity = velocity + reconstruction_pull(
                        self.transformer, latents, sigma, cond, conditioning.latent, conditioning.mask,
                        conditioning.guidance,
                    )  # fmt: skip
                latents = flow.euler_step(latents, velocity, sigma, sigma_next).to(latents.dtype)
                latents = conditioning.settle(latents, sigma_next)
                if callback_on_step_end is not None:
                    latents, cond, uncond = self._run_callback(
                        callback_on_step_end, inputs, i, latents, cond, uncond
                    )
                bar.update()
        self._current_timestep = None
        return latents

    def _run_callback(self, callback, inputs, i, latents, cond, uncond):
        """One step-end callback. It is shown the embeddings as diffusers' pipeline holds them (encoded prompts
        padded to max_sequence_length) and their masks, and may return new ones (`_returned_embeds`)."""
        shown: dict[str, torch.Tensor | None] = {"latents": latents}
        for name, prompt in (("prompt", cond), ("negative_prompt", uncond)):
            keys = (f"{name}_embeds", f"{name}_attention_mask")
            asked = prompt is not None and bool(set(keys) & set(inputs))
            view = prompt.padded() if asked else None  # padded only when the callback asks for it
            shown.update(zip(keys, (None, None) if view is None else (view.embeds, view.mask)))
        out = callback(self, i, self._current_timestep, {k: shown[k] for k in inputs}) or {}
        cond = _returned_embeds(out, "prompt", cond)
        uncond = None if uncond is None else _returned_embeds(out, "negative_prompt", uncond)
        return out.get("latents", latents), cond, uncond

    # ---------------------------------------------------------------------------------------------------- output
    def repaints_first_frame(self, repaint: bool | None, conditioning: Conditioning) -> bool:
        """Whether the call repaints latent frame 0 after sampling: `repaint` (None: the folder's
        generation_config.json, else off as released) and no condition gives frame 0."""
        if conditioning.gives_first_frame:
            return False
        return self.generation_defaults.resolve(repaint_first_frame=repaint)["repaint_first_frame"]

    def repaint_unconditioned_first_frame(
        self,
        latents: torch.Tensor,
        repaint: bool | None,
        conditioning: Conditioning,
        fit_steps: int = 0,
        on_fit_step: Callable[[Any], object] | None = None,
    ) -> torch.Tensor:
        """`latents` with latent frame 0 re-encoded from pixel frame 1 (`latents.repaint_first_latent`, fitted through
        the decoder by `fit_steps`) where `repaints_first_frame`; `on_fit_step(self)` after each fit step."""
        if not self.repaints_first_frame(repaint, conditioning):
            return latents
        total = repaint_fit_step_count(latents, fit_steps)
        with self.decoder_fit_progress(total, on_fit_step) as progress:
            return repaint_first_latent(self.vae, latents, fit_steps=fit_steps, progress=progress)

    def decoder_fit_step_count(
        self, latents: torch.Tensor, repaint: bool | None, conditioning: Conditioning, fit_steps: int
    ) -> int:
        """The decoder-fit steps a call takes after sampling `latents`: the repainted frame 0's (where
        `repaints_first_frame`) and the given frames' (`fit_given_frames`)."""
        repainted = (
            repaint_fit_step_count(latents, fit_steps)
            if self.repaints_first_frame(repaint, conditioning)
            else 0
        )
        return repainted + _given_fit_step_count(latents, conditioning, fit_steps)

    def decoder_fit_steps(self, steps: int | None) -> int:
        """The call's decoder-fit steps, else the folder's generation_config.json's, else 0 as released."""
        steps = self.generation_defaults.resolve(decoder_fit_steps=steps)["decoder_fit_steps"]
        if steps < 0:
            raise ValueError(f"decoder_fit_steps must be >= 0, got {steps}")
        return steps

    def fit_given_frames(
        self,
        latents: torch.Tensor,
        conditioning: Conditioning,
        steps: int,
        on_fit_step: Callable[[Any], object] | None = None,
    ) -> torch.Tensor:
        """`latents` with every latent frame that holds a given frame (`conditioning.pixels`: the first image, last
        image, keyframes, clips given at strength 1) fitted through the decoder so that those frames decode to their images
        (`decoder_fit.fit_latent_frames`), one video at a time; unchanged when `steps` is 0 or nothing is given.
        `on_fit_step(self)` after each fit step."""
        if not steps or not conditioning.pixels:
            return latents
        fitted, total = latents.clone(), _given_fit_step_count(latents, conditioning, steps)
        with self.decoder_fit_progress(total, on_fit_step) as progress:
            for b in range(latents.shape[0]):
                targets = {f: px[b if px.shape[0] > 1 else 0] for f, px in conditioning.pixels.items()}
                fitted[b : b + 1] = fit_latent_frames(
                    self.vae, latents[b : b + 1], targets, steps, progress=progress
                )
        return fitted

    def progress_bar(self, iterable=None, total=None, desc: str | None = None):
        """diffusers' `progress_bar` (made as `set_progress_bar_config` says); `desc` titles the bar where that config
        gives no title. The title is the bar's from its first line: one set once the bar is drawn leaves that line
        untitled where stderr is not a terminal (a log keeps every line tqdm draws)."""
        config = getattr(self, "_progress_bar_config", {})
        if desc is None or "desc" in config:
            return super().progress_bar(iterable, total)
        self._progress_bar_config = {**config, "desc": desc}
        try:
            return super().progress_bar(iterable, total)
        finally:
            self._progress_bar_config = config

    @contextlib.contextmanager
    def decoder_fit_progress(
        self, total: int, on_fit_step: Callable[[Any], object] | None = None
    ) -> Iterator[Callable[[], object] | None]:
        """A progress bar over a decoder fit's `total` Adam steps (seconds to minutes after the sampling steps, which
        would otherwise show a bar standing still), made as the steps' bar is (`progress_bar`: diffusers'
        `set_progress_bar_config`, `disable=True` included), titled "decoder fit" unless that config gives a title;
        yields the callable each fit step calls, which moves the bar and calls `on_fit_step(self)` (None when there is
        nothing to fit: no bar)."""
        if not total:
            yield None
            return
        with self.progress_bar(total=total, desc="decoder fit") as bar:

            def step_done() -> None:
                bar.update()
                if on_fit_step is not None:
                    on_fit_step(self)

            yield step_done

    def decode(
        self,
        latents: torch.Tensor,
        output_type: OutputType,
        stream: bool = True,
        vae_batch_size: int | None = None,
    ):
        """Frames from latents, `vae_batch_size` videos per VAE call (default: all at once). Post-processed in
        float32; "pt" frames are then returned in the VAE's dtype, as diffusers' pipeline returns them."""
        if output_type == "latent":
            return latents
        if vae_batch_size is not None and vae_batch_size < 1:
            raise ValueError(f"vae_batch_size must be >= 1, got {vae_batch_size}")
        chunks = latents.split(vae_batch_size or latents.shape[0])
        video = torch.cat([decode_latents(self.vae, c, output_device="cpu", stream=stream) for c in chunks])
        frames = self.video_processor.postprocess_video(video.float(), output_type=output_type)
        return frames.to(self.vae.dtype) if output_type == "pt" else frames

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
            te is None
            or not self.release_text_encoder
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

    def check_inputs(
        self,
        prompt: str | list[str] | None,
        negative_prompt: str | list[str] | None,
        height: int | None,
        width: int | None,
        batch_size: int,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        prompt_attention_mask: torch.Tensor | None = None,
        negative_prompt_attention_mask: torch.Tensor | None = None,
    ) -> None:
        """diffusers' `check_inputs` (same parameters), run by `__call__` before any model: the size (multiples of
        16; None is the folder's, checked once filled), the step-end tensor names, a prompt or `prompt_embeds` but
        not both, the embeddings' and masks' shapes, negative embeddings with one row per prompt, and a negative
        prompt that is a string or one per prompt (`batch_size` prompts). Unlike diffusers', a missing mask means
        every token is valid, and prompt and negative embeddings may differ in length."""
        check_video_size(width, height, None)
        self.check_callback_inputs(None, callback_on_step_end_tensor_inputs)
        call_prompts(prompt, GivenEmbeds(prompt_embeds, prompt_attention_mask))
        GivenEmbeds.embeds(prompt_embeds, prompt_attention_mask)
        GivenEmbeds.embeds(negative_prompt_embeds, negative_prompt_attention_mask)
        GivenEmbeds.check_batch(prompt_embeds, negative_prompt_embeds, batch_size)
        if negative_prompt is None or isinstance(negative_prompt, str):
            return
        if not isinstance(negative_prompt, list | tuple) or not all(
            isinstance(n, str) for n in negative_prompt
        ):
            raise ValueError(
                f"negative_prompt must be a string or a list of strings, got {negative_prompt!r}"
            )
        if len(negative_prompt) != batch_size:
            raise ValueError(
                f"negative_prompt has {len(negative_prompt)} entries for {batch_size} prompts; pass one string or "
                "one per prompt"
            )

    def check_call(
        self,
        prompt,
        negative_prompt,
        size,
        given: GivenEmbeds,
        callback,
        tensor_inputs,
        fit_callback=None,
        **extra,
    ) -> None:
        """`check_inputs` with a call's arguments (`extra`: the image-to-video pipeline's image and conditions);
        diffusers' batch size: the prompts, or the embeddings' rows. The callbacks (`callback_on_step_end`,
        `callback_on_fit_step`) are callables or None."""
        for name, value in (("callback_on_step_end", callback), ("callback_on_fit_step", fit_callback)):
            if value is not None and not callable(value):
                raise ValueError(f"{name} must be callable or None, got {value!r}")
        if isinstance(prompt, list | tuple):
            batch = len(prompt)
        else:
            batch = given.prompt.shape[0] if prompt is None and given.prompt is not None else 1
        self.check_inputs(
            prompt=prompt, negative_prompt=negative_prompt, height=size[0], width=size[1], batch_size=batch,
            callback_on_step_end_tensor_inputs=self._callback_inputs(callback, tensor_inputs),
            prompt_embeds=given.prompt, negative_prompt_embeds=given.negative,
            prompt_attention_mask=given.prompt_mask, negative_prompt_attention_mask=given.negative_mask, **extra,
        )  # fmt: skip

    def check_callback_inputs(self, callback, tensor_inputs: list[str] | None) -> None:
        """diffusers' check, made before any model runs: every tensor a step-end callback asks for is one of
        `_callback_tensor_inputs`."""
        unknown = sorted(
            set(self._callback_inputs(callback, tensor_inputs) or ()) - set(self._callback_tensor_inputs)
        )
        if unknown:
            raise ValueError(
                f"callback_on_step_end_tensor_inputs {unknown} unknown; allowed: {self._callback_tensor_inputs}"
            )


def _returned_embeds(out: dict[str, Any], name: str, current: P.PromptEmbeds) -> P.PromptEmbeds:
    """The embeddings a step callback returned as `{name}_embeds` (`name`: "prompt" or "negative_prompt"), else
    `current`. Their mask: `{name}_attention_mask` when returned too; else, of the shape shown, the mask shown (as
    diffusers keeps it); else valid where a state is not all zeros (`encode_prompt`'s padding, at another
    max_sequence_length). The loop then runs on them with their trailing padding trimmed again."""
    embeds, mask = out.get(f"{name}_embeds"), out.get(f"{name}_attention_mask")
    if embeds is None and mask is None:
        return current
    shown = current.padded()
    embeds = shown.embeds if embeds is None else embeds
    if mask is None:
        mask = shown.mask if tuple(embeds.shape[:2]) == tuple(shown.mask.shape) else embeds.ne(0).any(dim=-1)
    taken = GivenEmbeds.embeds(embeds.to(current.embeds.device, current.embeds.dtype), mask)
    return P.PromptEmbeds(taken.embeds, taken.mask, current.full_length).trimmed()


def _given_fit_step_count(latents: torch.Tensor, conditioning: Conditioning, steps: int) -> int:
    """The decoder-fit steps `fit_given_frames` takes on `latents`: the fit of the given frames, once per video."""
    return latents.shape[0] * fit_step_count(conditioning.pixels, steps)


def _has_group_offload(module: torch.nn.Module) -> bool:
    from diffusers.hooks.group_offloading import _is_group_offload_enabled

    return _is_group_offload_enabled(module)
