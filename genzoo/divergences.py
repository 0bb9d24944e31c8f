"""f-divergences for f-GAN training and for evaluation (Nowozin, Cseke & Tomioka 2016).

Convention: ``D_f(P || Q) = int q(x) f(p(x) / q(x)) dx`` with ``P`` the data and ``Q`` the model,
``f`` convex with ``f(1) = 0`` (all but ``gan``). The f-GAN variational objective (Nowozin et al.
2016, eq. 6) is

    F(theta, omega) = E_{x~P}[g_f(V(x))] - E_{x~Q_theta}[f*(g_f(V(x)))]  <=  D_f(P || Q_theta),

where ``V`` is the critic's raw real output, ``g_f`` the output activation mapping R into the
domain of the convex conjugate ``f*(t) = sup_u (u t - f(u))`` (Table 6). The critic maximises
``F``, the generator minimises it; the bound is tight at ``T*(x) = f'(p(x) / q(x))`` (eq. 5).

Each :class:`FDivergence` in :data:`DIVERGENCES` carries ``f``, ``conjugate``, ``activation``,
a fused, numerically stable ``conjugate_of_activation(v) = f*(g_f(v))`` (what training uses),
the log-space ``integrand`` ``q f(p/q)``, the ``objective`` ``F`` and the ``optimal_critic``.
:func:`divergence_1d` computes ``D_f`` of two 1-D densities by quadrature and
:func:`best_gaussian_1d` the exact best single Gaussian under ``D_f`` (the setting of Section 4).

Keys: ``kl``, ``reverse_kl``, ``pearson`` (Pearson chi^2), ``hellinger`` (squared Hellinger,
``int (sqrt p - sqrt q)^2``, no factor 1/2), ``js``, ``jeffrey``, ``gan``. Note on ``js``: the
paper's generator ``f(u) = -(u+1) log((1+u)/2) + u log u`` (Table 1), whose conjugate is Table 6's
``-log(2 - e^t)``, gives ``KL(P||M) + KL(Q||M)`` with ``M = (P+Q)/2``, i.e. **twice** the usual
Jensen-Shannon divergence (at most ``log 4``); ``gan`` is ``js - log 4`` (Goodfellow et al. 2014),
so its ``f(1) = -log 4`` and it is ``-log 4``, not 0, at ``P = Q``. Table 6's Pearson conjugate
``t^2/4 + t`` is that of ``(u - 1)^2`` on all of R (on ``u >= 0`` it would be -1 for ``t < -2``); it
is kept as published, since training only needs a valid lower bound.

>>> import torch
>>> from torch.distributions import Normal
>>> d = get("kl")
>>> p, q = Normal(0.0, 1.0), Normal(1.0, 1.0)
>>> round(divergence_1d("kl", lambda x: p.log_prob(x[:, 0]), lambda x: q.log_prob(x[:, 0]), -12, 12), 6)
0.5
>>> float(d.conjugate_of_activation(torch.tensor(1.0)))        # f*(g(v)) = exp(v - 1)
1.0
>>> get("kll")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
genzoo.errors.ConfigError: unknown f-divergence 'kll' (did you mean 'kl'?); choose one of: kl, ...
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import ConfigError, did_you_mean

__all__ = [
    "FDivergence", "DIVERGENCES", "get", "divergence_1d", "best_gaussian_1d", "lambert_w_exp",
]

LOG2 = math.log(2.0)
LOG4 = math.log(4.0)


# --------------------------------------------------------------------------------------------
# Lambert W in log form
# --------------------------------------------------------------------------------------------

class _LambertWExp(torch.autograd.Function):
    """``w = W(exp(a))``: Newton's method without a graph, derivative ``w / (1 + w)`` attached.

    In the form ``torch.func`` takes (``forward`` without ctx, ``setup_context``): ``grad``, ``vmap``,
    ``jacrev``, ``jacfwd``/``hessian`` (by :meth:`jvp`) and ``torch.autograd.forward_ad`` run through it.
    """

    @staticmethod
    def forward(a: Tensor) -> Tensor:
        return _lambert_w_exp_solve(a)  # same shape as a

    @staticmethod
    def setup_context(ctx, inputs: tuple[Tensor], output: Tensor) -> None:
        ctx.save_for_backward(output)
        ctx.save_for_forward(output)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (w,) = ctx.saved_tensors
        # dW(e^a)/da = w / (1 + w) (differentiate w + log w = a); built from the saved output, so
        # a create_graph backward differentiates it again correctly.
        return grad * w / (1 + w)

    @staticmethod
    def jvp(ctx, tangent: Tensor) -> Tensor:
        (w,) = ctx.saved_tensors
        return tangent * w / (1 + w)  # the same derivative, forward mode

    @staticmethod
    def vmap(info, in_dims: tuple[int | None], a: Tensor) -> tuple[Tensor, int | None]:
        # elementwise, so the batched input is solved as it is (generate_vmap_rule cannot trace the solver:
        # its Newton loop stops on a data-dependent bool)
        return _LambertWExp.apply(a), in_dims[0]


@torch.no_grad()
def _lambert_w_exp_solve(a: Tensor) -> Tensor:
    """Solve ``w + log w = a`` for ``w > 0`` elementwise, in float64, by Newton on ``y = log w``.

    ``h(y) = e^y + y - a`` is convex and increasing, so Newton converges from any start (after at
    most one step it approaches the root monotonically from above).
    """
    a64 = a.detach().double()  # same shape as a
    finite = torch.isfinite(a64)
    af = torch.where(finite, a64, torch.zeros_like(a64))
    # Start: W(z) ~ log z - log log z for large z, W(z) ~ z for small z.
    big = af > 1
    y = torch.where(big, torch.log(torch.where(big, af - torch.log(torch.where(big, af, 1.0)), 1.0)), af)
    for _ in range(30):
        ey = torch.exp(y)
        step = (ey + y - af) / (ey + 1)
        y = y - step
        if bool(torch.all(step.abs() <= 1e-15 * torch.clamp(y.abs(), min=1.0))):
            break
    w = torch.exp(y)
    for _ in range(2):  # polish in w itself: exp(y) carries the rounding of y (large for huge a)
        pos = w > 0  # w underflows to 0 for a < -745
        ws = torch.where(pos, w, 1.0)
        w = torch.where(pos, ws - (ws + torch.log(ws) - af) / (1 + 1 / ws), w)
    w = torch.where(finite, w, torch.where(a64 > 0, math.inf, torch.where(a64 < 0, 0.0, math.nan)))
    return w.to(a.dtype if a.is_floating_point() else torch.get_default_dtype())


def lambert_w_exp(a: Tensor) -> Tensor:
    """``W(exp(a))``, the principal Lambert W of ``e^a``, i.e. the ``w > 0`` with ``w + log w = a``.

    Takes the argument in log form so that large ``a`` never overflows ``exp``. Differentiable:
    ``dw/da = w / (1 + w)``. ``a = +inf`` gives ``inf``, ``a = -inf`` gives 0.

    >>> round(float(lambert_w_exp(torch.tensor(1.0, dtype=torch.float64))), 12)   # W(e) = 1
    1.0
    """
    return _LambertWExp.apply(torch.as_tensor(a))


# --------------------------------------------------------------------------------------------
# Stable helpers
# --------------------------------------------------------------------------------------------

def _log1mexp(x: Tensor) -> Tensor:
    """``log(1 - exp(x))`` for ``x < 0``, accurate everywhere (Maechler 2012)."""
    return torch.where(x > -LOG2, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def _plogr(log_a: Tensor, log_ratio: Tensor) -> Tensor:
    """``a * log_ratio`` with ``a = exp(log_a)``, taking ``0 * anything = 0`` where ``a = 0``."""
    zero = log_a == -math.inf
    return torch.where(zero, torch.zeros_like(log_a), torch.exp(log_a) * torch.where(zero, 0.0, log_ratio))


def _log_abs_expm1(d: Tensor) -> Tensor:
    """``log|e^d - 1|`` without overflow for large ``d`` (``-inf`` at ``d = 0``)."""
    pos = d > 0
    dp = torch.where(pos, d, 1.0)  # guard the branch not taken
    dn = torch.where(pos, -1.0, d)
    return torch.where(pos, dp + torch.log(-torch.expm1(-dp)), torch.log(-torch.expm1(dn)))


# --------------------------------------------------------------------------------------------
# The divergences
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FDivergence:
    """One f-divergence with everything f-GAN training and evaluation need.

    ``f``, ``conjugate`` (``f*``), ``activation`` (``g_f``) and ``conjugate_of_activation``
    (``f* o g_f``, written directly in ``v`` for stability) act elementwise; ``integrand`` maps
    ``(log p, log q)`` to ``q f(p / q)`` in log space; ``t_max`` is the supremum of
    ``dom f*`` (``inf`` when unbounded); ``critic_prime`` maps ``r = log(p/q)`` to ``f'(p/q)``
    in closed form (when None, :meth:`optimal_critic` differentiates ``f`` by autograd).

    KL's (``f(u) = u log u``, ``g_f(v) = v``, ``f*(t) = exp(t - 1)``):

    >>> d, u = get("kl"), torch.linspace(1e-6, 20, 200001)
    >>> float(d.f(torch.tensor(1.0))), torch.allclose((0.5 * u - d.f(u)).max(), d.conjugate(torch.tensor(0.5)))
    (0.0, True)
    >>> from torch.distributions import Normal                     # P = N(0, 1), Q = N(1, 1): KL = 1/2
    >>> log_ratio = lambda x: Normal(0.0, 1.0).log_prob(x) - Normal(1.0, 1.0).log_prob(x)
    >>> g = torch.Generator().manual_seed(0)
    >>> x_p, x_q = torch.randn(200_000, generator=g), torch.randn(200_000, generator=g) + 1
    >>> t_p, t_q = d.optimal_critic(log_ratio(x_p)), d.optimal_critic(log_ratio(x_q))   # f'(p/q) = 1 + log p/q
    >>> round(d.objective(t_p, t_q).item(), 2)                     # the bound F <= D_f is tight there
    0.5

    (``objective`` takes raw critic outputs v and applies ``g_f`` itself; KL's ``g_f`` is the identity, so its
    T* is also the raw optimum. For the others pass the raw v* with g_f(v*) = T*, not T*.)
    """

    name: str
    title: str
    f: Callable[[Tensor], Tensor]
    conjugate: Callable[[Tensor], Tensor]
    activation: Callable[[Tensor], Tensor]
    conjugate_of_activation: Callable[[Tensor], Tensor]
    integrand: Callable[[Tensor, Tensor], Tensor]
    critic_prime: Callable[[Tensor], Tensor] | None = None
    t_max: float = math.inf

    def objective(self, v_real: Tensor, v_fake: Tensor) -> Tensor:
        """The f-GAN objective ``F = mean g_f(v_real) - mean f*(g_f(v_fake))`` (eq. 6), a scalar.

        ``v_real`` are the critic's raw outputs on data (P), ``v_fake`` on model samples (Q), any
        shapes. The critic ascends ``F``; the generator descends it.
        """
        return self.activation(v_real).mean() - self.conjugate_of_activation(v_fake).mean()  # ()

    def optimal_critic(self, log_ratio: Tensor) -> Tensor:
        """The optimal critic ``T*(x) = f'(p(x)/q(x))`` from ``log_ratio = log p(x) - log q(x)``.

        Same shape as ``log_ratio``; the bound ``F <= D_f`` is tight there (Nowozin et al. 2016,
        eq. 5, after Nguyen et al. 2010).
        """
        if self.critic_prime is not None:
            return self.critic_prime(log_ratio)
        with torch.enable_grad():
            u = torch.exp(log_ratio.detach()).requires_grad_(True)  # same shape as log_ratio
            (grad,) = torch.autograd.grad(self.f(u).sum(), u)
        return grad

    def __repr__(self) -> str:
        return f"FDivergence({self.name!r}, {self.title!r})"

    def __reduce_ex__(self, protocol):
        """One of :data:`DIVERGENCES` pickles as its name (its fields are lambdas, which pickle cannot
        store), so that ``torch.save`` of an f-GAN works and loads the registry's own object; any
        other pickles field by field.

        >>> import pickle
        >>> pickle.loads(pickle.dumps(get("jeffrey"))) is get("jeffrey")
        True
        """
        if DIVERGENCES.get(self.name) is self:
            return get, (self.name,)
        return super().__reduce_ex__(protocol)


def _jeffrey_conjugate(t: Tensor) -> Tensor:
    """Nowozin et al. 2016, Table 6: ``f*(t) = w + 1/w + t - 2`` with ``w = W(e^{1-t})``.

    For ``t < 1`` (``w > W(1) = 0.567``) the equal ``1/w - log w - 1`` (from ``log w = 1 - t - w``), which
    does not cancel ``w ~ -t`` against ``t``: the published form kept 7e-3 of its value in float32 at
    t = -1e7, and 0 of its gradient 1/w at t = -1e8. For ``t >= 1`` the published form, with
    ``1/w = exp(t - 1 + w)`` (no overflow of e^{1-t}; w itself underflows to 0 for large t).

    >>> t = torch.tensor([-1e8, -1e6, 0.0, 20.0])
    >>> torch.allclose(_jeffrey_conjugate(t), _jeffrey_conjugate(t.double()).float(), rtol=1e-6, atol=0)
    True
    """
    w = lambert_w_exp(1 - t)  # same shape as t
    low = t < 1
    wl = torch.where(low, w, 1.0)  # the branch not taken guarded: w = 0 would make 1/w and log w infinite
    inner = 1 / wl - torch.log(wl) - 1  # t < 1
    outer = w + torch.exp(t - 1 + w) + t - 2  # t >= 1, Table 6 as published
    return torch.where(low, inner, outer)


def _kl_integrand(lp: Tensor, lq: Tensor) -> Tensor:
    return _plogr(lp, lp - lq)  # p log(p/q)


def _reverse_kl_integrand(lp: Tensor, lq: Tensor) -> Tensor:
    return _plogr(lq, lq - lp)  # q log(q/p)


def _pearson_integrand(lp: Tensor, lq: Tensor) -> Tensor:
    # q (p/q - 1)^2 = exp(log q + 2 log|e^{log p - log q} - 1|), no overflow of p/q
    d = torch.where(lq == -math.inf, torch.where(lp == -math.inf, 0.0, math.inf), lp - lq)
    out = torch.exp(lq + 2 * _log_abs_expm1(d))
    return torch.where((lq == -math.inf) & (lp == -math.inf), 0.0, torch.where(lq == -math.inf, math.inf, out))


def _hellinger_integrand(lp: Tensor, lq: Tensor) -> Tensor:
    return (torch.exp(lp / 2) - torch.exp(lq / 2)) ** 2  # (sqrt p - sqrt q)^2


def _js_integrand(lp: Tensor, lq: Tensor) -> Tensor:
    lm = torch.logaddexp(lp, lq) - LOG2  # log m, m = (p + q) / 2
    return _plogr(lp, lp - lm) + _plogr(lq, lq - lm)  # p log(p/m) + q log(q/m)


def _gan_integrand(lp: Tensor, lq: Tensor) -> Tensor:
    ls = torch.logaddexp(lp, lq)  # log(p + q)
    return _plogr(lp, lp - ls) + _plogr(lq, lq - ls)  # p log(p/(p+q)) + q log(q/(p+q))


def _jeffrey_integrand(lp: Tensor, lq: Tensor) -> Tensor:
    return _kl_integrand(lp, lq) + _reverse_kl_integrand(lp, lq)  # (p - q) log(p/q)


_DEFS = [
    FDivergence(
        "kl", "Kullback-Leibler",
        f=lambda u: torch.special.xlogy(u, u),  # Nowozin et al. 2016, Table 1: u log u
        conjugate=lambda t: torch.exp(t - 1),  # Table 6: exp(t - 1)
        activation=lambda v: v,  # Table 6: g_f(v) = v
        conjugate_of_activation=lambda v: torch.exp(v - 1),
        integrand=_kl_integrand,
        critic_prime=lambda r: 1 + r,  # f'(u) = 1 + log u
    ),
    FDivergence(
        "reverse_kl", "Reverse KL",
        f=lambda u: -torch.log(u),  # Table 1: -log u
        conjugate=lambda t: -1 - torch.log(-t),  # Table 6: -1 - log(-t), t < 0
        activation=lambda v: -torch.exp(-v),  # Table 6: g_f(v) = -exp(-v)
        conjugate_of_activation=lambda v: v - 1,  # -1 - log(exp(-v))
        integrand=_reverse_kl_integrand,
        critic_prime=lambda r: -torch.exp(-r),  # f'(u) = -1/u
        t_max=0.0,
    ),
    FDivergence(
        "pearson", "Pearson chi^2",
        f=lambda u: (u - 1) ** 2,  # Table 1: (u - 1)^2
        conjugate=lambda t: t * t / 4 + t,  # Table 6: t^2/4 + t
        activation=lambda v: v,  # Table 6: g_f(v) = v
        conjugate_of_activation=lambda v: v * v / 4 + v,
        integrand=_pearson_integrand,
        critic_prime=lambda r: 2 * torch.expm1(r),  # f'(u) = 2 (u - 1)
    ),
    FDivergence(
        "hellinger", "Squared Hellinger",
        f=lambda u: (torch.sqrt(u) - 1) ** 2,  # Table 1: (sqrt u - 1)^2
        conjugate=lambda t: t / (1 - t),  # Table 6: t / (1 - t), t < 1
        activation=lambda v: -torch.expm1(-v),  # Table 6: g_f(v) = 1 - exp(-v)
        conjugate_of_activation=torch.expm1,  # (1 - e^{-v}) / e^{-v} = e^v - 1
        integrand=_hellinger_integrand,
        critic_prime=lambda r: -torch.expm1(-r / 2),  # f'(u) = 1 - u^{-1/2}
        t_max=1.0,
    ),
    FDivergence(
        "js", "Jensen-Shannon (x2)",
        # Table 1: -(u + 1) log((1 + u)/2) + u log u
        f=lambda u: torch.special.xlogy(u, u) - (u + 1) * (torch.log1p(u) - LOG2),
        conjugate=lambda t: -LOG2 - _log1mexp(t - LOG2),  # Table 6: -log(2 - exp t), t < log 2
        activation=lambda v: LOG2 - F.softplus(-v),  # Table 6: g_f(v) = log 2 - log(1 + exp(-v))
        conjugate_of_activation=lambda v: F.softplus(v) - LOG2,  # -log(2 - 2 sigmoid(v))
        integrand=_js_integrand,
        critic_prime=lambda r: LOG2 - F.softplus(-r),  # f'(u) = log(2u / (1 + u))
        t_max=LOG2,
    ),
    FDivergence(
        "jeffrey", "Jeffrey",
        f=lambda u: (u - 1) * torch.log(u),  # Table 1: (u - 1) log u
        conjugate=_jeffrey_conjugate,  # Table 6: W(e^{1-t}) + 1/W(e^{1-t}) + t - 2
        activation=lambda v: v,  # Table 6: g_f(v) = v
        conjugate_of_activation=_jeffrey_conjugate,
        integrand=_jeffrey_integrand,
        critic_prime=lambda r: 1 + r - torch.exp(-r),  # f'(u) = log u + 1 - 1/u
    ),
    FDivergence(
        "gan", "GAN",
        f=lambda u: torch.special.xlogy(u, u) - (u + 1) * torch.log1p(u),  # Table 1: u log u - (u+1) log(u+1)
        conjugate=lambda t: -_log1mexp(t),  # Table 6: -log(1 - exp t), t < 0
        activation=lambda v: -F.softplus(-v),  # Table 6: g_f(v) = -log(1 + exp(-v))
        conjugate_of_activation=F.softplus,  # -log(1 - sigmoid(v)) = softplus(v)
        integrand=_gan_integrand,
        critic_prime=lambda r: -F.softplus(-r),  # f'(u) = log(u / (1 + u))
        t_max=0.0,
    ),
]

#: seven of the f-divergences of Nowozin et al. 2016 (Tables 1, 2 and 6), by key
DIVERGENCES: dict[str, FDivergence] = {d.name: d for d in _DEFS}


def get(name: str | FDivergence) -> FDivergence:
    """The :class:`FDivergence` called ``name`` (an :class:`FDivergence` is returned as is).

    Raises :class:`~genzoo.errors.ConfigError` naming the choices for an unknown name.
    """
    if isinstance(name, FDivergence):
        return name
    try:
        return DIVERGENCES[name]
    except (KeyError, TypeError):
        raise ConfigError(
            f"unknown f-divergence '{name}'{did_you_mean(str(name), DIVERGENCES)}; "
            f"choose one of: {', '.join(DIVERGENCES)}"
        ) from None


# --------------------------------------------------------------------------------------------
# Quadrature in 1-D
# --------------------------------------------------------------------------------------------

def _grid(lo: float, hi: float, n: int) -> tuple[Tensor, Tensor]:
    """Nodes ``(n, 1)`` float64 and composite-Simpson weights ``(n,)`` on ``[lo, hi]`` (n odd)."""
    lo, hi = float(lo), float(hi)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ConfigError(f"quadrature needs finite lo < hi, got lo={lo}, hi={hi}")
    if int(n) < 3:
        raise ConfigError(f"quadrature needs n >= 3 nodes, got {n}")
    n = int(n) | 1  # Simpson wants an odd number of nodes
    x = torch.linspace(lo, hi, n, dtype=torch.float64)  # (n,)
    h = (hi - lo) / (n - 1)
    w = torch.full((n,), 2.0, dtype=torch.float64)  # (n,)
    w[1::2] = 4.0
    w[0] = w[-1] = 1.0
    return x[:, None], w * (h / 3)  # (n, 1), (n,)


def _integrate(integrand: Tensor, weights: Tensor) -> float:
    return float((integrand * weights).sum())


def _log_density(fn: Callable[[Tensor], Tensor], x: Tensor, what: str) -> Tensor:
    out = torch.as_tensor(fn(x)).double().reshape(-1)  # (n,)
    if out.shape[0] != x.shape[0]:
        raise ConfigError(f"{what} must map (n, 1) points to (n,) log densities, got shape {tuple(out.shape)}")
    return out


def divergence_1d(name: str | FDivergence, log_p: Callable[[Tensor], Tensor], log_q: Callable[[Tensor], Tensor],
                  lo: float, hi: float, n: int = 20001) -> float:
    """``D_f(P || Q)`` of two 1-D densities by composite Simpson quadrature in float64.

    ``log_p`` and ``log_q`` take ``(n, 1)`` float64 points and return ``(n,)`` log densities (as
    ``genzoo.data.toy`` densities' ``log_prob``). ``[lo, hi]`` must hold essentially all the mass
    of ``q f(p/q)``; ``n`` nodes (made odd) must resolve both densities.
    """
    div = get(name)
    x, w = _grid(lo, hi, n)  # (n, 1), (n,)
    lp, lq = _log_density(log_p, x, "log_p"), _log_density(log_q, x, "log_q")  # (n,), (n,)
    return _integrate(div.integrand(lp, lq), w)


def _gaussian_log_prob(x: Tensor, mu: float, log_sigma: float) -> Tensor:
    z = (x - mu) * math.exp(-log_sigma)  # (n,)
    return -0.5 * z * z - log_sigma - 0.5 * math.log(2 * math.pi)  # (n,)


def best_gaussian_1d(name: str | FDivergence, log_p: Callable[[Tensor], Tensor], lo: float, hi: float,
                     init: tuple[float, float] | None = None, n: int = 20001) -> tuple[float, float, float]:
    """The Gaussian ``N(mu, sigma^2)`` minimising ``D_f(P || N(mu, sigma^2))``: ``(mu, sigma, D_f)``.

    ``D_f`` is computed by quadrature on ``[lo, hi]`` (as :func:`divergence_1d`) and minimised
    over ``(mu, log sigma)`` by Nelder-Mead with tight tolerances from several starts -- ``init``
    if given, the moment-matched Gaussian of ``P``, and a Gaussian fitted to each of the highest
    modes of ``p`` -- keeping the best (so mode-seeking divergences find the best mode, not just a
    local one). ``[lo, hi]`` must hold the mass of ``P`` and of the optimal Gaussian.
    This is the experiment of Nowozin et al. 2016, Section 4 (Table 3), solved exactly.

    >>> from torch.distributions import Normal                     # P: modes at -2 and 2, each N(., 0.5^2)
    >>> modes = Normal(torch.tensor([-2.0, 2.0]), 0.5)
    >>> log_p = lambda x: torch.logsumexp(modes.log_prob(x), 1) - math.log(2)
    >>> mu, sigma, kl = best_gaussian_1d("kl", log_p, -8, 8, n=4001)            # KL(P || Q): P's moments
    >>> abs(round(mu, 4)), round(sigma, 4), round(math.sqrt(0.5 ** 2 + 2 ** 2), 4)
    (0.0, 2.0616, 2.0616)
    >>> mu, sigma, rkl = best_gaussian_1d("reverse_kl", log_p, -8, 8, n=4001)   # mode-seeking: one mode
    >>> round(abs(mu), 2), round(sigma, 2), round(rkl, 3), round(math.log(2), 3)
    (2.0, 0.5, 0.693, 0.693)
    """
    from scipy.optimize import minimize

    div = get(name)
    x, w = _grid(lo, hi, n)  # (n, 1), (n,)
    xs = x[:, 0]  # (n,)
    lp = _log_density(log_p, x, "log_p")  # (n,)

    def objective(theta: np.ndarray) -> float:
        mu, log_sigma = float(theta[0]), float(theta[1])
        if not (math.isfinite(mu) and math.isfinite(log_sigma)) or abs(log_sigma) > 50:
            return math.inf
        val = _integrate(div.integrand(lp, _gaussian_log_prob(xs, mu, log_sigma)), w)
        return val if math.isfinite(val) else math.inf

    # moments of P (normalised on the grid)
    p = torch.exp(lp - lp.max())  # (n,)
    z = _integrate(p, w)
    mean = _integrate(p * xs, w) / z
    std = math.sqrt(max(_integrate(p * (xs - mean) ** 2, w) / z, 1e-300))
    starts = [(mean, std)]
    if init is not None:
        starts.insert(0, (float(init[0]), float(init[1])))
    # local maxima of log p, highest first, each with the curvature width of log p there
    h = float(xs[1] - xs[0])
    inner = (lp[1:-1] >= lp[:-2]) & (lp[1:-1] > lp[2:])  # (n-2,)
    peaks = (torch.nonzero(inner)[:, 0] + 1).tolist()
    peaks.sort(key=lambda i: -float(lp[i]))
    for i in peaks[:4]:
        curv = -float(lp[i + 1] - 2 * lp[i] + lp[i - 1]) / h ** 2
        width = 1 / math.sqrt(curv) if curv > 0 else std
        starts.append((float(xs[i]), min(max(width, 10 * h), std)))

    best: tuple[float, np.ndarray] | None = None
    for mu0, sigma0 in starts:
        if not sigma0 > 0:
            continue
        x0 = np.array([mu0, math.log(sigma0)])
        for _ in range(2):  # a restart polishes a possibly collapsed simplex
            simplex = np.array([x0, x0 + [0.2 * math.exp(x0[1]), 0.0], x0 + [0.0, 0.2]])
            res = minimize(objective, x0, method="Nelder-Mead",
                           options={"initial_simplex": simplex, "xatol": 1e-9, "fatol": 1e-14, "maxiter": 5000})
            x0 = res.x
        val = objective(x0)
        if best is None or val < best[0]:
            best = (val, x0)
    if best is None or not math.isfinite(best[0]):
        raise ConfigError(f"no Gaussian has a finite {div.title} divergence from P on [{lo}, {hi}]")
    val, theta = best
    return float(theta[0]), math.exp(float(theta[1])), float(val)
