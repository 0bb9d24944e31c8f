"""Table 1 of Goodfellow et al. 2014 on MNIST with genzoo's own models, and every other metric beside it.

Five families are trained from their recipes in ``configs/`` through the command line (``genzoo train``),
then scored by :func:`genzoo.eval.metrics.evaluate` with the same Parzen protocol (10,000 samples, sigma
from ``logspace(-1, 0, 10)`` on the first 1,000 validation images, mean and standard error over the
10,000 test images), next to the paper's rows. A second table (the ``genzoo compare`` table) puts each
model's best likelihood figure with its kind and data space, the Parzen estimate and the feature
metrics of genzoo's MNIST classifier side by side.
"""

from __future__ import annotations

from pathlib import Path

from . import RUNS_DIR, common
from .common import run_parallel

DESCRIPTION = "Parzen log-likelihood on MNIST (Goodfellow et al. 2014, Table 1): GAN, GMMN, VAE, GMM, flow"
#: the flags of `genzoo bench` this benchmark reads (others given are refused), as argparse dest names
FLAGS = ("jobs", "data_root")
#: each run trains in a worker process of one thread (the stamp says so, with --jobs)
THREADS_PER_RUN = 1

#: label -> (recipe in configs/, extra CLI flags); each trains on one CPU thread
MODELS = {
    "GAN": ("gan-mnist-goodfellow2014.toml", []),
    "GMMN": ("gmmn-mnist.toml", []),
    "VAE": ("vae-mnist-binarized.toml", ["--steps", "20000"]),
    "GMM": ("gmm-mnist.toml", []),
    "RealNVP": ("realnvp-mnist.toml", ["--steps", "1150"]),
}
#: the paper's rows (Goodfellow et al. 2014, Table 1): Parzen log-likelihood on the MNIST test set
PAPER = [("DBN (Bengio et al. 2013)", "138 +- 2"), ("Stacked CAE (Bengio et al. 2013)", "121 +- 1.6"),
         ("Deep GSN (Bengio et al. 2014)", "214 +- 1.1"), ("Adversarial nets (Goodfellow et al. 2014)", "225 +- 2")]
GOAL = 225.0
IWAE_K = 100
#: --quick keeps its scratch runs (inpaint-mnist --quick reuses them)
QUICK_RUNS = True
#: a full run reuses the runs an earlier invocation finished with the same settings (common.run_reusing)
REUSES_RUNS = True


def sizes(quick: bool) -> dict:
    """What each model is scored on: test images (None: all 10,000), samples, the IWAE bound's k.

    >>> sizes(True)
    {'n': 300, 'n_samples': 500, 'iwae_k': 20}
    """
    return {"n": 300, "n_samples": 500, "iwae_k": 20} if quick else {"n": None, "n_samples": 10_000, "iwae_k": IWAE_K}


def train_flags(label: str, quick: bool) -> list[str]:
    """The flags `genzoo train --config configs/RECIPE` gets beside the recipe (inpaint-mnist reuses a run only if it
    was trained so)."""
    return ["--steps", "30", "--set", "data.n=2000"] if quick else list(MODELS[label][1])


def train(label: str, root: str, runs_dir: str, quick: bool) -> tuple[Path, float]:
    """Train one model from its recipe through the CLI: (run directory, seconds)."""
    from .common import train_recipe

    run = Path(runs_dir) / label.lower()
    return run, train_recipe(MODELS[label][0], run, root, train_flags(label, quick))


def compare_flags(quick: bool) -> list[str]:
    """The flags of `genzoo compare` that score as this benchmark does (its other settings are compare's defaults).

    >>> compare_flags(False)
    ['--iwae-k', '100']
    """
    size = sizes(quick)  # (the full run's test images and samples are compare's defaults)
    sized = ["-n", str(size["n"]), "--n-samples", str(size["n_samples"])] if quick else []
    return sized + ["--iwae-k", str(size["iwae_k"])]


def train_and_score(label: str, root: str, runs_dir: str, quick: bool) -> dict:
    """Train one model and evaluate every metric it admits, on one thread (runs go in parallel); the result records
    what it asked as `genzoo compare` with :func:`compare_flags` does, which then reuses it, and is written to the
    run's eval.json at once (a later run's failure does not lose it)."""
    import torch

    import genzoo
    from genzoo.cli import _compare_key, parse, read_recipe
    from genzoo.eval.metrics import evaluate
    from genzoo.io import atomic_write_json

    torch.set_num_threads(1)
    run, seconds = train(label, root, runs_dir, quick)
    asked = _compare_key(str(run), parse(["compare", str(run), *compare_flags(quick)]))  # before the work, as eval
    model = genzoo.load(run)
    spec = read_recipe(run)["data"]
    result = {**evaluate(model, spec, metrics="all", **sizes(quick), progress=False), "asked": asked}
    atomic_write_json(Path(run) / "eval.json", result, own=True)
    return {"label": label, "run": str(run), "recipe": MODELS[label][0], "seconds": seconds, "steps": model_steps(run),
            "result": result}


def model_steps(run: Path) -> int:
    """Training steps a run completed (its newest metrics line)."""
    import json

    last = 0
    with open(run / "metrics.jsonl") as f:
        for line in f:
            last = json.loads(line).get("step", last)
    return int(last)


def run(args) -> str:
    from ..eval.compare import compare_table
    from .common import mnist_root

    root = mnist_root(args)
    runs_dir = str(Path(args.runs_dir) / ("parzen-mnist-quick" if args.quick else "parzen-mnist"))
    ledger = common.ledger(args, "parzen-mnist")  # (None for --quick: trains every run, as before)
    results, reused = common.run_reusing(
        train_and_score, [(label, root, runs_dir, args.quick) for label in MODELS], args.jobs, "bench parzen-mnist",
        not args.no_progress, ledger=ledger, runs=[Path(runs_dir) / label.lower() for label in MODELS],
        settings=[{"label": label, "recipe": MODELS[label][0], "flags": train_flags(label, args.quick),
                   "sizes": sizes(args.quick), "compare": compare_flags(args.quick), "mnist": common.mnist_key(root)}
                  for label in MODELS] if ledger else [], files=("eval.json",), parallel=run_parallel)
    ranked = sorted(results, key=lambda r: -r["result"]["parzen"]["ll"])
    scored = ranked[0]["result"]["parzen"]  # the sizes the run used, as evaluate recorded them
    lines = ["## Parzen-window log-likelihood on MNIST (`genzoo bench parzen-mnist`)", "",
             "Goodfellow et al. 2014, Table 1, with genzoo's own models: each trained from its recipe by "
             "`genzoo train --config configs/RECIPE` on one CPU thread"
             + (" (--quick: `" + " ".join(train_flags("GAN", True)) + "`)" if args.quick else "")
             + f", then {scored['n_samples']:,} samples scored by the same Parzen "
             "protocol (sigma from `logspace(-1, 0, 10)` by the first 1,000 validation images; mean +- standard "
             f"error over the {scored['n_test']:,} MNIST test images; nats on the grey levels in [0, 1], higher is "
             "better). Images are clipped to [0, 1]; the VAE's samples are its decoder means, as is usual for Parzen "
             "scores.", "",
             "| model | recipe | steps | training minutes | Parzen log-likelihood | sigma |", "|---|---|---|---|---|---|"]
    for r in ranked:
        p = r["result"]["parzen"]
        lines.append(f"| genzoo {r['label']} | `configs/{r['recipe']}` | {r['steps']:,} | {r['seconds'] / 60:.1f} | "
                     f"{p['ll']:.1f} +- {p['stderr']:.1f} | {p['sigma']:.3f} |")
    for name, ll in PAPER:
        lines.append(f"| {name}, as published | | | | {ll} | |")
    gan = next(r for r in results if r["label"] == "GAN")["result"]["parzen"]["ll"]
    # (the goal is the full run's: --quick's 30 steps on 300 test images are not held to it)
    verdict = "" if args.quick else f": {'at or above' if gan >= GOAL else 'below'} the paper's {GOAL:.0f}"
    lines += ["", f"genzoo's GAN scores {gan:.1f} nats{verdict}. Best Parzen estimate: {ranked[0]['label']}. A Parzen "
                  "estimate is a poor likelihood in 784 dimensions (Theis et al. 2016): it rewards samples near test "
                  "images in L2, so blurry means can beat sharp samples; the table below gives each model's own "
                  "likelihood figure beside it.", ""]
    table = compare_table([(f"genzoo {r['label']}", r["result"]) for r in results])
    lines += ["### Every metric, one table (`genzoo compare`)", "",
              "The same runs through `genzoo compare " + " ".join(f"RUNS/{Path(runs_dir).name}/{m.lower()}" for m in MODELS)
              + " " + " ".join(compare_flags(args.quick)) + f"` (RUNS: `--runs-dir`, default `{RUNS_DIR}`; it reads "
              "the evaluations this benchmark stored): "
              f"the best likelihood figure each admits with its kind and data space (exact NLL; IWAE bound with "
              f"k = {sizes(args.quick)['iwae_k']:,}; lower is better), the Parzen estimate, and the metrics of "
              "genzoo's MNIST classifier's features (FID, KID: lower is better; precision, recall, density, coverage, "
              "IS: higher is better). For scale, 10,000 real training images score FID 1.41, precision 0.937, recall 0.942, "
              "density 0.928, coverage 0.939 against the test set, whose IS is 9.78.", "",
              table.markdown]
    lines += ["", reused] * bool(reused)
    return "\n".join(lines)
