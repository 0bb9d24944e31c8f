"""What the single-run benchmarks share: where MNIST is, and "train for a budget, then report the test
likelihood" with :func:`genzoo.eval.likelihood.likelihood_report`."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

from ..errors import DataError


def mnist_root(args) -> str:
    """``--data-root``, else ``$GENZOO_DATA``, else ``../shared/data/mnist`` beside the checkout."""
    root = getattr(args, "data_root", None) or os.environ.get("GENZOO_DATA")
    if root is None:
        guess = Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist"
        if not guess.is_dir():
            raise DataError("MNIST not found: give --data-root DIR (the four IDX files) or set GENZOO_DATA")
        root = str(guess)
    return root


def steps_in(model, data, minutes: float, batch_size: int, probe_steps: int = 10) -> int:
    """How many training steps of ``batch_size`` fit in ``minutes``, timed on a copy of ``model`` (the
    budget is then spent with a cosine schedule over a known number of steps, which ends better than a
    constant rate cut off by the clock)."""
    import copy

    import torch

    from ..base import Batch

    probe = copy.deepcopy(model).train()
    opts = probe.configure_optimizers()
    g = torch.Generator().manual_seed(0)
    x = data.batch(torch.randint(len(data), (batch_size,), generator=g), g).to(model.device)
    probe.setup(x, g)
    probe.training_step(Batch(x), opts)  # warm-up
    t0 = time.perf_counter()
    for _ in range(probe_steps):
        probe.training_step(Batch(x), opts)
    per_step = (time.perf_counter() - t0) / probe_steps
    return max(1, int(minutes * 60 / per_step * 0.9))  # 10% for data loading and logging


def train_for(model, data, *, steps: int, batch_size: int, run_dir: Path | None, progress: bool,
              seed: int = 0, max_minutes: float | None = None) -> tuple[int, float]:
    """Train ``model`` for ``steps`` with a cosine learning rate; (steps done, seconds)."""
    from ..train import fit

    t0 = time.time()
    state = fit(model, data, steps=steps, batch_size=batch_size, seed=seed, run_dir=run_dir, progress=progress,
                lr_schedule="cosine", checkpoint_every=max(1, steps // 4), max_minutes=max_minutes)
    return state.step, time.time() - t0


def report_row(report: dict, metric: str = "NLL") -> tuple[float, float, float]:
    """(log-likelihood in nats on [0,1]^D, its standard error, bits/dim on the 256 levels) of a dequantized report."""
    row = next(r for r in report["rows"] if r["metric"].startswith(metric))
    continuous_ll = -(row["nats"] - report["dims"] * math.log(report["levels"]))
    return continuous_ll, row["stderr"], row["bits_per_dim"]
