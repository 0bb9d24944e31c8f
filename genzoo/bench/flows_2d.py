"""Every flow on the 2-D toy sets, trained through the command line (``genzoo train``), scored on the test
split against the true density: the mean test log-likelihood beside E[log p(x)] under the truth (the
negative entropy, estimated on the same test points), and a density picture per run.
"""

from __future__ import annotations

from pathlib import Path

from . import RUNS_DIR, common
from .common import run_parallel

DESCRIPTION = "planar, NICE and RealNVP on moons, ring and checkerboard via the CLI: test log-likelihood vs the truth"
#: the flags of `genzoo bench` this benchmark reads (others given are refused), as argparse dest names
FLAGS = ("steps", "jobs")
#: each run trains in a worker process of one thread (the stamp says so, with --jobs)
THREADS_PER_RUN = 1
DATASETS = ("moons", "ring", "checkerboard")
#: model -> the --set options of its 2-D recipe
RECIPES = {
    "planar": ["n_layers=32"],
    "nice": ["n_couplings=6", "hidden=[128,128,128]", "base=normal"],
    # 32 couplings with learned linear mixing (LU) between them, lr 5e-4 clipped at 10: the ring's 8 sharp modes
    # within 0.1 nats of the truth (8 couplings with fixed permutations stopped 0.75 short)
    "realnvp": ["n_couplings=32", "hidden=[128,128]", "lr=5e-4", "max_grad_norm=10", "mixing=linear"],
}
STEPS, BATCH, N_TEST = 8000, 256, 5000
#: the defaults of its FLAGS, in words (`genzoo bench` lists them); --quick keeps its scratch runs
DEFAULTS, QUICK_RUNS = {"steps": f"{STEPS:,}"}, True
#: a full run reuses the runs an earlier invocation finished with the same settings (common.run_reusing)
REUSES_RUNS = True


def train_args(model: str, dataset: str, steps: int) -> list[str]:
    """The arguments of `genzoo train` for one run (its --run-dir aside)."""
    args = [model, "--data", dataset, "--steps", str(steps), "--batch-size", str(BATCH),
            "--set", "lr_schedule=cosine", "--set", "data.n=50000"]
    for kv in RECIPES[model]:
        args += ["--set", kv]
    return args


def one(model: str, dataset: str, steps: int, runs_dir: str) -> dict:
    import torch

    import genzoo
    from genzoo.data import load_dataset

    from .common import train_cli

    torch.set_num_threads(1)
    run = Path(runs_dir) / f"{model}-{dataset}"
    seconds = train_cli(run, train_args(model, dataset, steps))
    m = genzoo.load(run).eval()
    test = load_dataset(dataset, "test", n=N_TEST)
    with torch.no_grad():
        lp = m.log_prob(test.x).double()
        true = test.density.log_prob(test.x).double()
    gap = true - lp
    return {"model": model, "dataset": dataset, "ll": float(lp.mean()), "true": float(true.mean()),
            "gap": float(gap.mean()), "gap_se": float(gap.std() / len(gap) ** 0.5), "seconds": seconds,
            "picture": str(run / "density.png")}


def stack_pictures(paths: list[str], out: Path) -> Path:
    """The density pictures of one data set, one model a row, stacked into one PNG (the README's figures), written
    atomically as every other bench output (an interrupted write leaves the old picture, not half a new one)."""
    import io

    from PIL import Image

    from ..io import atomic_write_bytes

    images = []
    for p in paths:
        with Image.open(p) as img:  # (closed: the file handle is not left to the garbage collector)
            images.append(img.convert("RGB"))
    with Image.new("RGB", (max(i.width for i in images), sum(i.height for i in images)), "white") as sheet:
        top = 0
        for img in images:
            sheet.paste(img, (0, top))
            top += img.height
            img.close()
        buf = io.BytesIO()
        sheet.save(buf, format="PNG")
    atomic_write_bytes(out, buf.getvalue())
    return out


def run(args) -> str:
    steps = 200 if args.quick else (args.steps or STEPS)
    runs_dir = str(Path(args.runs_dir) / ("flows-2d-quick" if args.quick else "flows-2d"))
    jobs = [(m, d) for d in DATASETS for m in RECIPES]
    results, reused = common.run_reusing(
        one, [(m, d, steps, runs_dir) for m, d in jobs], args.jobs, "bench flows-2d", not args.no_progress,
        ledger=common.ledger(args, "flows-2d"), runs=[Path(runs_dir) / f"{m}-{d}" for m, d in jobs],
        settings=[{"model": m, "dataset": d, "steps": steps, "train": train_args(m, d, steps), "n_test": N_TEST}
                  for m, d in jobs], files=("density.png",), parallel=run_parallel)
    lines = ["## Flows on 2-D toy sets (`genzoo bench flows-2d`)", "",
             f"Each run is `genzoo train MODEL --data SET --steps {steps} --batch-size {BATCH} --set lr_schedule=cosine "
             f"--set data.n=50000` (50,000 training points) with the options below; test log-likelihood on {N_TEST:,} "
             "test points, nats (higher is better). 'true' is the mean log-density of the same points under the true "
             "density, i.e. the best any model can do in expectation; 'gap' = true - model, +- its standard error.", ""]
    lines += ["| model | options | " + " | ".join(f"{d}: test LL / true / gap" for d in DATASETS) + " | s per run |",
              "|---|---|" + "---|" * len(DATASETS) + "---|"]
    for m in RECIPES:
        cells, secs = [], []
        for d in DATASETS:
            r = next(r for r in results if r["model"] == m and r["dataset"] == d)
            cells.append(f"{r['ll']:.3f} / {r['true']:.3f} / {r['gap']:.3f} +- {r['gap_se']:.3f}")
            secs.append(r["seconds"])
        lines.append(f"| {m} | {', '.join(RECIPES[m])} | " + " | ".join(cells) + f" | {sum(secs) / len(secs):.0f} |")
    for d in DATASETS:  # one figure per set, the models in RECIPES order
        stack_pictures([r["picture"] for m in RECIPES for r in results if r["model"] == m and r["dataset"] == d],
                       Path(runs_dir) / f"flows-{d}.png")
    here = f"RUNS/{Path(runs_dir).name}"  # RUNS, not this run's folder: the table is read where that is not
    lines += ["", f"Density pictures (model beside truth): `{here}/MODEL-SET/density.png`; the three models stacked per "
              f"set in `{here}/flows-SET.png`" + ("" if args.quick else "; the README shows `docs/flows-SET.png`, copies made by hand: copy these over them")
              + f" (RUNS: `--runs-dir`, default `{RUNS_DIR}`)."]
    lines += ["", reused] * bool(reused)
    return "\n".join(lines)
