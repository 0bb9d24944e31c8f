"""Implicit densities in one dimension: p(x) for a generator x = f(h) with a known prior on h.

A GAN generator defines its density only implicitly, through samples. In one dimension it can be
computed numerically. For a differentiable scalar map f and a prior density p_h, the change of
variables formula gives

    p_x(x) = sum over {h : f(h) = x} of  p_h(h) / |f'(h)|

so this module evaluates f on a fine grid of h covering the prior's mass, splits the grid into
monotone pieces where the finite-difference derivative changes sign, inverts f on each piece by
interpolation and adds up the pieces' contributions (:func:`density_change_of_variables`).
For a map where that is impractical (a noisy or low-precision f), a Gaussian kernel density
estimate of samples f(h) stands in (:func:`density_kde`). :func:`implicit_density` is the one
entry point, :func:`plot_implicit_density` draws the histogram of samples under the computed curve.

>>> import torch
>>> from torch.distributions import Normal
>>> from genzoo.eval.implicit import density_change_of_variables
>>> x = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
>>> p = density_change_of_variables(torch.exp, Normal(0.0, 1.0), x)   # the log-normal density
>>> [round(v, 6) for v in p.tolist()]
[0.627496, 0.398942, 0.156874]
>>> p2 = density_change_of_variables(lambda h: h**2, Normal(0.0, 1.0), x)  # chi-square(1): two pieces
>>> [round(v, 6) for v in p2.tolist()]
[0.439391, 0.241971, 0.103777]
"""

from __future__ import annotations

import copy
import math
import os
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from ..base import forked_rng
from ..errors import ConfigError, DataError, GenZooWarning, did_you_mean

__all__ = [
    "density_change_of_variables",
    "density_kde",
    "density_histogram",
    "implicit_density",
    "plot_implicit_density",
]

METHODS = ("auto", "change_of_variables", "kde")
# "auto" turns to the KDE when f splits the grid into more monotone pieces than this: f is then
# noisy (dropout, injected noise) or too coarse in precision for its derivative to mean anything
MAX_PIECES = 1000
_CHUNK = 1 << 16  # grid points per call of f
# the default uniform h grid resolves the prior while max p_h * (hi - lo) <= this: no cell of 200,001 points holds
# more than 0.1% of its mass (a normal: 4.8, a Laplace 21). Past it (Cauchy, Pareto, half-Cauchy: the 1e-9 quantiles
# lie ~1e9 out, one cell holds the whole body) the grid is uniform in the logit of the prior's quantile instead
MAX_SPREAD = 200.0
_TAIL = 1e-9  # the default grid spans the prior's 1e-9 and 1 - 1e-9 quantiles
_KDE_BLOCK = 1 << 22  # query x sample pairs per log-sum-exp block (32 MiB in float64)
# a prior without an icdf keeps the uniform default grid (mean -+ 12 std) while the grid's trapezoid of p_h is within
# this of 1 (Gamma(2): 1e-7), else takes a grid from a numerical CDF (_mapped_grid); where no grid holds the mass to
# _UNRESOLVED (or spreads it wider than MAX_SPREAD) a GenZooWarning says so
_MASS_TOL, _UNRESOLVED = 1e-6, 1e-5
_AUX = (1 << 18) + 1, (1 << 16) + 1  # points of the numerical CDF's two auxiliary grids
_ULPS = 64  # the mapped grid's steps in h stay above this many float64 ulps of h (f(h) would have flat runs)
_ATOM = 1e-6  # flat runs of f holding more of the prior's mass than this are warned of (point masses left out)


# ----------------------------------------------------------------------------- input checks


def _interval(value, name: str) -> tuple[float, float]:
    """A finite pair (lo, hi) with lo < hi, or a one-line ConfigError naming ``name``."""
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a pair (lo, hi) of numbers, got {value!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ConfigError(f"{name} must be finite with lo < hi, got ({lo}, {hi})")
    return lo, hi

def _vector(name: str, v, *, min_len: int = 1) -> Tensor:
    """A finite 1-D float64 tensor from ``v``; DataError otherwise."""
    try:
        t = torch.as_tensor(v).detach().cpu()
    except (TypeError, ValueError, RuntimeError) as e:
        raise DataError(f"{name} must be a 1-D tensor of numbers, got {type(v).__name__} ({e})") from None
    if t.dim() != 1:
        raise DataError(f"{name} must be a 1-D tensor of shape (N,), got shape {tuple(t.shape)}")
    if t.numel() < min_len:
        raise DataError(f"{name} must hold at least {min_len} value(s), got {t.numel()}")
    if t.dtype == torch.bool or t.is_complex():
        raise DataError(f"{name} must be real numbers, got dtype {t.dtype}")
    t = t.to(torch.float64)
    if not torch.isfinite(t).all():
        bad = int((~torch.isfinite(t)).sum())
        raise DataError(f"{name} holds {bad} non-finite value(s) (NaN or inf)")
    return t


def _out_dtype(v) -> torch.dtype:
    return v.dtype if isinstance(v, Tensor) and v.dtype.is_floating_point else torch.float64


def _check_prior(prior) -> None:
    if not isinstance(prior, Distribution):
        raise ConfigError(f"prior must be a torch.distributions.Distribution, got {type(prior).__name__}")
    if tuple(prior.batch_shape) != () or tuple(prior.event_shape) != ():
        raise ConfigError(
            f"prior must be a distribution over scalars, got batch_shape {tuple(prior.batch_shape)} "
            f"and event_shape {tuple(prior.event_shape)}")
    if prior.support.is_discrete:
        raise ConfigError(f"prior must be continuous, got the discrete {type(prior).__name__}")


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}"
                          + did_you_mean(str(method), METHODS))


# ----------------------------------------------------------------------------- evaluating f

def _float64_module(f):
    """A float64 copy of an nn.Module whose floating parameters or buffers are not float64."""
    if not isinstance(f, nn.Module):
        return f
    tensors = [*f.parameters(), *f.buffers()]
    if all(t.dtype == torch.float64 for t in tensors if t.is_floating_point()):
        return f
    try:
        return copy.deepcopy(f).to(torch.float64)
    except Exception:  # an unpicklable module: call it as it is, in its own precision
        return f


@contextmanager
def _as_generator(f):
    """f ready to be called as a generator samples: an nn.Module in eval mode (dropout off, batch norm on its
    running statistics, so that f(h) depends on h alone and not on the batch it is in), under ``torch.no_grad``.
    The caller's module comes back as it was: a float32 one is evaluated through a float64 copy; a float64 one in
    place, its ``training`` flags and buffers restored afterwards (a train-mode batch norm would have taken the
    grid's statistics as its running ones)."""
    g = _float64_module(f)
    if not isinstance(g, nn.Module):
        with torch.no_grad():
            yield g
        return
    if g is not f:  # a copy of the caller's module: nothing to restore
        g.eval()
        with torch.no_grad():
            yield g
        return
    modes = [(m, m.training) for m in f.modules()]
    owners = {name: f.get_submodule(name.rpartition(".")[0]) for name, _ in f.named_buffers()}
    saved = {name: (b, b.detach().clone()) for name, b in f.named_buffers()}
    try:
        f.eval()
        with torch.no_grad():
            yield f
    finally:
        for m, mode in modes:
            m.training = mode
        with torch.no_grad():
            for name, (b, value) in saved.items():
                owner, attr = owners[name], name.rpartition(".")[2]
                if getattr(owner, attr, None) is not b:  # replaced by a new tensor: put the caller's back
                    owner._buffers[attr] = b
                b.copy_(value)


def _evaluate(f: Callable[[Tensor], Tensor], h: Tensor) -> Tensor:
    """f at h (N,) float64 -> (N,) float64, accepting f on (N,) or (N, 1), float64 or float32; an nn.Module in
    eval mode, left as it was (:func:`_as_generator`)."""
    with _as_generator(f) as g:
        return _evaluate_plain(g, h)  # (N,)


def _evaluate_plain(f: Callable[[Tensor], Tensor], h: Tensor) -> Tensor:
    """:func:`_evaluate` for f as it is: (N,) -> (N,) float64."""
    n = h.shape[0]
    column_first = isinstance(f, nn.Module)
    shapes = [(-1, 1), (-1,)] if column_first else [(-1,), (-1, 1)]
    attempts = [(s, dt) for dt in (torch.float64, torch.float32) for s in shapes]
    device = next((p.device for p in f.parameters()), torch.device("cpu")) if isinstance(f, nn.Module) \
        else torch.device("cpu")
    first = h[: min(n, _CHUNK)]  # (n0,)
    problem = "no attempt"
    for shape, dtype in attempts:
        try:
            with torch.no_grad():
                out = f(first.to(device=device, dtype=dtype).reshape(shape))
        except (RuntimeError, TypeError, ValueError, IndexError) as e:
            problem = f"it raised {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            continue
        out = _as_output(out, first.shape[0])
        if isinstance(out, str):
            problem = out
            continue
        break
    else:
        raise DataError("f must map h of shape (N,) to (N,), or (N, 1) to (N, 1), elementwise; "
                        f"on {first.shape[0]} points {problem}")
    parts = [out]
    with torch.no_grad():
        for chunk in h[first.shape[0]:].split(_CHUNK):  # (c,)
            o = _as_output(f(chunk.to(device=device, dtype=dtype).reshape(shape)), chunk.shape[0])
            if isinstance(o, str):
                raise DataError(f"f must map h elementwise; on a chunk of {chunk.shape[0]} points {o}")
            parts.append(o)
    y = torch.cat(parts)  # (N,)
    if not torch.isfinite(y).all():
        i = int((~torch.isfinite(y)).nonzero()[0])
        raise DataError(f"f returned a non-finite value ({float(y[i])}) at h={float(h[i]):.6g}; "
                        "narrow h_range or fix f")
    return y


def _as_output(out, n: int):
    """f's output as an (n,) float64 CPU tensor, or a string saying what is wrong with it."""
    if not isinstance(out, Tensor):
        try:
            out = torch.as_tensor(out)
        except (TypeError, ValueError, RuntimeError):
            return f"it returned {type(out).__name__}, not a tensor"
    if tuple(out.shape) not in ((n,), (n, 1)):
        return f"it returned shape {tuple(out.shape)}"
    if out.dtype.is_complex:
        return f"it returned dtype {out.dtype}"
    return out.detach().reshape(n).to(device="cpu", dtype=torch.float64)


# ----------------------------------------------------------------------------- the h grid

def _prior_density(prior: Distribution, h: Tensor) -> Tensor:
    """p_h at h (K,) float64 -> (K,) float64; zero outside the prior's support."""
    ok = prior.support.check(h)  # (K,)
    dens = torch.zeros_like(h)  # (K,)
    if ok.any():
        dens[ok] = prior.log_prob(h[ok]).to(torch.float64).exp()
    return dens


def _default_h_range(prior: Distribution) -> tuple[float, float]:
    """icdf(1e-9)..icdf(1 - 1e-9) (made symmetric about the median when it nearly is), or
    mean -+ 12 std cut to just inside the support (which :func:`_grid` checks holds the prior's
    mass, and replaces by a numerical CDF's grid where it does not: :func:`_mapped_grid`)."""
    try:
        q = prior.icdf(torch.tensor([_TAIL, 0.5, 1 - _TAIL], dtype=torch.float64))  # (3,)
        lo, med, hi = float(q[0]), float(q[1]), float(q[2])
        if math.isfinite(lo) and math.isfinite(hi) and lo < med < hi:
            if abs((med - lo) - (hi - med)) <= 1e-6 * (hi - lo):
                # a symmetric prior: centre the grid on the median exactly, so that a turning point
                # there (h**2 at h = 0) is a grid point
                w = max(med - lo, hi - med)
                return med - w, med + w
            return lo, hi
    except (NotImplementedError, ValueError, RuntimeError):
        pass
    try:
        m, s = float(prior.mean), float(prior.stddev)
    except (NotImplementedError, ValueError, RuntimeError):
        m = s = float("nan")
    if not (math.isfinite(m) and math.isfinite(s) and s > 0):
        raise ConfigError(f"cannot choose an h range for {type(prior).__name__} (no icdf, no finite "
                          "mean and std); pass h_range=(lo, hi)")
    lo, hi = m - 12 * s, m + 12 * s
    lower = getattr(prior.support, "lower_bound", None)
    upper = getattr(prior.support, "upper_bound", None)
    # a bound of the support is a point of measure zero where f (log h) or p_h may be singular:
    # stop a hair inside it
    if upper is not None and hi >= float(upper):
        hi = float(upper) - 1e-9 * (float(upper) - lo)
    if lower is not None and lo <= float(lower):
        lo = float(lower) + 1e-9 * (hi - float(lower))
    return lo, hi


@dataclass
class _Grid:
    h: Tensor  # (G,) the grid, uniform: of h, of t = logit(q) for h = icdf(q) (a heavy-tailed prior), or of s for
    #            h = H(s) (_Map: a prior without an icdf whose uniform grid in h would not hold its mass)
    y: Tensor  # (G,) f(h)
    fp: Tensor  # (G,) dy/dh (or dy/dt, dy/ds), central differences (fourth order inside)
    pieces: list[tuple[int, int, int]]  # (first grid index, last grid index, sign of f')
    density: Callable[[Tensor], Tensor]  # (K,) -> (K,) the density of the grid's variable: p_h, the logistic p_t, or
    #                                      p_s(s) = p_h(H(s)) H'(s)
    atoms: list[tuple[float, float, float, float]] = field(default_factory=list)  # per flat run of f: (x, its
    #                                      probability, h from, h to), the point masses the density leaves out
    note: str | None = None  # where the default grid does not resolve the prior: the warning that says so


def _derivative(y: Tensor, h: Tensor) -> Tensor:
    """f' on a uniform grid (G,): fourth-order central differences, second order at the two
    points nearest each end."""
    fp = torch.gradient(y, spacing=(h,), edge_order=2)[0]  # (G,)
    if y.shape[0] >= 5:
        step = (h[-1] - h[0]) / (h.shape[0] - 1)
        fp[2:-2] = (y[:-4] - 8 * y[1:-3] + 8 * y[3:-1] - y[4:]) / (12 * step)  # (G-4,)
    return fp


def _bound(prior: Distribution, name: str) -> float | None:
    """The support's finite lower or upper bound, or None."""
    v = getattr(prior.support, name, None)
    try:
        v = None if v is None else float(v)
    except (TypeError, ValueError, RuntimeError):
        return None
    return v if v is not None and math.isfinite(v) else None


@dataclass
class _Map:
    """h = H(s): an increasing analytic map of s onto the prior's support. ``a + w sinh(s)`` on the real line, ``a +
    w exp(s)`` above a lower bound a, ``b - w exp(-s)`` below an upper bound b, ``a + (b - a) sigmoid(s)`` between
    the two. A uniform grid of s is geometric towards a bound (where Chi2(1)'s and Gamma(0.1)'s densities are
    singular) and along a tail (StudentT(2.5)'s), and s has the density p_s(s) = p_h(H(s)) H'(s), exact: the change
    of variables runs through s as it does through t = logit(q) for a prior with an icdf."""
    kind: str  # "real", "lower", "upper" or "interval"
    a: float
    b: float
    w: float  # the scale (b - a between two bounds)
    s_min: float  # H is finite and strictly inside the support on [s_min, s_max]
    s_max: float

    def h(self, s: Tensor) -> Tensor:  # (K,) -> (K,)
        if self.kind == "real":
            return self.a + self.w * torch.sinh(s)
        if self.kind == "lower":
            return self.a + self.w * torch.exp(s)
        if self.kind == "upper":
            return self.b - self.w * torch.exp(-s)
        # the nearer bound plus a distance, so that h keeps its digits near either bound
        return torch.where(s <= 0, self.a + self.w * torch.sigmoid(s), self.b - self.w * torch.sigmoid(-s))

    def log_dh(self, s: Tensor) -> Tensor:  # log H'(s) (K,) -> (K,)
        if self.kind == "real":  # log cosh s
            return math.log(self.w) + s.abs() + torch.log1p(torch.exp(-2 * s.abs())) - math.log(2)
        if self.kind == "lower":
            return math.log(self.w) + s
        if self.kind == "upper":
            return math.log(self.w) - s
        return math.log(self.w) + nn.functional.logsigmoid(s) + nn.functional.logsigmoid(-s)

    def density(self, prior: Distribution, s: Tensor) -> Tensor:
        """p_s(s) = p_h(H(s)) H'(s) (K,) -> (K,) float64; zero where H(s) is outside the support, and where log_prob
        is not finite strictly inside it (it overflows at h = 1e-300 for an InverseGamma, and a float32 Gamma rounds
        such an h to 0): p_s, which the mass checks sum, is negligible there for any prior the grid can resolve."""
        h = self.h(s)  # (K,)
        ok = torch.isfinite(h) & prior.support.check(h)  # (K,)
        dens = torch.zeros_like(s)  # (K,)
        if ok.any():
            dens[ok] = (prior.log_prob(h[ok]).to(torch.float64) + self.log_dh(s[ok])).exp()
        return torch.where(torch.isfinite(dens), dens, torch.zeros_like(dens))  # (K,)


def _map_for(prior: Distribution, mean: float, std: float) -> _Map:
    """The :class:`_Map` for the prior's support, scaled by its mean and std."""
    eps, big, tiny = torch.finfo(torch.float64).eps, 1e300, 1e-300
    lo, hi = _bound(prior, "lower_bound"), _bound(prior, "upper_bound")
    if lo is not None and hi is not None:
        w = hi - lo
        return _Map("interval", lo, hi, w, math.log(max(4 * eps * abs(lo), tiny) / w),
                    -math.log(max(4 * eps * abs(hi), tiny) / w))
    if lo is not None:
        w = mean - lo if mean > lo else std
        return _Map("lower", lo, math.inf, w, math.log(max(4 * eps * abs(lo), tiny) / w), math.log(big / w))
    if hi is not None:
        w = hi - mean if mean < hi else std
        return _Map("upper", -math.inf, hi, w, -math.log(big / w), -math.log(max(4 * eps * abs(hi), tiny) / w))
    s_max = math.log(2 * big) - math.log(std)  # asinh(1e300 / std)
    return _Map("real", mean, math.inf, std, -s_max, s_max)


def _interp(q: Tensor, s: Tensor, targets: list[float]) -> list[float]:
    """s at the values ``targets`` of the non-decreasing q (A,), by linear interpolation."""
    t = torch.tensor(targets, dtype=torch.float64)  # (T,)
    j1 = torch.searchsorted(q, t).clamp(1, q.shape[0] - 1)  # (T,)
    j0 = j1 - 1  # (T,)
    dq = q[j1] - q[j0]  # (T,)
    frac = torch.where(dq > 0, (t - q[j0]) / torch.where(dq > 0, dq, torch.ones_like(dq)), torch.zeros_like(t))
    return (s[j0] + frac.clamp(0, 1) * (s[j1] - s[j0])).tolist()


def _mapped_grid(prior: Distribution, u: Tensor, mean: float, std: float) -> tuple[Tensor, Tensor, Callable, float,
                                                                                    float] | str:
    """The default grid of a prior without an icdf from a numerical CDF: uniform in s (:class:`_Map`) between the
    s where the CDF, a cumulative trapezoid of p_s, reaches 1e-9 and 1 - 1e-9 (a first auxiliary grid of 2**18 cells
    over all of s finds the mass, a second of 2**16 over the 1e-13 quantiles of the first places the grid), trimmed
    where H's steps would be under 64 ulps of h (towards a bound b != 0, where h runs out of digits). Returns (s
    (G,), H(s) (G,), p_s, the grid's mass, its spread max p_s * (s_hi - s_lo)), or a string: why there is none."""
    mp = _map_for(prior, mean, std)
    if not mp.s_min < mp.s_max:
        return "its support is too narrow for float64"
    s = torch.linspace(mp.s_min, mp.s_max, _AUX[0], dtype=torch.float64)  # (A,)
    for n_next in (*_AUX[1:], None):
        p = mp.density(prior, s)  # (A,)
        cdf = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumulative_trapezoid(p, s)])  # (A,)
        total = float(cdf[-1])
        if not (math.isfinite(total) and total > 0):
            return f"its density integrates to {total:.3g} over its support"
        q = cdf / total  # (A,) the numerical CDF, non-decreasing
        if n_next is not None:
            i0 = max(int(torch.searchsorted(q, torch.tensor(1e-13, dtype=torch.float64))) - 2, 0)
            i1 = min(int(torch.searchsorted(q, torch.tensor(1 - 1e-13, dtype=torch.float64))) + 2, s.shape[0] - 1)
            s = torch.linspace(float(s[i0]), float(s[i1]), n_next, dtype=torch.float64)  # (A,)
    s_lo, s_med, s_hi = _interp(q, s, [_TAIL, 0.5, 1 - _TAIL])
    if mp.kind == "real" and abs(s_lo + s_hi) <= 1e-6 * (s_hi - s_lo):
        s_hi = max(-s_lo, s_hi)  # a prior symmetric about its mean: the mean exactly at the centre of an odd grid
        s_lo = -s_hi
    hs, log_dh = mp.h(s), mp.log_dh(s)  # (A,), (A,)
    i_med = int(torch.searchsorted(s, torch.tensor(s_med, dtype=torch.float64)).clamp(0, s.shape[0] - 1))
    eps = torch.finfo(torch.float64).eps
    for _ in range(4):  # trimming shortens the grid, and so its steps: check again
        ds = (s_hi - s_lo) / (u.shape[0] - 1)
        fine = torch.isfinite(hs) & (log_dh.exp() * ds >= _ULPS * eps * hs.abs())  # (A,)
        if not bool(fine[i_med]):
            return "its body is narrower than float64 resolves at its location"
        bad_lo = (~fine[:i_med]).nonzero()
        bad_hi = (~fine[i_med:]).nonzero()
        lo_t = max(s_lo, float(s[int(bad_lo.max()) + 1])) if bad_lo.numel() else s_lo
        hi_t = min(s_hi, float(s[i_med + int(bad_hi.min()) - 1])) if bad_hi.numel() else s_hi
        if (lo_t, hi_t) == (s_lo, s_hi):
            break
        s_lo, s_hi = lo_t, hi_t
    grid = (s_lo + s_hi) / 2 + (s_hi - s_lo) / 2 * u  # (G,)
    grid[0], grid[-1] = s_lo, s_hi
    dens = mp.density(prior, grid)  # (G,)
    mass = float(torch.trapezoid(dens, grid))
    return grid, mp.h(grid), (lambda v: mp.density(prior, v)), mass, float(dens.max()) * (s_hi - s_lo)


def _resolves(mass: float, spread: float) -> bool:
    return abs(mass - 1) <= _UNRESOLVED and spread <= MAX_SPREAD


def _grid(f, prior: Distribution, h_range, n_grid: int) -> _Grid:
    _check_prior(prior)
    if isinstance(n_grid, bool) or not isinstance(n_grid, int) or n_grid < 3:
        raise ConfigError(f"n_grid must be an integer >= 3, got {n_grid!r}")
    if h_range is None:
        lo, hi = _default_h_range(prior)
    else:
        lo, hi = _interval(h_range, "h_range")
    u = torch.linspace(-1.0, 1.0, n_grid, dtype=torch.float64)  # (G,)
    u = (u - u.flip(0)) / 2  # (G,) exactly antisymmetric: the centre is exactly 0 for odd n_grid
    c, w = (lo + hi) / 2, (hi - lo) / 2
    h = c + w * u  # (G,)
    h[0], h[-1] = lo, hi
    grid, density = h, (lambda v: _prior_density(prior, v))  # the grid's variable and its density
    median = _quantile(prior, torch.tensor([0.5], dtype=torch.float64))  # (1,) a Cauchy's peak, between the points
    probe = h if median is None else torch.cat([h, median])  # of an even grid (which then missed it: 80, not 2e8)
    probe_density = _prior_density(prior, probe)  # (G,) or (G+1,)
    spread = float(probe_density.max()) * (hi - lo)
    if h_range is None and spread > MAX_SPREAD:
        # a cell of 200,001 would hold over 0.1% of the prior's mass (a Cauchy: all of its body). Make the grid
        # uniform in t = logit(q), h = icdf(q) for the quantile q = sigmoid(t): t is logistic, p(t) = sigmoid(t)
        # sigmoid(-t), and p_x(x) = sum over {t : f(h(t)) = x} of p(t) / |d f(h(t)) / dt|, the same change of
        # variables through t. A cell then holds at most dt / 4 of the mass (p(t) <= 1/4: 5e-5 at 200,001 points),
        # and along a power-law tail the cells are even in log h
        t = math.log((1 - _TAIL) / _TAIL) * u  # (G,) t = 0 (the median) exactly at the centre for odd n_grid
        hq = _quantile(prior, torch.sigmoid(t))  # (G,) or None
        if hq is not None:
            grid, h = t, hq
            density = lambda v: torch.sigmoid(v) * torch.sigmoid(-v)  # noqa: E731  p_t, the logistic density
    note = None
    no_icdf = _quantile(prior, torch.tensor([_TAIL, 0.5, 1 - _TAIL], dtype=torch.float64)) is None
    if h_range is None and grid is h and no_icdf:
        # no icdf: mean -+ 12 std. Check that the grid holds the prior's mass (trapezoid of p_h on it): a singular
        # bound (Chi2(1): 1.128, Gamma(0.1): 38.6) or a heavy tail beyond 12 std (StudentT(2.5): 0.99962) does not,
        # and then takes the grid of a numerical CDF instead (_mapped_grid)
        mass = float(torch.trapezoid(probe_density[:n_grid], h))
        if abs(mass - 1) > _MASS_TOL or spread > MAX_SPREAD:
            mapped = _mapped_grid(prior, u, float(prior.mean), float(prior.stddev))
            why = mapped if isinstance(mapped, str) else None
            if why is None:
                m_grid, m_h, m_density, m_mass, m_spread = mapped
                if _resolves(m_mass, m_spread) or abs(m_mass - 1) < abs(mass - 1):
                    grid, h, density, mass, spread = m_grid, m_h, m_density, m_mass, m_spread
                why = f"the grid holds {mass:.6g} of its mass" if abs(mass - 1) > _UNRESOLVED else \
                    f"one of its {n_grid} cells holds up to {spread / n_grid:.2g} of its mass"
            if why is not None and not _resolves(mass, spread):
                note = (f"the default h grid does not resolve {type(prior).__name__} ({why}) and it has no icdf: "
                        "the density may be wrong; pass h_range and n_grid, or reparametrise")
    y = _evaluate(f, h)  # (G,)
    fp = _derivative(y, grid)  # (G,)
    sign = torch.sign(y[1:] - y[:-1]).to(torch.int8)  # (G-1,) per interval: +1 up, -1 down, 0 flat
    cuts = (sign[1:] != sign[:-1]).nonzero().flatten() + 1  # (R-1,) first interval of each new run
    starts = torch.cat([torch.zeros(1, dtype=torch.long), cuts]).tolist()
    ends = torch.cat([cuts, torch.tensor([n_grid - 1])]).tolist()  # exclusive, in intervals
    run_sign = sign[starts].tolist()  # the sign of each run (a Python list: indexing the tensor per run took seconds
    #                                   for a noisy f's 100,000 runs)
    pieces = [(a, b, sg) for a, b, sg in zip(starts, ends, run_sign) if sg != 0]
    atoms = []
    if 0 in run_sign:
        # f constant on a run of cells (relu, clamp): x = f there is a point mass, the prior's mass of the run
        d = density(grid).nan_to_num(nan=0.0, posinf=0.0)  # (G,)
        cell = torch.cat([torch.zeros(1, dtype=torch.float64),
                          ((d[1:] + d[:-1]) / 2 * (grid[1:] - grid[:-1])).cumsum(0)])  # (G,) mass up to each point
        atoms = [(float(y[a]), float(cell[b] - cell[a]), float(h[a]), float(h[b]))
                 for a, b, sg in zip(starts, ends, run_sign) if sg == 0]
    return _Grid(grid, y, fp, pieces, density, atoms, note)


def _warn_grid(g: _Grid, stacklevel: int) -> None:
    """The grid's warnings (GenZooWarning): a prior it does not resolve, and the point masses of flat runs of f."""
    if g.note is not None:
        warnings.warn(g.note, GenZooWarning, stacklevel=stacklevel + 1)
    total = sum(m for _, m, _, _ in g.atoms)
    if total > _ATOM:
        x, m, h0, h1 = max(g.atoms, key=lambda a: a[1])
        more = f"; {len(g.atoms)} flat runs leave out {total:.3g} in all" if len(g.atoms) > 1 else ""
        warnings.warn(f"f is constant on h in [{h0:.6g}, {h1:.6g}]: x = {x:.6g} has probability {m:.3g}, which the "
                      f"density (of x's continuous part) leaves out{more}", GenZooWarning, stacklevel=stacklevel + 1)


def _quantile(prior: Distribution, u: Tensor) -> Tensor | None:
    """prior.icdf(u) (G,) float64, or None for a prior without an icdf or where it is not finite and increasing."""
    try:
        h = prior.icdf(u).to(torch.float64)  # (G,)
    except (NotImplementedError, ValueError, RuntimeError):
        return None
    return h if bool(torch.isfinite(h).all()) and bool((h[1:] > h[:-1]).all()) else None


def _invert_cell(x: Tensor, y0: Tensor, y1: Tensor, h0: Tensor, h1: Tensor, d0: Tensor,
                 d1: Tensor) -> tuple[Tensor, Tensor]:
    """h with f(h) = x and f'(h) inside grid cells [h0, h1] with y0 <= x <= y1 (all (K,)).

    f is modelled on the cell as y0 + d0 t + c t**2 / 2, t = h - h0, c = (d1 - d0) / (h1 - h0):
    exact for a quadratic (h**2 right at its turning point, where inverting linearly would be off
    by a factor of two), O(cell**3) otherwise. Where that model has no root in the cell (f' from
    central differences of the wrong sign next to a turning point between grid points) the linear
    inverse and the cell's secant slope stand in. An exact stationary grid point (h = 0 for h**2)
    keeps f' = 0 and so the infinite density it has.
    """
    dh = h1 - h0  # (K,) negative on a decreasing piece
    r = x - y0  # (K,) >= 0
    c = (d1 - d0) / dh  # (K,)
    disc = d0 * d0 + 2 * c * r  # (K,)
    root = torch.sign(dh) * disc.clamp_min(0).sqrt()  # (K,)
    den = d0 + root  # (K,)
    t = torch.where(den != 0, 2 * r / torch.where(den != 0, den, torch.ones_like(den)),
                    torch.zeros_like(r))  # (K,) the root of the quadratic model, stable form
    dq = d0 + c * t  # (K,) f'(h0 + t)
    secant = (y1 - y0) / dh  # (K,) never zero, the sign of the piece
    frac = t / dh  # (K,) should lie in [0, 1]
    ok = (disc >= 0) & (frac >= -1e-6) & (frac <= 1 + 1e-6) & (dq * secant >= 0) & (d0 * secant >= 0)
    lin = r / (y1 - y0)  # (K,) linear inverse, in [0, 1]
    d_lin = d0 + lin * (d1 - d0)  # (K,)
    d_lin = torch.where(d_lin * secant > 0, d_lin, secant)  # (K,)
    hq = torch.where(ok, h0 + t, h0 + lin * dh)  # (K,)
    dq = torch.where(ok, dq, d_lin)  # (K,)
    return hq, dq


def _density_from_grid(g: _Grid, x: Tensor) -> Tensor:
    """p_x at x (M,) float64 from the monotone pieces of the grid -> (M,) float64."""
    dens = torch.zeros_like(x)  # (M,)
    for a, b, s in g.pieces:
        ys, hs, fps = g.y[a:b + 1], g.h[a:b + 1], g.fp[a:b + 1]  # (L,) each, the piece's grid points
        if s < 0:
            ys, hs, fps = ys.flip(0), hs.flip(0), fps.flip(0)  # make ys increasing
        inside = (x >= ys[0]) & (x <= ys[-1])  # (M,)
        if not inside.any():
            continue
        xi = x[inside]  # (K,)
        j1 = torch.searchsorted(ys, xi).clamp(1, ys.shape[0] - 1)  # (K,) right end of the bracket
        j0 = j1 - 1  # (K,)
        hq, dq = _invert_cell(xi, ys[j0], ys[j1], hs[j0], hs[j1], fps[j0], fps[j1])  # (K,), (K,)
        ph = g.density(hq)  # (K,)
        contrib = torch.where(ph > 0, ph / dq.abs(), torch.zeros_like(ph))  # (K,)
        dens[inside] += contrib
    return dens


# ----------------------------------------------------------------------------- public API

def density_change_of_variables(f: Callable[[Tensor], Tensor], prior: Distribution, x,
                                h_range: tuple[float, float] | None = None,
                                n_grid: int = 200_001) -> Tensor:
    """Density p(x) of x = f(h), h ~ prior, by the change of variables over f's monotone pieces.

    ``f`` is elementwise, torch -> torch, on (N,) or (N, 1) tensors (an ``nn.Module`` such as
    ``nn.Sequential(nn.Linear(1, 16), nn.Tanh(), nn.Linear(16, 1))`` is fine); it is called under
    ``torch.no_grad`` in float64 (a float32 module is evaluated through a float64 copy). A module is
    evaluated in eval mode, as a generator samples (dropout off, batch norm on its running statistics:
    in train mode f(h) would depend on the batch of grid points h is in), and comes back as it was:
    its ``training`` flags and buffers are restored.
    ``prior`` is a continuous distribution over scalars. f is evaluated on ``n_grid`` uniform points
    of ``h_range`` (default: the prior's 1e-9 and 1 - 1e-9 quantiles, or mean -+ 12 std when it has
    no icdf), split where the sign of f's increments changes, inverted by interpolation on
    each piece (a local quadratic model per grid cell, exact at a quadratic turning point), and
    p(x) = sum_i p_h(h_i(x)) / |f'(h_i(x))| with f' by fourth-order central differences on the
    grid, interpolated within a cell. Points x outside f's range get 0; at a stationary grid point
    (x = 0 for h**2) the density is inf.

    The density is that of x's continuous part. Where f is constant on an interval of h (relu for
    h < 0, clamp), x has a point mass, the prior's mass of that interval, which no density shows: it
    is left out, and a :class:`~genzoo.errors.GenZooWarning` gives its probability (where the flat
    runs hold more than 1e-6 of the prior's mass). Within about two grid cells of a kink (relu at
    h = 0) the density is approximate (the stencil straddles it).

    A heavy tail: where one cell of 200,001 on the default range would hold more than 0.1% of the
    prior's mass (max p_h * (hi - lo) > 200; a Cauchy's 1e-9 quantiles lie at -+3e8, which puts its
    whole body in one cell, and likewise a Pareto's or half-Cauchy's) and the prior has an icdf, the
    grid is uniform in t = logit(q) between the same quantiles instead, h = icdf(q): t is logistic,
    and p(x) = sum_i p_t(t_i) / |d f(h(t)) / dt| at the t_i with f(h(t_i)) = x. A cell then holds at
    most a quarter of its width in mass (p_t <= 1/4: 5e-5 at the default n_grid), and along a
    power-law tail the cells are even in log h. (A log-normal of sigma 1 takes it too: 0.13%. At a
    stationary point the density is then very large rather than inf, as rounding leaves the
    derivative a hair from 0.)

    A prior without an icdf (Gamma, Chi2, Beta, StudentT, InverseGamma, FisherSnedecor) keeps the
    uniform grid on mean -+ 12 std where that grid holds its mass (the trapezoid of p_h over it is
    within 1e-6 of 1: Gamma(2)). Where it does not (a singular density at a bound, Chi2(1)'s
    or Gamma(0.1)'s, or a tail beyond 12 std, StudentT(2.5)'s), the grid is uniform in s for
    h = H(s), an analytic map onto the support (sinh on the real line, exp towards one bound, the
    logistic between two), between the s where a numerical CDF of p_s(s) = p_h(H(s)) H'(s) (a
    cumulative trapezoid) reaches 1e-9 and 1 - 1e-9; p(x) = sum_i p_s(s_i) / |d f(H(s)) / ds|.
    Where neither grid holds the prior's mass to 1e-5 (Beta(0.05, 0.05), whose mass piles up
    closer to 1 than float64 resolves; a VonMises, whose log_prob is periodic on the real line), a
    GenZooWarning says so: pass ``h_range`` and ``n_grid``, or reparametrise.

    >>> from torch.distributions import Chi2, Normal
    >>> x = torch.tensor([0.01, 1.0], dtype=torch.float64)
    >>> p = density_change_of_variables(torch.sqrt, Chi2(torch.tensor(1.0, dtype=torch.float64)), x)
    >>> want = 2 * torch.exp(-x**2 / 2) / math.sqrt(2 * math.pi)   # the half-normal: no icdf, singular at h = 0
    >>> bool(torch.allclose(p, want, rtol=1e-6))
    True
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     p = density_change_of_variables(torch.relu, Normal(0.0, 1.0), x)  # half the mass at x = 0
    >>> round(p[1].item(), 6)                                         # phi(1): the continuous part
    0.241971
    >>> print(str(caught[0].message).split(": ")[1])
    x = 0 has probability 0.5, which the density (of x's continuous part) leaves out

    Accuracy with a float64 f on the default grid: the relative error is about
    spacing**2 * |f'''(h) / f'(h)| / 8 (from interpolating f' within a cell). Measured on x in
    [0.05, 5]: 5e-10 for exp(h) (log-normal), 1e-11 for h**2 (chi-square), 1.3e-7 for -log(h),
    h ~ U(0, 1), where |f'''/f'| reaches 2e5; on the quantile grid 4e-8 for tanh(h), h ~ Cauchy(0, 1),
    2e-9 for log(h), h ~ Pareto(1, 1) (1e-5 at x = 19). Within one grid cell of a turning point that
    falls between grid points, the (singular) density is only approximate. Returns (M,) in x's dtype
    (float64 unless x is a floating tensor).
    """
    xv = _vector("x", x)  # (M,)
    g = _grid(f, prior, h_range, n_grid)
    if len(g.pieces) > max(MAX_PIECES, n_grid // 100):
        warnings.warn(f"f splits the h grid into {len(g.pieces)} monotone pieces: it looks noisy or "
                      "low-precision; the change of variables is unreliable (try method='kde')",
                      RuntimeWarning, stacklevel=2)
    _warn_grid(g, stacklevel=2)
    return _density_from_grid(g, xv).to(_out_dtype(x))  # (M,)


def _bandwidth(s: Tensor, bandwidth) -> float:
    """The kernel's standard deviation for samples s (N,)."""
    if bandwidth is None:
        bandwidth = "silverman"
    if isinstance(bandwidth, str):
        n = s.shape[0]
        std = float(s.std())
        if bandwidth == "scott":
            bw = std * n ** -0.2
        elif bandwidth == "silverman":
            q = torch.quantile(s, torch.tensor([0.25, 0.75], dtype=s.dtype))  # (2,)
            iqr = float(q[1] - q[0]) / 1.349
            spread = min(std, iqr) if iqr > 0 else std
            bw = 0.9 * spread * n ** -0.2
        else:
            raise ConfigError(f"unknown bandwidth rule {bandwidth!r}; choose 'scott', 'silverman' or "
                              "a positive number" + did_you_mean(bandwidth, ["scott", "silverman"]))
        if not bw > 0:
            raise DataError("samples are all equal: a bandwidth rule cannot pick a kernel width; "
                            "pass bandwidth=<positive number>")
        return bw
    try:
        bw = float(bandwidth)
    except (TypeError, ValueError):
        raise ConfigError(f"bandwidth must be None, 'scott', 'silverman' or a positive number, "
                          f"got {bandwidth!r}") from None
    if not (math.isfinite(bw) and bw > 0):
        raise ConfigError(f"bandwidth must be a positive finite number, got {bandwidth!r}")
    return bw


def density_kde(samples, x, bandwidth: float | str | None = None) -> Tensor:
    """Gaussian kernel density estimate at x (M,) from samples (N,): (1/N) sum_n N(x; s_n, bw**2).

    ``bandwidth``: a positive number (the kernel's standard deviation), ``"scott"``
    (std * N**-1/5) or ``"silverman"`` (0.9 * min(std, IQR/1.349) * N**-1/5, the default for None).
    Computed as a log-sum-exp in float64, in blocks of queries so memory stays bounded. Both
    inputs must be 1-D and finite (pass ``samples.reshape(-1)`` for an (N, 1) column). Returns (M,)
    in x's dtype (float64 unless x is a floating tensor).

    >>> p = density_kde(torch.tensor([-1.0, 1.0]), torch.tensor([0.0]), bandwidth=1.0)
    >>> round(p.item(), 4), round(math.exp(-0.5) / math.sqrt(2 * math.pi), 4)   # both kernels: N(1; 0, 1)
    (0.242, 0.242)
    >>> density_kde(torch.tensor([-1.0, 1.0]), [0.0]).dtype                   # a list: float64
    torch.float64
    """
    s = _vector("samples", samples, min_len=2)  # (N,)
    xv = _vector("x", x)  # (M,)
    bw = _bandwidth(s, bandwidth)
    n = s.shape[0]
    log_norm = math.log(n) + math.log(bw) + 0.5 * math.log(2 * math.pi)
    block = max(1, _KDE_BLOCK // n)
    out = []
    for xb in xv.split(block):  # (B,)
        z = (xb[:, None] - s[None, :]) / bw  # (B, N)
        out.append(torch.logsumexp(-0.5 * z * z, dim=1) - log_norm)  # (B,)
    return torch.cat(out).exp().to(_out_dtype(x))  # (M,)


def density_histogram(samples, bins: int = 100,
                      range: tuple[float, float] | None = None) -> tuple[Tensor, Tensor]:  # noqa: A002
    """Histogram density of samples (N,): returns (edges (bins + 1,), density (bins,)), float64.

    density = count / (N * bin width), so it estimates p(x) even where ``range`` cuts off tails
    (numpy's ``density=True`` would rescale the kept part to integrate to 1). ``range`` defaults
    to the samples' min and max.

    >>> edges, density = density_histogram(torch.tensor([0.1, 0.2, 0.6, 0.7, 5.0]), bins=2, range=(0, 1))
    >>> edges.tolist(), density.tolist()                    # 2 of 5 in a bin of width 0.5: 0.8; 5.0 is cut off
    ([0.0, 0.5, 1.0], [0.8, 0.8])
    """
    s = _vector("samples", samples)  # (N,)
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ConfigError(f"bins must be a positive integer, got {bins!r}")
    if range is None:
        lo, hi = float(s.min()), float(s.max())
        if lo == hi:
            lo, hi = lo - 0.5, hi + 0.5
    else:
        lo, hi = _interval(range, "range")
    edges = torch.linspace(lo, hi, bins + 1, dtype=torch.float64)  # (bins+1,)
    counts = torch.histc(s, bins=bins, min=lo, max=hi)  # (bins,) values outside [lo, hi] ignored
    density = counts / (s.shape[0] * (hi - lo) / bins)  # (bins,)
    return edges, density


def _device_of(dist: Distribution) -> torch.device:
    """The device of a distribution's parameters (those of its base, for a transformed or independent one); the CPU
    for one with no tensors (its ``mean`` may not exist in closed form: a logistic)."""
    while hasattr(dist, "base_dist"):
        dist = dist.base_dist
    return next((v.device for v in vars(dist).values() if isinstance(v, Tensor)), torch.device("cpu"))


def _sample_h(prior: Distribution, n: int, generator: torch.Generator | None) -> Tensor:
    """n draws from the prior (n,) float64; from ``generator`` without touching the global RNG."""
    if generator is None:
        h = prior.sample((n,))
    else:
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        with forked_rng(_device_of(prior)):  # the prior's device too: manual_seed reseeds it
            torch.manual_seed(seed)
            h = prior.sample((n,))
    return h.reshape(n).to(torch.float64)  # (n,)


def _check_n(name: str, n) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ConfigError(f"{name} must be an integer >= 2, got {n!r}")


def _auto_grid(f, prior, method: str, h_range, n_grid) -> _Grid | None:
    """The grid for the change of variables, or None when the KDE is to be used."""
    _check_method(method)
    _check_prior(prior)
    if method == "kde":
        return None
    g = _grid(f, prior, h_range, n_grid)
    if method == "auto" and len(g.pieces) > MAX_PIECES:
        return None
    return g


def implicit_density(f: Callable[[Tensor], Tensor], prior: Distribution, x, method: str = "auto",
                     n_samples: int = 100_000, generator: torch.Generator | None = None,
                     bandwidth: float | str | None = None,
                     h_range: tuple[float, float] | None = None, n_grid: int = 200_001) -> Tensor:
    """p(x) at x (M,) for x = f(h), h ~ prior: the one entry point.

    ``method``: ``"change_of_variables"`` (:func:`density_change_of_variables`, exact up to the
    grid), ``"kde"`` (:func:`density_kde` of ``n_samples`` draws f(h), drawn from ``generator``
    when given, without touching the global RNG), or ``"auto"``: the change of variables, unless
    f splits the grid into more than 1000 monotone pieces (a noisy f, or a float32 f too coarse
    to differentiate on the grid), then the KDE. Returns (M,) in x's dtype.

    As in :func:`density_change_of_variables`: an ``nn.Module`` f is evaluated in eval mode (for the
    KDE's draws too) and left as it was; the density is that of x's continuous part (a flat piece of
    f, a point mass, is warned of); and a prior that the default grid cannot resolve is warned of
    (:class:`~genzoo.errors.GenZooWarning`).

    >>> from torch.distributions import Normal
    >>> x = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    >>> p = implicit_density(torch.exp, Normal(0.0, 1.0), x)        # exp of a standard normal: the log-normal
    >>> want = torch.exp(-x.log() ** 2 / 2) / (x * math.sqrt(2 * math.pi))
    >>> bool(torch.allclose(p, want, rtol=1e-3))
    True
    >>> _ = torch.manual_seed(0)
    >>> net = nn.Sequential(nn.Linear(1, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 1)).double()  # train mode
    >>> before = {k: v.clone() for k, v in net.state_dict().items()}
    >>> p = implicit_density(net, Normal(0.0, 1.0), x, n_grid=2_001)  # as net.eval() would sample
    >>> net.training, all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    (True, True)
    """
    xv = _vector("x", x)  # (M,)
    g = _auto_grid(f, prior, method, h_range, n_grid)
    if g is not None:
        _warn_grid(g, stacklevel=2)
        return _density_from_grid(g, xv).to(_out_dtype(x))  # (M,)
    _check_n("n_samples", n_samples)
    xs = _evaluate(f, _sample_h(prior, n_samples, generator))  # (n_samples,)
    return density_kde(xs, xv, bandwidth).to(_out_dtype(x))  # (M,)


def plot_implicit_density(f: Callable[[Tensor], Tensor], prior: Distribution, path: str | os.PathLike,
                          n_samples: int = 20_000, title: str = "",
                          reference: Callable | None = None, generator: torch.Generator | None = None,
                          method: str = "auto", bins: int = 100, h_range: tuple[float, float] | None = None,
                          n_grid: int = 200_001) -> None:
    """Write a PNG: histogram of n_samples draws f(h) under the computed density p(x).

    The x axis spans the samples' 0.5% to 99.5% quantiles. ``reference``, a callable x -> pdf
    taking a float64 numpy array (``scipy.stats.lognorm(s=1).pdf``) or a tensor, is drawn
    dashed. The curve comes from :func:`implicit_density` with ``method``, ``h_range`` and ``n_grid`` (a KDE
    reuses the plotted samples). Headless (matplotlib's Agg backend); written atomically.
    """
    _check_n("n_samples", n_samples)
    g = _auto_grid(f, prior, method, h_range, n_grid)
    if g is not None:
        _warn_grid(g, stacklevel=2)
    xs = _evaluate(f, _sample_h(prior, n_samples, generator))  # (n_samples,)
    q = torch.quantile(xs, torch.tensor([0.005, 0.995], dtype=torch.float64))  # (2,)
    lo, hi = float(q[0]), float(q[1])
    if not hi > lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges, hist = density_histogram(xs, bins=bins, range=(lo, hi))  # (bins+1,), (bins,)
    t = torch.linspace(lo, hi, 600, dtype=torch.float64)  # (600,)
    if g is not None:
        curve, label = _density_from_grid(g, t), "change of variables"  # (600,)
    else:
        curve, label = density_kde(xs, t), "Gaussian KDE"  # (600,)
    curve = torch.where(torch.isfinite(curve), curve, torch.full_like(curve, float("nan")))  # (600,)

    import numpy as np

    from ..viz.plots import figure, save_figure

    fig = figure((5, 3.6), dpi=100)  # a bare figure: the caller's pyplot backend and figures left alone
    ax = fig.subplots()
    ax.stairs(hist.numpy(), edges.numpy(), fill=True, alpha=0.35, color="tab:blue",
              label=f"histogram of {n_samples} samples f(h)")
    ax.plot(t.numpy(), curve.numpy(), color="tab:red", lw=1.6, label=f"p(x), {label}")
    if reference is not None:
        ref = reference(t.numpy())
        ref = ref.detach().cpu().numpy() if isinstance(ref, Tensor) else np.asarray(ref, dtype=float)
        ax.plot(t.numpy(), ref, "k--", lw=1.2, label="reference")
    top = float(hist.max()) if hist.numel() else 1.0
    ax.set_ylim(0, 1.35 * top if top > 0 else 1.0)  # a singular density (h**2 at 0) would flatten the rest
    ax.set_xlim(lo, hi)
    ax.set_xlabel("x = f(h)")
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend(fontsize=8)
    save_figure(fig, path)
