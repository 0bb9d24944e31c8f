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


# -- audit a128: overflow, scale, input types (F1, F2, F7, F10) --------------------------------------------------

_Z = torch.randn(10, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
_KERNEL_OVERFLOW = (r"^KID/MMD\^2 overflows float64: the features are too large for the cubic kernel \(x\.y / F \+ 1\)\^3 "
                    r"\(largest \|x\| \S+\); rescale them$")


def test_kid_of_features_too_large_for_the_cubic_kernel_is_a_one_line_error():
    """Finite features past |x| ~ 1e50 overflowed the cubic kernel: polynomial_mmd2 gave NaN and kid (nan, nan)."""
    with pytest.raises(DataError, match=_KERNEL_OVERFLOW):
        polynomial_mmd2(_Z * 1e110, _Z * 1.1e110)
    with pytest.raises(DataError, match=_KERNEL_OVERFLOW):
        kid(_Z * 1e110, _Z * 1.1e110, subsets=3)


def test_kid_std_of_large_but_finite_mmds_does_not_overflow():
    """MMDs near 1e179 are finite, but their squares in the std overflowed: kid gave std = inf."""
    import statistics

    a, b = _Z * 1e30, _Z * 1.1e30
    mean, std = kid(a, b, subsets=3, generator=torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)  # replay the documented draws: real then fake, randperm[:m] (m = 5)
    ref = [polynomial_mmd2(a[torch.randperm(10, generator=g)[:5]], b[torch.randperm(10, generator=g)[:5]]) for _ in range(3)]
    assert mean == pytest.approx(statistics.fmean(ref), rel=1e-12) and std == pytest.approx(statistics.pstdev(ref), rel=1e-9)
    assert 0 < std < float("inf")


def test_fid_of_large_finite_features_is_computed_on_a_common_scale():
    """Covariances near 1e220 are finite, but eigh failed on them: a bare LinAlgError. FID(sX, sY) = s^2 FID(X, Y)."""
    base = fid(_Z, 1.1 * _Z)
    assert fid(_Z * 1e110, _Z * 1.1e110) == pytest.approx(1e220 * base, rel=1e-9)
    assert frechet_distance(*feature_stats(_Z * 1e110), *feature_stats(_Z * 1.1e110)) == pytest.approx(1e220 * base, rel=1e-9)
    assert fid(_Z * 1e150, _Z * 1.1e150) == pytest.approx(1e300 * base, rel=1e-9)   # covariances ~1e300: fine too
    # (2^-300, not 2^-600: 2^-1200 is 0.0 in float64, which any FID below 1e-12 would have matched)
    assert fid(_Z * 2.0**-300, _Z * 1.1 * 2.0**-300) == pytest.approx(2.0**-600 * base, rel=1e-9)
    with pytest.raises(DataError, match=r"^the Frechet distance overflows float64 \(largest \|x\| \S+\); rescale the features$"):
        fid(_Z * 1e160, _Z * 1.1e160)                        # the true FID, ~4e318, is past float64's range
    with pytest.raises(DataError, match=r"^the covariance of the features overflows float64 \(largest \|x\| \S+\); rescale them$"):
        feature_stats(_Z * 1e160)                            # was a covariance of inf, returned silently


def test_an_eigendecomposition_that_fails_is_a_one_line_data_error(monkeypatch):
    def fails(*args, **kwargs):
        raise torch.linalg.LinAlgError("linalg.eigh: The algorithm failed to converge\nmore")

    monkeypatch.setattr(torch.linalg, "eigvalsh", fails)
    with pytest.raises(DataError, match=r"^Frechet distance: the eigendecomposition of the covariances failed "
                                        r"\(linalg\.eigh: The algorithm failed to converge\)$"):
        fid(_Z, 1.1 * _Z)


def test_the_psd_check_of_frechet_distance_is_relative():
    """An eigenvalue of -0.5 against a largest of 1 was refused, but -5e-7 against 1e-6 accepted (absolute floor)."""
    s_bad = torch.diag(torch.tensor([1e-6, -5e-7], dtype=torch.float64))
    eye, zeros = torch.eye(2, dtype=torch.float64), torch.zeros(2)
    with pytest.raises(DataError, match=r"^Frechet distance needs positive semi-definite covariances, got an eigenvalue "
                                        r"-5e-07 \(largest 1e-06\)$"):
        frechet_distance(zeros, s_bad, zeros, 1e-6 * eye)
    with pytest.raises(DataError, match=r"^Frechet distance needs positive semi-definite covariances, got an eigenvalue "
                                        r"-0\.5 \(largest 1\)$"):
        frechet_distance(zeros, s_bad * 1e6, zeros, eye)
    assert frechet_distance(zeros, 0 * eye, torch.ones(2), 0 * eye) == 2.0                      # zero covariances pass
    assert frechet_distance(zeros, 1e-12 * eye, zeros, 4e-12 * eye) == pytest.approx(2e-12, rel=1e-9)  # tiny ones too


@pytest.mark.parametrize("call,msg", [
    (lambda: class_histogram(torch.full((3, 10), float("nan"))), r"class probabilities contain NaN or infinite values"),
    (lambda: class_histogram(torch.tensor([True, False])),
     r"class histogram needs \(N,\) integer labels or \(N, K\) probabilities, got booleans \(2,\)"),
    (lambda: class_histogram(torch.ones(3, 2, dtype=torch.bool), n_classes=2),
     r"class histogram needs \(N,\) integer labels or \(N, K\) probabilities, got booleans \(3, 2\)"),
    (lambda: class_histogram(torch.tensor([0]), n_classes=0), r"class histogram needs a whole number n_classes >= 1, got 0"),
    (lambda: class_histogram(torch.tensor([0]), n_classes=True), r"class histogram needs a whole number n_classes >= 1, got True"),
    (lambda: class_histogram(torch.tensor([1 + 0j])), r"class probabilities or labels must be real numbers, got torch\.complex64"),
    (lambda: fid(torch.randn(10, 4, dtype=torch.cfloat), torch.randn(10, 4)),
     r"real features must be real numbers, got torch\.complex64"),
    (lambda: kid(torch.randn(10, 4), torch.randn(10, 4, dtype=torch.cdouble)),
     r"fake features must be real numbers, got torch\.complex128"),
    (lambda: fid("abc", torch.randn(10, 4)),
     r"real features must be a tensor of real numbers, got str \(new\(\): invalid data type 'str'\)"),
    (lambda: inception_score("abc"),
     r"class probabilities must be a tensor of real numbers, got str \(new\(\): invalid data type 'str'\)"),
    (lambda: frechet_distance(torch.zeros(2), torch.eye(2, dtype=torch.cfloat), torch.zeros(2), torch.eye(2)),
     r"the covariances must be real numbers, got torch\.complex64"),
    (lambda: fid(torch.zeros(5, 0), torch.zeros(5, 0)), r"real features have no columns: a \(N, F\) matrix needs F >= 1"),
])
def test_bad_inputs_are_one_line_data_errors(call, msg):
    """NaN probabilities counted as class 0, booleans as labels 1 and 0, complex features lost their imaginary part
    with only a warning, and a str gave a bare TypeError."""
    with pytest.raises(DataError, match=f"^{msg}$"):
        call()


def test_frechet_distance_of_means_far_larger_than_the_spreads_keeps_the_covariance_term():
    """One scale for means and covariances (r113 F4): beside means of 1e100 the covariances I and 4I fell below
    float64's resolution, and the distance came out 15 for the true 3 (tr I + tr 4I - 2 tr 2I in 3-D)."""
    eye = torch.eye(3, dtype=torch.float64)
    mu = torch.full((3,), 1e100, dtype=torch.float64)
    assert frechet_distance(mu, eye, mu, 4 * eye) == pytest.approx(3.0, rel=1e-12)  # 3 + 12 - 2 * 6
    far = mu.clone()
    far[0] += 2e84  # a mean gap (float64 rounds it to the ulps of 1e100) whose square swamps the covariance term
    gap = float(far[0] - mu[0])
    assert gap > 1e84 and frechet_distance(mu, eye, far, 4 * eye) == pytest.approx(gap**2 + 3.0, rel=1e-12)
