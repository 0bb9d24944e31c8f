import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
MNIST_ROOT = Path(os.environ.get("GENZOO_TEST_MNIST", REPO.parent / "shared" / "data" / "mnist"))


@pytest.fixture
def mnist_root() -> Path:
    if not (MNIST_ROOT / "train-images-idx3-ubyte.gz").exists() and not (MNIST_ROOT / "train-images-idx3-ubyte").exists():
        pytest.fail(f"MNIST test files not found in {MNIST_ROOT} (set GENZOO_TEST_MNIST)")
    return MNIST_ROOT


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors on a shared 2-core machine: torch's OpenMP pool would only spin (up to 10x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
