"""The recipe that made the shipped feature classifiers (``genzoo/eval/weights/``).

    python -m genzoo.eval.train_classifier mnist --root DIR --out NEW     # DIR: the four MNIST IDX files
    python -m genzoo.eval.train_classifier digits --out NEW

Trains :class:`~genzoo.eval.features.DigitClassifier` on the ``train`` split with Adam, a cosine
learning-rate decay and random shifts of the images (zero fill) as the only augmentation, single
threaded and seeded, then measures accuracy on the ``valid`` and ``test`` splits (which training
never sees) and writes ``{name}-classifier.safetensors`` and ``{name}-classifier.json`` (the
architecture, this recipe, versions, the CPU and its vector instruction set, accuracies, the weights'
sha256 and the command) into ``--out`` (default: the package's weights folder, over the shipped
classifier). ``--out`` is created and tried for writing before the training, and the folders made for it are
removed again, where still empty, should the run fail (missing data, say); the record is written
last (:func:`save_classifier`).

The weights reproduce bit for bit only on the same torch build and the same CPU instruction set
(``torch.backends.cpu.get_cpu_capability()``, recorded as ``cpu_capability``): the shipped digits
classifier was trained on an AVX512 machine, and the same recipe, torch and data on an AVX2 one give
other weights (test accuracy 0.9900 against the shipped 0.9867). Every feature metric (FID, KID,
precision/recall, density/coverage, IS) depends on the weights, so a retrained classifier gives other
figures than those in genzoo's tables: write it to another ``--out`` rather than over the shipped one.

>>> x = torch.arange(16.0).reshape(1, 1, 4, 4)
>>> random_shift(x, 1, torch.Generator().manual_seed(0)).shape
torch.Size([1, 1, 4, 4])
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save as safetensors_bytes
from torch import Tensor

from ..data import load_dataset
from ..errors import GenZooError, WriteError
from ..io import atomic_write_bytes, atomic_write_json, check_writable
from .features import CLASSIFIERS, WEIGHTS_DIR, DigitClassifier

#: one recipe per shipped classifier; every number that shapes the weights is here
RECIPES: dict[str, dict] = {
    "mnist": {
        "architecture": {"image_size": 28, "channels": [16, 32, 64], "features": 128, "n_classes": 10, "dropout": 0.25},
        "optimizer": "Adam", "lr": 2e-3, "weight_decay": 0.0, "schedule": "cosine to 0, per step",
        "epochs": 12, "batch_size": 128, "shift": 2, "seed": 0,
    },
    "digits": {
        "architecture": {"image_size": 8, "channels": [32, 64], "features": 64, "n_classes": 10, "dropout": 0.25},
        "optimizer": "Adam", "lr": 2e-3, "weight_decay": 0.0, "schedule": "cosine to 0, per step",
        "epochs": 150, "batch_size": 64, "shift": 1, "seed": 0,
    },
}


def random_shift(x: Tensor, shift: int, generator: torch.Generator) -> Tensor:
    """Translate each image of (B, C, H, W) ``x`` by its own random (dy, dx) in [-shift, shift], zero fill."""
    if shift == 0:
        return x
    b, c, h, w = x.shape
    padded = F.pad(x, (shift, shift, shift, shift))                               # (B, C, H + 2s, W + 2s)
    oy, ox = torch.randint(0, 2 * shift + 1, (2, b, 1), generator=generator)      # (B, 1) each
    rows = oy + torch.arange(h)                                                   # (B, H)
    cols = ox + torch.arange(w)                                                   # (B, W)
    idx = torch.arange(b)[:, None, None]                                          # (B, 1, 1)
    return padded.permute(0, 2, 3, 1)[idx, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)  # (B, C, H, W)


@torch.no_grad()
def accuracy(model: DigitClassifier, x: Tensor, y: Tensor, batch_size: int = 1000) -> float:
    """Share of (N, 1, S, S) images ``x`` whose predicted class is ``y``, in eval mode."""
    model.eval()
    hits = sum(int((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum()) for i in range(0, len(x), batch_size))
    return hits / len(x)


def train(name: str, root: str | None = None, log=print) -> tuple[DigitClassifier, dict]:
    """Train classifier ``name`` by :data:`RECIPES`; return it (eval mode) and its JSON record."""
    recipe = RECIPES[name]
    torch.set_num_threads(1)
    torch.manual_seed(recipe["seed"])
    gen = torch.Generator().manual_seed(recipe["seed"])
    splits = {s: load_dataset(name, s, root=root) for s in ("train", "valid", "test")}
    x, y = splits["train"].x, splits["train"].y                # (N, 1, S, S), (N,)
    model = DigitClassifier(**{**recipe["architecture"], "channels": tuple(recipe["architecture"]["channels"])})
    opt = torch.optim.Adam(model.parameters(), lr=recipe["lr"], weight_decay=recipe["weight_decay"])
    steps_per_epoch = math.ceil(len(x) / recipe["batch_size"])
    total = recipe["epochs"] * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.5 * (1 + math.cos(math.pi * t / total)))
    start = time.perf_counter()
    for epoch in range(recipe["epochs"]):
        model.train()
        perm = torch.randperm(len(x), generator=gen)
        running = 0.0
        for i in range(0, len(x), recipe["batch_size"]):
            idx = perm[i:i + recipe["batch_size"]]
            xb = random_shift(x[idx], recipe["shift"], gen)    # (B, 1, S, S)
            loss = F.cross_entropy(model(xb), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            running += loss.item() * len(idx)
        log(f"{name} epoch {epoch + 1}/{recipe['epochs']}: loss {running / len(x):.4f}, "
            f"valid accuracy {accuracy(model, splits['valid'].x, splits['valid'].y):.4f} "
            f"({time.perf_counter() - start:.0f} s)")
    seconds = time.perf_counter() - start
    model.eval()
    record = {
        "name": name,
        "dataset": name,
        "architecture": recipe["architecture"],
        "recipe": {
            **{k: v for k, v in recipe.items() if k != "architecture"},
            "train_split": f"train ({len(x)} images)",
            "loss": "cross-entropy",
            "augmentation": f"random shift of each image by up to +-{recipe['shift']} pixels in x and y, zero fill",
            "threads": 1,
        },
        "train_accuracy": accuracy(model, x, y),
        "valid_accuracy": accuracy(model, splits["valid"].x, splits["valid"].y),
        "test_accuracy": accuracy(model, splits["test"].x, splits["test"].y),
        "n_test": len(splits["test"]),
        "train_seconds": round(seconds, 1),
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "machine": f"{platform.machine()} {platform.system()}",
        "cpu": cpu_model(),
        # the vector ISA torch's kernels use (AVX2, AVX512, ...): another one rounds otherwise, giving other weights
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "command": f"python -m genzoo.eval.train_classifier {name}" + (" --root DIR" if name == "mnist" else ""),
    }
    return model, record


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else :func:`platform.processor`, else ``"unknown"``."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "unknown")
    except OSError:
        return platform.processor() or "unknown"


def check_out(out: str | Path, name: str) -> Path:
    """``out`` created if missing and tried for writing, and the two files' places free of folders, before the
    training: a :class:`WriteError` (or OSError) now rather than after it."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WriteError(f"--out {out}: cannot make the folder ({e.strerror or e})") from None
    check_writable(out, "--out")
    for f in (f"{name}-classifier.safetensors", f"{name}-classifier.json"):
        if (out / f).exists() and not (out / f).is_file():
            raise WriteError(f"--out {out}: {f} there is not a file")
    return out


def _missing_folders(out: Path) -> list[Path]:
    """The folders :func:`check_out` will make for ``out``, deepest first: ``out`` and its parents that do not exist."""
    made, p = [], out.absolute()
    while not os.path.lexists(p) and p != p.parent:
        made.append(p)
        p = p.parent
    return made


def _remove_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (deepest first) where they are empty; stop at the first that is not (or is gone)."""
    for f in folders:
        try:
            f.rmdir()  # an empty folder only: never anything written into it
        except OSError:
            return


def save_classifier(model: DigitClassifier, record: dict, out: str | Path) -> tuple[Path, Path]:
    """Write ``{name}-classifier.safetensors`` and ``.json`` (the record, with the weights' sha256) into the folder
    ``out``, record last: the record goes to a temporary file, the weights replace the old ones atomically, then
    the record is renamed over the old one. A failure before that rename leaves both old files as they were; should
    the rename itself fail (one folder: practically never), the new weights sit beside the old record, whose
    ``weights_sha256`` no longer matches them, and :func:`~genzoo.eval.features.load_classifier` refuses the pair."""
    out = Path(out)
    # one metadata key: safetensors orders several at random, and the file's sha256 should be reproducible
    # (on the same torch build and CPU instruction set: see the module docstring)
    blob = safetensors_bytes({k: v.detach().contiguous() for k, v in model.state_dict().items()}, metadata={"format": "pt"})
    weights, info = out / f"{record['name']}-classifier.safetensors", out / f"{record['name']}-classifier.json"
    pending = out / f".{info.name}.new"
    try:
        atomic_write_json(pending, {**record, "weights_sha256": hashlib.sha256(blob).hexdigest()})
        pending.chmod(0o644)  # package data: readable by everyone, whatever the umask
        atomic_write_bytes(weights, blob)
        weights.chmod(0o644)
        os.replace(pending, info)
    finally:
        pending.unlink(missing_ok=True)  # (gone after the rename; a failure before it leaves no stray file)
    return weights, info


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m genzoo.eval.train_classifier", description=__doc__.split("\n")[0])
    p.add_argument("name", choices=CLASSIFIERS)
    p.add_argument("--root", "--data-root", dest="root", help="folder of the MNIST IDX files (default: $GENZOO_DATA)")
    p.add_argument("--out", default=str(WEIGHTS_DIR),
                   help="folder to write the weights and record to (default: %(default)s, over the shipped classifier; "
                   "give another folder: a retrained classifier changes every feature metric)")
    args = p.parse_args(argv)
    # a new --out whose run fails (MNIST not found, checked only once the folder is made) leaves no empty folder behind
    made = _missing_folders(Path(args.out))
    done = False
    try:
        out = check_out(args.out, args.name)  # before the training (minutes), not after it
        model, record = train(args.name, args.root)
        weights, info = save_classifier(model, record, out)
        done = True
    except GenZooError as e:
        print(f"train_classifier: error: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:  # a chmod or rename that failed: one line, as the GenZooErrors
        print(f"train_classifier: error: cannot write into {args.out}: {e.strerror or e}", file=sys.stderr)
        return 2
    finally:
        if not done:  # (also on Ctrl-C or an unexpected error)
            _remove_empty(made)
    print(f"test accuracy {record['test_accuracy']:.4f} in {record['train_seconds']} s; wrote {weights} and {info}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
