"""FID, KID, IS and class histograms against straightforward NumPy/SciPy references."""

import numpy as np
import pytest
import scipy.linalg
import torch

from genzoo.errors import DataError
from genzoo.eval.fid import (class_histogram, feature_stats, fid, frechet_distance, inception_score, kid,
                              polynomial_mmd2)

pytestmark = pytest.mark.usefixtures("one_thread")


def _features(seed: int, n: int = 1500, d: int = 32, shift: float = 0.0, scale: float = 1.0) -> torch.Tensor:
    """Correlated, non-negative-ish features like ReLU outputs: a random linear map of Gaussians."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=torch.Generator().manual_seed(100)) / d**0.5
    return (scale * torch.randn(n, d, generator=g) @ mix + shift).relu()


def _numpy_fid(a: np.ndarray, b: np.ndarray) -> float:
    """The textbook formula with scipy.linalg.sqrtm (as pytorch-fid)."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    covmean = covmean.real if np.iscomplexobj(covmean) else covmean
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def _numpy_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 (Gretton et al. 2012, eq. 3), cubic polynomial kernel, written out with explicit pair masks:
    the means over the pairs i != j within x (m (m - 1) of them) and within y (n (n - 1)), over all m n across."""
    d, m, n = x.shape[1], x.shape[0], y.shape[0]
    k = lambda a, b: (a @ b.T / d + 1) ** 3  # noqa: E731
    return float(k(x, x)[~np.eye(m, dtype=bool)].mean() + k(y, y)[~np.eye(n, dtype=bool)].mean() - 2 * k(x, y).mean())


@pytest.mark.parametrize("shift,scale", [(0.0, 1.0), (0.3, 1.0), (0.0, 1.5), (1.0, 0.5)])
def test_fid_matches_scipy_sqrtm(shift, scale):
    a, b = _features(0), _features(1, shift=shift, scale=scale)
    ref = _numpy_fid(a.numpy().astype(np.float64), b.numpy().astype(np.float64))
    assert fid(a, b) == pytest.approx(ref, abs=1e-3, rel=1e-6)


def test_fid_zero_for_identical_stats_and_symmetric():
    a, b = _features(0), _features(1, shift=0.5)
    mu, sigma = feature_stats(a)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-8)
    assert fid(a, a) == pytest.approx(0.0, abs=1e-8)
    assert fid(a, b) == pytest.approx(fid(b, a), rel=1e-9)
    assert fid(a, b) > 1.0


def test_frechet_distance_closed_form_and_singular_covariance():
    # diagonal Gaussians: d^2 = |dmu|^2 + sum (sqrt(s1) - sqrt(s2))^2
    s1, s2 = torch.tensor([1.0, 4.0, 0.0]), torch.tensor([9.0, 1.0, 0.0])  # a zero variance: singular
    got = frechet_distance(torch.zeros(3), torch.diag(s1), torch.tensor([1.0, 0, 0]), torch.diag(s2))
    assert got == pytest.approx(1 + (1 - 3) ** 2 + (2 - 1) ** 2)
    # rank-deficient covariances from fewer samples than features: finite, non-negative
    a, b = torch.randn(10, 50), torch.randn(10, 50)
    assert 0 <= fid(a, b) < float("inf")


def test_kid_matches_numpy_on_the_same_subsets():
    a, b = _features(0, n=1200), _features(1, n=1000, shift=0.2)
    # one subset of the whole (equal-size) sets: no sampling, the estimator is permutation invariant
    m, _ = kid(a[:1000], b, subsets=1, subset_size=1000)
    assert m == pytest.approx(_numpy_mmd2(a[:1000].double().numpy(), b.double().numpy()), abs=1e-3, rel=1e-6)
    # random subsets: replay the documented draws (real then fake, randperm[:m], per subset)
    mean, std = kid(a, b, subsets=5, subset_size=300, generator=torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)
    ref = []
    for _ in range(5):
        ia = torch.randperm(len(a), generator=g)[:300].numpy()
        ib = torch.randperm(len(b), generator=g)[:300].numpy()
        ref.append(_numpy_mmd2(a.double().numpy()[ia], b.double().numpy()[ib]))
    assert mean == pytest.approx(np.mean(ref), abs=1e-3, rel=1e-6)
    assert std == pytest.approx(np.std(ref), abs=1e-3, rel=1e-6)


@pytest.mark.parametrize("m,n", [(200, 50), (50, 200), (2, 3), (300, 300)])
def test_polynomial_mmd2_of_sets_of_unequal_size_is_gretton_eq3(m, n):
    """The cross term and y's term took m for n: 200 against 50 rows gave 0.76 for the unbiased 0.96."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(m, 8, generator=g), torch.randn(n, 8, generator=g) + 0.5
    assert polynomial_mmd2(x, y) == pytest.approx(_numpy_mmd2(x.double().numpy(), y.double().numpy()), rel=1e-10)
    assert polynomial_mmd2(x, y) == pytest.approx(polynomial_mmd2(y, x), rel=1e-10)   # symmetric


def test_kid_subsets_of_a_small_set_vary():
    """Subsets of 1,000 of a 300-image set each took all 300: for two such sets every subset was the same, std 0."""
    a, b = _features(0, n=300), _features(1, n=300)
    mean, std = kid(a, b, subsets=50, subset_size=1000, generator=torch.Generator().manual_seed(0))
    assert std > 0.01 * abs(mean) + 1e-9
    whole, _ = kid(a, b, subsets=1, subset_size=1000)  # one subset may be the whole of both
    assert abs(mean - whole) < 4 * std  # both unbiased


def test_kid_near_zero_for_one_distribution_and_positive_otherwise():
    a, b, c = _features(0), _features(1), _features(2, shift=0.3)
    same, same_std = kid(a, b, subsets=20, subset_size=500, generator=torch.Generator().manual_seed(0))
    diff, _ = kid(a, c, subsets=20, subset_size=500, generator=torch.Generator().manual_seed(0))
    assert abs(same) < 3 * same_std + 1e-6
    assert diff > 20 * max(abs(same), same_std)


def test_inception_score_bounds_and_collapse():
    eye = torch.eye(10)
    assert inception_score(eye.repeat(100, 1)) == pytest.approx((10.0, 0.0))
    assert inception_score(eye[[3]].repeat(1000, 1))[0] == pytest.approx(1.0)       # one class
    assert inception_score(torch.full((1000, 10), 0.1))[0] == pytest.approx(1.0)   # no confidence
    soft = torch.softmax(torch.randn(1000, 10) * 3, 1)
    assert 1 < inception_score(soft)[0] < 10


def test_class_histogram_from_labels_and_probs():
    labels = torch.tensor([0, 0, 1, 9])
    assert class_histogram(labels).tolist() == [0.5, 0.25] + [0.0] * 7 + [0.25]
    one = torch.softmax(torch.randn(50, 10) + 10 * torch.nn.functional.one_hot(torch.tensor(4), 10), 1)
    assert class_histogram(one).tolist() == [0.0] * 4 + [1.0] + [0.0] * 5


@pytest.mark.parametrize("call,msg", [
    (lambda: fid(torch.randn(10, 3), torch.randn(10, 4)), "differ in width"),
    (lambda: fid(torch.randn(10), torch.randn(10, 4)), "(N, F) matrix"),
    (lambda: fid(torch.full((5, 2), float("nan")), torch.randn(5, 2)), "NaN"),
    (lambda: kid(torch.randn(10, 3), torch.randn(10, 3), subset_size=1), "subset_size >= 2"),
    (lambda: polynomial_mmd2(torch.randn(10, 3), torch.randn(10, 4)), "features of one width, got 3 and 4"),
    (lambda: polynomial_mmd2(torch.randn(1, 3), torch.randn(10, 3)), "at least 2 rows"),
    (lambda: inception_score(torch.randn(10, 10)), "sum to 1"),
    (lambda: class_histogram(torch.tensor([0.5, 1.0])), "integer labels"),
    (lambda: class_histogram(torch.tensor([11])), "0..9"),
])
def test_errors_are_one_line(call, msg):
    with pytest.raises(DataError) as e:
        call()
    assert msg in str(e.value) and "\n" not in str(e.value)


def test_kid_subsets_hold_at_most_half_of_the_smaller_set_with_no_jump(monkeypatch):
    """1,000 fakes gave subsets of 500 but 1,001 fakes subsets of 1,000, each nearly the whole set: kid_std halved
    at that step."""
    import genzoo.eval.fid as fid_module

    sizes = []
    real_mmd = fid_module.polynomial_mmd2
    monkeypatch.setattr(fid_module, "polynomial_mmd2", lambda r, f: sizes.append((len(r), len(f))) or real_mmd(r, f))
    g = torch.Generator().manual_seed(0)
    real, fakes = torch.randn(5000, 8, generator=g), torch.randn(2500, 8, generator=g)
    expected = {999: 499, 1000: 500, 1001: 500, 1999: 999, 2000: 1000, 2500: 1000}
    for n_fake, m in expected.items():
        sizes.clear()
        kid(real, fakes[:n_fake], subsets=3, subset_size=1000, generator=g)
        assert sizes == [(m, m)] * 3, (n_fake, sizes)
    sizes.clear()
    kid(real, fakes[:1001], subsets=1, subset_size=1000, generator=g)  # one subset: as large as asked
    assert sizes == [(1000, 1000)]


def test_inception_score_parts_follow_the_authors_boundaries():
    """Rows i N // splits to (i + 1) N // splits (Salimans et al.'s code), not tensor_split's larger first parts."""
    from scipy.special import rel_entr

    p = torch.softmax(torch.randn(10_005, 10, generator=torch.Generator().manual_seed(0)) * 3, 1).double()
    scores = []
    for i in range(10):
        part = p[i * 10_005 // 10:(i + 1) * 10_005 // 10].numpy()
        scores.append(np.exp(rel_entr(part, part.mean(0, keepdims=True)).sum(1).mean()))
    mean, std = inception_score(p, splits=10)
    assert mean == pytest.approx(np.mean(scores), rel=1e-12) and std == pytest.approx(np.std(scores), rel=1e-9)


@pytest.mark.parametrize("splits", [2.5, True, "2", None])
def test_inception_score_splits_must_be_a_whole_number(splits):
    """splits=2.5 raised a bare TypeError and splits=True was taken as one part; KID checks its integers already."""
    p = torch.eye(10).repeat(10, 1).double()
    with pytest.raises(DataError) as e:
        inception_score(p, splits=splits)
    assert "splits is a whole number" in str(e.value) and "\n" not in str(e.value)
    assert inception_score(p, splits=np.int64(2)) == pytest.approx((10.0, 0.0))  # a NumPy integer is one
