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


# -- audit a128 F3, F7: features far from the origin, or too large, and bad types --------------------------------


def _exact(real: torch.Tensor, fake: torch.Tensor, k: int) -> dict:
    """The four figures from distances of direct differences (no |a|^2 + |b|^2 - 2ab cancellation), float64."""
    d = lambda a, b: torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")  # noqa: E731
    r_real = d(real, real).topk(k + 1, largest=False).values[:, -1]
    r_fake = d(fake, fake).topk(k + 1, largest=False).values[:, -1]
    dist = d(real, fake)
    inside = dist < r_real[:, None]
    return {"precision": float(inside.any(0).double().mean()), "recall": float((dist < r_fake[None]).any(1).double().mean()),
            "density": float(inside.sum().double() / (k * fake.shape[0])), "coverage": float(inside.any(1).double().mean())}


def test_prdc_of_features_far_from_the_origin_is_exact():
    """At an offset of 1e4 and a spread of 1e-3, the matmul-form distances were off by 1e-4 against radii of 5e-3:
    precision 0.833 for 0.85, density 0.880 for 0.922."""
    g = torch.Generator().manual_seed(0)
    real = torch.randn(300, 16, generator=g, dtype=torch.float64) * 1e-3 + 1e4
    fake = torch.randn(300, 16, generator=g, dtype=torch.float64) * 1e-3 + 1e4
    assert prdc(real, fake) == pytest.approx(_exact(real, fake, 5), abs=1e-12)
    direct = torch.cdist(real, real, compute_mode="donot_use_mm_for_euclid_dist").topk(6, largest=False).values[:, -1]
    assert torch.allclose(knn_radii(real, 5), direct, rtol=1e-9, atol=0)


def test_prdc_of_large_features_does_not_overflow():
    """Features near 1e160 overflowed the squared norms: every distance inf, and all four figures 0.0."""
    z = torch.randn(10, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    s = 2.0**530                                       # ~3.5e159, a power of two: the scaled sets are the same bits
    assert prdc(z * s, z * 1.1 * s, k=2) == prdc(z, z * 1.1, k=2) == _exact(z, z * 1.1, 2)
    assert prdc(z * 1e160, z * 1.1e160, k=2) == _exact(z, z * 1.1, 2)
    assert torch.equal(knn_radii(z * s, 2), knn_radii(z, 2) * s)


@pytest.mark.parametrize("call,msg", [
    (lambda: prdc(torch.randn(10, 3, dtype=torch.cfloat), torch.randn(10, 3)), r"real features must be real numbers, got torch\.complex64"),
    (lambda: knn_radii("abc", 1), r"features must be a tensor of real numbers, got str \(new\(\): invalid data type 'str'\)"),
])
def test_prdc_bad_types_are_one_line_data_errors(call, msg):
    with pytest.raises(DataError, match=f"^{msg}$"):
        call()
