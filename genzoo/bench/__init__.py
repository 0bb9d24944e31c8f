"""Reproductions of published tables: ``genzoo bench NAME``, one small module per table.

Each module under ``genzoo/bench/`` has a ``DESCRIPTION``, the ``FLAGS`` of ``genzoo bench`` it reads
(any other given is refused, not ignored), their ``DEFAULTS`` in words where it has its own, ``QUICK_RUNS = True``
where ``--quick`` keeps scratch runs in ``--runs-dir``, ``RUNS = False`` where it writes nothing there, even in full,
``THREADS_PER_RUN = 1`` where its runs train in worker processes of one thread each (the stamp says so, not the
threads of the process that waits for them), ``MAX_JOBS`` where it runs fewer at a time than ``--jobs`` may ask,
``QUICK_DATA_ROOT = False`` where ``--quick`` reads no MNIST (so takes no ``--data-root``), ``REUSES_RUNS = True``
where a full run reuses the runs an earlier invocation finished with the same settings (``--fresh``: none; see
:func:`genzoo.bench.common.run_reusing`), and ``run(args) -> str``
returning its result as Markdown; the harness adds what was run, where and when, prints it and writes it into ``BENCHMARKS.md`` between
``<!-- bench:NAME -->`` markers (replacing the previous result of the same benchmark, keeping everything
else; markers that are unbalanced or doubled are refused before the run, so no text between them is lost).

>>> {"modes", "fgan-gaussian", "nice-mnist"} <= set(BENCHES)
True
"""

from __future__ import annotations

import hashlib
import importlib
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

from ..errors import ConfigError, WriteError, did_you_mean
from ..io import atomic_write_bytes, check_writable, folder_locked
from ..train.loop import MAX_STEPS  # (genzoo.fit refuses more: so the most --steps)

#: the options a benchmark may read (each module's FLAGS names those it does), as argparse's dest names
TUNABLE = ("steps", "seeds", "minutes", "jobs", "data_root", "device")
#: the default of --runs-dir
RUNS_DIR = "runs/bench"
#: the default of --output
OUTPUT = "BENCHMARKS.md"
#: the most --seeds: each seed trains every configuration of the benchmark again
MAX_SEEDS = 1000
#: the most --minutes (about 70 days): longer budgets are typos, and would plan more than MAX_STEPS steps
MAX_MINUTES = 100_000
#: the default of --jobs: runs in parallel
DEFAULT_JOBS = min(os.cpu_count() or 1, 4)

#: benchmark name -> module under genzoo.bench
BENCHES = {
    "modes": "modes",
    "fgan-gaussian": "fgan_gaussian",
    "nice-mnist": "nice_mnist",
    "realnvp-mnist": "realnvp_mnist",
    "speed": "speed",
    "vae-planar": "vae_planar",
    "flows-2d": "flows_2d",
    "parzen-mnist": "parzen_mnist",
    "inpaint-mnist": "inpaint_mnist",
    "m2-mnist": "m2_mnist",
    "eval-speed": "eval_speed",
}


def get(name: str):
    """The module of benchmark ``name``."""
    if name not in BENCHES:
        raise ConfigError(f"unknown benchmark '{name}'{did_you_mean(name, BENCHES)}; "
                          f"choose one of: {', '.join(sorted(BENCHES))}")
    return importlib.import_module(f"{__name__}.{BENCHES[name]}")


def machine(threads: str | None = None) -> str:
    """One line: CPU model and count, torch version and threads (``threads`` when given: the benchmarks whose runs
    train in worker processes say how many threads each had, not this process's)."""
    import torch

    from ..eval.train_classifier import cpu_model

    cpu = cpu_model()
    if cpu == "unknown":
        cpu = platform.processor() or platform.machine()
    if threads is None:
        n = torch.get_num_threads()
        threads = f"{n} thread{'s' * (n != 1)}"
    return f"{os.cpu_count()} x {cpu}, torch {torch.__version__} ({threads}), Python {platform.python_version()}"


def run_threads(mod, args) -> str | None:
    """The threads of the stamp for a benchmark whose runs train in worker processes (``THREADS_PER_RUN``), with the
    runs it trains at a time; None for one that trains in this process.

    >>> import argparse
    >>> run_threads(get("modes"), argparse.Namespace(jobs=2))
    '1 thread per run, --jobs 2'
    """
    n = getattr(mod, "THREADS_PER_RUN", None)
    if n is None:
        return None
    jobs = min(args.jobs, getattr(mod, "MAX_JOBS", args.jobs))
    return f"{n} thread{'s' * (n != 1)} per run, --jobs {jobs}"


def commit() -> str:
    """The git commit of the genzoo checkout this runs from (with '+dirty' when it has changes), or 'unknown':
    also for an installed genzoo inside some other git repository, whose commit says nothing of genzoo's."""
    here = Path(__file__).resolve().parents[2]  # the folder holding the genzoo package
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=here, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        if not top or Path(top).resolve() != here:
            return "unknown"
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (sha + ("+dirty" if dirty else "")) or "unknown"


def checkout() -> tuple[str, str]:
    """:func:`commit` and a digest of the uncommitted changes to tracked files ('' when there are none), read before
    and after a run: a commit, or an edit, made while a benchmark ran is named in its stamp."""
    label = commit()
    if not label.endswith("+dirty"):
        return label, ""
    try:
        diff = subprocess.run(["git", "diff", "HEAD", "--no-ext-diff", "--no-color", "--binary"],
                              cwd=Path(__file__).resolve().parents[2], capture_output=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return label, ""
    return label, hashlib.sha1(diff).hexdigest()


def provenance(before: tuple[str, str], after: tuple[str, str]) -> str:
    """The commit a stamp names: the one the run started from, and what changed while it ran.

    >>> provenance(("592f870", ""), ("5a37fc0+dirty", "ab"))
    '592f870 (HEAD moved to 5a37fc0+dirty during the run)'
    >>> provenance(("5a37fc0+dirty", "ab"), ("5a37fc0+dirty", "cd"))
    '5a37fc0+dirty (the uncommitted changes were edited during the run)'
    """
    if before == after:
        return before[0]
    if before[0].split("+")[0] != after[0].split("+")[0]:
        return f"{before[0]} (HEAD moved to {after[0]} during the run)"
    if before[0] != after[0]:  # the same commit, made dirty or clean
        return f"{before[0]} ({after[0]} at the end of the run)"
    return f"{before[0]} (the uncommitted changes were edited during the run)"


def stamp(name: str, seconds: float, command: list[str] | None = None, *, commit_label: str | None = None,
          started: float | None = None, threads: str | None = None) -> str:
    """The provenance line under a benchmark's table: the command, genzoo's version, the commit (``commit_label``:
    the one the run started from, see :func:`provenance`; else read now), when it started (``started``, a
    ``time.time()``; else now), how long it took and the machine."""
    from .. import __version__

    cmd = shlex.join(command or ["genzoo", "bench", name])  # pasted back as it ran: a path with a space quoted
    when = time.strftime("%Y-%m-%d %H:%M %z", time.localtime(started))  # (the UTC offset: a reader elsewhere)
    return (f"{code_span(cmd)}: genzoo {__version__}, commit {commit_label or commit()}, {when}, "
            f"{seconds:.0f} s on {machine(threads)}.")


def code_span(text: str) -> str:
    """``text`` as a Markdown inline code span: fenced by one backtick more than its longest run of them (CommonMark
    6.1), with spaces inside where it starts or ends with one, so an argument holding a backtick does not end it.

    >>> code_span("genzoo bench modes"), code_span("a`b")
    ('`genzoo bench modes`', '``a`b``')
    """
    runs = [len(r) for r in re.findall(r"`+", text)]
    fence = "`" * (max(runs, default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def read_markdown(path: str | os.PathLike) -> str:
    """The text of the Markdown file a benchmark writes into ("# Benchmarks" if there is none yet); a
    ConfigError if it is not UTF-8 text (checked before a run, so a long run does not end in that error)."""
    path = Path(path)
    if not path.exists():
        return "# Benchmarks\n"
    try:
        with path.open(encoding="utf-8", newline="") as f:  # line endings as they are: CRLF stays CRLF
            return f.read()
    except (UnicodeDecodeError, OSError) as e:
        raise ConfigError(f"--output {path}: cannot read it as a Markdown (UTF-8 text) file ({e.__class__.__name__})") from None


def check_markers(text: str, name: str, path: str | os.PathLike) -> None:
    """A ConfigError unless ``text`` holds this benchmark's markers once each, opening before closing, or not at
    all: a missing or doubled marker would make the replacement take (or leave) the text between others.

    >>> check_markers("<!-- /bench:modes -->", "modes", "B.md")
    Traceback (most recent call last):
    genzoo.errors.ConfigError: --output B.md: the markers of 'modes' are 0 <!-- bench:modes --> and 1 <!-- /bench:modes --> (lines 1); there must be one of each, in that order, or none: mend the file by hand
    """
    opening, closing = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    n_open, n_close = text.count(opening), text.count(closing)
    if (n_open, n_close) == (0, 0) or (n_open, n_close) == (1, 1) and text.index(opening) < text.index(closing):
        return
    lines = text.splitlines()
    at = {m: [i + 1 for i, line in enumerate(lines) if m in line] for m in (opening, closing)}
    where = ", ".join(str(i) for i in sorted(at[opening] + at[closing]))
    raise ConfigError(f"--output {path}: the markers of '{name}' are {n_open} {opening} and {n_close} {closing} "
                      f"(lines {where}); there must be one of each, in that order, or none: mend the file by hand")


def write_section(path: str | os.PathLike, name: str, markdown: str) -> None:
    """Put ``markdown`` between this benchmark's markers in ``path``, replacing the old result. The file is read,
    changed and replaced under a lock on its folder (:func:`~genzoo.io.folder_locked`): two benchmarks that finish
    together each keep their section (the second replace dropped the first's)."""
    path = Path(path)
    with folder_locked(path.resolve().parent):
        text = read_markdown(path)
        check_markers(text, name, path)  # again: the file may have been edited during the run
        nl = "\r\n" if "\r\n" in text else "\n"  # the file's own line endings
        body = markdown.strip().replace("\r\n", "\n").replace("\n", nl)
        block = f"<!-- bench:{name} -->{nl}{body}{nl}<!-- /bench:{name} -->"
        pattern = re.compile(rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->", re.S)
        if pattern.search(text):
            text = pattern.sub(lambda _: block, text)
        else:  # appended after a blank line; the text before it kept as it is (trailing spaces: a Markdown line break)
            ends = "" if not text or text.endswith(("\n\n", "\n\r\n")) else nl if text.endswith("\n") else nl + nl
            text = text + ends + block + nl
        atomic_write_bytes(path, text.encode())


def flags_help(name: str) -> str:
    """What ``genzoo bench NAME`` reads, each flag with its default, and whether ``--quick`` keeps runs: one line
    (``genzoo bench`` lists it under each benchmark).

    >>> flags_help("fgan-gaussian")
    'reads --steps (default 4,000), --jobs (default the CPU count, at most 4); writes no runs (no --runs-dir)'
    """
    mod = get(name)
    defaults = {"jobs": "the CPU count, at most 4", **getattr(mod, "DEFAULTS", {})}  # (--data-root: as --help says)
    reads = ", ".join(_flags([k]) + (f" (default {defaults[k]})" if k in defaults else "") for k in mod.FLAGS)
    quick = "keeps its scratch runs in --runs-dir" if writes_runs(mod, quick=True) else "writes no runs"
    reads = f"reads {reads or 'none of ' + _flags(TUNABLE)}"
    reuses = "; reuses the runs an earlier invocation finished with the same settings (--fresh: none)" * reuses_runs(mod)
    return f"{reads}{reuses}; {'--quick ' + quick if writes_runs(mod) else 'writes no runs (no --runs-dir)'}"


def reuses_runs(mod) -> bool:
    """Whether benchmark module ``mod`` reuses, in full, the runs an earlier invocation finished (``--fresh``: none)."""
    return writes_runs(mod) and getattr(mod, "REUSES_RUNS", False)


def writes_runs(mod, quick: bool = False) -> bool:
    """Whether benchmark module ``mod`` writes runs or pictures into ``--runs-dir`` (in full, at least; with
    ``quick``, in its ``--quick`` version)."""
    return getattr(mod, "RUNS", True) and (not quick or getattr(mod, "QUICK_RUNS", False))


def _flags(dests) -> str:
    """argparse dest names as the flags a user types: ``data_root`` -> ``--data-root``."""
    return ", ".join("--" + k.replace("_", "-") for k in dests)


def check_options(args, mod) -> None:
    """A ConfigError for an option the benchmark does not read, ``--steps`` with ``--minutes``, a run length
    given with ``--quick`` or too long to be meant; the default ``--jobs`` filled in.

    >>> import argparse
    >>> check_options(argparse.Namespace(name="modes", seeds=50_000, steps=None, minutes=None, jobs=None,
    ...                                  data_root=None, device=None, quick=False), get("modes"))
    Traceback (most recent call last):
    genzoo.errors.ConfigError: --seeds must be at most 1000 (each seed trains every configuration again), got 50,000
    """
    given = [k for k in TUNABLE if getattr(args, k, None) is not None]
    unused = [k for k in given if k not in mod.FLAGS]
    if unused:
        raise ConfigError(f"bench {args.name} does not use {_flags(unused)} (of {_flags(TUNABLE)} it reads "
                          f"{_flags(mod.FLAGS) or 'none'})")
    if getattr(args, "seeds", None) is not None and args.seeds > MAX_SEEDS:  # each seed queues every run again
        raise ConfigError(f"--seeds must be at most {MAX_SEEDS} (each seed trains every configuration again), "
                          f"got {args.seeds:,}")
    if getattr(args, "steps", None) is not None and args.steps > MAX_STEPS:  # refused here, not by each run later
        raise ConfigError(f"--steps must be at most 10^9 (the most a run may take), got {args.steps:,}")
    if getattr(args, "minutes", None) is not None and args.minutes > MAX_MINUTES:
        raise ConfigError(f"--minutes must be at most {MAX_MINUTES:,} (about 70 days: a longer budget would plan more "
                          f"than the 10^9 steps a run may take), got {args.minutes:g}")
    if args.quick and getattr(args, "data_root", None) is not None and not getattr(mod, "QUICK_DATA_ROOT", True):
        raise ConfigError(f"bench {args.name} --quick runs on the digits, not MNIST: it takes no --data-root")
    if "steps" in given and "minutes" in given:  # --minutes only chooses the number of steps
        raise ConfigError("--steps and --minutes both set the run's length: give one (--minutes times a few steps "
                          "and picks the number that fits the budget)")
    lengths = [k for k in given if k in ("steps", "seeds", "minutes")]
    if args.quick and lengths:
        raise ConfigError(f"--quick runs a fixed tiny version: it takes no {_flags(lengths)}")
    if not writes_runs(mod) and getattr(args, "runs_dir", None) is not None:
        raise ConfigError(f"bench {args.name} writes no runs: it takes no --runs-dir")
    if args.quick and not writes_runs(mod, quick=True) and getattr(args, "runs_dir", None) is not None:
        raise ConfigError(f"bench {args.name} --quick writes no runs: it takes no --runs-dir")
    if getattr(args, "fresh", False) and not reuses_runs(mod):
        raise ConfigError(f"bench {args.name} reuses no runs: it takes no --fresh")
    if getattr(args, "fresh", False) and args.quick:
        raise ConfigError("--quick trains every run afresh and keeps none for reuse: it takes no --fresh")
    if writes_runs(mod) and getattr(args, "runs_dir", None) is None:
        args.runs_dir = RUNS_DIR
    if args.jobs is None:
        args.jobs = DEFAULT_JOBS


def main(args) -> int:
    """``genzoo bench [NAME]``: list the benchmarks, or run one and write its table."""
    if args.name is None:  # (cmd_bench sets --output to None for --no-write and --quick, refused here by name)
        given = [k for k in TUNABLE if getattr(args, k, None) is not None] + (["quick"] if args.quick else [])
        given += ["runs_dir"] * (getattr(args, "runs_dir", None) is not None) + ["no_write"] * bool(
            getattr(args, "no_write", False)) + ["output"] * (getattr(args, "output", None) not in (None, OUTPUT))
        given += ["fresh"] * bool(getattr(args, "fresh", False))
        if given:
            raise ConfigError(f"name a benchmark to run with {_flags(given[:1])} (`genzoo bench` lists them)")
        for name in sorted(BENCHES):
            print(f"{name:<16} {get(name).DESCRIPTION}\n{'':<16} {flags_help(name)}")
        return 0
    mod = get(args.name)
    check_options(args, mod)
    if "data_root" in mod.FLAGS and not args.quick:  # (a --quick run reads it, if at all, when it starts)
        from .common import mnist_root

        mnist_root(args)  # MNIST is there: checked before any work
    section = mod.section(args) if hasattr(mod, "section") else args.name  # (speed: one for the CPU, one for a GPU)
    if args.output and not args.quick:
        check_markers(read_markdown(args.output), section, args.output)
    if writes_runs(mod, args.quick):  # (not made for a --quick that writes none)
        runs = Path(args.runs_dir)
        try:
            runs.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise WriteError(f"--runs-dir {runs}: cannot make it ({e.strerror or e})") from None
        check_writable(runs, "--runs-dir")
    before, t0 = checkout(), time.time()  # the code that runs: a commit made during a long run is not it
    body = mod.run(args)
    seconds, after = time.time() - t0, checkout()
    text = body.rstrip() + "\n\n" + stamp(args.name, seconds, ["genzoo", *getattr(args, "argv", sys.argv[1:])],
                                          commit_label=provenance(before, after), started=t0,
                                          threads=run_threads(mod, args)) + "\n"
    print(text)
    if args.output and not args.quick:
        write_section(args.output, section, text)
        print(f"written to {args.output}", file=sys.stderr)
    return 0
