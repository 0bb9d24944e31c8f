import math

import pytest
import torch
from torch.distributions import Independent, Normal, kl_divergence

import genzoo
from genzoo.data import load_dataset
from genzoo.models.flows.transforms import planar
from genzoo.models.vae import VAE, bernoulli_log_prob


@pytest.mark.parametrize("arch", ["mlp", "conv"])
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_shapes_and_gradients(arch, likelihood):
    m = genzoo.build("vae", data_shape=(1, 8, 8), latent_dim=3, hidden=(16,), arch=arch, likelihood=likelihood)
    x = torch.rand(5, 1, 8, 8)
    if likelihood == "bernoulli":
        x = x.bernoulli()
    assert m.encode(x).batch_shape == (5,) and m.encode(x).event_shape == (3,)
    px = m.decode(torch.randn(5, 3))
    assert px.batch_shape == (5,) and px.event_shape == (1, 8, 8)
    assert m.sample(7).shape == (7, 1, 8, 8)
    assert m.generate(torch.randn(2, 3)).shape == (2, 1, 8, 8)
    m.loss(x)["loss"].backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert isinstance(m, genzoo.LatentVariable) and isinstance(m, genzoo.Generator)
    assert not isinstance(m, genzoo.Density)  # a VAE never claims an exact log_prob


def test_elbo_terms_match_torch_distributions():
    """The fast ELBO (x l - softplus(l), closed-form KL) equals the distribution-object version."""
    m = genzoo.build("vae", data_shape=(1, 8, 8), latent_dim=4, hidden=(16,))
    x = torch.rand(6, 1, 8, 8).bernoulli()
    q = m.encode(x)
    kl = kl_divergence(q, m.prior)                               # (6,)
    torch.manual_seed(1)
    fast = m.elbo(x, n_samples=1)
    torch.manual_seed(1)
    eps = torch.randn(1, 6, 4)
    z = q.mean + q.stddev * eps
    slow = m.decode(z).log_prob(x).mean(0) - kl
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-4)


def test_bernoulli_log_prob_matches_bce_with_logits():
    """x l - softplus(l) equals -BCE with logits in value and in both gradients, for grey levels, logits up
    to +-60 (where a sigmoid saturates in float32) and x broadcast over a sample dimension."""
    logits = (torch.randn(3, 5, 40, dtype=torch.float64) * 20).clamp(-60, 60).requires_grad_()   # (S, B, D)
    x = torch.rand(1, 5, 40, dtype=torch.float64).requires_grad_()                            # (1, B, D)
    ours = bernoulli_log_prob(logits, x)
    ref = -torch.nn.functional.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)
    assert ours.shape == (3, 5)
    torch.testing.assert_close(ours, ref)
    w = torch.randn(3, 5, dtype=torch.float64)
    torch.testing.assert_close(torch.autograd.grad((ours * w).sum(), (logits, x)),
                               torch.autograd.grad((ref * w).sum(), (logits, x)))
    big = torch.tensor([[60.0, -60.0]])                                   # float32: no inf, no nan
    assert torch.isfinite(bernoulli_log_prob(big, torch.tensor([[0.0, 1.0]]))).all()


def test_gaussian_decoder_log_prob():
    m = genzoo.build("vae", data_shape=(2,), latent_dim=2, hidden=(8,), likelihood="gaussian", min_std=0.1)
    z, x = torch.randn(4, 2), torch.randn(4, 2)
    px = m.decode(z)
    assert isinstance(px, Independent) and (px.base_dist.scale >= 0.1).all()
    ref = Normal(px.base_dist.loc, px.base_dist.scale).log_prob(x).sum(-1)
    torch.testing.assert_close(px.log_prob(x), ref)


def _exact_log_px(m: VAE, x: torch.Tensor) -> torch.Tensor:
    """log p(x) = log int N(z; 0, 1) p(x|z) dz by quadrature, for a 1-D latent."""
    z = torch.linspace(-10, 10, 20001, dtype=torch.float64)[:, None]                     # (G, 1)
    logits = m.decoder(z)                                           # (G, D)
    log_joint = -torch.nn.functional.binary_cross_entropy_with_logits(
        logits[:, None, :].expand(-1, x.shape[0], -1), x[None].expand(len(z), -1, -1), reduction="none").sum(-1)
    log_joint = log_joint + Normal(0.0, 1.0).log_prob(z)            # (G, B)
    return torch.logsumexp(log_joint, 0) + math.log(z[1, 0] - z[0, 0])


def test_iwae_bound_converges_to_exact_likelihood():
    """With a 1-D latent, log p(x) is computable by quadrature: ELBO <= IWAE_k -> log p(x)."""
    torch.manual_seed(3)
    m = genzoo.build("vae", data_shape=(6,), latent_dim=1, hidden=(8,)).double()
    x = torch.rand(10, 6, dtype=torch.float64).bernoulli()
    with torch.no_grad():
        exact = _exact_log_px(m.double(), x)
        elbo = torch.stack([m.elbo(x) for _ in range(200)]).mean(0)
        iw10 = m.iwae_bound(x, 10)
        iw5000 = m.iwae_bound(x, 5000, chunk_rows=4000)
    assert (elbo <= exact + 1e-6).all()
    assert iw10.mean() > elbo.mean()                          # tighter on average (Burda et al. 2015, Thm 1)
    err = (iw5000 - exact).abs()
    assert err.mean() < 0.01 and err.max() < 0.05  # a Monte Carlo estimate: close, not exact


def test_learns_digits():
    """Dynamically binarized digits: 1,500 steps reach a test ELBO above -32 nats (64 pixels)."""
    train = load_dataset("digits", binarize=True)
    test = load_dataset("digits", "test", binarize=True)
    m = genzoo.build("vae", data_shape=train.shape, latent_dim=10, hidden=(200,))
    genzoo.fit(m, train, steps=1500, batch_size=64, progress=False)
    with torch.no_grad():
        elbo = m.elbo(test.transformed(torch.Generator().manual_seed(0))).mean()
    start = genzoo.build("vae", data_shape=train.shape, latent_dim=10, hidden=(200,))
    with torch.no_grad():
        elbo0 = start.elbo(test.transformed(torch.Generator().manual_seed(0))).mean()
    assert elbo > -32 and elbo0 < -40, (float(elbo), float(elbo0))


def test_conv_vae_on_mnist_shapes(mnist_root):
    data = load_dataset("mnist", "test", root=str(mnist_root), binarize=True, n=32)
    m = genzoo.build("vae", data_shape=data.shape, arch="conv", latent_dim=8)
    x = data.transformed(torch.Generator().manual_seed(0))
    assert m.iwae_bound(x, 4).shape == (32,)
    assert data.shape == (1, 28, 28)


def test_bad_options():
    with pytest.raises(genzoo.ConfigError, match="latnt_dim.*latent_dim"):
        genzoo.build("vae", data_shape=(2,), latnt_dim=3)
    with pytest.raises(genzoo.ConfigError, match="arch"):
        genzoo.build("vae", data_shape=(2,), arch="transformer")
    with pytest.raises(genzoo.ConfigError, match="divisible by 4"):
        genzoo.build("vae", data_shape=(1, 6, 6), arch="conv")


def _planar_vae(latent_dim: int = 1, k: int = 4, scale: float = 0.5):
    m = genzoo.build("vae", data_shape=(6,), latent_dim=latent_dim, hidden=(8,), posterior_flow="planar",
                     flow_length=k).double()
    with torch.no_grad():  # a non-trivial flow: the encoder's flow outputs start near zero otherwise
        for p in m.parameters():
            p.add_(scale * torch.randn_like(p))
    return m


def test_planar_posterior_bounds_converge_to_exact_likelihood():
    """With a planar posterior the log-dets enter log q: if they were wrong, IWAE would not tend to log p(x)."""
    torch.manual_seed(4)
    m = _planar_vae()
    x = torch.rand(10, 6, dtype=torch.float64).bernoulli()
    with torch.no_grad():
        exact = _exact_log_px(m, x)
        elbo = torch.stack([m.elbo(x) for _ in range(200)]).mean(0)
        iw = m.iwae_bound(x, 20000, chunk_rows=40000)
        mu, log_sigma, maps = m._posterior(x)
        z, log_det = mu.unsqueeze(0), 0.0
        for u, w, b in maps:                                   # the log-dets are large enough to matter
            z, ld = planar(z, u, w, b)
            log_det = log_det + ld
    assert float(log_det.abs().mean()) > 0.2
    assert (elbo <= exact + 1e-6).all()
    err = (iw - exact).abs()  # measured: mean 0.009, max 0.047 (a Monte Carlo estimate: close, not exact)
    assert err.mean() < 0.02 and err.max() < 0.1, err


def test_planar_posterior_density_matches_its_samples():
    """encode(x) is the flow posterior as a TransformedDistribution: its log_prob (by inverting each planar map)
    equals the log q the ELBO uses, and a 1-D histogram of its samples matches exp(log_prob)."""
    torch.manual_seed(5)
    m = _planar_vae(k=6, scale=1.0)
    x = torch.rand(1, 6, dtype=torch.float64).bernoulli()
    with torch.no_grad():
        torch.manual_seed(0)
        z, log_q, _, _ = m._draw(x, 5)                                   # (5, 1, 1), (5, 1)
        q = m.encode(x)
        assert torch.allclose(q.log_prob(z.clone()), log_q, atol=1e-8)  # clone: no cached inverse
        zs = q.sample((40000,))[:, 0, 0]                                 # (40000,)
        edges = torch.linspace(float(zs.quantile(0.01)), float(zs.quantile(0.99)), 21, dtype=torch.float64)
        counts = torch.histogram(zs, edges).hist
        fine = torch.linspace(float(edges[0]), float(edges[-1]), 4001, dtype=torch.float64)
        dens = q.log_prob(fine.reshape(-1, 1, 1)).exp()[:, 0]
        mass = torch.stack([torch.trapezoid(dens[(fine >= a) & (fine <= b)], fine[(fine >= a) & (fine <= b)])
                            for a, b in zip(edges[:-1], edges[1:])])
    expected = mass * len(zs)
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 60, chi2  # 20 bins: the 99.9% point of chi2(20) is 45; allow the quadrature's error


def test_planar_posterior_trains_and_round_trips(tmp_path):
    train = load_dataset("digits", binarize=True, n=300)
    m = genzoo.build("vae", data_shape=train.shape, latent_dim=4, hidden=(32,), posterior_flow="planar", flow_length=3)
    genzoo.fit(m, train, steps=30, batch_size=32, progress=False)
    genzoo.save(m, tmp_path / "m")
    m2 = genzoo.load(tmp_path / "m")
    x = train.transformed(torch.Generator().manual_seed(0))[:8]
    torch.manual_seed(0)
    a = m.iwae_bound(x, 20)
    torch.manual_seed(0)
    assert torch.allclose(a, m2.iwae_bound(x, 20)) and torch.isfinite(a).all()
    with pytest.raises(genzoo.ConfigError):
        genzoo.build("vae", data_shape=(4,), posterior_flow="radial")


@pytest.mark.parametrize("name", ["vae", "ssvae"])
def test_bounds_check_the_example_shape_and_take_other_dtypes(name):
    """A batch of another example shape is a DataError (the MLP would flatten it without a word); float64 and
    integer pixels give the same bound as float32."""
    torch.manual_seed(0)
    model = genzoo.build(name, data_shape=(1, 8, 8), latent_dim=4, hidden=(16,), **({"labels": 20} if name == "ssvae" else {}))
    model.eval()
    x = torch.rand(5, 1, 8, 8).bernoulli()
    for bad in (x.reshape(5, 1, 4, 16), x.reshape(5, 64)):
        with pytest.raises(genzoo.errors.DataError, match=r"models examples of shape \(1, 8, 8\)"):
            model.elbo(bad)
        with pytest.raises(genzoo.errors.DataError):
            model.iwae_bound(bad, k=2)
    with pytest.raises(genzoo.errors.ConfigError, match="k >= 1"):
        model.iwae_bound(x, k=0)
    torch.manual_seed(1)
    ref = model.iwae_bound(x, k=4)
    for other in (x.double(), x.to(torch.uint8)):
        torch.manual_seed(1)
        got = model.iwae_bound(other, k=4)
        assert got.dtype == torch.float32 and torch.allclose(got, ref)


@pytest.mark.parametrize("name", ["vae", "ssvae"])
def test_bernoulli_bounds_refuse_pixels_outside_the_unit_interval(name):
    from genzoo.errors import DataError

    model = genzoo.build(name, data_shape=(1, 8, 8)).eval()
    grey = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(model.elbo(grey)).all() and torch.isfinite(model.iwae_bound(grey, 3)).all()
    # x l - softplus(l) grows without bound in l for x > 1: such "bounds" could beat any likelihood
    for bad in (1 + grey, grey - 0.5):
        for bound in (model.elbo, lambda x: model.iwae_bound(x, 3)):
            with pytest.raises(DataError, match=r"Bernoulli decoder scores pixels in \[0, 1\]"):
                bound(bad)
    if name == "ssvae":
        with pytest.raises(DataError, match="pixels in"):
            model.labelled_bound(1 + grey, torch.zeros(4, dtype=torch.long))
    gaussian = genzoo.build("vae", data_shape=(1, 8, 8), likelihood="gaussian").eval()
    assert torch.isfinite(gaussian.elbo(2 * grey - 0.5)).all()  # a density on the reals takes any value


# -- the audit's API findings ----------------------------------------------------------------------------------
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_decode_and_generate_check_the_latents(likelihood):
    """Latents of another width were reshaped into a bogus channel dimension ((5, 40) -> (5, 2, 8, 8)) and
    float64/integer ones failed inside torch: now a DataError, and a conversion to the parameters' dtype."""
    m = genzoo.build("vae", data_shape=(1, 8, 8), latent_dim=4, hidden=(16,), likelihood=likelihood)
    for bad in (torch.randn(5, 8), torch.randn(4), torch.randn(0, 4), torch.randn(5, 4).tolist()):
        for f in (m.decode, m.generate):
            with pytest.raises(genzoo.DataError, match=r"latents must be a torch.Tensor of shape \(\.\.\., B, 4\)|no latents"):
                f(bad)
    z = torch.randn(5, 4, dtype=torch.float64)
    out = m.generate(z)
    assert out.dtype == torch.float32 and torch.equal(out, m.generate(z.float()))
    assert m.generate(torch.ones(5, 4, dtype=torch.long)).shape == (5, 1, 8, 8)
    assert m.generate(z.float().reshape(1, 5, 4)).shape == (1, 5, 1, 8, 8)   # leading dimensions are kept


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_sample_draws_every_random_number_from_the_generator(likelihood):
    """sample(mean=False) drew the pixels from torch's global RNG: two equally seeded generators gave different
    samples and the caller's global stream moved."""
    m = genzoo.build("vae", data_shape=(1, 8, 8), latent_dim=4, hidden=(16,), likelihood=likelihood)
    state = torch.get_rng_state()
    a = m.sample(6, torch.Generator().manual_seed(0), mean=False)
    b = m.sample(6, torch.Generator().manual_seed(0), mean=False)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b) and a.shape == (6, 1, 8, 8)
    assert not torch.equal(a, m.sample(6, torch.Generator().manual_seed(0)))  # a draw, not the mean
    if likelihood == "bernoulli":
        assert set(a.unique().tolist()) <= {0.0, 1.0}


def test_gaussian_vae_of_vectors_samples_draws_and_images_means():
    """A Gaussian VAE's samples were its decoder means for every data shape: on vectors (the ring) those lie on a
    latent_dim-dimensional surface, and eval's modes and Parzen scored them (2/8 modes, Parzen -23.7) where the
    model's draws cover 8/8 (+0.34). Vectors now sample draws; images (and Bernoulli decoders) keep the means."""
    from genzoo.data import load_spec
    from genzoo.eval.metrics import draw

    vec = genzoo.build("vae", data_shape=(2,), latent_dim=2, hidden=(8,), likelihood="gaussian")
    with torch.no_grad():
        for p in vec.decoder.parameters():
            p.zero_()                                           # loc 0, scale softplus(0) + min_std for every z
    scale = math.log(2) + vec.min_std
    x = vec.sample(20000, torch.Generator().manual_seed(0))     # (20000, 2)
    assert abs(x.std().item() - scale) < 0.02 and x.mean(0).abs().max() < 0.02
    assert torch.equal(vec.sample(20000, torch.Generator().manual_seed(0), mean=True), torch.zeros(20000, 2))
    assert draw(vec, 5000, 0, load_spec({"name": "ring"}, "test")).std() > scale - 0.05  # what eval scores
    img = genzoo.build("vae", data_shape=(1, 8, 8), latent_dim=4, hidden=(16,), likelihood="gaussian")
    g = lambda: torch.Generator().manual_seed(0)
    assert torch.equal(img.sample(5, g()), img.sample(5, g(), mean=True))
    ber = genzoo.build("vae", data_shape=(4,), latent_dim=2, hidden=(8,))
    assert torch.equal(ber.sample(5, g()), ber.sample(5, g(), mean=True))


def test_empty_batches_and_nan_data_are_data_errors():
    """An empty batch gave torch's reshape errors; NaN data gave NaN from elbo but a torch.distributions
    ValueError from iwae_bound."""
    for likelihood in ("bernoulli", "gaussian"):
        m = genzoo.build("vae", data_shape=(1, 8, 8), latent_dim=4, hidden=(16,), likelihood=likelihood)
        empty = torch.zeros(0, 1, 8, 8)
        for f in (m.elbo, m.encode, m.loss, lambda x: m.iwae_bound(x, 3)):
            with pytest.raises(genzoo.DataError, match="empty batch"):
                f(empty)
        nan = torch.rand(2, 1, 8, 8)
        nan[1, 0, 3, 3] = float("nan")
        for f in (m.elbo, lambda x: m.iwae_bound(x, 3)):
            with pytest.raises(genzoo.DataError, match="NaN or infinite"):
                f(nan)
            with pytest.raises(genzoo.DataError, match="NaN or infinite"):
                f(nan.nan_to_num(nan=math.inf))


def test_encode_checks_pixels_as_the_bounds_do():
    """encode (and so infer_latent) took uint8 images of 0..255 (|z| up to ~50) and NaN images (NaN latents) without
    a word, while the bounds refused them with a one-line DataError. A Gaussian decoder takes any finite values."""
    from genzoo.apps import infer_latent

    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    nan = x.clone()
    nan[1, 0, 2, 2] = float("nan")
    ber = genzoo.build("vae", data_shape=(1, 8, 8), latent_dim=2, hidden=(8,))
    gau = genzoo.build("vae", data_shape=(1, 8, 8), latent_dim=2, hidden=(8,), likelihood="gaussian")
    for f in (ber.encode, lambda x: infer_latent(ber, x)):
        with pytest.raises(genzoo.DataError, match=r"vae: a Bernoulli decoder scores pixels in \[0, 1\], got values in \[0, 25\d\]; scale the data"):
            f((x * 255).to(torch.uint8))
    for f in (ber.encode, gau.encode, lambda x: infer_latent(gau, x)):
        with pytest.raises(genzoo.DataError, match="vae: examples with NaN or infinite values"):
            f(nan)
    assert torch.isfinite(gau.encode(x * 255).mean).all() and ber.encode(x).batch_shape == (3,)


def test_the_gaussian_scale_is_the_decoders_output_for_each_z():
    """As the docstring now says (it said 'a learned per-pixel scale floored at min_std'): the scale is an output of
    the decoder for each z, softplus(.) + min_std (> min_std), not one parameter per pixel."""
    m = genzoo.build("vae", data_shape=(2,), latent_dim=2, hidden=(8,), likelihood="gaussian", min_std=0.1)
    scale = m.decode(torch.randn(5, 2, generator=torch.Generator().manual_seed(0))).base_dist.scale  # (5, 2)
    assert (scale > 0.1).all() and not torch.allclose(scale, scale[:1].expand_as(scale))  # varies with z


def test_elbo_checks_n_samples():
    m = genzoo.build("vae", data_shape=(1, 8, 8), latent_dim=4, hidden=(16,))
    x = torch.rand(2, 1, 8, 8).bernoulli()
    for bad in (2.5, True, 0, "3"):
        with pytest.raises(genzoo.ConfigError, match="n_samples"):
            m.elbo(x, n_samples=bad)
    assert m.elbo(x, n_samples=torch.tensor(2)).shape == (2,)


@pytest.mark.parametrize("kw,option,value", [
    ({"arch": "conv"}, "hidden", (7,)),
    ({}, "flow_length", 3),
    ({"likelihood": "bernoulli"}, "min_std", 0.5),
    ({"hidden": ()}, "activation", "tanh"),  # a linear VAE (`--set hidden=`): no activation anywhere
])
def test_unused_options_are_idle(kw, option, value, assert_idle):
    x = torch.rand(8, 1, 8, 8).bernoulli()
    assert_idle("vae", {"data_shape": (1, 8, 8), "latent_dim": 3, **kw}, option, value, x)


def test_unused_options_lists_only_idle_options(assert_idle):
    assert genzoo.build("vae", data_shape=(4,), likelihood="gaussian", posterior_flow="planar").unused_options() == {}
    kw = {"data_shape": (1, 8, 8), "latent_dim": 3, "arch": "conv", "likelihood": "gaussian"}
    with pytest.raises(AssertionError):  # the check above sees an option that is used
        assert_idle("vae", kw, "min_std", 0.5, torch.rand(8, 1, 8, 8), listed=False)


def test_batches_are_moved_to_the_models_device(monkeypatch):
    """A CPU batch for a model on another device failed inside torch ("Expected all tensors to be on the same
    device"); it is moved, as latents are (check_latent). The meta device stands in for a GPU here."""
    from genzoo.base import GenerativeModel

    m = genzoo.build("vae", data_shape=(1, 8, 8), latent_dim=4, hidden=(16,))
    x = torch.rand(3, 1, 8, 8)
    assert m.check_input(x) is x                                                  # nothing to do: no copy
    monkeypatch.setattr(GenerativeModel, "device", property(lambda self: torch.device("meta")))
    moved = m.check_input(x.double())
    assert moved.device.type == "meta" and moved.dtype == torch.float32 and moved.shape == x.shape
    g = genzoo.build("gmm", data_shape=(2,), n_components=2)
    assert g.check_input(torch.zeros(4, 2, dtype=torch.float64)).device.type == "meta"


def test_iwae_chunks_are_sized_by_the_decoders_activations(monkeypatch):
    """A fixed 65,536 decoder rows a chunk took a conv MNIST VAE's default `genzoo eval` to ~6 GB (an MLP's to 1 GB),
    and M2 drew all k samples at once; chunks now hold IWAE_CHUNK_ELEMENTS activations, and the bound is the same."""
    from genzoo.models import vae as V

    x = torch.rand(4, 1, 28, 28).round()
    costs = {}
    for arch in ("mlp", "conv"):
        m = genzoo.build("vae", data_shape=(1, 28, 28), arch=arch)
        costs[arch] = V.elements_per_row(m.decoder, lambda: m._log_px(x[:1], torch.zeros(1, 1, m.latent_dim)))
    assert costs["conv"] > 3 * costs["mlp"]
    assert V.iwae_chunk(costs["conv"], 100, 5000, None) * 100 * costs["conv"] <= V.IWAE_CHUNK_ELEMENTS
    assert V.iwae_chunk(10**9, 100, 5000, None) == 1 and V.iwae_chunk(1, 100, 5000, 1000) == 10
    torch.manual_seed(0)
    vae = genzoo.build("vae", data_shape=(1, 8, 8), latent_dim=2, hidden=(16,))
    ssvae = genzoo.build("ssvae", data_shape=(1, 8, 8), latent_dim=2, hidden=(16,), labels=10)
    xs = torch.rand(3, 1, 8, 8).round()
    for model in (vae, ssvae):
        torch.manual_seed(1)
        whole = model.iwae_bound(xs, 2000)
        monkeypatch.setattr(V, "IWAE_CHUNK_ELEMENTS", 1)  # one sample a chunk
        torch.manual_seed(1)
        chunked = model.iwae_bound(xs, 2000)
        monkeypatch.undo()
        assert torch.allclose(whole, chunked, atol=0.3), (model.name, whole, chunked)  # Monte Carlo: 0.1 apart


@pytest.mark.parametrize("flow", ["none", "planar"])
def test_elbo_of_s_samples_averages_the_draws(flow):
    """The ELBO of S samples is the mean of S one-sample ELBOs, not their sum (every other test drew S = 1,
    where the two agree), with and without the planar posterior's log-dets."""
    torch.manual_seed(0)
    m = genzoo.build("vae", data_shape=(6,), latent_dim=2, hidden=(8,), posterior_flow=flow, flow_length=2)
    m = m.double()
    x = torch.rand(4, 6, dtype=torch.float64).bernoulli()
    with torch.no_grad():
        one = torch.stack([m.elbo(x, n_samples=1) for _ in range(400)])     # (400, B)
        many = m.elbo(x, n_samples=400)                                      # (B,)
    se = one.std(0) / math.sqrt(400)
    assert ((many - one.mean(0)).abs() < 6 * se + 1e-3).all(), (many, one.mean(0), se)
