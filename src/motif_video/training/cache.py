"""Precomputed training inputs: normalised VAE latents, text embeddings + masks (and SigLIP tokens) in shards.

Layout of a cache folder:
    index.json                 {"version", "fps", "max_tokens", "image_embeds", "buckets", "latent_norm",
                               "shards": [...]} where each shard is {"file", "items": [{"key", "bucket", "caption"}]}
                               ("key": the media file's resolved path), "buckets" the [frames, height, width]
                               choices it was written for and "latent_norm" the VAE config's normalisation
    null_text.safetensors      the empty prompt's embedding and mask (for text dropout)
    shard-00000.safetensors    "{j}.latents" [16, T, h, w], "{j}.text" [L_j, C], "{j}.text_mask" [L_j] (bool),
                               "{j}.image_embeds" [N, C'] when written with image embeddings

Text is stored cut after its last valid token. Shards are written to a temporary name then renamed, and the index
is rewritten after each shard, so an interrupted run resumes where it stopped (items already in a shard are skipped).
A cache is refused for a VAE whose normalisation differs from the one it was written with (`check_latent_norm`), and
is added to only with the settings it was written with (`check_settings`), and trains only a recipe its settings fit
(`check_fits_recipe`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from ..file_modes import write_safetensors
from ..pipelines.latents import FIRST_FRAME_MEAN, latent_norm
from .components import Components
from .data import MediaDataset, collate
from .encoders import encode_image_tokens, encode_text, encode_video

INDEX = "index.json"
NULL_TEXT = "null_text.safetensors"


# The settings a cache records, and how each is set (`motif-video cache` flag / recipe key).
SETTINGS = {
    "fps": "--fps / data.fps",
    "max_tokens": "--max-tokens / model.max_text_tokens",
    "image_embeds": "--image-embeds / i2v.image_embeds",
    "buckets": "--bucket / data.buckets",
}


def _item_key(dataset: MediaDataset, index: int) -> str:
    return _resolved(str(dataset.items[index].path))


def _resolved(path: str) -> str:
    """One key per file however its folder was typed (relative, absolute, through a link); a key of a cache written
    before keys were resolved is resolved from the working directory, where such a cache is resumed from."""
    return str(Path(path).resolve())


def _write_atomic(tensors: dict[str, torch.Tensor], path: Path) -> None:
    write_safetensors(tensors, path)


def _write_index(folder: Path, index: dict[str, Any]) -> None:
    tmp = folder / (INDEX + ".tmp")
    tmp.write_text(json.dumps(index, indent=1))
    os.replace(tmp, folder / INDEX)


def check_latent_norm(index: dict[str, Any], vae_config: Any, folder: str | Path) -> None:
    """Refuse a cache whose latents were normalised otherwise than `vae_config` normalises them. A cache written
    before the index recorded it passes only for a VAE without the frame-0 pair (what such caches were written with)."""
    expected = latent_norm(vae_config)
    recorded = index.get("latent_norm")
    if recorded is None:
        if expected[FIRST_FRAME_MEAN] is None:
            return
        reason = "was written before caches recorded their latent normalisation, so without the frame-0 pair"
    elif recorded != expected:
        changed = [k for k in expected if recorded.get(k) != expected[k]]
        reason = f"was written with other latent statistics ({', '.join(changed)} differ)"
    else:
        return
    raise ValueError(
        f"cache {str(folder)!r} {reason}, and the VAE in use normalises latents otherwise: its latents would train "
        "the model on another latent space. Delete the folder to write it again with this VAE, or use the VAE it "
        "was written with"
    )


def check_settings(index: dict[str, Any], asked: dict[str, Any], folder: str | Path) -> None:
    """Refuse to add items to a cache written with other settings (each one it records): the cache would mix two
    encodings, and its index would claim one for all (image embeddings for items that have none)."""
    for key, how in SETTINGS.items():
        if key in index and index[key] != asked[key]:
            raise ValueError(
                f"cache {str(folder)!r} was written with {key} {index[key]!r}, and this run asks for "
                f"{asked[key]!r} ({how}): add to it with the settings it was written with, or write another "
                "cache folder (or delete this one to write it again)"
            )


def check_fits_recipe(index: dict[str, Any], asked: dict[str, Any], folder: str | Path) -> None:
    """Refuse to train from a cache written with another fps or text length than the recipe asks for, or without
    the image embeddings it needs (`asked["image_embeds"]`: `inputs.needs_image_embeds`; extra ones go unused). A
    setting the index does not record (a cache written before it did) is not checked; buckets are checked by
    `inputs._checked_cache` (a cache of fewer buckets than the recipe lists fits)."""
    for key, fits, change in (
        ("fps", lambda cached: float(cached) == float(asked["fps"]), f"set data.fps={index.get('fps')}"),
        ("max_tokens", lambda cached: cached == asked["max_tokens"],
         f"set model.max_text_tokens={index.get('max_tokens')}"),
        ("image_embeds", lambda cached: bool(cached) or not asked["image_embeds"],
         "set i2v.image_embeds=false (or i2v.probability=0)"),
    ):  # fmt: skip
        if key in index and not fits(index[key]):
            flag = SETTINGS[key].split(" / ")[0]
            raise ValueError(
                f"cache {str(folder)!r} was written with {key} {index[key]!r}, and this recipe asks for "
                f"{asked[key]!r} ({SETTINGS[key]}): {change} to train from it, or write another cache folder "
                f"with these settings (`motif-video cache {flag}`, or data.path with a new data.cache)"
            )


def make_cache_folder(folder: str | Path) -> Path:
    """`folder`, created when missing; a ValueError naming it when it is a file or cannot be created there."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"cache folder {str(folder)!r} is a file: name a folder (new, or a cache to resume)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(
            f"cannot create the cache folder {str(folder)!r}: {error.strerror or error}"
        ) from None
    return folder


def build_cache(
    dataset: MediaDataset,
    components: Components,
    folder: str | Path,
    *,
    max_tokens: int = 512,
    shard_size: int = 64,
    image_embeds: bool = False,
    batch_size: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    """Encode every item of `dataset` into `folder` (resuming a partial cache); returns the index."""
    from tqdm.auto import tqdm

    folder = make_cache_folder(folder)
    index = read_index(folder) if (folder / INDEX).exists() else {"version": 1, "shards": []}
    buckets = sorted(list(b) for b in dataset.bucket_choices)
    asked = {"fps": dataset.fps, "max_tokens": max_tokens, "image_embeds": image_embeds, "buckets": buckets}
    if index["shards"]:
        check_latent_norm(index, components.vae.config, folder)
        check_settings(index, asked, folder)
    index.update(**asked, latent_norm=latent_norm(components.vae.config))
    done = {_resolved(item["key"]) for shard in index["shards"] for item in shard["items"]}
    if not (folder / NULL_TEXT).exists():
        embeds, mask = encode_text(components, [""], max_tokens)
        _write_atomic({"text": embeds[0].float().cpu(), "text_mask": mask[0].cpu()}, folder / NULL_TEXT)

    todo = [i for i in range(len(dataset)) if _item_key(dataset, i) not in done]
    shards = _ShardWriter(folder, index, shard_size)
    bar = tqdm(total=len(dataset), initial=len(dataset) - len(todo), desc="caching", disable=not progress)
    # Items of one bucket share a shape, so they can be encoded together.
    by_bucket: dict[tuple[int, int, int], list[int]] = {}
    for i in todo:
        by_bucket.setdefault(dataset.buckets[i], []).append(i)
    for bucket, indices in by_bucket.items():
        for start in range(0, len(indices), batch_size):
            batch = collate([dataset[i] for i in indices[start : start + batch_size]])
            bar.update(min(batch_size, len(indices) - start))
            if "index" not in batch:  # every item broken (the dataset's report counts them)
                continue
            encoded = _encode_batch(components, batch, max_tokens, image_embeds)
            for j, (index_in_dataset, tensors) in enumerate(zip(batch["index"], encoded)):
                item = {"key": _item_key(dataset, index_in_dataset), "bucket": list(bucket)}
                shards.add(tensors, {**item, "caption": batch["caption"][j]})
    shards.flush()
    bar.close()
    index["skipped"] = dict(dataset.skipped.counts)
    _write_index(folder, index)
    return index


def _encode_batch(
    components: Components, batch: dict[str, Any], max_tokens: int, image_embeds: bool
) -> list[dict[str, torch.Tensor]]:
    """Per item: latents, text embeddings and mask cut after the last valid token (+ SigLIP tokens), on the CPU."""
    latents = encode_video(components.vae, batch["pixels"]).cpu()
    text, mask = encode_text(components, batch["caption"], max_tokens)
    images = encode_image_tokens(components, batch["pixels"][:, :, 0]).float().cpu() if image_embeds else None
    items = []
    for j in range(latents.shape[0]):
        valid = int(mask[j].nonzero().max()) + 1 if mask[j].any() else 1
        item = {
            "latents": latents[j],
            "text": text[j, :valid].float().cpu(),
            "text_mask": mask[j, :valid].cpu(),
        }
        if images is not None:
            item["image_embeds"] = images[j]
        items.append(item)
    return items


class _ShardWriter:
    """Collects items into shards of `shard_size`; each full shard is written atomically and added to the index."""

    def __init__(self, folder: Path, index: dict[str, Any], shard_size: int) -> None:
        self.folder, self.index, self.shard_size = folder, index, shard_size
        self.tensors: dict[str, torch.Tensor] = {}
        self.items: list[dict[str, Any]] = []

    def add(self, tensors: dict[str, torch.Tensor], item: dict[str, Any]) -> None:
        k = len(self.items)
        self.tensors.update({f"{k}.{name}": value for name, value in tensors.items()})
        self.items.append(item)
        if len(self.items) >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        if not self.items:
            return
        name = f"shard-{len(self.index['shards']):05d}.safetensors"
        _write_atomic(self.tensors, self.folder / name)
        self.index["shards"].append({"file": name, "items": list(self.items)})
        _write_index(self.folder, self.index)
        self.tensors.clear()
        self.items.clear()


def read_index(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / INDEX
    if not path.is_file():
        raise ValueError(
            f"{str(folder)!r} is not a cache folder (no {INDEX}). A training run writes its cache there on its "
            "first run (`motif-video train --config recipes/tiny-cpu/config.yaml` writes runs/tiny-cpu/cache, the "
            "one recipes/distill/tiny-cpu.yaml reads); point data.cache=DIR at an existing cache (a distillation: "
            "its teacher's), or encode a media folder into one with `motif-video cache`"
        )
    return json.loads(path.read_text())


class CachedDataset(torch.utils.data.Dataset):
    """Items of a cache folder: {"latents", "text", "text_mask", ["image_embeds"], "caption", "index"}."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        index = read_index(self.folder)
        self.entries = [(shard["file"], j) for shard in index["shards"] for j in range(len(shard["items"]))]
        self.captions = [item["caption"] for shard in index["shards"] for item in shard["items"]]
        self.buckets = [tuple(item["bucket"]) for shard in index["shards"] for item in shard["items"]]
        null = load_file(str(self.folder / NULL_TEXT))
        self.null_text, self.null_mask = null["text"], null["text_mask"]
        self._shard: tuple[str, dict[str, torch.Tensor]] | None = None

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> dict[str, Any]:
        file, j = self.entries[index]
        if self._shard is None or self._shard[0] != file:
            self._shard = (file, load_file(str(self.folder / file)))
        tensors = self._shard[1]
        out = {key.split(".", 1)[1]: t for key, t in tensors.items() if key.split(".", 1)[0] == str(j)}
        return {**out, "caption": self.captions[index], "index": index}


def collate_cached(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack latents; right-pad text embeddings and masks to the longest in the batch."""
    length = max(s["text"].shape[0] for s in samples)
    text = torch.zeros(len(samples), length, samples[0]["text"].shape[1])
    mask = torch.zeros(len(samples), length, dtype=torch.bool)
    for i, s in enumerate(samples):
        text[i, : s["text"].shape[0]] = s["text"]
        mask[i, : s["text_mask"].shape[0]] = s["text_mask"]
    out = {
        "latents": torch.stack([s["latents"] for s in samples]),
        "text": text,
        "text_mask": mask,
        "caption": [s["caption"] for s in samples],
        "index": [s["index"] for s in samples],
    }
    if "image_embeds" in samples[0]:
        out["image_embeds"] = torch.stack([s["image_embeds"] for s in samples])
    return out
