"""The Motif-Video denoising transformer.

Stages, top to bottom: embed -> 12 dual-stream blocks -> 16 single-stream blocks (with Shared Cross-Attention)
-> 8 DDT decoder blocks (fed a copy of the patch-embedded input, attending jointly with the encoder output)
-> AdaLN-continuous head -> unpatchify. Blocks are indexed globally (dual, then encoder single, then decoder), which
is how token routes and feature taps name them.

The constructor's keys and defaults are those of diffusers' `MotifVideoTransformer3DModel` (its defaults are not the
released model's: use the `motif-video-2b` preset or the released config.json for that). Two optional keys go beyond
them, and are written to config.json only when they differ from their defaults, so the released config round-trips
exactly and keeps its meaning:
- `cross_attention_layout`: the text cross-attention's parameters, "separate" (diffusers' `cross_attn.*`, the
  released checkpoint; the meaning of an absent key) or "shared" (the paper's `cross_attn_query_*` reusing the
  block's own K/V; what new models are built with).
- `guidance_embeds` (default False): a `guidance_embedder` for guidance-distilled students
  (`forward(..., guidance=scale)`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.loaders import PeftAdapterMixin
from diffusers.models.attention import AttentionMixin
from diffusers.models.cache_utils import CacheMixin
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn

from .blocks import CrossAttentionLayout, DualStreamBlock, SingleStreamBlock
from .chunking import DEFAULT_CHUNK_TOKENS
from .compat import DiffusersCompat, register_blocks_for_hooks
from .embeddings import (
    GuidanceEmbedding,
    ImageProjection,
    PatchEmbed,
    TextProjection,
    TimestepEmbedding,
    unpatchify,
)
from .modulation import AdaLNContinuous
from .rope import rope_tables, video_position_ids
from .routing import Route, gather_tokens, scatter_tokens, select_tokens, validate_routes

if TYPE_CHECKING:
    from ..perf.step_cache import StepCacheBranch

# The class name written into saved configs, so that saved folders keep the released format.
RELEASED_CLASS_NAME = "MotifVideoTransformer3DModel"


@dataclass
class MotifVideoTransformerOutput(BaseOutput):
    """`sample`: predicted velocity [B, C_out, T, H, W]. `features`: requested block outputs [B, N, D] by name."""

    sample: torch.Tensor
    features: dict[Hashable, torch.Tensor] = field(default_factory=dict)


def trim_text_padding(
    states: torch.Tensor, mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Drop trailing text positions that no sample attends to; return no mask when every kept token is valid.

    Exact: masked keys contribute nothing, padded query rows never reach video tokens, and the decoder discards the
    text stream. Without a mask, attention can use the fastest kernels.
    """
    if mask is None:
        return states, None
    mask = mask.to(torch.bool)
    valid_columns = mask.any(dim=0).nonzero()
    if valid_columns.numel() == 0:
        raise ValueError("encoder_attention_mask masks every text token; at least one token must be valid")
    length = int(valid_columns[-1]) + 1
    states, mask = states[:, :length], mask[:, :length]
    return states, (None if bool(mask.all()) else mask)


class MotifVideoTransformer(
    DiffusersCompat, ModelMixin, ConfigMixin, PeftAdapterMixin, CacheMixin, AttentionMixin
):
    _supports_gradient_checkpointing = True
    _repeated_blocks = ["DualStreamBlock", "SingleStreamBlock"]
    _no_split_modules = ["DualStreamBlock", "SingleStreamBlock", "PatchEmbed"]
    _skip_layerwise_casting_patterns = ["x_embedder", "context_embedder", "norm"]
    # Config keys beyond the released config.json, written only when they differ from these values (so the
    # released config round-trips exactly and still means what it meant).
    optional_config_keys: dict[str, Any] = {"cross_attention_layout": "separate", "guidance_embeds": False}

    @register_to_config
    def __init__(
        self,
        in_channels: int = 33,
        out_channels: int = 16,
        num_attention_heads: int = 24,
        attention_head_dim: int = 128,
        num_layers: int = 20,
        num_single_layers: int = 40,
        num_decoder_layers: int = 0,
        mlp_ratio: float = 4.0,
        patch_size: int = 2,
        patch_size_t: int = 1,
        qk_norm: str = "rms_norm",
        norm_type: str = "layer_norm",
        text_embed_dim: int = 4096,
        image_embed_dim: int | None = None,
        rope_theta: float = 256.0,
        rope_axes_dim: tuple[int, ...] = (16, 56, 56),
        enable_text_cross_attention_dual: bool = False,
        enable_text_cross_attention_single: bool = False,
        guidance_embeds: bool = False,
        cross_attention_layout: CrossAttentionLayout = "separate",
    ) -> None:
        super().__init__()
        _check_config(locals())
        dim = num_attention_heads * attention_head_dim
        encoder_single = num_single_layers - num_decoder_layers
        dual_cross = cross_attention_layout if enable_text_cross_attention_dual else None
        single_cross = cross_attention_layout if enable_text_cross_attention_single else None
        self.cross_attention_layout = cross_attention_layout

        self.x_embedder = PatchEmbed(in_channels, dim, patch_size, patch_size_t)
        self.context_embedder = TextProjection(text_embed_dim, dim)
        self.image_embedder = ImageProjection(image_embed_dim, dim) if image_embed_dim else None
        self.time_text_embed = TimestepEmbedding(dim)
        # Guidance-distilled students only: the guidance scale, embedded like the timestep and added to temb.
        self.guidance_embedder = GuidanceEmbedding(dim) if guidance_embeds else None
        self.transformer_blocks = nn.ModuleList(
            DualStreamBlock(dim, num_attention_heads, mlp_ratio, dual_cross) for _ in range(num_layers)
        )
        # Encoder-side single blocks first, then the DDT decoder blocks, in one list (the released key layout).
        self.single_transformer_blocks = nn.ModuleList(
            SingleStreamBlock(
                dim, num_attention_heads, mlp_ratio, single_cross if i < encoder_single else None
            )
            for i in range(num_single_layers)
        )
        self.norm_out = AdaLNContinuous(dim)
        self.proj_out = nn.Linear(dim, patch_size_t * patch_size * patch_size * out_channels)
        self.gradient_checkpointing = False
        self.init_weights()

    # ----------------------------------------------------------------------------------------------------------
    # structure

    @property
    def encoder_blocks(self) -> list[nn.Module]:
        """Dual blocks then encoder-side single blocks: global indices 0 .. num_layers + encoder_single - 1."""
        n = self.config.num_single_layers - self.config.num_decoder_layers
        return [*self.transformer_blocks, *self.single_transformer_blocks[:n]]

    @property
    def decoder_blocks(self) -> list[nn.Module]:
        n = self.config.num_single_layers - self.config.num_decoder_layers
        return list(self.single_transformer_blocks[n:])

    def repeated_blocks(self) -> list[nn.Module]:
        """Every repeated block, in global index order: what sharding, offload and compile wrap."""
        return [*self.transformer_blocks, *self.single_transformer_blocks]

    def enable_forward_chunking(self, chunk_size: int | None = DEFAULT_CHUNK_TOKENS) -> None:
        """At inference, run each block's row-wise steps (MLP, the single-stream block's output projection, QK-norm,
        RoPE) over `chunk_size` tokens at a time (`models.chunking`; on by default at DEFAULT_CHUNK_TOKENS). Same
        numbers up to the matmul kernel's summation order; None runs them over the whole sequence."""
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive number of tokens or None, got {chunk_size}")
        for module in self.modules():
            if hasattr(module, "chunk_tokens"):
                module.chunk_tokens = chunk_size

    def disable_forward_chunking(self) -> None:
        self.enable_forward_chunking(None)

    def block_name(self, index: int) -> str:
        """State-dict prefix of the block with global index `index`."""
        if index < 0 or index >= len(self.repeated_blocks()):
            raise ValueError(f"block index must be in 0..{len(self.repeated_blocks()) - 1}, got {index}")
        if index < self.config.num_layers:
            return f"transformer_blocks.{index}"
        return f"single_transformer_blocks.{index - self.config.num_layers}"

    @torch.no_grad()
    def init_weights(self) -> None:
        """Initialisation for new models (loading replaces every value)."""
        # Linear and patch layers: Xavier-uniform weights, zero biases.
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv3d)):
                nn.init.xavier_uniform_(module.weight.flatten(1) if module.weight.ndim > 2 else module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        # Timestep MLP: small normal weights, as in DiT.
        for linear in (
            self.time_text_embed.timestep_embedder.linear_1,
            self.time_text_embed.timestep_embedder.linear_2,
        ):
            nn.init.normal_(linear.weight, std=0.02)
        # Guidance embedding: zero output layer, so a student built from a teacher starts as that teacher.
        if self.guidance_embedder is not None:
            nn.init.normal_(self.guidance_embedder.timestep_embedder.linear_1.weight, std=0.02)
            zero_guidance_embedder_(self.guidance_embedder)
        # AdaLN-Zero modulation: zero, so every block starts as the identity (gates are 0).
        for block in self.repeated_blocks():
            modulators = (
                (block.norm1, block.norm1_context) if isinstance(block, DualStreamBlock) else (block.norm,)
            )
            for mod in modulators:
                nn.init.zeros_(mod.linear.weight)
                nn.init.zeros_(mod.linear.bias)
            # Cross-attention output: zero, so inserting it leaves the model's output unchanged.
            if block.cross_attention_layout == "shared":
                nn.init.zeros_(block.cross_attn_out_proj.weight)
                nn.init.zeros_(block.cross_attn_out_proj.bias)
            elif block.cross_attention_layout == "separate":
                nn.init.zeros_(block.cross_attn.to_out[0].weight)
                nn.init.zeros_(block.cross_attn.to_out[0].bias)
        # Output head: zero modulation and projection, so the first prediction is 0.
        for linear in (self.norm_out.linear, self.proj_out):
            nn.init.zeros_(linear.weight)
            nn.init.zeros_(linear.bias)

    # ----------------------------------------------------------------------------------------------------------
    # forward

    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor | float,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor | None = None,
        image_embeds: torch.Tensor | None = None,
        attention_kwargs: dict[str, Any] | None = None,
        return_dict: bool = True,
        *,
        return_features: Sequence[int | str] = (),
        routes: Sequence[Route | dict] | None = None,
        routing_generator: torch.Generator | None = None,
        step_cache: StepCacheBranch | None = None,
        guidance: torch.Tensor | float | None = None,
    ) -> MotifVideoTransformerOutput | tuple[torch.Tensor, ...]:
        """Predict the flow velocity.

        hidden_states [B, C_in, T, H, W] latents (+ condition channels), timestep [B] or scalar on 0..1000,
        encoder_hidden_states [B, E, text_embed_dim], encoder_attention_mask [B, E] (1 = valid), image_embeds
        [B, E_i, image_embed_dim] (I2V). `return_features` names blocks (global index or state-dict prefix) whose
        video-token outputs are returned in `.features`; `routes` enables TREAD token routing in training mode.
        `step_cache` (a `motif_video.perf.StepCache` branch, sampling only) may skip every block after the first.
        `guidance` [B] or scalar: the guidance scale, for models built with `guidance_embeds=True` only.
        """
        with _lora_scale(self, attention_kwargs):
            b, _, t, h, w = hidden_states.shape
            grid = self._token_grid(t, h, w)
            taps = {self._block_index(name): name for name in return_features}
            active_routes = self._active_routes(routes)

            # 1. Embed: video tokens, timestep, text (+ image) tokens, RoPE tables from position ids.
            x = self.x_embedder(hidden_states)  # [B, N, D]
            temb = self.time_text_embed(_batch_timestep(timestep, b, x.device), x.dtype)  # [B, D]
            temb = self._add_guidance(temb, guidance)  # [B, D]
            y, mask, image_tokens = self._embed_context(
                encoder_hidden_states, encoder_attention_mask, image_embeds
            )
            rope = rope_tables(
                video_position_ids(*grid, device=x.device), self.config.rope_axes_dim, self.config.rope_theta
            )
            # 2-3. Encoder, then the DDT decoder if any (or block 0 and the step cache's stand-in for the rest).
            features: dict[Hashable, torch.Tensor] = {}
            stage = (temb, rope, mask, image_tokens, active_routes, taps, features, routing_generator)
            if step_cache is None and not (taps or active_routes):
                step_cache = (
                    self._enabled_step_cache()
                )  # `enable_cache(FirstBlockCacheConfig(...))` on a DDT model
            if step_cache is None:
                x = self._run_blocks(x, y, stage)
            else:
                x = self._run_blocks_cached(x, y, stage, step_cache)

            # 4. Head: AdaLN-continuous, project to patches, unpatchify.
            out = self.proj_out(self.norm_out(x, temb))  # [B, N, C_out p_t p p]
            sample = unpatchify(out, grid, self.config.patch_size, self.config.patch_size_t)

        if not return_dict:
            return (sample, features) if return_features else (sample,)
        return MotifVideoTransformerOutput(sample=sample, features=features)

    def _run_blocks(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        stage: tuple,
        first: int = 0,
        x_embed: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Encoder blocks from global index `first` on (x, y), then the decoder; returns the video tokens.

        Encoder: dual-stream then single-stream blocks over [video | image + text]. DDT decoder: the stream restarts
        from the patch-embedded input `x_embed` (default: x) and attends, unmasked, jointly with the encoder output,
        which keeps evolving. Without decoder blocks the head reads the encoder output.
        """
        x_embed = x if x_embed is None else x_embed
        x, _ = self._run_stage(self.encoder_blocks[first:], first, x, y, *stage)
        if not self.decoder_blocks:
            return x
        temb, rope, _, _, routes, taps, features, generator = stage
        x, _ = self._run_stage(
            self.decoder_blocks, len(self.encoder_blocks), x_embed, x, temb, rope, None, 0, routes, taps, features,
            generator,
        )  # fmt: skip
        return x

    def _run_blocks_cached(
        self, x_embed: torch.Tensor, y: torch.Tensor, stage: tuple, cache: StepCacheBranch
    ) -> torch.Tensor:
        """Block 0, then either every other block or the cache's residual in their place (sampling only).

        The cached residual is measured from where the last stage starts: the patch-embedded input when a DDT
        decoder restarts from it, block 0's output otherwise.
        """
        if stage[4] or stage[5]:
            raise ValueError("step_cache is for sampling: it cannot be combined with routes or features")
        x, y = self._run_stage(self.encoder_blocks[:1], 0, x_embed, y, *stage)
        base = x_embed if self.decoder_blocks else x
        cached = cache.lookup(x - x_embed)
        if cached is not None:
            return base + cached  # skipped step: the last full step's residual on this step's start
        out = self._run_blocks(x, y, stage, first=1, x_embed=x_embed)
        cache.store(out - base)
        return out

    def _add_guidance(self, temb: torch.Tensor, guidance: torch.Tensor | float | None) -> torch.Tensor:
        if self.guidance_embedder is None:
            if guidance is not None:
                raise ValueError(
                    "guidance was given but this model has no guidance embedder (guidance_embeds=False); "
                    "use a guidance-distilled student or pass guidance=None"
                )
            return temb
        if guidance is None:
            raise ValueError(
                "this model is guidance-distilled (guidance_embeds=True): pass guidance=<scale> (e.g. 8.0)"
            )
        scale = _batch_timestep(guidance, temb.shape[0], temb.device, "guidance")
        return temb + self.guidance_embedder(scale, temb.dtype).to(temb.dtype)

    def _token_grid(self, t: int, h: int, w: int) -> tuple[int, int, int]:
        p, pt = self.config.patch_size, self.config.patch_size_t
        if t % pt or h % p or w % p:
            raise ValueError(
                f"latent size (T={t}, H={h}, W={w}) must be divisible by the patch size (t {pt}, h/w {p}); "
                "in pixels: height and width multiples of 16"
            )
        return t // pt, h // p, w // p

    def _embed_context(
        self, text: torch.Tensor, mask: torch.Tensor | None, image_embeds: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None, int]:
        """[image | text] tokens at model width, their key mask (None when all are valid), the image count."""
        text, mask = trim_text_padding(text, mask)
        y = self.context_embedder(text)  # [B, E_t, D]
        if image_embeds is None:
            return y, mask, 0
        if self.image_embedder is None:
            raise ValueError(
                "image_embeds were given but this model has no image_embed_dim (it is text-to-video only)"
            )
        image = self.image_embedder(image_embeds)  # [B, E_i, D]
        if mask is not None:
            mask = torch.cat([mask.new_ones(image.shape[:2]), mask], dim=1)
        return torch.cat([image, y], dim=1), mask, image.shape[1]

    def _run_stage(
        self,
        blocks: list[nn.Module],
        first_index: int,
        x: torch.Tensor,
        y: torch.Tensor,
        temb: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        mask: torch.Tensor | None,
        image_tokens: int,
        routes: dict[int, Route],
        taps: dict[int, Hashable],
        features: dict[Hashable, torch.Tensor],
        generator: torch.Generator | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run `blocks` (global indices first_index..) on (x, y), routing video tokens where a route says so.

        In the decoder (`mask` is None and y has the video token layout) y is routed together with x.
        """
        decoder = first_index >= len(self.encoder_blocks)
        route, saved, keep, block_rope = None, None, None, rope
        for offset, block in enumerate(blocks):
            index = first_index + offset
            if index in routes:
                route, saved = routes[index], (x, y)
                keep = select_tokens(x.shape[0], x.shape[1], route.ratio, x.device, generator)
                x = gather_tokens(x, keep)
                y = gather_tokens(y, keep) if decoder else y
                block_rope = (gather_tokens(rope[0], keep), gather_tokens(rope[1], keep))
            x, y = self._call_block(block, x, y, temb, block_rope, mask, image_tokens)
            routed_x = x
            if route is not None and index == route.end_layer:
                x = scatter_tokens(saved[0], x, keep)
                y = scatter_tokens(saved[1], y, keep) if decoder else y
                route, block_rope = None, rope
            if index in taps:
                features[taps[index]] = scatter_tokens(saved[0], routed_x, keep) if route is not None else x
        return x, y

    def _call_block(self, block: nn.Module, *args: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if torch.is_grad_enabled() and self.gradient_checkpointing:
            return self._gradient_checkpointing_func(block, *args)
        return block(*args)

    def _block_index(self, name: int | str) -> int:
        total = len(self.repeated_blocks())
        if isinstance(name, int):
            if not 0 <= name < total:
                raise ValueError(f"feature block index must be in 0..{total - 1}, got {name}")
            return name
        for index in range(total):
            if self.block_name(index) == name:
                return index
        raise ValueError(
            f"unknown feature block {name!r}; use a global index 0..{total - 1} or a name like "
            f"'transformer_blocks.0' / 'single_transformer_blocks.0'"
        )

    def _active_routes(self, routes: Sequence[Route | dict] | None) -> dict[int, Route]:
        """Routes apply in training mode only: inference is always dense."""
        if not routes or not self.training:
            return {}
        encoder = len(self.encoder_blocks)
        bounds = [(0, encoder), (encoder, encoder + len(self.decoder_blocks))]
        return {r.start_layer: r for r in validate_routes([Route.parse(r) for r in routes], bounds)}

    # ----------------------------------------------------------------------------------------------------------
    # saving and loading

    def to_json_string(self) -> str:
        config = json.loads(super().to_json_string())
        config["_class_name"] = RELEASED_CLASS_NAME
        for key, default in self.optional_config_keys.items():
            if config.get(key, default) == default:
                config.pop(key, None)
        return json.dumps(config, indent=2, sort_keys=True) + "\n"

    def check_no_lora_layers(self) -> None:
        """Refuse to save weights wrapped in LoRA layers: their keys (`base_layer`, `lora_A`) are no model's, so the
        folder would load nowhere. The two ways out are named."""
        import sys

        if "peft" not in sys.modules:  # no LoRA layer can exist without it
            return
        from peft.tuners.tuners_utils import BaseTunerLayer

        if any(isinstance(m, BaseTunerLayer) for m in self.modules()):
            adapters = sorted(getattr(self, "peft_config", None) or {})
            raise ValueError(
                f"the transformer carries LoRA adapter(s) {adapters}, whose layers no model folder holds: merge "
                "them first (pipe.fuse_lora(); pipe.unload_lora_weights()) to save the merged model, or save the "
                "adapter alone (pipe.save_lora_weights(DIR))"
            )

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        is_main_process: bool = True,
        safe_serialization: bool = True,
        variant: str | None = None,
        max_shard_size: int | str = "10GB",
        **kwargs: Any,
    ) -> None:
        """Write config.json and safetensors weights atomically (a temporary folder, then renames). The options are
        named so that diffusers' pipeline `save_pretrained` passes `variant` and `max_shard_size` on. A model that
        carries LoRA layers is refused (`check_no_lora_layers`)."""
        from .loading import save_atomically

        self.check_no_lora_layers()

        save_atomically(self, save_directory, super().save_pretrained, is_main_process=is_main_process,
                        safe_serialization=safe_serialization, variant=variant, max_shard_size=max_shard_size,
                        **kwargs)  # fmt: skip


def _check_config(args: dict[str, Any]) -> None:
    """Constructor arguments with a clear error for values the architecture cannot honour."""
    if args["qk_norm"] != "rms_norm":
        raise ValueError(f"qk_norm must be 'rms_norm', got {args['qk_norm']!r}")
    if args["norm_type"] != "layer_norm":
        raise ValueError(f"norm_type must be 'layer_norm', got {args['norm_type']!r}")
    if not 0 <= args["num_decoder_layers"] <= args["num_single_layers"]:
        raise ValueError(
            f"num_decoder_layers must be in 0..num_single_layers ({args['num_single_layers']}), "
            f"got {args['num_decoder_layers']}"
        )
    if sum(args["rope_axes_dim"]) != args["attention_head_dim"]:
        raise ValueError(
            f"rope_axes_dim {list(args['rope_axes_dim'])} must sum to attention_head_dim {args['attention_head_dim']}"
        )


@torch.no_grad()
def zero_guidance_embedder_(embedder: nn.Module) -> None:
    """Zero the guidance embedding's output layer: it then adds exactly 0 to temb."""
    nn.init.zeros_(embedder.timestep_embedder.linear_2.weight)
    nn.init.zeros_(embedder.timestep_embedder.linear_2.bias)


def _batch_timestep(
    timestep: torch.Tensor | float, batch: int, device: torch.device, name: str = "timestep"
) -> torch.Tensor:
    timestep = torch.as_tensor(timestep, device=device)
    if timestep.ndim == 0:
        return timestep.expand(batch)
    if timestep.shape != (batch,):
        raise ValueError(f"{name} must be a scalar or have shape [{batch}], got {list(timestep.shape)}")
    return timestep


class _lora_scale:
    """Scale peft LoRA layers by attention_kwargs['scale'] for one call (diffusers' convention)."""

    def __init__(self, model: nn.Module, attention_kwargs: dict[str, Any] | None) -> None:
        unknown = set(attention_kwargs or {}) - {"scale"}
        if unknown:
            raise ValueError(f"unknown attention_kwargs {sorted(unknown)}; supported: 'scale' (LoRA scale)")
        self.model, self.scale = model, (attention_kwargs or {}).get("scale", 1.0)

    def __enter__(self) -> None:
        if self.scale != 1.0:
            from diffusers.utils import scale_lora_layers

            scale_lora_layers(self.model, self.scale)

    def __exit__(self, *exc: object) -> None:
        if self.scale != 1.0:
            from diffusers.utils import unscale_lora_layers

            unscale_lora_layers(self.model, self.scale)


register_blocks_for_hooks()
