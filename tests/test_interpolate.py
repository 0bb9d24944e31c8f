"""Latent paths, latent inference for each family, vector arithmetic, and `genzoo interpolate`."""
import math

import numpy as np
import pytest
import torch
from PIL import Image

import genzoo
from genzoo.apps.interpolate import arithmetic, infer_latent, interpolate, latent_path, lerp, slerp
from genzoo.cli import main
from genzoo.data import load_dataset
from genzoo.errors import ConfigError


def test_slerp_stays_on_the_sphere_and_lerp_is_straight():
    g = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(2, 64, generator=g)
    z1 = z1 / z1.norm() * z0.norm()  # equal norms: the great circle keeps them
    path = slerp(z0, z1, torch.linspace(0, 1, 11))
    np.testing.assert_allclose(path.norm(dim=1).numpy(), float(z0.norm()), rtol=1e-5)
    # equal angles between neighbours: constant speed along the arc
    cos = torch.nn.functional.cosine_similarity(path[1:], path[:-1])
    assert float(cos.max() - cos.min()) < 1e-5
    mid = lerp(z0, z1, torch.tensor([0.5]))[0]
    assert torch.allclose(mid, (z0 + z1) / 2) and mid.norm() < z0.norm()  # the straight line cuts inside
    assert torch.allclose(slerp(z0, 2 * z0, torch.tensor([0.5]))[0], 1.5 * z0)  # parallel ends: lerp


def test_path_errors():
    with pytest.raises(ConfigError, match="at least 2"):
        latent_path(torch.zeros(3), torch.ones(3), 1)
    with pytest.raises(ConfigError, match="same shape"):
        latent_path(torch.zeros(3), torch.ones(4), 5)
    with pytest.raises(ConfigError, match="unknown interpolation"):
        latent_path(torch.zeros(3), torch.ones(3), 5, "cubic")


def test_flow_latents_are_exact_and_vae_latents_are_posterior_means():
    x = load_dataset("digits", "test", n=6).x
    flow = genzoo.build("realnvp", data_shape=(1, 8, 8), n_scales=1, width=8, n_blocks=1)
    z = infer_latent(flow, x)
    assert torch.allclose(flow.decode(z), x, atol=1e-4)
    vae = genzoo.build("vae", data_shape=(1, 8, 8), latent_dim=3, hidden=(16,))
    assert torch.allclose(infer_latent(vae, x), vae.encode(x).mean)
    vae_pf = genzoo.build("vae", data_shape=(1, 8, 8), latent_dim=3, hidden=(16,), posterior_flow="planar", flow_length=2)
    q = vae_pf.encode(x)
    z = infer_latent(vae_pf, x)
    assert z.shape == (6, 3) and torch.isfinite(q.log_prob(z)).all()


def test_gan_projection_recovers_a_latent_it_generated():
    torch.manual_seed(0)
    gan = genzoo.build("gan", data_shape=(6,), latent_dim=2, hidden=(16,))
    gan.eval()
    z_true = torch.randn(5, 2)
    with torch.no_grad():
        x = gan.generate(z_true)
    z = infer_latent(gan, x, steps=400, lr=0.05, restarts=3, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        err = ((gan.generate(z) - x) ** 2).sum(1)
    assert float(err.max()) < 1e-3
    assert all(p.requires_grad for p in gan.parameters())  # weights handed back trainable
    frozen = next(gan.parameters())
    frozen.requires_grad_(False)                            # ... and a weight the user froze stays frozen
    infer_latent(gan, x[:1], steps=2, restarts=1)
    assert not frozen.requires_grad and sum(not p.requires_grad for p in gan.parameters()) == 1


def test_projection_refuses_a_batch_of_another_shape():
    """(B, H, W) images broadcast against G(z)'s (B, 1, H, W): every latent fitted the mean of all the images."""
    from genzoo.errors import DataError

    for name in ("gan", "gmmn"):
        model = genzoo.build(name, data_shape=(1, 8, 8), latent_dim=2, hidden=(8,))
        for shape in ((3, 8, 8), (3, 64), (3, 1, 1, 8)):
            with pytest.raises(DataError, match=r"examples of shape \(1, 8, 8\)"):
                infer_latent(model, torch.rand(shape), steps=1, restarts=1)


def test_arithmetic_is_the_mean_difference_of_concepts():
    vae = genzoo.build("vae", data_shape=(1, 8, 8), latent_dim=3, hidden=(16,))
    x = load_dataset("digits", "test", n=9).x
    z, images = arithmetic(vae, x[:3], x[3:6], x[6:])
    mean = lambda e: vae.encode(e).mean.mean(0)
    assert torch.allclose(z[3], mean(x[:3]) - mean(x[3:6]) + mean(x[6:]), atol=1e-6)
    assert images.shape == (4, 1, 8, 8) and float(images.min()) >= 0 and float(images.max()) <= 1


def test_cli_interpolate_writes_strips_and_arithmetic(tmp_path, capsys):
    rd = tmp_path / "vae"
    assert main(["train", "vae", "--steps", "30", "--run-dir", str(rd), "--no-progress", "--set", "latent_dim=4"]) == 0
    assert main(["interpolate", str(rd), "--pairs", "2", "--between", "0", "1", "--steps", "5"]) == 0
    img = np.asarray(Image.open(rd / "interpolation.png"))
    assert img.shape[0] > img.shape[1] / 5 * 2  # three rows of five 8x8 images
    assert main(["interpolate", str(rd), "--arithmetic", "0,1,2-3,4,5+6,7,8", "-o", str(tmp_path / "a.png")]) == 0
    assert (tmp_path / "a.png").is_file()
    capsys.readouterr()
    assert main(["interpolate", str(rd), "--arithmetic", "0,1-2"]) == 2
    assert "A-B+C" in capsys.readouterr().err
    assert main(["interpolate", str(rd), "--between", "0", "100000"]) == 2
    capsys.readouterr()
    assert main(["interpolate", str(rd), "--arithmetic", "0,,1-2+3"]) == 2  # the empty item was dropped
    assert "comma-separated test indices" in capsys.readouterr().err
    for extra in (["--between", "0", "1"], ["--pairs", "2"]):  # was: silently dropped, arithmetic.png alone
        assert main(["interpolate", str(rd), "--arithmetic", "0-1+2", *extra]) == 2
        assert "--arithmetic makes its own picture" in capsys.readouterr().err


def test_cli_interpolate_refuses_models_without_latents(tmp_path, capsys):
    rd = tmp_path / "gmm"
    assert main(["train", "gmm", "--steps", "3", "--run-dir", str(rd), "--no-progress", "--set", "covariance=diag"]) == 0
    capsys.readouterr()
    assert main(["interpolate", str(rd)]) == 2
    assert "no latent space" in capsys.readouterr().err


def test_latents_of_the_wrong_size_or_empty_concepts_are_config_errors():
    gan = genzoo.build("gan", data_shape=(1, 8, 8), latent_dim=4, hidden=(8,))
    with pytest.raises(ConfigError, match=r"latents of shape \(N, 4\), got \(3, 8\)"):
        interpolate(gan, torch.zeros(8), torch.ones(8), steps=3)
    assert interpolate(gan, torch.zeros(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64), steps=3).shape == (3, 1, 8, 8)
    with pytest.raises(ConfigError, match="at least one exemplar"):
        arithmetic(gan, torch.zeros(0, 1, 8, 8), torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8))


def test_the_apps_and_evaluation_leave_the_models_mode_as_they_found_it():
    """evaluate, likelihood_report, interpolate, infer_latent and inpaint switched a model to eval mode for good."""
    from genzoo.apps.inpaint import inpaint
    from genzoo.eval import evaluate
    from genzoo.eval.likelihood import likelihood_report

    vae = genzoo.build("vae", data_shape=(1, 8, 8), latent_dim=2, hidden=(8,))
    test = load_dataset("digits", "test", binarize=True, n=8)
    x = test.transformed(torch.Generator().manual_seed(0))
    mask = torch.ones(1, 1, 8, 8)
    mask[..., 2:6, 2:6] = 0
    calls = [lambda: evaluate(vae, {"name": "digits", "binarize": True}, metrics="nll", n=8, iwae_k=2, progress=False),
             lambda: likelihood_report(vae, test, iwae_k=2, progress=False),
             lambda: interpolate(vae, torch.zeros(2), torch.ones(2), steps=3),
             lambda: infer_latent(vae, x),
             lambda: inpaint(vae, x[:2], mask, steps=2, restarts=1)]
    for call in calls:
        vae.train()
        vae.decoder.eval()  # a mixed state comes back as it was, module by module
        call()
        assert vae.training and vae.encoder.training and not vae.decoder.training


def test_generate_converts_latents_for_a_users_own_model():
    """A user's registered generator gets latents in its own dtype, as genzoo's families convert them themselves."""
    from torch import nn
    from torch.distributions import Independent, Normal

    from genzoo.apps.interpolate import generate

    class Mine(genzoo.GenerativeModel):  # not registered: the contract's methods suffice
        name = "mine"

        def __init__(self):
            super().__init__()
            self.data_shape, self.latent_dim, self.net = (2,), 3, nn.Linear(3, 2)

        @property
        def prior(self):
            return Independent(Normal(torch.zeros(3, dtype=self.net.weight.dtype), 1.0), 1)

        def generate(self, z):
            return self.net(z)

    m = Mine().double()
    z = torch.randn(4, 3)
    out = generate(m, z)  # float32 latents for a float64 model: a torch error before
    assert out.dtype == torch.float32 and torch.equal(out, m.net(z.double()).float())


def test_cli_interpolate_reads_a_dequantized_flows_test_images_at_their_levels_centres(tmp_path, monkeypatch):
    """A flow of dequantized data, (v + u) / L, encoded the test images as stored, v / (L - 1), whose 0s and 1s it
    never saw: RealNVP's logit sent them to +-13.8, the latents came out 150x the prior's scale (1,209 against
    sqrt(64) = 8 here; 42,847 against 28 on MNIST, whose strips were black between their ends), and the strips'
    ends were not the test images."""
    import genzoo.viz
    from genzoo.data.transforms import level_centres

    rd = tmp_path / "rnvp"
    assert main(["train", "realnvp", "--steps", "30", "--run-dir", str(rd), "--no-progress"]) == 0
    model, test = genzoo.load(rd), load_dataset("digits", "test")
    assert test.dequantize is False and test.levels == 17  # (the run's recipe dequantizes)
    with torch.no_grad():
        norm = lambda x: model.encode(x).flatten(1).norm(dim=1).median().item()
        assert norm(level_centres(test.x[:8], 17)) < 2 * 8 < 100 * 8 < norm(test.x[:8])
    got = []
    monkeypatch.setattr(genzoo.viz, "save_grid", lambda x, *a, **k: got.append(x))
    assert main(["interpolate", str(rd), "--between", "0", "1", "--pairs", "0", "--steps", "5"]) == 0
    strip = got[0]  # (5, 1, 8, 8): the ends are the test images themselves, the frames between on their levels
    assert torch.equal(strip[0], test.x[0]) and torch.equal(strip[-1], test.x[1])
    assert torch.equal(strip, torch.round(strip * 16) / 16)
    # the rows between prior draws on the levels too (drawn as made, 175 greys where the digits have 17), and
    # inpaint's G(z*) row
    assert main(["interpolate", str(rd), "--pairs", "2", "--steps", "4"]) == 0
    assert torch.equal(got[1], torch.round(got[1] * 16) / 16)
    assert main(["inpaint", str(rd), "--method", "search", "--steps", "2", "--restarts", "1", "--no-progress"]) == 0
    made = got[2][16:24]  # rows of 8: the images, the masked inputs, G(z*), the blend (RGB)
    assert torch.equal(made, torch.round(made * 16) / 16)


class _Prior:
    """A user's model as draw_prior sees it: a latent size and a prior (audit 107)."""

    name, latent_dim = "mine", 3

    def __init__(self, prior):
        self.prior = prior


def test_draw_prior_draws_the_priors_own_parameters():
    """draw_prior looked only at the prior's type: any Normal was drawn as N(0, I) (a prior N(3, 0.1^2) came out of
    mean 0, std 1) and anything else as the standard logistic (a Uniform(-1, 1) prior: 53% of draws outside it)."""
    from torch.distributions import Cauchy, Independent, MultivariateNormal, Normal, Uniform

    from genzoo.apps.interpolate import draw_prior

    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    z = draw_prior(_Prior(Independent(Normal(torch.full((3,), 3.0), torch.full((3,), 0.1)), 1)), 10_000, g())
    assert z.shape == (10_000, 3) and abs(float(z.mean()) - 3) < 0.01 and abs(float(z.std()) - 0.1) < 0.01
    z = draw_prior(_Prior(Independent(Uniform(-torch.ones(3), torch.ones(3)), 1)), 10_000, g())
    assert float(z.abs().max()) < 1 and float(z.min()) < -0.99 and float(z.max()) > 0.99
    z = draw_prior(_Prior(Normal(torch.zeros(3), 2.0)), 10_000, g())  # a plain Normal, a scalar scale broadcast
    assert abs(float(z.std()) - 2) < 0.05
    assert torch.isfinite(draw_prior(_Prior(Independent(Cauchy(torch.zeros(3), torch.ones(3)), 1)), 1000, g())).all()
    with pytest.raises(ConfigError, match=r"mine's prior MultivariateNormal cannot be drawn"):
        draw_prior(_Prior(MultivariateNormal(torch.zeros(3), torch.eye(3))), 4, g())
    with pytest.raises(ConfigError, match=r"Independent\(Normal\) does not give latents of shape \(3,\)"):
        draw_prior(_Prior(Independent(Normal(torch.zeros(4), torch.full((4,), 2.0)), 1)), 4, g())
    # genzoo's own priors, standard normal and logistic, drawn bit for bit as before
    gan = genzoo.build("gan", data_shape=(1, 8, 8), latent_dim=4, hidden=(8,))
    assert torch.equal(draw_prior(gan, 5, g()), torch.randn(5, 4, generator=g()))
    nice = genzoo.build("nice", data_shape=(2,), hidden=(8,), base="logistic")
    u = torch.rand(5, 2, generator=g()).clamp(1e-6, 1 - 1e-6)
    assert torch.equal(draw_prior(nice, 5, g()), torch.log(u) - torch.log1p(-u))


def test_projection_pulls_towards_the_models_own_prior():
    """The projection's pull was prior_weight |z|^2 / 2 whatever the prior: towards 0 for a prior N(3, 0.1^2)."""
    from torch import nn
    from torch.distributions import Independent, Normal

    class Flat(nn.Module):  # a generator whose image says nothing of z: the pull alone moves it
        name, data_shape, latent_dim = "flat", (2,), 3

        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(3, 2))

        device = property(lambda self: self.w.device)
        prior = property(lambda self: Independent(Normal(torch.full((3,), 3.0), torch.full((3,), 0.1)), 1))

        def check_input(self, x):
            return x

        def generate(self, z):
            return z @ self.w

    z = infer_latent(Flat(), torch.zeros(4, 2), steps=50, lr=0.05, restarts=1, prior_weight=1.0,
                     generator=torch.Generator().manual_seed(0))
    assert (z - 3).abs().max() < 0.2


def test_a_row_the_prior_refuses_leaves_the_other_rows_their_pull():
    """One diverged row (NaN) or one outside a Uniform's support made the whole batch's -log p(z) NaN, so every row's
    search lost the prior's pull for that step."""
    from torch.distributions import Independent, Normal, Uniform

    from genzoo.apps.interpolate import _neg_log_prior

    check = {"validate_args": True}  # (importing torch._dynamo turns torch's default validation off for the process)
    for prior, bad in ((Independent(Normal(torch.zeros(2), torch.ones(2), **check), 1, **check), [float("nan"), 0.0]),
                       (Independent(Uniform(-torch.ones(2), torch.ones(2), **check), 1, **check), [2.0, 0.0])):
        z = torch.tensor([[0.5, -0.5], bad, [0.1, 0.2]], requires_grad=True)  # (3, 2): row 1 refused
        pull = _neg_log_prior(prior, z)  # (3,)
        assert torch.isnan(pull[1])
        assert torch.allclose(pull[[0, 2]], -prior.log_prob(z.detach()[[0, 2]]))
        if isinstance(prior.base_dist, Normal):  # (a Uniform's log-density is flat: no gradient)
            pull[[0, 2]].sum().backward()
            assert torch.allclose(z.grad[[0, 2]], z.detach()[[0, 2]])  # d(|z|^2 / 2)/dz: the pull is there


def test_the_projection_leaves_the_callers_generator_where_it_was():
    """The projection's starts advanced the caller's generator, so `interpolate`'s prior rows of a GAN or GMMN, drawn
    from it after the projections of --between, changed with --between (a VAE's and a flow's did not)."""
    from genzoo.apps.interpolate import draw_prior

    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    gan = genzoo.build("gan", data_shape=(1, 8, 8), latent_dim=2, hidden=(8,))
    infer_latent(gan, torch.rand(2, 1, 8, 8), steps=2, restarts=2, generator=g)
    assert torch.equal(g.get_state(), state)  # the prior rows drawn next are those drawn without the projection
    assert torch.equal(draw_prior(gan, 2, g), draw_prior(gan, 2, torch.Generator().manual_seed(0)))


# -- audit 135 (mutation testing): each test below kills a mutant the suite let through ----------


def test_slerp_of_close_ends_stays_on_the_great_circle():
    """slerp falls back to lerp only for (anti)parallel ends, where the great circle is undefined: ends 5 degrees
    apart in a plane follow the arc (the rotation by t omega), with the norm kept to 1e-9, not the chord."""
    from genzoo.apps.interpolate import slerp

    w = math.radians(5)
    z0, z1 = torch.tensor([1.0, 0.0], dtype=torch.float64), torch.tensor([math.cos(w), math.sin(w)], dtype=torch.float64)
    t = torch.linspace(0, 1, 5, dtype=torch.float64)
    ref = torch.stack([torch.cos(t * w), torch.sin(t * w)], 1)
    assert torch.allclose(slerp(z0, z1, t), ref, atol=1e-12)
