"""Distances between feature sets, and scores of class predictions: FID, KID, IS, class histogram.

Pure functions on tensors, computed in float64 on the CPU; the features come from any network
(genzoo's digit classifiers: :mod:`genzoo.eval.features`).

* **FID** (Heusel et al. 2017, eq. 6): the Frechet distance between Gaussians fitted to the two sets,
  ``|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))``.
* **KID** (Binkowski et al. 2018, Section 4): the unbiased estimate of the squared MMD with the cubic
  polynomial kernel ``k(x, y) = (x.y / d + 1)^3``, averaged over random subsets (as torch-fidelity).
* **Inception Score** (Salimans et al. 2016, Section 4): ``exp(E_x KL(p(y|x) || p(y)))``, mean and
  standard deviation over ``splits`` parts (the authors' boundaries).
* **class histogram**: the share of each predicted class: mode collapse shows as empty bins.

>>> import torch
>>> g = torch.Generator().manual_seed(0)
>>> a, b = torch.randn(2000, 8, generator=g), torch.randn(2000, 8, generator=g) + 1.0
>>> round(fid(a, a), 6), 7 < fid(a, b) < 9           # |mu1 - mu2|^2 = 8, equal covariances
(0.0, True)
>>> mean, std = kid(a, b, subsets=10, subset_size=500, generator=g)
>>> mean > 10 * std > 0
True
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor

from ..errors import DataError

__all__ = ["frechet_distance", "feature_stats", "fid", "kid", "kid_subset_size", "polynomial_mmd2", "inception_score", "class_histogram"]


def _as_tensor(x: object, what: str) -> Tensor:
    """``x`` as a CPU tensor of real numbers (any dtype), or a one-line DataError."""
    try:
        t = torch.as_tensor(x).detach().cpu()
    except (TypeError, ValueError, RuntimeError) as e:  # a str, ragged lists, objects: torch's own message, one line
        raise DataError(f"{what} must be a tensor of real numbers, got {type(x).__name__} ({str(e).splitlines()[0]})") from None
    if t.is_complex():  # a cast to float64 would drop the imaginary part with only a warning
        raise DataError(f"{what} must be real numbers, got {t.dtype}")
    return t


def _as_float64(x: object, what: str) -> Tensor:
    """``x`` as a float64 CPU tensor, or a one-line DataError (:func:`_as_tensor`)."""
    return _as_tensor(x, what).to(torch.float64)


def _pow2_scale(m: float) -> float:
    """A power of two ``c`` with ``c <= m < 2 c`` (1 for ``m = 0``): dividing by it is exact (no rounding), so a
    computation on ``x / c`` gives the same bits as one on ``x`` wherever neither overflows."""
    return math.ldexp(1.0, math.frexp(m)[1] - 1) if m > 0 else 1.0


def _as_features(x: Tensor, what: str) -> Tensor:
    """(N, F) float64 CPU copy of a feature matrix, or a one-line DataError."""
    x = _as_float64(x, what)
    if x.ndim != 2:
        raise DataError(f"{what} must be a (N, F) matrix of features, got shape {tuple(x.shape)}")
    if x.shape[0] < 2:
        raise DataError(f"{what} needs at least 2 rows, got {x.shape[0]}")
    if x.shape[1] < 1:  # (a distance between sets of no features has no meaning; the scales below need one)
        raise DataError(f"{what} have no columns: a (N, F) matrix needs F >= 1")
    if not torch.isfinite(x).all():
        raise DataError(f"{what} contain NaN or infinite values")
    return x


def _same_width(a: Tensor, b: Tensor) -> None:
    if a.shape[1] != b.shape[1]:
        raise DataError(f"real and fake features differ in width: {a.shape[1]} vs {b.shape[1]}")


def feature_stats(feats: Tensor) -> tuple[Tensor, Tensor]:
    """Mean (F,) and unbiased covariance (F, F) of (N, F) features, in float64.

    >>> mu, sigma = feature_stats(torch.tensor([[1.0, 2.0], [3.0, 6.0], [5.0, 4.0]]))
    >>> mu.tolist(), sigma.tolist(), sigma.dtype          # divided by N - 1 = 2, as numpy.cov
    ([3.0, 4.0], [[4.0, 2.0], [2.0, 4.0]], torch.float64)
    """
    x = _as_features(feats, "features")          # (N, F)
    mu = x.mean(0)                               # (F,)
    xc = x - mu                                  # (N, F)
    sigma = xc.T @ xc / (x.shape[0] - 1)         # (F, F), as numpy.cov
    if not torch.isfinite(sigma).all():          # finite features past ~1e154: their squares overflow
        raise DataError(f"the covariance of the features overflows float64 (largest |x| {float(x.abs().max()):.3g}); rescale them")
    return mu, sigma


def _psd_sqrt(s: Tensor) -> Tensor:
    """Symmetric square root of a symmetric positive semi-definite matrix (negative eigenvalues -> 0)."""
    w, v = torch.linalg.eigh((s + s.T) / 2)      # (F,), (F, F)
    return (v * w.clamp(min=0).sqrt()) @ v.T     # (F, F)


def frechet_distance(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor) -> float:
    """Squared Frechet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2).

    ``d^2 = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))`` (Dowson & Landau 1982; Heusel
    et al. 2017, eq. 6). ``S1 S2`` is not symmetric, so instead of ``scipy.linalg.sqrtm`` (complex
    round-off, failures on singular covariances) the trace is taken through the similar, symmetric
    PSD matrix ``S1^(1/2) S2 S1^(1/2)``: ``tr((S1 S2)^(1/2)) = sum_i sqrt(lambda_i)`` over its
    eigenvalues, clamped at 0. Computed in float64 on a common power-of-two scale (exact: covariances near 1e220 are
    finite but defeat eigh); never negative. A covariance with an eigenvalue below -1e-6 times its largest is not
    PSD, and that, a failed eigendecomposition or a distance past float64's range are one-line DataErrors.

    >>> import torch
    >>> s = torch.eye(3)
    >>> frechet_distance(torch.zeros(3), s, torch.ones(3), 4 * s)   # 3 + 3 + 12 - 2 * 6
    6.0
    """
    mu1, mu2 = (_as_float64(m, "the means").reshape(-1) for m in (mu1, mu2))
    s1, s2 = (_as_float64(s, "the covariances") for s in (sigma1, sigma2))
    f = mu1.shape[0]
    if f < 1 or mu2.shape[0] != f or s1.shape != (f, f) or s2.shape != (f, f):
        raise DataError(
            f"Frechet distance needs means (F,) and covariances (F, F) of one width F >= 1, got "
            f"{tuple(mu1.shape)}, {tuple(s1.shape)}, {tuple(mu2.shape)}, {tuple(s2.shape)}"
        )
    if not all(bool(torch.isfinite(t).all()) for t in (mu1, mu2, s1, s2)):
        raise DataError("Frechet distance of means or covariances with NaN or infinite values")
    # the two parts on scales of their own (powers of two: exact): |mu1 - mu2|^2 / m^2 and the covariances' terms, which
    # scale as S / c^2, so covariances near 1e220, finite but too large for eigh to converge, give the right value
    # rather than a LinAlgError; one scale for both underflowed S where the means are far larger (1e100: 15 for 3)
    dm = mu1 - mu2                                                    # (F,)
    m_scale = _pow2_scale(float(dm.abs().max()))
    mean_term = float((dm / m_scale).square().sum()) * m_scale * m_scale
    c = _pow2_scale(math.sqrt(max(float(s1.abs().max()), float(s2.abs().max()))))
    s1, s2 = s1 / c / c, s2 / c / c
    try:
        for s in (s1, s2):  # a covariance is PSD; round-off may leave eigenvalues a little below 0
            w = torch.linalg.eigvalsh((s + s.T) / 2)                 # (F,)
            # relative to the matrix's own largest eigenvalue: the same defect is refused at every scale
            if float(w.min()) < -1e-6 * float(w.abs().max()):
                raise DataError(f"Frechet distance needs positive semi-definite covariances, got an eigenvalue "
                                f"{float(w.min()) * c * c:.4g} (largest {float(w.abs().max()) * c * c:.4g})")
        root1 = _psd_sqrt(s1)                                        # (F, F)
        m = root1 @ ((s2 + s2.T) / 2) @ root1                        # (F, F) symmetric PSD
        tr_covmean = torch.linalg.eigvalsh((m + m.T) / 2).clamp(min=0).sqrt().sum()
    except torch.linalg.LinAlgError as e:  # eigh did not converge (an ill-conditioned matrix): the user's data
        raise DataError(f"Frechet distance: the eigendecomposition of the covariances failed ({str(e).splitlines()[0]})") from None
    d2 = mean_term + max(float(torch.trace(s1) + torch.trace(s2) - 2 * tr_covmean), 0.0) * c * c
    if not math.isfinite(d2):  # the distance itself is past float64's range (~1.8e308)
        raise DataError(f"the Frechet distance overflows float64 (a mean gap up to {m_scale:.3g}, standard deviations up to "
                        f"{c:.3g}); rescale the features")
    return d2


def fid(real_feats: Tensor, fake_feats: Tensor) -> float:
    """Frechet Inception Distance between two (N, F) feature sets (Heusel et al. 2017).

    "Inception" is a name only: genzoo scores digit images with its own classifier's features. Computed on a common
    power-of-two scale of the two sets (exact), so features up to float64's range give the right value, or a
    DataError where the distance itself is past it.
    """
    real, fake = _as_features(real_feats, "real features"), _as_features(fake_feats, "fake features")
    _same_width(real, fake)
    # FID(X / c, Y / c) = FID(X, Y) / c^2 (Heusel et al. 2017, eq. 6 is quadratic in the features): on a common
    # power-of-two scale (exact) the covariances of features past ~1e154 do not overflow
    largest = max(float(real.abs().max()), float(fake.abs().max()))
    c = _pow2_scale(largest)
    d2 = frechet_distance(*feature_stats(real / c), *feature_stats(fake / c)) * c * c
    if not math.isfinite(d2):  # the distance itself is past float64's range (~1.8e308)
        raise DataError(f"the Frechet distance overflows float64 (largest |x| {largest:.3g}); rescale the features")
    return d2


def polynomial_mmd2(x: Tensor, y: Tensor) -> float:
    """Unbiased MMD^2 between (m, F) ``x`` and (n, F) ``y`` with ``k(a, b) = (a.b / F + 1)^3``.

    ``MMD^2_u = sum_{i != j} k(x_i, x_j) / (m (m - 1)) + sum_{i != j} k(y_i, y_j) / (n (n - 1))
    - 2 sum_{i, j} k(x_i, y_j) / (m n)`` (Gretton et al. 2012, eq. 3; for m = n the estimate of
    Binkowski et al. 2018 and torch-fidelity). Needs m, n >= 2 and one width F, else a DataError; so is a
    result that overflows float64 (features past |x| ~ 1e50, too large for the cubic kernel).

    >>> polynomial_mmd2(torch.zeros(2, 1), torch.ones(2, 1))   # k = 1 within x, 8 within y, 1 across: 1 + 8 - 2
    7.0
    >>> polynomial_mmd2(torch.zeros(3, 1), torch.ones(2, 1))   # sizes may differ: still 1 + 8 - 2
    7.0
    """
    x, y = _as_features(x, "x"), _as_features(y, "y")   # (m, F), (n, F) float64, m, n >= 2
    if x.shape[1] != y.shape[1]:
        raise DataError(f"MMD^2 needs features of one width, got {x.shape[1]} and {y.shape[1]}")
    (m, d), n = x.shape, y.shape[0]
    kxx = (x @ x.T / d + 1) ** 3                 # (m, m)
    kyy = (y @ y.T / d + 1) ** 3                 # (n, n)
    kxy = (x @ y.T / d + 1) ** 3                 # (m, n)
    within_x = (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))   # mean over the pairs i != j
    within_y = (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
    out = float(within_x + within_y - 2 * kxy.sum() / (m * n))
    # the cubic kernel of finite features overflows past |x| ~ 1e50 (inf, and inf - inf = NaN); KID is not
    # scale-invariant, so rescaling here would change the figure: the user must
    if not math.isfinite(out):
        raise DataError(f"KID/MMD^2 overflows float64: the features are too large for the cubic kernel (x.y / F + 1)^3 "
                        f"(largest |x| {max(float(x.abs().max()), float(y.abs().max())):.3g}); rescale them")
    return out


def kid_subset_size(n_real: int, n_fake: int, subsets: int, subset_size: int) -> int:
    """The rows ``m`` of each KID subset (:func:`kid`): ``min(subset_size, n_real, n_fake)``, and where there are
    several subsets at most half of the smaller set (at least 2).

    >>> kid_subset_size(10_000, 10_000, 100, 1000), kid_subset_size(300, 2000, 100, 1000), kid_subset_size(300, 2000, 1, 1000)
    (1000, 150, 300)
    """
    m = min(subset_size, n_real, n_fake)
    if subsets > 1:  # not (nearly) a whole set in every subset: at most half of it
        m = max(2, min(m, min(n_real, n_fake) // 2))
    return m


def kid(
    real_feats: Tensor,
    fake_feats: Tensor,
    subsets: int = 100,
    subset_size: int = 1000,
    generator: torch.Generator | None = None,
) -> tuple[float, float]:
    """Kernel Inception Distance: (mean, std) of :func:`polynomial_mmd2` over random subsets.

    Each of ``subsets`` rounds draws ``m = min(subset_size, N_real, N_fake)`` rows of the real set,
    then ``m`` rows of the fake set, each without replacement (``torch.randperm(N, generator)[:m]``,
    in that order), and computes the unbiased MMD^2 (Binkowski et al. 2018). Where there are several
    subsets, ``m`` is at most half of the smaller set: subsets holding (nearly) all of a set would hold the
    same rows of it (the digits' 300 test images), and ``std`` would show only the other set's variation
    (nothing at all for two sets of that size). The mean is unbiased for any ``m``, so it can be
    slightly negative when the sets match; ``std`` is the spread over subsets (ddof 0, as torch-fidelity),
    not a standard error. Features too large for the cubic kernel (past |x| ~ 1e50) are a DataError
    (:func:`polynomial_mmd2`): KID is not scale-invariant, so they are not rescaled.
    """
    real, fake = _as_features(real_feats, "real features"), _as_features(fake_feats, "fake features")
    _same_width(real, fake)
    if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in (subsets, subset_size)):
        raise DataError(f"KID's subsets and subset_size are whole numbers, got {subsets!r} and {subset_size!r}")
    if subsets < 1 or subset_size < 2:
        raise DataError(f"KID needs subsets >= 1 and subset_size >= 2, got {subsets} and {subset_size}")
    m = kid_subset_size(real.shape[0], fake.shape[0], subsets, subset_size)
    mmds = torch.empty(subsets, dtype=torch.float64)   # (subsets,)
    for i in range(subsets):
        r = real[torch.randperm(real.shape[0], generator=generator)[:m]]   # (m, F)
        f = fake[torch.randperm(fake.shape[0], generator=generator)[:m]]   # (m, F)
        mmds[i] = polynomial_mmd2(r, f)
    # on a power-of-two scale (exact): the squares in the std of MMDs past ~1e154 would overflow
    c = _pow2_scale(float(mmds.abs().max()))
    return float(mmds.div(c).mean()) * c, float(mmds.div(c).std(correction=0)) * c


def _as_probs(probs: Tensor) -> Tensor:
    p = _as_float64(probs, "class probabilities")
    if p.ndim != 2 or p.shape[0] < 1:
        raise DataError(f"class probabilities must be a (N, K) matrix, got shape {tuple(p.shape)}")
    if not torch.isfinite(p).all() or (p < 0).any() or not torch.allclose(p.sum(1), torch.ones(()).double(), atol=1e-4):
        raise DataError("class probabilities must be finite, non-negative, and sum to 1 in every row")
    return p


def inception_score(probs: Tensor, splits: int = 10) -> tuple[float, float]:
    """Inception Score of (N, K) predicted class probabilities: (mean, std) over ``splits`` parts.

    ``IS = exp(E_x KL(p(y|x) || p(y)))`` with ``p(y)`` the mean prediction of the part (Salimans et
    al. 2016, Section 4). It ranges from 1 (every image gets the same prediction, or every
    prediction is uniform) to K (confident predictions spread evenly over the K classes).
    The ``N`` rows are cut into ``splits`` consecutive parts, rows ``i N // splits`` to ``(i + 1) N // splits``
    as in the authors' code; ``std`` is 0 for one split. ``p(y)`` is estimated within a part, so the score
    of a part of n images is at most n and biased low well before that: real MNIST test images score 9.24
    in one random part of 100, 9.78 in ten parts of 1,000, 9.81 in one part of all 10,000.

    >>> import torch
    >>> mean, std = inception_score(torch.eye(10).repeat(50, 1))   # confident and balanced: IS = K
    >>> round(mean, 6), std
    (10.0, 0.0)
    """
    p = _as_probs(probs)                                            # (N, K)
    if not isinstance(splits, numbers.Integral) or isinstance(splits, bool):
        raise DataError(f"the inception score's splits is a whole number, got {splits!r}")
    if not 1 <= splits <= p.shape[0]:
        raise DataError(f"inception score needs 1 <= splits <= N = {p.shape[0]}, got {splits}")
    scores = []
    N = p.shape[0]
    for part in (p[i * N // splits:(i + 1) * N // splits] for i in range(splits)):  # (~N/splits, K) each
        py = part.mean(0, keepdim=True)                             # (1, K)
        kl = torch.special.xlogy(part, part) - torch.special.xlogy(part, py)   # (n, K), 0 log 0 = 0
        scores.append(math.exp(float(kl.sum(1).mean())))
    s = torch.tensor(scores, dtype=torch.float64)
    return float(s.mean()), float(s.std(correction=0))


def class_histogram(probs_or_labels: Tensor, n_classes: int = 10) -> Tensor:
    """Share of each class (K,) float64 among (N,) integer labels or the argmax of (N, K) probabilities.

    A sampler that covers every digit gives about 1/K in each bin (the real test sets do); an empty
    or dominant bin is a sign of mode collapse. Booleans, complex numbers, NaN or infinite probabilities and
    ``n_classes < 1`` are a DataError.

    >>> class_histogram(torch.tensor([3, 3, 1, 3]), n_classes=4).tolist()
    [0.0, 0.25, 0.0, 0.75]
    """
    if not isinstance(n_classes, numbers.Integral) or isinstance(n_classes, bool) or n_classes < 1:
        # (n_classes = 0 passed on to a "labels must lie in 0..-1" error)
        raise DataError(f"class histogram needs a whole number n_classes >= 1, got {n_classes!r}")
    t = _as_tensor(probs_or_labels, "class probabilities or labels")   # complex refused: argmax would fail on it
    if t.dtype == torch.bool:  # True/False are no class labels (they were counted as 1 and 0)
        raise DataError(f"class histogram needs (N,) integer labels or (N, K) probabilities, got booleans {tuple(t.shape)}")
    if t.ndim == 2:
        if t.shape[1] != n_classes:
            raise DataError(f"class probabilities have {t.shape[1]} columns, expected {n_classes}")
        if t.is_floating_point() and not torch.isfinite(t).all():  # argmax of a NaN row is 0: counted as class 0
            raise DataError("class probabilities contain NaN or infinite values")
        labels = t.argmax(1)                                       # (N,)
    elif t.ndim == 1 and not t.is_floating_point():
        labels = t.long()                                          # (N,)
    else:
        raise DataError(f"class histogram needs (N,) integer labels or (N, K) probabilities, got {t.dtype} {tuple(t.shape)}")
    if labels.numel() == 0:
        raise DataError("class histogram of an empty set")
    if labels.min() < 0 or labels.max() >= n_classes:
        raise DataError(f"labels must lie in 0..{n_classes - 1}, got {int(labels.min())}..{int(labels.max())}")
    return torch.bincount(labels, minlength=n_classes).double() / labels.numel()
