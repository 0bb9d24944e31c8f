"""GPU checks, kept out of the default run: ``make test-gpu`` (``pytest -m gpu``) on a machine with CUDA.

One model per family trains on the GPU through ``fit``, stays finite, and computes what the same weights
compute on the CPU; bf16 autocast and channels-last run there too. ``GENZOO_TEST_DEVICE`` names another
device (``cpu`` checks the tests themselves on a machine without a GPU).
"""

import copy
import os

import pytest
import torch

import genzoo
from genzoo.base import Density, Generator
from genzoo.data import load_dataset

pytestmark = pytest.mark.gpu

#: family -> (model, options, dataset, dataset options)
FAMILIES = {
    "mixture": ("gmm", {"n_components": 4}, "ring", {}),
    "vae": ("vae", {"latent_dim": 4, "hidden": (64,)}, "digits", {"binarize": True}),
    "gan": ("gan", {"arch": "dcgan", "latent_dim": 8, "width": 8}, "digits", {}),
    "wgan-gp": ("wgan", {"arch": "dcgan", "latent_dim": 8, "width": 8, "penalty": "gp"}, "digits", {}),
    "moment matching": ("gmmn", {"latent_dim": 2, "hidden": (32, 32)}, "ring", {}),
    "flow": ("realnvp", {"width": 8, "n_blocks": 1}, "digits", {"dequantize": True}),
    "semi-supervised": ("ssvae", {"latent_dim": 4, "hidden": (64,), "labels": 20}, "digits", {"binarize": True}),
}


@pytest.fixture(scope="module")
def device():
    dev = torch.device(os.environ.get("GENZOO_TEST_DEVICE", "cuda"))
    if dev.type == "cuda" and not torch.cuda.is_available():
        pytest.fail("the gpu tests need CUDA (or GENZOO_TEST_DEVICE=cpu to check the tests themselves)")
    return dev


def _outputs(model, x):
    """What the model computes deterministically: the density, q(y|x)'s logits, or G(z) for fixed z."""
    with torch.no_grad():
        if isinstance(model, Density):
            return model.log_prob(x)
        if hasattr(model, "class_logits"):  # M2
            return model.class_logits(x)
        assert isinstance(model, Generator)
        z = torch.randn(16, model.latent_dim, generator=torch.Generator().manual_seed(0)).to(model.device)
        return model.generate(z)


@pytest.mark.parametrize("family", FAMILIES)
def test_family_trains_on_the_device_and_matches_the_cpu(device, family):
    name, options, data_name, data_options = FAMILIES[family]
    data = load_dataset(data_name, n=512, **data_options)
    torch.manual_seed(0)
    model = genzoo.build(name, data_shape=data.shape, **options).to(device)
    losses = []

    class Record(genzoo.train.callbacks.Callback):
        def on_step_end(self, state, logs):
            losses.append(logs["loss"])

    genzoo.fit(model, data, steps=20, batch_size=64, progress=False, callbacks=[Record()])
    assert model.device.type == device.type
    assert len(losses) == 20 and all(torch.isfinite(torch.tensor(losses)))
    model.eval()
    x = data.transformed(torch.Generator().manual_seed(1))[:16]
    on_device = _outputs(model, x.to(device)).cpu()
    on_cpu = _outputs(copy.deepcopy(model).cpu(), x)
    # convolutions may use TF32 on the GPU: agreement to about 1e-3 relative
    torch.testing.assert_close(on_device, on_cpu, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("name, options", [("vae", {"latent_dim": 4, "hidden": (64,)}),
                                           ("gan", {"arch": "dcgan", "latent_dim": 8, "width": 8})])
def test_bf16_and_channels_last_on_the_device(device, name, options):
    data = load_dataset("digits", n=512, binarize=name == "vae")
    torch.manual_seed(0)
    model = genzoo.build(name, data_shape=data.shape, **options).to(device)
    state = genzoo.fit(model, data, steps=10, batch_size=64, progress=False, precision="bf16", channels_last=True)
    assert state.step == 10
    assert all(p.dtype == torch.float32 and bool(torch.isfinite(p).all()) for p in model.parameters())


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_samples_from_a_generator_on_either_device(device, family):
    """M2 drew with a CUDA generator on the CPU ('Expected a cpu device type for generator'): what `genzoo sample`,
    the sample-based metrics and the training's sample grids pass. A CPU generator gives a model on the device
    the noise a CPU model gets."""
    name, options, data_name, data_options = FAMILIES[family]
    data = load_dataset(data_name, n=256, **data_options)
    torch.manual_seed(0)
    cpu = genzoo.build(name, data_shape=data.shape, **options)
    cpu.setup(data.transformed(torch.Generator().manual_seed(0)), torch.Generator().manual_seed(0))
    if data.y is not None:
        cpu.setup_labels(data.x, data.y, torch.Generator().manual_seed(0))
    on_device = copy.deepcopy(cpu).to(device).eval()
    cpu.eval()
    x = on_device.sample(8, torch.Generator(device=device).manual_seed(0))
    assert x.device.type == device.type and x.shape == (8, *data.shape) and torch.isfinite(x).all()
    from_cpu_noise = on_device.sample(8, torch.Generator().manual_seed(1)).cpu()
    torch.testing.assert_close(from_cpu_noise, cpu.sample(8, torch.Generator().manual_seed(1)), atol=1e-3, rtol=1e-3)


def test_validation_and_evaluation_leave_the_devices_generator_alone(device):
    """validation_losses and evaluate forked the CPU generator alone, and their torch.manual_seed reseeded the device's:
    on CUDA a run's noise restarted from one state after every validation (every 100 steps by the CLI's default)."""
    from genzoo.train.callbacks import validation_losses

    if device.type != "cuda":
        pytest.skip("the CUDA generator: GENZOO_TEST_DEVICE names a device without one")
    data = load_dataset("digits", binarize=True, n=64)
    model = genzoo.build("vae", data_shape=(1, 8, 8), latent_dim=2, hidden=(8,)).to(device)
    torch.cuda.manual_seed(123)
    torch.randn(5, device=device)
    before = torch.cuda.get_rng_state(device)
    validation_losses(model, data, 32)
    from genzoo.eval.likelihood import likelihood_report

    likelihood_report(model, data, iwae_k=2, progress=False)
    assert torch.equal(torch.cuda.get_rng_state(device), before)


def test_bench_speed_times_the_vae_on_the_device_and_names_the_gpu(device, monkeypatch):
    """Issue 7: `genzoo bench speed --device cuda`, its VAE family at the quick size (MNIST-shaped random grey levels,
    the other families and the CPU tables left out): every row's training and evaluation rates are positive, and the
    header names the GPU and its peak."""
    import argparse
    import re

    import genzoo.bench.common as common
    import genzoo.data
    from genzoo.bench import speed
    from genzoo.data import Dataset

    def mnist_like(split, n):
        g = torch.Generator().manual_seed(0 if split == "train" else 1)
        x = torch.randint(0, 256, (n, 1, 28, 28), generator=g).float() / 255
        return Dataset("mnist", split, x, None, levels=256)

    sets = {"train": mnist_like("train", 2048), "test": mnist_like("test", 512)}
    monkeypatch.setattr(common, "mnist_root", lambda args: "nowhere")
    monkeypatch.setattr(genzoo.data, "load_dataset", lambda name, split, root=None, n=None: sets[split])
    for name in ("linear_layers", "realnvp", "dcgan", "em", "parzen"):
        monkeypatch.setattr(speed, name, lambda *a, **k: [])
    text = speed.run(argparse.Namespace(quick=True, data_root=None, device=str(device)))
    header = text.splitlines()[2]
    if device.type == "cuda":
        assert f"on {device} ({torch.cuda.get_device_name(device)})" in header
        assert re.search(r"Matmul peak of this GPU \(8192 x 8192\): fp32 [\d,]+ GFLOP/s", header)
    else:
        assert header.startswith("On the CPU")
    rows = [line.split("|") for line in text.splitlines() if line.startswith("| genzoo") or line.startswith("| plain")
            or line.startswith("| pythae")]
    assert any(r[1].strip() == "genzoo (fp32)" for r in rows) and any(r[1].startswith(" plain") for r in rows)
    for row in rows:
        training, evaluation = (float(row[i].replace(",", "")) for i in (2, 4))
        assert training > 0 and evaluation > 0, row


def test_dequantize_and_binarize_draw_on_the_tensors_device(device):
    """a127 #6: dequantize drew its noise on the CPU whatever x's device: a CUDA tensor met torch's bare "Expected all
    tensors to be on the same device", where binarize (torch.bernoulli) drew on the GPU. Both draw on x's device,
    from a generator on it where given; a generator of another device is one DataError."""
    from genzoo.data.transforms import binarize, dequantize
    from genzoo.errors import DataError

    x = (torch.arange(256.0) / 255).reshape(4, 64).to(device)  # every level of 256
    for generator in (None, torch.Generator(device=device).manual_seed(0)):
        d = dequantize(x, 256, generator)
        assert d.device == x.device and d.dtype == torch.float32
        assert torch.equal(torch.floor(d * 256).cpu(), torch.arange(256.0).reshape(4, 64)) and bool((d < 1).all())
        b = binarize(x, generator)
        assert b.device == x.device and set(b.unique().tolist()) <= {0.0, 1.0}
        assert b[0, 0] == 0 and b[-1, -1] == 1  # the ends of [0, 1]: no draw
    same = [dequantize(x, 256, torch.Generator(device=device).manual_seed(3)) for _ in range(2)]
    assert torch.equal(*same)  # the device's generator: reproducible
    if device.type != "cpu":
        for name, call in (("dequantize", lambda g: dequantize(x, 256, g)), ("binarize", lambda g: binarize(x, g))):
            with pytest.raises(DataError, match=rf"^{name}: a generator on cpu for a tensor on {device.type}"):
                call(torch.Generator().manual_seed(0))
