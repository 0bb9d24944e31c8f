"""A VAE with a Gaussian posterior against the same VAE whose posterior adds K = 10 planar maps
(Rezende & Mohamed 2015, Section 6.2, Table 2 does this on binarized MNIST with deep latent Gaussian
models: -ln p(x) <= 89.9 nats for a diagonal Gaussian q, 87.5 with K = 10 planar maps, 85.1 with K = 80, each
estimated by importance sampling with 200 draws of the inference network, i.e. the IWAE bound with k = 200:
the like-for-like column is the IWAE one, not the ELBO).

Both models: MLP 784-400-40 encoder and mirrored decoder, Bernoulli likelihood, dynamically binarized
MNIST, the same steps, batch 100 and cosine-annealed Adam; trained in parallel, one thread each. Test
figures on the 10,000 test images: the ELBO (mean of 10 draws per image) and the IWAE bound (k=200).
"""

from __future__ import annotations

from pathlib import Path

from . import common
from .common import fresh_run, run_parallel

DESCRIPTION = "VAE vs VAE + 10 planar posterior maps on binarized MNIST: test ELBO (Rezende & Mohamed 2015)"
#: the flags of `genzoo bench` this benchmark reads (others given are refused), as argparse dest names
FLAGS = ("steps", "jobs", "data_root")
#: each run trains in a worker process of one thread (the stamp says so, with --jobs)
THREADS_PER_RUN = 1
#: runs at a time, whatever --jobs asks (there are two)
MAX_JOBS = 2
STEPS, BATCH, LATENT, HIDDEN, IWAE_K = 30000, 100, 40, (400,), 200
VARIANTS = {"Gaussian q(z|x)": {}, "planar flow q(z|x), K = 10": {"posterior_flow": "planar", "flow_length": 10}}
PAPER = [("diagonal Gaussian (DLGM)", "89.9"), ("planar K = 10", "87.5"), ("planar K = 80", "85.1")]
#: the defaults of its FLAGS, in words (`genzoo bench` lists them)
DEFAULTS = {"steps": f"{STEPS:,}", "jobs": "the CPU count, at most 2"}
#: a full run reuses the runs an earlier invocation finished with the same settings (common.run_reusing)
REUSES_RUNS = True


def one(label: str, root: str, steps: int, run_dir: str | None, quick: bool) -> dict:
    import time

    import torch

    import genzoo
    from genzoo.data import load_dataset

    torch.set_num_threads(1)
    train = load_dataset("mnist", "train", root=root, binarize=True, n=1000 if quick else None)
    test = load_dataset("mnist", "test", root=root, binarize=True, n=200 if quick else None)
    if run_dir is not None:
        fresh_run(run_dir)
    torch.manual_seed(0)
    model = genzoo.build("vae", data_shape=train.shape, latent_dim=LATENT, hidden=HIDDEN, **VARIANTS[label])
    t0 = time.time()
    genzoo.fit(model, train, steps=steps, batch_size=BATCH, seed=0, progress=False, lr_schedule="cosine",
               run_dir=run_dir, checkpoint_every=max(1, steps // 3))
    seconds = time.time() - t0
    model.eval()
    x = test.transformed(torch.Generator().manual_seed(0))
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(1)
        elbo = torch.cat([model.elbo(b, n_samples=10) for b in x.split(500)]).double()
        iwae = torch.cat([model.iwae_bound(b, IWAE_K) for b in x.split(100)]).double()
    return {"label": label, "elbo": float(elbo.mean()), "elbo_se": float(elbo.std() / len(elbo) ** 0.5),
            "iwae": float(iwae.mean()), "seconds": seconds, "n": len(x)}


def run(args) -> str:
    from .common import mnist_root

    steps = 50 if args.quick else (args.steps or STEPS)
    root = mnist_root(args)
    runs = None if args.quick else Path(args.runs_dir) / "vae-planar"
    calls = [(label, root, steps, str(runs / f"k{v.get('flow_length', 0)}") if runs else None, args.quick)
             for label, v in VARIANTS.items()]
    ledger = common.ledger(args, "vae-planar") if runs else None  # (None for --quick, which keeps no runs)
    results, reused = common.run_reusing(
        one, calls, max(1, min(args.jobs, MAX_JOBS)), "bench vae-planar", not args.no_progress, ledger=ledger,
        runs=[c[3] for c in calls], settings=[
            {"label": label, "options": v, "steps": steps, "batch": BATCH, "latent": LATENT, "hidden": HIDDEN,
             "iwae_k": IWAE_K, "mnist": common.mnist_key(root)} for label, v in VARIANTS.items()] if ledger else [],
        parallel=run_parallel)
    lines = ["## Planar-flow VAE posterior on MNIST (`genzoo bench vae-planar`)", "",
             f"Dynamically binarized MNIST, MLP 784-{HIDDEN[0]}-{LATENT} VAE, {steps:,} steps of {BATCH} "
             f"({steps * BATCH / (1000 if args.quick else 50_000):.0f} epochs), cosine Adam 1e-3; test set of {results[0]['n']:,} images "
             "(higher is better; the negative is the NLL bound in nats).", "",
             f"| posterior | test ELBO (nats) | test IWAE bound, k={IWAE_K} | minutes |", "|---|---|---|---|"]
    for r in results:
        label = r["label"].replace("|", "\\|")  # q(z|x): a bare | would split the Markdown cell
        lines.append(f"| {label} | {r['elbo']:.2f} +- {r['elbo_se']:.2f} | {r['iwae']:.2f} | {r['seconds'] / 60:.1f} |")
    gain = results[1]["elbo"] - results[0]["elbo"]
    lines += ["", f"The planar posterior changes the test ELBO by {gain:+.2f} nats "
                  f"({'an improvement' if gain > 0 else 'no improvement'}).",
              "Rezende & Mohamed 2015 (Table 2, deep latent Gaussian models, -ln p(x) <=, by importance sampling with "
              f"200 draws of q: compare with minus the IWAE column, k = {IWAE_K}): "
              + "; ".join(f"{a} {b}" for a, b in PAPER) + "."]
    lines += ["", reused] * bool(reused)
    return "\n".join(lines)
