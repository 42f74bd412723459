"""`MotifVideoImageToVideoPipeline`: images and clips at chosen frames (first frame, last frame, keyframes, a clip
prefix) + text to video."""

from __future__ import annotations

import json
import logging
import os
from typing import TYPE_CHECKING, Any

import torch

from ..choices import GuidanceBatching
from ..defaults import SHIFT_I2V, check_condition_guidance
from . import prompts as P
from .base import MotifVideoBasePipeline, MotifVideoPipelineOutput, OutputType
from .conditions import (
    VideoCondition,
    as_video_condition,
    check_pixels,
    condition_pixels,
    encode_placed,
    image_input,
    lay_out,
    plan_conditions,
)
from .guidance import GuidanceConfig
from .image_conditioning import LatentMode, ResizeMode, encode_first_frame, preprocess_image, siglip_tokens
from .run_plan import GivenEmbeds
from .sampling import SamplerChoice
from .velocity import Conditioning

if TYPE_CHECKING:
    from ..parallel.pipeline import ParallelPlan

logger = logging.getLogger(__name__)


class MotifVideoImageToVideoPipeline(MotifVideoBasePipeline):
    """Image-to-video with Motif-Video 2B; a drop-in for diffusers' `MotifVideoImage2VideoPipeline`.

    The first frame conditions the model through a VAE latent in 16 extra channels plus a mask channel, and through
    SigLIP tokens from the text encoder's vision tower; both are the same for the conditional and unconditional
    predictions. Beyond the reference: several images per call (one per prompt, or one for all), center-crop resizing,
    the VAE mode instead of a sample, the project's timestep-aware blur (`conditioning_blur`, off by default) and
    first-frame replacement (`keep_first_frame`, off by default).
    """

    default_shift = SHIFT_I2V
    DIFFUSERS_NAME = "MotifVideoImage2VideoPipeline"

    def to_json_string(self) -> str:
        """The pipeline config (model_index.json) under diffusers' name for this pipeline, so that a saved folder
        opens with `DiffusionPipeline.from_pretrained` as well as with ours."""
        config = json.loads(super().to_json_string())
        config["_class_name"] = self.DIFFUSERS_NAME
        return json.dumps(config, indent=2, sort_keys=True) + "\n"

    @torch.no_grad()
    def __call__(
        self,
        image=None,
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
        resize: ResizeMode = "stretch",
        first_frame_latent: LatentMode = "sample",
        conditioning_blur: float | None = None,
        keep_first_frame: bool | None = None,
        use_image_embeds: bool = True,
        stream_decode: bool = True,
        conditions: list[VideoCondition] | None = None,
        last_image=None,
        video=None,
        strength: float = 1.0,
        repaint_first_frame: bool | None = None,
        decoder_fit_steps: int | None = None,
        condition_guidance: float | None = None,
        callback_on_fit_step=None,
    ) -> MotifVideoPipelineOutput | tuple:
        """Generate videos starting from `image` (one image, or one per prompt). See `MotifVideoPipeline.__call__`.

        `resize`: "stretch" (as released) or "crop" (keep aspect, center crop). `first_frame_latent`: "sample" (as
        released) or "mode". `conditioning_blur`: strength of the timestep-aware blur of the first-frame latent
        (std = strength * sigma * min(h, w) / 100 latent pixels at each step; 0 = off, as released; None = the
        strength in the folder's generation_config.json, else 0).
        `keep_first_frame=True` keeps latent frame 0 on the image's own path at every step, (1 - sigma) * its latent +
        sigma * that frame's starting noise, so the video starts on the image as exactly as the VAE reconstructs it and
        the other frames are denoised next to it (as released, False: the model generates frame 0 from the condition
        channels; None = the folder's generation_config.json, else False).
        `use_image_embeds=False` drops the SigLIP tokens (as Motif's ComfyUI workflow does).

        Beyond the first frame: `conditions`, a list of `VideoCondition` (an image or a clip at a pixel frame with a
        strength; the same for every prompt), and `last_image` (an image at the last frame). Each lands on the latent
        frames whose groups of 4 pixel frames it touches (`motif_video.condition_layout`); `image` may then be None.
        Blur and `keep_first_frame` apply to every conditioned frame. Conflicting or out-of-range conditions raise a
        ValueError before any model runs. SigLIP tokens come from `image` only (the model saw them with frame 0).
        `video` + `strength`: video-to-video (SDEdit, `MotifVideoPipeline.__call__`).
        `repaint_first_frame`: as in `MotifVideoPipeline.__call__`, when no condition gives frame 0 (a last image or
        keyframes alone). `decoder_fit_steps` (None: the folder's generation_config.json, else 0 as released): after
        sampling, every latent frame that holds a frame given at strength 1 (image, last image, keyframe, clip) is
        fitted by that many Adam steps through the decoder so that the given frames decode to their images, in the
        context of the generated frames before them (`motif_video.pipelines.decoder_fit`); the repainted frame 0 too.
        `callback_on_fit_step(pipe)` after each of those steps, as in `MotifVideoPipeline.__call__`.
        `condition_guidance` (None: the folder's generation_config.json, else 0 as released): the scale of
        reconstruction guidance, which adds to each step's velocity the gradient that pulls the model's estimate of
        the given frames, from a pass without the condition channels, toward them, so that the frames around them
        follow (`motif_video.pipelines.reconstruction`; one more forward and backward pass per step).
        The released weights were trained with frame 0 only: other positions need a model trained on them
        (`recipes/motif-video-2b/conditions-lora.yaml`).
        """
        given = GivenEmbeds(prompt_embeds, prompt_attention_mask, negative_prompt_embeds, negative_prompt_attention_mask)  # fmt: skip
        self.check_call(
            prompt, negative_prompt, (height, width), given, callback_on_step_end, callback_on_step_end_tensor_inputs,
            fit_callback=callback_on_fit_step, image=image, conditions=conditions, last_image=last_image, video=video,
        )  # fmt: skip
        frame = self.frame_settings(
            resize=resize, latent_mode=first_frame_latent, use_image_embeds=use_image_embeds,
            conditioning_blur=conditioning_blur, keep_first_frame=keep_first_frame,
        )  # fmt: skip
        height, width, num_frames = self.latents_size(latents, height, width, num_frames)
        video = self.read_video(video, num_frames)
        height, width, num_frames = self.video_size(video, strength, height, width, num_frames)
        run = self.plan_run(
            prompt, negative_prompt, (height, width, num_frames), num_inference_steps, guidance, guidance_scale, shift,
            output_type, num_videos_per_prompt, parallel=parallel, given=given, schedule=(timesteps, sigmas),
            apg=dict(eta=apg_eta, norm_dims=apg_norm_dims, norm_threshold=apg_norm_threshold, momentum=apg_momentum),
            passes=dict(batching=guidance_batching, attention_kwargs=attention_kwargs),
        )  # fmt: skip
        images, placed = self.plan_frames(image, conditions, last_image, run)  # errors before any model runs
        fit_steps = self.decoder_fit_steps(decoder_fit_steps)
        pull = check_condition_guidance(
            self.generation_defaults.resolve(condition_guidance=condition_guidance)["condition_guidance"]
        )
        device = self.device_for_run
        batch = len(run.prompts) * num_videos_per_prompt
        source = self.video_start(video, strength, run, resize, device) if video is not None else None
        latents = self.prepare_latents(
            batch, run.height, run.width, run.num_frames, generator, latents, device
        )
        cond, uncond = self.prompt_embeddings(run, num_videos_per_prompt, max_sequence_length, device, given)
        conditioning = self.frame_conditioning(images, placed, run, latents, generator, frame)
        conditioning.guidance = pull
        if source is not None:
            run, latents = self.noised_start(run, source, latents, strength)
        self._release_text_encoder()
        self._num_fit_steps = self.decoder_fit_step_count(
            latents, repaint_first_frame, conditioning, fit_steps
        )
        latents = self.sample(
            latents, run, cond, uncond, conditioning, callback_on_step_end, callback_on_step_end_tensor_inputs
        )
        latents = self.repaint_unconditioned_first_frame(
            latents, repaint_first_frame, conditioning, fit_steps, callback_on_fit_step
        )
        latents = self.fit_given_frames(latents, conditioning, fit_steps, callback_on_fit_step)
        video = self.decode(latents, output_type, stream_decode, vae_batch_size)
        self.maybe_free_model_hooks()
        return MotifVideoPipelineOutput(frames=video) if return_dict else (video,)

    def choose_sampler(self, shift: float | None) -> SamplerChoice:
        """Shift 8 for I2V unless `shift` is given or the scheduler's shift is this pipeline's own
        (`scheduler_is_for_text_to_video`)."""
        if shift is None and self.scheduler_is_for_text_to_video:
            folder = self.folder_pipeline_class
            source = f"image-to-video default (the folder's scheduler config is for its {folder})"
            return SamplerChoice(self.default_shift, source)
        return super().choose_sampler(shift)

    @property
    def scheduler_is_for_text_to_video(self) -> bool:
        """Whether the scheduler is the one a text-to-video folder gave, whose shift (the released folder's 15) this
        pipeline replaces by its own 8: the folder's model_index `_class_name` names no image-to-video pipeline, and
        the scheduler is the folder's. A scheduler passed in (`from_pretrained(..., scheduler=)`, `from_pipe`,
        `pipe.scheduler = ...`) is the caller's choice and its shift is honoured."""
        folder = self.folder_pipeline_class
        folders_own = self.scheduler is not None and self.scheduler is self.folder_scheduler
        return folder is not None and "Image" not in folder and folders_own

    def save_pretrained(self, save_directory: str | os.PathLike, *args: Any, **kwargs: Any) -> None:
        """`MotifVideoBasePipeline.save_pretrained`; the saved folder names the image-to-video pipeline, so its
        scheduler config is read as written: a text-to-video folder's scheduler is saved with the shift this
        pipeline samples with (8), and the reloaded pipeline (ours or diffusers') samples as this one does. The
        pipeline's own scheduler is unchanged."""
        scheduler = self.scheduler
        if not self.scheduler_is_for_text_to_video:
            return super().save_pretrained(save_directory, *args, **kwargs)
        keys = [k for k in ("shift", "flow_shift") if k in scheduler.config] or ["shift"]
        self.scheduler = type(scheduler).from_config(
            scheduler.config, **dict.fromkeys(keys, self.default_shift)
        )
        try:
            super().save_pretrained(save_directory, *args, **kwargs)
        finally:
            self.scheduler = scheduler

    def check_inputs(
        self,
        prompt: str | list[str] | None,
        negative_prompt: str | list[str] | None,
        height: int | None,
        width: int | None,
        batch_size: int,
        image=None,
        *args,
        conditions: list | None = None,
        last_image=None,
        video=None,
        **kwargs,
    ) -> None:
        """diffusers' image-to-video `check_inputs` (same parameters: the text-to-video ones with `image` after
        `batch_size`): the text-to-video checks, then `image`: one, or one per prompt; it may be None only when
        `conditions` or `last_image` give other frames (`video`, of video-to-video, gives none)."""
        super().check_inputs(prompt, negative_prompt, height, width, batch_size, *args, **kwargs)
        if image is not None or not (conditions or last_image is not None):
            self._image_list(image, batch_size, video=video)

    @staticmethod
    def _image_list(image, num_prompts: int, video=None) -> list:
        if image is None and video is not None:
            raise ValueError(
                "video-to-video on the image-to-video pipeline needs a frame condition: image, last_image or "
                "conditions; for video-to-video from the prompt alone use MotifVideoPipeline with video= and "
                "strength= (MotifVideoPipeline.from_pipe(this pipeline) loads nothing twice)"
            )
        if image is None:
            raise ValueError(
                "image is required for image-to-video (a PIL image, array, tensor or file path, or a list), "
                "unless last_image or conditions give other frames"
            )
        images = list(image) if isinstance(image, list | tuple) else [image]
        if len(images) not in (1, num_prompts):
            raise ValueError(
                f"got {len(images)} images for {num_prompts} prompts; pass one image or one per prompt"
            )
        return images

    def prepare_conditioning(
        self,
        frames: torch.Tensor,
        latents: torch.Tensor,
        repeats: int,
        generator,
        latent_mode: LatentMode,
        blur: float,
        use_image_embeds: bool,
        keep_first_frame: bool = False,
    ) -> Conditioning:
        """The first-frame latent (the condition channels are built from it at each step) and SigLIP tokens, one per
        image, repeated to the latents' batch; with `keep_first_frame`, also the starting noise of `latents`' frame 0.
        Without a text encoder (its vision tower gives the SigLIP tokens), no SigLIP tokens, as in diffusers'."""
        if use_image_embeds and self.text_encoder is None:
            logger.warning(
                "no text encoder: image-to-video runs without SigLIP image tokens (they come from its vision "
                "tower), as diffusers' pipeline does; use_image_embeds=False says so without this warning"
            )
            use_image_embeds = False
        if use_image_embeds and self.feature_extractor is None:
            raise ValueError(
                "image embeddings need the feature_extractor component (a SiglipImageProcessor): load a folder with "
                "one or pass feature_extractor=..., or call with use_image_embeds=False"
            )
        if isinstance(generator, list):  # one generator per video: image j uses its first video's generator
            generator = (
                generator[0] if len(frames) == 1 else [generator[j * repeats] for j in range(len(frames))]
            )
        image_embeds = None
        if use_image_embeds and latents.shape[2] > 1:
            image_embeds = siglip_tokens(self.text_encoder.vision_tower, self.feature_extractor, frames)
            image_embeds = image_embeds.to(self.transformer.dtype).repeat_interleave(repeats, 0)
        first = encode_first_frame(self.vae, frames, latent_mode, generator=generator).to(latents.dtype)
        first = first.repeat_interleave(repeats, 0)
        # one latent frame: nothing to condition (as released)
        noise = latents[:, :, :1].clone() if keep_first_frame and latents.shape[2] > 1 else None
        return Conditioning(first, image_embeds, blur=blur, noise=noise)

    def frame_settings(
        self, conditioning_blur: float | None, keep_first_frame: bool | None, **frame: Any
    ) -> dict:
        """`frame` with the blur strength and `keep_first_frame` the call left None taken from the folder's
        generation_config.json, else the released defaults (off)."""
        resolved = self.generation_defaults.resolve(
            conditioning_blur=conditioning_blur, keep_first_frame=keep_first_frame
        )
        if resolved["conditioning_blur"] < 0:
            raise ValueError(f"conditioning_blur must be >= 0 (0 = off), got {resolved['conditioning_blur']}")
        return {**frame, **resolved}

    def plan_frames(self, image, conditions, last_image, run) -> tuple[list, list]:
        """The first-frame images (one, or one per prompt) and the other conditions (`VideoCondition`s or diffusers'
        `LTXVideoCondition`s, a list or one) as (placement, VideoCondition) pairs, checked before any model runs."""
        if not isinstance(conditions, list | tuple):  # one condition, or none
            conditions = [] if conditions is None else [conditions]
        conditions = [as_video_condition(c, f"conditions[{i}]") for i, c in enumerate(conditions)]
        if last_image is not None:
            last_image = image_input(last_image, "last_image")
            check_pixels(last_image, "last_image")
            conditions.append(VideoCondition(image=last_image, frame_index=-1))
        if image is None and not conditions:
            self._image_list(image, len(run.prompts))  # the error naming what is required
        placements = plan_conditions(conditions, run.num_frames, first_image=image is not None)
        images = self._image_list(image, len(run.prompts)) if image is not None else []
        names = ["image"] if len(images) == 1 else [f"image[{j}]" for j in range(len(images))]
        images = [image_input(im, name) for im, name in zip(images, names)]
        for im, name in zip(images, names):
            check_pixels(im, name)
        for p, c in zip(placements, conditions):
            check_pixels(c.video if c.image is None else c.image, p.name)
        return images, list(zip(placements, conditions))

    def frame_conditioning(
        self, images: list, conditions: list, run, latents: torch.Tensor, generator, frame: dict[str, Any]
    ) -> Conditioning:
        """The call's frame conditioning: the first frame's latent and SigLIP tokens (`images`, one or one per
        prompt), then the other conditions laid in ((placement, condition) pairs). `frame`: resize, latent_mode,
        use_image_embeds, conditioning_blur, keep_first_frame. The decoder fit's targets (`pixels`) are the frames
        given at strength 1: fitting a weaker condition's frames would reproduce them whatever its strength."""
        blur, keep, mode = frame["conditioning_blur"], frame["keep_first_frame"], frame["latent_mode"]
        conditioning = Conditioning(blur=blur)
        given: dict[int, torch.Tensor] = {}  # pixel frame -> [B or 1, 3, H, W]: what the decoder fit aims at
        if images:
            pixels = [
                preprocess_image(self.video_processor, im, run.height, run.width, frame["resize"], "image")
                for im in images
            ]
            repeats = latents.shape[0] // len(images)
            conditioning = self.prepare_conditioning(
                torch.cat(pixels).to(latents.device), latents, repeats, generator, mode, blur,
                frame["use_image_embeds"], keep,
            )  # fmt: skip
            given[0] = torch.cat(pixels).repeat_interleave(repeats, 0)
        if conditions:
            placed = []
            for p, c in conditions:
                pixels = condition_pixels(
                    self.video_processor, c, run.height, run.width, frame["resize"], p.name
                )
                placed.append((p, encode_placed(self.vae, pixels.to(latents.device), p, mode, generator)))
                if p.strength == 1.0:  # a partial strength is a hint, not a frame to reproduce
                    given.update({p.frame + i: px[None] for i, px in enumerate(pixels)})
            conditioning = self.add_conditions(conditioning, placed, latents, keep)
        conditioning.pixels = given
        return conditioning

    @staticmethod
    def add_conditions(
        conditioning: Conditioning, placed: list, latents: torch.Tensor, keep: bool
    ) -> Conditioning:
        """`conditioning` with the placed conditions' latents ((placement, latents [1, 16, n, h, w]) pairs) laid in
        beside its first frame; with `keep`, the starting noise of every conditioned frame."""
        latent, mask = lay_out(conditioning.latent, placed, latents.shape[0])
        latent = latent.to(latents.dtype)
        t = latent.shape[2]
        noise = latents[:, :, :t].clone() if keep and latents.shape[2] > 1 else None
        return Conditioning(latent, conditioning.image_embeds, blur=conditioning.blur, noise=noise, mask=mask)


MotifVideoImage2VideoPipeline = MotifVideoImageToVideoPipeline  # diffusers' name for it
