"""Datasets by name: toy densities, digits, MNIST, and the user's own ``.npz`` files or image folders.

``load_dataset(name, split)`` returns a :class:`Dataset` (float32 ``x``, optional labels ``y``,
the number of discrete ``levels``, and the per-batch transform: dynamic binarization or uniform
dequantization). ``name`` is a registered name (see :func:`list_datasets`), a path to a ``.npz``
file or to a folder of images, or one of the explicit forms ``npz:PATH`` / ``folder:PATH``.
Options of a dataset are keyword arguments; values may be strings from the command line.

>>> from genzoo.data import load_dataset
>>> ds = load_dataset("ring", "test", n=100, n_modes="4")
>>> len(ds), ds.shape, ds.space, ds.density.centres.shape
(100, (2,), 'continuous', torch.Size([4, 2]))
>>> load_dataset("rnig")
Traceback (most recent call last):
...
genzoo.errors.DataError: unknown dataset 'rnig' (did you mean 'ring'?); known: checkerboard, digits, grid, mixture1d, mnist, moons, ring, spirals (or a .npz file or an image folder)
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import typing
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import ConfigError, DataError, GenZooWarning, did_you_mean
from ..registry import coerce
from . import toy
from .dataset import SPLITS, Dataset, check_n, check_split
from .images import image_files, load_digits, load_folder, load_npz, split_fingerprint
from .mnist import DEFAULT_MIRRORS, ENV_VAR, MNIST_MD5, download_mnist, load_mnist, mnist_fingerprint, read_idx
from .toy import ToyDensity

__all__ = [
    "Dataset", "ToyDensity", "SPLITS", "load_dataset", "load_spec", "list_datasets", "dataset_options",
    "download_mnist", "DEFAULT_MIRRORS", "MNIST_MD5", "read_idx", "COMMON_OPTIONS", "is_toy",
]


@dataclass(frozen=True)
class _Entry:
    load: Callable[..., Dataset]  # load(split, n=, seed=, root=, **params)
    description: str
    params: dict[str, tuple[Any, Any]]  # option -> (type hint, default)
    toy: bool = False  # a toy set: drawn, so the data seed changes its points (:func:`is_toy`)


def _params_of(fn: Callable, skip: tuple[str, ...] = ()) -> dict[str, tuple[Any, Any]]:
    hints = typing.get_type_hints(fn)
    return {
        k: (hints.get(k, type(p.default)), p.default)
        for k, p in inspect.signature(fn).parameters.items()
        if k not in skip and p.default is not inspect.Parameter.empty
    }


def _toy_entry(name: str, factory: Callable[..., ToyDensity], description: str) -> _Entry:
    def load(split: str, *, n: int | None, seed: int, root: str | None, **params: Any) -> Dataset:
        return toy.load_toy(name, factory(**params), split, n=n, seed=seed)

    return _Entry(load, description, _params_of(factory), toy=True)


_DATASETS: dict[str, _Entry] = {
    "ring": _toy_entry("ring", toy.ring, "2-D: equal mixture of Gaussians on a circle (exact density)"),
    "grid": _toy_entry("grid", toy.grid, "2-D: equal mixture of Gaussians on a square grid (exact density)"),
    "moons": _toy_entry("moons", toy.moons, "2-D: two interleaving half circles plus noise (density by quadrature)"),
    "spirals": _toy_entry("spirals", toy.spirals, "2-D: two interleaved spirals plus noise (density by quadrature)"),
    "checkerboard": _toy_entry(
        "checkerboard", toy.checkerboard, "2-D: uniform on the black squares of a checkerboard (exact density)"
    ),
    "mixture1d": _toy_entry("mixture1d", toy.mixture1d, "1-D: Gaussian mixture (exact density)"),
    "digits": _Entry(
        lambda split, *, n, seed, root: load_digits(split, n=n),
        "8x8 handwritten digits from scikit-learn, 17 levels (1297/200/300 split, no download)",
        {},
    ),
    "mnist": _Entry(
        lambda split, *, n, seed, root: load_mnist(split, root=root, n=n),
        "MNIST 28x28, 256 levels (50k/10k/10k split; needs --data-root or GENZOO_DATA)",
        {},
    ),
}

_FOLDER_PARAMS = _params_of(load_folder, skip=("path", "split", "n"))


def list_datasets() -> dict[str, str]:
    """Registered dataset name -> one-line description (``.npz`` files and folders are not listed).

    >>> names = list_datasets()
    >>> list(names) == sorted(names), "ring" in names, "moons" in names
    (True, True, True)
    >>> names["moons"]
    '2-D: two interleaving half circles plus noise (density by quadrature)'
    """
    return {k: _DATASETS[k].description for k in sorted(_DATASETS)}


def dataset_options(name: str) -> dict[str, Any]:
    """The options of a registered dataset and their defaults.

    >>> dataset_options("ring")
    {'n_modes': 8, 'radius': 1.0, 'std': 0.01}
    """
    kind, target = _resolve(name)
    if kind == "folder":
        return {k: d for k, (_, d) in _FOLDER_PARAMS.items()}
    if kind == "npz":
        return {}
    return {k: d for k, (_, d) in _DATASETS[target].params.items()}


def is_toy(name: str) -> bool:
    """Whether ``name`` is a registered toy set, whose points the data ``seed`` draws (it changes nothing of the
    others: digits, MNIST, .npz files and folders).

    >>> is_toy("ring"), is_toy("digits"), is_toy("npz:/data/x.npz")
    (True, False, False)
    """
    entry = _DATASETS.get(name) if isinstance(name, str) else None
    return bool(entry and entry.toy)


# -- option values from the command line ----------------------------------------------------

def _coerce(dataset: str, key: str, value: Any, hint: Any) -> Any:
    """Convert ``value`` (possibly a string from the command line) to ``hint``, as model options are."""
    try:
        return coerce(value, hint, f"dataset '{dataset}' option {key}")
    except ConfigError as e:
        raise DataError(str(e)) from None


#: the options every dataset takes (:func:`load_dataset`'s own keywords; ``--set data.KEY=VALUE``)
COMMON_OPTIONS = {
    "n": f"the first n training examples (toy sets: n draws, at most {toy.TOY_MAX_N:,})",
    "binarize": "dynamic binarization, a Bernoulli draw per pixel each time a batch is taken (image sets)",
    "dequantize": "uniform dequantization, (level + U[0, 1)) / levels (image sets)",
    "seed": "the toy sets' draws",
    "root": "the folder of MNIST's files (else $GENZOO_DATA)",
}


def _check_params(dataset: str, spec: dict[str, tuple[Any, Any]], params: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in params.items():
        if key not in spec:
            valid = f"its own options: {', '.join(spec)}" if spec else "it has no options of its own"
            raise DataError(f"dataset '{dataset}' has no option '{key}'{did_you_mean(key, [*spec, *COMMON_OPTIONS])}; "
                            f"{valid} (and every dataset's: {', '.join(COMMON_OPTIONS)})")
        out[key] = _coerce(dataset, key, value, spec[key][0])
    return out


# -- loading --------------------------------------------------------------------------------


def _resolve(name: str | os.PathLike) -> tuple[str, str]:
    """("registered" | "npz" | "folder", name or path)."""
    if not isinstance(name, (str, os.PathLike)):
        raise DataError(f"dataset name must be a string or a path, got {type(name).__name__}")
    s = os.fspath(name)
    if s.startswith("npz:"):  # ~ expanded here: a shell expands it only at the start of a word
        return "npz", os.path.expanduser(s[4:])
    if s.startswith("folder:"):
        return "folder", os.path.expanduser(s[7:])
    if s in _DATASETS:
        return "registered", s
    p = Path(s).expanduser()
    if p.is_dir():
        return "folder", str(p)
    if p.is_file():
        return "npz", str(p)
    if Path(s).suffix or "/" in s or os.sep in s:  # a file's name, not a dataset's
        raise DataError(f"data file {s}: not found")
    raise DataError(
        f"unknown dataset '{s}'{did_you_mean(s, _DATASETS)}; known: {', '.join(sorted(_DATASETS))} "
        "(or a .npz file or an image folder)"
    )


def load_dataset(
    name: str,
    split: str = "train",
    *,
    root: str | None = None,
    binarize: bool = False,
    dequantize: bool = False,
    n: int | None = None,
    seed: int = 0,
    **params: Any,
) -> Dataset:
    """Load one split (``"train"``, ``"valid"`` or ``"test"``) of dataset ``name``.

    ``root`` is where MNIST lives (else ``$GENZOO_DATA``); ``binarize`` turns on dynamic
    binarization, ``dequantize`` uniform dequantization (at most one; dequantization needs
    discrete data). ``n`` limits the split to its first ``n`` examples (all of them when the split
    is smaller; toy sets draw ``n``).
    ``seed`` only affects the toy sets. ``params`` are the dataset's options
    (:func:`dataset_options`); strings are converted to the option's type.
    """
    check_split(split)
    binarize = _coerce(str(name), "binarize", binarize, bool)
    dequantize = _coerce(str(name), "dequantize", dequantize, bool)
    if binarize and dequantize:
        raise DataError("binarize and dequantize cannot be used together: choose one")
    n = check_n(None if n is None else _coerce(str(name), "n", n, int))
    seed = _coerce(str(name), "seed", seed, int)
    if not -(2**63) <= seed < 2**63:  # (runs recorded before 2026-12-05 may hold a negative one: read mod 2^63)
        raise DataError(f"the data seed must lie in 0 .. 2^63 - 1, got {seed}")
    _check_root(root)
    kind, target = _resolve(name)
    if kind == "registered":
        entry = _DATASETS[target]
        ds = entry.load(split, n=n, seed=seed, root=root, **_check_params(target, entry.params, params))
    elif kind == "folder":
        ds = load_folder(target, split, n=n, **_check_params(f"folder:{target}", _FOLDER_PARAMS, params))
    else:
        ds = load_npz(target, split, n=n, **_check_params(f"npz:{target}", {}, params))
    if binarize or dequantize:
        ds = dataclasses.replace(ds, binarize=binarize, dequantize=dequantize)
    return ds


def _check_root(root: Any) -> None:
    """A DataError unless ``root`` (where MNIST lives) is None or a path."""
    if root is not None and not isinstance(root, (str, os.PathLike)):
        raise DataError(f"the data root must be a folder's path, got {type(root).__name__} {root!r}")


def _check_recipe(spec: dict) -> None:
    """A DataError for what a run's data recipe may not hold: a ``split`` (each command reads the one it needs) or
    a ``root`` that is not a path."""
    if "split" in spec:
        raise DataError("a data recipe has no 'split': each command reads the split it needs (train, valid, test)")
    _check_root(spec.get("root"))


def _loads_as_data(p: Path) -> bool:
    """Whether ``p`` is a file, or a folder of images (directly or in class sub-folders), that ``--data`` could read."""
    if p.is_file():
        return True
    if not p.is_dir():
        return False
    try:
        return bool(image_files(p)[0])
    except (DataError, OSError):  # loose images beside class folders: images all the same
        return True


def typed_spec(spec: dict) -> dict:
    """A run's data recipe with its values in their types (command-line strings such as ``std="0.05"`` become
    0.05), as :func:`load_dataset` reads them, so run.json records numbers; a file or folder is recorded by its
    absolute path (``npz:/...``, ``folder:/...``) and ``root`` as an absolute path (MNIST's ``$GENZOO_DATA`` too, when
    no root is given), so that ``eval`` and
    ``--resume`` from another directory read the same data; and where it is split 80/10/10, what that split
    follows (``split_fingerprint``: :func:`~genzoo.data.images.split_fingerprint`), and for MNIST what its files hold
    (``content_fingerprint``: :func:`~genzoo.data.mnist.mnist_fingerprint`), which :func:`load_spec` checks.

    >>> typed_spec({"name": "ring", "std": "0.05", "n": "500", "binarize": "false"})
    {'name': 'ring', 'std': 0.05, 'n': 500, 'binarize': False}
    """
    out = dict(spec)
    name = str(out["name"])
    hints = {"binarize": bool, "dequantize": bool, "n": int, "seed": int}
    _check_recipe(out)
    if out.get("seed") is not None and not 0 <= _coerce(name, "seed", out["seed"], int) < 2**63:
        raise DataError(f"the data seed must lie in 0 .. 2^63 - 1, got {out['seed']}")
    kind, target = _resolve(name)
    if kind != "registered":
        out["name"] = name = f"{kind}:{Path(target).expanduser().resolve()}"
        out.pop("split_fingerprint", None)
        if (fingerprint := split_fingerprint(kind, target)) is not None:
            out["split_fingerprint"] = fingerprint
    elif _loads_as_data(Path(name)):
        warnings.warn(f"--data {name} is genzoo's dataset '{name}', not the {'folder' if Path(name).is_dir() else 'file'} "
                      f"./{name}: write ./{name} for that", GenZooWarning, stacklevel=2)
    if out.get("root") is not None:
        out["root"] = str(Path(out["root"]).expanduser().resolve())
    elif kind == "registered" and target == "mnist" and os.environ.get(ENV_VAR):  # found through $GENZOO_DATA:
        out["root"] = str(Path(os.environ[ENV_VAR]).expanduser().resolve())     # recorded as --data-root would be
    out.pop("content_fingerprint", None)
    if kind == "registered" and target == "mnist" and (fingerprint := mnist_fingerprint(out.get("root"))) is not None:
        out["content_fingerprint"] = fingerprint
    params = _DATASETS[target].params if kind == "registered" else _FOLDER_PARAMS if kind == "folder" else {}
    for key, value in out.items():
        if value is None or key in ("name", "root"):
            continue
        if key in hints:
            out[key] = _coerce(name, key, value, hints[key])
        elif key in params:
            out[key] = _coerce(name, key, value, params[key][0])
    return out


def _check_recorded_path(name: str) -> None:
    """A DataError for a run's folder or .npz (recorded as ``folder:/ABS`` or ``npz:/ABS``, :func:`typed_spec`) that
    is no longer there, saying where a run looks: ``--data-root`` moves MNIST's files only, so the message
    "not found" alone sent users to it in vain."""
    kind, _, path = name.partition(":")
    if kind not in ("folder", "npz") or not os.path.isabs(path):
        return
    if (Path(path).is_dir() if kind == "folder" else Path(path).is_file()):
        return
    what = "image folder" if kind == "folder" else "data file"
    raise DataError(f"{what} {path}: not found; a run reads its {'folder' if kind == 'folder' else '.npz'} at the "
                    "path RUN/run.json records (data.name), and --data-root is MNIST's folder only: move the data "
                    f"back, or set data.name in RUN/run.json to {kind}:NEW_PATH")


def load_spec(spec: dict, split: str, nonempty: bool = False) -> Dataset:
    """The ``split`` of the dataset a run's data recipe describes (``name`` plus the keyword arguments
    of :func:`load_dataset`); the size limit ``n`` applies to the training split only. ``nonempty``: a
    DataError if the split has no examples (a data set of fewer than 10 puts them all in ``train``). A
    DataError too if a folder or .npz split 80/10/10 no longer matches the recipe's ``split_fingerprint``, or MNIST's
    files its ``content_fingerprint``, or if a recorded folder or .npz is gone (saying where a run looks for it).

    >>> len(load_spec({"name": "ring", "n": 100}, "train")), len(load_spec({"name": "ring", "n": 100}, "test")) > 100
    (100, True)
    """
    spec = dict(spec)
    name = spec.pop("name")
    recorded = spec.pop("split_fingerprint", None)
    content = spec.pop("content_fingerprint", None)
    _check_recipe(spec)
    if split != "train":
        spec.pop("n", None)
    if recorded is not None:  # a run's recipe (a new one's folder that is not there is named by the loader)
        _check_recorded_path(str(name))
        kind, target = _resolve(name)
        now = split_fingerprint(kind, target)
        if now is not None and now != recorded:
            if "split arrays" in recorded + now:
                how = "its splits are not the ones the run was trained on"
            else:
                follows = "its sorted file names" if kind == "folder" else "the order of its rows"
                how = f"its 80/10/10 split follows {follows}"
            raise DataError(f"{name} changed since the run recorded it ({recorded}; now {now}): {how}, so its test "
                            "split would now hold other examples, training ones among them; restore the data, or "
                            "train a new run")
    if content is not None and name == "mnist":
        now = mnist_fingerprint(spec.get("root"))
        if now is not None and now != content:
            where = spec.get("root") or f"${ENV_VAR}"
            raise DataError(f"the MNIST files in {where} are not the ones the run recorded ({content}; now {now}): "
                            "another data set in files of the same names (Fashion-MNIST?) or edited files; point "
                            "--data-root at the run's own")
    data = load_dataset(name, split, **spec)
    if nonempty and len(data) == 0:
        keras = " (or an .npz of x_train and x_test has no x_valid, as Keras writes them)" if split == "valid" else ""
        raise DataError(f"the {split} split of {name} is empty: a data set of fewer than 10 examples puts them "
                        f"all in train{keras}")
    return data
