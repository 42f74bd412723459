import shutil

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """Every test uses tiny tensors: one intra-op thread is faster than several, above all on a shared CPU (the
    suite took 6.3 minutes with torch's default of 2 threads on a busy 2-core machine, 1.7 with one)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _deterministic_one_thread():
    """Seeded, and one CPU thread: every test works on tiny tensors, where extra threads only add overhead on a
    shared 2-core machine (measured: up to 80x slower for tiny matmuls with 2 threads under load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def teacher_folder(tmp_path_factory):
    """A tiny model folder whose transformer has strong random weights (so guidance visibly matters)."""
    from motif_video.testing import tiny_transformer, write_tiny_pipeline_folder

    folder = write_tiny_pipeline_folder(tmp_path_factory.mktemp("teacher") / "model")
    shutil.rmtree(folder / "transformer")
    tiny_transformer(0, layout="shared", std=0.2).save_pretrained(folder / "transformer")
    return folder
