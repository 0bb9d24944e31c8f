"""NICE on MNIST with the paper's architecture (Dinh et al. 2014, Section 5.1 and Table 2): 4 additive
couplings whose coupling functions have 5 hidden layers of 1,000 ReLU units, a diagonal scaling, a
standard logistic prior, data dequantized to [0, 1] (x = (v + u) / 256). The paper reports a test
log-likelihood of 1980.50 nats on [0, 1]^784, which is 4.36 bits/dim on the 256 levels.

The budget is wall-clock minutes (``--minutes``, default 12 on a CPU), spent as a planned number of
steps at a constant learning rate of 1e-3; ``--steps`` fixes the steps instead. Constant, not cosine: a
CPU budget is a small fraction of the paper's 1,500 epochs, and in a pilot of 2,000 steps the likelihood
was still climbing ~80 nats per 500 steps at 1e-3, where a cosine decay over those steps ended ~150 nats
lower (BENCHMARKS.md).
"""

from __future__ import annotations

import math

from . import RUNS_DIR

DESCRIPTION = "NICE (paper architecture) on dequantized MNIST: test log-likelihood vs 1980.50 nats"
#: the flags of `genzoo bench` this benchmark reads (others given are refused), as argparse dest names
FLAGS = ("steps", "minutes", "data_root")
PAPER_LL, BATCH = 1980.50, 200
OPTIONS = {"n_couplings": 4, "hidden": (1000,) * 5, "base": "logistic"}
#: the defaults of its FLAGS, in words (`genzoo bench` lists them); --quick keeps its scratch run
MINUTES = 12.0
DEFAULTS, QUICK_RUNS = {"steps": "what --minutes allows", "minutes": f"{MINUTES:g}"}, True


def run(args) -> str:
    from .common import TABLE_HEAD, run_flow_on_mnist

    minutes = args.minutes or MINUTES
    rows, out = run_flow_on_mnist(args, "nice", OPTIONS, minutes, BATCH, "genzoo NICE", lr_schedule="constant")
    paper_bpd = (-PAPER_LL + 784 * math.log(256)) / (784 * math.log(2))
    lines = ["## NICE on MNIST (`genzoo bench nice-mnist`)", "",
             f"Test set ({out['n_test']:,} images) dequantized with uniform noise; log-likelihood in nats per image on "
             f"[0, 1]^784 (higher is better) and bits/dim on the 256 levels (lower is better); batch {BATCH}, "
             "Adam at a constant lr of 1e-3.", "",
             *TABLE_HEAD]
    lines += rows
    lines.append(f"| NICE, Dinh et al. 2014 (Table 2; 1,500 epochs on a GPU) | same | | | {PAPER_LL:.2f} | {paper_bpd:.2f} |")
    gap = PAPER_LL - out["ll"]
    run = f"`RUNS/{out['run_dir'].name}/samples-final.png`"  # RUNS: the table is read where that folder is not
    where = f"{run} (" if args.quick else f"{run} (the README shows `docs/nice-mnist-samples.png`, a copy made by hand: copy this over it; "
    lines += ["", f"genzoo is {abs(gap):.1f} nats {'below' if gap > 0 else 'above'} the paper after "
                  f"{out['seconds'] / 60:.1f} minutes of CPU; samples in {where}RUNS: `--runs-dir`, default "
                  f"`{RUNS_DIR}`)."]
    return "\n".join(lines)
