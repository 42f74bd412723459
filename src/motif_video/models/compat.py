"""What makes `MotifVideoTransformer` behave as diffusers' Motif transformer beyond its forward: the loaders
(`from_pretrained` with our checks, `from_single_file`), strict config reading, and diffusers' caches.

Caches. `enable_cache` is diffusers' `CacheMixin.enable_cache` (FirstBlockCache, TaylorSeer, MagCache, ...), with our
blocks registered for its hooks, and one exception measured on this architecture: FirstBlockCache and MagCache treat
every block after the first as one residual stage whose second stream is the text, but a DDT decoder restarts from
the patch embedding and its second stream is the encoder output. diffusers' FirstBlockCache hooks fail on it with a
shape error on the first skipped step (and passing the decoder through would return the embedding). So with decoder
blocks a `FirstBlockCacheConfig` runs our step cache (`perf.step_cache`: the same first-block rule, the decoder's
residual measured from where it starts, one state per `cache_context` name, skips in `cache_report()`) and a
`MagCacheConfig` is refused. Without decoder blocks diffusers' hooks run unchanged.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from torch import nn


class DiffusersCompat:
    """Mixin placed before diffusers' `ModelMixin` / `CacheMixin` in `MotifVideoTransformer`'s bases."""

    _step_cache = None  # a perf.step_cache.StepCache standing in for diffusers' FirstBlockCache (DDT models)
    _cache_context_name = None

    # ----------------------------------------------------------------------------------------------------------
    # loading

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any) -> Any:
        """diffusers' loader with our strictness (unknown keys, missing or unexpected weights, pickles refused
        unless `allow_pickle=True`); also takes shipped model names and `device=`. See `loading.load_transformer`."""
        from .loading import load_transformer

        return load_transformer(cls, super().from_pretrained, pretrained_model_name_or_path, **kwargs)

    @classmethod
    def from_single_file(cls, path_or_state_dict: str | os.PathLike | dict, **kwargs: Any) -> Any:
        """One checkpoint file (safetensors, or GGUF with `quantization_config=GGUFQuantizationConfig(...)`) or a
        state dict, in diffusers' key layout; `config`: a model folder / Hub id / dict (default: the released
        config, with the cross-attention layout read from the keys). See `loading.load_single_file`."""
        from .loading import load_single_file

        return load_single_file(cls, path_or_state_dict, **kwargs)

    @classmethod
    def _load_pretrained_model(cls, model: nn.Module, state_dict: Any, resolved_model_file: list[str],
                               pretrained_model_name_or_path: Any, *args: Any, **kwargs: Any) -> Any:  # fmt: skip
        """diffusers' weight loading, after checking the files' keys and shapes against the built model."""
        from .loading import check_checkpoint

        quantized = kwargs.get("hf_quantizer") is not None
        check_checkpoint(model, resolved_model_file, str(pretrained_model_name_or_path), quantized)
        return super()._load_pretrained_model(
            model, state_dict, resolved_model_file, pretrained_model_name_or_path, *args, **kwargs
        )

    @classmethod
    def extract_init_dict(cls, config_dict: dict[str, Any], **kwargs: Any) -> tuple:
        """diffusers' config reading, except that a key this model does not know is an error, not a warning."""
        from .loading import config_keys

        known = config_keys(cls)
        unknown = sorted(
            k for k in config_dict if not k.startswith("_") and k != "quantization_config" and k not in known
        )
        if unknown:
            raise ValueError(f"config keys this model does not know: {unknown}; known keys: {sorted(known)}")
        return super().extract_init_dict(config_dict, **kwargs)

    # ----------------------------------------------------------------------------------------------------------
    # caches

    def enable_cache(self, config: Any) -> None:
        """diffusers' `enable_cache`, except on DDT models for FirstBlockCache (ours) and MagCache (refused)."""
        from diffusers.hooks import FirstBlockCacheConfig, MagCacheConfig

        if self.decoder_blocks and isinstance(config, FirstBlockCacheConfig):
            from ..perf.step_cache import StepCache

            if self.is_cache_enabled:
                raise ValueError(
                    f"a cache is already enabled ({type(self._cache_config).__name__}); disable it first"
                )
            group = getattr(self, "_cache_process_group", None)
            self._step_cache, self._cache_config = StepCache(config.threshold, process_group=group), config
            return
        if self.decoder_blocks and isinstance(config, MagCacheConfig):
            raise ValueError(
                "MagCache passes the blocks after the first through on a skipped step, which a DDT decoder (it "
                "restarts from the patch embedding) turns into a wrong prediction; use FirstBlockCacheConfig or "
                "TaylorSeerCacheConfig with this model"
            )
        super().enable_cache(config)

    def disable_cache(self) -> None:
        if self._step_cache is not None:
            self._step_cache, self._cache_config = None, None
            return
        super().disable_cache()

    @contextlib.contextmanager
    def cache_context(self, name: str, **kwargs: Any) -> Iterator[None]:
        """diffusers' `cache_context` (each name keeps its own cache state), also naming our step cache's branch."""
        previous, self._cache_context_name = self._cache_context_name, name
        try:
            with super().cache_context(name, **kwargs):
                yield
        finally:
            self._cache_context_name = previous

    def _reset_stateful_cache(self, recurse: bool = True) -> None:
        """diffusers calls this at the end of each pipeline call: our step cache is emptied when the next run
        starts, so that `cache_report()` still tells what the last run skipped."""
        self._step_cache_stale = True
        super()._reset_stateful_cache(recurse=recurse)

    def cache_report(self) -> dict:
        """Per cache context: calls and skipped call indices of our step cache (empty when it is not in use)."""
        return self._step_cache.report() if self._step_cache is not None else {}

    def _enabled_step_cache(self) -> Any:
        """The branch of the enabled FirstBlockCache stand-in for the current cache context, or None."""
        if self._step_cache is None:
            return None
        if getattr(self, "_step_cache_stale", False):
            self._step_cache.reset()
            self._step_cache_stale = False
        return self._step_cache.branch(self._cache_context_name or "default")


_REGISTERED = False


def register_blocks_for_hooks() -> None:
    """Tell diffusers' block hooks (caches, layer skipping in `SkipLayerGuidance`) where our blocks take and return
    the two streams; done when the transformer module is imported."""
    global _REGISTERED
    if _REGISTERED:
        return
    from diffusers.hooks._helpers import TransformerBlockMetadata, TransformerBlockRegistry

    from .blocks import DualStreamBlock, SingleStreamBlock

    for block in (DualStreamBlock, SingleStreamBlock):
        metadata = TransformerBlockMetadata(
            return_hidden_states_index=0, return_encoder_hidden_states_index=1
        )
        TransformerBlockRegistry.register(model_class=block, metadata=metadata)
    _REGISTERED = True
