import math

import pytest
import torch
from torch.distributions import Independent, Normal, kl_divergence

import genzoo
from genzoo.data import load_dataset
from genzoo.models.vae import VAE


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
    """The fast ELBO (BCE with logits, closed-form KL) equals the distribution-object version."""
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
