"""Speed options of the training loop: bf16 autocast, channels-last, torch.compile, and the GAN's shared G(z)."""

import json
import types

import pytest
import torch

import genzoo
from genzoo.cli import main
from genzoo.data import load_dataset
from genzoo.errors import ConfigError
from genzoo.io import load


def _valid_elbo(model, x):
    torch.manual_seed(0)
    with torch.no_grad():
        return float(model.elbo(x, 10).mean())


def test_bf16_vae_trains_like_fp32():
    train = load_dataset("digits", "train", binarize=True)
    x = load_dataset("digits", "test", binarize=True).transformed(torch.Generator().manual_seed(0))
    elbos = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        m = genzoo.build("vae", data_shape=train.shape, latent_dim=8, hidden=(128,))
        genzoo.fit(m, train, steps=400, batch_size=64, progress=False, precision=precision)
        assert all(p.dtype == torch.float32 for p in m.parameters())  # master weights stay fp32
        elbos[precision] = _valid_elbo(m, x)
    assert elbos["fp32"] > -30  # it learned (the untrained ELBO is about -45)
    assert abs(elbos["bf16"] - elbos["fp32"]) < 0.5, elbos


def test_bf16_keeps_likelihood_terms_in_fp32():
    x = torch.rand(16, 64).round()
    vae = genzoo.build("vae", data_shape=(64,), latent_dim=4, hidden=(32,), posterior_flow="planar", flow_length=2)
    flow = genzoo.build("realnvp", data_shape=(6,), n_couplings=2, hidden=(16,))
    gan = genzoo.build("gan", data_shape=(1, 8, 8), arch="dcgan", latent_dim=4, width=4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert vae.elbo(x).dtype == torch.float32
        y, log_det = flow.transform(torch.randn(16, 6))
        assert y.dtype == log_det.dtype == torch.float32
        assert flow.log_prob(torch.randn(16, 6)).dtype == torch.float32
        assert gan.critic(gan._fake(4)).dtype == torch.float32


@pytest.mark.parametrize("mixing", ["permutation", "linear"])
def test_bf16_flow_inverts_and_matches_fp32_log_prob(mixing):
    torch.manual_seed(0)
    flow = genzoo.build("realnvp", data_shape=(8,), n_couplings=4, hidden=(32, 32), mixing=mixing)
    for p in flow.parameters():  # a flow away from the identity
        p.data.add_(0.1 * torch.randn_like(p))
    x = torch.randn(64, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, _ = flow.transform(x)
        back, _ = flow.transform.inverse(y)
        lp16 = flow.log_prob(x)
    torch.testing.assert_close(back, x, atol=1e-4, rtol=0)  # the same bf16 nets both ways: still a bijection
    torch.testing.assert_close(lp16, flow.log_prob(x), atol=0.1, rtol=0.01)


@pytest.mark.parametrize("name", ["gmm", "gmmn"])
def test_models_that_must_stay_fp32_refuse_bf16(name):
    model = genzoo.build(name, data_shape=(2,))
    with pytest.raises(ConfigError, match="keeps its own dtype"):
        genzoo.fit(model, load_dataset("ring", n=64), steps=1, progress=False, precision="bf16")


def test_fp16_and_unknown_precisions_are_refused():
    model = genzoo.build("vae", data_shape=(2,), latent_dim=2, hidden=(8,), likelihood="gaussian")
    with pytest.raises(ConfigError, match="loss scaling"):
        genzoo.fit(model, load_dataset("ring", n=64), steps=1, progress=False, precision="fp16")
    with pytest.raises(ConfigError, match="unknown precision"):
        genzoo.fit(model, load_dataset("ring", n=64), steps=1, progress=False, precision="fp64")


def test_channels_last_is_automatic_for_convolutions_and_checkpoints_load(tmp_path):
    data = load_dataset("digits", n=128)
    gan = genzoo.build("gan", data_shape=data.shape, arch="dcgan", latent_dim=4, width=4)
    genzoo.fit(gan, data, steps=3, batch_size=32, progress=False, run_dir=tmp_path / "run")
    conv = gan.discriminator.net[2].weight  # (2w, w, 4, 4)
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    back = load(tmp_path / "run")
    for k, v in gan.state_dict().items():
        torch.testing.assert_close(back.state_dict()[k], v, rtol=0, atol=0)
    mlp = genzoo.build("vae", data_shape=data.shape, latent_dim=2, hidden=(8,))
    genzoo.fit(mlp, data, steps=1, progress=False, channels_last=None)  # no convolutions: nothing changes
    assert all(p.is_contiguous() for p in mlp.parameters())


@pytest.mark.parametrize("name, options", [("gan", {"arch": "dcgan", "width": 4}), ("vae", {"arch": "conv"})])
def test_channels_last_changes_layout_not_values(name, options):
    data = load_dataset("digits", n=128)
    out = {}
    for cl in (False, True):
        torch.manual_seed(0)
        model = genzoo.build(name, data_shape=data.shape, latent_dim=4, **options)
        genzoo.fit(model, data, steps=3, batch_size=32, progress=False, channels_last=cl)
        out[cl] = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    for k, v in out[False].items():
        torch.testing.assert_close(out[True][k], v, rtol=1e-4, atol=1e-5)


def _layout(t):
    """'nhwc' or 'nchw' for a 4-D tensor in exactly one of the two layouts, else None."""
    if not isinstance(t, torch.Tensor) or t.dim() != 4:
        return None
    nhwc, nchw = t.is_contiguous(memory_format=torch.channels_last), t.is_contiguous()
    return None if nhwc == nchw else "nhwc" if nhwc else "nchw"


@pytest.mark.parametrize("name, options", [("gan", {"arch": "dcgan", "width": 8}), ("vae", {"arch": "conv"})])
def test_channels_last_training_step_never_mixes_layouts(name, options):
    """An elementwise kernel given one NCHW and one NHWC operand runs 20-30x slower (genzoo/nn/conv.py):
    with the model channels-last, no op of a training step (forward and backward) may mix them."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from genzoo.base import Batch
    from genzoo.train import acceleration

    mixed = []

    class Watch(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if len({_layout(a) for a in args} - {None}) > 1:
                mixed.append(str(func))
            return func(*args, **(kwargs or {}))

    torch.manual_seed(0)
    model = genzoo.build(name, data_shape=(1, 28, 28), latent_dim=4, **options)
    acceleration.to_channels_last(model)
    x = torch.rand(16, 1, 28, 28)
    with Watch():
        acceleration.training_step(model, Batch(x), model.configure_optimizers(), torch.device("cpu"), "fp32", True)
    assert mixed == []


def test_flat_linear_reads_channels_last_features_in_place():
    from genzoo.nn.conv import flat_linear

    torch.manual_seed(0)
    layer = torch.nn.Linear(6 * 5 * 5, 3)
    x = torch.randn(4, 6, 5, 5, requires_grad=True)
    y_ref = layer(x.flatten(1))                                           # (4, 3), NCHW order
    g_out = torch.randn_like(y_ref)
    ref = torch.autograd.grad(y_ref, [x, layer.weight, layer.bias], g_out, retain_graph=True)
    for fmt in (torch.contiguous_format, torch.channels_last):
        xf = x.detach().contiguous(memory_format=fmt).requires_grad_()
        y = flat_linear(xf, layer)                                       # (4, 3)
        torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-6)
        grads = torch.autograd.grad(y, [xf, layer.weight, layer.bias], g_out)
        for g, r in zip(grads, ref):
            torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-6)
        assert grads[0].is_contiguous(memory_format=fmt)  # the gradient comes back in the input's layout
    assert layer.weight.shape == (3, 150) and layer.weight.is_contiguous()  # the stored weight keeps NCHW order


def test_channels_last_head_runs_its_module_hooks():
    """flat_linear's channels-last product skips layer.__call__: a head with hooks (here a forward hook and
    the hook-based spectral norm, whose pre-hook computes the weight) takes layer(x.flatten(1)), so the
    hook fires once, weight_orig gets its gradient, and the values are NCHW's (audit a87, finding 2)."""
    from genzoo.nn.dcgan import DCGANDiscriminator

    x = torch.rand(4, 3, 16, 16)
    out = {}
    for cl in (False, True):
        torch.manual_seed(0)
        d = DCGANDiscriminator((3, 16, 16), width=8, norm="none")
        head = torch.nn.utils.spectral_norm(d.net[-1])
        calls = []
        head.register_forward_hook(lambda m, i, o: calls.append(i[0].shape))
        if cl:
            d = d.to(memory_format=torch.channels_last)
        y = d(x.contiguous(memory_format=torch.channels_last) if cl else x)  # (4,)
        y.sum().backward()
        assert calls == [(4, 16 * 4 * 4)]
        assert head.weight_orig.grad is not None
        out[cl] = y.detach(), head.weight_orig.grad
    torch.testing.assert_close(out[True], out[False], rtol=1e-5, atol=1e-6)


def test_gan_generator_step_reuses_the_discriminator_steps_sample():
    gan = genzoo.build("gan", data_shape=(2,), latent_dim=2, hidden=(8,))
    calls = []
    gan.generator.register_forward_hook(lambda *a: calls.append(1))
    opts = gan.configure_optimizers()
    logs = gan.training_step(genzoo.Batch(torch.randn(16, 2)), opts)
    assert "g_loss" in logs and len(calls) == 1  # one G(z) for both updates
    wgan = genzoo.build("wgan", data_shape=(2,), latent_dim=2, hidden=(8,), d_steps=3)
    calls.clear()
    wgan.generator.register_forward_hook(lambda *a: calls.append(1))
    opts = wgan.configure_optimizers()
    steps = [wgan.training_step(genzoo.Batch(torch.randn(16, 2)), opts) for _ in range(3)]
    assert ["g_loss" in s for s in steps] == [False, False, True] and len(calls) == 3


def test_gan_with_fresh_noise_draws_a_new_sample_for_the_generator_step(tmp_path):
    """g_fresh_noise follows Goodfellow et al. 2014, Algorithm 1: a second G(z) on new noise."""
    gan = genzoo.build("gan", data_shape=(2,), latent_dim=2, hidden=(8,), g_fresh_noise=True)
    seen = []
    gan.generator.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].detach().clone()))
    logs = gan.training_step(genzoo.Batch(torch.randn(16, 2)), gan.configure_optimizers())
    assert "g_loss" in logs and len(seen) == 2 and not torch.equal(seen[0], seen[1])
    genzoo.io.save(gan, tmp_path)
    assert genzoo.load(tmp_path).g_fresh_noise is True                     # kept in config.json


def test_cli_precision_is_recorded_and_refused_with_one_line(tmp_path, capsys):
    rd = tmp_path / "run"
    code = main(["train", "vae", "--steps", "3", "--run-dir", str(rd), "--no-progress", "--precision", "bf16",
                 "--set", "hidden=16", "--set", "latent_dim=2"])
    assert code == 0
    assert json.loads((rd / "run.json").read_text())["recipe"]["train"]["precision"] == "bf16"
    code = main(["train", "gmm", "--steps", "1", "--run-dir", str(tmp_path / "g"), "--no-progress",
                 "--precision", "bf16"])
    err = capsys.readouterr().err
    assert code != 0 and "keeps its own dtype" in err and "Traceback" not in err
    assert not (tmp_path / "g").exists()  # a run that never started leaves no folder


def test_compile_trains_to_the_same_weights():
    """torch.compile (inductor) trains a VAE to the eager weights: the one compile check of the default run (4-9 s,
    the compiler's own start; the other three are `slow`), so CI sees a compiled step that goes wrong (audit 134)."""
    data = load_dataset("ring", n=256)
    out = []
    for compile in (False, True):
        torch.manual_seed(0)
        m = genzoo.build("vae", data_shape=(2,), latent_dim=2, hidden=(16,), likelihood="gaussian")
        genzoo.fit(m, data, steps=5, batch_size=64, progress=False, compile=compile)
        out.append({k: v.detach().clone() for k, v in m.state_dict().items()})
    assert out[0].keys() == out[1].keys()  # compiled in place: the same parameter names
    for k in out[0]:
        torch.testing.assert_close(out[1][k], out[0][k], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's own, on importing dynamo
def test_compile_makes_one_graph_of_an_mlp_network():
    """Module.compile() on an nn.Sequential compiled each Linear as a frame of its own: the VAE hit dynamo's
    recompile limit within 3 steps, and the activations ran eagerly."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    from genzoo.train import acceleration

    torch._dynamo.reset()
    counters.clear()
    m = genzoo.build("vae", data_shape=(1, 8, 8), latent_dim=4, hidden=(32, 16))
    acceleration.compile_networks(m)
    acceleration.compile_networks(m)  # a second fit(compile=True): compiled once
    x = torch.rand(4, 1, 8, 8)
    m.encoder(x)
    assert counters["stats"]["unique_graphs"] == 1 and sorted(m.state_dict()) == sorted(
        genzoo.build("vae", data_shape=(1, 8, 8), latent_dim=4, hidden=(32, 16)).state_dict())
    import copy
    import io

    twin = copy.deepcopy(m)  # its own weights, not the original's (a compiled bound method kept the original)
    with torch.no_grad():
        for p in twin.parameters():
            p.add_(1.0)
    assert not torch.equal(twin.encoder(x), m.encoder(x))
    buf = io.BytesIO()
    torch.save(m, buf)  # whole-module pickling works, as before
    buf.seek(0)
    assert torch.equal(torch.load(buf, weights_only=False).encoder(x), m.encoder(x))


def test_speed_bench_counts_flops_and_times_genzoos_trainer():
    from genzoo.bench import speed

    lin = torch.nn.Linear(30, 20)
    assert speed._flops(lambda: lin(torch.randn(8, 30))) == 2 * 8 * 30 * 20
    data = load_dataset("ring", n=512)
    fit = speed._Fit(genzoo.build("vae", data_shape=(2,), latent_dim=2, hidden=(8,), likelihood="gaussian"),
                     data, batch=64, per=4)
    rates = speed._alternate({"genzoo": fit}, rounds=2)
    assert len(rates["genzoo"]) == 2 and all(r > 0 for r in rates["genzoo"])
    assert speed.matmul_peak(torch.float32, n=128, repeats=2) > 1e6


def test_speed_bench_counts_onednn_products_and_tables_the_linear_kernels(monkeypatch):
    from genzoo.bench import speed
    from genzoo.nn import Linear
    from genzoo.nn import linear as lin
    from genzoo.nn.linear import onednn_available

    if not onednn_available():
        pytest.skip("this torch has no oneDNN")
    monkeypatch.setattr(lin, "_enabled", True)  # (the default on an AMD CPU)

    big = Linear(640, 512)  # large enough for genzoo's oneDNN path, which the flop counter cannot see
    assert speed._flops(lambda: big(torch.randn(8, 640))) == 2 * 8 * 640 * 512
    lines = speed.linear_layers(1, shapes=((16, 640, 512), (16, 20, 40)))
    rows = [r for r in lines if r.startswith("| 16 x")]
    assert len(rows) == 2 and rows[0].endswith("| oneDNN |") and rows[1].endswith("| F.linear |")
    monkeypatch.setattr(lin, "_enabled", False)  # (the default elsewhere): genzoo takes F.linear for every shape
    lines = speed.linear_layers(1, shapes=((16, 640, 512),))
    assert [r for r in lines if r.startswith("| 16 x")][0].endswith("| F.linear |")


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_compile_trains_a_wgan_gp():
    """The gradient penalty's double backward does not run through a compiled critic: it failed as 'a bug in
    genzoo'; its critic pass now runs the network's own forward."""
    data = load_dataset("ring", n=256)
    out = []
    for compile in (False, True):
        torch.manual_seed(0)
        m = genzoo.build("wgan", data_shape=(2,), latent_dim=2, hidden=(16,), d_steps=2)
        genzoo.fit(m, data, steps=4, batch_size=64, progress=False, compile=compile)
        out.append({k: v.detach().clone() for k, v in m.state_dict().items()})
    for k in out[0]:
        torch.testing.assert_close(out[1][k], out[0][k], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_compiled_networks_keep_graph_caches_of_their_own(tmp_path, caplog):
    """Every nn.Sequential shared the one forward of torch's file, and with it one dynamo cache of 8 graphs: M2's
    three networks, at the batch sizes of training, sampling and validation, went past it within 3 steps."""
    import logging

    import torch._dynamo

    from genzoo.train import acceleration

    torch._dynamo.reset()
    m = genzoo.build("ssvae", data_shape=(1, 8, 8), latent_dim=2, hidden=(16,), labels=20)
    acceleration.compile_networks(m)
    assert len({child.forward.__func__ for child in (m.classifier, m.encoder, m.decoder)}) == 3
    data = load_dataset("digits", binarize=True, n=400)
    with caplog.at_level(logging.WARNING, logger="torch._dynamo"):
        genzoo.fit(m, data, steps=3, batch_size=32, valid=data, run_dir=tmp_path / "r", sample_every=2, log_every=1,
                   progress=False, compile=True)
    assert not [r for r in caplog.records if "recompile_limit" in r.getMessage()]


def test_speed_bench_leaves_the_bf16_rows_out_where_the_peaks_have_no_bf16(monkeypatch):
    # a CPU that emulates bf16 (no AVX512-BF16 / AMX) has no bf16 peak measured: each family's table then
    # has no bf16 row and no bf16 goal (they took most of `bench speed` there, 60x an fp32 product)
    from genzoo.bench import speed
    from genzoo.data import Dataset

    assert speed.bf16_slowdown(n=64, repeats=1) > 0
    monkeypatch.setattr(speed, "_alternate", lambda contenders, rounds: {k: [1.0] for k in contenders})
    monkeypatch.setattr(speed, "_attach", lambda contenders, n_eval: None)
    images = Dataset("mnist", "train", torch.randint(256, (64, 1, 28, 28)) / 255, None, levels=256)
    fp32 = {"fp32": 1e11}
    lines = "\n".join(speed.vae(images, 1, 1, fp32) + speed.realnvp(images, 1, 1, fp32) + speed.dcgan(images, 1, 1, fp32))
    assert lines.count("| genzoo (fp32) |") == 3 and "genzoo (fp32, channels-last off)" in lines
    assert "bf16" not in lines
    lines = "\n".join(speed.dcgan(images, 1, 1, {"fp32": 1e11, "bf16": 2e11}))
    assert "| genzoo (bf16) |" in lines and "genzoo (bf16) / plain loop (contiguous)" in lines


def test_fit_without_compile_runs_a_compiled_model_eagerly_again():
    # an earlier fit(compile=True) left the networks compiled for good: fit(compile=False) still ran them compiled
    data = load_dataset("ring", n=256)
    torch.manual_seed(0)
    m = genzoo.build("vae", data_shape=(2,), likelihood="gaussian", hidden=(16,), latent_dim=2)
    genzoo.fit(m, data, steps=2, batch_size=64, progress=False, compile=True)
    assert "forward" in vars(m.encoder) and "forward" in vars(m.decoder)
    genzoo.fit(m, data, steps=2, batch_size=64, progress=False, compile=False)
    assert "forward" not in vars(m.encoder) and "forward" not in vars(m.decoder)
    genzoo.fit(m, data, steps=2, batch_size=64, progress=False, compile=True)  # and compiled again
    assert "forward" in vars(m.encoder)
    # a forward the user set on a network is theirs: neither compiled over nor taken off
    calls = []

    def mine(self, x):
        calls.append(1)
        return type(self).forward(self, x)

    m.decoder.forward = types.MethodType(mine, m.decoder)
    for compile in (True, False):
        genzoo.fit(m, data, steps=2, batch_size=64, progress=False, compile=compile)
        assert vars(m.decoder)["forward"].__func__ is mine and len(calls) >= 2
        calls.clear()
    # a compiled model pickled (torch.save) comes back with the class's forward bound on each network: compiled again
    import io

    from genzoo.train import acceleration

    del m.decoder.forward
    acceleration.compile_networks(m)
    buf = io.BytesIO()
    torch.save(m, buf)
    back = torch.load(io.BytesIO(buf.getvalue()), weights_only=False)
    assert getattr(vars(back.encoder)["forward"], "genzoo_compiled", False) is False  # (what pickling gives back)
    acceleration.compile_networks(back)
    assert vars(back.encoder)["forward"].genzoo_compiled and vars(back.decoder)["forward"].genzoo_compiled


def test_no_compile_turns_compile_off_when_resuming(tmp_path):
    # --compile could be turned on at --resume but not off: a compiled run resumed compiled, always
    rd = tmp_path / "run"
    assert main(["train", "vae", "--steps", "2", "--run-dir", str(rd), "--no-progress"]) == 0
    record = json.loads((rd / "run.json").read_text())
    record["recipe"]["train"]["compile"] = True  # as `--compile` records it, without the compiling
    (rd / "run.json").write_text(json.dumps(record))
    assert main(["train", "--resume", "--run-dir", str(rd), "--steps", "3", "--no-compile", "--no-progress"]) == 0
    assert json.loads((rd / "run.json").read_text())["recipe"]["train"]["compile"] is False


def test_compile_on_a_model_with_nothing_to_compile_needs_no_compiler(monkeypatch):
    """compile=True on the GMM (no networks: EM updates buffers) still asked for a C++ compiler, refusing the run on a
    machine without one, and imported inductor (5 s) to compile nothing (a108 #4). A model with networks is still
    refused without one (tests/test_cli_guards.py)."""
    from genzoo.errors import ConfigError
    from genzoo.train import acceleration

    def no_compiler(device):  # a machine without g++ (patching inductor's config.cpp.cxx broke it for later tests)
        raise ConfigError("compile: torch.compile needs a C++ compiler on the CPU and found none")

    monkeypatch.setattr(acceleration, "check_compile", no_compiler)
    data = load_dataset("ring", split="train", n=200)
    m = genzoo.build("gmm", data_shape=(2,), n_components=2)
    state = genzoo.fit(m, data, steps=2, progress=False, compile=True)
    assert state.step == 2 and m.initialised
