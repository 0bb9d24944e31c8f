import json
import math

import pytest
import torch
from torch import nn

import genzoo
import genzoo.train
from genzoo.data import load_dataset
from genzoo.errors import ConfigError, DataError
from genzoo.models.gan import GAN, WGAN


pytestmark = pytest.mark.usefixtures("one_thread")


def _sum_critic(model):
    """Replace the critic by v(x) = sum of x, so that losses can be computed by hand."""
    model.critic = lambda x: x.reshape(x.shape[0], -1).sum(-1)
    return model


REAL, FAKE = torch.tensor([[0.0], [1.0]]), torch.tensor([[-1.0], [2.0]])  # critic scores [0, 1] and [-1, 2]


def sp(v):
    return math.log1p(math.exp(v))


def test_gan_losses_by_hand():
    m = _sum_critic(genzoo.build("gan", data_shape=(1,), latent_dim=1, hidden=(4,)))
    loss, logs = m.discriminator_loss(REAL, FAKE)
    # -[mean log sigmoid(v_real) + mean log(1 - sigmoid(v_fake))], log sigmoid(v) = -softplus(-v)
    want = (sp(-0.0) + sp(-1.0)) / 2 + (sp(-1.0) + sp(2.0)) / 2
    assert float(loss) == pytest.approx(want, rel=1e-6)
    assert float(logs["js"]) == pytest.approx((-want + math.log(4)) / 2, rel=1e-6)
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    assert float(logs["d_real"]) == pytest.approx((sig(0) + sig(1)) / 2)
    assert float(logs["d_fake"]) == pytest.approx((sig(-1) + sig(2)) / 2)
    assert float(logs["d_acc"]) == pytest.approx(0.5 * (0.5 + 0.5))  # v=0 counts as wrong; -1 right, 2 wrong
    v = torch.tensor([-1.0, 2.0])
    assert float(m.generator_loss(v)) == pytest.approx((sp(1.0) + sp(-2.0)) / 2)  # -log D(G(z))
    m.g_loss_kind = "minimax"
    assert float(m.generator_loss(v)) == pytest.approx(-(sp(-1.0) + sp(2.0)) / 2)  # log(1 - D(G(z)))


def test_one_sided_label_smoothing_by_hand():
    m = _sum_critic(genzoo.build("gan", data_shape=(1,), latent_dim=1, hidden=(4,), label_smoothing=0.1))
    loss, _ = m.discriminator_loss(REAL, FAKE)
    bce = lambda v, t: t * sp(-v) + (1 - t) * sp(v)  # noqa: E731
    want = (bce(0, 0.9) + bce(1, 0.9)) / 2 + (bce(-1, 0) + bce(2, 0)) / 2  # fake targets stay 0
    assert float(loss) == pytest.approx(want, rel=1e-6)


def test_label_flip_rate():
    m = _sum_critic(genzoo.build("gan", data_shape=(1,), latent_dim=1, hidden=(4,), label_flip=0.2))
    torch.manual_seed(0)
    big = torch.full((20000, 1), 30.0)  # D is sure these are real: each flipped label costs 30 nats
    loss, _ = m.discriminator_loss(big, -big)
    assert float(loss) / 30 == pytest.approx(2 * 0.2, abs=0.02)


def test_label_flip_with_smoothing_keeps_the_smoothing_one_sided(monkeypatch):
    """label_flip flipped the smoothed targets, t -> 1 - t: flipped reals got 0.2 (smoothing on the fake side, which
    Salimans et al. warn against) and flipped fakes 1.0. A flipped example now takes its new class's target."""
    import torch.nn.functional as F

    import genzoo.models.gan as gan

    m = _sum_critic(genzoo.build("gan", data_shape=(1,), latent_dim=1, hidden=(4,), label_smoothing=0.2,
                                 label_flip=0.3))
    targets, bce = [], F.binary_cross_entropy_with_logits
    monkeypatch.setattr(gan.F, "binary_cross_entropy_with_logits", lambda v, t: targets.append(t) or bce(v, t))
    torch.manual_seed(0)
    m.discriminator_loss(torch.ones(20000, 1), -torch.ones(20000, 1))
    t_real, t_fake = targets
    for t in (t_real, t_fake):
        assert torch.allclose(t.unique(), torch.tensor([0.0, 0.8]))  # never 0.2 or 1.0
    assert float((t_real == 0).double().mean()) == pytest.approx(0.3, abs=0.02)
    assert float((t_fake > 0).double().mean()) == pytest.approx(0.3, abs=0.02)


def test_an_affine_gan_fits_a_gaussian_far_from_the_origin():
    """arch='affine' did not standardise vector data: the Gaussian started at N(0, 1) in data units, and Adam's steps
    of about the lr carried an f-GAN of data centred at 20 to 0.08 in 2,000 steps."""
    data = load_dataset("mixture1d", n=5000, means=[18.0, 22.0], stds=[1.0, 1.0])
    m = genzoo.build("fgan", data_shape=(1,), latent_dim=1, arch="affine", hidden=(16,))
    genzoo.fit(m, data, steps=200, batch_size=256, progress=False)
    mean, std = m.gaussian()
    assert abs(float(mean) - 20) < 0.5 and 1 < float(std) < 4
    x = m.eval().sample(4000, torch.Generator().manual_seed(0))
    assert abs(float(x.mean()) - float(mean)) < 0.2
    with pytest.raises(ConfigError, match="affine generator"):
        genzoo.build("gan", data_shape=(2,), hidden=(4,)).gaussian()


def test_wgan_losses_by_hand():
    m = _sum_critic(genzoo.build("wgan", data_shape=(1,), latent_dim=1, hidden=(4,), penalty="clip"))
    loss, logs = m.discriminator_loss(REAL, FAKE)
    assert float(logs["wasserstein"]) == pytest.approx(0.5 - 0.5) and float(loss) == pytest.approx(0.0)
    assert float(m.generator_loss(torch.tensor([-1.0, 2.0]))) == pytest.approx(-0.5)


def test_gradient_penalty_against_closed_forms_and_autograd():
    m = genzoo.build("wgan", data_shape=(3,), latent_dim=3, hidden=(8,))
    a = torch.tensor([[3.0, 4.0, 0.0], [0.3, 0.0, 0.4]])
    m.critic = lambda x: 0.5 * x.pow(2).sum(-1)  # grad f(x) = x, and x_hat = a when real = fake = a
    assert float(m.gradient_penalty(a, a).detach()) == pytest.approx(((5 - 1) ** 2 + (0.5 - 1) ** 2) / 2, rel=1e-6)
    # an MLP critic: the penalty equals the one computed example by example with autograd's Jacobian
    m = genzoo.build("wgan", data_shape=(3,), latent_dim=3, hidden=(8, 8))
    real, fake = torch.randn(5, 3), torch.randn(5, 3)
    torch.manual_seed(3)
    gp = m.gradient_penalty(real, fake)
    torch.manual_seed(3)
    eps = torch.rand(5, 1)
    x_hat = eps * real + (1 - eps) * fake
    norms = [torch.autograd.functional.jacobian(lambda x: m.critic(x[None])[0], x_hat[i]).norm() for i in range(5)]
    assert float(gp.detach()) == pytest.approx(float(sum((n - 1) ** 2 for n in norms) / 5), rel=1e-5)
    gp.backward()  # the penalty's own gradient reaches every critic weight (double backward)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.discriminator.parameters() if p.dim() > 1)


def test_packed_gradient_penalty_interpolates_whole_packs():
    """With pack = m the critic's input is m examples side by side; eps was drawn per example, so a packed x_hat
    was off the segment between the real pack and the fake pack that Gulrajani et al.'s penalty is taken on."""
    m = genzoo.build("wgan", data_shape=(2,), latent_dim=2, hidden=(8,), pack=3)
    seen, critic = [], m.critic
    m.critic = lambda x: (seen.append(x.detach()), critic(x))[1]
    m.gradient_penalty(torch.zeros(12, 2), torch.ones(12, 2))
    one_minus_eps = seen[0].reshape(4, 3 * 2)             # x_hat = 1 - eps, one row per pack of 3 examples
    assert torch.equal(one_minus_eps, one_minus_eps[:, :1].expand(4, 6))  # one eps per pack ...
    assert one_minus_eps[:, 0].unique().numel() == 4                        # ... and its own for each pack


def test_weight_clipping_holds_after_every_critic_step():
    m = genzoo.build("wgan", data_shape=(2,), latent_dim=2, hidden=(16, 16), penalty="clip", clip=0.01, lr=0.05)
    opts = m.configure_optimizers()
    assert isinstance(opts[0], torch.optim.RMSprop)
    for _ in range(12):
        m.training_step(genzoo.Batch(torch.randn(64, 2) * 3), opts)
        bound = max(float(p.detach().abs().max()) for p in m.discriminator.parameters())
        assert bound <= 0.01 + 1e-9
    # a large lr moves the weights to the bound, so the clipping did something
    assert bound == pytest.approx(0.01)


def test_generator_updates_every_k_discriminator_steps():
    m = genzoo.build("wgan", data_shape=(2,), latent_dim=2, hidden=(8,), d_steps=3)
    opts = m.configure_optimizers()
    for step in range(1, 7):
        d0 = [p.detach().clone() for p in m.discriminator.parameters()]
        g0 = [p.detach().clone() for p in m.generator.parameters()]
        logs = m.training_step(genzoo.Batch(torch.randn(16, 2)), opts)
        assert any(not torch.equal(a, b) for a, b in zip(d0, m.discriminator.parameters()))  # D: every step
        moved = any(not torch.equal(a, b) for a, b in zip(g0, m.generator.parameters()))
        assert moved == (step % 3 == 0) == ("g_loss" in logs)                                # G: every 3rd
    assert int(m.updates) == 6


@pytest.mark.parametrize("name,kw", [("gan", {}), ("gan", {"arch": "dcgan", "width": 8}),
                                     ("wgan", {"arch": "dcgan", "width": 8}), ("gan", {"pack": 2}),
                                     ("gan", {"arch": "dcgan", "width": 8, "pack": 2})])
def test_shapes_gradients_and_capabilities(name, kw):
    shape = (1, 8, 8)
    m = genzoo.build(name, data_shape=shape, latent_dim=4, hidden=(16,), d_steps=1, **kw)
    x = torch.rand(8, *shape)
    s = m.sample(5, generator=torch.Generator().manual_seed(0))
    assert s.shape == (5, *shape) and float(s.min()) >= 0 and float(s.max()) <= 1  # images in [0, 1]
    assert not s.requires_grad  # samples carry no graph
    assert m.critic(m._to_net(x)).shape == (8 // m.pack,)
    assert isinstance(m, genzoo.Generator) and not isinstance(m, genzoo.Density)
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    m.training_step(genzoo.Batch(x), m.configure_optimizers())
    last_bias = "discriminator." + list(m.discriminator.named_parameters())[-1][0]
    for n, p in m.named_parameters():
        if name == "wgan" and n == last_bias:  # E f(x) - E f(G(z)) does not depend on the critic's offset
            continue
        assert not torch.equal(before[n], p), f"{n} was not updated"


def test_dcgan_follows_radford_rules():
    m = genzoo.build("gan", data_shape=(1, 28, 28), arch="dcgan", latent_dim=10)
    g, d = list(m.generator.modules()), list(m.discriminator.modules())
    assert not any(isinstance(x, (nn.MaxPool2d, nn.AvgPool2d)) for x in g + d)  # no pooling
    assert isinstance(m.generator.net[-1], nn.Tanh) and sum(isinstance(x, nn.ReLU) for x in g) == 2
    assert sum(isinstance(x, nn.LeakyReLU) for x in d) == 2
    assert isinstance(d[2], nn.Conv2d) and isinstance(d[3], nn.LeakyReLU)  # no batch norm on D's input layer
    assert sum(isinstance(x, nn.BatchNorm2d) for x in g) == 2 and sum(isinstance(x, nn.BatchNorm2d) for x in d) == 1
    assert sum(isinstance(x, nn.ConvTranspose2d) for x in g) == 2  # fractionally strided convolutions
    wgp = genzoo.build("wgan", data_shape=(1, 28, 28), arch="dcgan", penalty="gp")
    assert not any(isinstance(x, nn.BatchNorm2d) for x in wgp.discriminator.modules())  # no BN in a GP critic


def test_instance_noise_decays_linearly():
    m = genzoo.build("gan", data_shape=(2,), hidden=(8,), instance_noise=0.2, instance_noise_steps=100)
    assert m.discriminator_input_noise() == pytest.approx(0.2)
    m.updates.fill_(50)
    assert m.discriminator_input_noise() == pytest.approx(0.1)
    m.updates.fill_(150)
    assert m.discriminator_input_noise() == 0.0
    assert genzoo.build("gan", data_shape=(2,), hidden=(8,)).discriminator_input_noise() == 0.0  # off by default


def test_optimal_discriminator_is_density_ratio():
    """D*(x) = p_data(x) / (p_data(x) + p_model(x)) (Goodfellow et al. 2014, Proposition 1), with a
    frozen Gaussian generator: p_data = N(0, 1), p_model = N(1, 0.7^2)."""
    torch.manual_seed(0)
    m = genzoo.build("gan", data_shape=(1,), latent_dim=1, arch="affine", hidden=(64, 64), lr=3e-3)
    with torch.no_grad():
        m.generator.mu.fill_(1.0)
        m.generator.log_sigma.fill_(math.log(0.7))
    opt = torch.optim.Adam(m.discriminator.parameters(), lr=3e-3)
    for _ in range(800):
        loss, _ = m.discriminator_loss(torch.randn(512, 1), m._fake(512).detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    x = torch.linspace(-1.5, 2.0, 50)[:, None]
    p = torch.distributions.Normal(0.0, 1.0).log_prob(x[:, 0]).exp()
    q = torch.distributions.Normal(1.0, 0.7).log_prob(x[:, 0]).exp()
    with torch.no_grad():
        d = torch.sigmoid(m.critic(x))
    assert float((d - p / (p + q)).abs().max()) < 0.05


def test_gan_learns_a_gaussian():
    data = load_dataset("mixture1d", n=4000, means=(2.0,), stds=(0.5,))
    m = genzoo.build("gan", data_shape=(1,), latent_dim=1, hidden=(32, 32), lr=1e-3)
    genzoo.fit(m, data, steps=1500, batch_size=256, progress=False)
    s = m.sample(20000, generator=torch.Generator().manual_seed(0))[:, 0]
    assert abs(float(s.mean()) - 2.0) < 0.1 and abs(float(s.std()) - 0.5) < 0.1


def test_save_load_and_exact_resume(tmp_path):
    data = load_dataset("ring", n=512)
    kw = dict(data_shape=(2,), latent_dim=2, hidden=(16,), d_steps=2, instance_noise=0.1, instance_noise_steps=30)
    torch.manual_seed(0)
    a = genzoo.build("gan", **kw)
    genzoo.fit(a, data, steps=20, batch_size=64, progress=False, run_dir=tmp_path / "a")
    torch.manual_seed(0)
    b = genzoo.build("gan", **kw)
    genzoo.fit(b, data, steps=10, batch_size=64, progress=False, run_dir=tmp_path / "b", checkpoint_every=10)
    b = genzoo.build("gan", **kw)
    genzoo.fit(b, data, steps=20, batch_size=64, progress=False, run_dir=tmp_path / "b", resume=True)
    for (n, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), n
    c = genzoo.load(tmp_path / "a")
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    a.eval()
    assert torch.equal(a.sample(10, g()), c.sample(10, g())) and int(c.updates) == 20


def _steps(model, n, batch=16):
    """n training steps (d_steps=1: n generator updates); the generator's weights after each."""
    opts = model.configure_optimizers()
    after = []
    for _ in range(n):
        model.training_step(genzoo.Batch(torch.randn(batch, 2)), opts)
        after.append({k: v.detach().clone() for k, v in model.generator.named_parameters()})
    return after


def test_ema_with_decay_zero_is_the_generator():
    torch.manual_seed(0)
    m = genzoo.build("gan", data_shape=(2,), latent_dim=2, hidden=(8,), g_ema=0.0)
    last = _steps(m, 3)[-1]
    ema = dict(m.generator_ema.named_buffers())
    assert ema.keys() == last.keys() and all(torch.equal(ema[k], last[k]) for k in last)
    m.eval()
    z = torch.randn(7, 2)
    assert torch.equal(m.generate(z), m._from_net(m.generator(z)))


def test_ema_is_the_hand_computed_average():
    torch.manual_seed(0)
    beta = 0.7
    m = genzoo.build("gan", data_shape=(2,), latent_dim=2, hidden=(4,), lr=0.05, g_ema=beta)
    start = {k: v.detach().clone() for k, v in m.generator.named_parameters()}
    after = _steps(m, 4)
    for k, w0 in start.items():  # beta^4 w0 + (1 - beta) sum_t beta^(4 - t) w_t (Yazici et al. 2019, eq. 2)
        want = beta ** 4 * w0 + sum((1 - beta) * beta ** (4 - t) * after[t - 1][k] for t in range(1, 5))
        assert torch.allclose(dict(m.generator_ema.named_buffers())[k], want, atol=1e-6), k
        assert not torch.allclose(want, after[-1][k])  # the average is not the last generator
    m.eval()  # sampling uses the average in eval mode, the trained generator while training
    z = torch.randn(5, 2)
    assert torch.equal(m.generate(z), m._from_net(m.generator_ema(z)))
    m.train()
    assert torch.equal(m.generate(z), m._from_net(m.generator(z)))


def test_ema_weights_are_saved_buffers_not_parameters(tmp_path):
    plain = genzoo.build("gan", data_shape=(2,), latent_dim=2, hidden=(8,))
    torch.manual_seed(0)
    m = genzoo.build("gan", data_shape=(2,), latent_dim=2, hidden=(8,), g_ema=0.5, rejection=True)
    assert sum(p.numel() for p in m.parameters()) == sum(p.numel() for p in plain.parameters()) + sum(
        p.numel() for p in m.rejector.parameters())  # not optimised, not counted
    _steps(m, 3)
    genzoo.save(m, tmp_path)
    c = genzoo.load(tmp_path)
    assert c.g_ema == 0.5
    for k, v in m.generator_ema.named_buffers():
        assert torch.equal(dict(c.generator_ema.named_buffers())[k], v), k
    m.eval(), c.eval()
    g = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    assert torch.equal(m.sample(20, g()), c.sample(20, g()))  # rejection sampling from the average


def test_generator_hidden_sizes():
    m = genzoo.build("gan", data_shape=(2,), latent_dim=3, hidden=(8,), g_hidden=(16, 16))
    g_sizes = [lin.out_features for lin in m.generator.modules() if isinstance(lin, nn.Linear)]
    d_sizes = [lin.out_features for lin in m.discriminator.modules() if isinstance(lin, nn.Linear)]
    assert g_sizes == [16, 16, 2] and d_sizes == [8, 1]


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="dcgan"):
        genzoo.build("gan", data_shape=(2,), arch="dcgan")
    with pytest.raises(ConfigError, match="affine"):
        genzoo.build("gan", data_shape=(2,), arch="affine", latent_dim=3)
    with pytest.raises(ConfigError):
        genzoo.build("gan", data_shape=(2,), label_flip=0.7)
    with pytest.raises(ConfigError, match="g_ema"):
        genzoo.build("gan", data_shape=(2,), g_ema=1.0)
    with pytest.raises(ConfigError, match="pack"):
        m = genzoo.build("gan", data_shape=(2,), pack=8)
        m.training_step(genzoo.Batch(torch.randn(4, 2)), m.configure_optimizers())
    assert isinstance(genzoo.build("gan", data_shape=(2,)), GAN) and isinstance(genzoo.build("wgan", data_shape=(2,)), WGAN)
    with pytest.raises(ConfigError, match="multiple of pack \\(3\\): the batch is the whole set of 100 examples, which "
                                          "is smaller than batch_size 256"):  # the user gave no 100
        genzoo.fit(genzoo.build("gan", data_shape=(2,), pack=3), load_dataset("ring", n=100), steps=1, batch_size=256,
                   progress=False)


def test_cli_trains_a_gan_and_lists_benchmarks(tmp_path, capsys):
    from genzoo.cli import main

    run = tmp_path / "run"
    assert main(["train", "gan", "--steps", "40", "--sample-every", "20", "--run-dir", str(run), "--no-progress",
                 "--set", "pack=2", "--set", "data.n=512"]) == 0
    assert sorted(p.name for p in (run / "samples").glob("*.png")) == ["step-00000020.png", "step-00000040.png"]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {"d_real", "d_fake", "d_acc", "js", "g_loss"} <= rows[-1].keys()
    assert main(["sample", str(run), "-n", "100"]) == 0 and (run / "samples.png").is_file()
    assert main(["bench"]) == 0
    assert "modes" in capsys.readouterr().out
    assert main(["bench", "mode"]) == 2
    assert "did you mean 'modes'" in capsys.readouterr().err
    assert main(["bench", "nice-mnist", "--minutes", "0"]) == 2
    assert "--minutes must be > 0" in capsys.readouterr().err


def test_cli_trains_a_wgan_gp_with_validation_metrics(tmp_path):
    """Validation runs under no_grad; the gradient penalty must still be computable there."""
    from genzoo.cli import main

    run = tmp_path / "run"
    assert main(["train", "wgan", "--steps", "10", "--run-dir", str(run), "--no-progress", "--set", "data.n=256"]) == 0
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"valid_wasserstein", "valid_gp"} <= last.keys() and math.isfinite(last["valid_gp"])


@pytest.mark.parametrize("divergence", ["kl", "reverse_kl", "js", "jeffrey", "pearson", "hellinger", "gan"])
def test_fgan_fits_a_gaussian_with_every_divergence(divergence):
    """Every f-divergence is minimised by the truth: the affine f-GAN x = mu + sigma z trained on
    N(1.5, 0.5^2) from N(0, 1) (in data units; setup would start it at the data's mean and std) ends at it."""

    class FromStandardNormal(genzoo.train.Callback):
        def on_start(self, state):  # after setup's standardisation: the generator's N(0, 1) in data units
            g, loc, scale = state.model.generator, state.model.data_loc, state.model.data_scale
            with torch.no_grad():
                g.mu.copy_(-loc / scale)
                g.log_sigma.copy_(-scale.log())

    data = load_dataset("mixture1d", n=20_000, seed=0, means=(1.5,), stds=(0.5,), weights=(1.0,))
    torch.manual_seed(0)
    m = genzoo.build("fgan", data_shape=(1,), latent_dim=1, arch="affine", hidden=(32, 32),
                     d_activation="leaky_relu", divergence=divergence, lr=1e-2)
    state = genzoo.fit(m, data, steps=1500, batch_size=256, seed=0, progress=False, lr_schedule="cosine",
                       callbacks=[FromStandardNormal()])
    assert state.step == 1500
    mean, std = m.gaussian()
    assert float(mean) == pytest.approx(1.5, abs=0.05) and float(std) == pytest.approx(0.5, abs=0.05)


def test_a_channels_last_dcgan_resumes_bitwise(tmp_path):
    """Adam's moments of channels-last weights are saved contiguous; fused Adam pairs elements by memory position,
    so a resume that kept the saved layout scrambled every later update (weights off by up to 5e-3 after 17 steps)."""
    data = load_dataset("digits", n=256)
    kw = dict(data_shape=(1, 8, 8), arch="dcgan", width=8, latent_dim=8)
    fit = dict(batch_size=16, progress=False, channels_last=True, seed=1)
    torch.manual_seed(0)
    a = genzoo.build("gan", **kw)
    genzoo.fit(a, data, steps=24, run_dir=tmp_path / "a", **fit)
    torch.manual_seed(0)
    b = genzoo.build("gan", **kw)
    genzoo.fit(b, data, steps=7, run_dir=tmp_path / "b", checkpoint_every=7, **fit)
    b = genzoo.build("gan", **kw)
    genzoo.fit(b, data, steps=24, run_dir=tmp_path / "b", resume=True, **fit)
    assert any(p.dim() == 4 and p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
               for p in b.parameters())  # the layout under test
    for (n, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), n


def test_pack_must_divide_the_batch_before_anything_is_written(tmp_path):
    data = load_dataset("ring", n=256)
    for pack, batch in ((3, 64), (300, 64)):
        with pytest.raises(ConfigError, match=f"batch_size {batch} .* multiple of pack \\({pack}\\)"):
            genzoo.fit(genzoo.build("gan", data_shape=(2,), pack=pack), data, steps=2, batch_size=batch, progress=False,
                       run_dir=tmp_path / "r")
        assert not (tmp_path / "r").exists()
    genzoo.fit(genzoo.build("gan", data_shape=(2,), pack=4, hidden=(8,)), data, steps=2, batch_size=64, progress=False)


@pytest.mark.parametrize("name", ["gan", "wgan", "gmmn"])
def test_loss_checks_the_example_shape_and_converts_dtypes(name):
    m = genzoo.build(name, data_shape=(2,))
    assert m.loss(torch.randn(8, 2, dtype=torch.float64))["loss"].dtype == torch.float32
    with pytest.raises(DataError, match=r"models examples of shape \(2,\), got a batch of shape \(8, 3\)"):
        m.loss(torch.randn(8, 3))  # was a raw RuntimeError from a matrix product


def test_options_the_penalty_makes_idle_are_noted(tmp_path, capsys):
    from genzoo.cli import main

    assert main(["train", "wgan", "--set", "penalty=clip", "--set", "betas=[0.5,0.9]", "--set", "gp_weight=5", "--steps", "2",
                 "--set", "hidden=[8]", "--run-dir", str(tmp_path / "a"), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "wgan ignores gp_weight with penalty=clip" in err and "ignores betas" in err  # accepted without a word before
    assert main(["train", "wgan", "--set", "clip=0.02", "--steps", "2", "--set", "hidden=[8]", "--run-dir",
                 str(tmp_path / "b"), "--no-progress"]) == 0
    assert "wgan ignores clip with penalty=gp" in capsys.readouterr().err
    assert main(["train", "wgan", "--steps", "2", "--set", "hidden=[8]", "--run-dir", str(tmp_path / "c"), "--no-progress"]) == 0
    assert "ignores" not in capsys.readouterr().err  # nothing given, nothing noted


# -- the audit's API findings ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name,kw", [("gan", {"data_shape": (2,)}), ("wgan", {"data_shape": (2,)}),
                                     ("fgan", {"data_shape": (2,)}),
                                     ("gan", {"data_shape": (1, 8, 8), "arch": "dcgan", "width": 8, "latent_dim": 4})])
def test_generate_checks_the_latents_and_keeps_leading_dimensions(name, kw):
    """Latents of another width failed inside torch ("mat1 and mat2 shapes"), float64 ones too, and extra leading
    dimensions were flattened ((2, 3, L) -> (6, ...)) where the VAE and the GMMN keep them."""
    m = genzoo.build(name, **kw).eval()
    L = m.latent_dim
    for bad in (torch.randn(3, L + 1), torch.randn(L), torch.randn(0, L), [[0.0] * L]):
        with pytest.raises(DataError, match="latents must be a torch.Tensor|no latents"):
            m.generate(bad)
    z = torch.randn(2, 3, L)
    out = m.generate(z)
    assert out.shape == (2, 3, *m.data_shape)
    torch.testing.assert_close(out.reshape(6, *m.data_shape), m.generate(z.reshape(6, L)))
    assert m.generate(z.double()).dtype == torch.float32
    assert m.generate(torch.ones(3, L, dtype=torch.long)).shape == (3, *m.data_shape)


def test_losses_of_an_empty_batch_are_data_errors():
    """The losses of an empty batch (or one smaller than pack) were NaN."""
    for name in ("gan", "wgan", "fgan"):
        m = genzoo.build(name, data_shape=(2,))
        with pytest.raises(DataError, match="empty batch"):
            m.loss(torch.zeros(0, 2))
    with pytest.raises(DataError, match=r"at least pack \(2\)"):
        genzoo.build("gan", data_shape=(2,), pack=2).loss(torch.zeros(1, 2))


def test_rejection_sampling_restores_the_mode_when_it_fails():
    m = genzoo.build("gan", data_shape=(2,), hidden=(8,), rejection=True).train()

    class Broken(nn.Module):
        def forward(self, x):
            raise RuntimeError("broken")

    m.rejector = Broken()
    with pytest.raises(RuntimeError, match="broken"):
        m.sample(3)
    assert m.training


def test_fgan_choices_are_literals():
    """divergence and d_activation were annotated str: `genzoo models fgan` showed no choices."""
    import typing

    hints = typing.get_type_hints(genzoo.models.gan.FGAN.__init__)
    assert set(typing.get_args(hints["divergence"])) == set(genzoo.divergences.DIVERGENCES)
    assert set(typing.get_args(hints["d_activation"])) == set(genzoo.nn.ACTIVATIONS)
    with pytest.raises(ConfigError, match="fgan.divergence: choose one of kl, reverse_kl"):
        genzoo.build("fgan", data_shape=(2,), divergence="chi2")
    with pytest.raises(ConfigError, match=r"did you mean 'kl'\?"):
        genzoo.build("fgan", data_shape=(2,), divergence="kll")
    with pytest.raises(ConfigError, match="fgan.d_activation: choose one of"):
        genzoo.build("fgan", data_shape=(2,), d_activation="swish")


@pytest.mark.parametrize("name,kw,option,value", [
    ("gan", {}, "width", 3), ("gan", {}, "d_norm", "layer"),
    ("gan", {"data_shape": (1, 8, 8), "arch": "dcgan", "width": 4}, "hidden", (5,)),
    ("gan", {"data_shape": (1, 8, 8), "arch": "dcgan", "width": 4}, "g_hidden", (5,)),
    ("gan", {}, "rejection_sharpness", 3.0), ("gan", {}, "instance_noise_steps", 5),
    ("wgan", {}, "width", 3), ("wgan", {"penalty": "clip"}, "gp_weight", 1.0), ("wgan", {}, "clip", 0.5),
    ("fgan", {}, "width", 3), ("fgan", {"data_shape": (1, 8, 8), "arch": "dcgan", "width": 4}, "d_activation", "relu"),
])
def test_unused_options_are_idle(name, kw, option, value, assert_idle):
    kw = {k: v for k, v in {"data_shape": (2,), "hidden": (8,), **kw}.items() if k != option}
    x = torch.rand(8, *kw["data_shape"])
    assert_idle(name, kw, option, value, x)


def test_rejection_with_g_ema_corrects_the_averaged_generator():
    """sample() proposes from the averaged generator, so the rejector must learn log p_data / p_ema: it was trained
    against G's fakes, and with G at N(0, 1), its average at N(1, 1) and data at N(0.5, 1) the accepted samples
    had mean 1.5 (p_ema p_data / p_G) where the data's is 0.5."""
    torch.manual_seed(0)
    m = genzoo.build("gan", data_shape=(1,), latent_dim=1, arch="affine", hidden=(32,), rejection=True, g_ema=0.999)
    with torch.no_grad():
        m.generator.mu.fill_(0.0), m.generator.log_sigma.fill_(0.0)
        m.generator_ema.mu.fill_(1.0), m.generator_ema.log_sigma.fill_(0.0)
    opt = torch.optim.Adam(m.rejector.parameters(), lr=1e-2)
    m.train()
    for _ in range(150):  # the rejector alone, on the loss the discriminator step adds
        loss = m._rejector_loss(torch.randn(256, 1) + 0.5, m._fake(256).detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    logit = m.rejector(torch.tensor([[-1.0], [2.0]])).detach()
    assert logit[0] > logit[1] + 1  # log N(x; 0.5, 1) / N(x; 1, 1) = 0.375 - 0.5 x falls; against G's it would rise
    mean = float(m.sample(4000, torch.Generator().manual_seed(1)).mean())
    assert abs(mean - 0.5) < 0.15, mean  # 1.29 before (standard error ~0.02)


def test_rejection_with_g_ema_and_instance_noise():
    """The averaged generator's fakes for the rejector were clean where the reals carried the step's instance noise:
    with G = G_ema = data = N(0, 1) the accepted samples had std 1.25, not 1."""
    torch.manual_seed(0)
    m = genzoo.build("gan", data_shape=(1,), latent_dim=1, arch="affine", hidden=(32,), rejection=True, g_ema=0.999,
                     instance_noise=1.0, instance_noise_steps=10**9)
    opt = torch.optim.Adam(m.rejector.parameters(), lr=3e-3)
    m.train()
    for _ in range(300):  # the rejector alone, its inputs noised as training_step noises them
        s = m.discriminator_input_noise()
        real, fake = torch.randn(256, 1), m._fake(256).detach()
        m.input_noise_now = s
        loss = m._rejector_loss(real + s * torch.randn_like(real), fake + s * torch.randn_like(fake))
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.input_noise_now = 0.0
    m.eval()
    std = float(m.sample(10000, torch.Generator().manual_seed(1)).std())
    assert abs(std - 1) < 0.08, std


def test_keep_best_is_refused_where_the_validation_loss_is_the_discriminators(tmp_path, capsys):
    """A WGAN's lowest valid_loss is its strongest critic: best/ kept a 2-of-8-mode generator, silently."""
    from genzoo.cli import main

    data = load_dataset("ring", n=200)
    for name in ("gan", "wgan", "fgan"):
        with pytest.raises(ConfigError, match=f"a {name}'s is its discriminator's loss"):
            genzoo.fit(genzoo.build(name, data_shape=(2,), hidden=(8,)), data, steps=1, valid=data,
                       run_dir=tmp_path / name, keep_best=True, progress=False)
        assert not (tmp_path / name).exists()
    assert main(["train", "wgan", "--steps", "2", "--set", "keep_best=true", "--run-dir", str(tmp_path / "cli"),
                 "--no-progress"]) == 2
    assert "leave keep_best off" in capsys.readouterr().err and not (tmp_path / "cli").exists()


def test_every_adversarial_family_takes_the_shared_options():
    """wgan and fgan had no g_fresh_noise, g_ema or g_hidden, gan no d_activation, though all were documented
    as shared."""
    for name in ("gan", "wgan", "fgan"):
        m = genzoo.build(name, data_shape=(2,), latent_dim=2, hidden=(8,), g_hidden=(16, 16), g_ema=0.9,
                         g_fresh_noise=True, d_activation="elu")
        g_sizes = [lin.out_features for lin in m.generator.modules() if isinstance(lin, nn.Linear)]
        assert g_sizes == [16, 16, 2] and m.g_fresh_noise and m.generator_ema is not None
        assert any(isinstance(a, nn.ELU) for a in m.discriminator.modules())
    # fresh noise: the generator's update draws its own z, one generator pass more than reusing the critic's
    calls = {}
    for fresh in (False, True):
        torch.manual_seed(0)
        m = genzoo.build("wgan", data_shape=(2,), latent_dim=2, hidden=(8,), d_steps=1, g_fresh_noise=fresh)
        n = []
        m.generator.register_forward_hook(lambda *a: n.append(1))
        m.training_step(genzoo.Batch(torch.randn(16, 2)), m.configure_optimizers())
        calls[fresh] = len(n)
    assert calls == {False: 1, True: 2}


def test_affine_generator_is_for_vectors_and_range_messages(capsys):
    with pytest.raises(ConfigError, match="for vector data"):  # its samples left [0, 1] (-1.56 .. 2.33)
        genzoo.build("gan", data_shape=(1, 8, 8), arch="affine", latent_dim=64)
    with pytest.raises(ConfigError, match=r"label_flip must be in \[0, 0\.5\)"):
        genzoo.build("gan", data_shape=(2,), label_flip=0.5)
    with pytest.raises(ConfigError, match=r"^wgan\.betas takes 2 values, got \[0\.5\]"):
        genzoo.build("wgan", data_shape=(2,), betas=(0.5,))


def test_fewer_steps_than_d_steps_are_noted(tmp_path, capsys):
    from genzoo.cli import main

    assert main(["train", "wgan", "--steps", "4", "--run-dir", str(tmp_path / "w"), "--no-progress"]) == 0
    assert "once every d_steps=5 discriminator steps: 4 steps train no generator" in capsys.readouterr().err
    assert main(["train", "wgan", "--steps", "5", "--run-dir", str(tmp_path / "w5"), "--no-progress"]) == 0
    assert "train no generator" not in capsys.readouterr().err


def test_an_old_gan_run_made_with_keep_best_resumes_without_it(tmp_path, capsys):
    """Runs of an older genzoo with keep_best=true: --resume was refused ('leave keep_best off'), and --resume takes
    no --set to do so."""
    import json

    from genzoo.cli import main

    run = tmp_path / "g"
    assert main(["train", "gan", "--steps", "4", "--checkpoint-every", "2", "--run-dir", str(run), "--no-progress"]) == 0
    record = json.loads((run / "run.json").read_text())
    record["recipe"]["train"]["keep_best"] = True  # as the older genzoo recorded it
    (run / "run.json").write_text(json.dumps(record))
    capsys.readouterr()
    assert main(["train", "--resume", "--run-dir", str(run), "--steps", "6", "--no-progress"]) == 0
    assert "made with keep_best, which a gan no longer takes" in capsys.readouterr().err
    assert json.loads((run / "run.json").read_text())["recipe"]["train"]["keep_best"] is False


def test_every_adversarial_family_lists_the_shared_placeholder_notes(capsys):
    from genzoo.cli import main

    for name in ("gan", "wgan", "fgan"):
        main(["models", name])
        assert "(None: no average)" in capsys.readouterr().out


def test_a_validation_split_too_small_for_the_loss_is_left_out_before_training(tmp_path, capsys):
    """A packed GAN (or the GMMN's moments) with a 1-example validation split (a set of 10 splits 8/1/1) trained up
    to its first validation and died there, "the loss needs at least pack (2) examples, got 1", its folder removed."""
    import numpy as np

    from genzoo.cli import main

    np.savez(tmp_path / "ten.npz", x=np.random.default_rng(0).normal(size=(10, 2)).astype(np.float32))
    rd = tmp_path / "run"
    assert main(["train", "gan", "--data", f"npz:{tmp_path / 'ten.npz'}", "--set", "pack=2", "--set", "hidden=[8]",
                 "--batch-size", "4", "--steps", "12", "--set", "log_every=1", "--run-dir", str(rd),
                 "--no-progress"]) == 0
    assert "holds 1 example, fewer than a gan's loss takes (2): training without validation" in capsys.readouterr().err
    assert (rd / "model.safetensors").is_file()
    data = load_dataset(f"npz:{tmp_path / 'ten.npz'}")
    with pytest.raises(DataError, match="holds 1 example, and a gmmn's loss takes at least 2"):
        genzoo.fit(genzoo.build("gmmn", data_shape=(2,), statistic="moments", hidden=(8,)), data,
                   valid=load_dataset(f"npz:{tmp_path / 'ten.npz'}", "valid"), steps=2, batch_size=4, progress=False)


@pytest.mark.parametrize("name,kw", [("gan", {}), ("wgan", {"d_steps": 1}), ("fgan", {})])
def test_an_exception_in_the_generator_update_leaves_the_discriminator_trainable(name, kw):
    """The generator's update set requires_grad False on every D parameter and back to True after it, with no
    finally: a Ctrl-C or an OOM in between left D frozen (gan and fgan: every later step a RuntimeError; wgan-gp: D's
    weights silently got no gradient)."""
    m = genzoo.build(name, data_shape=(2,), hidden=(8,), **kw)
    opts, x = m.configure_optimizers(), torch.randn(32, 2)

    def interrupted(v):
        raise KeyboardInterrupt

    m.generator_loss = interrupted
    with pytest.raises(KeyboardInterrupt):
        m.training_step(genzoo.Batch(x), opts)
    del m.generator_loss  # the class's again
    assert all(p.requires_grad for p in m.discriminator.parameters())
    before = [p.detach().clone() for p in m.discriminator.parameters()]
    assert "g_loss" in m.training_step(genzoo.Batch(x), opts)
    assert all(p.grad is not None for p in m.discriminator.parameters())  # D's update reached every weight
    assert any(not torch.equal(a, b) for a, b in zip(before, m.discriminator.parameters()))


def test_a_frozen_discriminator_layer_stays_frozen_and_no_discriminator_gradient_is_computed_for_g():
    """The generator's update set requires_grad True on every D parameter after it, unfreezing a layer the user froze
    (then trained, as it sits in D's optimizer). The flags now come back as they were; and the generator's update
    still computes no D weight gradient: each D parameter's gradient is computed once a step (in D's update)."""
    m = genzoo.build("gan", data_shape=(2,), hidden=(8, 8))
    first = m.discriminator[1][0]  # (Flatten, MLP, Flatten): the MLP's first Linear
    first.requires_grad_(False)
    frozen = [p.detach().clone() for p in first.parameters()]
    opts, x = m.configure_optimizers(), torch.randn(32, 2)
    calls = []
    for p in m.discriminator.parameters():
        if p.requires_grad:
            p.register_hook(lambda g: calls.append(1))
    for _ in range(3):
        assert "g_loss" in m.training_step(genzoo.Batch(x), opts)
    assert not any(p.requires_grad for p in first.parameters())
    assert all(torch.equal(a, b) for a, b in zip(frozen, first.parameters()))
    trainable = sum(p.requires_grad for p in m.discriminator.parameters())
    assert len(calls) == 3 * trainable


F64 = [("gan", (2,), {}), ("gan", (2,), {"arch": "affine"}), ("wgan", (2,), {"d_steps": 2}),
       ("wgan", (2,), {"penalty": "clip", "d_steps": 2}), ("fgan", (2,), {}),
       ("gan", (2,), {"rejection": True, "g_ema": 0.9, "pack": 2, "label_flip": 0.1, "instance_noise": 0.1}),
       ("gan", (1, 8, 8), {"arch": "dcgan", "width": 8}), ("wgan", (1, 8, 8), {"arch": "dcgan", "width": 8})]


@pytest.mark.parametrize("name,shape,kw", F64)
def test_a_float64_adversarial_model_trains_scores_and_samples(name, shape, kw):
    """z was drawn in float32 whatever the model's dtype: a .double() GAN, WGAN or f-GAN failed in fit and loss() with
    'mat1 and mat2 must have the same dtype' (the rejector with g_ema too), though float64 models train elsewhere."""
    data = load_dataset("ring", n=64) if len(shape) == 1 else load_dataset("digits", n=64)
    m = genzoo.build(name, data_shape=shape, hidden=(16,), **kw).double()
    genzoo.fit(m, data, steps=4, batch_size=16, progress=False)
    assert all(p.dtype == torch.float64 for p in m.parameters())
    loss = m.loss(data.x[:16])["loss"]
    assert loss.dtype == torch.float64 and math.isfinite(float(loss.detach()))
    assert m.sample(4, torch.Generator().manual_seed(0)).dtype == torch.float64


def test_a_4x4_dcgan_needs_two_values_per_batch_norm_channel(tmp_path):
    """On 4x4 images, G's first batch norm and D's see (H/4)(W/4) = 1 value per channel of each example (of each pack
    for D): a batch of 1, or as many examples as ``pack``, failed in training with torch's 'Expected more than 1 value
    per channel' (the CLI's 'unexpected ValueError'). Now a ConfigError before anything is written."""
    def refused(name, batch, shape=(1, 4, 4), **kw):
        m = genzoo.build(name, data_shape=shape, arch="dcgan", width=4, **kw)
        try:
            m.check_batch_size(batch)
        except ConfigError:
            return True
        m.training_step(genzoo.Batch(torch.rand(batch, *shape)), m.configure_optimizers())  # which then trains
        return False

    assert refused("gan", 1) and not refused("gan", 2) and not refused("gan", 1, shape=(1, 8, 4))
    assert refused("gan", 2, pack=2) and not refused("gan", 4, pack=2)
    assert refused("fgan", 1) and refused("wgan", 3, pack=3, penalty="clip", d_steps=1)
    assert refused("wgan", 1, d_steps=1) and not refused("wgan", 2, pack=2, d_steps=1)  # a layer-norm critic: G alone
    assert not refused("gan", 2, pack=2, d_norm="layer")
    data = load_dataset("digits", n=32)
    data.x = data.x[..., ::2, ::2]  # (N, 1, 4, 4)
    with pytest.raises(ConfigError, match=r"4x4 images .* must be 4 or more \(2 packs of 2"):
        genzoo.fit(genzoo.build("gan", data_shape=(1, 4, 4), arch="dcgan", width=4, pack=2), data, steps=2,
                   batch_size=2, progress=False, run_dir=tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_sampling_a_dcgan_in_train_mode_is_eval_mode_sampling():
    """sample() ran in the module's mode: after build (train mode) a DCGAN's samples were normalised by their own batch
    statistics, depended on n, and overwrote G's running statistics. It now samples in eval mode, as the flows do;
    training still runs G in train mode."""
    m = genzoo.build("gan", data_shape=(1, 8, 8), arch="dcgan", width=4, g_ema=0.5)
    opts, x = m.configure_optimizers(), torch.rand(16, 1, 8, 8)
    m.training_step(genzoo.Batch(x), opts)
    bn = m.generator.net[2]
    state = {k: v.clone() for k, v in m.state_dict().items()}
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    a = m.sample(4, g())
    assert m.training and all(mod.training for mod in m.modules())
    assert all(torch.equal(v, state[k]) for k, v in m.state_dict().items())
    assert torch.equal(a, m.eval().sample(4, g()))  # the averaged generator on running statistics
    m.train().training_step(genzoo.Batch(x), opts)
    assert int(bn.num_batches_tracked) == int(state["generator.net.2.num_batches_tracked"]) + 1  # G(z) in train mode


def test_gaussian_is_the_one_samples_come_from_with_g_ema():
    """gaussian() read the trained generator while sample() draws from the averaged one under g_ema."""
    data = load_dataset("mixture1d", n=1000, means=[18.0, 22.0], stds=[1.0, 1.0])
    m = genzoo.build("fgan", data_shape=(1,), latent_dim=1, arch="affine", hidden=(8,), lr=0.05, g_ema=0.8)
    genzoo.fit(m, data, steps=5, batch_size=64, progress=False)
    mean, std = m.gaussian()
    z = torch.randn(6, 1)
    assert torch.allclose(m.eval().generate(z), mean + std * z)
    g = m.generator
    assert not torch.allclose(mean, m.data_loc + m.data_scale * g.mu.detach())  # the trained one is elsewhere


# -- audit a116 ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["gan", "wgan", "fgan"])
@pytest.mark.parametrize("arch", ["mlp", "dcgan"])
def test_the_gan_family_refuses_image_data_its_tanh_generator_cannot_reach(name, arch):
    """The GAN family trained on images outside [0, 1] without a word (a116 #1): its networks see 2x - 1 and the
    generator ends in tanh, so samples lie in [0, 1] whatever the data (a DCGAN on digits in [-1, 1]: data mean -0.39,
    samples 0.41). Refused in one line as the GMMN's sigmoid does; vector data take any range."""
    m = genzoo.build(name, data_shape=(1, 8, 8), arch=arch, width=4, hidden=(8,))
    for bad, shown in ((torch.full((2, 1, 8, 8), -1.0), "[-1, -1]"), (255 * torch.rand(2, 1, 8, 8), "[")):
        with pytest.raises(DataError) as e:
            m.check_training_data(bad)
        msg = str(e.value)
        assert "\n" not in msg and msg.startswith(f"{name}: a tanh generator draws images in [0, 1]"), msg
        assert shown in msg and msg.endswith("scale the images to [0, 1]")
    m.check_training_data(torch.rand(4, 1, 8, 8))  # images in [0, 1]: fine
    if arch == "mlp":  # vectors are standardised for the networks and have no bounded output: any range
        genzoo.build(name, data_shape=(3,), hidden=(8,)).check_training_data(10 * torch.randn(16, 3) - 50)


def test_fit_of_a_gan_on_signed_images_is_refused_before_anything_is_written(tmp_path):
    """Through fit, on a new model and on a trained one (which skips setup), before the run directory is made."""
    from genzoo.data import Dataset

    signed = Dataset("signed", "train", 2 * torch.rand(16, 1, 8, 8) - 1, None)
    fresh = genzoo.build("gan", data_shape=(1, 8, 8), arch="dcgan", width=4)
    with pytest.raises(DataError, match=r"^gan: a tanh generator draws images in \[0, 1\] .* got values in \[-1, 1\]; scale"):
        genzoo.fit(fresh, signed, steps=1, batch_size=8, run_dir=tmp_path / "a", progress=False)
    assert not (tmp_path / "a").exists()
    m = genzoo.build("wgan", data_shape=(1, 8, 8), arch="dcgan", width=4)
    m.initialised = True  # as genzoo.load or a finished fit leaves it: setup (and any check in it) is skipped
    with pytest.raises(DataError, match=r"^wgan: a tanh generator"):
        genzoo.fit(m, signed, steps=1, batch_size=8, run_dir=tmp_path / "b", progress=False)
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("divergence", ["kl", "reverse_kl", "pearson", "hellinger", "js", "jeffrey", "gan"])
def test_torch_save_of_an_fgan_loads_back(divergence):
    """torch.save(model) of every f-GAN failed with a PicklingError on the lambdas of its FDivergence (a116 #2): it now
    pickles by name and loads as the registry's own object."""
    import io

    from genzoo import divergences

    kw = {"arch": "dcgan", "data_shape": (1, 8, 8), "width": 4} if divergence == "jeffrey" else {"data_shape": (2,)}
    m = genzoo.build("fgan", divergence=divergence, hidden=(8,), **kw)
    buf = io.BytesIO()
    torch.save(m, buf)
    buf.seek(0)
    back = torch.load(buf, weights_only=False)
    assert back.div is divergences.get(divergence)
    state, got = m.state_dict(), back.state_dict()
    assert state.keys() == got.keys() and all(torch.equal(state[k], got[k]) for k in state)


def test_the_readme_calls_the_affine_generator_a_diagonal_gaussian():
    """The README said arch="affine" fits "one Gaussian" to vectors (a116 N3): x = mu + sigma z elementwise is one with a
    diagonal covariance, which cannot represent correlated data."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    start = readme.index('`"affine"` (x = mu + sigma z')
    said = " ".join(readme[start:readme.index(")", readme.index("images are refused", start))].split())
    assert "diagonal covariance" in said, said
    # what it says: samples of an affine generator are uncorrelated, per-dimension mu and sigma
    m = genzoo.build("fgan", data_shape=(2,), latent_dim=2, arch="affine", hidden=(8,))
    x = torch.randn(4000, 2) @ torch.tensor([[1.0, 0.9], [0.0, 0.4]])  # correlation 0.91
    m.setup(x, torch.Generator().manual_seed(0))
    mean, std = m.gaussian()
    assert mean.shape == std.shape == (2,)
    s = m.sample(20000, torch.Generator().manual_seed(0))
    assert abs(float(torch.corrcoef(s.T)[0, 1])) < 0.05


@pytest.mark.parametrize("g_loss", ["minimax", "alternative"])
@pytest.mark.parametrize("divergence", ["kl", "reverse_kl", "pearson", "hellinger", "js", "jeffrey", "gan"])
def test_fgan_generator_losses_descend_towards_real_looking_fakes(divergence, g_loss):
    """Both f-GAN generator losses fall as the critic rates the fakes higher (Nowozin et al. 2016: g_f and
    f* o g_f increase, Table 6); the alternative loss is -E_Q g_f(V) (Section 3.2). Its sign was never tested."""
    m = genzoo.build("fgan", data_shape=(1,), latent_dim=1, hidden=(4,), divergence=divergence, g_loss=g_loss)
    v = torch.linspace(-1.5, 2.0, 8, requires_grad=True)   # (Pearson's published f*(t) = t^2/4 + t turns at t = -2)
    (grad,) = torch.autograd.grad(m.generator_loss(v), v)
    # g_f and f* o g_f are increasing (Nowozin et al. 2016, Table 6): fooling the critic lowers the loss
    assert (grad < 0).all(), grad
    if g_loss == "alternative":                # Section 3.2: maximise E_Q g_f(V(G(z)))
        torch.testing.assert_close(m.generator_loss(v), -m.div.activation(v).mean())


def test_wgan_critic_loss_is_minus_the_wasserstein_estimate():
    """The critic's loss is -(E f(x) - E f(G(z))) (Arjovsky et al. 2017, Algorithm 1), on real and fake scores of
    different means: the by-hand test's equal means let a flipped sign through."""
    m = genzoo.build("wgan", data_shape=(1,), latent_dim=1, hidden=(4,), penalty="clip")
    m.critic = lambda x: x.reshape(x.shape[0], -1).sum(-1)
    loss, logs = m.discriminator_loss(torch.tensor([[3.0], [1.0]]), torch.tensor([[-1.0], [0.0]]))
    assert float(logs["wasserstein"]) == pytest.approx(2.0 - (-0.5))
    assert float(loss) == pytest.approx(-2.5)          # the critic descends -W: it raises real scores over fake ones


# -- audit 135 (mutation testing): each test below kills a mutant the suite let through ----------


class _Fn(torch.nn.Module):
    """A function as a module (a model's networks are modules)."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, v):
        return self.fn(v)


def test_dcgan_init_follows_radford_et_al():
    """_init_dcgan: conv weights N(0, 0.02) and batch-norm scales N(1, 0.02), shifts 0 (the PyTorch DCGAN example);
    the discriminator's LeakyReLU slope is 0.2 (Radford et al. 2016, Section 3)."""
    from torch import nn

    from genzoo.nn.dcgan import DCGANDiscriminator, DCGANGenerator

    torch.manual_seed(0)
    g, d = DCGANGenerator(16, (1, 16, 16), width=64), DCGANDiscriminator((1, 16, 16), width=64)
    bn = torch.cat([m.weight.detach() for m in g.modules() if isinstance(m, nn.BatchNorm2d)])
    assert float(bn.mean()) == pytest.approx(1.0, abs=0.01) and float(bn.std()) == pytest.approx(0.02, rel=0.2)
    conv = torch.cat([m.weight.detach().flatten() for m in d.modules() if isinstance(m, nn.Conv2d)])
    assert float(conv.std()) == pytest.approx(0.02, rel=0.05)
    slopes = {m.negative_slope for m in d.modules() if isinstance(m, nn.LeakyReLU)}
    assert slopes == {0.2}


def test_the_gradient_penalty_of_a_pack_is_on_the_norm_over_the_pack():
    """pack = m: the critic's output for a pack has one gradient over the pack's m examples, whose norm enters (norm
    - 1)^2. For a linear critic f(v) = a . v of the packed vector, the penalty is (|a| - 1)^2 whatever eps."""
    torch.manual_seed(0)
    m = genzoo.build("wgan", data_shape=(3,), pack=2, hidden=(16,))
    a = torch.tensor([0.3, -0.4, 0.5, 0.1, 0.2, -0.6])
    m.discriminator = torch.nn.Linear(6, 1, bias=False)
    with torch.no_grad():
        m.discriminator.weight.copy_(a[None])
    gp = m.gradient_penalty(torch.randn(8, 3), torch.randn(8, 3))
    assert float(gp) == pytest.approx((float(a.norm()) - 1) ** 2, rel=1e-5)


def test_pacgan_packs_consecutive_examples():
    """critic with pack = m concatenates consecutive examples (rows 0-1, 2-3, ...) along the features."""
    m = genzoo.build("gan", data_shape=(2,), pack=2)
    seen = []
    m.discriminator = _Fn(lambda v: (seen.append(v), v.sum(1))[1])
    x = torch.arange(8.0).reshape(4, 2)
    m.critic(x)
    assert torch.equal(seen[0], torch.tensor([[0.0, 1, 2, 3], [4, 5, 6, 7]]))


def test_rejection_sampling_sets_m_by_a_percentile_so_a_few_outlying_logits_do_not_decide():
    """GAN.sample: M is the 99th percentile of the first proposals' logits 'rather than their maximum, which a few
    outliers would set'. A rejector scoring 50 on the 0.6% of proposals with z_0 > 2.5 and 0 elsewhere leaves M = 0, so
    every proposal is kept and the samples are the proposals' N(0, 1); M = 50 would keep only the outliers."""
    torch.manual_seed(0)
    m = genzoo.build("gan", data_shape=(2,), rejection=True).eval()
    m.rejector = _Fn(lambda v: 50.0 * (v[:, 0] > 2.5).float())
    m.__dict__["sampler"] = lambda z: z[:, :2]  # (an instance attribute: the method is a class attribute)
    x = m._to_net(m.sample(500, torch.Generator().manual_seed(0)))
    assert abs(float(x[:, 0].mean())) < 0.2 and float(x[:, 0].std()) == pytest.approx(1.0, abs=0.15)
