"""Tests of the Gaussian mixture (genzoo/models/gmm.py): EM, scikit-learn agreement, density."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from safetensors.torch import load_file, save_file

import genzoo
from genzoo.base import Batch, Density
from genzoo.errors import ConfigError, DataError
from genzoo.models.gmm import GaussianMixture

sklearn_mixture = pytest.importorskip("sklearn.mixture")


pytestmark = pytest.mark.usefixtures("one_thread")


def mixture_data(n: int, dim: int, k: int, seed: int, spread: float = 4.0) -> np.ndarray:
    """n points from a random k-component full-covariance mixture in ``dim`` dimensions."""
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=spread, size=(k, dim))
    weights = rng.dirichlet(np.full(k, 5.0))
    comp = rng.choice(k, size=n, p=weights)
    a = rng.normal(scale=0.6, size=(k, dim, dim)) + np.eye(dim)  # (k, D, D) covariance factors
    eps = rng.standard_normal((n, dim))
    return means[comp] + np.einsum("nij,nj->ni", a[comp], eps)


def fitted(x: np.ndarray, steps: int, seed: int = 0, **kw) -> tuple[GaussianMixture, list[float]]:
    xt = torch.as_tensor(x)
    model = GaussianMixture(data_shape=tuple(x.shape[1:]), **kw)
    model.setup(xt, torch.Generator().manual_seed(seed))
    lls = [model.training_step(Batch(xt), [])["log_likelihood"] for _ in range(steps)]
    return model, lls


def sklearn_with_params(model: GaussianMixture, **kw):
    """A scikit-learn GaussianMixture holding ``model``'s parameters (no fitting)."""
    sk = sklearn_mixture.GaussianMixture(model.n_components, covariance_type=model.covariance_type, **kw)
    sk.weights_ = model.weights.double().numpy()
    sk.means_ = model.means.double().numpy()
    sk.covariances_ = model.covariances.double().numpy()
    sk.precisions_cholesky_ = model.precisions_cholesky.double().numpy()
    sk.precisions_ = model.precisions.double().numpy()
    sk.n_features_in_ = model.dim
    sk.converged_, sk.n_iter_, sk.lower_bound_ = True, 0, 0.0
    return sk


# 1. EM never decreases the training log-likelihood (away from the reg_covar floor, which can lower it) ---
@pytest.mark.parametrize("dtype,tol", [("float64", 1e-6), ("float32", 1e-4)])
@pytest.mark.parametrize("covariance", ["full", "diag"])
@pytest.mark.parametrize("dim,init", [(2, "kmeans++"), (5, "kmeans++"), (5, "random")])
def test_em_is_monotone(dim, init, covariance, dtype, tol):
    x = mixture_data(1500, dim, k=4, seed=dim)
    _, lls = fitted(x, 30, n_components=5, covariance=covariance, dtype=dtype, init=init, chunk_size=512)
    assert all(math.isfinite(v) for v in lls)
    diffs = np.diff(lls)
    assert diffs.min() >= -tol, f"log-likelihood decreased by {-diffs.min():g} at iteration {diffs.argmin() + 1}"
    assert lls[-1] > lls[0] + 1e-3  # and it actually improved on the k-means start


# 2. Same trajectory as scikit-learn from the same initial parameters --------------------------
@pytest.mark.parametrize("dtype,mean_tol", [("float64", 1e-6), ("float32", 1e-4)])
@pytest.mark.parametrize("covariance", ["full", "diag"])
def test_matches_sklearn_from_same_init(covariance, dtype, mean_tol):
    x = mixture_data(2000, 5, k=4, seed=11)
    xt = torch.as_tensor(x)
    model = GaussianMixture(data_shape=(5,), n_components=4, covariance=covariance, dtype=dtype, reg_covar=1e-4)
    model.setup(xt, torch.Generator().manual_seed(3))
    w0 = model.weights.double().numpy()
    sk = sklearn_mixture.GaussianMixture(
        4, covariance_type=covariance, reg_covar=1e-4, tol=0.0, max_iter=25, n_init=1,
        weights_init=w0 / w0.sum(), means_init=model.means.double().numpy(),
        precisions_init=model.precisions.double().numpy())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: we stop at max_iter on purpose
        sk.fit(x)
    for _ in range(25):
        model.training_step(Batch(xt), [])
    ours = float(model.log_prob(xt).double().mean())
    assert abs(ours - sk.score(x)) < 1e-3
    np.testing.assert_allclose(model.means.double().numpy(), sk.means_, atol=mean_tol)
    np.testing.assert_allclose(model.weights.double().numpy(), sk.weights_, atol=mean_tol)
    np.testing.assert_allclose(model.covariances.double().numpy(), sk.covariances_, atol=10 * mean_tol)


def test_chunking_does_not_change_the_result():
    x = torch.as_tensor(mixture_data(1000, 3, k=3, seed=5))
    a = GaussianMixture(data_shape=(3,), n_components=3, dtype="float64", chunk_size=4096)
    b = GaussianMixture(data_shape=(3,), n_components=3, dtype="float64", chunk_size=97)
    a.setup(x, torch.Generator().manual_seed(1))
    b.setup(x, torch.Generator().manual_seed(1))
    for _ in range(3):
        la, lb = a.training_step(Batch(x), []), b.training_step(Batch(x), [])
        assert la["loss"] == pytest.approx(lb["loss"], abs=1e-10)
    for name, t in a.state_dict().items():
        torch.testing.assert_close(t, b.state_dict()[name], rtol=1e-9, atol=1e-9)


# 3. Recovers the means of a known, well-separated mixture -------------------------------------
@pytest.mark.parametrize("covariance", ["full", "diag"])
def test_recovers_known_means(covariance):
    rng = np.random.default_rng(2)
    true_means = np.array([[-5.0, 0.0], [5.0, 1.0], [0.0, 7.0]])
    covs = np.array([[[0.10, 0.05], [0.05, 0.20]], [[0.15, -0.06], [-0.06, 0.10]], [[0.20, 0.0], [0.0, 0.08]]])
    comp = rng.choice(3, size=3000, p=[0.3, 0.3, 0.4])
    x = true_means[comp] + np.einsum("nij,nj->ni", np.linalg.cholesky(covs)[comp], rng.standard_normal((3000, 2)))
    model, _ = fitted(x.astype(np.float32), 30, n_components=3, covariance=covariance)
    got = model.means.double().numpy()
    dist = np.linalg.norm(true_means[:, None] - got[None], axis=-1)  # (true, fitted)
    assert sorted(dist.argmin(1).tolist()) == [0, 1, 2]  # a one-to-one match
    assert dist.min(1).max() < 0.05
    np.testing.assert_allclose(np.sort(model.weights.numpy()), [0.3, 0.3, 0.4], atol=0.03)


# 4. Density, sampling, responsibilities, BIC --------------------------------------------------
@pytest.mark.parametrize("covariance", ["full", "diag"])
def test_log_prob_matches_scipy(covariance):
    x = mixture_data(600, 4, k=3, seed=8)
    model, _ = fitted(x, 5, n_components=3, covariance=covariance, dtype="float64")
    pts = x[:10] + 0.5
    w, mu, cov = model.weights.numpy(), model.means.numpy(), model.covariances.numpy()
    if covariance == "diag":
        cov = np.stack([np.diag(c) for c in cov])
    ref = logsumexp([np.log(w[k]) + multivariate_normal(mu[k], cov[k]).logpdf(pts) for k in range(3)], axis=0)
    np.testing.assert_allclose(model.log_prob(torch.as_tensor(pts)).numpy(), ref, rtol=1e-10, atol=1e-10)
    # the torch.distributions view agrees as well
    torch.testing.assert_close(model.distribution().log_prob(torch.as_tensor(pts)), model.log_prob(torch.as_tensor(pts)))
    # and so does a float32 copy of the same parameters
    m32 = GaussianMixture(**{**model.config, "dtype": "float32"})
    m32.load_state_dict({k: v.float() for k, v in model.state_dict().items()})
    np.testing.assert_allclose(m32.log_prob(torch.as_tensor(pts)).double().numpy(), ref, rtol=0, atol=1e-4)


@pytest.mark.parametrize("covariance", ["full", "diag"])
def test_samples_follow_the_density(covariance):
    x = mixture_data(1500, 2, k=3, seed=21)
    model, _ = fitted(x, 10, n_components=3, covariance=covariance, dtype="float64")
    n = 100_000
    s = model.sample(n, generator=torch.Generator().manual_seed(0))  # (n, 2)
    assert s.shape == (n, 2) and torch.isfinite(s).all()
    w, mu = model.weights, model.means
    cov = model.covariances if covariance == "full" else torch.diag_embed(model.covariances)
    mean = w @ mu  # (D,)
    second = (w[:, None, None] * (cov + mu[:, :, None] * mu[:, None, :])).sum(0)  # (D, D)
    scale = float(torch.linalg.matrix_norm(second - torch.outer(mean, mean), ord=2))
    torch.testing.assert_close(s.mean(0), mean, atol=0.02 * math.sqrt(scale), rtol=0)
    torch.testing.assert_close(torch.cov(s.T), second - torch.outer(mean, mean), atol=0.03 * scale, rtol=0)
    # Monte Carlo cross-entropy: our samples vs torch.distributions' samples, under log_prob
    torch.manual_seed(0)
    ref = model.distribution().sample((n,))  # (n, 2)
    h_ours, h_ref = -model.log_prob(s).mean(), -model.log_prob(ref).mean()
    assert abs(float(h_ours - h_ref)) < 0.03


@pytest.mark.parametrize("covariance", ["full", "diag"])
def test_responsibilities_and_bic(covariance):
    x = mixture_data(800, 3, k=3, seed=4)
    model, _ = fitted(x, 8, n_components=4, covariance=covariance, dtype="float64")
    xt = torch.as_tensor(x)
    r = model.responsibilities(xt)
    assert r.shape == (800, 4) and (r >= 0).all()
    torch.testing.assert_close(r.sum(1), torch.ones(800, dtype=torch.float64))
    sk = sklearn_with_params(model)
    np.testing.assert_allclose(r.numpy(), sk.predict_proba(x), atol=1e-8)
    assert model.bic(xt) == pytest.approx(sk.bic(x), rel=1e-3)
    assert model.n_parameters == sk._n_parameters()
    assert float(model.loss(xt)["loss"]) == pytest.approx(-sk.score(x), abs=1e-8)


# 5. Flattened images with constant pixels ------------------------------------------------------
@pytest.mark.parametrize("covariance", ["full", "diag"])
def test_images_with_constant_pixels(covariance):
    g = torch.Generator().manual_seed(0)
    protos = (torch.rand(3, 1, 8, 8, generator=g) > 0.5).float()
    x = protos[torch.randint(3, (400,), generator=g)] + 0.05 * torch.randn(400, 1, 8, 8, generator=g)
    x[:, :, 0, :] = 0.0  # a constant border row
    x[:, :, :, 0] = 1.0  # and a constant column
    model = GaussianMixture(data_shape=(1, 8, 8), n_components=4, covariance=covariance)
    model.setup(x, g)
    logs = [model.training_step(Batch(x), []) for _ in range(5)]
    assert all(math.isfinite(v["loss"]) for v in logs)
    s = model.sample(16, generator=g)
    assert s.shape == (16, 1, 8, 8) and torch.isfinite(s).all()
    assert torch.isfinite(model.log_prob(x)).all() and torch.isfinite(model.log_prob(s)).all()
    assert model.log_prob(x).shape == (400,)


# 6. Determinism --------------------------------------------------------------------------------
@pytest.mark.parametrize("init", ["kmeans++", "random"])
def test_setup_is_deterministic(init):
    x = torch.as_tensor(mixture_data(700, 3, k=5, seed=9), dtype=torch.float32)

    def state(seed):
        m = GaussianMixture(data_shape=(3,), n_components=5, init=init)
        m.setup(x, torch.Generator().manual_seed(seed))
        return m, m.state_dict()

    (m1, a), (_, b), (_, c) = state(123), state(123), state(124)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    s1 = m1.sample(50, generator=torch.Generator().manual_seed(5))
    s2 = m1.sample(50, generator=torch.Generator().manual_seed(5))
    assert torch.equal(s1, s2)


# 7. Save / load round trip ---------------------------------------------------------------------
@pytest.mark.parametrize("covariance", ["full", "diag"])
def test_safetensors_round_trip(covariance, tmp_path):
    x = mixture_data(500, 3, k=3, seed=6)
    model, _ = fitted(x.astype(np.float32), 4, n_components=3, covariance=covariance)
    save_file(model.state_dict(), str(tmp_path / "gmm.safetensors"))
    again = GaussianMixture(**model.config)
    again.load_state_dict(load_file(str(tmp_path / "gmm.safetensors")))
    xt = torch.as_tensor(x, dtype=torch.float32)
    assert torch.equal(again.log_prob(xt), model.log_prob(xt))
    assert set(model.state_dict()) == {"weights", "means", "precisions_cholesky"}


# 8. Bad input and configuration ----------------------------------------------------------------
def test_bad_data_and_config():
    model = GaussianMixture(data_shape=(2,), n_components=3)
    g = torch.Generator().manual_seed(0)
    bad = torch.randn(50, 2)
    bad[7, 1] = float("nan")
    with pytest.raises(DataError, match="NaN"):
        model.setup(bad, g)
    with pytest.raises(DataError, match="at least"):
        model.setup(torch.randn(2, 2), g)
    with pytest.raises(DataError, match="shape"):
        model.setup(torch.randn(50, 3), g)
    three_points = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0]]).repeat(10, 1)
    for covariance in ("full", "diag"):  # zero-variance clusters need the covariance floor
        with pytest.raises(DataError, match="reg_covar"):
            GaussianMixture(data_shape=(2,), n_components=3, covariance=covariance, reg_covar=0.0).setup(three_points, g)
        floored = GaussianMixture(data_shape=(2,), n_components=3, covariance=covariance)
        floored.setup(three_points, g)
        assert torch.isfinite(floored.log_prob(three_points)).all()
    with pytest.raises(ConfigError):
        GaussianMixture(data_shape=(2,), n_components=0)
    with pytest.raises(ConfigError):
        GaussianMixture(data_shape=(2,), reg_covar=-1e-3)
    import genzoo

    with pytest.raises(ConfigError, match=r"gmm.reg_covar must be a finite number >= 0, got inf"):  # not ">= 0, got inf"
        genzoo.build("gmm", data_shape=(2,), reg_covar=math.inf)


def test_registry_and_protocol():
    import genzoo

    model = genzoo.build("gmm", data_shape=[2], n_components="3", covariance="diag")
    assert isinstance(model, GaussianMixture) and isinstance(model, Density)
    assert model.config["n_components"] == 3 and model.full_batch
    assert model.configure_optimizers() == []
    # before setup the model is a valid density (K standard normals at the origin)
    torch.testing.assert_close(model.log_prob(torch.zeros(1, 2)), torch.tensor([-math.log(2 * math.pi)]))
    with pytest.raises(ConfigError):
        genzoo.build("gmm", data_shape=[2], covariance="spherical")


def test_bad_inputs_are_data_errors_like_every_family():
    """numpy arrays and lists raised AttributeError ('x.dim()'), an empty batch returned (0,) where every other
    family refuses it, NaN data returned NaN."""
    model = GaussianMixture(data_shape=(2,), n_components=2)
    for bad in (np.zeros((3, 2)), [[0.0, 0.0]]):
        with pytest.raises(DataError, match="torch.Tensor batch"):
            model.log_prob(bad)
    for f in (model.log_prob, model.responsibilities, model.loss):
        with pytest.raises(DataError, match="empty batch"):
            f(torch.zeros(0, 2))
        with pytest.raises(DataError, match="NaN or infinite"):
            f(torch.tensor([[0.0, float("nan")]]))
    images = GaussianMixture(data_shape=(1, 2, 2), n_components=2)  # flattened rows are still accepted
    x = torch.rand(3, 1, 2, 2)
    assert torch.equal(images.log_prob(x), images.log_prob(x.reshape(3, 4)))
    with pytest.raises(DataError, match=r"models examples of shape \(1, 2, 2\)"):
        images.log_prob(torch.rand(3, 2, 2))


def test_data_whose_squares_overflow_float32_are_refused_with_the_cure():
    """Spread of 1e18: EM's float32 sums of squares ran to inf and the error said 'try a smaller lr' (EM has none)
    or 'increase reg_covar'."""
    rng = np.random.default_rng(0)
    x = torch.as_tensor(np.concatenate([rng.standard_normal((500, 2)), 5 + rng.standard_normal((500, 2))]) * 1e18)
    with pytest.raises(DataError, match=r"lie up to .*e\+18 from their mean, and EM's float32 sums of squares would "
                                        r"overflow: rescale the data, or --set dtype=float64"):
        GaussianMixture(data_shape=(2,), n_components=2).setup(x.float(), torch.Generator().manual_seed(0))
    model = GaussianMixture(data_shape=(2,), n_components=2, dtype="float64")
    model.setup(x, torch.Generator().manual_seed(0))
    for _ in range(5):
        ll = model.training_step(Batch(x), [])["log_likelihood"]
    assert math.isfinite(ll) and abs(sorted(model.means[:, 0].tolist())[1] / 5e18 - 1) < 0.05


def test_a_full_batch_run_logs_its_whole_set_per_step_and_notes_the_options_it_ignores(tmp_path, capsys, monkeypatch):
    """examples_per_s counted the unused batch_size (128) per EM step: 156x too small on the ring."""
    import itertools
    import json
    import types

    import genzoo.train.callbacks as callbacks
    from genzoo.cli import main

    rates = []
    for batch in (64, 1000):  # EM's work is the same, so must its rate be; on a clock of 1 s per reading
        clock = itertools.count()
        monkeypatch.setattr(callbacks, "time", types.SimpleNamespace(time=lambda: float(next(clock))))
        rd = tmp_path / f"r{batch}"
        assert main(["train", "gmm", "--steps", "20", "--batch-size", str(batch), "--run-dir", str(rd),
                     "--no-progress", "--set", "n_components=2", "--set", "covariance=diag"]) == 0
        assert (f"gmm fits on the whole set every step, one EM iteration, and has no networks: batch_size={batch} does "
                "nothing") in capsys.readouterr().err
        rows = [json.loads(line) for line in (rd / "metrics.jsonl").read_text().splitlines()]
        assert len(rows) == 20  # one row per EM iteration, by default
        rates.append([r["examples_per_s"] for r in rows])
    assert rates[0] == rates[1] and rates[0][-1] > 0  # not in the ratio 64 : 1000


def test_a_singular_covariance_suggests_float64_only_to_a_float32_model():
    """The error advised `--set dtype=float64` to a model that already was float64 (its Cholesky runs in float64)."""
    from genzoo.data.dataset import Dataset

    t = torch.linspace(0, 1, 200)
    line = Dataset("line", "train", torch.stack([t, 2 * t], 1), None)  # (200, 2): every covariance singular
    for dtype in ("float64", "float32"):
        m = genzoo.build("gmm", data_shape=(2,), n_components=2, reg_covar=0.0, dtype=dtype)
        with pytest.raises(DataError, match="not positive definite") as e:
            genzoo.fit(m, line, steps=3, progress=False)
        assert ("dtype=float64" in str(e.value)) == (dtype == "float32")


def test_components_the_initialisation_gives_no_data_are_named_once():
    """With fewer distinct points than K (integer data, repeated rows) k-means++ seeds repeated centres, whose
    clusters come out empty; their components start (and stay) at weight ~1e-15 / N, and nothing said so, where
    scikit-learn warns (a101 finding 5)."""
    from genzoo.data.dataset import Dataset
    from genzoo.errors import GenZooWarning

    grid = torch.tensor([[i, j] for i in range(3) for j in range(3)], dtype=torch.float32)  # 9 distinct points
    ints = Dataset("ints", "train", grid[torch.randint(9, (300,), generator=torch.Generator().manual_seed(0))], None)
    m = genzoo.build("gmm", data_shape=(2,), n_components=12)
    with pytest.warns(GenZooWarning, match=r"^gmm: n_components=12 but only 9 distinct points: 3 components get no "
                                           r"data and start at weight ~0: use n_components <= 9$") as caught:
        genzoo.fit(m, ints, steps=20, progress=False)
    assert len(caught) == 1 and int((m.weights < 1e-10).sum()) == 3  # once, at setup, not per EM step
    # enough distinct points, but a random init that picked a repeated row twice: a Lloyd cluster left empty
    x = torch.cat([torch.zeros(100, 2), torch.tensor([[5.0, 0.0], [0.0, 5.0], [5.0, 5.0]])])
    m = GaussianMixture(data_shape=(2,), n_components=3, init="random")
    with pytest.warns(GenZooWarning, match=r"^gmm: n_components=3, and k-means left 1 cluster empty: 1 component gets "
                                           r"no data and starts at weight ~0$"):
        m.setup(x, torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every component with data: not a word
        fitted(mixture_data(500, 2, 3, seed=0), steps=2, n_components=6)


def test_a_feature_constant_in_vector_data_is_named_with_the_nats_reg_covar_adds():
    """A constant feature's variance is the floor reg_covar in every component, so it added -0.5 log(2 pi reg_covar)
    (5.99 nats at 1e-6) to the "exact" log-likelihood per example, with no word; the flows refuse such data
    (a108 #2)."""
    from genzoo.data.dataset import Dataset
    from genzoo.errors import GenZooWarning

    x = torch.cat([torch.randn(60, 2, generator=torch.Generator().manual_seed(0)), torch.full((60, 1), 3.0)], 1)
    m = genzoo.build("gmm", data_shape=(3,), n_components=2)
    with pytest.warns(GenZooWarning, match=r"^gmm: feature 2 \(1 of 3\) is constant in the training data: every "
                                           r"component gives it variance reg_covar=1e-06, which adds 5\.99 nats per "
                                           r"example to the log-likelihood .*: drop it, or add noise") as caught:
        genzoo.fit(m, Dataset("const", "train", x, None), steps=2, progress=False)
    assert len(caught) == 1  # once, at setup
    fits = []
    for cols in (x, x[:, :2]):  # the same fit with and without the constant feature: 5.99 nats apart
        fits.append(GaussianMixture(data_shape=(cols.shape[1],), n_components=2))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fits[-1].setup(cols, torch.Generator().manual_seed(0))
    gain = float(fits[0].log_prob(x).double().mean() - fits[1].log_prob(x[:, :2]).double().mean())
    assert gain == pytest.approx(-0.5 * math.log(2 * math.pi * 1e-6), abs=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # images: a constant pixel is what reg_covar is for; reg_covar=0 refuses it
        GaussianMixture(data_shape=(1, 2, 2), n_components=2).setup(x[:, [0, 1, 2, 2]].reshape(60, 1, 2, 2),
                                                                    torch.Generator().manual_seed(0))
        with pytest.raises(DataError, match="reg_covar"):
            GaussianMixture(data_shape=(3,), n_components=2, reg_covar=0.0).setup(x, torch.Generator().manual_seed(0))


def test_a_component_with_no_more_examples_than_dimensions_is_named_with_the_cures_that_help():
    """A component holding no more examples than dimensions has a singular covariance whatever the scale or dtype,
    yet the message advised standardising or float64 (the digits recipe at reg_covar=0: 63 examples in 64-D) and
    not fewer components or diagonal covariances (a108 #3)."""
    g = torch.Generator().manual_seed(0)
    few = torch.randn(3, 4, generator=g) - 10
    few[:, 3] = -10.0  # (exactly singular on every BLAS: a coordinate constant within the cluster)
    x = torch.cat([torch.randn(30, 4, generator=g) + 10, few])  # 3 points in 4-D
    m = GaussianMixture(data_shape=(4,), n_components=2, reg_covar=0.0)
    with pytest.raises(DataError, match=r"^gmm: component 1 holds 3 examples \(by responsibility\) for 4 dimensions, so "
                                        r"its covariance is singular: give reg_covar > 0, use fewer components \(now "
                                        r"n_components=2\), or --set covariance=diag$"):
        m.setup(x, g)
    for cure in ({"n_components": 1}, {"reg_covar": 1e-6}):
        GaussianMixture(data_shape=(4,), **{"n_components": 2, "reg_covar": 0.0, **cure}).setup(x, g)
    # one example has zero variance in every direction: diagonal covariances are no cure for it (a125 #3)
    one = torch.cat([torch.zeros(1, 2), torch.randn(50, 2, generator=g) + 50]).double()
    with pytest.raises(DataError, match=r"holds 1 example .* singular: give reg_covar > 0 or use fewer components "
                                        r"\(now n_components=2\)$"):
        GaussianMixture(data_shape=(2,), n_components=2, reg_covar=0.0, dtype="float64").setup(one, g)


def test_a_reg_covar_whose_precision_overflows_the_dtype_is_refused():
    """reg_covar=1e-300 in float32 stored an infinite precision, and EM's first step failed as a NaN loss blamed
    on the data's scale (a108 nit)."""
    with pytest.raises(ConfigError, match=r"^gmm: reg_covar=1e-300 is below the smallest normal float32 \(1\.18e-38\), "
                                          r"and its precision 1/reg_covar would overflow: give reg_covar >= 1\.18e-38, "
                                          r"or --set dtype=float64$"):
        GaussianMixture(data_shape=(2,), reg_covar=1e-300)
    with pytest.raises(ConfigError, match=r"gmm.*reg_covar=1e-40 is below the smallest normal float32"):
        genzoo.build("gmm", data_shape=(2,), reg_covar=1e-40)
    from genzoo.errors import GenZooWarning

    m = GaussianMixture(data_shape=(2,), n_components=2, reg_covar=1e-300, dtype="float64")  # float64 holds it
    with pytest.warns(GenZooWarning, match=r"feature 1 .* adds 344 nats per example"):
        m.setup(torch.tensor([[0.0, 1.0], [1.0, 1.0], [2.0, 1.0]]).repeat(4, 1), torch.Generator().manual_seed(0))
    assert torch.isfinite(m.precisions_cholesky).all()


def test_a_mixture_saved_before_its_fit_is_refused_by_fit_not_trained_as_one_gaussian(tmp_path):
    """load marks weights read from a file as trained, so fit skipped the k-means setup of a GMM saved before its fit,
    and EM from K equal components never separates them: one Gaussian copied 8 times, without a word (a108 #1)."""
    from genzoo.data import load_dataset

    ring = load_dataset("ring", split="train", n=400)
    genzoo.save(genzoo.build("gmm", data_shape=(2,), n_components=8), tmp_path / "built")
    with pytest.raises(ConfigError, match=r"^gmm: its 8 components are as built, all equal .* fit a new model"):
        genzoo.fit(genzoo.load(tmp_path / "built"), ring, steps=2, progress=False)
    for covariance in ("full", "diag"):  # set up (by hand, or by fit), it trains
        m = genzoo.build("gmm", data_shape=(2,), n_components=8, covariance=covariance)
        m.setup(ring.x, torch.Generator().manual_seed(0))
        genzoo.save(m, tmp_path / covariance)
        genzoo.fit(genzoo.load(tmp_path / covariance), ring, steps=2, progress=False)
    assert not genzoo.build("gmm", data_shape=(2,), n_components=1)._as_built()  # one component: nothing to separate


@pytest.mark.parametrize("covariance", ["diag", "full"])
def test_one_em_step_from_displaced_means_is_bishops_m_step(covariance):
    """One EM step from means moved off the fixed point is Bishop's (2006) M-step, eqs. 9.17-9.19 and 9.22, by hand:
    the covariance about the new means (without `- delta^2` the diagonal one was too wide by the means' move,
    which the comparisons with scikit-learn after 25 steps, delta near 0, let through)."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-2, 1.0, (200, 3)), rng.normal(2, 0.5, (300, 3))])
    xt = torch.as_tensor(x)
    m = GaussianMixture(data_shape=(3,), n_components=2, covariance=covariance, dtype="float64", reg_covar=1e-6)
    m.setup(xt, torch.Generator().manual_seed(0))
    with torch.no_grad():
        m.means.add_(0.7)                      # off the fixed point: new means differ from the old by ~0.7
    r = m.responsibilities(xt).numpy()         # (N, K), E-step with the current parameters (9.13)
    m.training_step(Batch(xt), [])
    nk = r.sum(0)                                                      # (9.18)
    mu = r.T @ x / nk[:, None]                                         # (9.17)
    for k in range(2):
        d = x - mu[k]
        cov = (r[:, k, None] * d).T @ d / nk[k] + 1e-6 * np.eye(3)    # (9.19) about the NEW mean
        got = m.covariances[k].numpy()
        want = np.diag(cov) if covariance == "diag" else cov
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(m.means.numpy(), mu, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(m.weights.numpy(), nk / len(x), rtol=1e-9)    # (9.22)


def _seeding_potential(x, centres):
    """k-means' potential of the seeds: sum over the points of the squared distance to the nearest seed."""
    return float(torch.cdist(x.double(), centres.double()).square().min(1).values.sum())


def test_kmeans_plusplus_seeds_one_centre_in_each_of_ten_far_blobs():
    """Seeds drawn with probability proportional to D(x)^2 (Arthur & Vassilvitskii 2007) land in every one of 10
    far-apart blobs, in each of 30 seeds; uniform draws, which the other GMM tests let through (audit 134), miss a
    blob in 39 of 50 seeds."""
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(10, 2, generator=g) * 20  # (10, 2)
    x = (centres[:, None] + 0.1 * torch.randn(10, 200, 2, generator=g)).reshape(-1, 2)  # (2000, 2)
    m = GaussianMixture(data_shape=(2,), n_components=10)
    for s in range(30):
        seeds = m._kmeans_plusplus(x, (x - x.mean(0)).square().sum(1), x.mean(0), torch.Generator().manual_seed(s))
        assert sorted(torch.cdist(seeds, centres).argmin(1).tolist()) == list(range(10)), s


def test_kmeans_plusplus_potential_matches_scikit_learns():
    """The greedy step keeps the candidate that lowers the potential most, as scikit-learn's kmeans_plusplus does
    with the same 2 + log K trials: the mean seeding potential over 20 seeds within 5% of scikit-learn's (keeping
    the worst candidate is 60% above it)."""
    from sklearn.cluster import kmeans_plusplus

    x = torch.randn(3000, 5, generator=torch.Generator().manual_seed(0))  # (3000, 5)
    m = GaussianMixture(data_shape=(5,), n_components=20)
    ours = np.mean([_seeding_potential(x, m._kmeans_plusplus(x, (x - x.mean(0)).square().sum(1), x.mean(0),
                                                              torch.Generator().manual_seed(s))) for s in range(20)])
    theirs = np.mean([_seeding_potential(x, torch.as_tensor(kmeans_plusplus(x.numpy(), 20, random_state=s)[0]))
                      for s in range(20)])
    assert abs(ours / theirs - 1) < 0.05, (ours, theirs)
