"""RealNVP on MNIST (Dinh et al. 2016's multi-scale architecture, scaled down for a CPU budget) next to NICE.

Two scales of (3 checkerboard couplings, squeeze, 3 channel couplings, factor out half), then 4
checkerboard couplings; residual s/t nets; activation normalisation; the logit pre-processing with
alpha = 1e-6 and its Jacobian counted; data dequantized to [0, 1]. The RealNVP paper reports no MNIST
figure; later papers list RealNVP at 1.06 bits/dim and Glow at 1.05 on MNIST (FFJORD, Grathwohl et al.
2019, Table 2), with far larger models trained for days on GPUs.
"""

from __future__ import annotations

DESCRIPTION = "RealNVP (multi-scale) on dequantized MNIST: bits/dim after a CPU budget, beside NICE"
#: the flags of `genzoo bench` this benchmark reads (others given are refused), as argparse dest names
FLAGS = ("steps", "minutes", "data_root")
BATCH = 64
OPTIONS = {"n_scales": 2, "width": 32, "n_blocks": 2, "norm": "actnorm", "lr": 1e-3}
#: the defaults of its FLAGS, in words (`genzoo bench` lists them); --quick keeps its scratch run
MINUTES = 12.0
DEFAULTS, QUICK_RUNS = {"steps": "what --minutes allows", "minutes": f"{MINUTES:g}"}, True


def run(args) -> str:
    from . import RUNS_DIR
    from .common import TABLE_HEAD, run_flow_on_mnist

    minutes = args.minutes or MINUTES
    rows, out = run_flow_on_mnist(args, "realnvp", OPTIONS, minutes, BATCH, "genzoo RealNVP (2 scales, width 32, 2 blocks)")
    lines = ["## RealNVP on MNIST (`genzoo bench realnvp-mnist`)", "",
             f"Same protocol as `nice-mnist` (dequantized test set, nats on [0, 1]^784, bits/dim on 256 levels); "
             f"batch {BATCH}, Adam lr 1e-3 with a cosine schedule over the planned steps.", "",
             *TABLE_HEAD]
    lines += rows
    lines.append("| RealNVP / Glow as listed by Grathwohl et al. 2019, Table 2 (GPU, days) | | | | | 1.06 / 1.05 |")
    # RUNS, not this run's folder (as nice-mnist's table): the table is read where that folder is not
    lines += ["", f"Samples in `RUNS/{out['run_dir'].name}/samples-final.png` (RUNS: `--runs-dir`, default "
                  f"`{RUNS_DIR}`); NICE's row is in the `nice-mnist` table."]
    return "\n".join(lines)
