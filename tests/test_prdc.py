"""Precision / recall / density / coverage against the authors' `prdc` package (a test dependency)."""

import contextlib
import io

import pytest
import torch

from genzoo.errors import DataError
from genzoo.eval.prdc import knn_radii, prdc

compute_prdc = pytest.importorskip("prdc").compute_prdc  # in the `test` extra; imported only here

pytestmark = pytest.mark.usefixtures("one_thread")


def _reference(real: torch.Tensor, fake: torch.Tensor, k: int) -> dict:
    with contextlib.redirect_stdout(io.StringIO()):  # compute_prdc prints the set sizes
        return {key: float(v) for key, v in compute_prdc(real.numpy(), fake.numpy(), nearest_k=k).items()}


@pytest.mark.parametrize("n_real,n_fake,d,k,shift,scale", [
    (500, 500, 16, 5, 0.0, 1.0),     # same distribution
    (600, 400, 32, 5, 0.5, 1.0),     # shifted fakes
    (400, 700, 8, 3, 0.0, 0.4),      # collapsed fakes: high precision, low recall
    (300, 300, 64, 10, 0.0, 2.0),    # spread-out fakes
])
def test_prdc_matches_the_prdc_package(n_real, n_fake, d, k, shift, scale):
    g = torch.Generator().manual_seed(n_real + d)
    real = torch.randn(n_real, d, generator=g, dtype=torch.float64)
    fake = scale * torch.randn(n_fake, d, generator=g, dtype=torch.float64) + shift
    got, ref = prdc(real, fake, k=k, chunk=128), _reference(real, fake, k)  # chunks smaller than the sets
    assert got == pytest.approx(ref, abs=1e-12)


def test_prdc_chunking_does_not_change_the_result():
    real, fake = torch.randn(700, 8), torch.randn(500, 8) + 0.2
    assert prdc(real, fake, chunk=64) == prdc(real, fake, chunk=4096)


def test_knn_radii_excludes_the_point_itself():
    x = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    assert knn_radii(x, 1).tolist() == [1.0, 1.0, 2.0, 4.0]
    assert knn_radii(x, 2).tolist() == [3.0, 2.0, 3.0, 6.0]


def test_prdc_identical_sets_are_perfect():
    x = torch.randn(300, 10)
    r = prdc(x, x.clone())
    assert r["precision"] == r["recall"] == r["coverage"] == 1.0
    assert r["density"] == pytest.approx(1.0)


def test_prdc_errors():
    with pytest.raises(DataError, match="more than k = 5"):
        prdc(torch.randn(100, 3), torch.randn(5, 3))
    with pytest.raises(DataError, match="differ in width"):
        prdc(torch.randn(100, 3), torch.randn(100, 4))
