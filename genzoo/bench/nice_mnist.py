"""NICE on MNIST with the paper's architecture (Dinh et al. 2014, Section 5.1 and Table 2): 4 additive
couplings whose coupling functions have 5 hidden layers of 1,000 ReLU units, a diagonal scaling, a
standard logistic prior, data dequantized to [0, 1] (x = (v + u) / 256). The paper reports a test
log-likelihood of 1980.50 nats on [0, 1]^784, which is 4.36 bits/dim on the 256 levels.

The budget is wall-clock minutes (``--minutes``, default 12 on a CPU), spent as a planned number of
steps with a cosine learning rate; ``--steps`` fixes the steps instead.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

DESCRIPTION = "NICE (paper architecture) on dequantized MNIST: test log-likelihood vs 1980.50 nats"
PAPER_LL, BATCH = 1980.50, 200
OPTIONS = {"n_couplings": 4, "hidden": (1000,) * 5, "base": "logistic"}


def run_flow_on_mnist(args, name: str, options: dict, minutes: float, batch: int, title: str) -> tuple[list[str], dict]:
    """Train flow ``name`` on dequantized MNIST for a budget; the lines of its result and the numbers."""
    import torch

    import genzoo
    from genzoo.data import load_dataset
    from genzoo.eval.likelihood import likelihood_report
    from genzoo.viz import save_grid

    from .common import mnist_root, report_row, steps_in, train_for

    root = mnist_root(args)
    train = load_dataset("mnist", "train", root=root, dequantize=True, n=2000 if args.quick else None)
    test = load_dataset("mnist", "test", root=root, dequantize=True, n=500 if args.quick else None)
    torch.manual_seed(0)
    model = genzoo.build(name, data_shape=train.shape, **options)
    steps = 20 if args.quick else (args.steps or steps_in(model, train, minutes, batch))
    run_dir = Path(args.runs_dir) / f"{name}-mnist{'-quick' if args.quick else ''}"  # --quick runs every line too
    shutil.rmtree(run_dir, ignore_errors=True)  # the benchmark's own scratch run: always a fresh one
    done, seconds = train_for(model, train, steps=steps, batch_size=batch, run_dir=run_dir,
                              progress=not args.no_progress, max_minutes=None if args.steps else 1.5 * minutes)
    rep = likelihood_report(model, test, progress=not args.no_progress)
    ll, se, bpd = report_row(rep)
    epochs = done * batch / len(train)
    params = sum(p.numel() for p in model.parameters())
    lines = [f"| {title} | {params / 1e6:.1f} M | {done:,} ({epochs:.1f} epochs) | {seconds / 60:.1f} | "
             f"{ll:.1f} +- {se:.1f} | {bpd:.3f} |"]
    save_grid(model.sample(64, torch.Generator().manual_seed(0)).clamp(0, 1), run_dir / "samples-final.png", scale=2)
    return lines, {"ll": ll, "bpd": bpd, "steps": done, "seconds": seconds, "run_dir": run_dir}


def run(args) -> str:
    minutes = args.minutes or 12.0
    rows, out = run_flow_on_mnist(args, "nice", OPTIONS, minutes, BATCH, "genzoo NICE")
    paper_bpd = (-PAPER_LL + 784 * math.log(256)) / (784 * math.log(2))
    lines = ["## NICE on MNIST (`genzoo bench nice-mnist`)", "",
             f"Test set (10,000 images) dequantized with uniform noise; log-likelihood in nats per image on "
             f"[0, 1]^784 (higher is better) and bits/dim on the 256 levels (lower is better); batch {BATCH}, "
             "Adam lr 1e-3 with a cosine schedule over the planned steps.", "",
             "| model | parameters | steps | minutes | test log-likelihood (nats) | bits/dim |", "|---|---|---|---|---|---|"]
    lines += rows
    lines.append(f"| NICE, Dinh et al. 2014 (Table 2; 1,500 epochs on a GPU) | same | | | {PAPER_LL:.2f} | {paper_bpd:.2f} |")
    gap = PAPER_LL - out["ll"]
    lines += ["", f"genzoo is {abs(gap):.1f} nats {'below' if gap > 0 else 'above'} the paper after "
                  f"{out['seconds'] / 60:.1f} minutes of CPU; samples in `{out['run_dir']}/samples-final.png`."]
    return "\n".join(lines)
