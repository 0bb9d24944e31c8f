"""genzoo.nn.Linear: oneDNN products on the CPU, the same values and gradients as nn.Linear; graph capture
(TorchScript, torch.fx) of it and of the conv networks; flat_linear's heads; the nn helpers' errors."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from genzoo.nn import linear as lin
from genzoo.nn.linear import Linear, use_onednn

pytestmark = pytest.mark.skipif(not lin.onednn_available(), reason="this torch has no oneDNN")


@pytest.fixture(autouse=True)
def _onednn_on_by_default(monkeypatch):
    """These tests are of the oneDNN path, which is the process default on an AMD CPU only (onednn_default)."""
    monkeypatch.setattr(lin, "_enabled", True)


@pytest.mark.parametrize("setting, vendor, on", [("", "AuthenticAMD", True), ("auto", "AuthenticAMD", True),
                                                 ("", "GenuineIntel", False), (" Auto ", None, None),
                                                 ("0", "AuthenticAMD", False), ("off", "AuthenticAMD", False),
                                                 ("1", "GenuineIntel", True), ("YES", "GenuineIntel", True)])
def test_the_default_kernel_is_oneDNN_on_amd_and_f_linear_elsewhere_unless_the_environment_says(setting, vendor, on,
                                                                                               monkeypatch):
    """Measured (BENCHMARKS.md, speed notes of 2026-12-07): oneDNN's products are the faster on an AMD EPYC, MKL's on
    an Intel Xeon (a VAE step 1.26x, RealNVP 1.11x faster on F.linear there); oneDNN was the default everywhere."""
    monkeypatch.setattr(lin, "cpu_vendor", lambda: vendor)
    assert lin.onednn_default(setting) is bool(on)  # (None: a CPU whose maker cannot be read takes F.linear)
    monkeypatch.setenv("GENZOO_ONEDNN_LINEAR", setting)
    assert lin.onednn_default() is bool(on)


def test_a_mistyped_setting_is_refused_and_the_import_warns_once_and_takes_auto(monkeypatch):
    from genzoo.errors import GenZooWarning

    with pytest.raises(ValueError, match=r"^GENZOO_ONEDNN_LINEAR='of': use 1 \(oneDNN\), 0 \(F.linear\) or auto"):
        lin.onednn_default("of")
    monkeypatch.setenv("GENZOO_ONEDNN_LINEAR", "of")
    for vendor in ("AuthenticAMD", "GenuineIntel"):
        monkeypatch.setattr(lin, "cpu_vendor", lambda: vendor)
        with pytest.warns(GenZooWarning, match="GENZOO_ONEDNN_LINEAR='of'.*; taking auto$"):
            assert lin._environment_default() == (vendor == "AuthenticAMD", f"genzoo's default for this CPU's maker, "
                                                  f"{vendor}: GENZOO_ONEDNN_LINEAR='of' is not 1, 0 or auto")


@pytest.mark.parametrize("setting, reason", [(None, "genzoo's default for this CPU's maker, unknown"),
                                             (" auto", "genzoo's default for this CPU's maker, unknown"),
                                             (" Off ", "GENZOO_ONEDNN_LINEAR=Off")])
def test_the_default_says_why_it_was_taken(setting, reason, monkeypatch):
    """bench speed's header gives this reason: it re-read the environment, and named a rejected setting as the
    reason (review r115 F1)."""
    monkeypatch.setattr(lin, "cpu_vendor", lambda: None)
    if setting is None:
        monkeypatch.delenv("GENZOO_ONEDNN_LINEAR", raising=False)
    else:
        monkeypatch.setenv("GENZOO_ONEDNN_LINEAR", setting)
    assert lin._environment_default() == (False, reason)


def test_cpu_vendor_reads_proc_cpuinfo_else_the_platform(monkeypatch, tmp_path):
    import builtins
    import platform
    import types

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9654\n")
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda f, *a, **k: real_open(info if f == "/proc/cpuinfo" else f, *a, **k))
    assert lin.cpu_vendor() == "AuthenticAMD"
    info.write_bytes(b"processor\t: 0\nBogoMIPS\t: \xff\nCPU implementer\t: 0x41\n")  # ARM Linux: no vendor_id
    asked = []
    monkeypatch.setattr(platform, "processor", lambda: asked.append(1) or "Intel64 Family 6 Model 143, GenuineIntel")
    assert lin.cpu_vendor() is None and not asked  # (elsewhere than on Windows it runs `uname -p`: no maker there)
    info.unlink()  # no /proc (Windows, macOS): platform.processor() has it on Windows, not on macOS
    assert lin.cpu_vendor() is None and not asked
    monkeypatch.setattr(lin, "sys", types.SimpleNamespace(platform="win32"))
    assert lin.cpu_vendor() == "GenuineIntel"
    monkeypatch.setattr(platform, "processor", lambda: "AMD64 Family 25 Model 1 Stepping 1, AuthenticAMD")
    assert lin.cpu_vendor() == "AuthenticAMD"


def _pair(n_in=640, n_out=512, bias=True, seed=0):
    """A genzoo Linear and an nn.Linear with the same weights."""
    torch.manual_seed(seed)
    ours, ref = Linear(n_in, n_out, bias=bias), nn.Linear(n_in, n_out, bias=bias)
    ref.load_state_dict(ours.state_dict())
    return ours, ref


def _onednn_calls(monkeypatch) -> list:
    calls = []
    apply = lin._OneDNNLinear.apply
    monkeypatch.setattr(lin._OneDNNLinear, "apply", lambda *a: calls.append(1) or apply(*a))
    return calls


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(32,), (4, 8)])
def test_values_and_gradients_match_nn_linear(bias, shape, monkeypatch):
    calls = _onednn_calls(monkeypatch)
    ours, ref = _pair(bias=bias)
    x = torch.randn(*shape, 640)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    y1, y2 = ours(x1), ref(x2)
    assert calls, "a 640 x 512 float32 layer on the CPU should take the oneDNN path"
    assert y1.shape == y2.shape == (*shape, 512)
    torch.testing.assert_close(y1, y2, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(y1)
    (y1 * g).sum().backward()
    (y2 * g).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad, rtol=1e-4, atol=1e-4)
    if bias:
        torch.testing.assert_close(ours.bias.grad, ref.bias.grad, rtol=1e-5, atol=1e-4)


def test_a_strided_input_and_no_input_gradient(monkeypatch):
    calls = _onednn_calls(monkeypatch)
    ours, ref = _pair()
    x = torch.randn(16, 1280)[:, ::2]  # a non-contiguous (16, 640) view, as a coupling's slice is
    ours(x).square().sum().backward()
    ref(x).square().sum().backward()
    assert calls
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad, rtol=1e-4, atol=1e-3)


def test_second_derivatives_as_the_gradient_penalty_takes_them(monkeypatch):
    calls = _onednn_calls(monkeypatch)
    ours, ref = _pair(n_in=640, n_out=512)
    head = torch.randn(512)

    def penalty(layer):
        x = torch.randn(8, 640, generator=torch.Generator().manual_seed(1)).requires_grad_()
        out = (torch.tanh(layer(x)) @ head).sum()
        (g,) = torch.autograd.grad(out, x, create_graph=True)
        return g.square().sum()

    penalty(ours).backward()
    penalty(ref).backward()
    assert calls
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ours.bias.grad, ref.bias.grad, rtol=1e-4, atol=1e-4)


def test_plain_path_for_small_layers_other_dtypes_autocast_transforms_and_the_switch(monkeypatch):
    calls = _onednn_calls(monkeypatch)
    small = Linear(20, 400)  # 8,000 weights < MIN_SIZE
    small(torch.randn(4, 20))
    big = Linear(640, 512)
    big.double()(torch.randn(4, 640, dtype=torch.float64))
    big.float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert big(torch.randn(4, 640)).dtype == torch.bfloat16
    with use_onednn(False):
        big(torch.randn(4, 640))
    torch.func.vmap(big)(torch.randn(3, 4, 640))
    torch.func.jvp(big, (torch.randn(4, 640),), (torch.randn(4, 640),))
    assert calls == []
    big(torch.randn(4, 640))  # the switch is back on after the block
    assert calls == [1]


def test_torch_func_over_the_parameters_takes_f_linear():
    """grad through functional_call and a vmap ensemble over stack_module_state: the transform wraps the
    weight and bias, not the input, and gives the plain path's values (audit a87, finding 1)."""
    from torch.func import functional_call, grad, stack_module_state, vmap

    layers = [_pair(seed=s)[0] for s in (0, 1)]
    x = torch.randn(8, 640)
    params = {k: v.detach() for k, v in layers[0].named_parameters()}
    stacked, _ = stack_module_state(layers)

    def run():
        g = grad(lambda p: functional_call(layers[0], p, (x,)).square().sum())(params)
        return g, vmap(lambda p: functional_call(layers[0], p, (x,)))(stacked)  # (2, 8, 512)

    (g, y) = run()
    with use_onednn(False):
        (g_ref, y_ref) = run()
    assert y.shape == (2, 8, 512)
    torch.testing.assert_close(y, y_ref)
    for k in g_ref:
        torch.testing.assert_close(g[k], g_ref[k])


@pytest.mark.parametrize("bias", [True, False])
def test_an_empty_batch_gets_zero_gradients_as_nn_linear_gives(bias):
    """A (0, in) input: oneDNN makes no primitive for the weight gradient's zero inner size, so it
    takes F.linear (audit a87, finding 3)."""
    ours, ref = _pair(bias=bias)
    for layer in (ours, ref):
        x = torch.randn(0, 640, requires_grad=True)
        y = layer(x)
        assert y.shape == (0, 512)
        y.sum().backward()
        assert x.grad.shape == (0, 640)
    torch.testing.assert_close(ours.weight.grad, torch.zeros(512, 640))
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad)
    if bias:
        torch.testing.assert_close(ours.bias.grad, ref.bias.grad)


def test_state_dict_and_init_are_nn_linears():
    torch.manual_seed(3)
    a = Linear(700, 400)
    torch.manual_seed(3)
    b = nn.Linear(700, 400)
    assert isinstance(a, nn.Linear)
    assert a.state_dict().keys() == b.state_dict().keys()
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())


def test_an_mlp_trains_the_same_on_either_path():
    """Ten Adam steps of a 784-512-784 MLP: the two kernels agree to float32 rounding all the way."""
    from genzoo.nn import mlp

    x = torch.randn(64, 784, generator=torch.Generator().manual_seed(0))
    losses = {}
    for on in (True, False):
        torch.manual_seed(0)
        net = mlp([784, 512, 784])
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        with use_onednn(on):
            for _ in range(10):
                loss = F.mse_loss(net(x), x)
                opt.zero_grad()
                loss.backward()
                opt.step()
        losses[on] = loss.item()
    assert losses[True] == pytest.approx(losses[False], rel=1e-4)
    assert losses[True] < 1.0  # it learned something: the identity's MSE starts near 1.3


def test_training_on_the_onednn_path_repeats_and_resumes_bitwise(tmp_path, monkeypatch):
    """oneDNN's products are deterministic here: two runs agree bitwise, and so does a run stopped at a
    checkpoint and resumed (the trainer's resume guarantee, on layers large enough to take oneDNN)."""
    import genzoo
    from genzoo.data import Dataset

    calls = _onednn_calls(monkeypatch)
    x = torch.rand(512, 1, 28, 28, generator=torch.Generator().manual_seed(0))  # (N, 1, 28, 28)
    data = Dataset("noise", "train", x, None, levels=256, binarize=True)

    def model():
        torch.manual_seed(0)
        return genzoo.build("vae", data_shape=(1, 28, 28), latent_dim=8, hidden=(512,))  # 784 x 512: oneDNN

    kw = dict(batch_size=64, seed=1, progress=False, checkpoint_every=3)
    a, b = model(), model()
    genzoo.fit(a, data, steps=6, **kw)
    genzoo.fit(b, data, steps=6, **kw)
    assert calls
    c = model()
    genzoo.fit(c, data, steps=3, run_dir=tmp_path, **kw)
    c = model()
    genzoo.fit(c, data, steps=6, run_dir=tmp_path, resume=True, **kw)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]) and torch.equal(v, c.state_dict()[k]), k


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_torchscript_tracing_scripting_and_fx_take_f_linear(monkeypatch):
    """jit.trace (and the TorchScript ONNX exporter on it) crashed on a layer large enough for oneDNN ("unsupported
    input list type: Scalar?"); jit.script on any genzoo MLP (the global switch) and fx.symbolic_trace too (a
    Proxy's shape compared in _eligible). Each now records aten's linear and gives the eager values (audit a112, 1)."""
    from torch import fx

    from genzoo.nn import mlp

    torch.manual_seed(0)
    big, small = mlp([640, 512, 3]), mlp([64, 32, 3])
    xb, xs = torch.randn(4, 640), torch.randn(4, 64)
    traced = torch.jit.trace(big, xb)
    assert "aten::linear" in str(traced.inlined_graph) and "mkldnn" not in str(traced.inlined_graph)
    torch.testing.assert_close(traced(xb), big(xb), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.jit.script(small)(xs), small(xs), rtol=0, atol=0)
    for net, x in ((big, xb), (small, xs)):
        graph = fx.symbolic_trace(net)
        torch.testing.assert_close(graph(x), net(x), rtol=1e-5, atol=1e-5)
    calls = _onednn_calls(monkeypatch)
    big(xb)  # eager: still oneDNN
    assert calls


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
@pytest.mark.parametrize("channels_last", [False, True])
def test_the_conv_networks_trace_under_fx_and_jit_with_their_checkpoint_names(channels_last):
    """Their forwards sliced the Sequential (self.net[:-2](x)): a slice is a new Sequential, not a submodule, and
    fx.symbolic_trace raised NameError even with oneDNN off (audit a112, 1). They now call the installed layers:
    the eager values are bitwise those of running the slices, and the state_dict keys are unchanged."""
    from torch import fx

    from genzoo.nn import ConvDecoder, ConvEncoder
    from genzoo.nn.dcgan import DCGANDiscriminator, DCGANGenerator

    fmt = torch.channels_last if channels_last else torch.contiguous_format
    torch.manual_seed(0)
    img, z = torch.randn(3, 1, 8, 8).contiguous(memory_format=fmt), torch.randn(3, 5)
    nets = {"enc": (ConvEncoder((1, 8, 8), 4, channels=(4, 8)), img, 2, -2),
            "dec": (ConvDecoder(5, (1, 8, 8), channels=(8, 4)), z, 3, 3),
            "g": (DCGANGenerator(5, (1, 8, 8), width=4), z, 2, 2),
            "d": (DCGANDiscriminator((1, 8, 8), width=4, norm="none"), img, 2, -2)}
    keys = {"enc": ["net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias", "net.5.weight", "net.5.bias"],
            "dec": ["net.0.weight", "net.0.bias", "net.3.weight", "net.3.bias", "net.5.weight", "net.5.bias"],
            "g": ["net.0.weight", "net.2.weight", "net.2.bias", "net.2.running_mean", "net.2.running_var",
                  "net.2.num_batches_tracked", "net.4.weight", "net.5.weight", "net.5.bias", "net.5.running_mean",
                  "net.5.running_var", "net.5.num_batches_tracked", "net.7.weight", "net.7.bias"],
            "d": ["net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias", "net.6.weight", "net.6.bias"]}
    for name, (net, x, _, _) in nets.items():
        net.eval().to(memory_format=fmt)
        assert list(net.state_dict()) == keys[name], name
        y = net(x)
        torch.testing.assert_close(fx.symbolic_trace(net)(x), y, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(torch.jit.trace(net, x)(x), y, rtol=1e-6, atol=1e-6)
    enc, d = nets["enc"][0], nets["d"][0]  # the old forwards, by slicing
    from genzoo.nn.conv import flat_linear, layout_of
    assert torch.equal(enc(img), flat_linear(enc.net[:-2](img), enc.net[-1]))
    assert torch.equal(d(img), flat_linear(d.net[:-2](img), d.net[-1]).squeeze(-1))
    dec, g = nets["dec"][0], nets["g"][0]
    assert torch.equal(dec(z), dec.net[3:](layout_of(dec.net[:3](z), dec.net[3])))
    assert torch.equal(g(z), g.net[2:](layout_of(g.net[:2](z), g.net[4])))


def test_use_onednn_is_per_thread():
    """The switch was one global: two threads' overlapping use_onednn(False) blocks (A enters, B enters, A leaves,
    B leaves) gave B oneDNN inside its block after A left, and left oneDNN off for the whole process after both
    (audit a112, 2). Each thread now has its own setting, a thread outside any block the process default."""
    import threading

    x, w = torch.randn(4, 640), torch.randn(512, 640)
    assert lin._eligible(x, w)
    ev = {k: threading.Event() for k in ("a_in", "b_in", "a_out")}
    seen = {}

    def a():
        with use_onednn(False):
            ev["a_in"].set()
            ev["b_in"].wait(5)
            seen["a"] = lin._eligible(x, w)
        ev["a_out"].set()

    def b():
        ev["a_in"].wait(5)
        seen["b_outside"] = lin._eligible(x, w)  # A's block is not B's
        with use_onednn(False):
            ev["b_in"].set()
            ev["a_out"].wait(5)
            seen["b"] = lin._eligible(x, w)
            with use_onednn(True):
                seen["b_nested"] = lin._eligible(x, w)
            seen["b_after_nested"] = lin._eligible(x, w)

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {"a": False, "b_outside": True, "b": False, "b_nested": True, "b_after_nested": False}
    assert lin._eligible(x, w)  # this thread, and the process default, as they were


def test_flat_linear_honours_a_heads_own_forward_and_takes_any_head():
    """Channels-last flat_linear computed linear(x, head.weight, head.bias) whatever the head: a subclass's own
    forward was skipped (other values than NCHW) and a head without .weight raised AttributeError (audit a112, 3)."""
    from genzoo.nn.dcgan import DCGANDiscriminator

    class Shifted(nn.Linear):
        def forward(self, x):
            return super().forward(x) + 100.0

    class ShiftedOurs(Linear):
        def forward(self, x):
            return super().forward(x) + 100.0

    torch.manual_seed(0)
    x = torch.randn(3, 1, 8, 8)
    for make in (lambda old: Shifted(old.in_features, 1), lambda old: ShiftedOurs(old.in_features, 1),
                 lambda old: nn.Sequential(nn.Dropout(0.0), old)):
        d = DCGANDiscriminator((1, 8, 8), width=4).eval()
        old = d.net[-1]
        head = make(old)
        if not isinstance(head, nn.Sequential):
            head.load_state_dict(old.state_dict())
        d.net[-1] = head
        nchw = d(x)
        d.to(memory_format=torch.channels_last)
        torch.testing.assert_close(d(x.contiguous(memory_format=torch.channels_last)), nchw, rtol=1e-6, atol=1e-6)
        if not isinstance(head, nn.Sequential):
            assert nchw.min() > 90  # the head's own forward ran


def test_the_nn_helpers_refuse_an_unknown_activation_and_short_channels_in_one_line():
    """A bare KeyError: 'swish' and an IndexError (audit a112, 4)."""
    from genzoo.errors import ConfigError
    from genzoo.nn import ConvDecoder, ConvEncoder, mlp

    choices = "choose one of relu, tanh, leaky_relu, elu, softplus, gelu"
    for make in (lambda: mlp([4, 3, 2], activation="swish"), lambda: mlp([4, 2], activation="swish"),
                 lambda: ConvEncoder((1, 8, 8), 4, activation="swish"),
                 lambda: ConvDecoder(4, (1, 8, 8), activation="swish")):
        with pytest.raises(ConfigError, match=f"^unknown activation 'swish': {choices}$"):
            make()
    for make in (lambda: ConvEncoder((1, 8, 8), 4, channels=(8,)), lambda: ConvDecoder(4, (1, 8, 8), channels=(8,))):
        with pytest.raises(ConfigError, match=r"channels needs 2 numbers, got \(8,\)$"):
            make()
