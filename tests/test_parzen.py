"""Parzen-window estimates: exact on closed forms, the right sigma on data from a known Parzen model."""

import math

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import logsumexp

from genzoo.errors import DataError
from genzoo.eval.parzen import SIGMAS, parzen_log_prob, parzen_protocol, select_sigma


def test_one_kernel_is_an_isotropic_gaussian():
    g = torch.Generator().manual_seed(0)
    mu, x = torch.randn(1, 5, generator=g), torch.randn(50, 5, generator=g)
    for sigma in (0.1, 0.7, 3.0):
        ref = stats.multivariate_normal(mu[0].numpy(), sigma**2 * np.eye(5)).logpdf(x.numpy())
        np.testing.assert_allclose(parzen_log_prob(x, mu, sigma).numpy(), ref, rtol=1e-6, atol=1e-5)


def test_two_kernels_are_an_equal_mixture():
    a, b, sigma = np.array([0.0, 0.0, 1.0]), np.array([2.0, -1.0, 0.5]), 0.8
    x = torch.randn(40, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ref = np.logaddexp(stats.multivariate_normal(a, sigma**2 * np.eye(3)).logpdf(x.numpy()),
                       stats.multivariate_normal(b, sigma**2 * np.eye(3)).logpdf(x.numpy())) - math.log(2)
    got = parzen_log_prob(x, torch.tensor(np.stack([a, b])), sigma)
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-6, atol=1e-5)


def test_blocks_and_sigma_grid_match_a_direct_computation():
    g = torch.Generator().manual_seed(2)
    samples, x = torch.rand(300, 4, 4, generator=g), torch.rand(70, 4, 4, generator=g)  # images are flattened
    d2 = ((x.reshape(70, 1, 16).double() - samples.reshape(1, 300, 16).double()) ** 2).sum(-1).numpy()  # (70, 300)
    got = parzen_log_prob(x, samples, SIGMAS, batch_size=16)  # (10, 70), blocks of 16 points
    assert got.shape == (10, 70) and got.dtype == torch.float64
    for k, s in enumerate(SIGMAS.tolist()):
        ref = logsumexp(-d2 / (2 * s * s), axis=1) - math.log(300) - 16 * math.log(s * math.sqrt(2 * math.pi))
        np.testing.assert_allclose(got[k].numpy(), ref, rtol=1e-6, atol=1e-4)


@pytest.mark.parametrize("true_index", [2, 5, 8])
def test_sigma_selection_recovers_the_sigma_of_a_known_parzen_model(true_index):
    g = torch.Generator().manual_seed(true_index)
    centres = torch.rand(500, 10, generator=g) * 4  # (S, D): the model's samples
    sigma = float(SIGMAS[true_index])
    pick = torch.randint(0, 500, (3000,), generator=g)
    valid = centres[pick] + sigma * torch.randn(3000, 10, generator=g)  # drawn from the Parzen model itself
    chosen, means = select_sigma(centres, valid)
    assert chosen == pytest.approx(sigma)
    assert int(means.argmax()) == true_index and means.shape == (10,)


def test_protocol_uses_the_first_validation_points_and_scores_the_test_set():
    """Three sets of other spreads, so that each picks another sigma: the first 1,000 validation points (0.22),
    all 1,500 of them (1.0) and the test set (1.0). Sets from one distribution let a window chosen on the test set,
    Goodfellow et al.'s leak, or on every validation point through (audit 134)."""
    g = torch.Generator().manual_seed(3)
    samples = torch.randn(800, 3, generator=g)
    valid = torch.cat([0.5 * torch.randn(1000, 3, generator=g), 4 * torch.randn(500, 3, generator=g)])
    test = 2 * torch.randn(400, 3, generator=g)
    out = parzen_protocol(samples, valid, test, n_valid=1000, progress=False)
    sigma, _ = select_sigma(samples, valid[:1000])
    assert sigma == pytest.approx(float(SIGMAS[3])) and select_sigma(samples, valid)[0] == select_sigma(samples, test)[0] == 1.0
    assert out["sigma"] == sigma and out["n_test"] == 400 and out["n_samples"] == 800
    lp = parzen_log_prob(test, samples, sigma)
    assert out["ll"] == pytest.approx(float(lp.mean()))
    assert out["stderr"] == pytest.approx(float(lp.std() / 20.0))
    assert len(out["valid_ll"]) == 10 and not out["sigma_at_edge"]


def test_too_narrow_a_grid_is_flagged():
    g = torch.Generator().manual_seed(4)
    samples, valid = torch.randn(500, 2, generator=g) * 10, torch.randn(300, 2, generator=g) * 10
    out = parzen_protocol(samples, valid, valid, progress=False)  # the best width is above the grid's 1.0
    assert out["sigma"] == pytest.approx(1.0) and out["sigma_at_edge"]


def test_bad_inputs_give_one_line_errors():
    with pytest.raises(DataError, match="dimensions"):
        parzen_log_prob(torch.zeros(3, 4), torch.zeros(5, 3), 0.5)
    for sigma in (0.0, float("inf"), float("nan"), torch.tensor([]), torch.tensor([0.1, -1.0])):
        with pytest.raises(DataError, match="finite sigmas > 0"):
            parzen_log_prob(torch.zeros(3, 4), torch.zeros(5, 4), sigma)
    with pytest.raises(DataError, match="finite sigmas > 0"):
        parzen_protocol(torch.zeros(5, 4), torch.zeros(3, 4), torch.zeros(3, 4), sigmas=[], progress=False)
    with pytest.raises(DataError, match="batch_size"):
        parzen_log_prob(torch.zeros(3, 4), torch.zeros(5, 4), 0.5, batch_size=0)
    with pytest.raises(DataError, match="NaN"):
        parzen_log_prob(torch.zeros(3, 4), torch.full((5, 4), float("nan")), 0.5)
    with pytest.raises(DataError, match="shape"):
        parzen_log_prob(torch.zeros(3, 4), torch.zeros(0, 4), 0.5)


def test_parzen_keeps_its_digits_for_data_far_from_the_origin():
    """Points and samples near (1000, ..., 1000) with sigma 0.01: the float32 expansion |x|^2 + |mu|^2 - 2 x.mu
    would lose every digit of |x - mu|^2; centring first keeps the float64 reference to 1e-5."""
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(300, 5, generator=g, dtype=torch.float64) * 0.01 + 1000
    x = torch.randn(40, 5, generator=g, dtype=torch.float64) * 0.01 + 1000
    s = 0.01
    d2 = ((x[:, None] - mu[None]) ** 2).sum(-1)  # (40, 300)
    ref = torch.logsumexp(-d2 / (2 * s * s), 1) - math.log(300) - 5 * math.log(s * math.sqrt(2 * math.pi))
    assert torch.allclose(parzen_log_prob(x, mu, s), ref, atol=1e-5, rtol=0)


def test_a_sigma_whose_square_underflows_is_refused_and_a_nan_mean_never_wins():
    """sigma 1e-200: sigma^2 was 0, the kernel 0/0, and argmax chose the NaN sigma ('nan +- nan', exit 0)."""
    from genzoo.eval.parzen import check_sigmas

    with pytest.raises(DataError, match="at least 1e-150"):
        check_sigmas([1e-200, 1e-100])
    with pytest.raises(DataError, match=r"^Parzen sigmas must be at most 1e150 \(sigma\^2 is taken\), got 1e\+155$"):
        parzen_log_prob(torch.rand(5, 3), torch.rand(7, 3), 1e155)  # (was a bare OverflowError from sigma^2)
    assert torch.isfinite(parzen_log_prob(torch.rand(5, 3), torch.rand(7, 3), [1e-150, 1e150])).all()
    with pytest.raises(DataError, match="at most 1e150"):
        check_sigmas([9e152])  # (the bound is the one the message says, not where sigma^2 * 200 overflows)
    samples, valid = torch.randn(50, 2), torch.randn(20, 2)
    sigma, means = select_sigma(samples, valid, torch.tensor([0.5, 1.0]))
    assert sigma in (0.5, 1.0)
    import genzoo.eval.parzen as parzen

    real = parzen.parzen_log_prob
    try:
        parzen.parzen_log_prob = lambda *a, **k: torch.tensor([[float("nan")] * 20, [-3.0] * 20])
        assert select_sigma(samples, valid, torch.tensor([0.5, 1.0]))[0] == 1.0
    finally:
        parzen.parzen_log_prob = real


def test_parzen_keeps_its_digits_for_data_spread_over_many_window_widths():
    """A ring of radius 1e4 with modes of std 1: float32's |x|^2 + |mu|^2 - 2 x.mu rounded distances of several
    units to 0, and the estimate rose as sigma fell (+0.27 nats at sigma 0.1 where the truth is -6.4)."""
    g = torch.Generator().manual_seed(0)
    angle = torch.randint(0, 8, (2000,), generator=g) * (math.pi / 4)
    pts = 1e4 * torch.stack([angle.cos(), angle.sin()], 1) + torch.randn(2000, 2, generator=g)  # (2000, 2)
    mu, x = pts[:1500], pts[1500:]
    sig = torch.tensor([0.1, 0.5])
    got = parzen_log_prob(x, mu, sig)  # (2, 500)
    d2 = torch.cdist(x.double(), mu.double()).square()  # (500, 1500) float64, directly
    want = torch.stack([torch.logsumexp(-d2 / (2 * s * s), 1) - 2 * math.log(s * math.sqrt(2 * math.pi))
                        - math.log(1500) for s in sig.tolist()])
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_a_list_or_array_of_sigmas_gives_one_row_each_and_one_sigma_one_row():
    """Audit 94: a list or NumPy array of sigmas returned the first sigma's (N,) scores and dropped the rest; a 0-d
    tensor gave (1, N)."""
    g = torch.Generator().manual_seed(5)
    x, mu = torch.rand(4, 3, generator=g), torch.rand(50, 3, generator=g)
    grid = parzen_log_prob(x, mu, torch.tensor([0.1, 0.5], dtype=torch.float64))  # (2, 4)
    for many in ([0.1, 0.5], (0.1, 0.5), np.array([0.1, 0.5])):
        assert torch.equal(parzen_log_prob(x, mu, many), grid)
    for one in (0.5, np.float64(0.5), np.float32(0.5), torch.tensor(0.5, dtype=torch.float64), np.array(0.5)):
        assert torch.equal(parzen_log_prob(x, mu, one), grid[1])  # (N,)
    assert parzen_log_prob(x, mu, [0.5]).shape == (1, 4)  # a sequence of one: one row


def test_a_callers_bf16_autocast_does_not_reach_the_distances():
    """Audit 94: inside torch.autocast('cpu', bfloat16) the distance product ran in bf16, 0.87 nats off on
    MNIST-sized points at sigma 0.2."""
    g = torch.Generator().manual_seed(6)
    mu, x = torch.rand(2000, 784, generator=g), torch.rand(20, 784, generator=g)
    x = mu[:20] + 0.2 * torch.randn(20, 784, generator=g)  # near the samples: the kernel sum is not one term's tail
    plain = parzen_log_prob(x, mu, 0.2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = parzen_log_prob(x, mu, 0.2)
    assert float((mixed - plain).abs().max()) < 1e-3


def test_valid_ll_keeps_every_sigma_and_n_valid_is_checked():
    """Audit 94: keys of 4 significant digits merged 0.1, 0.10001 and 0.100012 into one entry of eval.json; n_valid 0
    said 'points must have N >= 1' and a negative one sliced from the end."""
    g = torch.Generator().manual_seed(7)
    mu, v = torch.randn(200, 2, generator=g), torch.randn(50, 2, generator=g)
    out = parzen_protocol(mu, v, v, sigmas=[0.1, 0.10001, 0.100012], progress=False)
    assert list(out["valid_ll"]) == ["0.1", "0.10001", "0.100012"]
    keys = parzen_protocol(mu, v, v, progress=False)["valid_ll"]  # the default grid: logspace(-1, 0, 10)
    assert [float(k) for k in keys] == SIGMAS.tolist() and list(keys)[0] == "0.1" and list(keys)[-1] == "1.0"
    assert parzen_protocol(mu, v, v, n_valid=50, progress=False)["valid_ll"] == keys  # all 50: the default here
    for bad in (0, -10, 51, 2.5, True):
        with pytest.raises(DataError, match="n_valid must be a whole number from 1 to the 50 validation points"):
            parzen_protocol(mu, v, v, n_valid=bad, progress=False)


def test_the_kernel_sums_stay_in_float32_and_within_1e_3_nats_of_float64(mnist_root):
    """Audit a100: each (points x kernels) block went to float64 for the log-sum-exp, for 2e-7 nats: the call took
    1.9x as long as it does in float32. MNIST test digits against training digits, at sigma 0.2 and on the grid: no float64 block, and
    the means within 1e-3 nats of float64 distances and log-sum-exp (each point within 2e-3)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from genzoo.data import load_dataset

    mu = load_dataset("mnist", "train", root=mnist_root, n=2000).x.flatten(1)  # (2000, 784)
    x = load_dataset("mnist", "test", root=mnist_root, n=300).x.flatten(1)  # (300, 784)
    blocks = set()

    class Blocks(TorchDispatchMode):  # the dtypes of every (B, S) tensor made
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if isinstance(out, torch.Tensor) and tuple(out.shape) == (100, 2000):
                blocks.add(out.dtype)
            return out

    with Blocks():
        got = parzen_log_prob(x, mu, 0.2, batch_size=100)  # (300,)
    assert blocks == {torch.float32} and got.dtype == torch.float64
    grid = parzen_log_prob(x, mu, SIGMAS, batch_size=100)  # (10, 300)
    d2 = torch.cdist(x.double(), mu.double()).square()  # (300, 2000) float64, directly
    for k, s in enumerate(SIGMAS.tolist()):
        want = torch.logsumexp(-d2 / (2 * s * s), 1) - math.log(2000) - 784 * math.log(s * math.sqrt(2 * math.pi))
        assert abs(float(grid[k].mean() - want.mean())) < 1e-3 and float((grid[k] - want).abs().max()) < 2e-3
    one = torch.logsumexp(-d2 / 0.08, 1) - math.log(2000) - 784 * math.log(0.2 * math.sqrt(2 * math.pi))
    assert abs(float(got.mean() - one.mean())) < 1e-3 and float((got - one).abs().max()) < 2e-3


def test_a_sigma_beyond_float32s_range_still_gives_the_kernels_density():
    """The float32 log-sum-exp scales by 1 / (2 sigma^2), which is inf in float32 for sigma under 4e-20: the nearest
    kernel's 0 * inf would be a NaN. Such a sigma takes float64 for that scaling. (Only points and samples all at one
    place keep such a sigma in float32 distances at all: any spread sends the block to float64.)"""
    mu = torch.ones(3, 2)  # three kernels at (1, 1), and the points on them
    for s in (1e-10, 1e-25, 1e-100):
        want = -2 * math.log(s * math.sqrt(2 * math.pi))
        torch.testing.assert_close(parzen_log_prob(mu[:2], mu, s), torch.full((2,), want, dtype=torch.float64))


def test_the_float64_path_keeps_its_digits_for_a_sigma_far_below_the_datas_spread():
    """Audit 120: the float64 fallback had no accuracy check of its own. Its |x|^2 + |mu|^2 - 2 x.mu cancels as
    float32's does, at eps 2e-16: with sigma 1e-7 on data in [0, 1] (D = 784) the estimate was 11 nats off (1e-6:
    0.1). The near kernels' distances are now computed directly."""
    g = torch.Generator().manual_seed(0)
    mu = torch.rand(200, 784, generator=g, dtype=torch.float64)  # (200, 784)
    for sigma in (1e-6, 1e-7, 1e-8):
        x = mu[:50] + sigma * torch.randn(50, 784, generator=g, dtype=torch.float64)  # (50, 784)
        got = parzen_log_prob(x, mu, [sigma, 0.2])  # (2, 50): one sigma the product cannot resolve, one it can
        d2 = torch.stack([(x - m).square().sum(1) for m in mu], 1)  # (50, 200) float64, directly
        want = torch.stack([torch.logsumexp(-d2 / (2 * s * s), 1) - 784 * math.log(s * math.sqrt(2 * math.pi))
                            - math.log(200) for s in (sigma, 0.2)])  # (2, 50)
        torch.testing.assert_close(got, want, rtol=0, atol=0.01, msg=f"sigma {sigma}")
