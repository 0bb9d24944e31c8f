"""Fitting one Gaussian to a mixture with each f-divergence (Nowozin et al. 2016, Section 4).

The generator is x = mu + sigma z (``fgan`` with ``arch="affine"``), the critic an MLP with two
hidden layers of 64 units, as in the paper, but LeakyReLU instead of the paper's tanh: the optimal
critic f'(p/q) runs to -inf in the tails for Jeffrey and reverse KL, where a tanh network saturates
and biases the fitted sigma (measured: Jeffrey's sigma 0.045 off with tanh, 0.034 with LeakyReLU). For each divergence the exact minimiser of
D_f(P || N(mu, sigma^2)) is found by quadrature (:func:`genzoo.divergences.best_gaussian_1d`), and
every trained model is scored under every divergence by quadrature: the 5 x 5 table.
"""

from __future__ import annotations

import time

from .common import run_parallel

DESCRIPTION = "one Gaussian fitted to a 1-D mixture with 5 f-divergences, against the exact minimisers (f-GAN)"
#: the flags of `genzoo bench` this benchmark reads (others given are refused), as argparse dest names
FLAGS = ("steps", "jobs")
#: each run trains in a worker process of one thread (the stamp says so, with --jobs)
THREADS_PER_RUN = 1
RUNS = False  # nothing written to --runs-dir

DIVS = ("kl", "reverse_kl", "js", "jeffrey", "pearson")
MIXTURE = {"means": (-1.0, 1.5), "stds": (0.6, 0.9), "weights": (0.6, 0.4)}
LO, HI = -15.0, 15.0
STEPS, BATCH, LR = 4000, 1024, 2e-3
#: the defaults of its FLAGS, in words (`genzoo bench` lists them)
DEFAULTS = {"steps": f"{STEPS:,}"}
TOLERANCE = 0.05
ACT = "leaky_relu"  # tanh (the paper) saturates where T* = f'(p/q) runs to -inf in the tails (Jeffrey, reverse KL)


def _mixture():
    from genzoo.data.toy import mixture1d

    return mixture1d(**MIXTURE)


def train_one(div: str, steps: int, seed: int = 0) -> dict:
    """Train the affine f-GAN with divergence ``div``; return its (mu, sigma) and the exact minimiser."""
    import torch

    import genzoo
    from genzoo.data import load_dataset
    from genzoo.divergences import best_gaussian_1d

    torch.set_num_threads(1)
    data = load_dataset("mixture1d", n=200_000, seed=seed, **MIXTURE)
    torch.manual_seed(seed)
    model = genzoo.build("fgan", data_shape=(1,), latent_dim=1, arch="affine", hidden=(64, 64), d_activation=ACT,
                         divergence=div, lr=LR)
    t0 = time.time()
    genzoo.fit(model, data, steps=steps, batch_size=BATCH, seed=seed, progress=False, lr_schedule="cosine")
    mu, sigma = (float(v) for v in model.gaussian())  # in data units (the networks see standardised data)
    emu, esigma, evalue = best_gaussian_1d(div, _mixture().log_prob, LO, HI)
    return {"div": div, "mu": mu, "sigma": sigma, "exact_mu": emu, "exact_sigma": esigma, "exact_value": evalue,
            "seconds": time.time() - t0}


def score(div: str, mu: float, sigma: float) -> float:
    """D_div(P || N(mu, sigma^2)) by quadrature."""
    import torch

    from genzoo.divergences import divergence_1d

    q = torch.distributions.Normal(torch.tensor(mu, dtype=torch.float64), torch.tensor(sigma, dtype=torch.float64))
    return divergence_1d(div, _mixture().log_prob, lambda x: q.log_prob(x[:, 0]), LO, HI)


def run(args) -> str:
    steps = 300 if args.quick else (args.steps or STEPS)
    results = run_parallel(train_one, [(d, steps) for d in DIVS], args.jobs, "bench fgan-gaussian", not args.no_progress)
    from genzoo.divergences import get

    table = {r["div"]: {c: score(c, r["mu"], r["sigma"]) for c in DIVS} for r in results}
    lines = ["## f-GAN: one Gaussian fitted to a mixture (`genzoo bench fgan-gaussian`)", "",
             f"P = {MIXTURE['weights'][0]} N({MIXTURE['means'][0]}, {MIXTURE['stds'][0]}^2) + "
             f"{MIXTURE['weights'][1]} N({MIXTURE['means'][1]}, {MIXTURE['stds'][1]}^2); Q = N(mu, sigma^2) from "
             f"x = mu + sigma z; critic 64-64 LeakyReLU; {steps:,} steps of batch {BATCH}, Adam lr {LR} with a cosine "
             "schedule. Exact minimisers by quadrature and Nelder-Mead. `js` is the paper's f, i.e. twice "
             "the usual Jensen-Shannon divergence.", "",
             "| trained with | mu (learned) | mu (exact) | sigma (learned) | sigma (exact) | within 0.05 | s |",
             "|---|---|---|---|---|---|---|"]
    ok_all = True
    for r in results:
        ok = abs(r["mu"] - r["exact_mu"]) <= TOLERANCE and abs(r["sigma"] - r["exact_sigma"]) <= TOLERANCE
        ok_all &= ok
        lines.append(f"| {get(r['div']).title} | {r['mu']:.4f} | {r['exact_mu']:.4f} | {r['sigma']:.4f} | "
                     f"{r['exact_sigma']:.4f} | {'yes' if ok else '**no**'} | {r['seconds']:.0f} |")
    lines += ["", "Every trained model scored under every divergence (rows: trained with; columns: scored "
                  "with; exact quadrature; bold: the column's minimum):", "",
              "| trained with | " + " | ".join(get(c).title for c in DIVS) + " |", "|---|" + "---|" * len(DIVS)]
    diagonal = True
    for r in DIVS:
        cells = []
        for c in DIVS:
            best = min(DIVS, key=lambda row: table[row][c])
            diagonal &= best == c if r == c else True
            v = f"{table[r][c]:.4f}"
            cells.append(f"**{v}**" if best == r else v)
        lines.append(f"| {get(r).title} | " + " | ".join(cells) + " |")
    lines += ["", f"Each learned (mu, sigma) within {TOLERANCE} of its exact minimiser: **{'yes' if ok_all else 'no'}**; "
                  f"in each column the model trained with that divergence is lowest: **{'yes' if diagonal else 'no'}**."]
    return "\n".join(lines)
