"""What the single-run benchmarks share: where MNIST is, and "train for a budget, then report the test
likelihood" with :func:`genzoo.eval.likelihood.likelihood_report`."""

from __future__ import annotations

import functools
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, DataError, GenZooError, RunLocked
from ..train.loop import MAX_STEPS

#: what a benchmark's run folder holds once its run has finished: the run's result and what determined it
#: (:func:`run_reusing`)
RECORD = "bench.json"
#: the form of that record; another one is not reused
RECORD_FORMAT = 1

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
    ours = (*RUN_FILES, "report.html", "evolution.gif", RECORD)
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

    from ..nn import linear  # noqa: F401  (its kernel decided, and a mistyped GENZOO_ONEDNN_LINEAR said, once: here,
    #                             not again in each forked worker)

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


# -- reusing the runs an earlier invocation finished ---------------------------------------------------------------
def code_digest() -> str:
    """A BLAKE2b of the files of the genzoo package and of the recipes (``configs/``) the benchmarks train from, by
    content: the code a run was trained and scored by. (Not the git commit: a commit of the docs or the tests
    changes no run, and an uncommitted edit of the code, which leaves the commit as it was, may.)"""
    import hashlib

    package = Path(__file__).resolve().parents[1]
    digest = hashlib.blake2b(digest_size=16)
    for root in (package, package.parent / "configs"):
        if not root.is_dir():
            continue
        for p in sorted(root.rglob("*")):
            if "__pycache__" in p.parts or p.suffix in (".pyc", ".pyo") or not p.is_file():
                continue
            name, data = p.relative_to(package.parent).as_posix().encode(), p.read_bytes()
            digest.update(len(name).to_bytes(8, "little") + name + len(data).to_bytes(8, "little") + data)
    return digest.hexdigest()


def mnist_key(root: str) -> str | None:
    """What a run's key records of the MNIST files in ``root``: their content (not the folder's name)."""
    from ..data.mnist import mnist_fingerprint

    return mnist_fingerprint(root)


@dataclass(frozen=True)
class Ledger:
    """How one invocation of benchmark ``bench`` reuses the runs an earlier one finished (:func:`run_reusing`):
    ``base``, what every run's key holds beside its own settings (genzoo's version, the code's digest, the torch and
    Python versions, the CPU); ``commit``, the checkout's commit its records name; ``fresh``, reuse none (--fresh)."""
    bench: str
    base: dict
    commit: str
    fresh: bool

    def key(self, settings: dict) -> dict:
        """Everything that determines a run of ``settings``, as its record holds it (JSON: tuples are lists)."""
        from ..io import dumps, loads

        return loads(dumps({"format": RECORD_FORMAT, "benchmark": self.bench, **self.base, "run": settings}))


def ledger(args, bench: str) -> Ledger | None:
    """The :class:`Ledger` of this invocation of ``bench``; None for ``--quick``, which trains every run afresh and
    keeps no record (as before)."""
    if args.quick:
        return None
    import platform

    import torch

    from .. import __version__
    from ..eval.train_classifier import cpu_model
    from ..nn import linear
    from . import commit

    base = {"genzoo": __version__, "code": code_digest(), "torch": torch.__version__,
            "python": platform.python_version(), "cpu": f"{os.cpu_count()} x {cpu_model()}",
            # the linear layers' kernel as this process runs them (genzoo.nn.linear.onednn_default: the environment's
            # GENZOO_ONEDNN_LINEAR, else the CPU's maker), which moves the results in their last bits and the seconds
            "onednn_linear": linear.onednn_in_use()}
    return Ledger(bench, base, commit(), bool(getattr(args, "fresh", False)))


def run_reusing(fn, calls: list[tuple], jobs: int, desc: str, progress: bool, *, ledger: Ledger | None,
                runs: list, settings: list[dict], files: tuple[str, ...] = (), parallel=None) -> tuple[list, str]:
    """:func:`run_parallel` of ``fn`` over ``calls``, where call ``i`` trains (and scores) the run in folder
    ``runs[i]`` that ``settings[i]`` determine, and returns its result (a JSON dict): a run that an earlier
    invocation finished with the same key (:meth:`Ledger.key`), whose folder still holds the weights it finished
    with (and loads) and the ``files`` its result names (pictures, eval.json) as they were, is not trained again:
    its stored result (seconds included) is returned. Each run trained now writes its record (:data:`RECORD`)
    into its folder as soon as it has finished, so a later failure, Ctrl-C or power cut loses no finished run.
    Anything else (no record, another key, a damaged record or run) is trained as before (``fn`` calls
    :func:`fresh_run`), with a note that says why where there was a record. Without a ``ledger`` (``--quick``, no
    runs folder) this is :func:`run_parallel`. Returns (the results in the order of ``calls``, the Markdown line
    that says how many runs were reused and from which commit; "" where none was). ``parallel``: what runs them
    (the benchmark module's :func:`run_parallel`)."""
    parallel = parallel or run_parallel
    if ledger is None:
        return parallel(fn, calls, jobs, desc, progress), ""
    runs = [Path(r) for r in runs]
    keys = [ledger.key(s) for s in settings]
    results: list = [None] * len(calls)
    kept = {}
    for i, (run, key) in enumerate(zip(runs, keys)):
        record, why = (None, None) if ledger.fresh else stored_record(run, key, files)
        if why:
            print(f"genzoo: note: {run} {why}: training it again", file=sys.stderr)
        if record is not None:
            kept[i], results[i] = record, record["result"]
    todo = [i for i in range(len(calls)) if i not in kept]
    if kept:
        print(f"genzoo: note: reusing {len(kept)} of {len(calls)} runs that an earlier `genzoo bench {ledger.bench}` "
              f"finished with these settings; training {len(todo)} (--fresh trains them all)", file=sys.stderr)
    if todo:
        done = parallel(_train_and_record, [(fn, str(runs[i]), keys[i], tuple(files), ledger.commit, *calls[i])
                                            for i in todo], jobs, desc, progress)
        for i, r in zip(todo, done):
            results[i] = r
    return results, reuse_note(list(kept.values()), len(calls))


def _train_and_record(fn, run: str, key: dict, files: tuple[str, ...], commit: str, *args) -> dict:
    """``fn(*args)``, the run in folder ``run`` trained and scored, then its record written there (in the worker:
    at once, not when every run has ended)."""
    result = fn(*args)
    if code_digest() != key.get("code"):  # genzoo's files or configs/ edited while it ran: which code trained it?
        print(f"genzoo: note: {run}: genzoo's code changed while it ran: its result is not kept for reuse",
              file=sys.stderr)
    else:
        keep_record(Path(run), key, result, files, commit)
    return result


def keep_record(run: Path, key: dict, result: dict, files: tuple[str, ...] = (), commit: str = "unknown") -> None:
    """Write the record of the finished run in ``run`` (:data:`RECORD`, atomically, strict JSON): its key, its
    result, the weights :func:`genzoo.load` reads there and the ``files`` its result names, by content, the commit
    and the time. One that cannot be written is a warning, not an error: the result is in hand, the run is only not
    reusable."""
    from ..errors import WriteError
    from ..io import _digest, atomic_write_json, weights_stamp

    try:
        record = {"format": RECORD_FORMAT, "key": key, "result": result, "weights": weights_stamp(run),
                  "files": {name: _digest(path=run / name) for name in files}, "commit": commit,
                  "finished": time.strftime("%Y-%m-%d %H:%M %z"), "run": str(run)}
        atomic_write_json(run / RECORD, record, own=True)
    except (WriteError, OSError, TypeError, ValueError) as e:
        print(f"genzoo: warning: {run}: cannot keep its record ({e}): a later invocation trains it again",
              file=sys.stderr)


def stored_record(run: Path, key: dict, files: tuple[str, ...] = ()) -> tuple[dict | None, str | None]:
    """(the record of the finished run in ``run``, None) where it can be reused for ``key``; else (None, why), or
    (None, None) where there is no record to speak of (no folder, no record: a run never finished; a run being
    trained there now, which :func:`fresh_run` refuses)."""
    from ..io import _digest, locked_elsewhere, read_json, same_weights, weights_stamp

    path = run / RECORD
    if run.is_symlink() or not run.is_dir() or path.is_symlink() or not path.is_file() or locked_elsewhere(run):
        return None, None
    try:
        record = read_json(path, "benchmark record")
    except (GenZooError, OSError) as e:
        return None, f"cannot be reused ({e})"
    if not (record.get("format") == RECORD_FORMAT and isinstance(record.get("key"), dict)
            and isinstance(record.get("result"), dict) and isinstance(record.get("files"), dict)):
        return None, f"cannot be reused (its record {path} is damaged, or of another genzoo)"
    if record["key"] != key:
        return None, _differs(record["key"], key)
    if not same_weights(record.get("weights"), weights_stamp(run)):
        return None, "holds other weights than the ones its run finished with"
    for name in files:
        try:
            same = (run / name).is_file() and _digest(path=run / name) == record["files"].get(name)
        except OSError:
            same = False
        if not same:
            return None, f"holds no {name} as its run finished with it"
    try:
        from .. import load

        load(run)
    except Exception as e:  # whatever the fault, a run that does not load is trained again
        said = str(e).splitlines()[0] if str(e) else type(e).__name__
        return None, f"cannot be reused (its weights do not load: {said})"
    result, old = record["result"], record.get("run")
    if isinstance(old, str) and old != str(run):  # the folder named otherwise (moved, given absolute): its paths
        result = {k: str(run) + v[len(old):] if isinstance(v, str) and (v == old or v.startswith(old + os.sep)) else v
                  for k, v in result.items()}
    return {**record, "result": result}, None


def _differs(have: dict, want: dict, where: str = "") -> str:
    """Why a record of key ``have`` is not one of key ``want``, in words: the first setting that differs.

    >>> _differs({"run": {"steps": 8000}}, {"run": {"steps": 200}})
    'was finished with steps 8000, and this invocation asks 200'
    """
    import json

    def said(v) -> str:
        text = json.dumps(v)
        return text if len(text) <= 60 else text[:57] + "..."

    for k in [*want, *(k for k in have if k not in want)]:
        a, b = have.get(k), want.get(k)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            return _differs(a, b, "" if k == "run" else f"{where}{k}.")
        if k == "code" and not where:
            return "was finished by other code (genzoo's files or configs/ have changed since)"
        return f"was finished with {where}{k} {said(a)}, and this invocation asks {said(b)}"
    return "was finished with other settings"


def reuse_note(records: list[dict], total: int) -> str:
    """The line under a benchmark's table that says how many of its ``total`` runs were reused, from which commit
    and when (their seconds were measured then, not in this invocation); "" where none was.

    >>> reuse_note([{"commit": "592f870", "finished": "2026-01-02 10:00"}], 9)
    'Reused: 1 of 9 runs, finished by an earlier invocation with the same settings (commit 592f870, 2026-01-02 10:00): their results and seconds were measured then; the other 8 were trained in this invocation (`--fresh` trains every run).'
    """
    if not records:
        return ""
    commits = sorted({str(r.get("commit") or "unknown") for r in records})
    times = sorted(r["finished"] for r in records if isinstance(r.get("finished"), str))
    when = (f", {times[0]}" + (f" to {times[-1]}" if times[-1] != times[0] else "")) if times else ""
    rest = total - len(records)
    trained = "none was" if not rest else f"the other {rest} {'was' if rest == 1 else 'were'}"
    return (f"Reused: {len(records)} of {total} runs, finished by an earlier invocation with the same settings "
            f"(commit{'s' * (len(commits) > 1)} {', '.join(commits)}{when}): their results and seconds were measured "
            f"then; {trained} trained in this invocation (`--fresh` trains every run).")


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
