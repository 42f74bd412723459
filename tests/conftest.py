import pytest
import torch


@pytest.fixture(autouse=True)
def _deterministic_one_thread():
    """Seeded, and one CPU thread: every test works on tiny tensors, where extra threads only add overhead on a
    shared 2-core machine (measured: up to 80x slower for tiny matmuls with 2 threads under load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)
