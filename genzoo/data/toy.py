"""Toy 1-D and 2-D datasets whose true density is known.

Each toy set is a :class:`ToyDensity` -- ``sample(n, generator)`` (n, D) and ``log_prob(x)`` (n,)
in nats -- built by a factory (:func:`ring`, :func:`grid`, :func:`moons`, :func:`spirals`,
:func:`checkerboard`, :func:`mixture1d`). :func:`load_toy` draws the train / valid / test splits
from it with independent, fixed seeds derived from ``seed`` and the split name.

* Gaussian mixtures (ring, grid, mixture1d): exact density via ``torch.distributions``.
* Curves plus Gaussian noise (moons, spirals): the density is a 1-D integral over the curve
  parameter, computed by midpoint quadrature (see :class:`CurveDensity`).
* Checkerboard (the FFJORD toy, Grathwohl et al. 2019): uniform on the black squares, exact.

>>> import torch
>>> d = ring(n_modes=4, radius=2.0, std=0.1)
>>> x = d.sample(5, generator=torch.Generator().manual_seed(0))     # (5, 2)
>>> x.shape, d.log_prob(x).shape
(torch.Size([5, 2]), torch.Size([5]))
>>> round(d.log_prob(torch.tensor([[2.0, 0.0]])).item(), 3)          # log(1/4 * N(0; 0, 0.01 I))
1.381
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

from ..errors import DataError, GenZooWarning
from .dataset import SPLITS, Dataset, check_n, check_split

__all__ = [
    "ToyDensity", "GaussianMixtureDensity", "CurveDensity", "CheckerboardDensity",
    "ring", "grid", "moons", "spirals", "checkerboard", "mixture1d", "load_toy", "split_generator",
    "TOY_SIZES",
]

#: default number of examples per split; ``n`` overrides it
TOY_SIZES = {"train": 20_000, "valid": 5_000, "test": 5_000}
#: the most quadrature nodes per curve (moons, spirals): 16 MB of nodes a curve, enough for noise 4e-5 on the default
#: spirals (log_prob sums the blocks of them that can matter)
MAX_QUAD = 1_000_000
#: the fewest quadrature nodes per curve that log_prob chooses (those of the defaults, which need fewer)
DEFAULT_QUAD = 2000
#: the largest gap between neighbouring quadrature nodes that log_prob allows, as a share of ``noise``
QUAD_GAP = 0.5
#: log_prob leaves out a block of nodes whose terms lie this many nats below a point's largest (e^-50 of it each)
PRUNE_NATS = 50.0


def _out_dtype(x: Tensor) -> torch.dtype:
    return x.dtype if x.is_floating_point() else torch.float32


class ToyDensity:
    """A distribution on R^D that can be sampled and evaluated exactly (or by fine quadrature).

    >>> d = ring(n_modes=4)                                  # a ToyDensity: samples, labels and the true log p
    >>> x, y = d.sample_labeled(1000, torch.Generator().manual_seed(0))
    >>> x.shape, y.shape, int(y.max()), bool(d.log_prob(x).isfinite().all())
    (torch.Size([1000, 2]), torch.Size([1000]), 3, True)
    """

    dim: int

    def sample_labeled(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor | None]:
        """``n`` samples (n, D) float32 and their labels (n,) int64 (mode / curve index), or None."""
        raise NotImplementedError

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` samples, shape (n, D), float32."""
        return self.sample_labeled(n, generator)[0]

    def log_prob(self, x: Tensor) -> Tensor:
        """Log-density in nats at ``x`` (n, D); shape (n,)."""
        raise NotImplementedError

    def bounds(self) -> list[tuple[float, float]]:
        """A box ``[(lo, hi)] * D`` holding essentially all of the mass (for plots and grids)."""
        raise NotImplementedError

    def finest_scale(self) -> float | None:
        """The smallest length over which the density changes (a mode's std, a curve's noise), so a picture's grid
        can resolve it; None where there is no such scale (uniform squares)."""
        return None

    def detail(self) -> tuple[float, float] | None:
        """(how far from the origin, the scale of its detail there) of the part of the density whose detail float32
        holds worst (the largest ratio), from the options alone; None where there is no such scale."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim})"

    def _check(self, x: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise DataError(f"{type(self).__name__}.log_prob expects shape (n, {self.dim}), got {tuple(x.shape)}")
        return x.double()


class GaussianMixtureDensity(ToyDensity):
    """Mixture of isotropic Gaussians: ``sum_k w_k N(x; centres[k], std_k^2 I)``.

    ``centres`` is (K, D); ``std`` a float (shared) or a (K,) tensor; ``weights`` (K,) or None
    for equal weights. Labels of samples are the mode index.

    >>> d = GaussianMixtureDensity(torch.zeros(1, 1), 1.0)
    >>> round(d.log_prob(torch.zeros(1, 1)).item(), 4)    # -0.5 log(2 pi)
    -0.9189
    """

    def __init__(self, centres: Tensor, std: float | Tensor, weights: Tensor | Sequence[float] | None = None):
        centres = torch.as_tensor(centres, dtype=torch.float64)
        if centres.dim() != 2 or len(centres) == 0:
            raise DataError(f"mixture centres must have shape (K, D) with K >= 1, got {tuple(centres.shape)}")
        K, D = centres.shape
        std_t = torch.as_tensor(std, dtype=torch.float64).expand(K).clone()  # (K,)
        if not bool(torch.all(std_t > 0)) or not bool(torch.all(torch.isfinite(std_t))):
            raise DataError(f"mixture standard deviations must be positive and finite, got {std_t.tolist()}")
        w = torch.full((K,), 1.0 / K, dtype=torch.float64) if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        if w.shape != (K,) or not bool(torch.all(w >= 0)) or not 0 < float(w.sum()) < math.inf:
            raise DataError(f"mixture weights must be {K} non-negative numbers with a positive sum, got {w.tolist()}")
        self.dim = D
        self.centres = centres  # (K, D)
        self.std: float | Tensor = float(std) if isinstance(std, (int, float)) else std_t  # float or (K,)
        self.weights = w / w.sum()  # (K,)
        self._scale = std_t  # (K,)
        self.distribution = MixtureSameFamily(
            Categorical(probs=self.weights, validate_args=False),
            Independent(Normal(centres, std_t[:, None].expand(K, D), validate_args=False), 1, validate_args=False),
            validate_args=False,
        )

    def sample_labeled(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)  # (n,)
        eps = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)  # (n, D)
        x = self.centres[k] + self._scale[k, None] * eps  # (n, D)
        return x.float(), k

    def log_prob(self, x: Tensor) -> Tensor:
        return self.distribution.log_prob(self._check(x)).to(_out_dtype(x))  # (n,)

    def finest_scale(self) -> float | None:
        return float(self._scale.min())

    def detail(self) -> tuple[float, float] | None:
        far = self.centres.abs().max(1).values + 4 * self._scale  # (K,) each mode's reach from the origin
        k = int((far / self._scale).argmax())
        return float(far[k]), float(self._scale[k])

    def bounds(self) -> list[tuple[float, float]]:
        pad = 4 * float(self._scale.max())
        lo, hi = self.centres.min(0).values - pad, self.centres.max(0).values + pad
        return [(float(a), float(b)) for a, b in zip(lo, hi)]


Curve = Callable[[Tensor], Tensor]  # s (T,) in [0, 1] -> points (T, D)


class CurveDensity(ToyDensity):
    """Points on curves plus isotropic Gaussian noise: ``x = c_i(s) + noise * eps``.

    Curve ``i`` is chosen with probability ``weights[i]`` (equal by default), ``eps ~ N(0, I)``,
    and the curve parameter is ``s = t ** (1 / power)`` with ``t ~ U[0, 1]`` -- uniform for
    ``power=1``; density ``power * s ** (power - 1)`` in general. The density
    ``p(x) = sum_i w_i int_0^1 p(s) N(x; c_i(s), noise^2 I) ds`` has no closed form;
    :meth:`log_prob` computes it by **midpoint quadrature** in ``s`` with ``n_quad`` nodes per
    curve, i.e. as the exact density of a mixture of ``n_quad`` Gaussians per curve (so it is a
    normalised density in its own right). With nodes much closer than ``noise`` the quadrature
    error is negligible: by Poisson summation, nodes ``h`` apart along a line give a relative error
    near ``2 exp(-2 pi^2 noise^2 / h^2)``; with ``h`` > ``noise`` the density is a string of bumps
    (noise 0.001 on the default spirals, 9.5 x noise apart at 2000 nodes: 0.93 nats low on average).

    ``n_quad=None`` (the default) chooses the number of nodes: :data:`DEFAULT_QUAD`, or as many as
    keep the largest gap between neighbouring nodes within :data:`QUAD_GAP` x ``noise`` (by the bound
    above 2 exp(-8 pi^2), 1e-34 relative; the ends of the curves aside). A given ``n_quad`` that leaves wider gaps
    is used as given, with a warning that names the number needed (a request for that density; runs recorded
    with one load as before). More than :data:`MAX_QUAD` nodes needed is a DataError (a larger noise, or shorter curves).

    >>> spirals(noise=0.05).n_quad, spirals(noise=0.001).n_quad      # the defaults' 2000, or what the noise needs
    (2000, 38281)
    """

    def __init__(self, curves: Sequence[Curve], noise: float, n_quad: int | None = None,
                 weights: Sequence[float] | None = None, power: float = 1.0):
        if not noise > 0 or not math.isfinite(noise):
            raise DataError(f"noise must be positive, got {noise}")
        if n_quad is not None and not (_count(n_quad) and 1 <= n_quad <= MAX_QUAD):  # 2.5 was truncated to 2
            raise DataError(f"n_quad must be an integer in 1..{MAX_QUAD:,}, got {n_quad!r}")
        self.curves = list(curves)
        C = len(self.curves)
        w = torch.full((C,), 1.0 / C, dtype=torch.float64) if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        self.weights = w / w.sum()  # (C,)
        self.noise = float(noise)
        self.n_quad = self._quad_nodes(n_quad)
        self._block_cache: tuple[Tensor, ...] | None = None  # log_prob's blocks of nodes (_blocks), built at first use
        self.power = float(power)
        s = (torch.arange(self.n_quad, dtype=torch.float64) + 0.5) / self.n_quad  # (M,) midpoints
        log_ps = torch.log_softmax((self.power - 1) * torch.log(s), 0)  # (M,) quadrature weights of p(s)
        self.nodes = torch.cat([c(s) for c in self.curves])  # (C * M, D)
        self.dim = self.nodes.shape[1]
        self._log_w = (torch.log(self.weights)[:, None] + log_ps).flatten()  # (C * M,)

    def sample_labeled(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        label = torch.multinomial(self.weights, n, replacement=True, generator=generator)  # (n,)
        s = torch.rand(n, generator=generator, dtype=torch.float64) ** (1 / self.power)  # (n,)
        eps = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)  # (n, D)
        x = torch.empty(n, self.dim, dtype=torch.float64)
        for i, curve in enumerate(self.curves):
            m = label == i
            x[m] = curve(s[m])
        return (x + self.noise * eps).float(), label

    def _quad_nodes(self, n_quad: int | None) -> int:
        """The number of quadrature nodes per curve: ``n_quad``, or chosen (None), so that neighbouring nodes lie at
        most :data:`QUAD_GAP` x ``noise`` apart; a warning where ``n_quad`` leaves them wider, a DataError where
        :data:`MAX_QUAD` does.
        A node's gap to the next is ``|c'(s)| / n`` (to first order; a chord is no longer than its arc), so the
        curves' largest speed, from chords at 4096 steps of ``s``, gives the number needed (plus 1%: the speed
        between those steps, a spiral's at its very end, is up to 1/4096 of it higher)."""
        probe = 4096
        s = (torch.arange(probe + 1, dtype=torch.float64) + 0.5) / (probe + 1)  # (probe + 1,) midpoints, as the nodes
        speed = max(float(c(s).diff(dim=0).norm(dim=1).max()) * (probe + 1) for c in self.curves)
        need = max(1, math.ceil(1.01 * speed / (QUAD_GAP * self.noise)))
        if need > MAX_QUAD:
            raise DataError(f"noise={self.noise:g} is too small for log_prob's quadrature along these curves: nodes "
                            f"{QUAD_GAP:g} x noise apart need n_quad={need:,} per curve, more than {MAX_QUAD:,}; use a "
                            "larger noise, or shorter curves (a smaller radius, fewer turns)")
        if n_quad is None:
            return max(DEFAULT_QUAD, need)
        if n_quad < need:  # (a warning: a run recorded with it still loads, as before 2026-12-06)
            warnings.warn(f"n_quad={n_quad:,} puts log_prob's quadrature nodes up to {speed / n_quad:.2g} apart, more "
                          f"than {QUAD_GAP:g} x noise = {QUAD_GAP * self.noise:.2g}: the true density is a string of "
                          f"bumps, not the one sampled; use n_quad >= {need:,}, or leave it out (chosen from the noise)",
                          GenZooWarning, stacklevel=2)
        return int(n_quad)

    def log_prob(self, x: Tensor, chunk: int = 2048) -> Tensor:
        """Log-density in nats at ``x`` (n, D): every node's term for up to :data:`DEFAULT_QUAD` nodes per curve,
        else those of the blocks of nodes that can matter (:meth:`_log_prob_blocks`, the same to float64's rounding)."""
        x64 = self._check(x)  # (n, D)
        chunk = max(1, min(chunk, 2**23 // len(self.nodes)))  # blocks of (chunk, CM) float64: at most 64 MB each
        terms = self._log_prob_dense if self.n_quad <= DEFAULT_QUAD else self._log_prob_blocks
        out = [terms(xb) for xb in x64.split(chunk)]
        res = torch.cat(out) if out else x64.new_zeros(0)
        return (res - 0.5 * self.dim * math.log(2 * math.pi * self.noise**2)).to(_out_dtype(x))  # (n,)

    def _log_prob_dense(self, xb: Tensor) -> Tensor:
        """``logsumexp_j (log w_j - |x - c_j|^2 / (2 noise^2))`` over every node, for float64 points ``xb`` (b, D)."""
        c2 = (self.nodes**2).sum(1)  # (CM,)
        d2 = ((xb**2).sum(1, keepdim=True) - 2 * xb @ self.nodes.T + c2).clamp_min_(0)  # (b, CM)
        return torch.logsumexp(self._log_w - d2 / (2 * self.noise**2), dim=1)  # (b,)

    def _blocks(self) -> tuple[Tensor, ...]:
        """The nodes in blocks of about sqrt(n_quad) neighbours along a curve: nodes (B, k, D), their log-weights
        (B, k) (-inf for padding), each block's anchor (its middle node, (B, D)) with that node's log-weight (B,), its
        radius about the anchor (B,) and its largest log-weight (B,). Built once."""
        if self._block_cache is None:
            C, M, D = len(self.curves), self.n_quad, self.dim
            k = math.isqrt(M - 1) + 1
            nb = -(-M // k)
            pad = nb * k - M
            nodes = self.nodes.reshape(C, M, D)
            nodes = torch.cat([nodes, nodes[:, -1:].expand(C, pad, D)], 1).reshape(C * nb, k, D)  # (B, k, D)
            log_w = self._log_w.reshape(C, M)
            log_w = torch.cat([log_w, log_w.new_full((C, pad), -math.inf)], 1).reshape(C * nb, k)  # (B, k)
            mid = torch.minimum(torch.tensor(k // 2), (M - 1 - torch.arange(nb) * k).clamp_min(0)).repeat(C)  # (B,)
            rows = torch.arange(C * nb)
            anchor, anchor_w = nodes[rows, mid], log_w[rows, mid]  # (B, D), (B,): real nodes
            radius = (nodes - anchor[:, None]).norm(dim=2).max(1).values  # (B,)
            self._block_cache = (nodes, log_w, anchor, anchor_w, radius, log_w.max(1).values)
        return self._block_cache

    def _log_prob_blocks(self, xb: Tensor) -> Tensor:
        """:meth:`_log_prob_dense` from the blocks of nodes that can matter. An anchor's term is one of the sum's,
        so ``m`` = the largest anchor term is a lower bound of the largest term; a block whose nodes all lie farther
        from ``x`` than ``|x - anchor| - radius`` (the triangle inequality) has terms of at most ``w_max -
        max(0, that)^2 / (2 noise^2)``; blocks where that is below ``m - PRUNE_NATS`` are left out, an error below
        ``CM e^-PRUNE_NATS`` (1e-17) relative."""
        nodes, log_w, anchor, anchor_w, radius, w_max = self._blocks()
        s2 = self.noise**2
        da = torch.cdist(xb, anchor, compute_mode="donot_use_mm_for_euclid_dist")  # (b, B), without cancellation
        m = (anchor_w - da**2 / (2 * s2)).max(1, keepdim=True).values  # (b, 1)
        near = w_max - (da - radius).clamp_min(0) ** 2 / (2 * s2) >= m - PRUNE_NATS  # (b, B)
        i, j = near.nonzero(as_tuple=True)  # (P,) pairs of a point and a block that can matter
        d2 = ((xb[i, None] - nodes[j]) ** 2).sum(2)  # (P, k)
        pair = torch.logsumexp(log_w[j] - d2 / (2 * s2), dim=1)  # (P,)
        top = xb.new_full((len(xb),), -math.inf).scatter_reduce(0, i, pair, "amax")  # (b,)
        shift = torch.where(pair > -math.inf, pair - top[i], pair)  # (P,): -inf, not nan, for an empty pair
        return top + torch.log(xb.new_zeros(len(xb)).index_add(0, i, shift.exp()))  # (b,)

    def finest_scale(self) -> float | None:
        return float(self.noise) if self.noise > 0 else None

    def detail(self) -> tuple[float, float] | None:
        return (float(self.nodes.abs().max()) + 4 * self.noise, float(self.noise)) if self.noise > 0 else None

    def bounds(self) -> list[tuple[float, float]]:
        pad = 4 * self.noise
        lo, hi = self.nodes.min(0).values - pad, self.nodes.max(0).values + pad
        return [(float(a), float(b)) for a, b in zip(lo, hi)]


class CheckerboardDensity(ToyDensity):
    """Uniform on the black squares of a ``side`` x ``side`` board covering ``[-size/2, size/2)^2``.

    Square ``(i, j)`` (column, row, counted from the lower-left corner) is black when ``i + j`` is
    even -- for ``side=4`` this is FFJORD's pattern of 8 black squares; FFJORD's board covers [-4, 4]^2
    (``size=8``), genzoo's default half that (unit squares, log-density log 4 higher).
    ``log_prob`` is exact: ``-log(black area)`` inside, ``-inf`` outside.

    >>> d = checkerboard()                                  # side 4 on [-2, 2]^2: 8 black unit squares
    >>> lp = d.log_prob(torch.tensor([[-1.5, -1.5], [-0.5, -1.5], [5.0, 0.0]]))    # black, white, outside
    >>> round(lp[0].item(), 4), round(-math.log(8), 4), lp[1:].tolist()
    (-2.0794, -2.0794, [-inf, -inf])
    >>> bool(torch.isfinite(d.log_prob(d.sample(1000, torch.Generator().manual_seed(0)))).all())   # samples: black
    True
    """

    def __init__(self, side: int = 4, size: float = 4.0):
        if not (_count(side) and 1 <= side <= 4096):  # side^2 cells (side=2.5 was truncated to 2)
            raise DataError(f"checkerboard side must be an integer in 1..4096, got {side!r}")
        if not size > 0 or not math.isfinite(size):
            raise DataError(f"checkerboard size must be positive, got {size}")
        self.dim = 2
        self.side, self.size = int(side), float(size)
        self.cell = self.size / self.side
        ij = torch.cartesian_prod(torch.arange(self.side), torch.arange(self.side))  # (side^2, 2)
        self.black = ij[(ij.sum(1) % 2) == 0]  # (B, 2) cell indices (i, j)
        self.area = len(self.black) * self.cell**2

    def sample_labeled(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, None]:
        k = torch.randint(len(self.black), (n,), generator=generator)  # (n,)
        u = torch.rand(n, 2, generator=generator, dtype=torch.float64)  # (n, 2)
        cell = self.black[k]                                             # (n, 2) cell indices (i, j)
        return self._float32_within(((cell.double() + u) * self.cell - self.size / 2), cell), None  # (n, 2)

    def _cell_of(self, x: Tensor) -> Tensor:
        return torch.floor((x.double() + self.size / 2) / self.cell)  # (n, 2), as log_prob reads it

    def _float32_within(self, x64: Tensor, cell: Tensor) -> Tensor:
        """``x64`` (n, 2) in float32, each point kept in its ``cell`` (n, 2): rounding carries about one point in
        7 million just below a cell's edge onto it, into a white square, where its own log-density is -inf;
        such a coordinate is stepped back by one float32 ulp towards its cell."""
        x = x64.float()                                                  # (n, 2)
        for _ in range(4):  # one step suffices; a few more cost nothing where none is needed
            off = self._cell_of(x) - cell                                # (n, 2): 0 where the point stayed
            if not bool(off.any()):
                break
            x = torch.where(off != 0, torch.nextafter(x, torch.where(off > 0, -math.inf, math.inf).float()), x)
        return x

    def log_prob(self, x: Tensor) -> Tensor:
        x64 = self._check(x)
        ij = self._cell_of(x64)  # (n, 2)
        inside = ((ij >= 0) & (ij < self.side)).all(1) & ((ij.sum(1) % 2) == 0)
        lp = torch.full((len(x64),), -math.inf, dtype=torch.float64)
        lp[inside] = -math.log(self.area)
        return lp.to(_out_dtype(x))  # (n,)

    def bounds(self) -> list[tuple[float, float]]:
        return [(-self.size / 2, self.size / 2)] * 2


# -- factories ------------------------------------------------------------------------------


def _count(value) -> bool:
    """Whether ``value`` is an integer (NumPy's too), not a bool: a count of modes, squares or nodes. A fraction was
    taken silently (``ring(n_modes=2.5)``: 3 modes unevenly spaced; ``grid(side=2.5)``: a grid off the origin)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _positive(name: str, value: float) -> None:
    if not value > 0 or not math.isfinite(value):
        raise DataError(f"{name} must be positive, got {value}")


def _finite(name: str, *values: float) -> None:
    if not all(math.isfinite(v) for v in values):
        raise DataError(f"{name} must be finite, got {values[0] if len(values) == 1 else values}")


def ring(n_modes: int = 8, radius: float = 1.0, std: float = 0.01) -> GaussianMixtureDensity:
    """Equal mixture of ``n_modes`` Gaussians with centres on a circle, the first at angle 0."""
    if not (_count(n_modes) and 1 <= n_modes <= 2**24):  # torch.multinomial draws from at most 2^24 categories
        raise DataError(f"n_modes must be an integer in 1..2^24, got {n_modes!r}")
    n_modes = int(n_modes)
    _positive("std", std)
    _finite("radius", radius)
    angle = 2 * math.pi * torch.arange(n_modes, dtype=torch.float64) / n_modes  # (K,)
    centres = radius * torch.stack([torch.cos(angle), torch.sin(angle)], 1)  # (K, 2)
    return GaussianMixtureDensity(centres, std)


def grid(side: int = 5, spacing: float = 2.0, std: float = 0.05) -> GaussianMixtureDensity:
    """Equal mixture on a ``side`` x ``side`` grid centred at the origin.

    Centres are ``spacing * (i - (side - 1) / 2)`` per axis; mode ``k = i * side + j``.
    """
    if not (_count(side) and 1 <= side <= 2**12):  # side^2 modes: torch.multinomial draws from at most 2^24 categories
        raise DataError(f"side must be an integer in 1..4096, got {side!r}")
    side = int(side)
    _positive("std", std)
    _finite("spacing", spacing)
    ax = spacing * (torch.arange(side, dtype=torch.float64) - (side - 1) / 2)  # (side,)
    centres = torch.cartesian_prod(ax, ax).reshape(-1, 2)  # (side^2, 2)
    return GaussianMixtureDensity(centres, std)


def mixture1d(
    means: tuple[float, ...] = (-2.0, 2.0), stds: tuple[float, ...] = (0.5, 0.5), weights: tuple[float, ...] | None = None
) -> GaussianMixtureDensity:
    """1-D Gaussian mixture ``sum_k w_k N(x; means[k], stds[k]^2)``; samples have shape (n, 1).

    >>> d = mixture1d(means=(-2.0, 2.0), stds=(0.5, 0.5))     # equal weights by default
    >>> d.sample(3, torch.Generator().manual_seed(0)).shape
    torch.Size([3, 1])
    >>> lp = d.log_prob(torch.tensor([[-2.0], [2.0]]))        # at a mode: log(1/2 * 1/(0.5 sqrt(2 pi)))
    >>> torch.allclose(lp, torch.tensor(-0.5 * math.log(2 * math.pi)))
    True
    """
    means, stds = tuple(means), tuple(stds)
    if len(means) == 0 or len(stds) != len(means) or (weights is not None and len(weights) != len(means)):
        raise DataError(
            f"mixture1d needs as many stds (and weights) as means: got {len(means)} means, {len(stds)} stds"
            + ("" if weights is None else f", {len(weights)} weights")
        )
    _finite("means", *means)
    centres = torch.tensor(means, dtype=torch.float64)[:, None]  # (K, 1)
    return GaussianMixtureDensity(centres, torch.tensor(stds, dtype=torch.float64), weights)


def moons(noise: float = 0.1, n_quad: int | None = None) -> CurveDensity:
    """Two interleaving half circles, as scikit-learn's ``make_moons``, plus Gaussian noise.

    Upper moon ``(cos pi t, sin pi t)``, lower moon ``(1 - cos pi t, 0.5 - sin pi t)``,
    ``t ~ U[0, 1]``; labels are the moon (0 upper, 1 lower). ``log_prob`` is a midpoint
    **quadrature** over ``t`` with ``n_quad`` nodes per moon (None: chosen from ``noise``, 2000 where
    ``noise`` >= 0.0032; see :class:`CurveDensity`).

    >>> d = moons(noise=0.1)
    >>> x, moon = d.sample_labeled(4000, torch.Generator().manual_seed(0))   # (4000, 2), (4000,)
    >>> abs(x[moon == 0, 1].mean().item() - 2 / math.pi) < 0.02             # the upper arc's mean height
    True
    >>> g = torch.cartesian_prod(torch.linspace(-2, 3, 51), torch.linspace(-1.5, 2, 36))  # step 0.1 a side
    >>> round((d.log_prob(g).exp().sum() * 0.1 * 0.1).item(), 3)            # a density: integrates to 1
    1.0
    """
    _positive("noise", noise)

    def upper(s: Tensor) -> Tensor:
        return torch.stack([torch.cos(math.pi * s), torch.sin(math.pi * s)], 1)  # (T, 2)

    def lower(s: Tensor) -> Tensor:
        return torch.stack([1 - torch.cos(math.pi * s), 0.5 - torch.sin(math.pi * s)], 1)  # (T, 2)

    return CurveDensity([upper, lower], noise, n_quad)


def spirals(noise: float = 0.05, turns: float = 1.5, radius: float = 2.0, n_quad: int | None = None) -> CurveDensity:
    """Two interleaved Archimedean spirals (the second is the first turned by 180 degrees).

    The first arm is ``radius * s * (cos 2 pi turns s, sin 2 pi turns s)`` with ``s = sqrt(t)``,
    ``t ~ U[0, 1]`` (so points are roughly uniform along the arc, as in FFJORD's "2spirals"),
    plus Gaussian noise. Labels are the arm. ``log_prob`` is a midpoint **quadrature** over ``s``
    (weights ``2 s``) with ``n_quad`` nodes per arm (None: chosen from ``noise``, 2000 for the
    defaults; see :class:`CurveDensity`).

    >>> d = spirals(noise=0.05, radius=2.0)
    >>> x = d.sample(2000, torch.Generator().manual_seed(0))
    >>> bool((x.norm(dim=1) < 2.0 + 5 * 0.05).all())                      # inside the outer end of the arms
    True
    >>> p = torch.randn(5, 2, generator=torch.Generator().manual_seed(1))
    >>> torch.allclose(d.log_prob(p), d.log_prob(-p), atol=1e-4)          # turned by 180 degrees: the same density
    True
    """
    _positive("noise", noise)
    _positive("turns", turns)
    _positive("radius", radius)

    def arm(s: Tensor) -> Tensor:
        theta = 2 * math.pi * turns * s
        return radius * s[:, None] * torch.stack([torch.cos(theta), torch.sin(theta)], 1)  # (T, 2)

    return CurveDensity([arm, lambda s: -arm(s)], noise, n_quad, power=2.0)


def checkerboard(side: int = 4, size: float = 4.0) -> CheckerboardDensity:
    """Uniform on the black squares of a checkerboard in ``[-size/2, size/2]^2`` (FFJORD's toy)."""
    return CheckerboardDensity(side, size)


# -- splits ---------------------------------------------------------------------------------


def split_generator(seed: int, split: str) -> torch.Generator:
    """A generator seeded from (``seed``, split): independent, fixed streams per split.

    >>> a, b = split_generator(0, "train"), split_generator(0, "test")
    >>> torch.rand(1, generator=a).item() != torch.rand(1, generator=b).item()
    True
    """
    seed, index = int(seed) % 2**63, SPLITS.index(check_split(split))
    if index == 0 and 1 <= seed >> 32 < len(SPLITS):
        # the entropy [seed, 0] is the words [lo, hi, 0], which SeedSequence pads to [lo, hi] (the train split of seed
        # 2^32 + l was the valid split of seed l, 2 x 2^32 + l's its test split): these draws alone take the spawn key,
        # which numpy appends after padding the entropy to 4 words, a layout no [seed, index] gives. Every other draw
        # is unchanged.
        sequence = np.random.SeedSequence(seed, spawn_key=(index,))
    else:
        sequence = np.random.SeedSequence([seed, index])
    state = sequence.generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


#: the most points a toy set draws (``n``): 10 million 2-D points are 80 MB in float32, a few hundred MB while drawn
TOY_MAX_N = 10**7


def load_toy(name: str, density: ToyDensity, split: str = "train", *, n: int | None = None, seed: int = 0) -> Dataset:
    """Draw one split from ``density``: ``n`` examples (default :data:`TOY_SIZES`).

    The draw depends only on ``seed`` and ``split``, so each split is the same at every call and differs from the
    others.

    >>> ds = load_toy("ring", ring(n_modes=4), "test", n=100, seed=3)
    >>> len(ds), ds.shape, ds.levels, ds.density is not None
    (100, (2,), None, True)
    >>> torch.equal(ds.x, load_toy("ring", ring(n_modes=4), "test", n=100, seed=3).x)
    True
    >>> torch.equal(ds.x, load_toy("ring", ring(n_modes=4), "train", n=100, seed=3).x)
    False
    """
    check_split(split)
    size = check_n(n) or TOY_SIZES[split]
    if size > TOY_MAX_N:  # beyond it the draw takes gigabytes, and the kernel's OOM killer ends genzoo wordlessly
        raise DataError(f"dataset '{name}': n={size:,} points; the toy sets draw at most {TOY_MAX_N:,}")
    x, y = density.sample_labeled(size, split_generator(seed, split))  # (size, D)
    if not bool(torch.isfinite(x).all()):  # finite in float64, beyond float32's range (3.4e38)
        raise DataError(f"dataset '{name}': its options put points beyond float32's range (3.4e38); use smaller values")
    far, scale = density.detail() or (0.0, 1.0)  # from the options: every split and size is judged alike
    if far * 2.0**-23 > 0.01 * scale:  # float32's step there against the density's detail there
        raise DataError(f"dataset '{name}': its options put points up to {far:.3g} from the origin with detail of "
                        f"{scale:.3g} (a mode's std, a curve's noise), which float32, in which genzoo holds data, rounds "
                        f"in steps of {far * 2.0**-23:.2g}: the points would merge and every likelihood be of other "
                        "data; use a smaller radius or scale, or a larger std or noise")
    return Dataset(name, split, x, y, levels=None, density=density)
