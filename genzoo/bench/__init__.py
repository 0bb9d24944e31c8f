"""Reproductions of published tables: ``genzoo bench NAME``, one small module per table.

Each module under ``genzoo/bench/`` has a ``DESCRIPTION`` and ``run(args) -> str`` returning its
result as Markdown; the harness adds what was run, where and when, prints it and writes it into
``BENCHMARKS.md`` between ``<!-- bench:NAME -->`` markers (replacing the previous result of the
same benchmark, keeping everything else).

>>> {"modes", "fgan-gaussian", "nice-mnist"} <= set(BENCHES)
True
"""

from __future__ import annotations

import importlib
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

from ..errors import ConfigError, did_you_mean
from ..io import atomic_write_bytes

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


def machine() -> str:
    """One line: CPU model and count, torch version and threads."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{os.cpu_count()} x {cpu}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"Python {platform.python_version()}")


def commit() -> str:
    """The git commit of the working tree (with '+dirty' when it has changes), or 'unknown'."""
    here = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (sha + ("+dirty" if dirty else "")) or "unknown"


def stamp(name: str, seconds: float, command: list[str] | None = None) -> str:
    """The provenance line under a benchmark's table."""
    from .. import __version__

    cmd = " ".join(command or ["genzoo", "bench", name])
    return (f"`{cmd}`: genzoo {__version__}, commit {commit()}, {time.strftime('%Y-%m-%d %H:%M')}, "
            f"{seconds:.0f} s on {machine()}.")


def read_markdown(path: str | os.PathLike) -> str:
    """The text of the Markdown file a benchmark writes into ("# Benchmarks" if there is none yet); a
    ConfigError if it is not UTF-8 text (checked before a run, so a long run does not end in that error)."""
    path = Path(path)
    if not path.exists():
        return "# Benchmarks\n"
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError) as e:
        raise ConfigError(f"--output {path}: cannot read it as a Markdown (UTF-8 text) file ({e.__class__.__name__})") from None


def write_section(path: str | os.PathLike, name: str, markdown: str) -> None:
    """Put ``markdown`` between this benchmark's markers in ``path``, replacing the old result."""
    path = Path(path)
    text = read_markdown(path)
    block = f"<!-- bench:{name} -->\n{markdown.strip()}\n<!-- /bench:{name} -->"
    pattern = re.compile(rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    atomic_write_bytes(path, text.encode())


def main(args) -> int:
    """``genzoo bench [NAME]``: list the benchmarks, or run one and write its table."""
    if args.name is None:
        for name in sorted(BENCHES):
            print(f"{name:<16} {get(name).DESCRIPTION}")
        return 0
    mod = get(args.name)
    t0 = time.time()
    body = mod.run(args)
    text = body.rstrip() + "\n\n" + stamp(args.name, time.time() - t0, ["genzoo", *sys.argv[1:]]) + "\n"
    print(text)
    if args.output and not args.quick:
        write_section(args.output, args.name, text)
        print(f"written to {args.output}", file=sys.stderr)
    return 0
