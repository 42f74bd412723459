"""Tiny model folders in the released layout, built once per test session (about 3 s each)."""

from __future__ import annotations

import shutil

import pytest


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory):
    from motif_video.testing import write_tiny_pipeline_folder

    return write_tiny_pipeline_folder(tmp_path_factory.mktemp("tiny-motif-video"))


@pytest.fixture(scope="session")
def strong_folder(tiny_folder, tmp_path_factory):
    """The tiny folder with larger random transformer weights, so that text and guidance visibly move the output
    (with the default std 0.05 the negative prompt changes the latents by only ~1e-4, too little for parity tests
    to tell guidance settings apart)."""
    from motif_video.testing import tiny_transformer

    path = tmp_path_factory.mktemp("strong") / "model"
    shutil.copytree(tiny_folder, path)
    shutil.rmtree(path / "transformer")
    tiny_transformer(0, std=0.2).save_pretrained(path / "transformer")
    return path
