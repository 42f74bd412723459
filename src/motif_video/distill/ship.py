"""Copy a distilled student into a shippable folder: its transformer in float16 and its generation defaults,
pointing at a base model by name (the package ships `assets/<name>/`; the base's VAE and text encoder are shared).

    python -m motif_video.distill.ship runs/small-4step src/motif_video/assets/small-4step --base-model small \
        --decoder-fit-steps 20
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch

from ..defaults import GenerationDefaults
from ..model_folder import recorded_base
from ..models import MotifVideoTransformer


def ship_student(
    student: str | Path,
    dest: str | Path,
    base_model: str,
    dtype: torch.dtype = torch.float16,
    decoder_fit_steps: int | None = None,
) -> Path:
    """`decoder_fit_steps`: the student's own (None: its base model's), e.g. fewer than the teacher's where the fit
    would cost more than the student's few steps."""
    student, dest = Path(student), Path(dest)
    defaults = GenerationDefaults.read(student)
    if defaults is None or defaults.adapter is not None:
        raise ValueError(f"{student} is not a full student folder (generation_config.json with adapter null)")
    if decoder_fit_steps is not None and decoder_fit_steps < 0:
        raise ValueError(f"decoder_fit_steps must be >= 0, got {decoder_fit_steps}")
    # cast as it loads (diffusers warns of modules to keep in float32 on any `.to(dtype)` of a model, even with none)
    MotifVideoTransformer.from_pretrained(student / "transformer", torch_dtype=dtype).save_pretrained(
        dest / "transformer"
    )
    base_model = recorded_base(base_model)  # a shipped model by its name, another local folder absolute
    dataclasses.replace(defaults, base_model=base_model, decoder_fit_steps=decoder_fit_steps).write(dest)
    return dest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("student")
    parser.add_argument("dest")
    parser.add_argument("--base-model", required=True, help="name, folder or Hub id of the teacher's model")
    parser.add_argument(
        "--decoder-fit-steps",
        type=int,
        default=None,
        help="the student's own decoder fit (default: its base's)",
    )
    args = parser.parse_args(argv)
    print(ship_student(args.student, args.dest, args.base_model, decoder_fit_steps=args.decoder_fit_steps))


if __name__ == "__main__":
    main()
