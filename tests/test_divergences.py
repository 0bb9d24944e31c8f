"""Tests for genzoo.divergences: the f-divergences of f-GAN (Nowozin et al. 2016) and their quadrature."""

import math

import numpy as np
import pytest
import torch
from scipy import optimize, special

from genzoo import divergences as dv
from genzoo.data.toy import mixture1d
from genzoo.errors import ConfigError

KEYS = ["kl", "reverse_kl", "pearson", "hellinger", "js", "jeffrey", "gan"]
D64 = torch.float64

# P = N(0, 1), Q = N(0.5, 1.2^2): every divergence here is finite (Pearson needs 2 s_q^2 > s_p^2)
M1, S1, M2, S2 = 0.0, 1.0, 0.5, 1.2
P = torch.distributions.Normal(torch.tensor(M1, dtype=D64), S1)
Q = torch.distributions.Normal(torch.tensor(M2, dtype=D64), S2)


def log_p(x):
    return P.log_prob(x[:, 0])  # (n,)


def log_q(x):
    return Q.log_prob(x[:, 0])  # (n,)


def kl_gauss(m1, s1, m2, s2):
    return math.log(s2 / s1) + (s1 ** 2 + (m1 - m2) ** 2) / (2 * s2 ** 2) - 0.5


CLOSED = {  # D_f(N(M1, S1^2) || N(M2, S2^2)) in closed form
    "kl": kl_gauss(M1, S1, M2, S2),
    "reverse_kl": kl_gauss(M2, S2, M1, S1),
    "jeffrey": kl_gauss(M1, S1, M2, S2) + kl_gauss(M2, S2, M1, S1),
    "hellinger": 2 - 2 * math.sqrt(2 * S1 * S2 / (S1 ** 2 + S2 ** 2)) * math.exp(-(M1 - M2) ** 2 / (4 * (S1 ** 2 + S2 ** 2))),
    "pearson": S2 ** 2 / (S1 * math.sqrt(2 * S2 ** 2 - S1 ** 2)) * math.exp((M1 - M2) ** 2 / (2 * S2 ** 2 - S1 ** 2)) - 1,
}

# the raw critic output V* with g_f(V*) = T* = f'(p/q), as a function of r = log(p/q)
V_STAR = {
    "kl": lambda r: 1 + r,
    "reverse_kl": lambda r: r,
    "pearson": lambda r: 2 * torch.expm1(r),
    "hellinger": lambda r: r / 2,
    "js": lambda r: r,
    "jeffrey": lambda r: 1 + r - torch.exp(-r),
    "gan": lambda r: r,
}

# points inside dom f* at which the sup over u is attained at a moderate u > 0
T_POINTS = {
    "kl": [-2.0, 0.0, 1.0, 2.5],
    "reverse_kl": [-3.0, -1.0, -0.2],
    "pearson": [-1.5, 0.0, 1.0, 3.0],  # t >= -2: Table 6's t^2/4 + t extends f to u < 0 below that
    "hellinger": [-2.0, 0.0, 0.5, 0.9],
    "js": [-2.0, 0.0, 0.5, 0.68],
    "jeffrey": [-3.0, 0.0, 1.0, 4.0],
    "gan": [-3.0, -0.7, -0.05],
}

SUP_T = {"hellinger": 1.0, "gan": 0.0, "reverse_kl": 0.0, "js": math.log(2)}  # Table 6 domains


def quad(fn, lo=-15.0, hi=15.0, n=30001):
    """Simpson quadrature of a function of (n,) float64 points, independent of the module's."""
    x = torch.linspace(lo, hi, n, dtype=D64)  # (n,)
    w = torch.full((n,), 2.0, dtype=D64)
    w[1::2], w[0], w[-1] = 4.0, 1.0, 1.0
    return float((fn(x) * w).sum() * (hi - lo) / (n - 1) / 3)


def test_registry_and_unknown_name():
    assert list(dv.DIVERGENCES) == KEYS
    assert all(dv.get(k).name == k and dv.get(k).title for k in KEYS)
    with pytest.raises(ConfigError) as e:
        dv.get("kll")
    msg = str(e.value)
    assert "'kl'" in msg and "did you mean" in msg and "reverse_kl" in msg and "\n" not in msg


@pytest.mark.parametrize("key", KEYS)
def test_f_vanishes_at_one_and_is_convex(key):
    f = dv.get(key).f
    # Table 1's GAN generator is u log u - (u+1) log(u+1): f(1) = -log 4, D_gan = 2 JS - log 4
    f1 = -math.log(4) if key == "gan" else 0.0
    assert float(f(torch.tensor(1.0, dtype=D64))) == pytest.approx(f1, abs=1e-15)
    u = torch.linspace(0.01, 20.0, 4001, dtype=D64)  # (4001,)
    fu = f(u)  # (4001,)
    second = fu[2:] - 2 * fu[1:-1] + fu[:-2]  # (3999,)
    assert bool(torch.all(second >= -1e-12)) and bool(torch.all(second[:100] > 0))
    # f'(1) is the optimal critic where p = q (Table 6, column f'(1))
    expect = {"kl": 1.0, "reverse_kl": -1.0, "gan": -math.log(2)}.get(key, 0.0)
    assert float(dv.get(key).optimal_critic(torch.tensor(0.0, dtype=D64))) == pytest.approx(expect, abs=1e-15)


@pytest.mark.parametrize("key", KEYS)
def test_conjugate_is_the_numerical_sup(key):
    d = dv.get(key)
    for t in T_POINTS[key]:
        def neg(s):  # -(u t - f(u)) with u = e^s; concave in u, so unimodal in s
            u = torch.tensor(math.exp(s), dtype=D64)
            return -float(u * t - d.f(u))

        res = optimize.minimize_scalar(neg, bounds=(-30, 30), method="bounded", options={"xatol": 1e-12})
        conj = float(d.conjugate(torch.tensor(t, dtype=D64)))
        assert conj == pytest.approx(-res.fun, rel=1e-7, abs=1e-9), (key, t)


@pytest.mark.parametrize("key", KEYS)
def test_fused_conjugate_of_activation(key):
    d = dv.get(key)
    v = torch.linspace(-5, 5, 101, dtype=D64)  # (101,)
    torch.testing.assert_close(d.conjugate_of_activation(v), d.conjugate(d.activation(v)), rtol=1e-10, atol=1e-12)
    big = torch.tensor([-30.0, 30.0])  # float32, where compositions overflow or round to dom's edge
    out = d.conjugate_of_activation(big)
    assert bool(torch.all(torch.isfinite(out))) and out.dtype == torch.float32
    assert bool(torch.all(torch.isfinite(d.activation(big))))
    # the objective is mean g(v_real) - mean f*(g(v_fake))
    vr, vf = torch.randn(7), torch.randn(5)
    torch.testing.assert_close(d.objective(vr, vf), d.activation(vr).mean() - d.conjugate(d.activation(vf)).mean())


def test_fused_hellinger_beats_composition():
    d = dv.get("hellinger")
    v = torch.tensor(30.0)  # float32: 1 - e^{-30} rounds to 1, where t / (1 - t) is inf
    assert math.isinf(float(d.conjugate(d.activation(v))))
    assert float(d.conjugate_of_activation(v)) == pytest.approx(math.expm1(30.0), rel=1e-6)


@pytest.mark.parametrize("key", sorted(SUP_T))
def test_activation_maps_into_dom(key):
    d = dv.get(key)
    v = torch.linspace(-20, 20, 401, dtype=D64)  # (401,)
    t = d.activation(v)  # (401,)
    assert bool(torch.all(t < SUP_T[key])) and bool(torch.all(torch.diff(t) > 0))
    assert d.t_max == SUP_T[key]


@pytest.mark.parametrize("key", KEYS)
def test_bound_is_tight_at_optimal_critic(key):
    d = dv.get(key)
    exact = dv.divergence_1d(key, log_p, log_q, -15, 15)
    if key in CLOSED:
        assert exact == pytest.approx(CLOSED[key], rel=1e-9)

    def ratio(x):
        return P.log_prob(x) - Q.log_prob(x)  # (n,)

    # E_P[T*] - E_Q[f*(T*)], with T* = f'(p/q), by quadrature
    bound = quad(lambda x: P.log_prob(x).exp() * d.optimal_critic(ratio(x))
                 - Q.log_prob(x).exp() * d.conjugate(d.optimal_critic(ratio(x))))
    assert bound == pytest.approx(exact, rel=1e-6)
    # the same through the raw critic V* and the fused conjugate
    x = torch.linspace(-15, 15, 1001, dtype=D64)
    torch.testing.assert_close(d.activation(V_STAR[key](ratio(x))), d.optimal_critic(ratio(x)), rtol=1e-9, atol=1e-9)
    fused = quad(lambda x: P.log_prob(x).exp() * d.activation(V_STAR[key](ratio(x)))
                 - Q.log_prob(x).exp() * d.conjugate_of_activation(V_STAR[key](ratio(x))))
    assert fused == pytest.approx(exact, rel=1e-6)
    # a worse critic gives a smaller F (F <= D_f)
    worse = quad(lambda x: P.log_prob(x).exp() * d.activation(0.8 * V_STAR[key](ratio(x)))
                 - Q.log_prob(x).exp() * d.conjugate_of_activation(0.8 * V_STAR[key](ratio(x))))
    assert worse < exact - 1e-4


@pytest.mark.parametrize("key", ["kl", "js", "gan", "hellinger"])
def test_objective_monte_carlo_at_optimal_critic(key):
    d = dv.get(key)
    g = torch.Generator().manual_seed(1)
    xr = M1 + S1 * torch.randn(200_000, generator=g, dtype=D64)  # (N,) from P
    xf = M2 + S2 * torch.randn(200_000, generator=g, dtype=D64)  # (N,) from Q
    vr = V_STAR[key](P.log_prob(xr) - Q.log_prob(xr))  # (N,)
    vf = V_STAR[key](P.log_prob(xf) - Q.log_prob(xf))  # (N,)
    exact = dv.divergence_1d(key, log_p, log_q, -15, 15)
    assert float(d.objective(vr, vf)) == pytest.approx(exact, abs=0.01)


def test_divergence_1d_identical_and_js_gan():
    mix = mixture1d((-2.0, 1.0), (0.5, 1.0), (0.4, 0.6))
    for key in KEYS:
        zero = -math.log(4) if key == "gan" else 0.0  # the GAN "divergence" is 2 JS - log 4
        assert dv.divergence_1d(key, mix.log_prob, mix.log_prob, -10, 10) == pytest.approx(zero, abs=1e-12), key
    # the usual JS = (KL(P||M) + KL(Q||M)) / 2 with M = (P + Q)/2, computed here independently
    pq = lambda x: (log_p(x[:, None]), mix.log_prob(x[:, None]))  # noqa: E731

    def half_kl_sum(x):
        a, b = pq(x)
        m = torch.log((a.exp() + b.exp()) / 2)
        return 0.5 * (a.exp() * (a - m) + b.exp() * (b - m))

    js = quad(half_kl_sum)
    assert 0 < js < math.log(2)
    assert dv.divergence_1d("js", log_p, mix.log_prob, -15, 15) == pytest.approx(2 * js, rel=1e-9)
    assert dv.divergence_1d("gan", log_p, mix.log_prob, -15, 15) == pytest.approx(2 * js - math.log(4), rel=1e-9)


def test_divergence_1d_is_stable_for_far_apart_densities():
    far = torch.distributions.Normal(torch.tensor(30.0, dtype=D64), 1.0)
    lf = lambda x: far.log_prob(x[:, 0])  # noqa: E731
    assert dv.divergence_1d("kl", log_p, lf, -15, 45) == pytest.approx(450.0, rel=1e-9)
    assert dv.divergence_1d("js", log_p, lf, -15, 45) == pytest.approx(math.log(4), rel=1e-9)
    assert dv.divergence_1d("hellinger", log_p, lf, -15, 45) == pytest.approx(2.0, rel=1e-9)
    assert math.isinf(dv.divergence_1d("pearson", log_p, lf, -15, 45)) or dv.divergence_1d("pearson", log_p, lf, -15, 45) > 1e100
    with pytest.raises(ConfigError):
        dv.divergence_1d("kl", log_p, log_q, 1.0, -1.0)


def test_best_gaussian_kl_is_moment_matching():
    w, m, s = np.array([0.3, 0.7]), np.array([-1.0, 2.0]), np.array([0.5, 1.0])
    mix = mixture1d(tuple(m), tuple(s), tuple(w))
    mean = float(w @ m)
    std = math.sqrt(float(w @ (s ** 2 + m ** 2)) - mean ** 2)
    mu, sigma, val = dv.best_gaussian_1d("kl", mix.log_prob, -12, 14, init=(0.0, 1.0))
    assert mu == pytest.approx(mean, abs=1e-3) and sigma == pytest.approx(std, abs=1e-3)
    assert val == pytest.approx(dv.divergence_1d("kl", mix.log_prob, lambda x: torch.distributions.Normal(
        torch.tensor(mean, dtype=D64), std).log_prob(x[:, 0]), -12, 14), abs=1e-8)


def test_best_gaussian_reverse_kl_seeks_a_mode():
    mix = mixture1d((-3.0, 3.0), (0.5, 0.5))
    mu, sigma, val = dv.best_gaussian_1d("reverse_kl", mix.log_prob, -10, 10)
    assert abs(abs(mu) - 3.0) < 0.01 and sigma == pytest.approx(0.5, abs=0.01)
    assert val == pytest.approx(math.log(2), abs=1e-3)  # q = one component: q log(q / (q/2))


def test_lambert_w_matches_scipy_and_has_the_right_gradient():
    a = torch.cat([torch.linspace(-40, 40, 161, dtype=D64), torch.tensor([-800.0, -700.0, -1e-9, 1e-9, 700.0], dtype=D64)])
    w = dv.lambert_w_exp(a)  # (166,)
    ref = torch.from_numpy(special.lambertw(np.exp(a.numpy())).real)
    torch.testing.assert_close(w, ref, rtol=1e-13, atol=0.0)
    huge = torch.tensor([1e5, 1e20, 1e300], dtype=D64)  # exp(a) would overflow
    wh = dv.lambert_w_exp(huge)
    torch.testing.assert_close(wh + torch.log(wh), huge, rtol=1e-15, atol=0.0)
    ends = dv.lambert_w_exp(torch.tensor([-math.inf, math.inf], dtype=D64))
    assert ends.tolist() == [0.0, math.inf]
    assert dv.lambert_w_exp(torch.tensor([1.0])).dtype == torch.float32
    x = torch.tensor([-5.0, -0.3, 0.0, 1.0, 2.7, 12.0], dtype=D64, requires_grad=True)
    assert torch.autograd.gradcheck(dv.lambert_w_exp, (x,))
    assert torch.autograd.gradgradcheck(dv.lambert_w_exp, (x,))


def test_jeffrey_conjugate_is_finite_and_differentiable():
    d = dv.get("jeffrey")
    t = torch.tensor([-1e6, -30.0, 0.0, 30.0], dtype=D64, requires_grad=True)
    y = d.conjugate_of_activation(t)
    assert bool(torch.all(torch.isfinite(y))) and float(y[2].detach()) == pytest.approx(0.0, abs=1e-15)
    (grad,) = torch.autograd.grad(y.sum(), t)
    # d f*/dt = argmax u = 1 / W(e^{1-t})
    torch.testing.assert_close(grad, 1 / dv.lambert_w_exp(1 - t.detach()), rtol=1e-10, atol=0.0)


# -- audit a116 ---------------------------------------------------------------------------------------------------
def test_jeffrey_conjugate_runs_under_torch_func_transforms():
    """torch.func grad, vmap, jacrev and hessian, and forward-mode AD, failed through the Jeffrey conjugate (a116 #3):
    the Lambert W Function was in the old style (forward(ctx, ...), no setup_context, vmap rule or jvp)."""
    from torch import func
    from torch.autograd import forward_ad

    d = dv.get("jeffrey")
    t = torch.tensor([-1e6, -30.0, -1.0, 0.0, 0.5, 1.0, 2.0, 30.0], dtype=D64)
    tg = t.clone().requires_grad_(True)
    (want,) = torch.autograd.grad(d.conjugate(tg).sum(), tg, create_graph=True)   # f*'(t) = 1 / W(e^{1-t})
    (want2,) = torch.autograd.grad(want.sum(), tg)                                 # f*''(t), elementwise
    assert torch.equal(func.grad(lambda s: d.conjugate(s).sum())(t), want.detach())
    assert torch.equal(func.vmap(d.conjugate)(t[:, None])[:, 0], d.conjugate(t))
    assert torch.equal(func.vmap(dv.lambert_w_exp)(t[:, None])[:, 0], dv.lambert_w_exp(t))
    assert torch.equal(func.jacrev(d.conjugate)(t), torch.diag(want.detach()))
    torch.testing.assert_close(func.hessian(lambda s: d.conjugate(s).sum())(t), torch.diag(want2), rtol=1e-12, atol=0)
    torch.testing.assert_close(func.vmap(func.grad(lambda s: d.conjugate(s)))(t), want.detach(), rtol=1e-15, atol=0)
    with forward_ad.dual_level():
        out = dv.lambert_w_exp(forward_ad.make_dual(1 - t, torch.ones_like(t)))
        w, dw = forward_ad.unpack_dual(out)
    assert torch.equal(w, dv.lambert_w_exp(1 - t)) and torch.equal(dw, w * 1 / (1 + w))


def test_jeffrey_conjugate_keeps_its_digits_in_float32_for_very_negative_t():
    """f*(t) = w + 1/w + t - 2 cancelled w ~ -t against t: in float32 7e-3 of f* wrong at t = -1e7, 7e-2 at -1e8 and
    its gradient 1/w = 1e-8 read 0 there (a116 N1). The equal 1/w - log w - 1 (log w = 1 - t - w) is used for t < 1."""
    d = dv.get("jeffrey")
    t64 = torch.tensor([-1e8, -1e7, -1e6, -1e4, -30.0, -1.0, 0.0, 0.5, 0.999, 1.0, 2.0, 30.0], dtype=D64)
    t32 = t64.float().requires_grad_(True)
    ref = d.conjugate(t64)
    y32 = d.conjugate(t32)
    torch.testing.assert_close(y32.detach().double(), ref, rtol=1e-6, atol=1e-7)
    (g32,) = torch.autograd.grad(y32.sum(), t32)
    torch.testing.assert_close(g32.double(), 1 / dv.lambert_w_exp(1 - t64), rtol=1e-6, atol=0)  # f*'(t) = 1/W
    # the published form, in float64 over the normal range, where its cancellation is harmless: the two agree tightly
    t = torch.linspace(-30, 30, 601, dtype=D64)
    w = dv.lambert_w_exp(1 - t)
    torch.testing.assert_close(d.conjugate(t), w + 1 / w + t - 2, rtol=1e-13, atol=1e-15)
    assert float(ref[6]) == 0.0 and d.conjugate_of_activation(t64).equal(ref)  # f*(0) = 0: W(e) = 1 exactly


def test_fdivergences_pickle_by_name():
    """An FDivergence of the registry pickles as its name (its fields are lambdas) and comes back as the registry's
    own object (a116 #2); another pickles field by field (no recursion into the name rule)."""
    import copy
    import pickle

    for key in KEYS:
        d = dv.get(key)
        assert pickle.loads(pickle.dumps(d)) is d and copy.deepcopy(d) is d
    mine = dv.FDivergence("kl", "mine", torch.exp, torch.exp, torch.exp, torch.exp, torch.exp)  # not the registry's
    back = pickle.loads(pickle.dumps(mine))
    assert back is not dv.get("kl") and back == mine
