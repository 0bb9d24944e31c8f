import os
from pathlib import Path

import pytest
import torch

import genzoo

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


def _assert_idle(name: str, kw: dict, option: str, value, x: torch.Tensor, listed: bool = True) -> None:
    """``option=value`` is listed by ``unused_options`` (unless not ``listed``) and changes nothing: same weights
    after the same training step, same logs, same samples (a buffer that only records the option may differ)."""
    runs = []
    for extra in ({}, {option: value}):
        torch.manual_seed(0)
        m = genzoo.build(name, **kw, **extra)
        assert not listed or option in m.unused_options(), (option, m.unused_options())
        m.setup(x, torch.Generator().manual_seed(0))
        torch.manual_seed(1)
        logs = m.training_step(genzoo.Batch(x), m.configure_optimizers())
        runs.append((m.state_dict(), logs, m.eval().sample(4, torch.Generator().manual_seed(2))))
    (sa, la, xa), (sb, lb, xb) = runs
    assert la == lb and torch.equal(xa, xb)
    assert all(torch.equal(sa[k], sb[k]) for k in sa.keys() & sb.keys() if k != option)


@pytest.fixture
def assert_idle():
    """The check that a model option its other settings make idle is listed by ``unused_options`` and changes
    nothing (shared by the families' tests)."""
    return _assert_idle
