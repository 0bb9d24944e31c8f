"""The semi-supervised M2 (Kingma et al. 2014, Table 1) on MNIST with 100 labels: test error over seeds.

Each seed trains ``configs/ssvae-mnist.toml`` through the command line on one CPU thread (the seed also
picks the 100 labelled images, 10 per class), then classifies the 10,000 test images with q(y|x).
"""

from __future__ import annotations

import contextlib
import io
import statistics
from pathlib import Path

from . import common
from .common import run_parallel

DESCRIPTION = "semi-supervised M2 with 100 labels on MNIST: test error over 3 seeds vs 11.97%"
#: the flags of `genzoo bench` this benchmark reads (others given are refused), as argparse dest names
FLAGS = ("steps", "seeds", "jobs", "data_root")
#: each run trains in a worker process of one thread (the stamp says so, with --jobs)
THREADS_PER_RUN = 1
SEEDS, PAPER = 3, [("M2 (Kingma et al. 2014)", "11.97 +- 1.71"), ("M1+M2 (Kingma et al. 2014)", "3.33 +- 0.14")]
#: the defaults of its FLAGS, in words (`genzoo bench` lists them); --quick keeps its scratch runs
DEFAULTS, QUICK_RUNS = {"steps": "configs/ssvae-mnist.toml's", "seeds": str(SEEDS)}, True
#: a full run reuses the runs an earlier invocation finished with the same settings (common.run_reusing)
REUSES_RUNS = True
#: its recipe in configs/
RECIPE = "ssvae-mnist.toml"


def one(seed: int, root: str, runs_dir: str, steps: int | None, quick: bool) -> dict:
    import torch

    from genzoo.cli import main as cli
    from genzoo.io import read_json

    from .common import RunFailed, train_recipe

    torch.set_num_threads(1)
    run = Path(runs_dir) / f"seed{seed}"
    extra = ["--seed", str(seed)]
    extra += ["--steps", "20", "--set", "data.n=2000"] if quick else (["--steps", str(steps)] if steps else [])
    seconds = train_recipe(RECIPE, run, root, extra)
    command = ["eval", str(run), "--metrics", "error", "--no-progress"] + (["-n", "500"] if quick else [])
    with contextlib.redirect_stdout(io.StringIO()):  # its table: the benchmark prints its own
        code = cli(command)
    if code != 0:
        raise RunFailed(f"the benchmark's `genzoo {' '.join(command)}` failed (its error is above)", code)
    result = read_json(run / "eval.json", "evaluation")  # strict JSON: a non-finite number comes back a float
    steps_done = read_json(run / "run.json", "run file")["recipe"]["train"].get("steps")
    return {"seed": seed, "error": result["error"]["error"], "seconds": seconds, "steps": steps_done, "run": str(run)}


def recipe_steps(steps: int | None) -> int | None:
    """The steps a full run trains: ``--steps``, else the recipe's own, so that a run's key is the same either way
    (`--steps 15000` reuses the runs of a default invocation, and the reverse)."""
    if steps:
        return steps
    from genzoo.recipes import load_recipe

    return load_recipe(common.configs_dir() / RECIPE).get("train", {}).get("steps")


def run(args) -> str:
    from .common import mnist_root

    root = mnist_root(args)
    seeds = 2 if args.quick else (args.seeds or SEEDS)
    runs_dir = str(Path(args.runs_dir) / ("m2-mnist-quick" if args.quick else "m2-mnist"))
    ledger = common.ledger(args, "m2-mnist")  # (None for --quick: trains every run, as before)
    results, reused = common.run_reusing(
        one, [(s, root, runs_dir, args.steps, args.quick) for s in range(seeds)], args.jobs, "bench m2-mnist",
        not args.no_progress, ledger=ledger, runs=[Path(runs_dir) / f"seed{s}" for s in range(seeds)],
        settings=[{"seed": s, "steps": recipe_steps(args.steps), "recipe": RECIPE, "mnist": common.mnist_key(root)}
                  for s in range(seeds)] if ledger else [], files=("eval.json",), parallel=run_parallel)
    errs = [100 * r["error"] for r in results]
    spread = f" +- {statistics.stdev(errs):.2f}" if len(errs) > 1 else ""  # one seed has no spread
    lines = ["## Semi-supervised M2 on MNIST, 100 labels (`genzoo bench m2-mnist`)", "",
             f"`configs/ssvae-mnist.toml` ({results[0]['steps']:,} steps of 100 unlabelled + 100 labelled images, one CPU "
             f"thread each); the seed picks the 10 labelled images per class. Test error on the {500 if args.quick else 10_000:,} "
             "test images (lower is better).", "",
             "| model | test error % | seeds | minutes per run |", "|---|---|---|---|",
             f"| **genzoo M2** | {statistics.fmean(errs):.2f}{spread} | {len(errs)} | "
             f"{statistics.fmean(r['seconds'] for r in results) / 60:.1f} |"]
    lines += [f"| {name}, as published | {err} | | |" for name, err in PAPER]
    lines += ["", "Per seed: " + ", ".join(f"seed {r['seed']} {100 * r['error']:.2f}%" for r in results) + "."]
    lines += ["", reused] * bool(reused)
    return "\n".join(lines)
