"""Tests of implicit 1-D densities (genzoo/eval/implicit.py) against closed forms from scipy.stats."""

from __future__ import annotations

import copy
import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn
from torch.distributions import Gamma, Independent, Normal, Uniform

from genzoo.errors import ConfigError, DataError
from genzoo.eval.implicit import (
    density_change_of_variables,
    density_histogram,
    density_kde,
    implicit_density,
    plot_implicit_density,
)

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


def normal64(mu: float = 0.0, sigma: float = 1.0) -> Normal:
    """A float64 prior, so that sigma = 0.7 is 0.7 and not float32(0.7) when compared to scipy."""
    return Normal(torch.tensor(mu, dtype=F64), torch.tensor(sigma, dtype=F64))


def rel_err(p: torch.Tensor, ref: np.ndarray) -> float:
    return float(np.max(np.abs(p.numpy() / ref - 1)))


def cubic(h):
    return h**3 - 3 * h


def cubic_cdf(x: float) -> float:
    """P(h**3 - 3h <= x), h ~ N(0, 1): the prior's mass where the cubic lies below x."""
    r = np.roots([1.0, 0.0, -3.0, -x])
    roots = np.sort(r.real[np.abs(r.imag) < 1e-9])
    phi = stats.norm.cdf
    if len(roots) == 3:
        return phi(roots[0]) + phi(roots[2]) - phi(roots[1])
    return phi(roots[0])


def bin_masses(p_fn, edges: np.ndarray, per_bin: int = 201) -> np.ndarray:
    """Integral of a density over each bin, by trapezoid on per_bin points."""
    out = []
    for a, b in zip(edges[:-1], edges[1:]):
        t = torch.linspace(float(a), float(b), per_bin, dtype=F64)
        out.append(float(torch.trapezoid(p_fn(t), t)))
    return np.array(out)


# ------------------------------------------------------------------------- closed forms


def test_exp_of_normal_is_lognormal():
    x = torch.linspace(0.05, 5, 2001, dtype=F64)
    p = density_change_of_variables(torch.exp, Normal(0.0, 1.0), x)
    assert p.shape == (2001,) and p.dtype == F64
    assert rel_err(p, stats.lognorm(s=1).pdf(x.numpy())) < 1e-7  # measured 5e-10


@pytest.mark.parametrize("sigma", [0.5, 0.7, 1.0, 2.0])
def test_square_of_normal_is_scaled_chi2_two_pieces(sigma):
    x = torch.linspace(0.05, 5, 2001, dtype=F64)
    p = density_change_of_variables(lambda h: h**2, normal64(0.0, sigma), x)
    assert rel_err(p, stats.chi2(df=1, scale=sigma**2).pdf(x.numpy())) < 1e-7  # measured 2e-11


def test_square_near_and_at_the_turning_point():
    x = torch.tensor([1e-12, 1e-9, 1e-6, 1e-3], dtype=F64)
    p = density_change_of_variables(lambda h: h**2, Normal(0.0, 1.0), x)
    assert rel_err(p, stats.chi2(df=1).pdf(x.numpy())) < 1e-7  # both pieces meet at h = 0
    at = density_change_of_variables(lambda h: h**2, Normal(0.0, 1.0), torch.tensor([0.0, -1.0, 1.0]))
    assert at[0] == float("inf") and at[1] == 0 and torch.isfinite(at[2])
    assert at.dtype == torch.float32  # x's dtype


def test_other_priors_gamma_without_icdf_and_uniform():
    x = torch.linspace(-2, 2, 201, dtype=F64)
    prior = Gamma(torch.tensor(2.0, dtype=F64), torch.tensor(1.0, dtype=F64))  # no icdf: mean -+ 12 std
    p = density_change_of_variables(torch.log, prior, x)
    ex = np.exp(x.numpy())
    assert rel_err(p, stats.gamma(2).pdf(ex) * ex) < 1e-6  # measured 1e-7
    x = torch.linspace(0.05, 5, 201, dtype=F64)
    p = density_change_of_variables(lambda h: -torch.log(h), Uniform(0.0, 1.0), x)
    assert rel_err(p, stats.expon.pdf(x.numpy())) < 1e-6  # exponential; measured 1.3e-7


def test_monotone_examples_integrate_to_one():
    lo, hi = np.exp(-6.0), np.exp(6.0)  # f(h range) for exp
    x = torch.logspace(np.log10(lo), np.log10(hi), 20001, dtype=F64)
    mass = float(torch.trapezoid(density_change_of_variables(torch.exp, Normal(0.0, 1.0), x), x))
    assert abs(mass - 1) < 1e-6
    x = torch.linspace(-12, 14, 20001, dtype=F64)
    p = density_change_of_variables(lambda h: 2 * h + 1, Normal(0.0, 1.0), x)
    assert abs(float(torch.trapezoid(p, x)) - 1) < 1e-6
    assert rel_err(p[5000:15000], stats.norm(1, 2).pdf(x[5000:15000].numpy())) < 1e-9


# ------------------------------------------------------------------------- non-monotone f


def test_cubic_three_pieces_matches_exact_masses_and_monte_carlo():
    # turning points at h = -1, 1 (x = 2, -2): keep the bins away from those singular values
    edges = np.concatenate([np.linspace(-6, -2.2, 8), np.linspace(-1.8, 1.8, 19), np.linspace(2.2, 6, 8)])
    prior = Normal(0.0, 1.0)
    inner = [(a, b) for a, b in zip(edges[:-1], edges[1:]) if not (a < -2 < b or a < 2 < b or b - a > 1)]
    exact = np.array([cubic_cdf(b) - cubic_cdf(a) for a, b in inner])
    got = np.array([bin_masses(lambda t: density_change_of_variables(cubic, prior, t),
                               np.array([a, b]))[0] for a, b in inner])
    assert np.max(np.abs(got / exact - 1)) < 1e-6
    # three pieces between -2 and 2: there the density exceeds the outer branch's alone
    p = density_change_of_variables(cubic, prior, torch.tensor([0.0, 3.0], dtype=F64))
    assert p[0] > 0.16 and p[1] < 0.02
    # Monte Carlo: counts per bin within 5 binomial standard errors
    n = 200_000
    xs = cubic(torch.randn(n, generator=torch.Generator().manual_seed(0), dtype=F64))
    for (a, b), mass in zip(inner, got):
        c = int(((xs >= a) & (xs < b)).sum())
        assert abs(c - n * mass) < 5 * np.sqrt(n * mass * (1 - mass)) + 1


def test_sin_agrees_with_monte_carlo_histogram_and_kde():
    gen = torch.Generator().manual_seed(1)
    n = 200_000
    samples = torch.sin(torch.randn(n, generator=gen, dtype=F64))
    edges, hist = density_histogram(samples, bins=40, range=(-0.9, 0.9))
    centers = (edges[1:] + edges[:-1]) / 2
    masses = bin_masses(lambda t: density_change_of_variables(torch.sin, Normal(0.0, 1.0), t), edges.numpy(), 51)
    se = np.sqrt(masses * (1 - masses) / n) / np.diff(edges.numpy())  # density units
    assert np.all(np.abs(hist.numpy() - masses / np.diff(edges.numpy())) < 5 * se)
    inner = centers[centers.abs() < 0.7]  # the KDE smooths the singularities at -1, 1 away
    kde = density_kde(samples[:20_000], inner)
    cov = density_change_of_variables(torch.sin, Normal(0.0, 1.0), inner)
    assert float((kde - cov).abs().max()) < 0.03  # KDE smoothing bias + noise, density ~0.42


def test_tanh_mlp_change_of_variables_agrees_with_kde():
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(1, 16), nn.Tanh(), nn.Linear(16, 1))  # float32, (N, 1) -> (N, 1)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    prior = Normal(0.0, 1.0)
    gen = torch.Generator().manual_seed(0)
    xs = net(torch.randn(20_000, 1, generator=gen)).detach().reshape(-1).to(F64)
    lo, hi = np.quantile(xs.numpy(), [0.05, 0.95])
    x = torch.linspace(float(lo), float(hi), 60, dtype=F64)
    # this net turns twice (three monotone pieces); the density is singular at the turning values,
    # where a KDE cannot follow: compare away from them
    with torch.no_grad():
        y = copy.deepcopy(net).double()(torch.linspace(-6, 6, 100_001, dtype=F64)[:, None]).reshape(-1)
    turns = y[1:-1][(y[1:-1] - y[:-2]) * (y[2:] - y[1:-1]) <= 0]
    assert turns.numel() == 2
    x = x[(x[:, None] - turns[None, :]).abs().min(1).values > 0.05]
    assert x.numel() > 40
    cov = implicit_density(net, prior, x, method="change_of_variables")
    kde = implicit_density(net, prior, x, method="kde", n_samples=20_000,
                           generator=torch.Generator().manual_seed(1))
    err = (cov - kde).abs() / cov.max()
    assert float(err.max()) < 0.1 and float(err.mean()) < 0.03
    # "auto" is the change of variables for a smooth f, the module is untouched and still float32
    assert torch.equal(implicit_density(net, prior, x), cov)
    assert all(torch.equal(v, before[k]) and v.dtype == torch.float32 for k, v in net.state_dict().items())


def test_float32_callable_falls_back_and_auto_uses_kde_for_a_noisy_f():
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(1, 16), nn.Tanh(), nn.Linear(16, 1))
    x = torch.tensor([0.0, 0.3], dtype=F64)
    closure = lambda h: net(h.reshape(-1, 1))  # noqa: E731  float64 input fails, float32 is used
    ref = implicit_density(net, Normal(0.0, 1.0), x)
    got = implicit_density(closure, Normal(0.0, 1.0), x, n_samples=20_000, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(got, ref, rtol=0.1)  # a float32 grid is too noisy: auto took the KDE

    def noisy(h):
        return h + 0.05 * torch.randn_like(h)

    state = torch.get_rng_state()
    a = implicit_density(noisy, Normal(0.0, 1.0), x, n_samples=5_000, generator=torch.Generator().manual_seed(5))
    torch.set_rng_state(state)
    b = implicit_density(noisy, Normal(0.0, 1.0), x, n_samples=5_000, generator=torch.Generator().manual_seed(5))
    assert torch.allclose(a, b)
    assert torch.allclose(a, torch.as_tensor(stats.norm.pdf(x.numpy())), rtol=0.1)
    with pytest.warns(RuntimeWarning, match="monotone pieces"):
        density_change_of_variables(noisy, Normal(0.0, 1.0), x, n_grid=4_001)


def test_kde_generator_leaves_global_rng_alone():
    state = torch.get_rng_state()
    x = torch.tensor([0.5, 1.0])
    a = implicit_density(torch.exp, Normal(0.0, 1.0), x, method="kde", n_samples=2_000,
                         generator=torch.Generator().manual_seed(7))
    assert torch.equal(torch.get_rng_state(), state)
    b = implicit_density(torch.exp, Normal(0.0, 1.0), x, method="kde", n_samples=2_000,
                         generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b) and a.dtype == torch.float32


# ------------------------------------------------------------------------- KDE and histogram


def test_kde_matches_scipy_gaussian_kde():
    gen = torch.Generator().manual_seed(0)
    s = torch.randn(3_000, generator=gen, dtype=F64) ** 3
    x = torch.linspace(-3, 3, 50, dtype=F64)
    assert rel_err(density_kde(s, x, "scott"), stats.gaussian_kde(s.numpy(), "scott")(x.numpy())) < 1e-10
    ref = stats.gaussian_kde(s.numpy(), 0.2 / s.numpy().std(ddof=1))(x.numpy())  # kernel std 0.2
    assert rel_err(density_kde(s, x, 0.2), ref) < 1e-10
    default = density_kde(s, x)  # Silverman
    assert torch.isfinite(default).all() and float(torch.trapezoid(default, x)) < 1.0
    far = density_kde(s, torch.tensor([1e6], dtype=F64), 0.2)  # underflows to 0, no NaN
    assert far.item() == 0.0


def test_histogram_density_counts_against_all_samples():
    s = torch.tensor([0.1, 0.2, 0.2, 0.9, 5.0], dtype=F64)
    edges, dens = density_histogram(s, bins=2, range=(0.0, 1.0))
    assert torch.allclose(edges, torch.tensor([0.0, 0.5, 1.0], dtype=F64))
    assert torch.allclose(dens, torch.tensor([3 / (5 * 0.5), 1 / (5 * 0.5)], dtype=F64))
    edges, dens = density_histogram(s, bins=7)
    assert float((dens * (edges[1:] - edges[:-1])).sum()) == pytest.approx(1.0)


# ------------------------------------------------------------------------- errors


def one_line(excinfo) -> None:
    assert "\n" not in str(excinfo.value) and str(excinfo.value)


@pytest.mark.parametrize("call, err", [
    (lambda: density_kde(torch.zeros(4, 2), torch.zeros(3)), DataError),
    (lambda: density_kde(torch.randn(4), torch.zeros(0)), DataError),
    (lambda: density_kde(torch.tensor([0.0, float("nan")]), torch.zeros(3)), DataError),
    (lambda: density_kde(torch.ones(5), torch.zeros(3)), DataError),
    (lambda: density_kde(torch.randn(5), torch.zeros(3), bandwidth="scot"), ConfigError),
    (lambda: density_kde(torch.randn(5), torch.zeros(3), bandwidth=-1.0), ConfigError),
    (lambda: density_change_of_variables(torch.exp, Normal(0.0, 1.0), torch.zeros(0)), DataError),
    (lambda: density_change_of_variables(torch.exp, Normal(0.0, 1.0), torch.zeros(2, 2)), DataError),
    (lambda: density_change_of_variables(torch.exp, Normal(0.0, 1.0), torch.tensor([float("inf")])), DataError),
    (lambda: density_change_of_variables(lambda h: torch.stack([h, h], -1), Normal(0.0, 1.0), [1.0]), DataError),
    (lambda: density_change_of_variables(lambda h: h[:3], Normal(0.0, 1.0), [1.0]), DataError),
    (lambda: density_change_of_variables(torch.log, Normal(0.0, 1.0), [1.0]), DataError),
    (lambda: density_change_of_variables(nn.Linear(2, 1), Normal(0.0, 1.0), [1.0]), DataError),
    (lambda: density_change_of_variables(torch.exp, Normal(torch.zeros(2), 1.0), [1.0]), ConfigError),
    (lambda: density_change_of_variables(torch.exp, Independent(Normal(torch.zeros(2), 1.0), 1), [1.0]),
     ConfigError),
    (lambda: density_change_of_variables(torch.exp, "normal", [1.0]), ConfigError),
    (lambda: density_change_of_variables(torch.exp, Normal(0.0, 1.0), [1.0], n_grid=2), ConfigError),
    (lambda: density_change_of_variables(torch.exp, Normal(0.0, 1.0), [1.0], h_range=(1, -1)), ConfigError),
    (lambda: implicit_density(torch.exp, Normal(0.0, 1.0), [1.0], method="kdee"), ConfigError),
    (lambda: implicit_density(torch.exp, Normal(0.0, 1.0), [1.0], method="kde", n_samples=1), ConfigError),
    (lambda: density_histogram(torch.randn(5), bins=0), ConfigError),
])
def test_bad_input_raises_one_line_errors(call, err):
    with pytest.raises(err) as excinfo:
        call()
    one_line(excinfo)


def test_unknown_method_suggests_a_name():
    with pytest.raises(ConfigError, match="did you mean 'kde'"):
        implicit_density(torch.exp, Normal(0.0, 1.0), [1.0], method="kdee")


# ------------------------------------------------------------------------- plot


def test_plot_writes_pngs_atomically(tmp_path):
    from PIL import Image

    gen = torch.Generator().manual_seed(0)
    out = tmp_path / "lognormal.png"
    plot_implicit_density(torch.exp, Normal(0.0, 1.0), out, n_samples=5_000, title="exp(h)",
                          reference=stats.lognorm(s=1).pdf, generator=gen)
    out2 = tmp_path / "chi2.png"  # infinite density at 0 is masked, the axis stays readable
    plot_implicit_density(lambda h: h**2, Normal(0.0, 1.0), out2, n_samples=5_000,
                          reference=lambda t: torch.as_tensor(stats.chi2(1).pdf(t)), generator=gen)
    out3 = tmp_path / "kde.png"
    plot_implicit_density(torch.sin, Normal(0.0, 1.0), out3, n_samples=2_000, method="kde", generator=gen)
    for p in (out, out2, out3):
        with Image.open(p) as im:
            assert im.format == "PNG" and im.size[0] > 300
    assert sorted(q.name for q in tmp_path.iterdir()) == ["chi2.png", "kde.png", "lognormal.png"]


def test_kde_from_a_generator_takes_priors_without_a_closed_form_mean():
    """Forking the prior's device read prior.mean, which a logistic (a transformed distribution) does not have:
    implicit_density with a generator raised NotImplementedError."""
    from torch.distributions import AffineTransform, SigmoidTransform, TransformedDistribution, Uniform

    logistic = TransformedDistribution(Uniform(torch.tensor(0.0), torch.tensor(1.0)),
                                       [SigmoidTransform().inv, AffineTransform(0.0, 1.0)])
    before = torch.get_rng_state()
    p = implicit_density(lambda h: h, logistic, torch.tensor([0.0, 2.0]), method="kde", n_samples=20_000,
                         generator=torch.Generator().manual_seed(0))
    assert torch.equal(torch.get_rng_state(), before)  # the global stream untouched
    exact = torch.exp(logistic.log_prob(torch.tensor([0.0, 2.0])))
    assert torch.allclose(p.float(), exact, rtol=0.1)


# ------------------------------------------------------------------------- heavy-tailed priors


def test_heavy_tailed_priors_with_an_icdf_get_a_grid_that_resolves_them():
    """Audit 94: the default grid spanned a Cauchy's 1e-9 quantiles (-+3.2e8) in 200,001 uniform points, a spacing of
    3,183, and tanh(h) came out as 868 at x = 0 (truth 1/pi); log of a Pareto(1, 1) and of a half-Cauchy were off by
    10^2 to 10^4. The grid is now uniform in the logit of the prior's quantile for such a prior."""
    from torch.distributions import Cauchy, HalfCauchy, Pareto

    x = torch.tensor([-0.9, -0.5, 0.0, 0.5, 0.9], dtype=F64)
    cauchy = Cauchy(0.0, 1.0)
    p = implicit_density(torch.tanh, cauchy, x)
    want = 1 / (np.pi * (1 + np.arctanh(x.numpy()) ** 2) * (1 - x.numpy() ** 2))  # p_h(atanh x) / (1 - x^2)
    assert rel_err(p, want) < 1e-6 and float(p[2]) == pytest.approx(1 / np.pi, rel=1e-6)  # measured 4e-8
    for n_grid in (10_000, 10_001):  # an even grid's points miss the peak at the median: it stayed uniform in h
        p = density_change_of_variables(torch.tanh, cauchy, x, n_grid=n_grid)  # (99.9% off)
        assert rel_err(p, want) < 1e-4, n_grid
    x = torch.tensor([0.1, 1.0, 3.0, 10.0], dtype=F64)
    p = implicit_density(torch.log, Pareto(1.0, 1.0), x)  # log of a Pareto(1, 1) is Exponential(1)
    assert rel_err(p, np.exp(-x.numpy())) < 1e-6  # measured 1e-9
    p = density_change_of_variables(torch.log, HalfCauchy(1.0), x)
    ex = np.exp(x.numpy())
    assert rel_err(p, 2 / (np.pi * (1 + ex**2)) * ex) < 1e-5  # measured 8e-7
    # a range the caller gives is taken as it is: uniform in h
    p = density_change_of_variables(torch.tanh, cauchy, torch.tensor([0.0], dtype=F64), h_range=(-2000, 2000))
    assert float(p[0]) == pytest.approx(1 / np.pi, rel=1e-4)


def test_light_tailed_priors_keep_the_uniform_grid():
    """Normal, Laplace, exponential and uniform priors stay on the uniform h grid: the quantile grid is for a
    prior whose 1e-9 quantiles lie far beyond its body."""
    from torch.distributions import Cauchy, Exponential, Laplace

    from genzoo.eval import implicit

    for prior in (Normal(0.0, 1.0), Laplace(0.0, 1.0), Exponential(1.0), Uniform(0.0, 1.0)):
        g = implicit._grid(torch.exp, prior, None, 1001)
        assert (float(g.h[0]), float(g.h[-1])) == implicit._default_h_range(prior)  # a grid of h itself
    cauchy = Cauchy(0.0, 1.0)
    g = implicit._grid(torch.tanh, cauchy, None, 1001)
    assert float(g.h.abs().max()) == pytest.approx(np.log(1e9), rel=1e-6)  # a grid of t = logit(q)


def test_plot_takes_the_h_range_its_error_asks_for(tmp_path):
    """Audit 94: for a prior without an icdf or a finite std the error says 'pass h_range=(lo, hi)', which
    plot_implicit_density did not take (TypeError)."""
    from PIL import Image
    from torch.distributions import StudentT

    out = tmp_path / "t2.png"
    with pytest.raises(ConfigError, match="pass h_range"):
        plot_implicit_density(torch.tanh, StudentT(2.0), out, n_samples=2_000)
    plot_implicit_density(torch.tanh, StudentT(2.0), out, n_samples=2_000, h_range=(-50, 50), n_grid=20_001,
                          generator=torch.Generator().manual_seed(0))
    with Image.open(out) as im:
        assert im.format == "PNG"
    with pytest.raises(ConfigError, match="n_grid"):
        plot_implicit_density(torch.tanh, StudentT(2.0), out, h_range=(-50, 50), n_grid=2)


# ------------------------------------------------------------------------- audit 120


def _no_warning(fn):
    """fn() with every warning raised as an error."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return fn()


def test_priors_without_an_icdf_singular_at_a_bound_get_a_grid_from_a_numerical_cdf():
    """Audit 120: a prior without an icdf kept the uniform grid on mean -+ 12 std although one cell held too much
    of its mass: sqrt(h), h ~ Chi2(1), the half-normal, was 50% off at x = 0.001, 28% at 0.01, and log(h),
    h ~ Gamma(0.1), 538% at x = -10; silently."""
    from torch.distributions import Beta, Chi2

    x = torch.tensor([0.001, 0.005, 0.01, 0.03, 0.5, 1.0, 3.0], dtype=F64)
    p = _no_warning(lambda: implicit_density(torch.sqrt, Chi2(torch.tensor(1.0, dtype=F64)), x))
    assert rel_err(p, 2 * stats.norm.pdf(x.numpy())) < 1e-6  # measured 1.5e-9
    x = torch.linspace(-60, 2, 311, dtype=F64)
    p = _no_warning(lambda: implicit_density(torch.log, Gamma(torch.tensor(0.1, dtype=F64), 1.0), x))
    assert rel_err(p, stats.gamma(0.1).pdf(np.exp(x.numpy())) * np.exp(x.numpy())) < 1e-6  # measured 1e-11
    x = torch.tensor([1e-4, 1e-3, 0.01, 0.5, 0.99], dtype=F64)
    p = _no_warning(lambda: implicit_density(torch.sqrt, Beta(torch.tensor(0.5, dtype=F64), 0.5), x))
    assert rel_err(p, stats.beta(0.5, 0.5).pdf(x.numpy() ** 2) * 2 * x.numpy()) < 1e-6  # measured 4e-9


def test_heavy_tails_without_an_icdf_are_not_cut_at_12_std():
    """Audit 120: mass beyond mean -+ 12 std was dropped: atan of a StudentT(2.5) was 0 at x = 1.55 (truth 0.0054),
    log of an InverseGamma(2.5, 1) 0 at x = 3, log of a FisherSnedecor(4, 5) 0 at x = 4."""
    from torch.distributions import FisherSnedecor, InverseGamma, StudentT

    x = torch.tensor([0.0, 1.0, 1.54, 1.55, 1.565], dtype=F64)
    t = np.tan(x.numpy())
    p = _no_warning(lambda: implicit_density(torch.atan, StudentT(torch.tensor(2.5, dtype=F64)), x))
    assert rel_err(p, stats.t(2.5).pdf(t) * (1 + t**2)) < 1e-6  # measured 8e-10
    x = torch.tensor([-2.0, 0.0, 2.6, 3.0, 4.0], dtype=F64)
    e = np.exp(x.numpy())
    p = _no_warning(lambda: implicit_density(torch.log, InverseGamma(torch.tensor(2.5, dtype=F64), 1.0), x))
    assert rel_err(p, stats.invgamma(2.5).pdf(e) * e) < 1e-6  # measured 7e-12
    p = _no_warning(lambda: implicit_density(torch.log, FisherSnedecor(torch.tensor(4.0, dtype=F64), 5.0), x))
    assert rel_err(p, stats.f(4, 5).pdf(e) * e) < 1e-6  # measured 6e-12


def test_a_prior_no_default_grid_resolves_is_warned_of():
    """Beta(0.05, 0.05) piles 7% of its mass closer to 1 than float64 resolves; a VonMises's log_prob is periodic on
    the real line (its support): no grid holds either's mass, and a GenZooWarning says so."""
    from torch.distributions import Beta, VonMises

    from genzoo.errors import GenZooWarning

    beta = r"does not resolve Beta \(the grid holds 0\.\d+ of its mass\).* pass h_range"
    with pytest.warns(GenZooWarning, match=beta):
        implicit_density(lambda h: h, Beta(torch.tensor(0.05, dtype=F64), 0.05), torch.tensor([0.5], dtype=F64))
    with pytest.warns(GenZooWarning, match="does not resolve VonMises"):
        implicit_density(torch.sin, VonMises(torch.tensor(0.0, dtype=F64), 1.0), torch.tensor([0.5], dtype=F64))
    p = _no_warning(lambda: implicit_density(torch.sin, VonMises(torch.tensor(0.0, dtype=F64), 1.0),
                                             torch.tensor([0.5], dtype=F64), h_range=(-np.pi, np.pi)))
    assert float(p[0]) > 0  # a range the caller gives is taken as it is


def test_priors_with_an_icdf_give_the_results_they_gave():
    """The icdf path is unchanged by audit 120's grid for priors without one: the values of the code before it."""
    from torch.distributions import Cauchy

    x = torch.tensor([-0.9, -0.3, 0.0, 0.2, 0.7], dtype=F64)
    before = {
        "tanh_cauchy": ["0x1.0ece84d8a419ep-1", "0x1.46defcc8f3c2dp-2", "0x1.45f306dcab0d4p-2",
                        "0x1.462067d42e7f5p-2", "0x1.6cbfa825de136p-2"],
        "exp_normal": ["0x1.20592db0a3808p-2", "0x1.41472a71096f8p-1", "0x1.9884533d50823p-2",
                       "0x1.41472a710b172p-3", "0x1.1933e62ced729p-7"],
        "cubic_normal": ["0x1.0b519edfb2cb2p-5", "0x1.2bb01f06e4d1cp-1", "0x1.760d6348b1638p-2",
                         "0x1.a3b6ac38782e7p-2", "0x1.9dd411cf0e473p-5"],
    }
    got = {
        "tanh_cauchy": implicit_density(torch.tanh, Cauchy(0.0, 1.0), x),
        "exp_normal": implicit_density(torch.exp, Normal(0.0, 1.0), torch.tensor([0.1, 0.5, 1.0, 2.0, 7.0], dtype=F64)),
        "cubic_normal": implicit_density(lambda h: h**3 - h, Normal(0.5, 2.0), x),
    }
    for k, v in got.items():
        want = torch.tensor([float.fromhex(b) for b in before[k]], dtype=F64)
        # 1e-10: erfinv's and exp's last bits differ between CPUs (4e-12 on an AVX512 Xeon against the AMD EPYC that
        # wrote these), where the method itself is 4e-10 from the true log-normal density
        torch.testing.assert_close(v, want, rtol=1e-10, atol=0, msg=k)


def _bn_net(dtype):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(1, 16), nn.BatchNorm1d(16), nn.Tanh(), nn.Linear(16, 1)).to(dtype)
    with torch.no_grad():  # running statistics of its own, far from the grid's
        net(2 + 3 * torch.randn(4096, 1, dtype=dtype))
    return net.train()


@pytest.mark.parametrize("dtype", [F64, torch.float32])
def test_a_module_is_evaluated_in_eval_mode_and_left_as_it_was(dtype):
    """Audit 120: a module was called in whatever mode it was in. A train-mode batch norm normalised each chunk of
    grid points by the chunk's own statistics (another function: 0.45 against 0 at x = -1), and a float64 one had
    its running statistics overwritten by the grid's."""
    net = _bn_net(dtype)
    state = copy.deepcopy(net.state_dict())
    x = torch.linspace(-1, 1, 9, dtype=F64)
    p = implicit_density(net, Normal(0.0, 1.0), x, n_grid=20_001)
    kde = implicit_density(net, Normal(0.0, 1.0), x, method="kde", n_samples=2_000,
                           generator=torch.Generator().manual_seed(0))
    assert all(m.training for m in net.modules())  # its mode back
    assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())  # its buffers untouched
    evaluated = copy.deepcopy(net).eval()
    assert torch.equal(p, implicit_density(evaluated, Normal(0.0, 1.0), x, n_grid=20_001))  # the eval-mode density
    assert torch.equal(kde, implicit_density(evaluated, Normal(0.0, 1.0), x, method="kde", n_samples=2_000,
                                             generator=torch.Generator().manual_seed(0)))


def test_flat_pieces_of_f_are_warned_of_with_their_point_mass():
    """Audit 120: relu and clamp are constant on intervals of h; their point masses (0.5 at x = 0; 0.159 at each of
    -1 and 1) were dropped with no word. The density is of x's continuous part, and a GenZooWarning gives the mass
    left out."""
    from genzoo.errors import GenZooWarning

    x = torch.linspace(-3, 6, 9001, dtype=F64)
    with pytest.warns(GenZooWarning, match=r"f is constant on h in \[-5\.99\d*, 0\]: x = 0 has probability 0\.5,"):
        p = implicit_density(torch.relu, Normal(0.0, 1.0), x)
    assert float(torch.trapezoid(p, x)) == pytest.approx(0.5, abs=1e-3)  # the continuous part
    with pytest.warns(GenZooWarning, match=r"x = -?1 has probability 0\.159.*2 flat runs leave out 0\.317 in all"):
        density_change_of_variables(lambda h: h.clamp(-1, 1), Normal(0.0, 1.0), x)
    _no_warning(lambda: implicit_density(torch.exp, Normal(0.0, 1.0), torch.tensor([1.0], dtype=F64)))
