"""The ``genzoo`` command line: models, data, train, sample, eval, bench.

Every problem a user can fix ends in one line, ``genzoo: error: ...``, and exit status 2 (3 when
training diverged); nothing already written is lost.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from .errors import CheckpointError, ConfigError, DataError, GenZooError

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


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="genzoo", description="Deep generative models: one interface, one trainer, one CLI.",
                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    from . import __version__

    p.add_argument("--version", action="version", version=f"genzoo {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    m = sub.add_parser("models", help="list the models, or one model's options")
    m.add_argument("name", nargs="?", help="show this model's options (the keys of --set) with defaults")

    d = sub.add_parser("data", help="list datasets, or download MNIST")
    d.add_argument("action", nargs="?", choices=["list", "download"], default="list")
    d.add_argument("name", nargs="?", default="mnist")
    d.add_argument("--root", help="folder to download into")

    t = sub.add_parser("train", help="train a model; writes a run directory")
    t.add_argument("model", nargs="?", help="model name (see `genzoo models`); optional with --config")
    t.add_argument("--data", help="dataset name, .npz file or image folder (default: the model's, e.g. digits)")
    t.add_argument("--data-root", help="folder of the dataset files (MNIST); default: $GENZOO_DATA")
    g = t.add_mutually_exclusive_group()
    g.add_argument("--steps", type=int, help="training steps")
    g.add_argument("--epochs", type=float, help="training epochs")
    t.add_argument("--batch-size", type=int)
    t.add_argument("--config", help="TOML recipe (see configs/)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a model, data or train option, e.g. --set latent_dim=8 (repeatable)")
    t.add_argument("--run-dir", help="where the run is written (default: runs/MODEL-DATA-TIME)")
    t.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its newest checkpoint")
    t.add_argument("--seed", type=int)
    t.add_argument("--checkpoint-every", type=int)
    t.add_argument("--sample-every", type=int)
    t.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")

    s = sub.add_parser("sample", help="draw samples from a trained run and save a picture")
    s.add_argument("run", help="run directory")
    s.add_argument("-n", type=int, default=64, help="number of samples (default 64)")
    s.add_argument("-o", "--output", default=None, help="PNG to write (default RUN/samples.png)")
    s.add_argument("--seed", type=int, default=0)

    e = sub.add_parser("eval", help="test likelihoods of a run (written to RUN/eval.json)")
    e.add_argument("run", help="run directory")
    e.add_argument("--split", default="test", choices=["train", "valid", "test"])
    e.add_argument("--iwae-k", type=int, default=5000, help="importance samples for the IWAE bound (default 5000)")
    e.add_argument("-n", type=int, default=None, help="evaluate the first N examples only")
    e.add_argument("--batch-size", type=int, default=100)
    e.add_argument("--data-root", help="override the data root recorded in the run")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--no-progress", action="store_true")
    b = sub.add_parser("bench", help="reproduce a published table; writes it to BENCHMARKS.md")
    b.add_argument("name", nargs="?", help="the benchmark (none: list them)")
    b.add_argument("--quick", action="store_true", help="a tiny version to check it runs; writes nothing")
    b.add_argument("--seeds", type=int, help="seeds per configuration (default: the benchmark's)")
    b.add_argument("--steps", type=int, help="training steps per run (default: the benchmark's)")
    b.add_argument("--minutes", type=float, help="CPU budget per training run, for the budgeted benchmarks (nice-mnist, realnvp-mnist)")
    b.add_argument("--data-root", help="folder of the MNIST files (default: $GENZOO_DATA, else ../shared/data/mnist)")
    b.add_argument("--jobs", type=int, default=min(os.cpu_count() or 1, 4), help="runs in parallel (default: CPU count, at most 4)")
    b.add_argument("--runs-dir", default="runs/bench", help="where the benchmark's runs and pictures go (default runs/bench)")
    b.add_argument("--output", default="BENCHMARKS.md", help="Markdown file to write the table into (default BENCHMARKS.md)")
    b.add_argument("--no-write", dest="output", action="store_const", const=None, help="print the table only")
    b.add_argument("--no-progress", action="store_true")
    return p


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
    print(f"{args.name}: {cls.description}\noptions (--set KEY=VALUE):")
    for key, p in options(args.name).items():
        hint = hints.get(key, "")
        kind = hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")
        print(f"  {key:<14} = {p.default!r:<14} {kind}")
    return 0


def cmd_data(args) -> int:
    from .data import download_mnist, list_datasets

    if args.action == "list":
        from .data import dataset_options

        for name, desc in list_datasets().items():
            opts = ", ".join(f"{k}={v}" for k, v in dataset_options(name).items())
            print(f"{name:<14} {desc}" + (f"\n{'':<14} options (--set data.KEY=VALUE): {opts}" if opts else ""))
        print("or a .npz file (array x, optional y) or a folder of PNG/JPEG images: --data PATH")
        return 0
    if args.name != "mnist":
        raise DataError(f"only mnist can be downloaded, not '{args.name}'")
    root = args.root or os.environ.get("GENZOO_DATA")
    if not root:
        raise DataError("give a folder to download into: --root DIR (or set GENZOO_DATA)")
    download_mnist(root)
    print(f"MNIST is in {root}")
    return 0


def _device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda", "mps") and not name.startswith("cuda:"):
        raise ConfigError(f"unknown device '{name}': use cpu, cuda or auto")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda asked for, but torch sees no CUDA device")
    return torch.device(name)


def load_data(spec: dict, split: str):
    """A Dataset from a run's data spec (name, root, binarize, dequantize, n, dataset params)."""
    from .data import load_dataset

    spec = dict(spec)
    name = spec.pop("name")
    if split != "train":
        spec.pop("n", None)  # a size limit applies to the training split only
    return load_dataset(name, split, **spec)


def _train_defaults() -> dict:
    """fit()'s own defaults for the recipe's [train] keys, with sample grids on for CLI runs."""
    import inspect

    from .recipes import TRAIN_KEYS
    from .train import fit

    params = inspect.signature(fit).parameters
    out = {k: params[k].default for k in TRAIN_KEYS if k in params and params[k].default is not None}
    out["sample_every"] = 500
    return out


def _resolve(args) -> tuple[dict, dict, dict]:
    """(recipe, model options, the model's default data transform): the model's defaults < the
    recipe < the flags < --set. The transform applies only to discrete data (see cmd_train)."""
    from .recipes import apply_sets, load_recipe, new_recipe
    from .registry import get

    recipe = load_recipe(args.config) if args.config else new_recipe()
    name = args.model or recipe["model"].get("name")
    if not name:
        raise ConfigError("name a model: `genzoo train MODEL` (see `genzoo models`)")
    if args.model and recipe["model"].get("name") not in (None, args.model):
        raise ConfigError(f"the recipe {args.config} is for model '{recipe['model']['name']}', not '{args.model}'")
    recipe["model"]["name"] = name
    cls = get(name)
    if args.data:
        recipe["data"]["name"] = args.data
    if args.data_root:
        recipe["data"]["root"] = str(Path(args.data_root).resolve())
    for key in ("steps", "epochs", "batch_size", "seed", "checkpoint_every", "sample_every"):
        if getattr(args, key) is not None:
            recipe["train"][key] = getattr(args, key)
    if args.steps is not None:
        recipe["train"].pop("epochs", None)
    if args.epochs is not None:
        recipe["train"].pop("steps", None)
    recipe = apply_sets(recipe, args.set)
    model_kw = {k: v for k, v in recipe["model"].items() if k != "name"}
    defaults = cls.defaults(model_kw)
    recipe["data"].setdefault("name", defaults["data"]["name"])
    transform = {}
    if not {"binarize", "dequantize"} & recipe["data"].keys():  # the user chose none
        transform = {k: v for k, v in defaults["data"].items() if k in ("binarize", "dequantize")}
    train = _train_defaults()
    model_train = dict(defaults["train"])
    if {"steps", "epochs"} & recipe["train"].keys():  # the user's length replaces the model's
        model_train.pop("steps", None)
        model_train.pop("epochs", None)
    train.update(model_train)
    train.update(recipe["train"])
    recipe["train"] = train
    return recipe, model_kw, transform


def _int(train: dict, key: str) -> int | None:
    from .registry import coerce

    return None if train.get(key) is None else coerce(train[key], int, f"train.{key}")


def cmd_train(args) -> int:
    import torch

    from . import __version__
    from .io import atomic_write_json, latest_checkpoint
    from .registry import build, coerce
    from .train import fit

    run_dir = Path(args.run_dir) if args.run_dir else None
    if args.resume:
        if run_dir is None:
            raise ConfigError("--resume needs --run-dir DIR (the run to continue)")
        if not (run_dir / "run.json").is_file():
            raise CheckpointError(f"nothing to resume: {run_dir} has no run.json")
        fixed = [f for f, v in (("MODEL", args.model), ("--config", args.config), ("--data", args.data),
                                ("--set", args.set), ("--seed", args.seed), ("--batch-size", args.batch_size)) if v]
        if fixed:
            raise ConfigError(f"--resume continues the run as recorded in its run.json: drop {', '.join(fixed)} "
                              "(only --steps or --epochs may change)")
        recipe, transform = read_recipe(run_dir), {}
        model_kw = {k: v for k, v in recipe["model"].items() if k != "name"}
        if args.steps is not None:
            recipe["train"]["steps"], recipe["train"]["epochs"] = args.steps, None
        if args.epochs is not None:
            recipe["train"]["epochs"], recipe["train"]["steps"] = args.epochs, None
    else:
        recipe, model_kw, transform = _resolve(args)
    train = recipe["train"]
    seed = _int(train, "seed") or 0
    device = _device(args.device)

    data = load_data(recipe["data"], "train")
    if transform and data.levels is not None:
        recipe["data"].update(transform)
        data = load_data(recipe["data"], "train")
    valid = load_data(recipe["data"], "valid")
    valid = valid if len(valid) else None  # a tiny user dataset may have no validation split
    torch.manual_seed(seed)
    model = build(recipe["model"]["name"], data_shape=data.shape, **model_kw).to(device)

    if run_dir is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        run_dir = Path("runs") / f"{model.name}-{Path(str(data.name)).stem}-{stamp}"
    if not args.resume and run_dir.exists() and ((run_dir / "config.json").exists() or latest_checkpoint(run_dir)):
        raise ConfigError(f"{run_dir} already holds a run: continue it with --resume, or choose another --run-dir")
    steps, epochs = _int(train, "steps"), train.get("epochs")
    epochs = coerce(epochs, float, "train.epochs") if epochs is not None and steps is None else None
    if steps is None and epochs is None:
        raise ConfigError("give --steps N or --epochs N")
    new_dir = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    if not args.resume:
        atomic_write_json(run_dir / "run.json", {"genzoo_version": __version__, "recipe": recipe,
                                                 "command": ["genzoo", *sys.argv[1:]], "created": time.strftime("%Y-%m-%d %H:%M:%S")})
    print(f"genzoo: training {model.name} on {data.name} ({data.space}, {len(data)} examples, shape {data.shape}) "
          f"-> {run_dir}", file=sys.stderr)
    t0 = time.time()
    try:
        state = fit(model, data, steps=steps, epochs=epochs, batch_size=_int(train, "batch_size"), seed=seed,
                    run_dir=run_dir, resume=args.resume, checkpoint_every=_int(train, "checkpoint_every"),
                    sample_every=_int(train, "sample_every"), log_every=_int(train, "log_every"),
                    keep=_int(train, "keep"), valid=valid, progress=not args.no_progress,
                    lr_schedule=str(train.get("lr_schedule", "constant")),
                    max_minutes=None if train.get("max_minutes") is None else coerce(train["max_minutes"], float, "train.max_minutes"))
    except GenZooError:
        if new_dir and latest_checkpoint(run_dir) is None:  # a run that never started leaves no folder
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    print(f"genzoo: {state.step} steps in {time.time() - t0:.1f} s; run in {run_dir}", file=sys.stderr)
    _density_picture(model, data, run_dir)
    return 0


def _density_picture(model, data, run_dir: Path) -> None:
    """For a model with an exact density on 2-D data: RUN/density.png, the model density beside the true one."""
    from .base import Density

    if not isinstance(model, Density) or tuple(data.shape) != (2,):
        return
    from .viz.plots import save_density

    truth = getattr(data, "density", None)
    box = truth.bounds() if truth is not None else [(float(data.x[:, i].min()), float(data.x[:, i].max())) for i in range(2)]
    bounds = [(lo - 0.15 * (hi - lo), hi + 0.15 * (hi - lo)) for lo, hi in box]
    model.eval()
    save_density(model.log_prob, run_dir / "density.png", bounds, title=model.name, density=truth)
    print(f"genzoo: density picture in {run_dir / 'density.png'}", file=sys.stderr)


def read_recipe(run_dir: Path) -> dict:
    """The resolved recipe a run was trained with (its run.json), checked."""
    from .io import read_json

    run = read_json(Path(run_dir) / "run.json", "run file")
    recipe = run.get("recipe")
    if not isinstance(recipe, dict) or not all(isinstance(recipe.get(k), dict) for k in ("model", "data", "train")):
        raise CheckpointError(f"{Path(run_dir) / 'run.json'} is not a genzoo run file (no model/data/train recipe)")
    return recipe


def _run(path: str):
    from .io import load

    run = Path(path)
    if not run.is_dir():
        raise CheckpointError(f"not a genzoo run: {run} is not a directory")
    return load(run)


def cmd_sample(args) -> int:
    import torch

    from .viz import save_samples

    if args.n < 1:
        raise ConfigError("-n must be >= 1")
    model = _run(args.run)
    density = None
    run_file = Path(args.run) / "run.json"
    if run_file.is_file():
        try:
            density = load_data(read_recipe(Path(args.run))["data"], "test").density
        except GenZooError:
            density = None  # the picture does without the true density
    out = Path(args.output) if args.output else Path(args.run) / "samples.png"
    if out.parent and not out.parent.exists():
        raise ConfigError(f"output folder {out.parent} does not exist")
    x = model.sample(args.n, generator=torch.Generator(device=model.device).manual_seed(args.seed))
    save_samples(x, out, title=f"{model.name}: {args.n} samples", density=density)
    print(f"wrote {out}")
    return 0


def cmd_eval(args) -> int:
    from .eval.likelihood import format_table, likelihood_report
    from .io import atomic_write_json

    model = _run(args.run)
    if not (Path(args.run) / "run.json").is_file():
        raise CheckpointError(f"{args.run} has no run.json: it was not written by `genzoo train`")
    spec = dict(read_recipe(Path(args.run))["data"])
    if args.data_root:
        spec["root"] = str(Path(args.data_root).resolve())
    data = load_data(spec, args.split)
    if len(data) == 0:
        raise DataError(f"the {args.split} split of '{data.name}' is empty: nothing to evaluate")
    report = likelihood_report(model, data, iwae_k=args.iwae_k, batch_size=args.batch_size, seed=args.seed,
                               n=args.n, progress=not args.no_progress)
    print(format_table(report))
    atomic_write_json(Path(args.run) / "eval.json", report)
    return 0


def cmd_bench(args) -> int:
    from . import bench

    for key in ("seeds", "steps", "jobs"):
        if getattr(args, key) is not None and getattr(args, key) < 1:
            raise ConfigError(f"--{key} must be >= 1")
    if args.minutes is not None and not args.minutes > 0:
        raise ConfigError("--minutes must be > 0")
    return bench.main(args)


COMMANDS = {"models": cmd_models, "data": cmd_data, "train": cmd_train, "sample": cmd_sample, "eval": cmd_eval,
            "bench": cmd_bench}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except GenZooError as e:
        sys.stderr.write(f"genzoo: error: {e}\n")
        return e.exit_code
    except BrokenPipeError:  # `genzoo data | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        sys.stderr.write("genzoo: interrupted; checkpoints written so far are intact (resume with --resume)\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
