"""What the single-run benchmarks share: where MNIST is, and "train for a budget, then report the test
likelihood" with :func:`genzoo.eval.likelihood.likelihood_report`."""

from __future__ import annotations

import math
import os
import shutil
import time
from pathlib import Path

from ..errors import ConfigError, DataError, GenZooError, RunLocked
from ..train.loop import MAX_STEPS

#: the header of the flow-on-MNIST tables (one row per model from :func:`run_flow_on_mnist`)
TABLE_HEAD = ("| model | parameters | steps | minutes | test log-likelihood (nats) | bits/dim |", "|---|---|---|---|---|---|")


def mnist_root(args) -> str:
    """``--data-root``, else ``$GENZOO_DATA`` (set and not empty), else ``shared/data/mnist`` beside the genzoo
    checkout (not the current directory); a DataError unless the four IDX files are there (naming $GENZOO_DATA
    when the folder came from it)."""
    from ..data.mnist import find_mnist

    given = getattr(args, "data_root", None) or None
    root = given or os.environ.get("GENZOO_DATA") or None  # GENZOO_DATA= (empty) is unset, not the current directory
    if root is None:
        guess = Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist"
        if not guess.is_dir():
            raise DataError("MNIST not found: give --data-root DIR (the four IDX files) or set GENZOO_DATA")
        root = str(guess)
    try:
        find_mnist(root)  # before any work, not in each worker
    except DataError as e:
        if given is None and root == os.environ.get("GENZOO_DATA"):
            raise DataError(f"$GENZOO_DATA={root}: {e}") from None
        raise
    return root


def _not_a_runs(run_dir: Path) -> list[str]:
    """What in ``run_dir`` a genzoo run (``genzoo train``'s files, the pictures genzoo and the benchmarks write, their
    hidden lock and temporary files) would not hold, as paths relative to it; the folders a run writes are looked into."""
    from ..io import DIVERGED, RUN_FILES

    def hidden_ours(name: str) -> bool:  # .lock, .NAME.XXXX.tmp, .genzoo-write-test-*, .tmp-*, .old-*, .damaged-*,
        return name == ".lock" or name.endswith(".tmp") or name.startswith((".genzoo-write-test-", ".tmp-", ".old-",
                                                                            ".damaged-", DIVERGED))  # .diverged-*

    inside = {  # what each folder of a run holds
        "samples": lambda n: (n.startswith("step-") and n.endswith(".png")) or hidden_ours(n),
        "checkpoints": lambda n: n.startswith("step-") or hidden_ours(n),
        "best": lambda n: n in ("config.json", "model.safetensors", "best.json", "run.json") or hidden_ours(n),
        "tensorboard": lambda n: n.startswith("events.out.tfevents."),
    }
    ours = (*RUN_FILES, "report.html", "evolution.gif")
    foreign = []
    for p in sorted(run_dir.iterdir()):
        if p.name in inside and p.is_dir() and not p.is_symlink():
            foreign += [f"{p.name}/{q.name}" for q in sorted(p.iterdir()) if not inside[p.name](q.name)]
        elif not (p.name in ours or hidden_ours(p.name) or (p.suffix == ".png" and p.is_file())):
            foreign.append(p.name)
    return foreign


def fresh_run(run_dir: Path) -> None:
    """Make ``run_dir``, the benchmark's own scratch run, ready for a new run: what an earlier benchmark left
    there is removed. A run being trained there now (:class:`RunLocked`), and a folder that is no run (no
    ``run.json`` of `genzoo train`, no ``config.json`` of :func:`genzoo.fit` but a :func:`genzoo.save` folder's) or holds anything a run does not (:func:`_not_a_runs`: a ConfigError) are left alone: a
    benchmark removes no one else's work."""
    from ..io import locked_elsewhere

    run_dir = Path(run_dir)
    if not run_dir.exists():
        return
    if not run_dir.is_dir() or run_dir.is_symlink():
        raise ConfigError(f"{run_dir} is {'a link' if run_dir.is_symlink() else 'a file'}, where the benchmark writes its "
                          "own run folder: move it, or give another --runs-dir")
    if locked_elsewhere(run_dir):
        raise RunLocked(f"{run_dir}: another process is training a run there, and the benchmark writes its own run "
                        "in that folder: let it finish, or give another --runs-dir")
    foreign = _not_a_runs(run_dir)
    visible = [p for p in run_dir.iterdir() if not p.name.startswith(".")]
    # genzoo.fit writes config.json first and metrics.jsonl from its first log row; a genzoo.save() folder holds
    # config.json and the weights alone (a model someone kept, not a run)
    fit_run = (run_dir / "config.json").is_file() and (
        (run_dir / "metrics.jsonl").is_file() or not (run_dir / "model.safetensors").is_file())
    trained = (run_dir / "run.json").is_file() or fit_run
    if visible and not foreign and not trained:
        # pictures and such, or a genzoo.save() folder (config.json and weights), but not a run (`genzoo train` writes
        # run.json first, genzoo.fit config.json and metrics.jsonl)
        foreign = [p.name for p in visible] + ["but no run.json, nor a genzoo.fit run's config.json"]
    if foreign:
        raise ConfigError(f"{run_dir} holds {', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}, which is not "
                          "a run's; the benchmark writes its own run in that folder: move them, or give another --runs-dir")
    shutil.rmtree(run_dir)


def run_parallel(fn, calls: list[tuple], jobs: int, desc: str, progress: bool = True) -> list:
    """``[fn(*args) for args in calls]``, run in ``jobs`` worker processes, with a progress bar over the runs.

    A run's error, a worker that dies (``BrokenProcessPool``), Ctrl-C or SIGTERM cancels the runs not started and
    kills the running ones at once (the workers are this process's only children; SIGKILL, since a worker running
    ``genzoo train`` handles SIGTERM as the end of one run and would go on to the next), instead of waiting for the
    queue to train."""
    from ..cli import sigterm_as_ctrl_c

    with sigterm_as_ctrl_c():  # SIGTERM as Ctrl-C: workers killed
        return _run_in_pool(fn, calls, jobs, desc, progress)


def _run_in_pool(fn, calls: list[tuple], jobs: int, desc: str, progress: bool) -> list:
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    from tqdm import tqdm

    pool = ProcessPoolExecutor(max_workers=jobs)
    try:
        futures = [pool.submit(fn, *args) for args in calls]
        with tqdm(total=len(futures), desc=desc, disable=None if progress else True) as bar:
            for f in as_completed(futures):  # as they end: a failure of any run stops the others now, not after
                f.result()                    # every run submitted before it has ended
                bar.update()
        return [f.result() for f in futures]
    except BrokenProcessPool:
        _kill_workers(pool)
        raise RunFailed("a benchmark worker process died (killed by the system: out of memory?); the runs are "
                        "stopped") from None
    except BaseException:
        _kill_workers(pool)
        raise
    finally:
        pool.shutdown(wait=True)


def _kill_workers(pool) -> None:
    import multiprocessing

    pool.shutdown(wait=False, cancel_futures=True)
    for worker in multiprocessing.active_children():
        worker.kill()


class RunFailed(GenZooError):
    """A training or evaluation command the benchmark ran failed; its own error line is printed above."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code

    def __reduce__(self):  # raised in a benchmark's worker process, it travels back pickled, exit code and all
        return RunFailed, (str(self), self.exit_code)


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
              seed: int = 0, max_minutes: float | None = None, lr_schedule: str = "cosine") -> tuple[int, float]:
    """Train ``model`` for ``steps`` (a cosine learning rate unless told); (steps done, seconds)."""
    from ..train import fit

    t0 = time.time()
    state = fit(model, data, steps=steps, batch_size=batch_size, seed=seed, run_dir=run_dir, progress=progress,
                lr_schedule=lr_schedule, checkpoint_every=max(1, steps // 4), max_minutes=max_minutes)
    return state.step, time.time() - t0


def report_row(report: dict, metric: str = "NLL") -> tuple[float, float, float]:
    """(log-likelihood in nats on [0,1]^D, its standard error, bits/dim on the 256 levels) of a dequantized report."""
    row = next(r for r in report["rows"] if r["metric"].startswith(metric))
    continuous_ll = -(row["nats"] - report["dims"] * math.log(report["levels"]))
    return continuous_ll, row["stderr"], row["bits_per_dim"]


def run_flow_on_mnist(args, name: str, options: dict, minutes: float, batch: int, title: str,
                      lr_schedule: str = "cosine") -> tuple[list[str], dict]:
    """Train flow ``name`` on dequantized MNIST for a budget; the lines of its result and the numbers."""
    import torch

    import genzoo
    from genzoo.data import load_dataset
    from genzoo.eval.likelihood import likelihood_report
    from genzoo.viz import save_grid

    root = mnist_root(args)
    train = load_dataset("mnist", "train", root=root, dequantize=True, n=2000 if args.quick else None)
    test = load_dataset("mnist", "test", root=root, dequantize=True, n=500 if args.quick else None)
    torch.manual_seed(0)
    model = genzoo.build(name, data_shape=train.shape, **options)
    steps = 20 if args.quick else (args.steps or steps_in(model, train, minutes, batch))
    if steps > MAX_STEPS:  # (--minutes is capped before the run; a model this fast could still plan more)
        raise ConfigError(f"--minutes {minutes:g} allows {steps:,} steps, more than the 10^9 a run may take: give fewer")
    run_dir = Path(args.runs_dir) / f"{name}-mnist{'-quick' if args.quick else ''}"  # --quick runs every line too
    fresh_run(run_dir)
    done, seconds = train_for(model, train, steps=steps, batch_size=batch, run_dir=run_dir,
                              progress=not args.no_progress, max_minutes=None if args.steps else 1.5 * minutes,
                              lr_schedule=lr_schedule)
    rep = likelihood_report(model, test, progress=not args.no_progress)
    ll, se, bpd = report_row(rep)
    epochs = done * batch / len(train)
    params = sum(p.numel() for p in model.parameters())
    lines = [f"| {title} | {params / 1e6:.1f} M | {done:,} ({epochs:.1f} epochs) | {seconds / 60:.1f} | "
             f"{ll:.1f} +- {se:.1f} | {bpd:.3f} |"]
    save_grid(model.sample(64, torch.Generator().manual_seed(0)).clamp(0, 1), run_dir / "samples-final.png", scale=2)
    return lines, {"ll": ll, "bpd": bpd, "steps": done, "seconds": seconds, "run_dir": run_dir, "n_test": len(test)}


def configs_dir() -> Path:
    """The ``configs/`` folder of the checkout the benchmarks run from."""
    from ..errors import ConfigError

    here = Path(__file__).resolve().parents[2] / "configs"
    if not here.is_dir():
        raise ConfigError(f"the recipes folder {here} is missing: run the benchmark from a genzoo checkout")
    return here


def train_cli(run: Path, args: list[str]) -> float:
    """``genzoo train ARGS --run-dir RUN --no-progress`` into a fresh scratch ``run`` (the benchmark's own);
    seconds."""
    from ..cli import main as cli

    fresh_run(run)
    args = ["train", *args, "--run-dir", str(run), "--no-progress"]
    t0 = time.time()
    code = cli(args)
    if code in (130, 143):  # the run was interrupted (it said so above, and kept its checkpoints): so is the benchmark
        from ..cli import Terminated

        raise Terminated() if code == 143 else KeyboardInterrupt()
    if code != 0:
        raise RunFailed(f"the benchmark's run `genzoo {' '.join(args)}` failed (its error is above)", code)
    return time.time() - t0


def train_recipe(recipe: str, run: Path, root: str, extra: list[str]) -> float:
    """``genzoo train --config configs/RECIPE`` into a fresh scratch ``run``; seconds."""
    return train_cli(run, ["--config", str(configs_dir() / recipe), "--data-root", root, *extra])
