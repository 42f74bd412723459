"""`motif-video cache`: precompute normalised VAE latents and text embeddings into safetensors shards."""

from __future__ import annotations

import argparse

from ..hub import DEFAULT_MODEL_ID
from .numbers import COUNT, POSITIVE


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "cache",
        help="precompute latents and text embeddings for training",
        description="Encode a media folder or manifest into a cache folder the trainer reads (data.cache). "
        "Re-running resumes: items already in a shard are skipped.",
    )
    parser.add_argument(
        "data", help="folder of videos/images with same-named .txt captions, or a .jsonl/.csv manifest"
    )
    parser.add_argument("output", help="cache folder")
    parser.add_argument(
        "--components",
        default=DEFAULT_MODEL_ID,
        help="model folder or Hub id with vae/, text_encoder/, tokenizer/ (default %(default)s; 'tiny': the "
        "offline debug components)",
    )
    parser.add_argument(
        "--bucket",
        action="append",
        default=None,
        metavar="FxHxW",
        help="frames x height x width, repeatable (default 121x480x832)",
    )
    parser.add_argument(
        "--fps",
        type=POSITIVE,
        default=24.0,
        help="frame rate frames are resampled to (default 24)",
    )
    parser.add_argument("--max-tokens", type=COUNT, default=512, help="text tokens (default 512)")
    parser.add_argument("--shard-size", type=COUNT, default=64, help="items per shard (default 64)")
    parser.add_argument(
        "--image-embeds", action="store_true", help="also store SigLIP tokens of the first frame (I2V)"
    )
    parser.add_argument(
        "--caption-field", default="caption", help="manifest caption column (default caption)"
    )
    parser.add_argument("--device", default=None, help="device (default: cuda if available)")
    parser.set_defaults(func=run)


def parse_bucket(text: str) -> list[int]:
    parts = text.lower().split("x")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"bucket {text!r} must look like FRAMESxHEIGHTxWIDTH, e.g. 121x480x832")
    return [int(p) for p in parts]


def run(args: argparse.Namespace) -> int:
    import torch

    from ..training.cache import build_cache, make_cache_folder
    from ..training.components import load_components, vae_config
    from ..training.data import MediaDataset, check_buckets, list_media

    # everything that can be wrong with the arguments is found before the media are probed (minutes for many)
    buckets = check_buckets([parse_bucket(b) for b in (args.bucket or ["121x480x832"])])
    items = list_media(args.data, args.caption_field)
    # the components' name resolves (only the VAE's config is fetched) before a folder is made
    vae_config(args.components)
    make_cache_folder(args.output)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    components = load_components(args.components, device, dtype)
    dataset = MediaDataset(items, buckets, args.fps)
    print(f"{len(dataset)} items; {dataset.skipped}")
    index = build_cache(dataset, components, args.output, max_tokens=args.max_tokens, shard_size=args.shard_size,
                        image_embeds=args.image_embeds)  # fmt: skip
    count = sum(len(s["items"]) for s in index["shards"])
    print(f"cache {args.output}: {count} items in {len(index['shards'])} shard(s); {dataset.skipped}")
    return 0
