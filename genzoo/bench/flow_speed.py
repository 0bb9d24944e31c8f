"""Training throughput of the same RealNVP in genzoo and in zuko (Rozet et al., ``zuko.flows.RealNVP``), in
one process on the same data, timed in alternating rounds so both see the same machine.

The flow: ``COUPLINGS`` affine couplings, each transforming half of 784 features with an MLP of
``HIDDEN`` ReLU units conditioned on the other half, a standard normal base, no normalisation layers
(zuko has none). zuko alternates even/odd masks; genzoo conditions on the first half and applies a
fixed random permutation between couplings (one gather per coupling, which zuko does not pay).
Data: MNIST training images, dequantized and logit-transformed once. The same optimizer for both: Adam
(PyTorch's fused implementation, genzoo's default), lr 1e-4, batch ``BATCH``.
"""

from __future__ import annotations

import statistics
import time

DESCRIPTION = "training samples/s of the same 784-D RealNVP in genzoo and zuko (needs pip install zuko)"
COUPLINGS, HIDDEN, BATCH, ROUNDS, STEPS_PER_ROUND = 8, (512, 512), 256, 6, 15


def _steps(step, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    return time.perf_counter() - t0


def run(args) -> str:
    import torch

    import genzoo
    from genzoo.data import load_dataset
    from genzoo.data.transforms import logit_transform
    from genzoo.errors import ConfigError

    from .common import mnist_root

    try:
        import zuko
    except ImportError:
        raise ConfigError("flow-speed compares against zuko: pip install zuko (or pip install -e '.[bench]')") from None

    rounds, per = (2, 3) if args.quick else (ROUNDS, STEPS_PER_ROUND)
    data = load_dataset("mnist", "train", root=mnist_root(args), dequantize=True, n=5000)
    x = logit_transform(data.transformed(torch.Generator().manual_seed(0)).flatten(1), 1e-6)[0]  # (N, 784)
    g = torch.Generator().manual_seed(0)

    torch.manual_seed(0)
    ours = genzoo.build("realnvp", data_shape=(784,), n_couplings=COUPLINGS, hidden=HIDDEN, norm="none", lr=1e-4)
    opt_ours = ours.configure_optimizers()
    theirs = zuko.flows.RealNVP(784, transforms=COUPLINGS, hidden_features=HIDDEN)
    opt_theirs = torch.optim.Adam(theirs.parameters(), lr=1e-4, fused=True)

    def batch():
        return x[torch.randint(len(x), (BATCH,), generator=g)]

    def step_ours():
        loss = -ours.log_prob(batch()).mean()
        opt_ours[0].zero_grad(set_to_none=True)
        loss.backward()
        opt_ours[0].step()

    def step_theirs():
        loss = -theirs().log_prob(batch()).mean()
        opt_theirs.zero_grad(set_to_none=True)
        loss.backward()
        opt_theirs.step()

    _steps(step_ours, 2), _steps(step_theirs, 2)  # warm-up
    t_ours, t_theirs = [], []
    for _ in range(rounds):
        t_ours.append(BATCH * per / _steps(step_ours, per))
        t_theirs.append(BATCH * per / _steps(step_theirs, per))
    n_ours = sum(p.numel() for p in ours.parameters())
    n_theirs = sum(p.numel() for p in theirs.parameters())
    mo, mt = statistics.median(t_ours), statistics.median(t_theirs)
    lines = ["## Flow training throughput (`genzoo bench flow-speed`)", "",
             f"RealNVP on 784-D data (dequantized, logit MNIST): {COUPLINGS} affine couplings, MLPs {HIDDEN}, batch "
             f"{BATCH}, fused Adam for both; median of {rounds} alternating rounds of {per} steps, {torch.get_num_threads()} threads.", "",
             "| library | parameters | training samples/s (median) | min - max |", "|---|---|---|---|",
             f"| genzoo {genzoo.__version__} | {n_ours / 1e6:.2f} M | **{mo:,.0f}** | {min(t_ours):,.0f} - {max(t_ours):,.0f} |",
             f"| zuko {zuko.__version__} | {n_theirs / 1e6:.2f} M | {mt:,.0f} | {min(t_theirs):,.0f} - {max(t_theirs):,.0f} |",
             "", f"genzoo / zuko: {mo / mt:.2f}x."]
    return "\n".join(lines)
