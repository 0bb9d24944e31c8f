"""Precision, recall, density and coverage of a fake feature set against a real one, by k-NN balls.

Every real feature ``x_i`` gets a ball of radius ``NND_k(x_i)``, the distance to its k-th nearest
other real feature; every fake ``y_j`` likewise among the fakes.

* **precision** (Kynkaanniemi et al. 2019, eq. 1-2): the share of fakes inside at least one real ball
  (fidelity: do samples look real?);
* **recall** (ibid.): the share of reals inside at least one fake ball (diversity: is all of the
  real data reached?);
* **density** (Naeem et al. 2020, eq. 3): ``1/(k M) sum_j sum_i 1[y_j in B(x_i, NND_k(x_i))]``, how
  many real balls hold a fake on average, divided by k: about 1 for samples from the real
  distribution, robust to real outliers where precision is not, and unbounded above;
* **coverage** (ibid., eq. 4): the share of reals whose ball holds at least one fake.

The same four numbers as the authors' ``prdc`` package (``compute_prdc``, which this module is
tested against), computed with ``torch.cdist`` in row chunks so that memory stays bounded
(about ``chunk x max(N, M)`` distances at a time) rather than three full N x M matrices. The four are
invariant to a translation and a common scale of both sets, so the distances are taken between features centred
on the real mean and divided by one common scale: the fast ``|a|^2 + |b|^2 - 2ab`` form then neither loses the
k-NN radii of one cluster far from the origin to cancellation (``prdc`` does: density off by 5 to 7% at an offset
of 1e4 and a spread of 1e-3) nor overflows for large features (all distances inf past ~1e154). Clusters far from
each other and from their mean (two at +-1e5 of spread 1e-3) still lose their radii to it: such features need
centring per cluster, or ``torch.cdist``'s exact mode. As in
``prdc``, a ball is open (``d < NND_k``; the papers write ``<=``, which differs only on ties): a
real set without duplicate points scored against itself then has density exactly 1, since each ball holds
its centre and ``k - 1`` neighbours (a point with ``k`` or more copies has radius 0 and an empty ball).

>>> import torch
>>> g = torch.Generator().manual_seed(0)
>>> real = torch.randn(1000, 16, generator=g)
>>> r = prdc(real, torch.randn(1000, 16, generator=g))            # same distribution
>>> all(0.8 < r[key] < 1.2 for key in ("precision", "recall", "density", "coverage"))
True
>>> prdc(real, 0.1 * torch.randn(1000, 16, generator=g))["recall"] < 0.1   # collapsed onto the mean
True
"""

from __future__ import annotations

import numbers

import torch
from torch import Tensor

from ..errors import DataError
from .fid import _as_float64, _pow2_scale

__all__ = ["prdc", "knn_radii"]


def _as_features(x: Tensor, what: str) -> Tensor:
    x = _as_float64(x, what)  # (not a str, not complex: a one-line DataError)
    if x.ndim != 2:
        raise DataError(f"{what} must be a (N, F) matrix of features, got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise DataError(f"{what} contain NaN or infinite values")
    return x


def _cdist(a: Tensor, b: Tensor) -> Tensor:
    # the |a|^2 + |b|^2 - 2ab matmul form (several times faster); its round-off is ~1e-13 in float64 on the centred,
    # unit-scale features of _normalize (eps |x|^2 / d: far from the origin it would swamp the k-NN radii)
    return torch.cdist(a, b, compute_mode="use_mm_for_euclid_dist")


def _normalize(real: Tensor, *others: Tensor) -> tuple:
    """``((c0, c1), real', *others')`` with ``x' = (x / c0 - mean(real / c0)) / c1``: every set centred on the real
    mean and divided by one common scale ``c0 c1`` (powers of two), so that the largest ``|x'|`` is about 1. Distances
    scale by ``1 / (c0 c1)`` and k-NN membership is unchanged. The pre-scale ``c0`` (exact) keeps ``x - mean`` from
    overflowing; the scales are kept apart as their product may overflow."""
    sets = (real, *others)
    c0 = _pow2_scale(max(float(x.abs().max()) if x.numel() else 0.0 for x in sets))
    sets = tuple(x / c0 for x in sets)                           # |x| < 2
    centre = sets[0].mean(0)                                     # (F,)
    sets = tuple(x - centre for x in sets)                       # (the subtraction is exact for nearby values)
    c1 = _pow2_scale(max(float(x.abs().max()) if x.numel() else 0.0 for x in sets))
    return (c0, c1), *(x / c1 for x in sets)


def _check_sizes(k: object, chunk: object) -> None:
    if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in (k, chunk)) or chunk < 1:
        raise DataError(f"k and chunk are whole numbers, chunk >= 1, got k = {k!r} and chunk = {chunk!r}")


def knn_radii(x: Tensor, k: int, chunk: int = 1024) -> Tensor:
    """(N,) distance from each row of (N, F) ``x`` to its k-th nearest other row, in chunks of rows.

    >>> x = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    >>> knn_radii(x, 1).tolist(), knn_radii(x, 2).tolist()   # the point itself is not its own neighbour
    ([1.0, 1.0, 2.0, 4.0], [3.0, 2.0, 3.0, 6.0])
    """
    _check_sizes(k, chunk)
    x = _as_features(x, "features")                                  # (N, F)
    if not 1 <= k < x.shape[0]:
        raise DataError(f"k-NN radii need 1 <= k < N = {x.shape[0]}, got k = {k}")
    (c0, c1), x = _normalize(x)  # centred, unit scale: no cancellation or overflow in _cdist (module docstring)
    return _knn_radii(x, k, chunk) * c1 * c0                       # back in the units of x


def _knn_radii(x: Tensor, k: int, chunk: int) -> Tensor:
    """:func:`knn_radii` of checked, normalised features (in their units)."""
    out = torch.empty(x.shape[0], dtype=torch.float64)               # (N,)
    for s in range(0, x.shape[0], chunk):
        d = _cdist(x[s:s + chunk], x)                                # (c, N), the point itself at 0
        out[s:s + chunk] = d.topk(k + 1, dim=1, largest=False).values[:, -1]
    return out


def prdc(real_feats: Tensor, fake_feats: Tensor, k: int = 5, chunk: int = 1024) -> dict[str, float]:
    """Precision, recall, density and coverage of (M, F) fake features against (N, F) real ones.

    ``k`` is the neighbourhood size: genzoo uses 5, as Naeem et al. 2020 recommend and use with their ``prdc``
    package; Kynkaanniemi et al. 2019's reference code uses k = 3 (``nhood_sizes=[3]``) with closed balls
    (``<=``): smaller balls, so lower precision and recall (2,000 MNIST test images against 1,500 training
    images: 0.84/0.86 at k = 3, 0.93/0.94 at k = 5). genzoo's figures are not comparable with that paper's
    protocol; ``prdc(real, fake, k=3)`` comes close to it (open balls differ only on ties). Returns plain floats:
    ``{"precision", "recall", "density", "coverage"}``.
    """
    _check_sizes(k, chunk)
    real, fake = _as_features(real_feats, "real features"), _as_features(fake_feats, "fake features")
    if real.shape[1] != fake.shape[1]:
        raise DataError(f"real and fake features differ in width: {real.shape[1]} vs {fake.shape[1]}")
    if not 1 <= k < min(real.shape[0], fake.shape[0]):
        raise DataError(f"precision/recall need more than k = {k} real and fake features, got {real.shape[0]} and {fake.shape[0]}")
    # centred on the real mean, one common scale: the four figures are unchanged, the distances accurate and finite
    _, real, fake = _normalize(real, fake)
    r_real = _knn_radii(real, k, chunk)                               # (N,)
    r_fake = _knn_radii(fake, k, chunk)                               # (M,)
    balls_per_fake = torch.zeros(fake.shape[0], dtype=torch.float64)  # (M,) real balls holding y_j
    recalled = torch.zeros(real.shape[0], dtype=torch.bool)           # (N,) x_i in some fake ball
    covered = torch.zeros(real.shape[0], dtype=torch.bool)            # (N,) some y_j in x_i's ball
    for s in range(0, real.shape[0], chunk):
        d = _cdist(real[s:s + chunk], fake)                           # (c, M)
        inside = d < r_real[s:s + chunk, None]                        # (c, M) y_j in B(x_i)
        balls_per_fake += inside.sum(0)
        covered[s:s + chunk] = inside.any(1)
        recalled[s:s + chunk] = (d < r_fake[None, :]).any(1)          # x_i in B(y_j)
    return {
        "precision": float((balls_per_fake > 0).double().mean()),
        "recall": float(recalled.double().mean()),
        "density": float(balls_per_fake.sum() / (k * fake.shape[0])),
        "coverage": float(covered.double().mean()),
    }
