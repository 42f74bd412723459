import shutil

import pytest
import torch

# The longest tests, started first: under pytest-xdist (the README's `-n 2 --dist worksteal`) each worker starts on its
# share of the collection in order and takes tests from the other when it runs dry, and the README's run (about 5 of
# the suite's 14 minutes of work) left to the end would finish alone.
LONGEST_FIRST = ("tests/test_readme.py",)


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: every other test keeps its place


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """Every test uses tiny tensors: one intra-op thread is faster than several, above all on a shared CPU (the
    suite took 6.3 minutes with torch's default of 2 threads on a busy 2-core machine, 1.7 with one)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session", autouse=True)
def _weights_cache(tmp_path_factory):
    """The SHA-256s of weight files that runs keep (`motif_video.weights_fingerprint`) go to a folder of the session,
    not to the user's cache."""
    import os

    from motif_video.weights_fingerprint import CACHE_ENV

    before = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(tmp_path_factory.mktemp("weights-cache"))
    yield
    if before is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = before


@pytest.fixture(autouse=True)
def _deterministic_one_thread():
    """Seeded, and one CPU thread: every test works on tiny tensors, where extra threads only add overhead on a
    shared 2-core machine (measured: up to 80x slower for tiny matmuls with 2 threads under load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def diffusers_warnings(monkeypatch):
    """The messages diffusers' loggers warn during the test, in order (a list the test may clear), with the filters of
    known notices that any command run in this process installed (`cli.quiet_known_notices`) lifted."""
    import logging

    from motif_video.cli import KNOWN_NOTICES

    for name in KNOWN_NOTICES:
        monkeypatch.setattr(logging.getLogger(name), "filters", [])
    seen: list[str] = []
    collect = logging.Handler(logging.WARNING)
    collect.emit = lambda record: seen.append(record.getMessage())
    logger = logging.getLogger("diffusers")  # every diffusers module's logger reports to it
    logger.addHandler(collect)
    yield seen
    logger.removeHandler(collect)


@pytest.fixture(scope="module")
def teacher_folder(tmp_path_factory):
    """A tiny model folder whose transformer has strong random weights (so guidance visibly matters)."""
    from motif_video.testing import tiny_transformer, write_tiny_pipeline_folder

    folder = write_tiny_pipeline_folder(tmp_path_factory.mktemp("teacher") / "model")
    shutil.rmtree(folder / "transformer")
    tiny_transformer(0, layout="shared", std=0.2).save_pretrained(folder / "transformer")
    return folder


def corrupt_pixels_png(size=(32, 32)) -> bytes:
    """A PNG whose structure is sound (its chunks' CRCs right, so PIL's `verify` passes) and whose compressed pixel
    data is not: it fails only when its pixels are decoded."""
    import io
    import struct
    import zlib

    import numpy as np
    import PIL.Image

    buf = io.BytesIO()
    PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)).save(
        buf, "PNG"
    )
    data, out, at = buf.getvalue(), bytearray(buf.getvalue()[:8]), 8
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at : at + 8])
        body = bytearray(data[at + 8 : at + 8 + length])
        if kind == b"IDAT":
            for i in range(length // 4, length // 2):
                body[i] ^= 0x5A
        out += struct.pack(">I4s", length, kind) + body + struct.pack(">I", zlib.crc32(kind + body))
        at += 12 + length
    return bytes(out)
