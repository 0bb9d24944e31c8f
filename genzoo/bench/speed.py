"""Training and evaluation throughput of every family beside the reference implementations, in one process.

Each family is timed on the CPU (with ``--device cuda`` the VAE, RealNVP and DCGAN on a GPU: below), on
MNIST-size data with the same architecture and batch size as its peers, in alternating rounds (so every
contender sees the same machine) and reported as the median training rate (evaluation: the best of 3 calls
after a warm-up):

* **VAE**, 784-400-20 MLP, Bernoulli decoder on grey levels, batch 128, Adam 1e-3: genzoo's ``fit``
  against the plain PyTorch reference (pytorch/examples ``vae/main.py``: a ``DataLoader`` converting
  each image to float, sigmoid + ``binary_cross_entropy``) and against pythae's ``VAE`` with the same
  encoder and decoder, fed by the same loader.
* **RealNVP** on 784-D vectors (dequantized, logit MNIST), 8 affine couplings with MLPs of two hidden
  layers of 1,024 units, batch 256, Adam 1e-4: genzoo's ``fit`` (which dequantizes and takes the logit
  of each batch itself) with the halves swapped between couplings and no gradient clipping, as the peers
  do, against normflows (``AffineCouplingBlock`` + swap permutations) and zuko (``flows.RealNVP``), both
  fed precomputed logits; and genzoo's defaults (random permutations, clipping at 100) beside them.
* **DCGAN** on 28x28 MNIST, genzoo's DCGAN networks (width 64, z of 100), batch 64, Adam 2e-4: genzoo's
  ``fit`` against the plain loop of pytorch/examples ``dcgan/main.py`` on the same networks.
* **EM**, full covariances, 10 components, MNIST projected on 50 principal components: seconds per
  iteration of genzoo's GMM against scikit-learn's ``GaussianMixture`` from the same initial
  parameters (both the mean of the iterations after the first two), and the mean log-likelihood both
  reach after the same number of iterations.
* **Parzen** windows: one sigma, 10,000 test images against 10,000 kernels, genzoo against NumPy
  (float32 throughout: matrix products and SciPy's log-sum-exp); and genzoo's whole protocol (sigma
  search plus test); the best of 2 rounds, the three in turn.

A first table times the forward and backward of each linear layer shape of these models in float32:
torch's ``F.linear`` (MKL) against the oneDNN products that ``genzoo.nn.Linear`` takes, in turn.

genzoo runs at its defaults (fp32; its large linear layers on the kernel ``genzoo.nn.linear.onednn_default``
picks for this CPU, oneDNN on an AMD CPU and ``F.linear`` (MKL) on others; channels-last for the convolutional
DCGAN), again with bf16 autocast, and again with its linear layers on the other kernel (the "fp32, F.linear" or
"fp32, oneDNN" rows, which the header names: they separate what the kernel choice gives from the rest). The machine's matmul peak (fp32 and
bf16, 2048x2048 products; fp32 the faster of MKL and oneDNN) is measured first, and each row's achieved
FLOP/s (products counted by ``torch.utils.flop_counter`` on one step) is given as a share of it. On a CPU
that emulates bf16 (a 512x512 bf16 product over ``BF16_MAX_SLOWDOWN`` times an fp32 one's time: no
AVX512-BF16 or AMX) the bf16 rows are left out with a note; they would take most of the run. The
peers are optional extras (pythae, normflows, zuko: ``pip install -c constraints.txt -e '.[bench]'``); a
missing one, or one that fails to import, leaves its row out with a note (which gives the error).

``--device`` (default ``cpu``; ``cuda``, ``cuda:N`` or ``auto``, resolved and refused as ``genzoo train``'s is;
``mps`` is refused) puts the VAE, RealNVP and DCGAN rows on a CUDA GPU: genzoo's models are moved there before
``fit``, the plain loops' and the peers' modules too, and each of their batches is moved as the reference
scripts move theirs (``x.to(device)``). Every timer waits for the device (:func:`_sync`) before it reads the
clock. The peak is then the GPU's (8192 x 8192 products, cuBLAS; fp32 under torch's TF32 setting, off by
default for matrix products, which the header gives), with bf16 rows where the GPU has native bf16 (compute
capability 8.0 on; the CPU's emulation check is not run); the header names the GPU, and there are no
rows of genzoo on the other linear kernel (its linear layers take F.linear on a GPU). The linear-layer, EM and Parzen tables
stay CPU measurements (oneDNN, scikit-learn and NumPy run on the CPU only), which the header says. Without
``--device`` a GPU the machine has is not timed (the header says so).
"""

from __future__ import annotations

import math
import statistics
import time
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from genzoo.nn import linear as linear_module
from genzoo.nn.linear import MIN_SIZE, linear, onednn_available, use_onednn

DESCRIPTION = ("training and evaluation throughput of the VAE, RealNVP, DCGAN, EM and Parzen beside plain PyTorch, "
               "pythae, normflows, zuko, scikit-learn and NumPy, on the CPU (--device cuda: the VAE, RealNVP and DCGAN on a GPU; peers: "
               "pip install -c constraints.txt -e '.[bench]')")
#: the flags of `genzoo bench` this benchmark reads (others given are refused), as argparse dest names
FLAGS = ("data_root", "device")
DEFAULTS = {"device": "cpu"}
RUNS = False  # nothing written to --runs-dir
ROUNDS, QUICK_ROUNDS = 5, 2
EVAL_REPEATS = 3  # evaluation rates: the best of this many calls, after a warm-up
PARZEN_ROUNDS = 2  # Parzen: the best of this many rounds of NumPy, genzoo and the protocol in turn
PARZEN_SIZE, QUICK_PARZEN_SIZE = 10_000, 2_000  # test images and kernels
BENCH_EXTRAS = "pip install -c constraints.txt -e '.[bench]'"  # the peers, at the versions genzoo is tested with
#: a bf16 product this many times slower than fp32 means the CPU emulates bf16 (no AVX512-BF16 or AMX):
#: its bf16 rows are left out (they would take most of the run and say nothing of the fast path)
BF16_MAX_SLOWDOWN = 4.0
F_LINEAR = "fp32, F.linear"  # the row label of genzoo with its linear layers on torch's F.linear (MKL), not oneDNN
ONEDNN = "fp32, oneDNN"  # ... and on oneDNN, where its default here (genzoo.nn.linear.onednn_default) is F.linear
PEAK_SIZE, CUDA_PEAK_SIZE = 2048, 8192  # the matmul peak's n x n products: a GPU's 2048 product is over in microseconds
CPU = torch.device("cpu")


def _sync(device: torch.device) -> None:
    """Wait for the work queued on ``device`` (CUDA runs asynchronously): every timer calls it before reading the
    clock. Nothing on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# -- timing ---------------------------------------------------------------------------------------------
def _alternate(contenders: dict, rounds: int) -> dict[str, list[float]]:
    """Call each contender's ``round()`` (-> examples per second) in turn, ``rounds`` times; one warm-up each."""
    for c in contenders.values():
        c.round()
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, c in contenders.items():
            rates[name].append(c.round())
    return rates


def _alternate_times(fns: dict, rounds: int, warm: bool = True,
                     device: torch.device = CPU) -> tuple[dict[str, list[float]], dict]:
    """Seconds of each call of ``fns``' functions, called in turn ``rounds`` times (after one untimed call each
    where ``warm``), and each one's last result; ``device`` is where they run (its work waited for)."""
    if warm:
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    last = {}
    for _ in range(rounds):
        for name, fn in fns.items():
            _sync(device)
            t0 = time.perf_counter()
            last[name] = fn()
            _sync(device)
            times[name].append(time.perf_counter() - t0)
    return times, last


def _peer_note(peer: str, error: Exception) -> str:
    """The note of a peer whose import failed: not installed, or installed and failing, with the error."""
    if isinstance(error, ModuleNotFoundError) and error.name == peer:
        return f"{peer} is not installed (`{BENCH_EXTRAS}` installs the peers): its row is left out."
    return f"{peer} could not be imported ({type(error).__name__}: {error}): its row is left out."


def _flops(step) -> float:
    """Floating-point operations of one call of ``step`` (matrix products and convolutions).

    Counted with genzoo's linear layers on ``F.linear``: the flop counter knows aten's products, not
    oneDNN's, and the products are the same either way."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, use_onednn(False):
        step()
    return float(counter.get_total_flops())


def matmul_peak(dtype: torch.dtype, n: int | None = None, repeats: int = 10, device: torch.device = CPU) -> float:
    """Best FLOP/s of an n x n matrix product in ``dtype`` (n: ``PEAK_SIZE``, on CUDA ``CUDA_PEAK_SIZE``) on
    ``device``: on the CPU's threads ``a @ b`` (MKL for float32, oneDNN for bfloat16) and, in float32, oneDNN's
    product too (whatever ``GENZOO_ONEDNN_LINEAR`` says), whichever is faster; on a GPU ``a @ b`` (cuBLAS, with
    TF32 as torch's setting says)."""
    n = n or (CUDA_PEAK_SIZE if device.type == "cuda" else PEAK_SIZE)
    a, b = (torch.randn(n, n, dtype=dtype, device=device) for _ in range(2))
    best = _best_time(lambda: a @ b, repeats, device)
    if dtype == torch.float32 and device.type == "cpu" and onednn_available():
        with use_onednn(True):
            best = min(best, _best_time(lambda: linear(a, b), repeats))  # a @ b.T: the same n^3 products
    return 2 * n ** 3 / best


def bf16_slowdown(n: int = 512, repeats: int = 3) -> float:
    """How many times longer an n x n matrix product takes in bfloat16 than in float32 on this CPU: below 1
    where bf16 is native (AVX512-BF16, AMX), tens where it is emulated.

    >>> bf16_slowdown(n=64, repeats=1) > 0
    True
    """
    a, b = torch.randn(n, n), torch.randn(n, n)
    a16, b16 = a.bfloat16(), b.bfloat16()
    return _best_time(lambda: a16 @ b16, repeats) / _best_time(lambda: a @ b, repeats)


class _Loop:
    """A contender that times ``per`` calls of ``step`` (each one batch of ``batch`` examples) on ``device``;
    ``onednn`` is the :func:`~genzoo.nn.linear.use_onednn` switch its rounds and evaluation run under, None for
    genzoo's default on this CPU (it matters only where genzoo's networks are used on the CPU: genzoo's rows, and the
    DCGAN plain loop on genzoo's networks)."""

    def __init__(self, step, batch: int, per: int, evaluate=None, precision: str = "fp32", onednn: bool | None = None,
                 device: torch.device = CPU):
        self.step, self.batch, self.per, self.evaluate, self.precision = step, batch, per, evaluate, precision
        self.onednn, self.device = linear_module.onednn_in_use() if onednn is None else onednn, device

    def round(self) -> float:
        with use_onednn(self.onednn):
            return self._round()

    def _round(self) -> float:
        _sync(self.device)
        t0 = time.perf_counter()
        for _ in range(self.per):
            self.step()
        _sync(self.device)
        return self.batch * self.per / (time.perf_counter() - t0)


class _Fit(_Loop):
    """genzoo's own trainer: ``fit`` for ``warm + per`` steps, timed from step ``warm`` to the end, on the model's
    device (moved there before: ``fit`` trains where the model is)."""

    def __init__(self, model, data, batch: int, per: int, evaluate=None, warm: int = 3, onednn: bool | None = None,
                 **options):
        from genzoo.train.callbacks import Callback

        clock = self.clock = {}
        timed, device = (warm, warm + per), model.device

        class Clock(Callback):
            def on_step_end(self, state, logs):
                if state.step in timed:  # (a wait at these two steps alone: the others run as fit runs them)
                    _sync(device)
                    clock[state.step] = time.perf_counter()

        self.model, self.data, self.options, self.warm, self.callback = model, data, options, warm, Clock()
        super().__init__(self._one_step, batch, per, evaluate, options.get("precision", "fp32"), onednn, device)

    def _round(self) -> float:
        import genzoo

        self.clock.clear()
        genzoo.fit(self.model, self.data, steps=self.warm + self.per, batch_size=self.batch, progress=False,
                   log_every=10 ** 9, checkpoint_every=10 ** 9, callbacks=[self.callback], **self.options)
        return self.batch * self.per / (self.clock[self.warm + self.per] - self.clock[self.warm])

    def _one_step(self):  # for the FLOP count: one training step as fit runs it
        from genzoo.base import Batch
        from genzoo.train import acceleration

        x = self.data.batch(torch.arange(self.batch), torch.Generator().manual_seed(0)).to(self.device)
        self.model.train()  # fit hands the model back in eval mode
        acceleration.training_step(self.model, Batch(x), self.model.configure_optimizers(), self.device,
                                   self.precision, acceleration.use_channels_last(self.model, self.options.get("channels_last")))


def _other_kernel() -> tuple[str | None, bool]:
    """The row of genzoo with its linear layers on the kernel its default does not take here, and that kernel's
    :func:`~genzoo.nn.linear.use_onednn` switch: 'fp32, F.linear' where genzoo takes oneDNN, else 'fp32, oneDNN';
    no row (None) where this torch cannot run oneDNN."""
    if not onednn_available():
        return None, False
    return (F_LINEAR, False) if linear_module.onednn_in_use() else (ONEDNN, True)


def _left_out(label: str, precision: str, peaks: dict, device: torch.device) -> bool:
    """Whether a genzoo row is not run: its precision has no peak here (bf16 emulated), or it is the other linear
    kernel's row on a GPU (where genzoo's linear layers take F.linear anyway)."""
    return precision not in peaks or (label in (F_LINEAR, ONEDNN) and device.type != "cpu")


def _eval_rate(fn, n: int, repeats: int = EVAL_REPEATS, device: torch.device = CPU) -> float:
    """Examples per second of ``fn()`` (which handles ``n`` examples on ``device``), best of ``repeats``, no
    gradients."""
    with torch.no_grad():
        return n / _best_time(fn, repeats, device)


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def _timed(fn, device: torch.device = CPU) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def _best_time(fn, repeats: int, device: torch.device = CPU) -> float:
    """The shortest of ``repeats`` timed calls of ``fn`` (its work on ``device``), after one untimed warm-up call."""
    fn()
    return min(_timed(fn, device) for _ in range(repeats))


def _table(title: str, unit: str, contenders: dict, rates: dict, peaks: dict, goals: dict, notes: list[str]) -> list[str]:
    """One family's Markdown table, ratios against every peer (rounded to the 3 decimals printed, then judged)."""
    med = {k: statistics.median(v) for k, v in rates.items()}
    n_rounds = max(map(len, rates.values()), default=0)
    median = f"median of {n_rounds} round{'s' if n_rounds != 1 else ''}"
    lines = [f"### {title}", "", f"| implementation | training {unit}/s ({median}) | min - max | evaluation {unit}/s "
             f"(best of {EVAL_REPEATS}) | GFLOP/s | share of peak |", "|---|---|---|---|---|---|"]
    for name, c in contenders.items():
        fl = getattr(c, "flops_per_example", None)
        gf = fl * med[name] / 1e9 if fl else None
        peak = peaks["bf16" if c.precision == "bf16" else "fp32"]
        ev = f"{c.eval_rate:,.0f}" if getattr(c, "eval_rate", None) else ""
        lines.append(f"| {name} | {med[name]:,.0f} | {min(rates[name]):,.0f} - {max(rates[name]):,.0f} | {ev} | "
                     + (f"{gf:.1f} | {100 * gf * 1e9 / peak:.0f}% of {c.precision} |" if gf else " | |"))
    lines.append("")
    judged = n_rounds > QUICK_ROUNDS  # --quick's few rounds are too noisy to call a goal met or missed
    for ours, theirs, goal in goals:
        if ours in med and theirs in med:
            r = round(med[ours] / med[theirs], 3)
            verdict = f": {'met' if r >= goal else 'missed'}" if judged else f": not judged on {n_rounds} rounds"
            lines.append(f"- {ours} / {theirs}: **{r:.3f}x** (goal >= {goal}x{verdict})")
    lines += [f"- {n}" for n in notes]
    return lines + [""]


def _attach(contenders: dict, n_eval: int):
    """FLOPs per training example and evaluation rate of each contender."""
    for c in contenders.values():
        c.flops_per_example = _flops(c.step) / c.batch
        with use_onednn(c.onednn):
            c.eval_rate = _eval_rate(c.evaluate, n_eval, device=c.device) if c.evaluate else None


def _loader(images_u8: torch.Tensor, batch: int, to_float):
    """An endless pytorch/examples-style loader: shuffled, each image converted to float on access."""
    class Images(torch.utils.data.Dataset):
        def __len__(self):
            return len(images_u8)

        def __getitem__(self, i):
            return to_float(images_u8[i]), 0

    loader = torch.utils.data.DataLoader(Images(), batch_size=batch, shuffle=True, drop_last=True)

    def endless():
        while True:
            for x, _ in loader:
                yield x
    return endless()


# -- the kernels ------------------------------------------------------------------------------------------
# (batch, in, out) of the linear layers in the models below: RealNVP's couplings, the VAE, the DCGAN's ends
LINEAR_SHAPES = ((256, 392, 1024), (256, 1024, 1024), (256, 1024, 784), (128, 784, 400), (128, 400, 784),
                 (128, 400, 40), (128, 20, 400), (64, 100, 6272), (64, 6272, 1))


def linear_layers(repeats: int, shapes=LINEAR_SHAPES) -> list[str]:
    """Forward and backward of one linear layer, float32: ``F.linear`` (MKL) against oneDNN's products
    (``genzoo.nn.linear``), the best of ``repeats`` rounds of 10 each, the two in turn after a warm-up round
    each; the evidence for ``MIN_SIZE``."""
    from genzoo.nn.linear import _OneDNNLinear

    title = "### Linear layers, float32: torch's F.linear (MKL) against oneDNN (`genzoo.nn.Linear`)"
    if not onednn_available():
        return [title, "", "- this torch has no oneDNN: genzoo's linear layers use F.linear.", ""]
    lines = [title, "", "| batch x in -> out | F.linear, ms | oneDNN, ms | oneDNN speed-up | genzoo takes |",
             "|---|---|---|---|---|"]
    for batch, n_in, n_out in shapes:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(batch, n_in, generator=g).requires_grad_()                # (B, in)
        w = (torch.randn(n_out, n_in, generator=g) / n_in ** 0.5).requires_grad_()  # (out, in)
        b = torch.zeros(n_out, requires_grad=True)

        def ten(f):
            def run():
                for _ in range(10):
                    f(x, w, b).sum().backward()
            return run

        times, _ = _alternate_times({"F.linear": ten(F.linear), "oneDNN": ten(_OneDNNLinear.apply)}, repeats)
        plain, ours = min(times["F.linear"]) / 10, min(times["oneDNN"]) / 10
        takes = "oneDNN" if n_in * n_out >= MIN_SIZE and linear_module.onednn_in_use() else "F.linear"
        lines.append(f"| {batch} x {n_in} -> {n_out} | {1e3 * plain:.3f} | {1e3 * ours:.3f} | {plain / ours:.2f}x "
                     f"| {takes} |")
    lines += ["", f"- one forward and backward (input, weight and bias gradients), the best of {repeats} rounds of 10, "
              f"F.linear and oneDNN in turn; where oneDNN is on (by default on an AMD CPU; `GENZOO_ONEDNN_LINEAR=1` "
              f"or `0` says otherwise), genzoo's layers take it from in x out >= {MIN_SIZE:,} weights "
              "(`genzoo.nn.linear.MIN_SIZE`), below which the extra Python call costs more than the product saves.", ""]
    return lines


# -- the families -----------------------------------------------------------------------------------------
def vae(mnist, per: int, rounds: int, peaks: dict, test_images=None, device: torch.device = CPU) -> list[str]:
    """The VAE's table, every contender on ``device``; evaluation on the first 2,000 of ``test_images`` (None: of
    ``mnist``, said so)."""
    import genzoo

    batch, notes = 128, []
    u8 = (mnist.x * 255).round().to(torch.uint8)                                   # (N, 1, 28, 28)
    test = (mnist if test_images is None else test_images).x[:2000].to(device)

    class Plain(nn.Module):  # pytorch/examples vae/main.py
        def __init__(self):
            super().__init__()
            self.fc1, self.fc21, self.fc22 = nn.Linear(784, 400), nn.Linear(400, 20), nn.Linear(400, 20)
            self.fc3, self.fc4 = nn.Linear(20, 400), nn.Linear(400, 784)

        def forward(self, x):
            h = F.relu(self.fc1(x.view(-1, 784)))
            mu, logvar = self.fc21(h), self.fc22(h)
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
            return torch.sigmoid(self.fc4(F.relu(self.fc3(z)))), mu, logvar

    def plain_loss(model, x):
        recon, mu, logvar = model(x)
        return (F.binary_cross_entropy(recon, x.view(-1, 784), reduction="sum")
                - 0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()))

    contenders, ours = {}, linear_module.onednn_in_use()  # genzoo's rows: its linear kernel as it runs here, then the other
    for label, precision, onednn in (("fp32", "fp32", ours), ("bf16", "bf16", ours), (_other_kernel()[0], "fp32", not ours)):
        if label is None or _left_out(label, precision, peaks, device):
            continue
        torch.manual_seed(0)
        m = genzoo.build("vae", data_shape=(1, 28, 28), latent_dim=20, hidden=(400,), lr=1e-3).to(device)
        contenders[f"genzoo ({label})"] = _Fit(m, mnist, batch, per, evaluate=lambda m=m: m.elbo(test, 1),
                                               precision=precision, onednn=onednn)
    plain = Plain().to(device)
    opt = torch.optim.Adam(plain.parameters(), lr=1e-3)
    batches = _loader(u8, batch, lambda im: im.float().div(255))

    def plain_step():
        x = next(batches).to(device)
        opt.zero_grad()
        loss = plain_loss(plain, x)
        loss.backward()
        loss.item()
        opt.step()

    contenders["plain PyTorch (pytorch/examples)"] = _Loop(plain_step, batch, per, lambda: plain_loss(plain, test),
                                                           device=device)
    try:
        from pythae.models import VAE, VAEConfig
        from pythae.models.base.base_utils import ModelOutput
        from pythae.models.nn import BaseDecoder, BaseEncoder
    except Exception as e:  # not installed, or broken (a missing dependency, a version clash)
        notes.append(_peer_note("pythae", e))
    else:
        class Encoder(BaseEncoder):
            def __init__(self):
                super().__init__()
                self.fc1, self.mu, self.logvar = nn.Linear(784, 400), nn.Linear(400, 20), nn.Linear(400, 20)

            def forward(self, x):
                h = F.relu(self.fc1(x.reshape(-1, 784)))
                return ModelOutput(embedding=self.mu(h), log_covariance=self.logvar(h))

        class Decoder(BaseDecoder):
            def __init__(self):
                super().__init__()
                self.fc3, self.fc4 = nn.Linear(20, 400), nn.Linear(400, 784)

            def forward(self, z):
                return ModelOutput(reconstruction=torch.sigmoid(self.fc4(F.relu(self.fc3(z)))).reshape(-1, 1, 28, 28))

        py = VAE(VAEConfig(input_dim=(1, 28, 28), latent_dim=20, reconstruction_loss="bce"),
                 encoder=Encoder(), decoder=Decoder()).to(device)
        py_opt = torch.optim.Adam(py.parameters(), lr=1e-3)

        def pythae_step():
            loss = py({"data": next(batches).to(device)}).loss
            py_opt.zero_grad()
            loss.backward()
            loss.item()
            py_opt.step()

        contenders[f"pythae {_version('pythae')}"] = _Loop(pythae_step, batch, per, lambda: py({"data": test}).loss,
                                                           device=device)
    _attach(contenders, len(test))
    rates = _alternate(contenders, rounds)
    peers = [k for k in contenders if not k.startswith("genzoo")]
    goals = [("genzoo (fp32)", peers[0], 1.2)] + [("genzoo (fp32)", p, 1.4) for p in peers[1:]]
    goals += [("genzoo (bf16)", peers[0], 1.2)] + [("genzoo (bf16)", p, 1.4) for p in peers[1:]]
    split = "training" if test_images is None else "test"
    notes.append(f"evaluation: the ELBO (one z per image) of {len(test):,} {split} images; genzoo's fit includes its "
                 "batch sampling, the references their DataLoader.")
    return _table("VAE (784-400-20, batch 128)", "examples", contenders, rates, peaks, goals, notes)


def realnvp(mnist, per: int, rounds: int, peaks: dict, device: torch.device = CPU) -> list[str]:
    """The 784-D RealNVP's table, every contender on ``device``."""
    import genzoo
    from genzoo.data import Dataset
    from genzoo.data.transforms import logit_transform

    batch, hidden, couplings, d, notes = 256, (1024, 1024), 8, 784, []
    flat = Dataset("mnist-784", "train", mnist.x[:20000].flatten(1), None, levels=256, dequantize=True)
    x01 = flat.transformed(torch.Generator().manual_seed(0))                      # (N, 784) dequantized
    x = logit_transform(x01, 1e-6)[0]                                              # (N, 784) logits
    test, test01 = x[:1000].to(device), x01[:1000].to(device)
    g = torch.Generator().manual_seed(0)

    def batch_of_logits():
        return x[torch.randint(len(x), (batch,), generator=g)].to(device)

    contenders = {}
    # the peers' model and loop: their halves swapped between couplings, Adam without gradient clipping;
    # then genzoo's own defaults (random permutations, clipping at 100), which do a little more per step
    like_peers, ours = {"mixing": "swap", "max_grad_norm": 0.0}, linear_module.onednn_in_use()
    for label, precision, kw, onednn in (("fp32", "fp32", like_peers, ours), ("bf16", "bf16", like_peers, ours),
                                         (_other_kernel()[0], "fp32", like_peers, not ours),
                                         ("fp32, random permutations, clipping", "fp32", {}, ours)):
        if label is None or _left_out(label, precision, peaks, device):
            continue
        torch.manual_seed(0)
        m = genzoo.build("realnvp", data_shape=(d,), n_couplings=couplings, hidden=hidden, norm="none",
                         preprocess="logit", lr=1e-4, **kw).to(device)
        contenders[f"genzoo ({label})"] = _Fit(m, flat, batch, per, precision=precision, onednn=onednn,
                                               evaluate=lambda m=m: m.log_prob(test01))
    try:
        import normflows as nf
    except Exception as e:
        notes.append(_peer_note("normflows", e))
    else:
        torch.manual_seed(0)
        layers = []
        for _ in range(couplings):
            layers += [nf.flows.AffineCouplingBlock(nf.nets.MLP([d // 2, *hidden, d], init_zeros=True)),
                       nf.flows.Permute(d, mode="swap")]
        nfm = nf.NormalizingFlow(nf.distributions.DiagGaussian(d, trainable=False), layers).to(device)
        nf_opt = torch.optim.Adam(nfm.parameters(), lr=1e-4, fused=True)

        def nf_step():
            loss = nfm.forward_kld(batch_of_logits())
            nf_opt.zero_grad(set_to_none=True)
            loss.backward()
            nf_opt.step()

        contenders[f"normflows {_version('normflows')}"] = _Loop(nf_step, batch, per, lambda: nfm.log_prob(test),
                                                                 device=device)
    try:
        import zuko
    except Exception as e:
        notes.append(_peer_note("zuko", e))
    else:
        torch.manual_seed(0)
        zm = zuko.flows.RealNVP(d, transforms=couplings, hidden_features=hidden).to(device)
        z_opt = torch.optim.Adam(zm.parameters(), lr=1e-4, fused=True)

        def zuko_step():
            loss = -zm().log_prob(batch_of_logits()).mean()
            z_opt.zero_grad(set_to_none=True)
            loss.backward()
            z_opt.step()

        contenders[f"zuko {_version('zuko')}"] = _Loop(zuko_step, batch, per, lambda: zm().log_prob(test),
                                                       device=device)
    _attach(contenders, len(test))
    rates = _alternate(contenders, rounds)
    peers = [k for k in contenders if not k.startswith("genzoo")]
    goals = [(ours, p, 1.2) for ours in ("genzoo (fp32)", "genzoo (bf16)") for p in peers]
    built = "genzoo (fp32) and (bf16) build" if "bf16" in peaks else "genzoo (fp32) builds"
    notes.append(f"{built} the peers' model: halves swapped between couplings (normflows' "
                 "`Permute(mode='swap')`; zuko alternates even and odd features), no gradient clipping; the last genzoo "
                 "row is its defaults for 784-D vectors, a random permutation between couplings and clipping at 100.")
    notes.append("evaluation: exact log-likelihood of 1,000 training images (genzoo from [0, 1], with the logit's "
                 "Jacobian).")
    return _table(f"RealNVP (784-D, {couplings} affine couplings, MLPs {hidden}, batch {batch})", "samples",
                  contenders, rates, peaks, goals, notes)


def dcgan(mnist, per: int, rounds: int, peaks: dict, device: torch.device = CPU) -> list[str]:
    """The DCGAN's table, every contender on ``device``."""
    import genzoo

    batch, nz = 64, 100
    u8 = (mnist.x * 255).round().to(torch.uint8)
    contenders = {}
    other, other_on = _other_kernel()
    for label, options in (("fp32", {}), ("bf16", {"precision": "bf16"}), (other, {"onednn": other_on}),
                           ("fp32, channels-last off", {"channels_last": False})):
        if label is None or _left_out(label, options.get("precision", "fp32"), peaks, device):
            continue
        torch.manual_seed(0)
        m = genzoo.build("gan", data_shape=(1, 28, 28), arch="dcgan", latent_dim=nz).to(device)
        contenders[f"genzoo ({label})"] = _Fit(m, mnist, batch, per, evaluate=lambda m=m: m.sample(1000), **options)
    for layout in ("contiguous", "channels-last"):
        torch.manual_seed(0)
        ref = genzoo.build("gan", data_shape=(1, 28, 28), arch="dcgan", latent_dim=nz).to(device)
        net_g, net_d = ref.generator, nn.Sequential(ref.discriminator, nn.Sigmoid())
        fmt = torch.channels_last if layout == "channels-last" else torch.contiguous_format
        net_g.to(memory_format=fmt), net_d.to(memory_format=fmt)
        crit = nn.BCELoss()
        opt_d = torch.optim.Adam(net_d.parameters(), lr=2e-4, betas=(0.5, 0.999))
        opt_g = torch.optim.Adam(net_g.parameters(), lr=2e-4, betas=(0.5, 0.999))
        batches = _loader(u8, batch, lambda im: im.float().div(255).sub(0.5).div(0.5))

        def plain_step(net_g=net_g, net_d=net_d, opt_d=opt_d, opt_g=opt_g, batches=batches, fmt=fmt):
            real = next(batches).to(device).contiguous(memory_format=fmt)  # pytorch/examples dcgan/main.py
            net_d.zero_grad()
            label = torch.full((batch,), 1.0, device=device)
            err_real = crit(net_d(real).view(-1), label)
            err_real.backward()
            fake = net_g(torch.randn(batch, nz, device=device))
            label.fill_(0.0)
            err_fake = crit(net_d(fake.detach()).view(-1), label)
            err_fake.backward()
            opt_d.step()
            net_g.zero_grad()
            label.fill_(1.0)
            err_g = crit(net_d(fake).view(-1), label)
            err_g.backward()
            opt_g.step()
            err_real.item(), err_g.item()

        # genzoo's networks, run as nn.Linear would (F.linear): the reference loop, not genzoo's kernels
        contenders[f"plain loop ({layout})"] = _Loop(plain_step, batch, per,
                                                     lambda net_g=net_g: net_g(torch.randn(1000, nz, device=device)),
                                                     onednn=False, device=device)
    _attach(contenders, 1000)
    rates = _alternate(contenders, rounds)
    goals = [(ours, "plain loop (contiguous)", 1.15) for ours in ("genzoo (fp32)", "genzoo (bf16)")]
    work = ("genzoo's generator update freezes the discriminator's parameters, so it computes no discriminator "
            "weight gradients there; the plain loop computes them and throws them away")
    ours, plain = (getattr(contenders.get(k), "flops_per_example", None)
                   for k in ("genzoo (fp32)", "plain loop (contiguous)"))
    if ours and plain:
        work += (f": {ours / 1e6:.1f} against {plain / 1e6:.1f} MFLOP per image (torch.utils.flop_counter), so "
                 f"{plain / ours:.2f}x of the ratio is work genzoo skips")
    notes = ["genzoo's defaults put a convolutional model in channels-last layout; its generator update reuses the "
             "discriminator step's G(z), as the plain loop does.", work + ".",
             "the plain loop runs genzoo's networks with their linear layers on F.linear: its contiguous row is "
             "pytorch/examples' loop as it is, and its channels-last row also has genzoo's one-layout flatten and "
             "projection (genzoo.nn.conv.flat_linear, layout_of).", "evaluation: sampling 1,000 images."]
    return _table("DCGAN (28x28 MNIST, width 64, z 100, batch 64)", "images", contenders, rates, peaks, goals, notes)


def em(mnist, quick: bool) -> list[str]:
    import numpy as np
    from sklearn.decomposition import PCA
    from sklearn.mixture import GaussianMixture as SkGMM

    import genzoo
    from genzoo.base import Batch

    iters = 4 if quick else 20
    z = PCA(50, random_state=0).fit_transform(mnist.x.flatten(1).numpy()).astype(np.float64)  # (N, 50)
    zt = torch.from_numpy(z).float()
    m = genzoo.build("gmm", data_shape=(50,), n_components=10, covariance="full")
    m.setup(zt, torch.Generator().manual_seed(0))
    init = {k: v.clone() for k, v in m.state_dict().items()}
    w0, mu0 = m.weights.double().numpy(), m.means.double().numpy()
    w0 = w0 / w0.sum()                                                             # sums to 1 in float64
    u = m.precisions_cholesky.double()
    prec0 = (u @ u.mT).numpy()                                                     # (K, D, D), symmetric

    def sklearn_fit(n_iter: int):
        sk = SkGMM(10, covariance_type="full", max_iter=n_iter, tol=0, reg_covar=m.reg_covar, weights_init=w0,
                   means_init=mu0, precisions_init=prec0, init_params="random_from_data")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tol=0 never converges: every iteration runs
            t = _timed(lambda: sk.fit(z))
        return t, sk

    # both: the mean time of iterations 3 to 2 + iters. scikit-learn's is the difference of two fits (which removes
    # its set-up and final E-step), genzoo's the mean of its last iters steps
    t_lo, _ = sklearn_fit(2)
    t_hi, sk = sklearn_fit(2 + iters)
    sk_iter = (t_hi - t_lo) / iters
    m.load_state_dict(init)
    times = [_timed(lambda: m.training_step(Batch(zt), [])) for _ in range(2 + iters)]  # as many as scikit-learn
    ours_iter = statistics.fmean(times[2:])
    with torch.no_grad():
        ll_ours = float(m.log_prob(zt).double().mean())
    ll_sk = float(sk.score(z))
    ev_ours = _eval_rate(lambda: m.log_prob(zt), len(zt))
    ev_sk = _eval_rate(lambda: sk.score_samples(z), len(z))
    r, gap = round(sk_iter / ours_iter, 3), float(f"{abs(ll_ours - ll_sk):.1e}")  # judged as printed
    # (--quick's few iterations on part of the data are too noisy to call a goal met or missed)
    speed_goal, ll_goal = ((": not judged on --quick's data",) * 2 if quick else
                           (f": {'met' if r >= 1.5 else 'missed'}", f": {'met' if gap <= 1e-3 else 'missed'}"))
    return [f"### EM (MNIST on 50 principal components, 10 full-covariance components, {len(z):,} points)", "",
            f"| implementation | s per iteration (mean of iterations 3 to {2 + iters}) | mean log-likelihood after the "
            f"same iterations | evaluation points/s (best of {EVAL_REPEATS}) |",
            "|---|---|---|---|",
            f"| genzoo (float32, float64 statistics) | {ours_iter:.3f} | {ll_ours:.5f} | {ev_ours:,.0f} |",
            f"| scikit-learn (float64) | {sk_iter:.3f} | {ll_sk:.5f} | {ev_sk:,.0f} |", "",
            f"- scikit-learn / genzoo time per iteration: **{r:.3f}x** (goal >= 1.5x{speed_goal}); log-likelihoods "
            f"{gap:.1e} nats per example apart after {2 + iters} iterations from the same start (goal <= 1e-3{ll_goal}).",
            f"- one run each, not alternated: scikit-learn's time is a fit of {2 + iters} iterations less a fit of 2, "
            f"over {iters}; genzoo's the mean of its iterations 3 to {2 + iters}, each timed.", ""]


def parzen(mnist, test_images, n: int = PARZEN_SIZE, rounds: int = PARZEN_ROUNDS) -> list[str]:
    """Parzen at one sigma (0.2), ``n`` test images against ``n`` kernels (the first ``n`` of ``mnist``): genzoo
    against NumPy in float32, and genzoo's whole protocol (validation: the last 1,000 of ``mnist``); the best of
    ``rounds`` rounds of the three in turn, with no warm-up round (each call takes seconds at full size)."""
    import numpy as np
    from scipy.special import logsumexp

    from genzoo.eval.parzen import parzen_log_prob, parzen_protocol

    samples = mnist.x[:n].flatten(1)                 # (n, 784) as kernel centres
    test = test_images.x[:n].flatten(1)              # (n, 784)
    valid = mnist.x[-1000:].flatten(1)              # (1000, 784), outside the kernel centres
    sigma = 0.2

    def numpy_parzen(x: np.ndarray, mu: np.ndarray) -> np.ndarray:  # float32 throughout
        d = x.shape[1]
        mu_sq = (mu * mu).sum(1)
        out = []
        for s in range(0, len(x), 500):
            xb = x[s:s + 500]
            sq = (xb * xb).sum(1)[:, None] + mu_sq[None] - 2 * xb @ mu.T            # (b, S)
            out.append(logsumexp(sq / np.float32(-2 * sigma ** 2), axis=1))
        return np.concatenate(out) - np.float32(math.log(len(mu)) + d * math.log(sigma * math.sqrt(2 * math.pi)))

    xn, mn = test.numpy(), samples.numpy()
    times, last = _alternate_times({"numpy": lambda: numpy_parzen(xn, mn),
                                    "genzoo": lambda: parzen_log_prob(test, samples, sigma),
                                    "protocol": lambda: parzen_protocol(samples, valid, test, progress=False)},
                                   rounds, warm=False)
    t_np, t_ours, t_protocol = (min(times[k]) for k in ("numpy", "genzoo", "protocol"))
    diff = float(np.abs(last["genzoo"].double().numpy() - last["numpy"].astype(np.float64)).max())
    r = round(t_np / t_ours, 3)
    full = len(test) == len(samples) == PARZEN_SIZE  # the goal is for 10,000 x 10,000
    goal = f" (goal <= 10 s: {'met' if round(t_protocol, 1) <= 10 else 'missed'})" if full else ""
    return [f"### Parzen windows ({len(test):,} test images, {n:,} kernels, 784-D)", "",
            f"| implementation | one sigma, s (best of {rounds}) | full protocol (10-sigma search on {len(valid):,} "
            f"validation images, then the test set), s (best of {rounds}) |",
            "|---|---|---|",
            f"| genzoo | {t_ours:.2f} | {t_protocol:.2f} |",
            f"| NumPy + SciPy log-sum-exp, float32 throughout | {t_np:.2f} | |", "",
            f"- NumPy / genzoo at one sigma: **{r:.3f}x**; the two agree to {diff:.1e} nats; the full "
            f"protocol in {t_protocol:.1f} s{goal}.",
            f"- the best of {rounds} rounds, NumPy, genzoo and the protocol in turn in each; the agreement is of the "
            "last round's results.", ""]


def resolve_device(name: str | None) -> torch.device:
    """``--device`` as ``genzoo train`` resolves and refuses it (None: the CPU); a ConfigError for ``mps``, which this
    benchmark does not time (its timers wait for CUDA only)."""
    from genzoo.cli import _device
    from genzoo.errors import ConfigError

    device = _device(name or "cpu")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"bench speed times the CPU or a CUDA GPU, not --device {name}")
    return device


def kernel_note() -> str:
    """Which linear kernel genzoo's rows run on this CPU, and why (genzoo.nn.linear.onednn_default)."""
    if not onednn_available():
        return "genzoo's linear layers run on F.linear: this torch has no oneDNN (or it is switched off in torch)."
    kernel, other = ("oneDNN", "F.linear") if linear_module.onednn_in_use() else ("F.linear (MKL)", "oneDNN")
    return (f"genzoo's large linear layers run on {kernel} here ({linear_module._reason}); its 'fp32, {other}' rows "
            f"run them on {other}.")


def section(args) -> str:
    """The BENCHMARKS.md section a run writes: ``speed`` on the CPU, ``speed-cuda`` on a GPU (so neither replaces
    the other)."""
    return "speed-cuda" if resolve_device(args.device).type == "cuda" else "speed"


def run(args) -> str:
    from genzoo.data import load_dataset

    from .common import mnist_root

    device = resolve_device(args.device)  # first: a GPU asked for and missing is an error before any work
    cuda = device.type == "cuda"
    quick = args.quick
    rounds, per = (QUICK_ROUNDS, 3) if quick else (ROUNDS, 20)
    root = mnist_root(args)
    mnist = load_dataset("mnist", "train", root=root, n=12800 if quick else None)
    test = load_dataset("mnist", "test", root=root)
    peaks = {"fp32": matmul_peak(torch.float32, device=device)}
    if cuda:  # native bf16 from compute capability 8.0 (Ampere) on; torch emulates it on older GPUs
        if torch.cuda.get_device_capability(device) >= (8, 0):
            peaks["bf16"] = matmul_peak(torch.bfloat16, device=device)
            bf16 = f"bf16 {peaks['bf16'] / 1e9:,.0f} GFLOP/s"
        else:
            bf16 = "no bf16 rows: this GPU has no native bf16 (compute capability below 8.0)"
    elif (slowdown := bf16_slowdown()) <= BF16_MAX_SLOWDOWN:
        peaks["bf16"] = matmul_peak(torch.bfloat16)
        bf16 = f"bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s"
    else:
        bf16 = (f"no bf16 rows: a 512 x 512 product takes {slowdown:.0f}x as long in bf16 as in fp32 here (this CPU "
                "emulates bf16: no AVX512-BF16 or AMX)")
    threads = torch.get_num_threads()
    threads = f"{threads} thread{'s' if threads != 1 else ''}"
    stats = (f"Training rates: the median of {rounds} alternating rounds per contender, after a warm-up round each; "
             f"evaluation rates: the best of {EVAL_REPEATS} calls after a warm-up; EM and Parzen say their own.")
    if cuda:
        tf32 = {True: "on", False: "off"}
        lines = ["## Throughput beside the peers on a GPU (`genzoo bench speed --device cuda`)", "",
                 f"The VAE, RealNVP and DCGAN on {device} ({torch.cuda.get_device_name(device)}), torch "
                 f"{torch.__version__}, CUDA {torch.version.cuda}; the linear-layer, EM and Parzen tables on the CPU, "
                 f"{threads} (they time oneDNN, scikit-learn and NumPy, which run there only). {stats} Matmul peak of "
                 f"this GPU ({CUDA_PEAK_SIZE} x {CUDA_PEAK_SIZE}): fp32 {peaks['fp32'] / 1e9:,.0f} GFLOP/s (TF32 "
                 f"{tf32[bool(torch.backends.cuda.matmul.allow_tf32)]} for matrix products, "
                 f"{tf32[bool(torch.backends.cudnn.allow_tf32)]} for cuDNN's convolutions), {bf16}; GFLOP/s counts the "
                 "products of one training step (torch.utils.flop_counter). No rows of genzoo on another linear kernel: "
                 "its linear layers take F.linear on a GPU."]
    else:
        lines = ["## Throughput beside the peers (`genzoo bench speed`)", "",
                 f"On the CPU, {threads}. {stats} Matmul peak of this machine "
                 f"({PEAK_SIZE} x {PEAK_SIZE}): fp32 {peaks['fp32'] / 1e9:.0f} GFLOP/s (the faster of MKL and oneDNN), "
                 f"{bf16}; GFLOP/s counts the products of one training step (torch.utils.flop_counter)."]
    if not cuda:  # (a GPU's rows take F.linear whatever it says)
        lines[-1] += " " + kernel_note()
    if not cuda and torch.cuda.is_available():
        lines[-1] += (f" A GPU is available ({torch.cuda.get_device_name()}) but not timed: this benchmark runs "
                      "on the CPU unless given --device cuda.")
    lines.append("")
    lines += linear_layers(rounds)
    lines += vae(mnist, per * 5, rounds, peaks, test, device=device)
    lines += realnvp(mnist, per, rounds, peaks, device=device)
    lines += dcgan(mnist, per, rounds, peaks, device=device)
    lines += em(mnist, quick)
    lines += parzen(mnist, test, QUICK_PARZEN_SIZE if quick else PARZEN_SIZE)
    return "\n".join(lines)
