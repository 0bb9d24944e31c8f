"""The semi-supervised VAE M2 (Kingma et al. 2014): its bounds by hand, the labelled subset, learning."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import integrate, stats

import genzoo
from genzoo.base import Batch
from genzoo.cli import main
from genzoo.data import load_dataset
from genzoo.errors import ConfigError, DataError


def tiny(seed=0, **kw):
    torch.manual_seed(seed)
    opts = dict(data_shape=(3,), latent_dim=1, hidden=(), n_classes=2, labels=4, labelled_batch=2)
    return genzoo.build("ssvae", **{**opts, **kw})


def deterministic_encoder(m):
    """Make q(z|x,y) a point mass in effect: log sigma = -30, so z = mu to 1e-13."""
    with torch.no_grad():
        m.encoder[-1].weight[1].zero_()
        m.encoder[-1].bias[1] = -30.0


def by_hand_labelled(m, x, y):
    """-L(x, y) from the weights: z = mu (sigma ~ 0), log p(x|y,z) + log p(y) - KL(N(mu, sigma^2) || N(0,1))."""
    W, b = m.encoder[-1].weight.detach(), m.encoder[-1].bias.detach()
    inp = torch.cat([x, F.one_hot(y, 2).float()], -1)
    mu, log_sigma = inp @ W[0] + b[0], inp @ W[1] + b[1]
    Wd, bd = m.decoder[-1].weight.detach(), m.decoder[-1].bias.detach()
    logits = torch.cat([mu[:, None], F.one_hot(y, 2).float()], -1) @ Wd.T + bd  # (B, 3)
    p = torch.sigmoid(logits)
    log_px = (x * torch.log(p) + (1 - x) * torch.log(1 - p)).sum(-1)
    kl = 0.5 * (mu**2 + torch.exp(2 * log_sigma) - 1 - 2 * log_sigma)
    return log_px + math.log(0.5) - kl


def test_labelled_and_unlabelled_bounds_against_hand_computation():
    m = tiny()
    deterministic_encoder(m)
    x = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    y = torch.tensor([1, 0])
    np.testing.assert_allclose(m.labelled_bound(x, y).detach(), by_hand_labelled(m, x, y), rtol=1e-5)
    q = torch.softmax(x @ m.classifier[-1].weight.detach().T + m.classifier[-1].bias.detach(), -1)  # (B, 2)
    per_class = torch.stack([by_hand_labelled(m, x, torch.full((2,), c)) for c in (0, 1)], -1)  # (B, 2)
    ref = (q * per_class).sum(-1) - (q * q.log()).sum(-1)  # sum_y q(y|x)(-L) + H(q)
    np.testing.assert_allclose(m.unlabelled_bound(x).detach(), ref, rtol=1e-5)


def test_training_objective_is_labelled_plus_unlabelled_plus_alpha_ce():
    m = tiny()
    deterministic_encoder(m)
    assert m.alpha == pytest.approx(0.1 * 4)  # the paper's 0.1 N on sums, per-example means: 0.1 N_l
    xs = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [1.0, 1.0, 0], [0, 0, 1.0]])
    m.setup_labels(xs, torch.tensor([0, 1, 0, 1]), torch.Generator().manual_seed(0))
    xu = torch.tensor([[1.0, 1.0, 1.0], [0.0, 1.0, 1.0]])
    torch.manual_seed(5)
    idx = torch.randint(4, (2,))
    xl, yl = torch.bernoulli(m.labelled_x[idx]), m.labelled_y[idx]
    ce = F.cross_entropy(m.class_logits(xl), yl)
    expected = -by_hand_labelled(m, xl, yl).mean() - m.unlabelled_bound(xu).mean() + m.alpha * ce
    opt = torch.optim.SGD(m.parameters(), lr=0.0)
    torch.manual_seed(5)
    logs = m.training_step(Batch(xu), [opt])
    assert logs["loss"] == pytest.approx(float(expected.detach()), rel=1e-5)
    assert logs["ce"] == pytest.approx(float(ce.detach()), rel=1e-5)


def test_labelled_subset_is_balanced_reproducible_and_saved(tmp_path):
    data = load_dataset("digits", n=600)
    m = genzoo.build("ssvae", data_shape=(1, 8, 8), latent_dim=2, hidden=(8,), labels=30)
    m.setup_labels(data.x, data.y, torch.Generator().manual_seed(1))
    assert torch.bincount(m.labelled_y, minlength=10).tolist() == [3] * 10
    for xi, yi in zip(m.labelled_x, m.labelled_y):  # each kept example is a real one with its own label
        match = (data.x == xi).flatten(1).all(1)
        assert bool(match.any()) and int(yi) in data.y[match].tolist()
    m2 = genzoo.build("ssvae", data_shape=(1, 8, 8), latent_dim=2, hidden=(8,), labels=30)
    m2.setup_labels(data.x, data.y, torch.Generator().manual_seed(1))
    assert torch.equal(m.labelled_y, m2.labelled_y) and torch.equal(m.labelled_x, m2.labelled_x)
    genzoo.save(m, tmp_path / "m")
    back = genzoo.load(tmp_path / "m")
    assert torch.equal(back.labelled_x, m.labelled_x) and bool(back.labels_ready)


def test_bad_options_and_missing_labels():
    with pytest.raises(ConfigError, match="multiple of n_classes"):
        genzoo.build("ssvae", data_shape=(4,), labels=15)
    m = genzoo.build("ssvae", data_shape=(1, 8, 8), latent_dim=2, hidden=(8,), labels=10)
    with pytest.raises(DataError, match="fewer than"):
        m.setup_labels(torch.rand(20, 1, 8, 8), torch.zeros(20, dtype=torch.long), torch.Generator())
    three = genzoo.build("ssvae", data_shape=(1, 8, 8), latent_dim=2, hidden=(8,), labels=6, n_classes=3)
    with pytest.raises(DataError, match=r"training labels must lie in 0\.\.2 \(n_classes=3\), got 0\.\.4"):
        three.setup_labels(torch.rand(30, 1, 8, 8), torch.arange(30) % 5, torch.Generator())  # 3 and 4 were dropped
    x = torch.rand(4, 1, 8, 8).bernoulli()
    for y, needle in ((torch.tensor([0, 1, 2, 3]), r"lie in 0\.\.2"), (torch.tensor([0, 1]), "4 integer classes"),
                      (torch.tensor([0.0, 1.0, 2.0, 0.0]), "4 integer classes"), (torch.tensor([0, -1, 2, 0]), r"lie in 0\.\.2")):
        with pytest.raises(DataError, match=needle):
            three.labelled_bound(x, y)
    for k in (0, 2.5, True):
        with pytest.raises(ConfigError, match="k, the importance samples"):
            three.iwae_bound(x, k)
    unlabelled = genzoo.build("ssvae", data_shape=(2,), latent_dim=2, hidden=(8,), labels=10)
    with pytest.raises(DataError, match="needs a training set with labels"):
        genzoo.fit(unlabelled, load_dataset("checkerboard", n=100), steps=1, progress=False)


def test_iwae_bound_tends_to_the_exact_log_likelihood():
    m = tiny(seed=3)
    x = torch.tensor([[1.0, 0.0, 1.0]])

    def log_joint(z, c):  # log p(x, y=c, z) for a scalar z
        logits = torch.cat([torch.tensor([z]), F.one_hot(torch.tensor(c), 2).float()]) @ m.decoder[-1].weight.detach().T \
            + m.decoder[-1].bias.detach()
        p = torch.sigmoid(logits).double()
        return float((x[0] * p.log() + (1 - x[0]) * (1 - p).log()).sum()) + math.log(0.5) + stats.norm.logpdf(z)

    exact = math.log(sum(integrate.quad(lambda z: math.exp(log_joint(z, c)), -12, 12, limit=200)[0] for c in (0, 1)))
    torch.manual_seed(0)
    iw = float(m.iwae_bound(x, k=20000))
    with torch.no_grad():
        elbo = float(torch.stack([m.elbo(x) for _ in range(200)]).mean())
    assert abs(iw - exact) < 0.02 and elbo < exact


def test_m2_learns_digits_from_100_labels(tmp_path, capsys):
    rd = tmp_path / "m2"
    assert main(["train", "ssvae", "--steps", "800", "--run-dir", str(rd), "--no-progress",
                 "--set", "hidden=[128]", "--set", "latent_dim=16"]) == 0
    capsys.readouterr()
    assert main(["eval", str(rd), "--iwae-k", "10", "--no-progress"]) == 0
    out = capsys.readouterr().out
    result = json.loads((rd / "eval.json").read_text())
    assert "classification error" in out and result["metrics"] == ["nll", "error"]
    assert result["error"]["error"] < 0.2  # 100 labels of 1,297 images: 12.7% here, 10.7% after 3,000 steps at (500,)
    m = genzoo.load(rd)
    x = load_dataset("digits", "test", n=3).x
    grid = m.analogies(x.bernoulli())
    assert grid.shape == (3, 10, 1, 8, 8)
    # samples of a chosen class are read as that class by q(y|x) far above chance (10%): 31% after 800 steps
    y = torch.arange(10).repeat(20)
    assert float((m.classify(m.sample(200, generator=torch.Generator().manual_seed(0), y=y)) == y).float().mean()) > 0.2


def test_options_y_every_layer_batch_norm_and_separate_hidden_sizes(tmp_path):
    torch.manual_seed(0)
    m = genzoo.build("ssvae", data_shape=(1, 8, 8), latent_dim=3, hidden=(16,), classifier_hidden=(24, 12),
                     decoder_hidden=(20, 18), y_every_layer=True, batch_norm=True, labels=20)
    assert [l.in_features for l in m.decoder.layers] == [3 + 10, 20 + 10, 18 + 10]  # y reaches every layer
    assert m.decoder[-1].out_features == 64 and m.classifier[-1].in_features == 12
    assert sum(isinstance(l, torch.nn.BatchNorm1d) for l in m.classifier) == 2
    assert sum(isinstance(l, torch.nn.BatchNorm1d) for l in m.encoder) == 1
    x = torch.rand(6, 1, 8, 8).bernoulli()
    assert m.unlabelled_bound(x).shape == (6,) and m.iwae_bound(x, 3).shape == (6,)
    # p(x|y,z) by hand: y concatenated to the input of each of the three layers
    z, y = torch.randn(2, 3), torch.tensor([0, 7])
    h, y1 = z, F.one_hot(y, 10).float()
    for i, layer in enumerate(m.decoder.layers):
        h = torch.cat([h, y1], -1) @ layer.weight.T + layer.bias
        h = F.softplus(h) if i < 2 else h
    np.testing.assert_allclose(m._decoder_logits(z, y).detach(), h.detach(), rtol=1e-5, atol=1e-6)
    m.eval()  # batch norm from running statistics: one image classifies alone
    assert m.classify(x[:1]).shape == (1,) and m.analogies(x[:2]).shape == (2, 10, 1, 8, 8)
    genzoo.save(m, tmp_path / "m")
    back = genzoo.load(tmp_path / "m").eval()
    assert torch.equal(back.classify(x), m.classify(x))


def test_shared_trunk_and_labelled_weight():
    torch.manual_seed(0)
    m = genzoo.build("ssvae", data_shape=(1, 8, 8), latent_dim=2, hidden=(16,), labels=20, shared_trunk=True,
                     labelled_weight=0.25, alpha=3.0)
    x = torch.rand(5, 1, 8, 8).bernoulli()
    # q(y|x) and q(z|x,y) both read the trunk's features: a change to the trunk moves both
    before = m.class_logits(x).detach(), m.encode(x, torch.zeros(5, dtype=torch.long)).mean.detach()
    with torch.no_grad():
        m.trunk[0].weight.add_(0.1)
    assert not torch.allclose(m.class_logits(x), before[0])
    assert not torch.allclose(m.encode(x, torch.zeros(5, dtype=torch.long)).mean, before[1])
    assert m.classifier[0].in_features == 16 and m.encoder[0].in_features == 16 + 10
    assert m.unlabelled_bound(x).shape == (5,)
    data = load_dataset("digits", n=300)
    m.setup_labels(data.x, data.y, torch.Generator().manual_seed(0))
    logs = m.training_step(Batch(data.x[:8].bernoulli()), m.configure_optimizers())
    assert logs["loss"] == pytest.approx(0.25 * logs["labelled"] + logs["unlabelled"] + 3.0 * logs["ce"], rel=1e-5)
    with pytest.raises(ConfigError, match="shared_trunk needs"):
        genzoo.build("ssvae", data_shape=(4,), hidden=(), shared_trunk=True)
    with pytest.raises(ConfigError, match="labelled_weight"):
        genzoo.build("ssvae", data_shape=(4,), labelled_weight=-1.0)


def test_classifier_dropout_options_act_in_training_only():
    torch.manual_seed(0)
    kw = dict(data_shape=(1, 8, 8), latent_dim=2, hidden=(16,), labels=20, shared_trunk=True, batch_norm=True)
    x = torch.rand(32, 1, 8, 8).bernoulli()
    plain = genzoo.build("ssvae", **kw)  # defaults: no dropout, the classifier is deterministic in training
    torch.manual_seed(1)
    a = plain.class_logits(x)
    torch.manual_seed(2)
    assert torch.equal(a, plain.class_logits(x))
    m = genzoo.build("ssvae", **kw, classifier_dropout=0.5, classifier_input_dropout=0.3)
    m.load_state_dict(plain.state_dict())
    torch.manual_seed(1)
    noisy = m.class_logits(x)
    torch.manual_seed(2)
    assert not torch.allclose(noisy, m.class_logits(x))  # training: dropped pixels and features
    assert m.unlabelled_bound(x).shape == (32,)
    m.load_state_dict(plain.state_dict())  # the same batch-norm statistics as well
    m.eval(), plain.eval()
    assert torch.equal(m.class_logits(x), plain.class_logits(x))  # evaluation: no dropout at all
    assert torch.equal(m.class_logits(x), m.classifier(m.trunk(x.flatten(1))))
    with pytest.raises(ConfigError, match="classifier_dropout"):
        genzoo.build("ssvae", data_shape=(4,), classifier_dropout=1.0)


def test_kl_weight_scales_the_kl_of_z_in_the_training_step_only():
    """kl_weight applied wherever the model was in train mode: a new model's labelled_bound and elbo were beta-bounds,
    no bound on log p(x, y) or log p(x). The public bounds are the true ones in either mode; the training step's
    terms (the model in train mode, as fit has it) weigh the KL by beta, in both bounds."""
    m = tiny(kl_weight=3.0)
    deterministic_encoder(m)  # z = mu, so log p(x|y,z) does not depend on the draw

    def kl(x, y):
        q = m.encode(x, y)
        mu, sigma = q.base_dist.loc, q.base_dist.scale
        return (0.5 * (mu**2 + sigma**2 - 1 - 2 * sigma.log())).sum(-1).detach()

    x, y = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]]), torch.tensor([1, 0])
    for mode in (m.train, m.eval):  # the true bound in either mode
        mode()
        np.testing.assert_allclose(m.labelled_bound(x, y).detach(), by_hand_labelled(m, x, y), rtol=1e-5)
    m.train()
    xs = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [1.0, 1.0, 0], [0, 0, 1.0]])
    m.setup_labels(xs, torch.tensor([0, 1, 0, 1]), torch.Generator().manual_seed(0))
    torch.manual_seed(5)
    idx = torch.randint(4, (2,))
    xl, yl = torch.bernoulli(m.labelled_x[idx]), m.labelled_y[idx]
    labelled = -(by_hand_labelled(m, xl, yl) - 2.0 * kl(xl, yl)).mean()  # beta = 3: two more KLs
    q = torch.softmax(x @ m.classifier[-1].weight.detach().T + m.classifier[-1].bias.detach(), -1)  # (B, 2)
    per_class = torch.stack([by_hand_labelled(m, x, torch.full((2,), c)) - 2.0 * kl(x, torch.full((2,), c))
                             for c in (0, 1)], -1)  # (B, 2)
    unlabelled = -((q * per_class).sum(-1) - (q * q.log()).sum(-1)).mean()
    torch.manual_seed(5)
    logs = m.training_step(Batch(x), [torch.optim.SGD(m.parameters(), lr=0.0)])
    assert logs["labelled"] == pytest.approx(float(labelled), rel=1e-5)
    assert logs["unlabelled"] == pytest.approx(float(unlabelled), rel=1e-5)
    assert logs["unlabelled"] > -float(m.unlabelled_bound(x).mean().detach()) + 1  # the true bound is higher
    with pytest.raises(ConfigError, match="kl_weight"):
        genzoo.build("ssvae", data_shape=(4,), kl_weight=0.0)


# -- the audit's API findings ----------------------------------------------------------------------------------
def test_encode_and_decode_check_y_and_z():
    """encode(x, y) and decode(z, y) took any y (torch's one_hot errors for a float or an out-of-range class) and
    any z; decode(z) without y was a TypeError."""
    m = tiny(n_classes=3, labels=6)
    x, z = torch.rand(4, 3).bernoulli(), torch.randn(4, 1)
    for bad in (torch.tensor([0.0, 1.0, 2.0, 0.0]), torch.tensor([0, 1, 3, 0]), torch.tensor([0, 1]), [0, 1, 2, 0]):
        with pytest.raises(DataError, match="y must be|must lie in"):
            m.encode(x, bad)
        with pytest.raises(DataError, match="y must be|must lie in"):
            m.decode(z, bad)
    with pytest.raises(DataError, match="needs the classes y"):
        m.decode(z)
    with pytest.raises(DataError, match=r"latents must be a torch.Tensor of shape \(\.\.\., B, 1\)"):
        m.decode(torch.randn(4, 2), torch.tensor([0, 1, 2, 0]))
    y = torch.tensor([0, 1, 2, 0])
    assert m.encode(x, y).batch_shape == (4,)
    assert torch.equal(m.decode(z.double(), y).mean, m.decode(z, y).mean)      # float64 latents are converted
    assert m.decode(z.reshape(1, 4, 1), y).batch_shape == (1, 4)


def test_empty_batches_and_nan_data_are_data_errors():
    m = tiny()
    empty = torch.zeros(0, 3)
    for f in (m.elbo, m.classify, m.loss, m.encode, lambda x: m.iwae_bound(x, 2)):
        with pytest.raises(DataError, match="empty batch"):
            f(empty)
    nan = torch.tensor([[0.0, float("nan"), 1.0]])
    for f in (m.elbo, lambda x: m.iwae_bound(x, 2), lambda x: m.labelled_bound(x, torch.tensor([0]))):
        with pytest.raises(DataError, match="NaN or infinite"):
            f(nan)


def test_sample_draws_y_and_z_from_the_generator():
    """Same generator, same samples; the global RNG is left alone (y and z on the generator's device: a CUDA
    generator crashed here, see test_sample_with_a_generator_on_another_device)."""
    m = tiny()
    state = torch.get_rng_state()
    a, b = (m.sample(6, torch.Generator().manual_seed(0)) for _ in range(2))
    assert torch.equal(a, b) and torch.equal(torch.get_rng_state(), state)


@pytest.mark.gpu
def test_sample_with_a_generator_on_another_device():
    """M2 drew y and z with no device: a CUDA generator (the CLI's, on a CUDA model) crashed. Both a CPU and a
    CUDA generator work now, and a CPU one gives the CPU model's samples."""
    m = tiny()
    ref = m.sample(5, torch.Generator().manual_seed(0))
    m.cuda()
    torch.testing.assert_close(m.sample(5, torch.Generator().manual_seed(0)).cpu(), ref)
    assert m.sample(5, torch.Generator(device="cuda").manual_seed(0)).device.type == "cuda"


def test_labelled_examples_follow_the_training_batches_space(tmp_path):
    """Binarized data: the labelled examples are drawn afresh too; grey data: they stay grey, as the unlabelled
    batches do (they were binarized whatever the data, so the two terms fitted different data); dequantized data
    are refused; weights saved before the flag existed load with binarization on."""
    xs = torch.tensor([[1.0, 0.5, 0.25], [0.5, 0.75, 0.0], [0.25, 0.5, 1.0], [0.0, 0.5, 0.5]])
    seen = {}
    for space in ("binarized", "discrete-as-real"):
        m = tiny()
        m.setup_labels(xs, torch.tensor([0, 1, 0, 1]), torch.Generator().manual_seed(0), space)
        got = []
        m._labelled_bound = lambda x, y, *a, _f=m._labelled_bound, **k: (got.append(x.clone()), _f(x, y, *a, **k))[1]
        m.training_step(Batch(xs[:2]), m.configure_optimizers())
        seen[space] = torch.cat(got[:1])  # the labelled batch (the unlabelled bound's rows come after)
    assert set(seen["binarized"].unique().tolist()) <= {0.0, 1.0}
    assert {0.25, 0.5, 0.75} & set(seen["discrete-as-real"].unique().tolist())
    with pytest.raises(ConfigError, match="dequantized data no likelihood"):
        tiny().setup_labels(xs, torch.tensor([0, 1, 0, 1]), torch.Generator(), "dequantized")
    grey = tiny()
    grey.setup_labels(xs, torch.tensor([0, 1, 0, 1]), torch.Generator(), "discrete-as-real")
    genzoo.save(grey, tmp_path / "grey")
    assert float(genzoo.load(tmp_path / "grey").labelled_binarize) == 0.0
    from safetensors.torch import load_file, save_file
    old = {k: v for k, v in load_file(tmp_path / "grey" / "model.safetensors").items() if k != "labelled_binarize"}
    save_file(old, tmp_path / "grey" / "model.safetensors")
    assert float(genzoo.load(tmp_path / "grey").labelled_binarize) == 1.0


def test_cli_grey_training_keeps_labelled_examples_grey_and_refuses_dequantized(tmp_path, capsys):
    assert main(["train", "ssvae", "--steps", "2", "--set", "data.binarize=false", "--set", "data.n=300",
                 "--run-dir", str(tmp_path / "grey"), "--no-progress"]) == 0
    assert float(genzoo.load(tmp_path / "grey").labelled_binarize) == 0.0
    capsys.readouterr()
    assert main(["train", "ssvae", "--steps", "2", "--set", "data.binarize=false", "--set", "data.dequantize=true",
                 "--set", "data.n=300", "--run-dir", str(tmp_path / "deq"), "--no-progress"]) == 2
    assert "dequantized data no likelihood" in capsys.readouterr().err
    assert not (tmp_path / "deq").exists()


def test_unlabelled_bound_checks_pixels_and_messages_name_the_option():
    m = tiny()
    with pytest.raises(DataError, match="pixels in"):
        m.unlabelled_bound(torch.full((2, 3), 255.0))
    with pytest.raises(ConfigError, match="n_classes must be >= 2, got 1"):
        tiny(n_classes=1, labels=4)
    with pytest.raises(DataError, match="fewer than the 3 per class that labels=6 asks for"):
        tiny(labels=6).setup_labels(torch.rand(4, 3).round(), torch.tensor([0, 1, 0, 1]), torch.Generator())
    twenty = tiny(n_classes=3, labels=3)
    with pytest.raises(DataError, match=r"classes are 0\.\.1: set n_classes=2"):
        twenty.setup_labels(torch.rand(4, 3).round(), torch.tensor([0, 1, 0, 1]), torch.Generator())


def test_the_n_classes_hint_is_given_only_where_it_fits():
    """Classes {0, 2} under n_classes=3 were told 'set n_classes=3'... and data.n=1 (class 8 alone) 'set n_classes=9'."""
    gap = tiny(n_classes=3, labels=3)
    with pytest.raises(DataError) as e:
        gap.setup_labels(torch.rand(4, 3).round(), torch.tensor([0, 2, 0, 2]), torch.Generator())
    assert "set n_classes" not in str(e.value) and "class 1 has 0 training examples" in str(e.value)


def test_a_family_written_to_the_three_argument_setup_labels_still_trains():
    """fit passed the batches' space as a fourth argument to every model: a user's setup_labels(x, y, generator)
    failed with a TypeError."""
    from genzoo.models.gmm import GaussianMixture  # (genzoo.models is imported lazily: not an attribute before)
    from genzoo.registry import _MODELS, register

    @register("labels3", "a GMM that counts its labels")
    class Labels3(GaussianMixture):
        def setup_labels(self, x, y, generator):
            self.seen = len(y)

    try:
        m = genzoo.build("labels3", data_shape=(2,), n_components=2)
        genzoo.fit(m, load_dataset("moons", n=100), steps=1, progress=False)
        assert m.seen > 0
    finally:
        del _MODELS["labels3"]


def test_setup_labels_taking_keyword_arguments_gets_the_space():
    """A subclass forwarding **kwargs got no space: grey data's labelled examples were binarized again."""
    from genzoo.models.ssvae import SSVAE
    from genzoo.registry import _MODELS, register

    @register("ssvae-kw", "M2 through **kwargs")
    class Forwarding(SSVAE):
        def setup_labels(self, x, y, generator, **kwargs):
            super().setup_labels(x, y, generator, **kwargs)

    try:
        m = genzoo.build("ssvae-kw", data_shape=(1, 8, 8), latent_dim=2, hidden=(8,), labels=10)
        genzoo.fit(m, load_dataset("digits", n=200), steps=1, progress=False)  # grey levels
        assert float(m.labelled_binarize) == 0.0
    finally:
        del _MODELS["ssvae-kw"]


def test_batch_norm_refuses_batches_of_one_and_analogies_follow_the_models_device(tmp_path, capsys):
    """batch_norm with a labelled or unlabelled batch of one ended mid-step in 'unexpected ValueError ... a bug in
    genzoo' (exit 1); analogies built the classes on the images' device, not the model's."""
    with pytest.raises(ConfigError, match="batch_norm needs labelled_batch >= 2"):
        genzoo.build("ssvae", data_shape=(1, 8, 8), batch_norm=True, labelled_batch=1)
    rd = tmp_path / "bn"
    assert main(["train", "ssvae", "--set", "batch_norm=true", "--batch-size", "1", "--steps", "2", "--run-dir",
                 str(rd), "--no-progress"]) == 2
    assert "batch_norm needs batches of 2 or more" in capsys.readouterr().err and not rd.exists()
    m = genzoo.build("ssvae", data_shape=(1, 8, 8), latent_dim=4, hidden=(16,), labels=20).eval().to("meta")
    m.check_pixels = m.check_input  # a meta tensor holds no values to check (on a real device analogies checks them)
    assert m.analogies(torch.rand(3, 1, 8, 8)).shape == (3, 10, 1, 8, 8)  # a CPU batch for a model elsewhere
    rd = tmp_path / "lin"  # (an empty value is the default, None: hidden; [] asks for no layers)
    assert main(["train", "ssvae", "--set", "classifier_hidden=[]", "--steps", "1", "--run-dir", str(rd),
                 "--no-progress"]) == 0
    assert json.loads((rd / "config.json").read_text())["config"]["classifier_hidden"] == []


def test_bounds_and_classify_do_not_depend_on_the_models_mode():
    """A new model is in train mode: elbo and labelled_bound weighed the KL by kl_weight and read batch statistics,
    classify dropped features at random and moved batch norm's running statistics (a query changed the model).
    They run in eval mode now, as iwae_bound and analogies do, and leave the mode and the statistics alone."""
    torch.manual_seed(0)
    m = genzoo.build("ssvae", data_shape=(1, 8, 8), latent_dim=4, hidden=(32,), labels=20, batch_norm=True,
                     shared_trunk=True, classifier_dropout=0.5, classifier_input_dropout=0.3, kl_weight=5.0)
    assert m.training
    x, y = torch.rand(64, 1, 8, 8).bernoulli(), torch.arange(64) % 10
    state = {k: v.clone() for k, v in m.state_dict().items()}
    queries = {"elbo": lambda: m.elbo(x), "unlabelled_bound": lambda: m.unlabelled_bound(x),
               "labelled_bound": lambda: m.labelled_bound(x, y), "iwae_bound": lambda: m.iwae_bound(x, 3),
               "classify": lambda: m.classify(x), "analogies": lambda: m.analogies(x[:2]),
               "encode": lambda: m.encode(x).mean, "encode(x, y)": lambda: m.encode(x, y).mean}
    got = {}
    for mode in ("train", "eval"):
        getattr(m, mode)()
        for name, f in queries.items():
            torch.manual_seed(5)
            got[mode, name] = f().detach()
        assert m.training == (mode == "train") and all(l.training == m.training for l in m.modules())
    for name in queries:
        assert torch.equal(got["train", name], got["eval", name]), name
    torch.manual_seed(5)
    assert torch.equal(m.train().classify(x), got["eval", "classify"])  # and again: no dropout
    assert all(torch.equal(v, state[k]) for k, v in m.state_dict().items())  # running statistics untouched
    # encode ran in the model's mode (a98 #10's fix left it out): batch statistics, moved running statistics,
    # and torch's bare ValueError for one example in train mode
    m.train()
    assert m.encode(x[:1]).batch_shape == (1,) and m.encode(x[:1], y[:1]).batch_shape == (1,)
    assert m.training and all(torch.equal(v, state[k]) for k, v in m.state_dict().items())


def test_classify_encode_and_analogies_check_pixels_as_the_bounds_do():
    """classify, encode and analogies took uint8 images of 0..255 (a plausible but wrong error rate) and NaN images
    (all "class 0", NaN latents) without a word, while the bounds refused them with a one-line DataError."""
    m = genzoo.build("ssvae", data_shape=(1, 8, 8), latent_dim=2, hidden=(8,), labels=20)
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0)).bernoulli()
    nan = x.clone()
    nan[1, 0, 2, 2] = float("nan")
    y = torch.tensor([0, 1, 2])
    queries = {"classify": m.classify, "encode": m.encode, "encode(x, y)": lambda x: m.encode(x, y),
               "analogies": m.analogies, "elbo": m.elbo}
    for name, f in queries.items():
        with pytest.raises(DataError, match=r"ssvae: a Bernoulli decoder scores pixels in \[0, 1\], got values in \[0, 255\]"):
            f((x * 255).to(torch.uint8))
        with pytest.raises(DataError, match="ssvae: examples with NaN or infinite values"):
            f(nan)
        f(x)  # images in [0, 1] are taken
    assert m.classify(x.to(torch.uint8)).shape == (3,)  # 0/1 integer images are fine


def test_kl_weight_states_one_range():
    """kl_weight=-1 was refused as 'must be >= 0', then 0 as 'must be > 0' (the shared ranges had it half-open)."""
    for bad in (-1.0, 0.0):
        with pytest.raises(ConfigError, match=r"kl_weight must be > 0, got"):
            genzoo.build("ssvae", data_shape=(4,), kl_weight=bad)


def test_labels_of_any_integer_dtype():
    """uint8 (MNIST's raw labels), int32 (NumPy's on some platforms), int16 and int8 classes passed check_labels
    and crashed inside one_hot ('only applicable to index tensor of type LongTensor'); sample took a bool y."""
    m = tiny(n_classes=3, labels=6)
    x, z, eps = torch.rand(4, 3).bernoulli(), torch.randn(4, 1), torch.randn(4, 1)
    y = torch.tensor([0, 1, 2, 0])
    ref = (m.encode(x, y).mean, m.labelled_bound(x, y, eps=eps), m.decode(z, y).mean,
           m.sample(4, torch.Generator().manual_seed(0), y=y))
    for dt in (torch.int32, torch.int16, torch.int8, torch.uint8):
        yd = y.to(dt)
        got = (m.encode(x, yd).mean, m.labelled_bound(x, yd, eps=eps), m.decode(z, yd).mean,
               m.sample(4, torch.Generator().manual_seed(0), y=yd))
        assert all(torch.equal(a, b) for a, b in zip(got, ref)), dt
    assert torch.equal(m.sample(4, torch.Generator().manual_seed(0), y=np.array([0, 1, 2, 0], np.int32)), ref[3])
    xs = torch.rand(30, 3).round()
    labels = torch.arange(30) % 3
    a, b = tiny(n_classes=3, labels=6), tiny(n_classes=3, labels=6)
    a.setup_labels(xs, labels, torch.Generator().manual_seed(0))
    b.setup_labels(xs, labels.to(torch.uint8), torch.Generator().manual_seed(0))
    assert torch.equal(a.labelled_x, b.labelled_x) and torch.equal(a.labelled_y, b.labelled_y)
    b.training_step(Batch(xs[:4]), b.configure_optimizers())
    with pytest.raises(DataError, match="4 integer classes, got torch.bool"):
        m.labelled_bound(x, torch.tensor([True, False, True, False]))
    # sample's y is a ConfigError, as tests/test_io.py has it
    with pytest.raises(ConfigError, match=r"y must hold 2 classes in 0\.\.2"):
        m.sample(2, y=torch.tensor([True, False]))


def test_a_second_fit_keeps_the_labelled_subset(tmp_path):
    """fit drew a labelled subset on every run: a model trained on with another seed had seen twice the labels its
    config says. The subset is kept (the data's space is taken afresh); reset_labels asks for a new draw."""
    binary, grey = load_dataset("digits", binarize=True, n=300), load_dataset("digits", n=300)
    m = genzoo.build("ssvae", data_shape=(1, 8, 8), latent_dim=2, hidden=(8,), labels=20, labelled_batch=10)
    genzoo.fit(m, binary, steps=1, seed=0, progress=False)
    first = m.labelled_x.clone(), m.labelled_y.clone()
    assert float(m.labelled_binarize) == 1.0
    genzoo.fit(m, grey, steps=1, seed=1, progress=False)
    assert torch.equal(m.labelled_x, first[0]) and torch.equal(m.labelled_y, first[1])
    assert float(m.labelled_binarize) == 0.0  # fed as the new batches are
    m.reset_labels()
    genzoo.fit(m, binary, steps=1, seed=1, progress=False)
    assert not torch.equal(m.labelled_x, first[0]) and float(m.labelled_binarize) == 1.0
    assert torch.bincount(m.labelled_y, minlength=10).tolist() == [2] * 10
    genzoo.save(m, tmp_path / "m")
    back = genzoo.load(tmp_path / "m")  # a loaded model trains on with its own subset too
    genzoo.fit(back, binary, steps=1, seed=2, progress=False)
    assert torch.equal(back.labelled_x, m.labelled_x) and torch.equal(back.labelled_y, m.labelled_y)


def test_labels_on_another_device_than_the_model_are_moved_to_it_as_x_and_z_are():
    """A CUDA model's CPU labels (a dataset's y) met the one-hot's cat on the wrong device in decode, encode and
    labelled_bound; torch's meta device stands in for CUDA (decode makes no host sync)."""
    m = genzoo.build("ssvae", data_shape=(1, 8, 8), latent_dim=4, hidden=(32,), labels=20).to("meta")
    y = torch.tensor([0, 1], dtype=torch.uint8)
    assert m.check_labels(y, 2).device.type == "meta" and m.check_labels(y, 2).dtype == torch.int64
    assert m.decode(torch.randn(2, 4), y).mean.shape == (2, 1, 8, 8)


def test_m2_labelled_bound_uses_the_gaussian_kl_with_sigma_squared():
    """M2's labelled bound (Kingma et al. 2014, eq. 6) with a q(z|x,y) of sigma far from 0 and 1 against torch's
    closed-form KL: a KL with sigma in place of sigma^2 passed the test whose sigma was e^-30."""
    torch.manual_seed(0)
    m = genzoo.build("ssvae", data_shape=(3,), latent_dim=2, hidden=(), n_classes=2, labels=4, labelled_batch=2)
    with torch.no_grad():                      # sigma of q(z|x,y) well away from 0 and 1
        m.encoder[-1].bias[2:] = torch.tensor([0.7, -0.9])
    m.eval()
    x = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    y = torch.tensor([1, 0])
    eps = torch.randn(2, 2)
    q = m.encode(x, y)
    sigma = q.base_dist.scale
    assert ((sigma - 1).abs() > 0.2).all()     # sigma^2 and sigma differ here
    z = q.base_dist.loc + eps * sigma
    want = m.decode(z, y).log_prob(x) + math.log(0.5) - torch.distributions.kl_divergence(q, m.prior)
    torch.testing.assert_close(m.labelled_bound(x, y, eps=eps).detach(), want.detach(), rtol=1e-5, atol=1e-5)
