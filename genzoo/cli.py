"""The ``genzoo`` command line: models, data, train, sample, eval, bench.

Every problem a user can fix ends in one line, ``genzoo: error: ...``, and exit status 2 (3 when
training diverged); nothing already written is lost, and no output is written over a run's own files.
Anything unforeseen is one line too, with exit status 1 (``GENZOO_DEBUG=1`` shows the traceback).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import shlex
import shutil
import sys
import textwrap
import time
from pathlib import Path

from .errors import (CheckpointError, ConfigError, DataError, GenZooError, RunLocked, TrainingDiverged, WriteError,
                     did_you_mean)

MAX_PICTURE = 10_000  # the most images one `genzoo sample` picture holds
PAIRS = 6  # `genzoo interpolate`'s default rows between prior draws

EXAMPLES = """examples:
  genzoo train vae                                   # VAE on the embedded digits set
  genzoo sample runs/vae-digits-... -n 64 -o grid.png
  genzoo eval runs/vae-digits-...
  genzoo train --config configs/vae-mnist-binarized.toml --data-root ../shared/data/mnist
  genzoo train gmm --data ring --set n_components=8 --set data.std=0.05
  genzoo train gan --set pack=4                      # PacGAN on the ring of 8 Gaussians
  genzoo bench modes                                 # mode collapse table -> BENCHMARKS.md
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2
        sys.stderr.write(f"genzoo: error: {message} (see `{self.prog} --help`)\n")
        sys.exit(2)


def _seed(text: str) -> int:
    """An argparse type: a seed torch accepts, 0 <= seed < 2^63."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid seed '{text}': give a whole number") from None
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"seed {text} is out of range: give 0 <= seed < 2^63")
    return value


def _sigmas(text: str) -> list[float]:
    """An argparse type: comma-separated Parzen widths, each finite and > 0."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid widths '{text}': give numbers such as 0.01,0.03,0.1") from None
    if not values or not all(math.isfinite(v) and v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"invalid widths '{text}': give one or more finite numbers > 0")
    return values


#: the defaults of eval's and compare's settings that a metric may leave unused (the notes on idle ones name those
#: given otherwise; the report's advice to evaluate again leaves them out)
EVAL_DEFAULTS = {"n": None, "n_samples": 10_000, "iwae_k": 5000, "batch_size": 100, "parzen_sigmas": None,
                 "data_root": None}

#: --data-root of the commands that read a run's data
RUN_DATA_ROOT = "MNIST's folder, in place of the one recorded in the run (a folder or .npz run reads the path in its run.json)"


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="genzoo", description="Deep generative models: one interface, one trainer, one CLI.",
                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    from . import __version__
    from .recipes import TRAIN_KEYS

    p.add_argument("--version", action="version", version=f"genzoo {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    m = sub.add_parser("models", help="list the models, or one model's options")
    m.add_argument("name", nargs="?", help="show this model's options (the keys of --set) with defaults")

    d = sub.add_parser("data", help="list datasets, or download MNIST")
    d.add_argument("action", nargs="?", choices=["list", "download"], default="list",
                   help="list: the datasets and their options (default); download: fetch MNIST into --root")
    d.add_argument("name", nargs="?", help="the dataset to download (default: mnist)")
    d.add_argument("--root", help="folder to download into (default: $GENZOO_DATA)")

    t = sub.add_parser("train", help="train a model; writes a run directory")
    t.add_argument("model", nargs="?", help="model name (see `genzoo models`); optional with --config")
    t.add_argument("--data", help="dataset name, .npz file or image folder (default: the model's, e.g. digits)")
    t.add_argument("--data-root", help="folder of the dataset files (MNIST); default: $GENZOO_DATA")
    g = t.add_mutually_exclusive_group()
    g.add_argument("--steps", type=int, help="training steps (default: the model's, as `genzoo models MODEL` says)")
    g.add_argument("--epochs", type=float, help="training epochs")
    t.add_argument("--max-minutes", type=float, metavar="M",
                   help="a time budget: stop after M minutes of training, with a checkpoint (--resume goes on); "
                   "with --resume, the budget of this session and the later ones (0: none)")
    t.add_argument("--batch-size", type=int, help="examples per step (default: the model's, as `genzoo models MODEL` "
                   "says, else 128)")
    t.add_argument("--config", help="TOML recipe (see configs/)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a model, data or train option, e.g. --set latent_dim=8 (repeatable; a model's "
                        "options: genzoo models MODEL; a dataset's: genzoo data; the train keys: "
                        f"{', '.join(TRAIN_KEYS)})")
    t.add_argument("--run-dir", help="where the run is written (default: runs/MODEL-DATA-TIME, with -2, -3, ... where "
                                     "a run started in the same second has it)")
    t.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its newest checkpoint")
    t.add_argument("--seed", type=_seed, help="seed of the initial weights and the batches (default 0)")
    t.add_argument("--checkpoint-every", type=int, help="steps between checkpoints (default: the model's, else 1000)")
    t.add_argument("--sample-every", type=int, help="steps between sample grids (default: the model's, else 500; "
                   "0: none)")
    t.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, mps or auto (default: cuda if present)")
    t.add_argument("--precision", choices=["fp32", "bf16"],
                   help="fp32 (default) or bf16 autocast for the models that allow it (VAE, GANs, flows); "
                   "faster on CPUs with native bf16 (AVX512-BF16, AMX) and recent GPUs, many times slower elsewhere")
    t.add_argument("--channels-last", choices=["auto", "on", "off"],
                   help="NHWC layout for convolutions (default auto: on for convolutional models)")
    t.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the model's networks (default off: eager; --no-compile turns off a recipe's, "
                   "e.g. when resuming a compiled run)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")

    s = sub.add_parser("sample", help="draw samples from a trained run and save a picture")
    s.add_argument("run", help="run directory")
    s.add_argument("-n", type=int, default=64, help=f"number of samples, 1..{MAX_PICTURE:,} (default 64)")
    s.add_argument("-o", "--output", default=None, help="PNG to write (default RUN/samples.png)")
    s.add_argument("--seed", type=_seed, default=0, help="seed of the draws (default 0)")
    s.add_argument("--data-root", help=RUN_DATA_ROOT + "; read for the data's levels and value range only")

    e = sub.add_parser("eval", help="score a run: its likelihood, else Parzen (--metrics all: every metric it admits, FID...); "
                                       "writes RUN/eval.json")
    e.add_argument("run", help="run directory")
    e.add_argument("--no-write", action="store_true", help="print the results only, no RUN/eval.json (a read-only run)")
    c = sub.add_parser("compare", help="one table of the metrics of several runs (Markdown and CSV)")
    c.add_argument("runs", nargs="+", metavar="RUN", help="run directories")
    c.add_argument("-o", "--output", default=None,
                   help="write OUTPUT.md and OUTPUT.csv, replacing them; DIR/: DIR/compare.md and .csv (default: "
                   "compare, never over existing files)")
    c.add_argument("--no-write", action="store_true", help="print the table only; write no file, no run's eval.json")
    c.add_argument("--recompute", action="store_true", help="evaluate again even where RUN/eval.json has the metrics")
    for q, default in ((e, "auto"), (c, "all")):
        q.add_argument("--metrics", default=default,
                       help="comma-separated: nll, parzen, fid, kid, pr, dc, is, modes, error (ssvae's classification error); "
                            "or auto (likelihoods, else Parzen; with modes and error where admitted) or all "
                            f"(everything the run admits); default {default}")
        q.add_argument("--split", default="test", choices=["train", "valid", "test"],
                       help="the split scored (default test)")
        q.add_argument("--n-samples", type=int, default=EVAL_DEFAULTS["n_samples"],
                       help="samples for Parzen, FID and the rest (default 10000)")
        q.add_argument("--iwae-k", type=int, default=EVAL_DEFAULTS["iwae_k"],
                       help="importance samples for the IWAE bound (default 5000; 0: the ELBO alone)")
        q.add_argument("-n", type=int, default=None,
                       help="evaluate on N examples of the split only: the first N (a random N for FID and the other feature metrics)")
        q.add_argument("--batch-size", type=int, default=EVAL_DEFAULTS["batch_size"],
                       help="examples per batch for the exact log_prob and the bounds (default 100; the bounds' draws "
                            "follow the batches, so another size gives another Monte Carlo estimate, within its standard "
                            "error)")
        q.add_argument("--parzen-sigmas", type=_sigmas, default=None, metavar="S1,S2,...",
                       help="the Parzen window widths to choose from (default: Goodfellow et al.'s 10 from 0.1 to 1, made for "
                            "images in [0, 1]; e.g. 0.002,0.005,0.01,0.02 for the ring of std 0.01)")
        q.add_argument("--data-root", help=RUN_DATA_ROOT)
        q.add_argument("--seed", type=_seed, default=0,
                       help="seed of the samples, the bounds' draws, the test set's binarization or dequantization "
                            "noise (so a likelihood of binarized or dequantized data, an exact NLL too, moves with it, "
                            "within its standard error), KID's subsets and the random -n real images of the feature "
                            "metrics (default 0)")
        q.add_argument("--no-progress", action="store_true", help="no progress bar")
    i = sub.add_parser("interpolate", help="latent interpolation strips or vector arithmetic from a trained run")
    i.add_argument("run", help="run directory")
    i.add_argument("--pairs", type=int, help=f"rows of interpolations between prior draws (default {PAIRS})")
    i.add_argument("--between", nargs=2, type=int, action="append", metavar=("I", "J"), default=[],
                   help="a row between test images I and J, their latents inferred (repeatable)")
    i.add_argument("--arithmetic", metavar="A-B+C",
                   help="vector arithmetic on test-image indices, each concept averaged: e.g. 1,2,3-4,5,6+7,8,9")
    i.add_argument("--steps", type=int, help="images per row, ends included (default 10)")
    i.add_argument("--kind", choices=["slerp", "lerp"], help="path (default slerp)")
    i.add_argument("-o", "--output", help="PNG to write (default RUN/interpolation.png or RUN/arithmetic.png)")
    i.add_argument("--data-root", help=RUN_DATA_ROOT)
    i.add_argument("--seed", type=_seed, default=0, help="seed of the prior draws and latent inference (default 0)")
    n_ = sub.add_parser("inpaint", help="fill missing pixels by latent optimisation (Yeh et al. 2016) or by the posterior mean")
    n_.add_argument("run", help="run directory (a GAN, GMMN, VAE or flow trained on images)")
    src = n_.add_mutually_exclusive_group()
    src.add_argument("--image", action="append", default=[], help="an image file to inpaint (repeatable); resized (bilinear, aspect not kept) and converted to the model's size and channels, with a note")
    src.add_argument("--test-index", type=int, nargs="+", metavar="I", help="test-set images by index (default: 0-7)")
    n_.add_argument("--mask", default="center", help="center, left, random:P (P missing) or a PNG (white = known); default center")
    n_.add_argument("--method", default="auto", choices=["auto", "search", "posterior"],
                    help="search: Adam on z (Yeh et al.); posterior: the model's posterior mean of the holes from its "
                         "own draws; auto (default): posterior for flows, search for the others (by measurement)")
    n_.add_argument("--blend", choices=["poisson", "mask"],
                    help="how the fill meets the known pixels (default poisson for search, mask for posterior)")
    n_.add_argument("--samples", type=int, help="posterior: draws of the model, 400..1,000,000 (default 10,000)")
    n_.add_argument("--sigma", type=float, help="posterior: noise std on the known pixels (default: chosen on the draws)")
    n_.add_argument("--steps", type=int, help="search: Adam steps on z (default 300)")
    n_.add_argument("--restarts", type=int, help="search: random starts; the lowest loss wins (default 8)")
    n_.add_argument("--lam", type=float, help="search: weight of the perceptual / prior loss (default 0.003)")
    n_.add_argument("--precision", choices=["fp32", "bf16"],
                    help="search: bf16 autocast (VAE, GAN, flows; faster on CPUs with native bf16, many times "
                    "slower on others; default fp32)")
    n_.add_argument("-o", "--output", help="PNG panel to write (default RUN/inpaint.png)")
    n_.add_argument("--data-root", help=RUN_DATA_ROOT)
    n_.add_argument("--seed", type=_seed, default=0, help="seed of the masks, starts and draws (default 0)")
    n_.add_argument("--no-progress", action="store_true", help="no progress bar")
    r = sub.add_parser("report", help="one self-contained report.html (samples, evolution GIF, curves, metrics)")
    r.add_argument("run", help="run directory")
    r.add_argument("-o", "--output", help="HTML file to write, that one file alone (default RUN/report.html, with "
                   "RUN/evolution.gif beside it)")
    b = sub.add_parser("bench", help="reproduce a published table; writes it to BENCHMARKS.md", add_help=False,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("-h", "--help", action=_BenchHelp, help="show this help message and exit (after a benchmark's "
                   "name: what it measures and which flags it reads)")
    b.add_argument("name", nargs="?", help="the benchmark (none: list them)")
    b.add_argument("--quick", action="store_true",
                   help="a tiny version to check it runs: writes no table (`genzoo bench` says which keep scratch "
                   "runs in --runs-dir)")
    b.add_argument("--seeds", type=int, help="seeds per configuration (default: the benchmark's)")
    b.add_argument("--steps", type=int, help="training steps per run (inpaint-mnist: Adam steps of each latent "
                   "search; default: the benchmark's)")
    b.add_argument("--minutes", type=float, help="CPU budget per training run, for the budgeted benchmarks (nice-mnist, realnvp-mnist): "
                   "it picks their number of steps, so it is not given with --steps")
    b.add_argument("--data-root", help="folder of the MNIST files (default: $GENZOO_DATA, else shared/data/mnist beside "
                   "the genzoo checkout)")
    b.add_argument("--jobs", type=int, help="runs in parallel (default: CPU count, at most 4)")
    b.add_argument("--device", help="where to time, for the benchmarks that read it (speed): cpu (default), cuda, "
                   "cuda:N or auto")
    b.add_argument("--runs-dir", help="where the benchmark's runs and pictures go (default runs/bench; not for the "
                   "benchmarks that write none: `genzoo bench` says which)")
    b.add_argument("--fresh", action="store_true", help="train every run, reusing none that an earlier invocation "
                   "finished with the same settings (the default reuses those: `genzoo bench` says which benchmarks do)")
    b.add_argument("--output", default="BENCHMARKS.md", help="Markdown file to write the table into (default BENCHMARKS.md)")
    b.add_argument("--no-write", action="store_true", help="print the table only (whatever --output says)")
    b.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.commands = sub.choices  # name -> subcommand parser, for the "did you mean" of a mistyped flag
    return p


class _BenchHelp(argparse._HelpAction):
    """``genzoo bench NAME --help``: the help of ``bench`` with what NAME measures and which flags it reads."""

    def __call__(self, parser, namespace, values, option_string=None):
        from .bench import BENCHES, flags_help, get

        name = getattr(namespace, "name", None)
        if name is not None and name not in BENCHES:  # a typo: said, not the help of no benchmark with exit 0
            try:
                get(name)
            except GenZooError as e:
                parser.error(str(e))
        if name in BENCHES:
            parser.epilog = "\n".join(textwrap.fill(t, 79, subsequent_indent="  ")
                                       for t in (f"{name}: {get(name).DESCRIPTION}", flags_help(name)))
        super().__call__(parser, namespace, values, option_string)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line parsed; an unknown flag is a one-line error naming the closest flag of its command.

    >>> parse(["train", "vae", "--stpes", "5"])
    Traceback (most recent call last):
    SystemExit: 2
    """
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "compare" and extra and not any(w.startswith("-") for w in extra):
        args.runs += extra  # runs named after an option: `compare runs/a --metrics nll runs/b`
        extra = []
    if extra:
        command = parser.commands[args.command]
        flags = [s for action in command._actions for s in action.option_strings]
        hints = (did_you_mean(w.split("=", 1)[0], flags) for w in extra if w.startswith("-"))
        command.error(f"unrecognized arguments: {' '.join(extra)}{next((h for h in hints if h), '')}")
    return args


def check_output(path: str, flag: str = "-o", suffix: str | None = None) -> Path:
    """See :func:`genzoo.io.check_output` (imported when used: it needs torch)."""
    from .io import check_output as check

    return check(path, flag, suffix)


# -- commands -----------------------------------------------------------------------------------
def cmd_models(args) -> int:
    import typing

    from .registry import get, list_models, options

    if args.name is None:
        for name, desc in list_models().items():
            print(f"{name:<10} {desc}")
        return 0
    cls = get(args.name)
    hints = typing.get_type_hints(cls.__init__)
    opts = options(args.name)
    print(f"{args.name}: {cls.description}\noptions (--set KEY=VALUE):")
    key_w = max(map(len, opts), default=0)
    value_w = max((len(repr(p.default)) for p in opts.values()), default=0)
    for key, p in opts.items():
        hint = hints.get(key, "")
        kind = hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")
        note = f"  ({cls.DEFAULT_NOTES[key]})" if key in getattr(cls, "DEFAULT_NOTES", {}) else ""
        print(f"  {key:<{key_w}} = {p.default!r:<{value_w}}  {kind}{note}")
    defaults = cls.defaults({k: p.default for k, p in opts.items()})  # what `genzoo train NAME` uses unless told
    data = dict(defaults.get("data", {}))
    name = data.pop("name", "digits")
    given = ", ".join(f"{k}={v}" for k, v in data.items())
    train = ", ".join(f"{k}={v}" for k, v in defaults.get("train", {}).items())
    print(f"`genzoo train {args.name}` trains on {name}{f' ({given})' if given else ''} with {train} unless told")
    return 0


def cmd_data(args) -> int:
    from .data import download_mnist, list_datasets

    if args.action == "list":
        from .data import COMMON_OPTIONS, dataset_options

        if args.name is not None or args.root:
            raise ConfigError("`genzoo data list` takes no dataset name or --root (did you mean `genzoo data download NAME`?)")
        for name, desc in list_datasets().items():
            opts = ", ".join(f"{k}={v}" for k, v in dataset_options(name).items())
            print(f"{name:<14} {desc}" + (f"\n{'':<14} options (--set data.KEY=VALUE): {opts}" if opts else ""))
        print("or a .npz/.npy file (array x, optional labels y) or a folder of PNG/JPEG/BMP/GIF/TIFF/WebP/Netpbm images "
              "(one class per sub-folder, if any; options channels, mode): --data PATH (or npz:PATH, folder:PATH)")
        print("every dataset also takes (--set data.KEY=VALUE): "
              + "; ".join(f"{k}: {what}" for k, what in COMMON_OPTIONS.items()))
        return 0
    if args.name not in (None, "mnist"):
        raise DataError(f"only mnist can be downloaded, not '{args.name}'")
    root = args.root or os.environ.get("GENZOO_DATA")
    if not root:
        raise DataError("give a folder to download into: --root DIR (or set GENZOO_DATA)")
    print(f"MNIST is in {download_mnist(root)}")
    return 0


def _device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda", "mps") and not (name.startswith("cuda:") and name[5:].isdigit()):
        raise ConfigError(f"unknown device '{name}': use cpu, cuda, cuda:N (N = 0, 1, ...), mps or auto")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {name} asked for, but torch sees no CUDA device")
    if name.startswith("cuda:") and int(name[5:]) >= torch.cuda.device_count():
        raise ConfigError(f"--device {name} asked for, but torch sees {torch.cuda.device_count()} CUDA device(s): "
                          f"cuda:0..cuda:{torch.cuda.device_count() - 1}")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("--device mps asked for, but torch sees no Apple GPU (MPS)")
    return torch.device(name)


def _train_defaults() -> dict:
    """fit()'s own defaults for the recipe's [train] keys, with sample grids on for CLI runs."""
    import inspect

    from .recipes import TRAIN_KEYS
    from .train import fit

    params = inspect.signature(fit).parameters
    out = {k: params[k].default for k in TRAIN_KEYS if k in params and params[k].default is not None}
    out["sample_every"] = 500
    return out


def _speed_flags(args, train: dict) -> None:
    """--precision, --channels-last and --compile into the recipe's [train] table."""
    if args.precision is not None:
        train["precision"] = args.precision
    if args.compile is not None:
        train["compile"] = args.compile
    if args.channels_last is not None:
        train.pop("channels_last", None)
        if args.channels_last != "auto":
            train["channels_last"] = args.channels_last == "on"


def _budget_flag(args, train: dict) -> None:
    """--max-minutes into the recipe's [train] table (0: no budget, so a resumed session can drop the run's)."""
    if args.max_minutes == 0:
        train.pop("max_minutes", None)
    elif args.max_minutes is not None:
        train["max_minutes"] = args.max_minutes


def _resolve(args) -> tuple[dict, dict, dict]:
    """(recipe, model options, the model's default data transform): the model's defaults < the
    recipe < the flags < --set. The transform applies only to discrete data (see cmd_train)."""
    from .recipes import apply_sets, load_recipe, new_recipe
    from .registry import coerce, get

    recipe = load_recipe(args.config) if args.config else new_recipe()
    name = args.model or recipe["model"].get("name")
    if not name:
        raise ConfigError("name a model: `genzoo train MODEL` (see `genzoo models`)")
    if args.model and recipe["model"].get("name") not in (None, args.model):
        raise ConfigError(f"the recipe {args.config} is for model '{recipe['model']['name']}', not '{args.model}'")
    recipe["model"]["name"] = name
    cls = get(name)
    if args.data is not None and not args.data.strip():
        raise ConfigError("--data needs a dataset name, .npz file or image folder (see `genzoo data`)")
    if args.data:
        _replace_recipe_data(recipe["data"], args.data, args.config)
    if args.data_root:
        recipe["data"]["root"] = str(Path(args.data_root).expanduser().resolve())
    for key in ("steps", "epochs", "batch_size", "seed", "checkpoint_every", "sample_every"):
        if getattr(args, key) is not None:
            recipe["train"][key] = getattr(args, key)
    _speed_flags(args, recipe["train"])
    _budget_flag(args, recipe["train"])
    if args.steps is not None:
        recipe["train"].pop("epochs", None)
    if args.epochs is not None:
        recipe["train"].pop("steps", None)
    named = [v.strip() for k, _, v in (s.partition("=") for s in args.set if "=" in s) if k.strip() == "data.name"]
    if named and named[-1]:  # the last one wins, as in apply_sets (which refuses an empty one)
        _replace_recipe_data(recipe["data"], named[-1], args.config, given=f"--set data.name={named[-1]}")
    recipe = apply_sets(recipe, args.set)  # (after: a data option --set gives beside the name is the user's)
    args.default_batch = "batch_size" not in recipe["train"]  # for train's word on a batch the processes cannot split
    model_kw = {k: v for k, v in recipe["model"].items() if k != "name"}
    defaults = cls.defaults(model_kw)
    recipe["data"].setdefault("name", defaults["data"]["name"])
    # the model's default transform, key by key: binarize=false leaves a default dequantization (later ones win),
    # and only a transform the user turned on replaces the other
    given = {k: coerce(recipe["data"][k], bool, f"data.{k}") for k in ("binarize", "dequantize") if k in recipe["data"]}
    transform = {k: v for k, v in defaults["data"].items()
                 if k in ("binarize", "dequantize") and k not in given and not any(given.values())}
    train = _train_defaults()
    model_train = dict(defaults["train"])
    if {"steps", "epochs"} & recipe["train"].keys():  # the user's length replaces the model's
        model_train.pop("steps", None)
        model_train.pop("epochs", None)
    train.update(model_train)
    train.update(recipe["train"])
    recipe["train"] = train
    return recipe, model_kw, transform


def _replace_recipe_data(data: dict, name: str, recipe: str | None, given: str | None = None) -> None:
    """``--data NAME`` (or ``--set data.name=NAME``, ``given``) in place of the recipe's dataset: the recipe's
    options of its own dataset that the new one does not take are left out, with a note
    (``configs/gmm-ring.toml --data moons``: the ring's std)."""
    from .data import COMMON_OPTIONS, dataset_options

    old = data.get("name")
    data["name"] = name
    if old in (None, name):
        return
    try:
        takes = dataset_options(name)
    except GenZooError:
        return  # a name that is no dataset: refused, in its own words, where the data is loaded
    left = {k: data.pop(k) for k in list(data) if k != "name" and k not in COMMON_OPTIONS and k not in takes}
    if left and not _other_rank():  # (under torchrun: said once)
        print(f"genzoo: note: {given or '--data ' + name} replaces the dataset {old} of the recipe {recipe}, and its "
              f"options of {old} are left out: {', '.join(f'{k}={v}' for k, v in left.items())}", file=sys.stderr)


def _other_rank() -> bool:
    """Whether this process is a rank above 0 of a run on several processes, by torchrun's variables (read before
    the process group is joined, which checks them): its notes and warnings are rank 0's too, said once there."""
    from .train import distributed

    try:
        several = distributed.launched_by_torchrun()
    except ConfigError:  # refused where train joins the group
        several = False
    try:
        rank = int(os.environ.get("RANK", "") or 0)  # RANK=00 is rank 0, as init reads it
    except ValueError:  # refused where train joins the group
        rank = 0
    return several and rank != 0


def _typed_train(train: dict) -> dict:
    """The recipe's [train] table with its numbers and switches typed (a TOML string or a --set value such as
    ``epochs=0.05`` becomes 0.05), so run.json records numbers and fit() gets them; a bad value is a ConfigError."""
    from .registry import coerce

    out = dict(train)
    for key in ("steps", "batch_size", "seed", "checkpoint_every", "sample_every", "log_every", "valid_every", "keep",
                "warmup_steps"):
        if out.get(key) is not None:
            out[key] = coerce(out[key], int, f"train.{key}")
    for key in ("epochs", "max_minutes"):
        if out.get(key) is not None:
            out[key] = coerce(out[key], float, f"train.{key}")
            if not math.isfinite(out[key]):  # (a positive number, yet none a run can reach)
                raise ConfigError(f"{key} must be a finite positive number, got {out[key]}")
    for key in ("compile", "keep_best"):
        if out.get(key) is not None:
            out[key] = coerce(out[key], bool, f"train.{key}")
    if out.get("channels_last") is not None:
        auto = str(out["channels_last"]).lower() in ("none", "auto")
        out["channels_last"] = None if auto else coerce(out["channels_last"], bool, "train.channels_last")
    for key in ("precision", "lr_schedule"):
        if out.get(key) is not None:
            out[key] = str(out[key])
    return out


class Terminated(KeyboardInterrupt):
    """SIGTERM (``timeout``, Slurm, ``docker stop``, systemd) during training: handled as Ctrl-C is."""


def _terminate(signum, frame):
    raise Terminated()


def _terminate_after_step(signum, frame):
    """``genzoo train``'s SIGTERM: while fit runs its steps, the first one asks it to stop after the current step
    with a checkpoint of it (a scheduler's grace period is for this; raised mid-step, it lost the steps since the
    last checkpoint, and a run before its first); otherwise, or a second time, it stops at once as Ctrl-C does
    (under torchrun a second one while the stop is pending is ignored: each worker gets the scheduler's and the
    agent's copy)."""
    loop = sys.modules.get("genzoo.train.loop")  # (not imported in a signal handler)
    if loop is None:
        raise Terminated()
    # under torchrun a scheduler's SIGTERM to every process (Slurm, systemd) comes twice, from it and forwarded by
    # torchrun's agent: the second is no "stop at once" there (the agent kills what is left 30 s on anyway)
    if not loop.request_stop() and not (loop.stop_pending() and "TORCHELASTIC_RUN_ID" in os.environ):
        raise Terminated()


class _ReaderMayGo:
    """``stream`` (stderr, stdout) for a training run: once its reader has gone (``genzoo train ... | head -1``, a
    log reader that quit), its file descriptor is pointed at /dev/null and training goes on. The failed write had
    cut training off, removed the new run as a failed one and exited 0 (the ``genzoo data | head`` case)."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._to_devnull()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._to_devnull()

    def _to_devnull(self) -> None:
        """What is still buffered, and what comes, goes to /dev/null (also at exit, whose flush would fail)."""
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, self._stream.fileno())
            os.close(null)
        except (OSError, ValueError, AttributeError):  # a stream without a descriptor (captured): nothing to repoint
            pass

    def __getattr__(self, name):
        return getattr(self._stream, name)


@contextlib.contextmanager
def sigterm_as_ctrl_c(after_step: bool = False):
    """Within the block, SIGTERM (``timeout``, Slurm, ``docker stop``) raises :class:`Terminated`, so it ends as
    Ctrl-C does: one line, exit 143, checkpoints kept; the previous handler comes back after. With ``after_step``
    (``train``), a first SIGTERM while :func:`~genzoo.fit` runs its steps stops it after the current one instead
    (:func:`~genzoo.train.loop.request_stop`); not for ``bench``, whose code goes on after ``fit`` returns. Only
    the main thread can set a handler: elsewhere, nothing changes."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminate_after_step if after_step else _terminate)
    try:
        yield
    finally:
        if previous is not None:  # None: a handler set outside Python, which cannot be restored
            signal.signal(signal.SIGTERM, previous)


#: what every command imports first, whole (:func:`_import_whole`): torch, numpy, and what train joins processes with
HEAVY_IMPORTS = ("numpy", "torch", "genzoo.train.distributed")
#: what a dataset's loader imports beyond :data:`HEAVY_IMPORTS` (scikit-learn's digits: scipy, sklearn), imported
#: whole where a command reads that dataset
DATA_IMPORTS = {"digits": ("scipy", "sklearn.datasets")}


def _import_whole(*modules: str) -> None:
    """Import ``modules`` (default :data:`HEAVY_IMPORTS`) with Ctrl-C and SIGTERM held off until it is done (they act
    then): one that cut the import short left torch half loaded, and the way out, importing it again, died of a
    segfault or an abort instead of exiting 130 or 143; one inside scikit-learn's import (``eval`` of a digits run)
    was lost in numpy's half-made module, and the command died later of 'a bug in genzoo' (a RecursionError)."""
    import importlib
    import signal
    import threading

    modules = modules or HEAVY_IMPORTS
    if all(m in sys.modules for m in modules):
        return
    main_thread = threading.current_thread() is threading.main_thread()
    held = {signal.SIGINT, signal.SIGTERM} if main_thread and hasattr(signal, "pthread_sigmask") else set()
    if held:
        signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        for name in modules:
            importlib.import_module(name)
    finally:
        if held:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, held)


def _import_for_data(name) -> None:
    """:func:`_import_whole` of what the loader of the dataset ``name`` imports (:data:`DATA_IMPORTS`)."""
    if isinstance(name, str) and name in DATA_IMPORTS:
        _import_whole(*DATA_IMPORTS[name])


def cmd_train(args) -> int:
    with sigterm_as_ctrl_c(after_step=True):
        _import_whole()
        streams = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = _ReaderMayGo(sys.stdout), _ReaderMayGo(sys.stderr)
        try:
            with contextlib.ExitStack() as hold:  # the run's lock (rank 0) from before run.json, and the warnings
                # filter of ranks > 0, to the end of training
                return _train(args, hold)
        finally:
            sys.stdout, sys.stderr = streams
            from .train import distributed

            distributed.close()  # on every way out, errors and Ctrl-C included


def _train(args, hold: contextlib.ExitStack) -> int:
    import warnings

    import torch

    from .data import load_spec, typed_spec

    from . import __version__
    from .base import Density, LatentVariable
    from .errors import GenZooWarning
    from .io import (atomic_write_json, blocked_by_file, holds_checkpoint, latest_checkpoint, locked_elsewhere,
                     read_json, refuse_a_recipe_no_checkpoint_fits, run_lock)
    from .registry import build
    from .train import distributed, fit
    from .train.loop import RunFolderGone

    if _other_rank():  # under torchrun a warning is every rank's (bf16 emulated, a damaged checkpoint): rank 0 says it
        hold.enter_context(warnings.catch_warnings())
        warnings.simplefilter("ignore", GenZooWarning)
    if args.run_dir is not None and not args.run_dir.strip():
        raise ConfigError("--run-dir needs a folder name")
    run_dir = Path(args.run_dir).expanduser() if args.run_dir else None  # --run-dir=~/x: the shell leaves ~ there
    if args.resume:
        if run_dir is None:
            raise ConfigError("--resume needs --run-dir DIR (the run to continue)")
        if not (run_dir / "run.json").is_file():
            raise CheckpointError(f"nothing to resume: {run_dir} has no run.json")
        if not holds_checkpoint(run_dir):  # (a save cut short left .old-step-N alone: fit puts it back, goes on)
            if (run_dir / "best.json").is_file():  # RUN/best: kept weights with run.json's copy, not a run
                raise CheckpointError(f"{run_dir} holds the best weights of the run in {run_dir.parent}, not a run of "
                                      f"its own: resume that (--run-dir {_quoted(run_dir.parent)})")
            if locked_elsewhere(run_dir):
                raise RunLocked(f"another process is training the run in {run_dir}: wait for it to end")
            # stopped before its first checkpoint (kill -9, the OOM killer, a preempted job): started again from
            # run.json's recipe, as fit(resume=True) does; what it wrote before is replaced, other files left alone
            from .io import run_files_in
            from .train.callbacks import nothing_to_resume
            from .train.loop import BEFORE_FIRST_CHECKPOINT

            if why := nothing_to_resume(run_dir):  # diverged: every checkpoint it wrote was set aside
                raise CheckpointError(f"{why}; its files are left as they are")
            if later := [f for f in run_files_in(run_dir) if f not in ("run.json", *BEFORE_FIRST_CHECKPOINT)]:
                raise CheckpointError(f"nothing to resume: {run_dir} has no checkpoint (checkpoints/step-*), and holds "
                                      f"{', '.join(later)}, which a run does not write before its first; its files are "
                                      "left as they are")
            if not _other_rank():  # (under torchrun: said once)
                print(f"genzoo: note: {run_dir} stopped before its first checkpoint: starting it again from its "
                      "run.json", file=sys.stderr)
        fixed = [f for f, v in (("MODEL", args.model), ("--config", args.config), ("--data", args.data),
                                ("--set", args.set), ("--seed", args.seed), ("--batch-size", args.batch_size))
                 if v is not None and v != []]
        if fixed:
            raise ConfigError(f"--resume continues the run as recorded in its run.json: drop {', '.join(fixed)} "
                              "(--steps, --epochs, --max-minutes, --data-root, --checkpoint-every, --sample-every, "
                              "the speed options, --device and --no-progress may change)")
        recipe, transform = read_recipe(run_dir, train=True), {}  # (an unknown [train] key was dropped silently)
        lacks = [k for k in ("batch_size", "seed") if recipe["train"].get(k) is None]
        if lacks or (recipe["train"].get("steps") is None and recipe["train"].get("epochs") is None):
            raise CheckpointError(f"{run_dir / 'run.json'} does not record the run's {', '.join(lacks or ['steps or epochs'])}"
                                  " (in recipe.train): it was edited, or not written by `genzoo train`")
        # its values checked before the flags' are put in, so a bad one is named as run.json's (those a flag
        # replaces aside: the flag's value is checked, and recorded, in their place)
        given = {k for k in ("steps", "epochs", "checkpoint_every", "sample_every", "max_minutes")
                 if getattr(args, k) is not None}
        given |= {"steps", "epochs"} if given & {"steps", "epochs"} else set()
        try:
            _check_train(_typed_train({k: v for k, v in recipe["train"].items() if k not in given}))
        except ConfigError as e:
            raise CheckpointError(f"{run_dir / 'run.json'}: {e} (in recipe.train: it was edited, or not written by "
                                  "`genzoo train`)") from None
        model_kw = {k: v for k, v in recipe["model"].items() if k != "name"}
        if args.steps is not None:
            recipe["train"]["steps"], recipe["train"]["epochs"] = args.steps, None
        if args.epochs is not None:
            recipe["train"]["epochs"], recipe["train"]["steps"] = args.epochs, None
        # what changes neither the model nor its data may change on resume: where the data files are now,
        # how often to write, the speed options, and the time budget (a session's, as its length is)
        if args.data_root is not None and _reads_root(recipe["data"].get("name"), "--data-root"):
            recipe["data"]["root"] = str(Path(args.data_root).expanduser().resolve())
        for key in ("checkpoint_every", "sample_every"):
            if getattr(args, key) is not None:
                recipe["train"][key] = getattr(args, key)
        _speed_flags(args, recipe["train"])  # fit() refuses a length the run has already reached
        _budget_flag(args, recipe["train"])
    else:
        recipe, model_kw, transform = _resolve(args)
        if recipe["data"].get("root") is not None and not _reads_root(recipe["data"]["name"], "--data-root" if
                                                                       args.data_root is not None else "data.root"):
            del recipe["data"]["root"]  # not recorded in run.json as if it were read
    train = recipe["train"] = _typed_train(recipe["train"])
    _check_train(train)
    # a run folder in the image folder it trains on: its pictures would be read as images (a class folder beside
    # loose images, or a new class), so eval, sample and --resume would refuse the data, or score others
    _check_outside_images(run_dir, recipe["data"].get("name"), args.resume)
    seed = train.get("seed") or 0
    device = _device(args.device)
    rank, world_size = distributed.init(device)  # under torchrun: join the process group
    if world_size > 1 and device.type == "cuda":
        device = torch.device("cuda", torch.cuda.current_device())
    main_rank = rank == 0

    _import_for_data(recipe["data"].get("name"))
    data = load_spec(recipe["data"], "train")
    if transform and data.levels is not None:  # the model's default transform of discrete data: the same examples
        recipe["data"].update(transform)
        data = dataclasses.replace(data, **transform)  # (a folder's images decoded once, not again)
    valid = load_spec(recipe["data"], "valid")
    valid = valid if len(valid) else None  # a tiny user dataset may have no validation split
    if train.get("keep_best") and valid is None:
        raise ConfigError(f"keep_best keeps the weights of the best validation loss, and {data.name} has no "
                          "validation split")
    if "data_shape" in model_kw:  # a run.json edited so
        raise ConfigError("data_shape is not a model option: the shape comes from the data")
    if args.resume:  # run.json may ask for any size: compared with config.json and the checkpoints before it is built
        refuse_a_recipe_no_checkpoint_fits(run_dir, recipe["model"]["name"], {"data_shape": data.shape, **model_kw})
    torch.manual_seed(seed)
    model = build(recipe["model"]["name"], data_shape=data.shape, **model_kw).to(device)
    batch = train.get("batch_size")
    if (world_size > 1 and getattr(args, "default_batch", False) and not model.full_batch and batch
            and batch <= len(data) and batch % world_size):  # (fit refuses it too, without knowing it was no one's)
        raise ConfigError(f"batch_size {batch} (the default: none was given) must be a multiple of the {world_size} "
                          f"processes: give --batch-size, a multiple of {world_size}")
    if valid is not None and len(valid) < model.min_loss_examples:  # (a folder of 10 images: 1 to validate on)
        if train.get("keep_best"):
            raise ConfigError(f"keep_best keeps the weights of the best validation loss, and the {len(valid)} "
                              f"validation example(s) of {data.name} are fewer than a {model.name}'s loss takes "
                              f"({model.min_loss_examples})")
        if main_rank:
            print(f"genzoo: note: the validation split of {data.name} holds {len(valid)} example"
                  f"{'s' * (len(valid) != 1)}, fewer than a {model.name}'s loss takes ({model.min_loss_examples}): "
                  "training without validation", file=sys.stderr)
        valid = None
    # a run an older genzoo made with keep_best, which its family no longer takes: it goes on without (--resume
    # takes no --set to turn it off)
    dropped_best = bool(args.resume and train.get("keep_best") and not model.best_by_valid_loss)
    if dropped_best:
        train["keep_best"] = False
    if not args.resume:  # run.json records the options typed, as the model and the data loader read them
        recipe["model"] = {"name": recipe["model"]["name"], **{k: model.config[k] for k in model_kw}}
        recipe["data"] = typed_spec(recipe["data"])
        if str(recipe["data"]["name"]).startswith("folder:") and not {"channels", "mode"} & recipe["data"].keys():
            recipe["data"]["channels"] = data.shape[0]  # as chosen now: eval and --resume read the images alike

    default_dir = run_dir is None  # runs/MODEL-DATA-TIME, claimed below (rank 0), -2, -3, ... when taken
    if default_dir:
        stamp = distributed.rank0_value(time.strftime("%Y%m%d-%H%M%S"))  # one folder, whatever each clock says
        run_dir = Path("runs") / f"{model.name}-{Path(str(data.name)).stem}-{stamp}"
    if blocked_by_file(run_dir):
        if default_dir:  # (no --run-dir was given: not named as if it were)
            file = next(p for p in reversed([run_dir, *run_dir.parents]) if p.exists() and not p.is_dir())
            raise ConfigError(f"the default run folder {run_dir}: {file} is a file, not a folder; give --run-dir, or "
                              "run from another folder")
        if run_dir.exists():
            raise ConfigError(f"--run-dir {run_dir} is a file, not a folder")
        raise ConfigError(f"--run-dir {run_dir}: a part of that path is a file, not a folder")
    if not args.resume and not default_dir:  # rank 0 looks, before it writes run.json; every process stops with it
        problem = None
        if main_rank:
            try:
                _check_new_run(run_dir)
            except GenZooError as e:
                problem = e
        if (problem := distributed.rank0_value(problem)) is not None:
            raise problem
    steps = train.get("steps")
    epochs = train.get("epochs") if steps is None else None
    if steps is None and epochs is None:
        raise ConfigError("give --steps N or --epochs N")
    # what a run that never starts must leave (None: the folder is new, and removed)
    before = set(run_dir.iterdir()) if run_dir.is_dir() and not default_dir else None
    if world_size > 1:
        torch.distributed.barrier()  # every rank has checked the folder before rank 0 writes into it
    problem = None  # rank 0's failure here (the folder, the lock, run.json) stops every rank with its own line,
    if main_rank:   # not the others with a lost peer in their next collective
        try:
            try:
                if default_dir:
                    run_dir = _claim_new_folder(run_dir)
                else:
                    run_dir.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise WriteError(f"cannot create the run folder {run_dir}: {e.strerror or e}") from None
            # the lock before anything is written: a second `train` into this folder is refused (RunLocked) before
            # it writes or removes anything of the run that holds it
            hold.enter_context(run_lock(run_dir))
            if not args.resume:
                _check_new_run(run_dir)  # again, under the lock: another process may have started a run here just now
                # a labelled folder's class names in label order (top level: the data recipe holds dataset options)
                named = {"classes": list(data.classes)} if data.classes else {}
                try:
                    atomic_write_json(run_dir / "run.json", {"genzoo_version": __version__, "recipe": recipe, **named,
                                                             "command": ["genzoo", *args.argv], "world_size": world_size,
                                                             "device": device.type,
                                                             "created": time.strftime("%Y-%m-%d %H:%M:%S")})
                except WriteError:  # a full disk: the folder made here (or what was made in the one given) goes again
                    _remove_new(run_dir, before)
                    raise
        except GenZooError as e:
            problem = e
    problem, claimed = distributed.rank0_value((problem, str(run_dir)))  # on every rank: rank 0's failure, or the
    if default_dir:                                                        # folder it claimed
        run_dir = Path(claimed)
    if problem is not None:
        raise problem
    # eval's name for the space: a Bernoulli decoder's pixels off {0, 1} are not 'discrete-as-real' there
    space = data.space
    if getattr(model, "bernoulli_pixels", False) and space != "binarized":  # 0/1 values stored as they are: binarized
        from .eval.likelihood import bernoulli_space

        space = bernoulli_space(data.x)
    # a labelled folder's labels by class folder: the mapping is seen, not guessed
    classes = f"; {len(data.classes)} classes: {_class_names(data.classes)}" if data.classes and data.y is not None else ""
    announce = _Announce(f"genzoo: training {model.name} on {data.name} ({space}, {len(data)} example{'s' * (len(data) != 1)}, shape "
                         f"{data.shape}{classes}) -> {run_dir}" + (f" on {world_size} processes" if world_size > 1 else ""))
    if args.resume and main_rank:  # a new length or checkpoint interval is the run's from now on: a later
        record = read_json(run_dir / "run.json", "run file")  # plain --resume continues with it
        before = json.dumps(record)
        last_device = (record.get("resumed") or [record])[-1].get("device", device.type)  # (none: an older run)
        if (record.get("recipe") != json.loads(json.dumps(recipe)) or record.get("world_size", 1) != world_size
                or last_device != device.type):  # the first session's device stays at the top
            record["recipe"], record["world_size"] = recipe, world_size
            record.setdefault("resumed", []).append({"command": ["genzoo", *args.argv], "world_size": world_size,
                                                     "device": device.type, "time": time.strftime("%Y-%m-%d %H:%M:%S")})
        if data.classes and "classes" not in record:  # a run of a genzoo that did not record them
            record["classes"] = list(data.classes)
        if json.dumps(record) != before:
            announce.then = lambda: atomic_write_json(run_dir / "run.json", record, own=True)  # once training starts
    if dropped_best:
        announce.line += (f"\ngenzoo: note: {run_dir} was made with keep_best, which a {model.name} no longer takes (its "
                          "validation loss is its discriminator's): best/ stays as it was, and the run goes on without")
    idle = {k: why for k, why in model.unused_options().items() if k in model_kw}
    if idle and not args.resume:
        announce.line += "".join(f"\ngenzoo: note: {model.name} ignores {k} with {why}" for k, why in idle.items())
    schedule = [f"{k}={train[k]}" for k in ("lr_schedule", "warmup_steps") if train.get(k) not in (None, 0, "constant")]
    if schedule and not args.resume and not any(True for _ in model.parameters()):  # EM: nothing has an lr
        announce.line += f"\ngenzoo: note: {model.name} has no optimizer (it fits by EM): {', '.join(schedule)} does nothing"
    elif steps is not None and (train.get("warmup_steps") or 0) > steps:
        announce.line += (f"\ngenzoo: note: warmup_steps {train['warmup_steps']} is more than the {steps} steps: the lr "
                          "never reaches its value")
    if model.full_batch and not args.resume:  # EM: the whole set every step, no networks to compile or lay out
        default = _train_defaults()  # (fit's batch_size is in every recipe)
        idle = [f"{k}={train[k]}" for k in ("batch_size", "compile", "channels_last")
                if train.get(k) not in (None, False, default.get(k))]
        if idle:
            announce.line += (f"\ngenzoo: note: {model.name} fits on the whole set every step, one EM iteration, and has "
                              f"no networks: {', '.join(idle)} {'does' if len(idle) == 1 else 'do'} nothing")
    if train.get("channels_last") and not model.full_batch and not args.resume:
        from .train.acceleration import has_convolutions

        if not has_convolutions(model):
            announce.line += f"\ngenzoo: note: {model.name} has no convolutions here: channels_last=True does nothing"
    if (data.space == "binarized" and isinstance(model, (Density, LatentVariable)) and not model.bernoulli_pixels
            and not args.resume):  # (a GAN's samples are not scored by a density of its own)
        announce.line += (f"\ngenzoo: note: {model.name} fits a density to binarized (0/1) pixels: not a likelihood of "
                          "them (a density on points can grow without bound): data.dequantize=true instead models grey levels, a "
                          "Bernoulli VAE 0/1 pixels")
    d_steps = getattr(model, "d_steps", 1)  # an adversarial model's discriminator updates per generator update
    if steps is not None and steps < d_steps and not args.resume:
        announce.line += (f"\ngenzoo: note: {model.name} updates its generator once every d_steps={d_steps} "
                          f"discriminator steps: {steps} step{'s' * (steps != 1)} train no generator")
    if (train.get("batch_size") or 0) > len(data) and not model.full_batch:
        announce.line += (f"\ngenzoo: note: batch size {train['batch_size']} is more than the {len(data)} training "
                          "examples: each batch is the whole set")
    t0 = time.time()
    try:
        given = {k: train[k] for k in ("batch_size", "checkpoint_every", "sample_every", "log_every", "valid_every",
                                       "keep") if train.get(k) is not None}  # the others: fit's defaults
        state = fit(model, data, callbacks=[announce] if main_rank else [], steps=steps, epochs=epochs, seed=seed,
                    run_dir=run_dir, resume=args.resume, valid=valid, progress=not args.no_progress,
                    lr_schedule=train.get("lr_schedule", "constant"), warmup_steps=train.get("warmup_steps") or 0,
                    precision=train.get("precision", "fp32"), channels_last=train.get("channels_last"),
                    compile=bool(train.get("compile", False)), max_minutes=train.get("max_minutes"),
                    keep_best=bool(train.get("keep_best", False)), **given)
    except RunLocked:  # another process's run: not ours to clean up
        raise
    except RunFolderGone:  # (what is at run_dir now, if anything, is not this run's to remove)
        raise
    except Exception as e:  # a user error, or one genzoo does not foresee (out of memory): a run that never
        if main_rank and not args.resume and not holds_checkpoint(run_dir):  # started leaves nothing behind
            from .io import set_aside

            if isinstance(e, TrainingDiverged) and set_aside(run_dir):  # (kept() said where they went: not removed)
                what = run_dir if before is None else f"what the run wrote in {run_dir}"
                best = " (best/ holds the weights of its lowest validation loss)" if (run_dir / "best").is_dir() else ""
                raise TrainingDiverged(f"{e}; {what} is kept{best}, but nothing in it can be resumed: start a new run "
                                       "in another --run-dir with a smaller lr or other settings") from None
            _remove_new(run_dir, before)
            if isinstance(e, TrainingDiverged):  # it did start: say where its metrics went
                raise TrainingDiverged(f"{e}; {run_dir if before is None else 'what the run wrote in ' + str(run_dir)} "
                                       "is removed") from None
        # a full disk at a write but a checkpoint's (whose error says this itself): nothing of the run is lost
        if main_rank and isinstance(e, WriteError) and "--resume" not in str(e) and \
                (last := latest_checkpoint(run_dir)) is not None:
            raise WriteError(f"{e}; the checkpoints written so far are intact: continue from {last.name} with "
                             f"`genzoo train --resume --run-dir {_quoted(run_dir)}`") from None
        raise
    except KeyboardInterrupt as e:
        what = "terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted"
        if main_rank and not args.resume and not holds_checkpoint(run_dir):
            _remove_new(run_dir, before)
            sys.stderr.write(f"genzoo: {what} before the first checkpoint; {run_dir} is removed\n"
                             if before is None else f"genzoo: {what} before the first checkpoint; what the "
                             f"run wrote in {run_dir} is removed\n")
        elif main_rank:
            written = ("the checkpoints written so far are intact" if holds_checkpoint(run_dir)
                       else "no checkpoint was written yet")  # (a resume that restarted a run from its run.json)
            sys.stderr.write(f"genzoo: {what}; {written}: continue with `genzoo train --resume --run-dir "
                             f"{_quoted(run_dir)}`\n")
        return 143 if isinstance(e, Terminated) else 130
    if main_rank and state.stopping:  # SIGTERM: fit stopped after a step, and wrote its checkpoint
        print(f"genzoo: terminated (SIGTERM) after step {state.step:,}, whose checkpoint is written: continue with "
              f"`genzoo train --resume --run-dir {_quoted(run_dir)}`", file=sys.stderr)
    elif main_rank:
        start = state.resumed_from or 0  # this session's steps, not the run's
        if start and state.step == start:
            line = f"genzoo: no steps left: wrote the final weights of step {state.step}"
        else:
            span = f" (steps {start + 1}-{state.step})" if start else ""
            done = state.step - start
            line = f"genzoo: {done} step{'s' * (done != 1)} in {time.time() - t0:.1f} s{span}; run in {run_dir}"
            planned = state.planned_steps or state.step
            if state.step < planned:  # the time budget (max_minutes) ended this session
                line += (f"\ngenzoo: stopped by max_minutes={train.get('max_minutes'):g} with {planned - state.step:,} of "
                         f"{planned:,} steps left: `genzoo train --resume --run-dir {_quoted(run_dir)}` goes on")
        print(line, file=sys.stderr)
        try:  # a picture of a finished run: its failure is no failure of the run (exit 0, the run is whole)
            _density_picture(model, data, run_dir)
        except (GenZooError, OSError) as e:
            print(f"genzoo: warning: the run is complete, but its density picture is not: {' '.join(str(e).split())}",
                  file=sys.stderr)
    if world_size > 1:
        torch.distributed.barrier()  # rank 0's files are written before any process exits
    return 143 if state.stopping else 0


def _quoted(path) -> str:
    """``path`` as a shell takes it, for the commands a message gives to paste (a run folder with a space).

    >>> _quoted(Path("runs/my run")), _quoted(Path("runs/vae"))
    ("'runs/my run'", 'runs/vae')
    """
    return shlex.quote(str(path))


def _check_train(train: dict) -> None:
    """:func:`~genzoo.train.loop.check_train_options` of a typed [train] table (:func:`_typed_train`)."""
    from .train.loop import check_train_options

    check_train_options(**{k: train.get(k) for k in ("steps", "batch_size", "seed", "checkpoint_every", "sample_every",
                                                      "log_every", "valid_every", "keep", "warmup_steps", "max_minutes")},
                        epochs=train.get("epochs") if train.get("steps") is None else None)


def _reads_root(name, given: str) -> bool:
    """Whether the dataset ``name`` (a recipe's data.name) reads files from a data root (MNIST's folder); where it
    does not, a note that ``given`` (``--data-root``, ``data.root``) is unused (rank 0's alone under torchrun)."""
    from .eval.metrics import ROOT_DATASETS

    if name in ROOT_DATASETS:
        return True
    if not _other_rank():
        print(f"genzoo: note: {given} is unused: {_no_root_why(name)}", file=sys.stderr)
    return False


def _no_root_why(name) -> str:
    """Why the dataset ``name`` reads nothing from a data root, for the notes on an unused one."""
    if str(name).startswith(("folder:", "npz:")):
        return (f"{name} is read at that path, and a data root is the folder of MNIST's files (its run.json records "
                "the path: data.name)")
    return f"{name} reads no files from it (it is the folder of MNIST's files)"


def _check_outside_images(run_dir: Path | None, name, resume: bool) -> None:
    """A ConfigError if the run folder ``run_dir`` (None: the default one, under ./runs) is, or lies inside, the image
    folder ``name`` (a recipe's data.name) it trains on, symbolic links resolved: its sample grids would become
    images of that folder. Before anything is written; on ``resume``, a run already there is told to move out."""
    from .data import _resolve

    try:
        kind, target = _resolve(name)
    except (GenZooError, TypeError):
        return  # no such data: refused, in its own words, where it is loaded
    if kind != "folder":
        return
    images = Path(target).expanduser().resolve()
    where = (run_dir if run_dir is not None else Path("runs") / "new").resolve()
    if where != images and images not in where.parents:
        return
    if any(part.startswith(".") for part in where.relative_to(images).parts):  # hidden: the loader skips it
        return
    if resume:
        raise ConfigError(f"the run {run_dir} lies inside the image folder {images} it trains on, which reads the "
                          "run's pictures as images of its own (and refuses itself as data): move the run out of "
                          "that folder, then resume it at its new place")
    given = f"--run-dir {run_dir}" if run_dir is not None else "the default run folder runs/ (of this folder)"
    raise ConfigError(f"{given} lies inside the image folder {images} the run trains on, whose images its pictures "
                      f"would join: give --run-dir outside it{' (or run from another folder)' * (run_dir is None)}")


def _check_new_run(run_dir: Path) -> None:
    """A ConfigError if ``run_dir`` already holds a run, or any file a run writes (a new run may go into an empty
    folder, or a user's folder of other files, which it leaves alone)."""
    from .io import holds_checkpoint, locked_elsewhere, run_files_in

    held = run_files_in(run_dir)
    if not held:
        return
    if locked_elsewhere(run_dir):  # not stopped: being trained, maybe before its first checkpoint
        raise RunLocked(f"another process is training the run in {run_dir}: choose another --run-dir")
    if holds_checkpoint(run_dir):
        raise ConfigError(f"{run_dir} already holds a run: continue it with --resume, or choose another --run-dir")
    if "run.json" in held and "model.safetensors" not in held and _records_a_run(run_dir / "run.json"):  # --resume's
        raise ConfigError(f"{run_dir} already holds a run that stopped before its first checkpoint: start it again "
                          f"with `genzoo train --resume --run-dir {_quoted(run_dir)}`, or choose another --run-dir")
    raise ConfigError(f"{run_dir} already holds {', '.join(held)} (files a run writes, which a new run would write "
                      "over): choose an empty folder or another --run-dir")


def _records_a_run(path: Path) -> bool:
    """Whether ``path`` is a run.json that ``genzoo train`` wrote (a recipe in it), not a user's file of that name."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):  # (brackets nested past the recursion limit: not genzoo's either)
        return False
    return isinstance(record, dict) and isinstance(record.get("recipe"), dict)


def _claim_new_folder(base: Path) -> Path:
    """``base``, or ``base-2``, ``base-3``, ...: the first folder this process creates. ``mkdir`` either makes a
    folder or fails, so runs started in the same second (a sweep launched at once) each get their own."""
    base.parent.mkdir(parents=True, exist_ok=True)
    for i in range(1, 10_000):
        folder = base if i == 1 else base.with_name(f"{base.name}-{i}")
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue
    raise WriteError(f"no free run folder named {base}-N: give --run-dir")


def _remove_new(run_dir: Path, before: set[Path] | None) -> None:
    """Undo a run that wrote no checkpoint: remove ``run_dir`` if it is new (``before`` None), else only the
    entries it did not hold before (a folder the user chose keeps its own files)."""
    if before is None:
        shutil.rmtree(run_dir, ignore_errors=True)
        return
    for p in set(run_dir.iterdir()) - before if run_dir.is_dir() else ():
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def _class_names(classes) -> str:
    """Labels by class name for the training banner, the middle of a long list (ImageNet's 1,000) and of a long name
    left out.

    >>> _class_names(["cat", "dog"])
    '0=cat, 1=dog'
    >>> _class_names([str(i) for i in range(12)])
    '0=0, 1=1, 2=2, 3=3, 4=4, 5=5, 6=6, 7=7, ..., 11=11'
    >>> _class_names(["a_rather_long_class_folder_name"])
    '0=a_rather_long_cla...'
    """
    named = [f"{i}={n if len(n) <= 20 else n[:17] + '...'}" for i, n in enumerate(classes)]
    return ", ".join(named if len(named) <= 10 else [*named[:8], "...", named[-1]])


class _Announce:
    """A fit() callback that prints what is being trained once training starts (after the checks and the
    model's setup), so a run refused for its input prints the one error line alone."""

    def __init__(self, line: str):
        self.line, self.then = line, None

    def on_start(self, state) -> None:
        from tqdm import tqdm

        tqdm.write(self.line, file=sys.stderr)  # above the progress bar, which is already drawn
        if self.then is not None:
            self.then()

    def on_step_end(self, state, logs) -> None: ...

    def on_end(self, state) -> None: ...


def _density_picture(model, data, run_dir: Path) -> None:
    """For a model with an exact density on 2-D data: RUN/density.png, the model density beside the true one."""
    from .base import Density

    if not isinstance(model, Density) or tuple(data.shape) != (2,):
        return
    from .io import record_picture
    from .viz.plots import save_density

    truth = getattr(data, "density", None)
    box = truth.bounds() if truth is not None else [(float(data.x[:, i].min()), float(data.x[:, i].max())) for i in range(2)]
    bounds = [(lo - 0.15 * (hi - lo), hi + 0.15 * (hi - lo)) for lo, hi in box]
    if model.outside_unit_interval(-1.0, 2.0) is not None:  # a density on [0, 1]^2 only (a flow's logit): drawn there
        bounds = [(max(lo, 0.0), min(hi, 1.0)) for lo, hi in bounds]
    model.eval()
    save_density(model.log_prob, run_dir / "density.png", bounds, title=model.name, density=truth)
    record_picture(run_dir / "density.png", run_dir)  # the weights it shows: the report notes it when they change
    print(f"genzoo: density picture in {run_dir / 'density.png'}", file=sys.stderr)


def _saved_model(folder) -> bool:
    """Whether ``folder`` holds a model of ``genzoo.save`` (a config.json and no run.json): no data recorded."""
    from .io import CONFIG

    return not (Path(folder) / "run.json").exists() and (Path(folder) / CONFIG).is_file()


def read_recipe(run_dir: Path, train: bool = False) -> dict:
    """The resolved recipe a run was trained with (its run.json), checked; with ``train`` (``--resume``, which trains
    with it) its [train] table and its [model] table's options too, which this genzoo must know (the other commands
    read only [model]'s name and [data], so a newer genzoo's run is still evaluated and drawn from)."""
    from . import __version__
    from .io import read_json
    from .recipes import TRAIN_KEYS
    from .registry import options

    path = Path(run_dir) / "run.json"
    if _saved_model(run_dir):
        raise CheckpointError(f"{run_dir} is a saved model (genzoo.save), which records no data set: this needs the "
                              "folder of a `genzoo train` run")
    run = read_json(path, "run file")
    recipe = run.get("recipe")
    if not isinstance(recipe, dict) or not all(isinstance(recipe.get(k), dict) for k in ("model", "data", "train")):
        raise CheckpointError(f"{path} is not a genzoo run file (no model/data/train recipe)")
    if not train:
        return recipe
    version = run.get("genzoo_version")
    newer = f" (written by genzoo {version}; this is {__version__})" if version not in (None, __version__) else ""
    if unknown := [k for k in recipe["train"] if k not in TRAIN_KEYS]:  # as a recipe file's
        raise CheckpointError(f"{path}: unknown [train] key '{unknown[0]}'{did_you_mean(unknown[0], TRAIN_KEYS)}{newer}")
    name = recipe["model"].get("name")
    if not isinstance(name, str):
        return recipe  # (refused where the model is built, which says what names a model)
    try:  # a newer genzoo's model or option, or an edit: named with the file (build would name neither)
        known = options(name)
    except ConfigError as e:
        raise CheckpointError(f"{path}: {e}{newer}") from None
    if unknown := [k for k in recipe["model"] if k not in ("name", "data_shape", *known)]:  # (data_shape: said in train)
        raise CheckpointError(f"{path}: unknown [model] option '{unknown[0]}' for model '{name}'"
                              f"{did_you_mean(unknown[0], known)}{newer}")
    return recipe


def _run_data(run: str, data_root: str | None, otherwise: str):
    """A run's test split (None for a ``genzoo.save`` folder, which records no data); where the data cannot be
    read, a note saying what is done ``otherwise``, and None."""
    from .data import load_spec

    if not (Path(run) / "run.json").is_file():
        return None
    try:
        return load_spec(_data_spec(run, data_root), "test")
    except GenZooError as e:
        print(f"genzoo: note: the run's data cannot be read ({' '.join(str(e).split())}): {otherwise}", file=sys.stderr)
        return None


def _run_levels(run: str, data_root: str | None, otherwise: str) -> int | None:
    """The levels of a run's dequantized data (None: not dequantized, no data recorded, or unreadable: :func:`_run_data`)."""
    data = _run_data(run, data_root, otherwise)
    return None if data is None else data.dequantized_levels


def _data_spec(run: str, data_root: str | None, note: bool = True) -> dict:
    """A run's recorded data recipe, with ``--data-root`` applied when given and read by its data (MNIST); with
    ``note``, a note where it is not (eval and compare say it with the other settings their metrics leave unused).
    Its loader's imports are made whole here (:func:`_import_for_data`), before a Ctrl-C may cut them short."""
    from .eval.metrics import ROOT_DATASETS

    spec = dict(read_recipe(Path(run))["data"])
    _import_for_data(spec.get("name"))
    if data_root is not None and spec.get("name") in ROOT_DATASETS:
        spec["root"] = str(Path(data_root).expanduser().resolve())
    elif data_root is not None and note:
        print(f"genzoo: note: --data-root is unused: {_no_root_why(spec.get('name'))}", file=sys.stderr)
    return spec


def _run(path: str, nothing_to: str = "draw from"):
    """The model of a run (or of a ``genzoo.save`` folder); a DataError for NaN or infinite weights, which every
    command would turn into NaN figures or black pictures ("... Nothing to ``nothing_to``")."""
    from .eval.likelihood import check_weights
    from .io import load

    run = Path(path)
    if not run.is_dir():
        raise CheckpointError(f"not a genzoo run: {run} is not a directory")
    model = load(run)
    check_weights(model, nothing_to)
    return model


def _output_path(given: str | None, run: str, default: str, suffix: str) -> Path:
    """``-o`` checked (:func:`~genzoo.io.check_output`), or the command's default file in the run checked the same
    way, and its folder tried for writing, before any work: a read-only run, or ``RUN/best`` (which training
    replaces whole, pictures and all) is refused here, not after the work, and so is a default file that is a
    symlink (``-o LINK`` writes through it, as open() would)."""
    from .io import check_writable, refuse_link

    if given is not None:
        path = check_output(given, suffix=suffix)
        check_writable(path.resolve().parent, "-o")
        return path
    path = Path(run) / default
    try:
        refuse_link(path)  # the run's own picture: never written through a link (a run folder from elsewhere; a138 F2)
        check_output(path, "the default output", suffix=suffix)
        check_writable(path.resolve().parent, "the default output's folder")
    except GenZooError as e:
        raise type(e)(f"{e}; give -o FILE") from None
    return path


def _remake(args) -> list[str] | None:
    """The command line that ran (``args.argv``, which :func:`main` sets), the run argument as ``RUN``: what
    :func:`~genzoo.io.record_picture` keeps for the report to give back, flags and all, when the picture is of other
    weights than its run's. Only the word argparse took as the run: a flag's value equal to it stays (a run named
    ``9`` of ``sample 9 -n 9``)."""
    import contextlib
    from io import StringIO

    argv = getattr(args, "argv", None)
    if argv is None:
        return None
    for i, word in enumerate(argv):
        if word == args.run:
            trial = [*argv[:i], "\0RUN", *argv[i + 1:]]
            with contextlib.redirect_stderr(StringIO()), contextlib.suppress(SystemExit):  # (a flag's value: refused)
                if parse(trial).run == "\0RUN":
                    return [*argv[:i], "RUN", *argv[i + 1:]]
    return list(argv)


def cmd_sample(args) -> int:
    from .eval.metrics import draw, draw_finite
    from .io import weights_stamp
    from .viz import save_samples

    if not 1 <= args.n <= MAX_PICTURE:
        raise ConfigError(f"-n must be in 1..{MAX_PICTURE:,} (one picture), got {args.n}")
    stamp = weights_stamp(args.run)  # before the work: a run still training may write newer weights meanwhile
    model = _run(args.run)
    _note_checkpoint(args.run, _weights_scored(args.run, stamp), "used")  # (as eval says it)
    out = _output_path(args.output, args.run, "samples.png", ".png")
    # (unreadable: the picture does without the true density, and shows the samples as drawn)
    data = _run_data(args.run, args.data_root, "samples as the model draws them, not put back on the data's levels, and no "
                     "true density")
    # in blocks; NaN or inf refused, not drawn as black or dropped; a model of dequantized data's on the data's
    # levels, as eval scores them and interpolate shows them (drawn as they were, 256 greys where digits have 17)
    x = draw_finite(model, args.n, args.seed) if data is None else draw(model, args.n, args.seed, data)
    save_samples(x, out, title=f"{model.name}: {args.n} sample{'s' * (args.n != 1)}",
                 density=getattr(data, "density", None))
    _record_picture(out, args.run, stamp, _remake(args))
    print(f"wrote {out}")
    return 0


def _record_picture(path: Path, run, stamp, command) -> None:
    """:func:`~genzoo.io.record_picture` after the picture is written: where pictures.json cannot be written (a full
    disk), a warning, as the density picture of ``train`` is one: the picture asked for is whole, and exit 0."""
    from .io import record_picture

    try:
        record_picture(path, run, stamp, command)
    except (GenZooError, OSError) as e:
        print(f"genzoo: warning: wrote {path}, but could not record which weights made it ({' '.join(str(e).split())}): "
              "the report will not know its source", file=sys.stderr)


def _evaluable(path: str, args):
    """The model and data recipe of a run to evaluate: a one-line error for a folder that is no run, damaged
    weights or a folder of ``genzoo.save`` (no run.json, so no data)."""
    model = _run(path, "evaluate")
    return model, _data_spec(path, args.data_root, note=False)  # (read_recipe names a genzoo.save folder as such)


def _eval_run(path: str, args, metrics: str, strict: bool = True):
    """The result of :func:`genzoo.eval.metrics.evaluate` on one run, as the flags ask."""
    from .eval.metrics import evaluate

    model, spec = _evaluable(path, args)
    return evaluate(model, spec, metrics=metrics, split=args.split, n=args.n, n_samples=args.n_samples,
                    iwae_k=args.iwae_k, batch_size=args.batch_size, seed=args.seed, parzen_sigmas=args.parzen_sigmas,
                    strict=strict, progress=not args.no_progress)


def _check_eval_json(run: str) -> None:
    """A WriteError, before any evaluation, unless ``RUN/eval.json`` can be written."""
    from .io import check_writable

    target = Path(run) / "eval.json"
    if not Path(run).is_dir():
        return  # not a run: the evaluation says so
    try:
        if target.exists() and not target.is_file():
            raise WriteError(f"{target} is not a file")
        check_writable(run, "eval.json in")
    except WriteError as e:
        raise WriteError(f"{e}; --no-write evaluates without writing it") from None


def cmd_eval(args) -> int:
    from .eval.metrics import format_result
    from .io import atomic_write_json

    if not args.no_write:
        _check_eval_json(args.run)
    asked = _compare_key(args.run, args)  # before the work: a run still training may write newer weights meanwhile
    result = _eval_run(args.run, args, args.metrics)
    weights = _weights_scored(args.run, asked["weights"])
    print(format_result(result))
    _note_checkpoint(args.run, weights)
    _note_unused(args, [result])
    asked = _used(asked, result)  # recorded without what no metric read: compare then reuses it whatever those were
    if not args.no_write:
        replaced = _other_settings(Path(args.run) / "eval.json", asked)
        try:
            atomic_write_json(Path(args.run) / "eval.json", {**result, "weights": weights, "asked": asked}, own=True)
        except WriteError as e:  # the results are printed above: say how to keep them from being lost next time
            raise WriteError(f"{e} (the results are printed above; --no-write skips the file)") from None
        if replaced:  # compare keeps such a file; eval, asked for this run alone, replaces it, but says so
            print(f"genzoo: note: replaced {Path(args.run) / 'eval.json'}, an evaluation of other settings "
                  f"({replaced}); --no-write keeps a stored one", file=sys.stderr)
        print(f"wrote {Path(args.run) / 'eval.json'}", file=sys.stderr)  # as compare names its files
    return 0


def _weights_scored(path: str, stamp) -> str | None:
    """Which weights of the run ``path`` are scored (:func:`~genzoo.eval.compare.weights_label`: ``final``, or
    ``checkpoint step 710 of 20,000``), from ``stamp``, the :func:`~genzoo.io.weights_stamp` of
    :func:`_compare_key` (the file :func:`~genzoo.io.load` reads), and the length its run.json plans."""
    from .eval.compare import FINAL, best_label, weights_label

    try:
        train = read_recipe(Path(path))["train"]
    except (GenZooError, OSError):  # a saved model (no run.json: no checkpoints either) or an unreadable one
        train = None
    label = weights_label(stamp, train)
    return (best_label(path) or label) if label == FINAL else label  # a run's best/ holds no final weights


def _note_checkpoint(path: str, weights: str | None, used: str = "scored") -> None:
    """One note on stderr where the weights ``used`` (scored, or drawn from: :func:`_weights_scored`) are a
    checkpoint's."""
    from .eval.compare import CHECKPOINT
    from .io import WEIGHTS, cut_short_note

    if weights is not None and weights.startswith(CHECKPOINT):  # (not final, nor a run's best/ weights)
        newer = cut_short_note(path)  # (a newer checkpoint a save cut short left aside)
        print(f"genzoo: note: {path} has no final {WEIGHTS} (a run stopped before its end, or still training): "
              f"{used} its {weights}" + (f"; {newer}" if newer else ""), file=sys.stderr)


def _other_settings(cached: Path, asked: dict) -> str:
    """How the evaluation stored in ``cached`` (RUN/eval.json) was asked otherwise than ``asked`` (``iwae_k 1000 ->
    2, n None -> 5``); empty where there is none, it is unreadable or differs only in weights or genzoo's version."""
    from .io import read_json

    try:
        stored = read_json(cached, "evaluation file") if cached.is_file() else None
    except CheckpointError:
        return ""
    mine = _asked(stored)
    if mine is None:
        return ""
    old = _settings(mine, "weights", "metrics_version", *_unused(stored))
    new = _settings(asked, "weights", "metrics_version")
    # (a setting an older genzoo did not record, or one either evaluation left unused, is not told as changed)
    return ", ".join(f"{k} {old[k]} -> {new[k]}" for k in sorted(old) if k in new and old[k] != new[k])


#: eval's and compare's settings that a result's metrics may leave unused (:func:`_unused`): their flags, and why
UNUSED_WHY = {
    "parzen_sigmas": ("--parzen-sigmas", "no Parzen estimate is computed (--metrics parzen asks for one)"),
    "iwae_k": ("--iwae-k", "no IWAE bound is computed (a VAE's or M2's likelihood has one; an exact likelihood, or "
               "none, has not)"),
    "n_samples": ("--n-samples", "none of the metrics computed draws samples"),
    "batch_size": ("--batch-size", "it batches the likelihoods (nll), which are not computed"),
    "n": ("-n", "the metrics computed score samples alone"),
    "data_root": ("--data-root", "the data read no files from it (it is the folder of MNIST's files; a folder or .npz "
                  "run reads the path its run.json records)"),
}


def _unused(result) -> set[str]:
    """The keys of :func:`_compare_key` that no metric of the evaluation ``result`` read
    (:func:`~genzoo.eval.metrics.unused_settings`; none where it does not say its metrics)."""
    from .eval.metrics import unused_settings

    return {"data_root" if k == "root" else k for k in unused_settings(result)}


def _used(asked: dict, result) -> dict:
    """``asked`` (:func:`_compare_key`) without the settings ``result``'s metrics left unused: what an eval.json
    records, so that a later evaluation that gives them otherwise (an idle ``--iwae-k`` of a flow) reuses it."""
    return _settings(asked, *_unused(result))


def _note_unused(args, results: list[dict]) -> None:
    """One note per setting given otherwise than its default that none of ``results`` read (eval: its one result;
    compare: every run's), saying why."""
    unused = set.intersection(*(_unused(r) for r in results)) if results else set()
    who = " by every run here" if len(results) > 1 else ""
    for key, (flag, why) in UNUSED_WHY.items():
        if key in unused and getattr(args, key) != EVAL_DEFAULTS[key]:
            print(f"genzoo: note: {flag} is unused{who}: {why}", file=sys.stderr)


def cmd_compare(args) -> int:
    from .data import load_spec
    from .eval.compare import compare_table, directions, scored_caption, write_table
    from .io import atomic_write_json

    first: dict[Path, int] = {}  # each run's folder -> where it was first named
    for i, r in enumerate(args.runs):
        if (j := first.setdefault(Path(r).resolve(), i)) != i:
            raise ConfigError(f"a run is named twice: {args.runs[j]}" + f" (as {r})" * (args.runs[j] != r))
    if args.no_write and args.output is not None:
        raise ConfigError("give -o or --no-write, not both")
    default = not args.no_write and args.output is None
    if args.no_write:
        args.output = None
    elif default:  # ./compare.md and ./compare.csv, never over a user's own files of those names
        args.output = "compare"
        if taken := [f"compare{s}" for s in (".md", ".csv") if Path(f"compare{s}").exists()]:
            raise ConfigError(f"{' and '.join(taken)} {'exist' if len(taken) > 1 else 'exists'} here: -o compare "
                              "replaces them, -o NAME writes NAME.md and NAME.csv")
    if args.output is not None:
        if not str(args.output).strip():
            raise ConfigError("-o needs a file name")
        if not default and (str(args.output).endswith(("/", os.sep)) or Path(args.output).is_dir()):  # -o DIR
            args.output = str(Path(args.output) / "compare")
        if Path(args.output).suffix.lower() in (".md", ".csv"):  # -o table.md means table.md and table.csv
            args.output = str(Path(args.output).with_suffix(""))
        for suffix in (".md", ".csv"):
            check_output(f"{args.output}{suffix}", "-o")
        # tried for writing before any evaluation (hours, with the defaults), as the other commands' outputs are
        from .io import check_writable

        folder = Path(f"{args.output}.md").resolve().parent
        try:
            check_writable(folder, "the default output's folder, the current one," if default else "-o")
        except WriteError as e:
            raise WriteError(f"{e}; give -o NAME elsewhere" if default else str(e)) from None
    asked = {path: _compare_key(path, args) for path in args.runs}  # before the work: a run may train on meanwhile
    cached = {path: _cached_result(path, asked[path], args.recompute) for path in args.runs}  # None: to evaluate
    for path in (p for p, r in cached.items() if r is None):  # every run to evaluate, before the first one's work
        # a typo, no run, damaged weights, a missing .npz or changed MNIST files: refused now, not after the others' work
        load_spec(_evaluable(path, args)[1], args.split, nonempty=True)
        if args.output is not None and _replaceable(Path(path) / "eval.json", asked[path]):
            _check_eval_json(path)  # one it will keep (or reuse) may be read-only
    rows, kept = [], []
    for path, result in cached.items():
        weights = _weights_scored(path, asked[path]["weights"])  # (a cached result's: the same content, checked)
        if result is None:  # a metric named that this run does not admit leaves its cell blank, with a note
            result = _eval_run(path, args, args.metrics, strict=False)
            result = {**result, "weights": weights, "asked": _used(asked[path], result)}
            # stored as each run is done (a later run's failure loses none of it), where it replaces no other
            # settings' evaluation (--no-write: nothing; a run none of whose metrics applies keeps its own)
            if args.output is not None and result["metrics"]:
                if _replaceable(Path(path) / "eval.json", asked[path], result["metrics"]):
                    try:  # (one judged kept before the work, as of other metrics, was not checked for writing)
                        atomic_write_json(Path(path) / "eval.json", result, own=True)
                    except WriteError as e:  # storing is a side effect: the table is the product
                        print(f"genzoo: note: {e}: this table's figures for it are not stored", file=sys.stderr)
                else:
                    kept.append(path)
        for metric, why in result.get("skipped", {}).items():
            print(f"genzoo: note: {path}: no {metric}: {why}", file=sys.stderr)
        _note_checkpoint(path, weights)  # and its row is marked
        rows.append((path, {**result, "weights": weights}))
    for path in kept:
        print(f"genzoo: note: {Path(path) / 'eval.json'} holds an evaluation of other settings, kept: this table's "
              "figures for it are not stored", file=sys.stderr)
    _note_unused(args, [r for _, r in rows])
    if not any(r["metrics"] for _, r in rows):
        raise ConfigError(f"none of the metrics asked ({args.metrics}) applies to any of these runs")
    labels = [_data_label(path, result, args) for path, result in rows]
    table = compare_table(rows, labels)
    if len(set(labels)) > 1:
        print(f"genzoo: note: these runs were scored on different data ({', '.join(dict.fromkeys(labels))}): compare "
              "a figure only with those of the same data", file=sys.stderr)
    spaces = list(dict.fromkeys(r["nll_space"] for r in table.records if r.get("nll_space")))
    if len(spaces) > 1:  # the NLL's space names dequantization (and binarization, where it says it)
        print(f"genzoo: note: these likelihoods are in different spaces ({', '.join(spaces)}): compare NLL and "
              "bits/dim only within one space", file=sys.stderr)
    # what was scored, as each run scored it (an -n beyond a split, or one no figure takes, is not repeated); the CSV's
    # n, n_samples and iwae_k are each run's
    caption = f"{directions(table)} {scored_caption(table, args.split, args.n)}"
    print(f"{table.markdown}\n\n{caption}")
    if args.output:
        for f in write_table(table, args.output, caption):
            print(f"wrote {f}", file=sys.stderr)
    return 0


def _data_label(path: str, result: dict, args) -> str:
    """A compared run's data as the table names it (:func:`~genzoo.eval.compare.data_label`), from its recipe."""
    from .eval.compare import binarized_label, data_label

    try:
        return data_label(_data_spec(path, None), args.split, result)
    except GenZooError:  # no readable run.json: the data set the result names
        return binarized_label(str(result.get("dataset", "")), result)


def _replaceable(cached: Path, asked: dict, metrics: list[str] | None = None) -> bool:
    """Whether ``compare`` may write its result (of ``metrics``, where known) over ``cached`` (RUN/eval.json): there
    is none, it is damaged, or it holds the same settings (split, sizes, seed) for other weights, another feature
    classifier, an older genzoo's metrics or metrics that the new result all has too (an `eval` of `auto` under
    `compare`'s `all`); never an evaluation a user asked with other settings (a full IWAE k=5000 run over by a quick -n 100)."""
    from .io import read_json

    if not cached.is_file():
        return True
    try:
        old = read_json(cached, "evaluation file")
    except CheckpointError:
        return True
    mine = _asked(old)
    if mine is None:
        return False  # written by something else (a benchmark): kept
    had = old.get("metrics") if isinstance(old.get("metrics"), list) else None
    covered = mine.get("metrics") == asked.get("metrics") or (metrics is not None and had is not None
                                                               and set(had) <= set(metrics))
    # (a result of another feature classifier, like one of other weights, is stale: replaced, not kept; a setting
    # none of its metrics read holds nothing of it)
    drop = ("weights", "metrics_version", "metrics", "classifier", *_unused(old))
    return _settings(mine, *drop) == _settings(asked, *drop) and covered


def _asked(result) -> dict | None:
    """What an eval.json's result records it scored (:func:`_compare_key`), or None where it records nothing usable."""
    asked = result.get("asked") if isinstance(result, dict) else None
    return asked if isinstance(asked, dict) else None


def _settings(asked: dict, *drop: str) -> dict:
    """``asked`` without the keys ``drop``: the settings two evaluations are compared on."""
    return {k: v for k, v in asked.items() if k not in drop}


def _cached_result(path: str, asked: dict, recompute: bool = False) -> dict | None:
    """``RUN/eval.json`` if it holds what ``compare`` asks (``asked``: :func:`_compare_key`), else None (a corrupt
    one, unparsable or of figures that do not read as an evaluation's, with a note: it is evaluated again and written
    over)."""
    from .io import read_json

    cached = Path(path) / "eval.json"
    if recompute or not cached.is_file():
        return None
    try:
        old = read_json(cached, "evaluation file")
    except CheckpointError as e:
        print(f"genzoo: note: {e}; evaluating again", file=sys.stderr)
        return None
    from .io import same_weights

    mine = _asked(old)
    # the same settings, those its metrics left unused aside (the same ones a new evaluation leaves unused: the same
    # metrics asked of the same weights), and the same weights by content (a checkpoint's, then the final file's)
    unused = _unused(old)
    same = mine is not None and _settings(mine, "weights", *unused) == _settings(asked, "weights", *unused)
    if not (same and same_weights(mine.get("weights"), asked["weights"])):
        return None
    # the right settings, but its figures must read as compare reads them: a hand-edited or damaged file ("likelihood":
    # null, a row without "nats") stopped compare with an "unexpected KeyError"; it is evaluated again, as one that
    # does not parse is
    from .eval.compare import compare_table, scored_caption

    try:
        scored_caption(compare_table([(path, old)]), asked.get("split", "test"), asked.get("n"))  # (as cmd_compare)
        if not isinstance(old.get("metrics"), list) or not isinstance(old.get("skipped", {}), dict):
            raise TypeError("'metrics' is not a list or 'skipped' not an object")
    except (KeyError, TypeError, AttributeError, ValueError, IndexError) as e:
        what = f"no {e}" if isinstance(e, KeyError) else str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"genzoo: note: corrupt evaluation file {cached}: its figures do not read as an evaluation's ({what}); "
              "evaluating again", file=sys.stderr)
        return None
    return old


def _compare_key(path: str, args) -> dict:
    """What a cached RUN/eval.json must match for ``compare`` to reuse it: every flag that changes the results,
    the weights it scored (their file, size and content, so a run trained further is evaluated again; a run
    still training is scored from its newest checkpoint), the version of genzoo's metrics (results of an
    older genzoo whose metrics changed since are not reused) and, where feature metrics are asked of a run of
    MNIST or digits, the sha256 of that classifier's weights (a retrained classifier changes every one of them)."""
    from .eval import features
    from .eval.metrics import FEATURE_METRICS, METRICS_VERSION
    from .io import weights_stamp

    metrics = args.metrics if args.metrics in ("auto", "all") else ",".join(
        sorted({m.strip() for m in str(args.metrics).split(",") if m.strip()}))  # "nll,parzen" = "parzen, nll"
    key = {"metrics": metrics, "split": args.split, "n": args.n, "n_samples": args.n_samples,
           "iwae_k": args.iwae_k, "seed": args.seed, "data_root": args.data_root, "batch_size": args.batch_size,
           "parzen_sigmas": args.parzen_sigmas, "weights": weights_stamp(path), "metrics_version": METRICS_VERSION}
    if metrics == "all" or set(metrics.split(",")) & set(FEATURE_METRICS):
        try:
            name = _data_spec(path, None).get("name")
            if name in features.CLASSIFIERS:  # (16 hex digits of the hash: enough to tell weights apart)
                key["classifier"] = f"{name} {features._weights_sha256(name)[:16]}"
        except (GenZooError, OSError, AttributeError):
            pass  # no readable run or classifier: the evaluation says why
    return key


def _indices(text: str, n: int) -> list[int]:
    try:
        out = [int(v) for v in text.split(",")]  # an empty item (a doubled comma) is refused, not dropped
    except ValueError:
        raise ConfigError(f"--arithmetic takes comma-separated test indices, got '{text}'") from None
    if not out or any(not 0 <= v < n for v in out):
        raise ConfigError(f"--arithmetic indices must lie in 0..{n - 1}, got '{text}'")
    return out


def cmd_interpolate(args) -> int:
    import re

    import torch

    from .apps.interpolate import arithmetic, check_latent_model, draw_prior, infer_latent, interpolate
    from .data import load_spec
    from .data.transforms import level_centres, requantize
    from .io import weights_stamp
    from .viz import save_grid

    stamp = weights_stamp(args.run)  # before the work: a run still training may write newer weights meanwhile
    model = _run(args.run)
    _note_checkpoint(args.run, _weights_scored(args.run, stamp), "used")  # (as eval says it)
    check_latent_model(model)
    if len(model.data_shape) != 3:
        raise ConfigError(f"interpolation pictures need image data; this {model.name} models vectors of shape {model.data_shape}")
    if args.arithmetic:  # one picture or the other, not one silently
        strip = [f for f, v in (("--between", args.between or None), ("--pairs", args.pairs), ("--steps", args.steps),
                                ("--kind", args.kind)) if v is not None]
        if strip:
            raise ConfigError(f"--arithmetic makes its own picture: give it without {', '.join(strip)}")
    steps = 10 if args.steps is None else args.steps
    pairs, kind = PAIRS if args.pairs is None else args.pairs, args.kind or "slerp"
    if not 2 <= steps <= 100:
        raise ConfigError(f"--steps must be in 2..100, got {steps}")
    if not 0 <= pairs <= 1000:
        raise ConfigError(f"--pairs must be in 0..1000, got {pairs}")
    if (pairs + len(args.between)) * steps > MAX_PICTURE:
        raise ConfigError(f"{pairs + len(args.between)} rows of {steps} images make more than {MAX_PICTURE:,} images, "
                          "the most one picture holds")
    out = _output_path(args.output, args.run, "arithmetic.png" if args.arithmetic else "interpolation.png", ".png")
    test = levels = None
    if args.between or args.arithmetic:
        test = load_spec(_data_spec(args.run, args.data_root), "test", nonempty=True)
        levels = test.dequantized_levels
    else:  # rows between prior draws: only the data's levels, to show them on (as sample does)
        levels = _run_levels(args.run, args.data_root, "the rows are drawn as the model makes them, not put back on "
                                                       "the data's levels")
    for i, j in args.between:  # all of them before the first row's projection
        if not (0 <= i < len(test) and 0 <= j < len(test)):
            raise ConfigError(f"--between indices must lie in 0..{len(test) - 1}, got {i} {j}")
    # a model of dequantized data, (v + u) / L, reads the test images at their levels' centres (stored, at 0 and 1,
    # a RealNVP's latents were 50-1,500x the prior's scale and the frames between them black), and what it
    # makes of them is shown back on the levels, as eval scores its samples: the strips' ends are the test images
    seen = (lambda x: x) if levels is None else (lambda x: level_centres(x, levels))
    shown = (lambda x: x) if levels is None else (lambda x: requantize(x, levels))
    g = torch.Generator().manual_seed(args.seed)
    if args.arithmetic:
        m = re.fullmatch(r"\s*([\d,\s]+)-([\d,\s]+)\+([\d,\s]+)\s*", args.arithmetic)
        if not m:
            raise ConfigError(f"--arithmetic takes A-B+C with comma-separated test indices, got '{args.arithmetic}'")
        groups = [_indices(t, len(test)) for t in m.groups()]
        _, images = arithmetic(model, *(seen(test.x[idx]) for idx in groups), generator=g)
        images = shown(images)
        exemplars = [test.x[idx].mean(0) for idx in groups]  # what each concept's images average to
        top = torch.cat([torch.stack(exemplars), torch.zeros_like(exemplars[0])[None]])  # A, B, C, blank
        save_grid(torch.cat([top, images]), out, nrow=4, scale=2)
        _record_picture(out, args.run, stamp, _remake(args))
        print(f"wrote {out} (top: the exemplars' mean images A, B, C; bottom: G(z_A), G(z_B), G(z_C), G(z_A - z_B + z_C))")
        return 0
    rows = []
    for i, j in args.between:
        z = infer_latent(model, seen(test.x[[i, j]]), generator=g)
        rows.append(shown(interpolate(model, z[0].cpu(), z[1].cpu(), steps, kind)))
    for _ in range(pairs):
        z = draw_prior(model, 2, g)
        rows.append(shown(interpolate(model, z[0], z[1], steps, kind)))
    if not rows:
        raise ConfigError("nothing to draw: give --pairs N >= 1, --between I J or --arithmetic")
    save_grid(torch.cat(rows), out, nrow=steps, scale=2)
    _record_picture(out, args.run, stamp, _remake(args))
    print(f"wrote {out} ({len(rows)} row{'s' * (len(rows) != 1)} of {steps}, {kind})")
    return 0


def _read_image(path: str, shape: tuple[int, ...]):
    """An image file as a (C, H, W) tensor in [0, 1] of the model's shape (grey or RGB, resized)."""
    import numpy as np
    import torch
    from PIL import Image

    from .data.images import convert_image, read_image

    C, H, W = shape
    img = read_image(path, "--image")
    mode = "L" if C == 1 else "RGB"
    if img.size != (W, H) or img.mode != mode:
        print(f"genzoo: note: {path}: {img.width}x{img.height} {img.mode} made {W}x{H} {mode}, the model's images "
              "(bilinear, aspect ratio not kept)", file=sys.stderr)
    img = convert_image(img, mode, path, "--image").resize((W, H), Image.BILINEAR)
    a = np.asarray(img, dtype=np.float32) / 255.0
    return torch.from_numpy(a[None] if C == 1 else a.transpose(2, 0, 1).copy())


def cmd_inpaint(args) -> int:
    import torch

    from .apps.inpaint import (LAMBDA, MAX_LAMBDA, RESTARTS, SAMPLES, STEPS, inpaint, is_mask_file, make_mask,
                               posterior_fill, psnr, rgb, show_holes)
    from .apps.interpolate import check_latent_model
    from .base import Density
    from .data import load_spec
    from .data.transforms import requantize
    from .io import weights_stamp
    from .viz import save_grid

    if args.steps is not None and not 1 <= args.steps <= 100_000:
        raise ConfigError(f"--steps must be in 1..100,000, got {args.steps}")
    if args.restarts is not None and not 1 <= args.restarts <= 1000:
        raise ConfigError(f"--restarts must be in 1..1000, got {args.restarts}")
    if args.lam is not None and not 0 <= args.lam <= MAX_LAMBDA:
        raise ConfigError(f"--lam must be in 0..{MAX_LAMBDA:g}, got {args.lam}")
    if args.samples is not None and not 400 <= args.samples <= 1_000_000:
        raise ConfigError(f"--samples must be in 400..1,000,000, got {args.samples}")
    if args.sigma is not None and not (math.isfinite(args.sigma) and args.sigma > 0):
        raise ConfigError(f"--sigma must be a finite number > 0, got {args.sigma}")
    stamp = weights_stamp(args.run)  # before the work: a run still training may write newer weights meanwhile
    model = _run(args.run)
    _note_checkpoint(args.run, _weights_scored(args.run, stamp), "used")  # (as eval says it)
    path = _output_path(args.output, args.run, "inpaint.png", ".png")
    inputs = [*(args.image or []), *([args.mask] if is_mask_file(args.mask) else [])]  # files, not mask keywords
    if any(Path(f).resolve() == path.resolve() for f in inputs):
        raise ConfigError(f"{path} is an input of this command (--image or --mask): the picture would replace it; "
                          "give -o another file")
    check_latent_model(model, "inpaint with")
    if len(model.data_shape) != 3:
        raise ConfigError(f"inpainting needs an image model; this {model.name} models vectors of shape {model.data_shape}")
    method = args.method if args.method != "auto" else ("posterior" if isinstance(model, Density) else "search")
    tuning = {"search": ("steps", "restarts", "lam", "precision"), "posterior": ("samples", "sigma")}
    idle = [f"--{k}" for other, keys in tuning.items() if other != method for k in keys if getattr(args, k) is not None]
    if idle:
        raise ConfigError(f"{', '.join(idle)} tune{'s' * (len(idle) == 1)} the other method; this inpainting is by "
                          f"--method {method}" + (" (auto's choice for this model)" if args.method == "auto" else ""))
    truth, levels = None, None  # levels: of a model of dequantized data, whose search starts at their centres
    if args.image:
        y = torch.stack([_read_image(p, model.data_shape) for p in args.image])
        if method == "search":
            levels = _run_levels(args.run, args.data_root, "a flow's search starts from the images as they are, not "
                                                           "at the centres of levels it was trained on")
    else:
        if _saved_model(args.run):
            raise ConfigError(f"{args.run} is a saved model (genzoo.save), which records no test images: give --image "
                              "FILE")
        test = load_spec(_data_spec(args.run, args.data_root), "test", nonempty=True)
        idx = args.test_index if args.test_index is not None else list(range(min(8, len(test))))
        if any(not 0 <= i < len(test) for i in idx):
            raise ConfigError(f"--test-index must lie in 0..{len(test) - 1}")
        y = truth = test.x[idx]
        levels = test.dequantized_levels
    if len(y) > MAX_PICTURE // 4:  # one panel of 4 rows of them
        raise ConfigError(f"inpaint draws its {len(y):,} images in one picture of 4 rows: give at most "
                          f"{MAX_PICTURE // 4:,} (`genzoo bench inpaint-mnist` scores 1,000 test digits without pictures)")
    g = torch.Generator().manual_seed(args.seed)
    mask = torch.stack([make_mask(args.mask, model.data_shape, g) for _ in range(len(y))])  # (N, C, H, W)
    if is_mask_file(args.mask):  # a mask drawn the other way round (white = hole, OpenCV's and LaMa's) shows here
        missing, total = int((mask[0] == 0).any(0).sum()), mask[0][0].numel()  # pixels, not channel values
        print(f"mask {args.mask}: {missing:,} of {total:,} pixels missing ({100 * missing / total:.0f}%; white = known, "
              "black or transparent = missing)")
    blend = args.blend or ("poisson" if method == "search" else "mask")
    if method == "search":
        out = inpaint(model, y, mask, lam=LAMBDA if args.lam is None else args.lam, steps=args.steps or STEPS,
                      restarts=args.restarts or RESTARTS, blend=blend, generator=g, precision=args.precision or "fp32",
                      progress=not args.no_progress, levels=levels)
        made = "G(z*)"
    else:
        samples = args.samples or SAMPLES
        out = posterior_fill(model, y, mask, n_samples=samples, sigma=args.sigma, blend=blend, generator=g,
                             progress=not args.no_progress)
        made = "posterior mean"
        print(f"posterior mean from {samples:,} draws, sigma {out['sigma']:.3g}, "
              f"effective sample size {float(out['ess'].median()):.1f} (median)")
    # G(z*) of a model of dequantized data shown on the data's levels, as sample shows its draws (the posterior
    # mean is a mean of draws: between levels by nature)
    made_x = requantize(out["generated"], levels) if levels and method == "search" else out["generated"]
    panel = torch.cat([rgb(y), show_holes(y, mask), rgb(made_x), rgb(out["filled"])])  # (4N, 3, H, W)
    save_grid(panel, path, nrow=len(y), scale=2)
    _record_picture(path, args.run, stamp, _remake(args))
    print(f"wrote {path} (rows: image, masked input with its holes in blue, {made}, {blend}-blended)")
    if truth is not None:
        p = psnr(out["filled"], truth, 1 - mask)
        print(f"PSNR on the missing pixels: {float(p.mean()):.2f} dB (mean over {len(p)} image{'s' * (len(p) != 1)})")
    return 0


def cmd_report(args) -> int:
    from .viz.report import write_report

    from .io import CONFIG, is_run_dir

    if not Path(args.run).is_dir():
        raise CheckpointError(f"not a genzoo run: {args.run} is not a directory")
    if not is_run_dir(args.run):  # before the default output's check, whose "give -o" led nowhere here
        raise CheckpointError(f"not a genzoo run: {args.run} has no {CONFIG} beside weights, checkpoints or a "
                              f"run.json{_in_a_run(Path(args.run))}")
    out = _output_path(args.output, args.run, "report.html", ".html")
    print(f"wrote {write_report(args.run, out if args.output is not None else None)}")
    return 0


def _in_a_run(folder: Path) -> str:
    """Where ``folder`` lies in a run (its checkpoint, its samples/), the hint to give the run itself; else ""."""
    from .io import CHECKPOINTS, is_run_dir

    plain = folder.name not in ("", ".", "..") and ".." not in folder.parts  # its parents as given, else as resolved
    for up in ([folder.parent, folder.parent.parent] if plain else list(folder.resolve().parents)[:2]):
        if is_run_dir(up):
            what = ("a checkpoint" if folder.name.startswith("step-") and folder.parent.name == CHECKPOINTS
                    else f"{folder.name}/" if up == folder.parent else "a folder")
            return f": it is {what} of the run in {up}, which the report takes whole: genzoo report {_quoted(up)}"
    return ""


def cmd_bench(args) -> int:
    from . import bench
    from .io import blocked_by_file, check_writable

    for key in ("seeds", "steps", "jobs"):
        if getattr(args, key) is not None and getattr(args, key) < 1:
            raise ConfigError(f"--{key} must be >= 1")
    if args.minutes is not None and not (args.minutes > 0 and math.isfinite(args.minutes)):
        raise ConfigError("--minutes must be > 0 (and finite)")
    reads_jobs = args.name is None or "jobs" in bench.get(args.name).FLAGS  # (else refused as unused, and so said)
    if args.jobs is not None and reads_jobs and args.jobs > (os.cpu_count() or 1):
        raise ConfigError(f"--jobs {args.jobs} is more than the {os.cpu_count() or 1} CPUs here: each job is a training process")
    if args.no_write or args.quick:  # --quick writes no table
        args.output = None
    if args.name is not None and args.output is not None:  # (the list writes none: bench.main refuses a given one)
        check_output(args.output, "--output", suffix=".md")
        bench.read_markdown(args.output)
        check_writable(Path(args.output).resolve().parent, "--output")
    if args.name is not None and bench.writes_runs(bench.get(args.name), args.quick):
        if blocked_by_file(args.runs_dir or bench.RUNS_DIR):
            raise ConfigError(f"--runs-dir {args.runs_dir or bench.RUNS_DIR}: that path, or a part of it, is a file, not a folder")
    with sigterm_as_ctrl_c():  # one line and 143, as train (a benchmark that trains in this process was killed mute)
        return bench.main(args)


COMMANDS = {"models": cmd_models, "data": cmd_data, "train": cmd_train, "sample": cmd_sample, "eval": cmd_eval,
            "compare": cmd_compare, "interpolate": cmd_interpolate,
            "inpaint": cmd_inpaint, "report": cmd_report,
            "bench": cmd_bench}


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    (file or sys.stderr).write(f"genzoo: warning: {' '.join(str(message).split())}\n")


#: the options of a path, a spec or a recipe, by argparse dest, that an empty value (an unset shell variable, as in
#: ``--config "$RECIPE"``) would turn off without a word: what each needs (--data, --run-dir, -o, --device and --mask
#: say it where they are read)
NOT_BLANK = {"config": "a recipe file (a TOML file, see configs/)", "data_root": "a folder (of MNIST's files)",
             "root": "a folder to download into", "runs_dir": "a folder", "arithmetic": "A-B+C test indices, e.g. "
             "1,2,3-4,5,6+7,8,9", "image": "an image file"}


def _check_not_blank(args) -> None:
    """A ConfigError for an option of :data:`NOT_BLANK` given as an empty string (or blanks)."""
    for dest, what in NOT_BLANK.items():
        value = getattr(args, dest, None)
        if any(not str(v).strip() for v in (value if isinstance(value, list) else [value]) if v is not None):
            flag = "--" + dest.replace("_", "-")
            raise ConfigError(f"{flag} needs {what}, got an empty value")


def main(argv: list[str] | None = None) -> int:
    """Run the ``genzoo`` command line ``argv`` (default ``sys.argv[1:]``); return its exit status.

    >>> main(["train", "vae", "--config", ""])
    2
    """
    import warnings

    shown = warnings.showwarning
    warnings.showwarning = _one_line_warning  # a warning on the command line is one line too, with no source line
    try:
        args = parse(argv)  # (in the try: a Ctrl-C while it imports is one line, as later)
        args.argv = list(sys.argv[1:] if argv is None else argv)  # what run.json records: main([...]) from Python too
        _check_not_blank(args)
        world = os.environ.get("WORLD_SIZE", "").strip()
        try:  # read as train reads it (which refuses what is not a whole number)
            several = int(world) > 1
        except ValueError:
            several = False
        if args.command not in ("train", "models", "data") and several:  # each would do the whole work and write it
            raise ConfigError(f"only `genzoo train` runs on several processes (WORLD_SIZE={world}): run `genzoo "
                              f"{args.command}` as one process (without torchrun, or with WORLD_SIZE unset)")
        # SIGTERM ends every command as Ctrl-C does, in one line (exit 143; train and bench stop in their own ways);
        # torch and numpy imported whole, with both signals held off (a Ctrl-C inside numpy's import was lost there)
        with sigterm_as_ctrl_c():
            _import_whole()
            return COMMANDS[args.command](args)
    except GenZooError as e:
        sys.stderr.write(f"genzoo: error: {e}\n")
        return e.exit_code
    except BrokenPipeError:  # `genzoo data | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt as e:  # training reports its own interruption (see cmd_train)
        terminated = isinstance(e, Terminated)
        sys.stderr.write("genzoo: terminated (SIGTERM)\n" if terminated else "genzoo: interrupted\n")
        return 143 if terminated else 130
    except PermissionError as e:  # a recipe, run file or folder this user may not read or write: the user's to fix
        if os.environ.get("GENZOO_DEBUG", "0") not in ("", "0"):
            raise
        where = e.filename if e.filename2 is None else f"{e.filename} -> {e.filename2}"
        where = where or " ".join(str(e).split())
        sys.stderr.write(f"genzoo: error: permission denied: {where} (its permissions, or its folder's, do not let "
                         "this user use it: change them, or run as its owner)\n")
        return 2
    except Exception as e:  # never a bare traceback: name the failure in one line (GENZOO_DEBUG=1 shows it whole)
        if os.environ.get("GENZOO_DEBUG", "0") not in ("", "0"):
            raise
        sys.stderr.write(f"genzoo: error: {_unexpected(e)}\n")
        return 1
    finally:
        warnings.showwarning = shown


def _under_torchrun(distributed) -> bool:
    try:
        return distributed.launched_by_torchrun()
    except ConfigError:  # a WORLD_SIZE that is no number: said where it is read
        return False


def _unexpected(e: Exception) -> str:
    """One line for an exception genzoo did not raise itself: out of memory, an OS error, or a bug."""
    text = " ".join(str(e).split())
    if isinstance(e, MemoryError) or "can't allocate memory" in text or "out of memory" in text.lower():
        return "out of memory: the sizes asked for (samples, widths, batch) do not fit; ask for smaller ones"
    if isinstance(e, OSError):
        return f"{e.strerror or text}{': ' + str(e.filename) if e.filename else ''}"
    distributed = sys.modules.get("genzoo.train.distributed")  # not imported: one process (and no half-loaded torch)
    # (asked of torchrun's WORLD_SIZE, not of the process group: train has left the group by the time this runs)
    if distributed is not None and isinstance(e, RuntimeError) and _under_torchrun(distributed):  # gloo / NCCL report a peer that exited as a RuntimeError
        short = text if len(text) <= 200 else text[:200].rsplit(" ", 1)[0] + " ..."  # cut at a word
        return (f"{type(e).__name__} under torchrun: {short} (if another process of this run printed an error, "
                "before or after this line, that is the cause: it stopped, and this one lost it; else GENZOO_DEBUG=1 "
                "shows the traceback)")
    return (f"unexpected {type(e).__name__}: {text[:300]} (this is a bug in genzoo or an input it does not check; "
            "GENZOO_DEBUG=1 shows the traceback)")


if __name__ == "__main__":
    sys.exit(main())
