"""What the loop iterates: the dataset (a `motif-video cache` folder, or media encoded on the fly), this rank's
batches for a range of steps, and the model inputs of one batch.

The batch order is a pure function of (seed, step) (`buckets.BucketBatchSampler`), so a resumed run sees the
batches an uninterrupted one would have seen.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .buckets import BucketBatchSampler, ConditionedBatchSampler
from .config import TrainConfig

logger = logging.getLogger(__name__)


@dataclass
class TrainData:
    dataset: torch.utils.data.Dataset
    sampler: BucketBatchSampler | ConditionedBatchSampler
    collate: Callable[[list[Any]], Any]
    null_text: (
        torch.Tensor
    )  # the empty prompt's embedding [L, C] and mask [L]: text dropout, unguided teachers
    null_mask: torch.Tensor
    cached: bool


def build_data(config: TrainConfig, accelerator: Any, components: Any) -> TrainData:
    """The dataset of `data.cache` (built first from `data.path` when incomplete) or of `data.path`; procedural
    clips are written into an empty `data.path` first when `data.generate_clips` asks for them."""
    d = config.data
    path, cache = _expand(d.path, config), _expand(d.cache, config)
    if path is None and cache is None:
        raise ValueError(
            "set data.path (media folder or manifest) or data.cache (a `motif-video cache` folder)"
        )
    if path and d.generate_clips and accelerator.is_main_process and not _has_media(path):
        _write_generated_clips(config, path)
    accelerator.wait_for_everyone()
    for media, folder in (
        (path, cache),
        (_expand(d.conditioned_path, config), _expand(d.conditioned_cache, config)),
    ):
        if folder and media and accelerator.is_main_process and not _cache_complete(folder):
            _build_cache(config, media, folder, components)
    accelerator.wait_for_everyone()
    if cache:
        from .cache import collate_cached
        from .components import vae_config

        vae = components.vae.config if components is not None else vae_config(config.model.components)
        # with data.conditioned_share 1 every conditioned step draws from data.conditioned_cache
        only_unconditioned = d.conditioned_cache is not None and d.conditioned_share >= 1
        dataset = _checked_cache(
            cache, vae, config, image_embeds=needs_image_embeds(config) and not only_unconditioned
        )
        null_text, null_mask, collate_fn, cached = dataset.null_text, dataset.null_mask, collate_cached, True
    else:
        from .data import collate
        from .encoders import encode_text

        dataset = _media(config, path)
        if accelerator.is_main_process:
            # files that probe fine but fail to decode are found while training: the run's last line counts them
            logger.info("%d media items; when probed: %s", len(dataset), dataset.skipped)
        text, mask = encode_text(components, [""], config.model.max_text_tokens)
        null_text, null_mask, collate_fn, cached = text[0].float().cpu(), mask[0].cpu(), collate, False

    def sampler_of(items) -> BucketBatchSampler:
        return BucketBatchSampler(
            items.buckets, d.batch_size, accelerator.num_processes, accelerator.process_index, config.seed
        )

    sampler = sampler_of(dataset)
    if d.conditioned_cache:
        from .draws import from_conditioned_cache

        second = _checked_cache(_expand(d.conditioned_cache, config), vae, config, needs_image_embeds(config))
        sampler = ConditionedBatchSampler(
            sampler, sampler_of(second), len(dataset), lambda step: from_conditioned_cache(config, step)
        )
        dataset = torch.utils.data.ConcatDataset([dataset, second])
    return TrainData(dataset, sampler, collate_fn, null_text, null_mask, cached)


def _checked_cache(folder: str, vae_config: Any, config: TrainConfig, image_embeds: bool):
    """The `CachedDataset` of `folder`, refused when its latents were normalised otherwise than `vae_config` says,
    when its fps or text length differ from the recipe's, when it lacks the image embeddings training reads from it
    (`image_embeds`), when it holds no items, or when it holds items of buckets that data.buckets does not list."""
    from .cache import CachedDataset, check_fits_recipe, check_latent_norm, read_index
    from .data import check_buckets

    index = read_index(folder)
    check_latent_norm(index, vae_config, folder)
    asked = {"fps": config.data.fps, "max_tokens": config.model.max_text_tokens,
             "image_embeds": image_embeds}  # fmt: skip
    check_fits_recipe(index, asked, folder)
    dataset = CachedDataset(folder)
    if not len(dataset):
        raise ValueError(f"cache {folder!r} holds no items: write it from a data.path with media in it")
    cached = sorted(set(dataset.buckets))
    asked = check_buckets(config.data.buckets)
    if not set(cached) <= set(asked):
        raise ValueError(
            f"cache {folder!r} holds items of the buckets {[list(b) for b in cached]}, and data.buckets is "
            f"{[list(b) for b in asked]}: training would run at the cached sizes, not the ones asked for. Set "
            "data.buckets to the cache's, or write another cache folder (data.cache) for these buckets"
        )
    return dataset


def cached_skips(config: TrainConfig) -> str:
    """The skip report data.cache's index records (files left out when it was written), as the media path logs it."""
    from .cache import read_index
    from .data import SkipReport

    recorded = read_index(_expand(config.data.cache, config)).get("skipped")
    if recorded is None:
        return "cached (the cache records no skip report)"
    return f"cached; when written: {SkipReport(counts=Counter(recorded))}"


def needs_image_embeds(config: TrainConfig) -> bool:
    """Whether training reads SigLIP tokens of the first frame: `FlowMatching.compute_loss` gives them to the model
    on conditioned steps (`i2v.probability`) whose pattern conditions latent frame 0 (every pattern but "last",
    which conditions it only in a one-latent-frame bucket), when `i2v.image_embeds` asks for them."""
    i2v = config.i2v
    patterns = {name for name, weight in i2v.patterns.items() if weight > 0}
    one_frame = any(bucket[0] == 1 for bucket in config.data.buckets)
    return bool(i2v.probability and i2v.image_embeds and (patterns - {"last"} or one_frame))


def needs_encoders(config: TrainConfig) -> bool:
    """Whether the data need the frozen components (media encoded on the fly, or a cache still to build)."""
    d = config.data
    second = _expand(d.conditioned_cache, config)
    return (
        d.cache is None
        or not _cache_complete(_expand(d.cache, config) or "")
        or (second is not None and not _cache_complete(second))
    )


class StepBatches:
    """The batch sampler of the DataLoader: this rank's indices for steps start..stop-1."""

    def __init__(
        self, sampler: BucketBatchSampler, start: int, stop: int, repeat_first: bool = False
    ) -> None:
        self.sampler, self.start, self.stop, self.repeat_first = sampler, start, stop, repeat_first

    def __iter__(self):
        return (self.sampler.batch_at(0 if self.repeat_first else s) for s in range(self.start, self.stop))

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


def prepare_inputs(
    batch: dict[str, Any], data: TrainData, components: Any, config: TrainConfig, device
) -> dict:
    """Latents, text, mask, image tokens and pixels (when available) of one batch, on `device`."""
    from .encoders import encode_image_tokens, encode_text, encode_video

    if data.cached:
        out = {k: batch[k].to(device) for k in ("latents", "text", "text_mask")}
        if "image_embeds" in batch and config.i2v.image_embeds:  # a cache may hold ones the recipe turns off
            out["image_embeds"] = batch["image_embeds"].to(device)
        return out
    pixels = batch["pixels"]
    text, mask = encode_text(components, batch["caption"], config.model.max_text_tokens)
    out = {"latents": encode_video(components.vae, pixels).to(device), "text": text.float().to(device),
           "text_mask": mask.to(device), "pixels": pixels.to(device)}  # fmt: skip
    if needs_image_embeds(config):
        out["image_embeds"] = encode_image_tokens(components, pixels[:, :, 0]).float().to(device)
    return out


def _expand(path: str | None, config: TrainConfig) -> str | None:
    return None if path is None else path.replace("{output_dir}", config.output_dir)


def _has_media(path: str) -> bool:
    from .data import list_media

    return Path(path).exists() and bool(list_media(path))


def _cache_complete(cache: str) -> bool:
    """Written to the end ("skipped" recorded), with items (an empty one is written again, from media)."""
    index = Path(cache) / "index.json"
    if not index.is_file():
        return False
    written = json.loads(index.read_text())
    return "skipped" in written and any(shard["items"] for shard in written["shards"])


def _media(config: TrainConfig, path: str):
    from .data import MediaDataset, check_buckets, list_media

    d = config.data
    return MediaDataset(list_media(path, d.caption_field), check_buckets(d.buckets), d.fps)


def _write_generated_clips(config: TrainConfig, path: str) -> None:
    from ..synthetic.squares import write_moving_squares
    from .data import check_buckets

    d = config.data
    frames, height, width = check_buckets(d.buckets)[0]
    write_moving_squares(path, d.generate_clips, frames, height, width, fps=round(d.fps), seed=config.seed)


def _build_cache(config: TrainConfig, path: str, cache: str, components: Any) -> None:
    from .cache import build_cache

    media = _media(config, path)
    if not len(media):
        raise ValueError(f"data.path {path!r} has no usable media to cache into {cache!r} ({media.skipped})")
    logger.info("caching %d items into %s (%s)", len(media), cache, media.skipped)
    build_cache(
        media,
        components,
        cache,
        max_tokens=config.model.max_text_tokens,
        image_embeds=needs_image_embeds(config),
    )
