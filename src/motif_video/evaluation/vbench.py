"""Drive VBench (github.com/Vchitect/VBench, PyPI `vbench`) for real models: write the suite's videos with VBench's
file naming, spread over ranks, then run the scorer when its weights are present locally.

Prompts: the `VBench_full_info.json` that the installed `vbench` package ships (946 entries, every dimension);
without the package, a bundled excerpt of it (one entry per dimension, `vbench_prompts_excerpt.json`) so the
naming and the rank split can be tried. Names: VBench's standard mode looks for `{prompt}-{index}.mp4` with
index 0..4 per prompt in one folder. Ranks: under torchrun, item k of the (prompt, index) list goes to rank
k mod WORLD_SIZE. Weights: the scorer loads them from VBENCH_CACHE_DIR (default ~/.cache/vbench) and would try
to download missing ones; we check first and name what is missing instead.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SAMPLES_PER_PROMPT = 5
# Files under VBENCH_CACHE_DIR each dimension's scorer loads (from vbench/utils.py::init_submodules, vbench 0.1.5).
WEIGHTS: dict[str, tuple[str, ...]] = {
    "subject_consistency": (
        "dino_model/dino_vitbase16_pretrain.pth",
        "dino_model/facebookresearch_dino_main",
    ),
    "background_consistency": ("clip_model/ViT-B-32.pt",),
    "temporal_flickering": (),
    "motion_smoothness": ("amt_model/amt-s.pth",),
    "dynamic_degree": ("raft_model/models/raft-things.pth",),
    "aesthetic_quality": ("clip_model/ViT-L-14.pt", "aesthetic_model/emb_reader"),
    "imaging_quality": ("pyiqa_model/musiq_spaq_ckpt-358bb6af.pth",),
    "object_class": ("grit_model/grit_b_densecap_objectdet.pth",),
    "multiple_objects": ("grit_model/grit_b_densecap_objectdet.pth",),
    "color": ("grit_model/grit_b_densecap_objectdet.pth",),
    "spatial_relationship": ("grit_model/grit_b_densecap_objectdet.pth",),
    "human_action": ("umt_model/l16_ptk710_ftk710_ftk400_f16_res224.pth",),
    "scene": ("caption_model/tag2text_swin_14m.pth",),
    "appearance_style": ("clip_model/ViT-B-32.pt",),
    "temporal_style": ("ViCLIP/ViClip-InternVid-10M-FLT.pth",),
    "overall_consistency": ("ViCLIP/ViClip-InternVid-10M-FLT.pth",),
}


@dataclass(frozen=True)
class SuiteItem:
    prompt: str
    index: int

    @property
    def filename(self) -> str:
        return video_name(self.prompt, self.index)


def video_name(prompt: str, index: int) -> str:
    """VBench's standard-mode file name of sample `index` (0..4) of `prompt`."""
    if not 0 <= index < SAMPLES_PER_PROMPT:
        raise ValueError(f"VBench sample index must be in 0..{SAMPLES_PER_PROMPT - 1}, got {index}")
    if "/" in prompt:
        raise ValueError(f"prompt {prompt!r} contains '/', which cannot be part of a file name")
    return f"{prompt}-{index}.mp4"


def vbench_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("vbench") is not None


def load_full_info() -> tuple[list[dict[str, Any]], str]:
    """(entries, source): the installed package's VBench_full_info.json, else the bundled excerpt."""
    from importlib.resources import files

    if vbench_installed():
        path = files("vbench") / "VBench_full_info.json"
        return json.loads(path.read_text()), "vbench package"
    path = files("motif_video.evaluation") / "vbench_prompts_excerpt.json"
    return json.loads(path.read_text()), "bundled excerpt (pip install vbench for the full suite)"


def suite_items(
    entries: list[dict[str, Any]], dimensions: list[str] | None = None, samples: int = SAMPLES_PER_PROMPT
) -> list[SuiteItem]:
    """Every (prompt, index) of the entries touching `dimensions` (all when None), each prompt once, in file order."""
    unknown = sorted(set(dimensions or ()) - set(WEIGHTS))
    if unknown:
        raise ValueError(f"unknown VBench dimension(s) {unknown}; allowed: {sorted(WEIGHTS)}")
    if not 1 <= samples <= SAMPLES_PER_PROMPT:
        raise ValueError(f"samples per prompt must be in 1..{SAMPLES_PER_PROMPT}, got {samples}")
    prompts: list[str] = []
    for entry in entries:
        wanted = dimensions is None or set(dimensions) & set(entry["dimension"])
        if wanted and entry["prompt_en"] not in prompts:
            prompts.append(entry["prompt_en"])
    return [SuiteItem(p, i) for p in prompts for i in range(samples)]


def for_rank(items: list[SuiteItem], rank: int, world_size: int) -> list[SuiteItem]:
    """Rank-strided share: items rank, rank + world_size, ..."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} must be in 0..{world_size - 1} (world size {world_size})")
    return items[rank::world_size]


def dist_env() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment; (0, 1, 0) without it."""
    return (
        int(os.environ.get("RANK", 0)),
        int(os.environ.get("WORLD_SIZE", 1)),
        int(os.environ.get("LOCAL_RANK", 0)),
    )


def cache_dir() -> Path:
    return Path(os.environ.get("VBENCH_CACHE_DIR") or Path.home() / ".cache" / "vbench")


def missing_weights(dimensions: list[str], root: Path | None = None) -> list[Path]:
    root = root or cache_dir()
    needed = sorted({rel for d in dimensions for rel in WEIGHTS[d]})
    return [root / rel for rel in needed if not (root / rel).exists()]


def check_scorer(dimensions: list[str], root: Path | None = None) -> None:
    """ValueError naming what the scorer lacks: the package, or weight files under VBENCH_CACHE_DIR."""
    if not vbench_installed():
        raise ValueError("the VBench scorer needs the `vbench` package: pip install 'motif-video[vbench]'")
    missing = missing_weights(dimensions, root)
    if missing:
        listed = "\n  ".join(str(p) for p in missing)
        raise ValueError(
            f"VBench weights missing for {dimensions} (set VBENCH_CACHE_DIR or place them there; "
            f"see vbench/utils.py for the URLs):\n  {listed}"
        )


def write_videos(
    pipe: Any, items: list[SuiteItem], folder: Path, seed: int, log=print, **call: Any
) -> list[Path]:
    """Generate each item (seed + index, skipping files already there) and write it as an MP4 in `folder`."""
    import torch

    from ..pipelines.export import write_mp4

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for item in items:
        path = folder / item.filename
        if not path.exists():
            generator = torch.Generator("cpu").manual_seed(seed + item.index)
            frames = pipe(prompt=item.prompt, generator=generator, output_type="np", **call).frames[0]
            write_mp4(frames, path)
            log(f"wrote {path}")
        written.append(path)
    return written


def score(folder: Path, dimensions: list[str], output: Path, name: str, device: str) -> dict[str, Any]:
    """Run VBench's standard-mode scorer over `folder`; returns its results JSON."""
    check_scorer(dimensions)
    from importlib.resources import files

    from vbench import VBench

    output.mkdir(parents=True, exist_ok=True)
    bench = VBench(device, str(files("vbench") / "VBench_full_info.json"), str(output))
    bench.evaluate(videos_path=str(folder), name=name, dimension_list=dimensions, local=True)
    return json.loads((output / f"{name}_eval_results.json").read_text())
