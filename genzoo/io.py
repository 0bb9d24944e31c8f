"""Saving and loading: ``config.json`` + ``model.safetensors``, checkpoints, atomic writes.

Nothing here unpickles: weights are safetensors, everything else is JSON. Every file but the rows appended to
``metrics.jsonl`` (and TensorBoard's events) is written to a temporary name in the same folder and renamed into
place, and a checkpoint is a folder renamed into place whole, so an interrupted run never leaves a half-written
file behind (at most a last metrics row cut short, which is skipped when read). A saved model's two files
are two renames; :func:`save` marks both with the id of the save, so :func:`load` refuses the new weights beside
the old config that a kill between the two leaves.

>>> import tempfile, torch, genzoo
>>> m = genzoo.build("gmm", data_shape=(2,), n_components=2)
>>> m.setup(torch.randn(50, 2), torch.Generator().manual_seed(0))  # weights of its own (k-means++)
>>> d = tempfile.mkdtemp()
>>> genzoo.save(m, d); back = genzoo.load(d)
>>> back.config == m.config, all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), m.state_dict().values()))
(True, True)
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import shlex
import shutil
import stat
import tempfile
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors_bytes
from safetensors.torch import save as safetensors_bytes

from .errors import CheckpointError, ConfigError, GenZooWarning, RunLocked, WriteError

if TYPE_CHECKING:
    from .base import GenerativeModel

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
CHECKPOINTS = "checkpoints"
#: where a divergence moves a checkpoint whose weights broke the loss (``checkpoints/.diverged-step-N``;
#: :func:`~genzoo.train.callbacks.kept`)
DIVERGED = ".diverged-"


# -- atomic writes ------------------------------------------------------------------------------
_UMASK = os.umask(0o022)  # read once, at import (os.umask can only be read by setting it) ...
os.umask(_UMASK)          # ... and put back at once

def atomic_write_bytes(path: str | os.PathLike, data: bytes, own: bool = False) -> None:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename (the file fsynced before it,
    the folder after it where the system lets a folder be opened, so the rename survives a power cut); a file that
    cannot be written raises :class:`WriteError` and leaves whatever was at ``path`` as it was. A symlink at ``path``
    is written through, but for ``own=True`` (a file genzoo keeps in a run folder), where it is refused.

    >>> import os, tempfile
    >>> d = tempfile.mkdtemp(); p = os.path.join(d, "note.txt")
    >>> atomic_write_bytes(p, b"one"); atomic_write_bytes(p, b"two")
    >>> Path(p).read_bytes(), os.listdir(d)                  # replaced whole; no temporary file left behind
    (b'two', ['note.txt'])
    >>> atomic_write_bytes(os.path.join(d, "missing", "note.txt"), b"x")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    genzoo.errors.WriteError: cannot write .../missing/note.txt: No such file or directory
    """
    _commit(*_stage(path, data, own))


def refuse_link(path: Path) -> None:
    """A :class:`WriteError` where ``path``, a file genzoo keeps in a run folder, is a symlink: a run folder made by
    someone else (a tarball or a repository keeps links) could point ``eval.json`` at any file of the user running
    ``genzoo eval`` on it (audit a137). The link is named, never followed."""
    if path.is_symlink():
        raise WriteError(f"{path} is a symlink (to {os.readlink(path)}): genzoo writes a run's own files in the run "
                         "folder, never through a link; remove the link")


def _stage(path: str | os.PathLike, data: bytes, own: bool = False) -> tuple[str, Path]:
    """The first half of :func:`atomic_write_bytes`: ``data`` written and fsynced to a temporary file beside
    ``path``; returns (the temporary file, the path it is for) for :func:`_commit`. A :class:`WriteError` leaves
    nothing behind. A symlink at ``path`` is written through, as open() would, unless ``path`` is a run's ``own``
    file (:func:`refuse_link`)."""
    path = Path(path)
    if own:
        refuse_link(path)
    if path.is_symlink():  # write through the link, as open() would, not over it
        path = path.resolve()
    stem = path.name  # the temporary name is 14 bytes longer: a name near NAME_MAX (255 bytes) is cut for it
    while len(os.fsencode(stem)) > 200:
        stem = stem[:-1]
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{stem}.", suffix=".tmp")
    except OSError as e:
        raise WriteError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        if hasattr(os, "fchmod"):  # mkstemp makes 0600; give the file the mode open() would (an old file keeps its own)
            os.fchmod(fd, stat.S_IMODE(path.stat().st_mode) if path.is_file() else 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise WriteError(f"cannot write {path}: {e.strerror or e}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp, path


def _commit(tmp: str, path: Path) -> None:
    """The second half of :func:`atomic_write_bytes`: the file :func:`_stage` wrote renamed into place (removed if
    that fails), and the rename made durable."""
    try:
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise WriteError(f"cannot write {path}: {e.strerror or e}") from None
        raise
    _fsync_dir(path.parent)  # the rename itself (POSIX; where a folder cannot be opened, as on Windows, nothing)


#: what ``genzoo train`` and ``genzoo eval`` keep in a run directory: no ``-o``/``--output`` may write over them
#: (nor into ``best/``, which training replaces whole each time the validation loss improves)
RUN_FILES = (CONFIG, WEIGHTS, "run.json", "metrics.jsonl", "eval.json", CHECKPOINTS, "samples", "best",
             "density.png", "pictures.json", "tensorboard")


def run_files_in(path: str | os.PathLike) -> list[str]:
    """The names of :data:`RUN_FILES` that ``path`` holds (none if it is no folder): what a new run would write
    over."""
    path = Path(path)
    return [f for f in RUN_FILES if (path / f).exists()] if path.is_dir() else []


def is_run_dir(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds a genzoo model or run (a config.json beside weights, checkpoints or a run.json).

    >>> import tempfile, genzoo
    >>> d = tempfile.mkdtemp(); before = is_run_dir(d)
    >>> genzoo.save(genzoo.build("gmm", data_shape=(2,)), d)   # config.json and model.safetensors
    >>> before, is_run_dir(d), is_run_dir(Path(d) / "model.safetensors")
    (False, True, False)
    """
    path = Path(path)
    return (path / CONFIG).is_file() and any((path / f).exists() for f in (WEIGHTS, CHECKPOINTS, "run.json"))


def check_writable(folder: str | os.PathLike, flag: str) -> None:
    """A :class:`WriteError` unless a file can be made in ``folder``, tried by making one: permission bits say
    nothing to root, nor of a read-only mount. For the checks before long work."""
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".genzoo-write-test-"):
            pass
    except OSError as e:
        raise WriteError(f"{flag} {folder}: cannot write there ({e.strerror or e})") from None


def check_output(path: str | os.PathLike, flag: str = "-o", suffix: str | None = None) -> Path:
    """``path`` if a command may write a file there, else :class:`ConfigError` naming why: it is a folder,
    its folder is missing, it cannot be resolved (a symlink loop), it is (or lies inside) one of a run's own files
    (:data:`RUN_FILES`), or its name does not end in ``suffix`` (when given: the format written).

    >>> import tempfile, genzoo
    >>> run = tempfile.mkdtemp(); genzoo.save(genzoo.build("gmm", data_shape=(2,)), run)
    >>> check_output(f"{run}/grid.png").name
    'grid.png'
    >>> check_output(f"{run}/model.safetensors")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    genzoo.errors.ConfigError: -o ...model.safetensors would overwrite model.safetensors of the run in ...: choose another file name
    """
    if not str(path).strip():
        raise ConfigError(f"{flag} needs a file name")
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{flag} {p} is a folder: give a file name")
    if not p.parent.is_dir():
        raise ConfigError(f"output folder {p.parent} {'is a file' if p.parent.exists() else 'does not exist'}")
    try:
        resolved = p.resolve()
    except (RuntimeError, OSError) as e:  # a symlink loop (RuntimeError before Python 3.13, OSError since)
        raise ConfigError(f"{flag} {p}: {e}") from None
    for up in resolved.parents:
        own = resolved.relative_to(up).parts[0]
        if own in RUN_FILES and is_run_dir(up):
            raise ConfigError(f"{flag} {p} would overwrite {own} of the run in {up}: choose another file name")
    if suffix is not None and p.name.lower() == suffix:  # ".png" is a hidden file's whole name, not an extension
        raise ConfigError(f"{flag} {p}: give a name before {suffix}, e.g. out{suffix}")
    if suffix is not None and p.suffix.lower() != suffix:
        raise ConfigError(f"{flag} {p}: the file written is {suffix[1:].upper()}; give a name ending in {suffix}")
    return p


#: a JSON string whole, with the ``:`` after it where it is a key (group 1, group 2), or outside strings a bare
#: non-finite number as Python's json writes it: :func:`dumps` and :func:`loads` rewrite these tokens
_TOKEN = re.compile(r'("[^"\\]*(?:\\.[^"\\]*)*")(\s*:)?|-?Infinity|NaN')
_NAMED = ('"NaN"', '"Infinity"', '"-Infinity"')  # a non-finite number as genzoo writes it
#: a string value that reads as one of those names, as :func:`dumps` writes it: its first letter \u-escaped, which
#: every JSON reader decodes to the same text and :func:`loads` tells from a number
_ESCAPED = {n: f'"\\u{ord(n[1]):04x}{n[2:]}' for n in _NAMED}


def dumps(obj: Any, indent: int | None = None) -> str:
    """Strict JSON (RFC 8259), which has no infinities or NaN: such floats are written as the strings
    "Infinity", "-Infinity" and "NaN", so jq, JavaScript and every other strict parser read genzoo's
    files; :func:`loads` turns them back into floats. A string of the same text (a command's ``--run-dir NaN``)
    is written with its first letter escaped (``"\\u004eaN"``, still "NaN" to every reader), so :func:`loads`
    leaves it a string.

    >>> dumps({"reverse_kl": float("inf"), "loss": 1.5})
    '{"reverse_kl": "Infinity", "loss": 1.5}'
    >>> loads(dumps({"reverse_kl": float("inf"), "command": ["--run-dir", "NaN"]}))
    {'reverse_kl': inf, 'command': ['--run-dir', 'NaN']}
    """
    def token(m: re.Match) -> str:
        if m[1] is None:  # a bare NaN/Infinity token of json.dumps: a float, written as its name
            return f'"{m[0]}"'
        return m[0] if m[2] else _ESCAPED.get(m[1], m[1])  # a string: one that reads as a name escaped (not keys)

    text = json.dumps(obj, indent=indent)
    return _TOKEN.sub(token, text) if "NaN" in text or "Infinity" in text else text  # (the regex only where needed)


def loads(text: str) -> Any:
    """JSON as :func:`dumps` writes it: the plain strings "Infinity", "-Infinity", "NaN" become floats (as in files of
    every genzoo version), escaped ones stay strings; the bare ``Infinity``/``NaN`` tokens of files written by older
    genzoo versions are read too. JSON nested too deeply for Python's parser, or holding an integer of more digits
    than Python reads (4,300: ``sys.get_int_max_str_digits``), is a ``json.JSONDecodeError``, as other damage is.

    >>> loads('{"a": 1' + "0" * 5000 + '}')
    Traceback (most recent call last):
    json.decoder.JSONDecodeError: an integer of more than 4,300 digits
    """
    def token(m: re.Match) -> str:  # a plain "NaN" value as the bare token, which json.loads reads as a float
        return m[1][1:-1] if m[1] in _NAMED and not m[2] else m[0]

    try:
        obj = json.loads(text)  # first: damaged text fails here, and most text holds no name to convert
        return json.loads(_TOKEN.sub(token, text)) if any(n in text for n in _NAMED) else obj
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", text, 0) from None
    except json.JSONDecodeError:
        raise
    except ValueError:  # int(str) past Python's limit: a plain ValueError, which every caller took for a bug
        import sys

        error = json.JSONDecodeError(f"an integer of more than {sys.get_int_max_str_digits():,} digits", text, 0)
        error.args = (error.msg,)  # (no position: json does not say where the number is)
        raise error from None


def atomic_write_json(path: str | os.PathLike, obj: Any, own: bool = False) -> None:
    """Write ``obj`` to ``path`` as indented strict JSON (:func:`dumps`: infinities and NaN as strings), through
    :func:`atomic_write_bytes`; :func:`loads` reads it back.

    >>> import os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "metrics.json")
    >>> atomic_write_json(p, {"loss": float("inf"), "step": 3})
    >>> print(Path(p).read_text(), end="")
    {
      "loss": "Infinity",
      "step": 3
    }
    >>> loads(Path(p).read_text())
    {'loss': inf, 'step': 3}
    """
    atomic_write_bytes(path, (dumps(obj, indent=2) + "\n").encode(), own)


def _tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors refuses shared or strided storage: give it contiguous copies
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
                 ) -> None:
    """Write ``tensors`` as safetensors with ``metadata`` (default ``{"format": "pt"}``). One key at most:
    safetensors writes several in an order that changes between processes, and the same tensors must give the
    same bytes (:func:`weights_stamp`)."""
    atomic_write_bytes(path, safetensors_bytes(_tensors(tensors), metadata=metadata or {"format": "pt"}))


def _digest(data: bytes = b"", path: Path | None = None) -> str:
    """The BLAKE2b digest (16 bytes, hex) of ``data``, or of the file ``path`` read in blocks."""
    import hashlib

    digest = hashlib.blake2b(data, digest_size=16)
    if path is not None:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


class _HeaderProblem(ValueError):
    """A safetensors header that cannot be read from the file's first bytes (the message says why)."""


def _read_header(path: Path) -> tuple[int, int, dict]:
    """(the file's size, its header's length, the header) of the safetensors file ``path``: an 8-byte little-endian
    length, then that many bytes of JSON. A length that does not fit the file, or a header that is not JSON, is a
    :class:`_HeaderProblem`, found without reading the rest of the file; OSError as it comes."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        if size >= 8 and not 0 < n <= min(size - 8, 100 << 20):  # (safetensors' own limit: 100 MB of header)
            raise _HeaderProblem(f"its header length, {n:,} bytes, does not fit a file of {size:,}")
        text = f.read(n)
    try:
        header = json.loads(text)
    except (ValueError, RecursionError):
        raise _HeaderProblem("its header is not JSON") from None
    if not isinstance(header, dict):
        raise _HeaderProblem("its header is not a JSON object")
    return size, n, header


def _extent_problem(path: Path) -> str | None:
    """Whether the safetensors file ``path`` is not as long as its header says, from its first bytes alone: an 8 GB
    file of zeros (sparse: no disk space) was read whole, then 'out of memory' (audit a137 F7). None where the
    length fits or the header cannot be read otherwise (reading the file then says what is wrong)."""
    try:
        size, n, header = _read_header(path)
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except _HeaderProblem as e:  # (not read whole: a sparse file of gigabytes was, and hashed)
        return str(e)
    except Exception:  # (anything else amiss: the full read's error is the one to give)
        return None
    if 8 + n + end != size:
        return f"its header describes {8 + n + end:,} bytes, the file holds {size:,}"
    return None


def load_tensors(path: str | os.PathLike, what: str = "weights file") -> dict[str, torch.Tensor]:
    """The tensors of the safetensors file ``path``, or a :class:`CheckpointError` calling it ``what`` (missing,
    or damaged: a read error of the disk too). A file this process may not read is no damage: its
    ``PermissionError`` is raised as it is, so that a resume stops rather than set the checkpoint aside."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"missing {what} {path}")
    if problem := _extent_problem(path):  # before the whole file is read into memory
        raise CheckpointError(f"corrupt {what} {path}: {problem}")
    try:  # from bytes, as they are written: safetensors refuses a path that is not UTF-8 (an old archive's names)
        data = path.read_bytes()
    except FileNotFoundError:  # removed since (a checkpoint pruned by a run still training: load() takes the next)
        raise CheckpointError(f"missing {what} {path}") from None
    except PermissionError:
        raise
    except OSError as e:  # EIO: a disk fault
        raise CheckpointError(f"corrupt {what} {path}: {e.strerror or e}") from None
    try:
        return load_tensors_bytes(data)
    except (SafetensorError, ValueError) as e:
        raise CheckpointError(f"corrupt {what} {path}: {str(e).splitlines()[0]}") from None


def _save_id(path: Path) -> str | None:
    """The ``save_id`` in the safetensors metadata of ``path`` (:func:`write_model`), or None (also for a header that
    cannot be read: loading the file says what is wrong)."""
    try:
        header = _read_header(path)[2]
    except _HeaderProblem:
        return None
    meta = header.get("__metadata__")
    return meta.get("save_id") if isinstance(meta, dict) else None


def read_json(path: str | os.PathLike, what: str = "file") -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"missing {what} {path}")
    try:
        # a byte-order mark, as some editors write (PowerShell 5, old Notepad), is no error, as in a recipe
        obj = loads(path.read_text(encoding="utf-8").removeprefix("\ufeff"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"corrupt {what} {path}: {e}") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"corrupt {what} {path}: expected a JSON object")
    return obj


# -- models -------------------------------------------------------------------------------------
#: the floating-point dtypes a model's parameters may be saved in besides float32 (``config.json``'s
#: ``parameter_dtype``: :func:`build_from_config` builds the model in it)
PARAMETER_DTYPES = {"float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16}


def model_config(model) -> dict:
    """What ``config.json`` holds: the model's name and constructor arguments, the genzoo version, and the
    parameters' dtype where it is not float32 (a ``model.double()``), so the model loads as it was saved; a model
    of buffers alone (the GMM) by its first floating-point buffer."""
    from . import __version__

    for k, v in model.config.items():  # (a user model may take a callable or a module: in memory, not in config.json)
        try:
            json.dumps(v)
        except (TypeError, ValueError):
            raise ConfigError(f"{model.name}.{k}: config.json holds a model's options as JSON data, and {v!r} is not "
                              "(a number, string, bool, None or a list of them): this model cannot be saved (it trains and samples in "
                              "memory: fit without a run_dir)") from None
    cfg = {"model": model.name, "genzoo_version": __version__, "config": model.config}
    p = next(model.parameters(), None)
    if p is None:
        p = next((b for b in model.buffers() if b.is_floating_point()), None)
    built = str(model.config.get("dtype", "float32"))  # what building from the config gives (the GMM's own option)
    if p is not None and str(p.dtype).removeprefix("torch.") != built:  # cast since: a .double(), a float64 GMM's .float()
        cfg["parameter_dtype"] = str(p.dtype).removeprefix("torch.")
    return cfg


#: what shows a folder to be a training run rather than a saved model
RUN_MARKS = ("run.json", CHECKPOINTS, "metrics.jsonl")


def save(model, directory: str | os.PathLike) -> None:
    """Write ``config.json`` (model name, constructor arguments, version) and ``model.safetensors``, both marked
    with the id of the save (:func:`write_model`).

    A folder that holds a saved model is overwritten (its other files are left alone); a training run's folder
    (a ``run.json``, ``checkpoints/`` or ``metrics.jsonl``) is refused: its weights belong to its training.
    """
    if not (hasattr(model, "name") and isinstance(getattr(model, "config", None), dict)):
        raise ConfigError(f"save writes genzoo models (built by genzoo.build), not a {type(model).__name__}")
    directory = Path(directory)
    if marks := [f for f in RUN_MARKS if (directory / f).exists()]:
        raise WriteError(f"cannot save into {directory}: it is a training run ({', '.join(marks)}), whose weights "
                         "its training writes; save into another folder")
    write_model(model, directory, pair=True)


def write_model(model, directory: Path, pair: bool = False) -> None:
    """:func:`save` without the guard on runs: for the trainer, which writes its own run's weights.

    Both files are written to temporary names first, then renamed into place, the weights first: a file that
    cannot be written (a full disk) leaves the folder's files as they were, and only a kill between the two renames
    mixes two saves. With ``pair``
    (:func:`save`) both files carry the id of the save, ``save_id`` (the digest of the config written; in the
    weights' safetensors metadata), so the new weights beside the old config that a kill between the two leaves
    (another model's options, maybe of the same shapes) are refused by :func:`load`. A run needs none: its
    config.json is the same from its start, and ``best/`` is replaced whole."""
    cfg, meta = model_config(model), None  # (first: a config JSON cannot hold is refused before the folder is made)
    if blocked_by_file(directory):
        raise WriteError(f"cannot save into {directory}: that path, or a part of it, is a file, not a folder")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WriteError(f"cannot create the folder {directory}: {e.strerror or e}") from None
    if pair:  # the same config gives the same id: saving the same model twice writes the same bytes
        cfg["save_id"] = _digest(dumps(cfg).encode())
        meta = {"save_id": cfg["save_id"]}  # (in place of {"format": "pt"}: see save_tensors)
    # both files on disk before either is renamed: a full disk at the second leaves the folder's old pair as it was
    weights = _stage(directory / WEIGHTS, safetensors_bytes(_tensors(model.state_dict()), metadata=meta or {"format": "pt"}))
    try:
        config = _stage(directory / CONFIG, (dumps(cfg, indent=2) + "\n").encode())
    except BaseException:
        Path(weights[0]).unlink(missing_ok=True)
        raise
    try:
        _commit(*weights)
    except BaseException:
        Path(config[0]).unlink(missing_ok=True)
        raise
    _commit(*config)


def build_from_config(directory: str | os.PathLike) -> GenerativeModel:
    """Rebuild the (untrained) model described by ``directory/config.json``."""
    return _build(directory)[0]


def _build(directory: str | os.PathLike, loading: bool = False) -> tuple[GenerativeModel, dict]:
    """:func:`build_from_config`'s model, and the config.json it was built from. ``loading`` (:func:`load`): the
    weights are found, and their header read and compared with the config, before the model is built."""
    from .registry import build

    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"not a genzoo run: {directory} is not a directory")
    if not (directory / CONFIG).is_file():
        hint = ""
        if directory.parent.name == CHECKPOINTS and _is_step(directory.name):
            run = directory.parent.parent  # a checkpoint: its run's config.json describes its weights
            hint = (f": it is a checkpoint of the run in {run}, which its commands take whole (its newest weights); to "
                    f"use this checkpoint's, copy {run / CONFIG} into it")
        raise CheckpointError(f"not a genzoo run: {directory} has no {CONFIG}{hint}")
    cfg = read_json(directory / CONFIG, "model config")
    if "model" not in cfg or "genzoo_version" not in cfg or not isinstance(cfg.get("config"), dict):
        raise CheckpointError(f"{directory / CONFIG} is not a genzoo model config (no 'model'/'config'/'genzoo_version')")
    dtype = cfg.get("parameter_dtype")
    if dtype is not None and (not isinstance(dtype, str) or (dtype != "float32" and dtype not in PARAMETER_DTYPES)):
        raise CheckpointError(f"{directory / CONFIG}: unknown parameter_dtype {dtype!r} (known: float32, "
                              f"{', '.join(PARAMETER_DTYPES)})")
    if loading:  # said before the build: config.json may ask for any size
        if (weights := weights_file(directory)) is None:
            raise CheckpointError(f"{directory} has no {WEIGHTS} and no checkpoint{_why_no_weights(directory)}")
        _refuse_weights_that_cannot_fit(directory, cfg, weights)
    try:
        model = build(cfg["model"], **cfg["config"])
    except ConfigError as e:  # an option of a newer genzoo, or an edit: the version that wrote it named, as run.json's
        from . import __version__

        version = cfg["genzoo_version"]
        newer = f" (written by genzoo {version}; this is {__version__})" if version not in (None, __version__) else ""
        raise CheckpointError(f"{directory / CONFIG}: {e}{newer}") from None
    return (model if dtype is None else model.to(PARAMETER_DTYPES.get(dtype, torch.float32))), cfg


#: torch's dtypes by the names a safetensors header gives them (another name: the header is not read here)
_SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                       "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
                       "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2}


def _header_tensors(path: Path) -> dict[str, torch.Tensor] | None:
    """The tensors of the safetensors file ``path`` as meta tensors (no memory) of their shapes, floating point or not,
    from its header alone; None where the header cannot be read (loading the file then says what is wrong)."""
    try:
        out = {}
        for k, v in _read_header(path)[2].items():
            if k == "__metadata__":
                continue
            t = torch.empty([int(d) for d in v["shape"]], device="meta", dtype=_SAFETENSORS_DTYPES[v["dtype"]])
            begin, end = (int(o) for o in v["data_offsets"])
            if end - begin != t.numel() * t.element_size():  # a header whose shapes lie about the bytes
                return None
            out[k] = t
        return out
    except Exception:  # (anything amiss: the full read's error is the one to give)
        return None


def _check_save_id(directory: Path, cfg: dict, weights: Path) -> None:
    """Both files marked by save (:func:`write_model`), but by two saves: a :class:`CheckpointError`, from the header
    alone, before the weights are fitted (or a save cut short over a model of other shapes would "not fit")."""
    recorded = cfg.get("save_id")
    if recorded is not None and weights == directory / WEIGHTS and _save_id(weights) not in (None, recorded):
        raise CheckpointError(f"{weights} and {directory / CONFIG} were written by two saves (another save_id: a "
                              "save cut short between its two files, or a file copied in); save the model again "
                              "(or delete save_id from config.json to load the two together)")


def _refuse_weights_that_cannot_fit(directory: Path, cfg: dict, weights: Path) -> None:
    """The model config.json describes, built on the meta device (its sizes, no memory), against the names and shapes
    in the header of ``weights``: a :class:`CheckpointError` (as :func:`load_state`'s) before the real build, which
    allocates and initialises every weight (a 200-byte config.json asking for ``hidden=[50000000]`` took 13 GB before
    the shapes were compared; audit a137). Every family builds on the meta device (the flows' couplings compute
    their index buffers from masks made on the CPU); a construction that raises there is checked after its build.
    A header that cannot be read is the weights file's error now (:func:`load_tensors`), not after the build (review
    r116 F3)."""
    _check_save_id(directory, cfg, weights)
    if problem := _extent_problem(weights):
        raise CheckpointError(f"corrupt weights file {weights}: {problem}")
    tensors = _header_tensors(weights)
    if tensors is None:
        try:  # its error, or (a header only this reader did not take) its tensors' shapes
            tensors = _shapes_read_whole(weights)
        except CheckpointError:
            if weights.parent.exists():  # (its folder pruned while read, a run still training: load takes the next)
                raise
            return
    most = _tensor_budget(len(tensors))
    try:
        meta = _meta_build(cfg["model"], cfg["config"], most=most)
    except _Oversized:
        raise CheckpointError(f"weights in {weights} do not fit the model of {directory / CONFIG}: it makes more than "
                              f"{most:,} weights and buffers before it is whole, and the file holds {len(tensors):,} "
                              "tensors") from None
    if meta is not None and (problems := _fit_problems(meta, tensors)):
        raise CheckpointError(f"weights in {weights} do not fit the model of {directory / CONFIG}: {'; '.join(problems)}")


def _shapes_read_whole(weights: Path) -> dict[str, torch.Tensor]:
    """The tensors of ``weights`` as meta tensors of their shapes, from reading the file whole (:func:`load_tensors`:
    its :class:`CheckpointError`), where :func:`_header_tensors` did not take the header."""
    return {k: torch.empty(v.shape, dtype=v.dtype, device="meta") for k, v in load_tensors(weights).items()}


class _Oversized(Exception):
    """A meta build stopped at its budget of tensors (:func:`_meta_build`'s ``most``)."""


def _tensor_budget(n_tensors: int) -> int:
    """How many parameters and buffers a model whose weights file holds ``n_tensors`` tensors may register while it is
    built: at most 2.0 per tensor of its state in every family and option (RealNVP's index buffers, not saved; 2.33 for
    a NICE file from before its shift_scale buffer; review r121 F4), so 8 per tensor and 256 to spare refuse no model
    that fits the file, and stop a config asking for millions of layers after a few hundred."""
    return 8 * n_tensors + 256


#: the budget of the meta build running in this thread, if any (:func:`_count_registration`)
_BUDGET = threading.local()


def _count_registration(*_) -> None:
    """torch's global parameter and buffer registration hook, added once at import (adding and removing it for each
    build changed torch's hook dicts while other threads iterated them: "OrderedDict mutated during iteration" in
    their module code; review r121 F3): counts against the budget of a meta build in this thread only."""
    most = getattr(_BUDGET, "most", None)
    if most is not None:
        _BUDGET.count += 1
        if _BUDGET.count > most:
            raise _Oversized


torch.nn.modules.module.register_module_parameter_registration_hook(_count_registration)
torch.nn.modules.module.register_module_buffer_registration_hook(_count_registration)


def _meta_build(name: str, options: dict, most: int | None = None):
    """The model ``build(name, **options)`` gives, on the meta device: its sizes without their memory; None where the
    build raises (an unknown option, which the real build then says) or where a construction needs real tensors.
    torch's random state is left as it was (genzoo's models draw nothing there; a model of the user's might). They
    make shapes only in a meta build where ``torch.randn``, ``normal_``, ``torch.eye`` or linalg would run: the meta
    versions are Python references whose first call imports torch._dynamo (2-3 s added to every load of a GMM or a
    planar flow), and values computed on the CPU instead would be as large as the config asks.

    ``most``: :class:`_Oversized` once the build has registered more parameters and buffers than that (counted by
    :func:`_count_registration` in this thread), so a config asking for 10^6 couplings is refused after a few hundred
    of them, not after the minutes and gigabytes of Python objects its whole meta build takes (review r118 F3)."""
    from .registry import build

    _BUDGET.most, _BUDGET.count = most, 0
    try:
        with torch.random.fork_rng(devices=[]), torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # (the real build gives any warning, once)
            return build(name, **options)
    except _Oversized:
        raise
    except Exception:
        return None
    finally:
        _BUDGET.most = None


def refuse_a_recipe_no_checkpoint_fits(run_dir: str | os.PathLike, name: str, options: dict) -> None:
    """Before ``genzoo train --resume`` builds the model of a run's recipe (run.json), that model built on the meta
    device and compared with the run: a :class:`ConfigError` where an option differs from the run's config.json (as
    ``fit`` says it: a changed data shape is named), a :class:`CheckpointError` where it fits none of the checkpoints'
    weights, from their headers; where no header reads, the newest checkpoint's own error (the resume could load none
    of them). So a run.json asking for any size is refused before its weights are allocated (a run folder is data;
    audit a137 F1, by resume; review r118 F1, F2). One checkpoint that fits is enough: the damaged ones newer than it
    are set aside by :func:`load_newest_checkpoint`. A run without a checkpoint is not checked. Links at config.json
    and metrics.jsonl are refused first, as ``fit`` refuses them. Every process of a torchrun run checks alike, before
    rank 0 takes the run's lock: a run another process trains is read (never written) here, and said locked after
    (review r119 F2; a lock taken by rank 0 alone here would stop it without the others, a104 #1)."""
    from .train.loop import _model_change  # (the loop imports this module)

    run_dir = Path(run_dir)
    for own in (CONFIG, "metrics.jsonl"):  # as fit refuses them, before anything of the run is read (review r119 F2)
        refuse_link(run_dir / own)
    # the folders load_newest_checkpoint takes: a step-N, or the .old-step-N a save cut short left (it renames that back
    # under the run's lock, after this check; review r119 F3: a run of .old-step-N folders alone was built unchecked)
    steps = {_step_of(d): d for d in checkpoint_dirs(run_dir)}
    for old in _cut_short_checkpoints(run_dir):
        steps.setdefault(_step_of(old), old)
    checkpoints = [steps[k] for k in sorted(steps, reverse=True)]
    if not checkpoints:
        return  # (the run starts again from its recipe, as fit does)
    headers = [(ckpt / WEIGHTS, tensors) for ckpt in checkpoints if (ckpt / WEIGHTS).is_file()
               and not _extent_problem(ckpt / WEIGHTS) and (tensors := _header_tensors(ckpt / WEIGHTS)) is not None]
    for ckpt in checkpoints if not headers else ():  # none read: the newest one's error (a header only this reader
        if ckpt.exists():                           # refused: its shapes, from the full read the resume would do)
            headers = [(ckpt / WEIGHTS, _shapes_read_whole(ckpt / WEIGHTS))]
            break
    most = _tensor_budget(max(len(tensors) for _, tensors in headers)) if headers else None
    try:
        meta = _meta_build(name, options, most)
    except _Oversized:
        raise CheckpointError(f"the model of {run_dir / 'run.json'} does not fit the weights of its checkpoints: it "
                              f"makes more than {most:,} weights and buffers before it is whole, 8 for each tensor "
                              "of the largest of them and 256: run.json was edited, or the checkpoints are another run's"
                              ) from None
    if meta is None:
        return  # (an unknown option, which the real build says, or a construction the meta device cannot run)
    if why := _model_change(run_dir, model_config(meta)):
        raise ConfigError(why)
    first = None
    for weights, tensors in headers:
        if not (problems := _fit_problems(meta, tensors)):
            return
        first = first or f"{weights}: {'; '.join(problems)}"
    if first:
        raise CheckpointError(f"the model of {run_dir / 'run.json'} does not fit the weights of its checkpoints ({first}):"
                              " run.json was edited, or the checkpoints are another run's")


def _fit_problems(model, tensors: dict[str, torch.Tensor]) -> list[str]:
    """What of ``tensors`` does not fit ``model``'s state: missing and unexpected names, the first shape and the first
    kind (floating point or not) that differ. ``tensors`` gains the buffers of ``state_defaults`` it lacks."""
    own = model.state_dict()
    for prefix, module in model.named_modules():
        for name, factory in getattr(module, "state_defaults", {}).items():
            key = f"{prefix}.{name}" if prefix else name
            if key in own and key not in tensors:
                tensors[key] = factory(own[key].shape, dtype=own[key].dtype, device=own[key].device)
    problems = []
    if missing := [k for k in own if k not in tensors]:
        problems.append(f"{len(missing)} tensor(s) missing ({', '.join(missing[:3])}{', ...' * (len(missing) > 3)})")
    if extra := [k for k in tensors if k not in own]:
        problems.append(f"{len(extra)} unexpected ({', '.join(extra[:3])}{', ...' * (len(extra) > 3)})")
    for k in (k for k in own if k in tensors and tensors[k].shape != own[k].shape):
        problems.append(f"{k} has shape {tuple(tensors[k].shape)} in the file, {tuple(own[k].shape)} in the model")
        break
    for k in (k for k in own if k in tensors and tensors[k].is_floating_point() != own[k].is_floating_point()):
        # load_state_dict would cast: integers or booleans into float weights (genzoo never writes such a file)
        problems.append(f"{k} is {str(tensors[k].dtype)[6:]} in the file, {str(own[k].dtype)[6:]} in the model")
        break
    return problems


def load_state(model, tensors: dict[str, torch.Tensor], source: Path, what: str = "this model") -> None:
    """``model.load_state_dict(tensors)``, or a one-line :class:`CheckpointError` naming what does not fit
    ``what`` (the model, as the message names it: :func:`load`'s is built from the folder's config.json; a
    checkpoint's is the caller's, :func:`genzoo.fit`'s on resume).

    A module's ``state_defaults`` (a dict, buffer name -> factory such as ``torch.ones``) names buffers that
    weights written before the buffer existed may lack: those are filled in, so older runs load unchanged."""
    tensors = dict(tensors)
    if problems := _fit_problems(model, tensors):
        raise CheckpointError(f"weights in {source} do not fit {what}: {'; '.join(problems)}")
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        first = " ".join(str(e).split())[:300]
        raise CheckpointError(f"weights in {source} do not fit {what}: {first}") from None
    model.initialised = True  # a run's or a saved model's weights: fit trains on from them


def weights_file(directory: str | os.PathLike) -> Path | None:
    """The weights :func:`load` reads from ``directory``: its final ``model.safetensors``, else (a run still
    training, or killed) its newest checkpoint's; None if it has neither."""
    final = Path(directory) / WEIGHTS
    if final.is_file():
        return final
    ckpt = latest_checkpoint(directory)
    return None if ckpt is None else ckpt / WEIGHTS


def weights_stamp(directory: str | os.PathLike) -> list | None:
    """Which weights :func:`load` would read from ``directory`` now: ``[path relative to it, size, BLAKE2b
    digest of the content]``, or None. ``eval.json`` records it, so ``compare`` and ``report`` can tell results
    of other weights (by content: a copied run, whose files have new times, holds the same ones)."""
    weights = weights_file(directory)
    if weights is None or not weights.is_file() or _extent_problem(weights):  # (damaged: not hashed, gigabytes of it)
        return None
    return [str(weights.relative_to(directory)), weights.stat().st_size, _digest(path=weights)]


def same_weights(a: list | None, b: list | None) -> bool:
    """Whether two :func:`weights_stamp` s name the same content: size and digest, the path aside (a run's last
    checkpoint and the final weights written from it are the same weights)."""
    def ok(s):  # [path, size, digest]; anything else (a damaged record) names no weights
        return isinstance(s, (list, tuple)) and len(s) == 3
    return ok(a) and ok(b) and list(a)[1:] == list(b)[1:]


def record_picture(path: str | os.PathLike, source: str | os.PathLike, stamp: list | None = None,
                   command: list[str] | None = None) -> None:
    """Note in ``RUN/pictures.json`` which weights (``stamp``: :func:`weights_stamp` of the run ``source``, taken
    before they were loaded, as a run still training may write newer ones meanwhile; now where not given) the
    picture ``path`` that ``genzoo sample``, ``interpolate`` or ``inpaint`` wrote into a run was made from, and
    the ``command`` line that made it (its arguments after ``genzoo``, the run's path as ``RUN``), so that ``genzoo
    report`` can say when they are not the run's (trained further since, or another run's) and how to make it again
    with its own flags. Nothing for a picture outside a run."""
    run_dir = Path(path).resolve().parent
    if not is_run_dir(run_dir):
        return
    stamp = weights_stamp(source) if stamp is None else stamp
    entry = {"weights": stamp, "command": None if command is None else [str(t) for t in command]}
    with folder_locked(run_dir):  # two commands drawing into one run at once: neither record is lost
        made = read_pictures_record(run_dir)
        atomic_write_json(run_dir / "pictures.json", {**made, Path(path).name: entry}, own=True)


def picture_source(entry: Any) -> tuple[Any, list[str] | None]:
    """A ``pictures.json`` entry (:func:`record_picture`) as (its weights' stamp, its command or None); an older
    genzoo's entry is the stamp alone, and a damaged command is None (it only feeds a note).

    >>> picture_source({"weights": ["model.safetensors", 4, "ab"], "command": ["sample", "RUN", "-n", "16"]})
    (['model.safetensors', 4, 'ab'], ['sample', 'RUN', '-n', '16'])
    >>> picture_source(["model.safetensors", 4, "ab"])
    (['model.safetensors', 4, 'ab'], None)
    """
    if not isinstance(entry, dict):
        return entry, None
    command = entry.get("command")
    if not (isinstance(command, list) and command and all(isinstance(t, str) for t in command)):
        command = None
    return entry.get("weights"), command


#: what ``flock`` fails with where the file system does not do locks (Lustre mounted without ``-o flock``, some
#: network mounts): no lock can be had there, and the work goes on without one
NO_LOCKS = {errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL}


@contextlib.contextmanager
def folder_locked(folder: Path):
    """Hold an exclusive ``flock`` on the folder itself for the block, waiting for another holder (a short
    read-modify-write of a file in it: ``pictures.json``, a benchmarks file; no lock file is left behind). Where
    ``fcntl`` is missing (Windows) or the file system does not lock (:data:`NO_LOCKS`), no lock, silently; another
    error is a :class:`WriteError`."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError as e:  # the folder gone or unreadable meanwhile: one line, as a lock that fails
        raise WriteError(f"cannot lock the folder {folder}: {e.strerror or e}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as e:
            if e.errno not in NO_LOCKS:
                raise WriteError(f"cannot lock the folder {folder}: {e.strerror or e}") from None
        yield
    finally:
        os.close(fd)  # releases the lock


def read_pictures_record(run_dir: str | os.PathLike) -> dict:
    """``RUN/pictures.json`` (:func:`record_picture`), or {} where it is missing or damaged: it only feeds a note."""
    record = Path(run_dir) / "pictures.json"
    try:
        made = read_json(record, "pictures record") if record.is_file() else {}
    except (CheckpointError, OSError):
        return {}
    return made if isinstance(made, dict) else {}


def blocked_by_file(path: str | os.PathLike) -> bool:
    """Whether ``path``, or a folder above it, is a file (so no folder can be made there)."""
    path = Path(path)
    return any(p.exists() and not p.is_dir() for p in (path, *path.parents))


def cut_short_note(directory: str | os.PathLike) -> str | None:
    """For a run whose newest checkpoint a save cut short left as ``checkpoints/.old-step-N`` (a kill between the
    renames of :func:`replace_folder`), which readers do not take and a resume puts back: a note saying so, else None
    (also where a complete checkpoint of a later step is there, and while another process trains the run, whose save
    may be between its renames this instant)."""
    last = latest_checkpoint(directory)  # (a reader takes that one: only a newer .old-step-N is worth a word; r121 F9)
    cut = [p for p in _cut_short_checkpoints(directory) if last is None or _step_of(p) > _step_of(last)]
    if not cut or locked_elsewhere(directory):
        return None
    newest = max(cut, key=_step_of)
    return (f"its newest checkpoint was left as {CHECKPOINTS}/{newest.name} by a save cut short between two renames "
            f"(a kill): `genzoo train --resume --run-dir {shlex.quote(str(directory))}` puts it back and goes on")


def _why_no_weights(directory: Path) -> str:
    """The tail of :func:`load`'s message for a model folder with no weights: why a run's has none."""
    if gone := set_aside(directory):
        return (f": its training diverged, and the checkpoints it wrote were set aside as holding the weights that "
                f"broke its loss ({CHECKPOINTS}/{gone[-1].name})")
    if note := cut_short_note(directory):
        return f": {note}"
    if (directory / "run.json").is_file():
        return (" yet: its run has not reached its first checkpoint (every checkpoint_every steps; its metrics.jsonl "
                "shows how far it is)")
    return ""


def load(directory: str | os.PathLike, map_location: str | torch.device | int = "cpu") -> GenerativeModel:
    """Load a model saved by :func:`save`, or the newest weights of a run directory, onto the device
    ``map_location`` (a ConfigError for one this torch cannot use, for ``"meta"``, which holds no weights, and for
    what is no device: a dtype), in eval mode.

    A run killed before it finished has no ``model.safetensors`` yet; its latest checkpoint is used. A
    ``model.safetensors`` and a ``config.json`` of two saves (:func:`write_model`'s ``save_id``: a save cut short
    between its two files) are a :class:`CheckpointError`; files without the id (a run's, an older genzoo's, weights
    written by other means) are not checked. The caller's random number generator is left as it was (building
    the model draws its initial weights).
    """
    device = map_location.type if isinstance(map_location, torch.device) else map_location
    if isinstance(device, bool) or not isinstance(device, (str, int)):  # a dtype cast the model without a word
        raise ConfigError(f"map_location is the device to load onto (\"cpu\", \"cuda\", \"cuda:1\", a torch.device or a "
                          f"GPU's index), not {map_location!r}" + (": cast the loaded model with .to(dtype)" *
                                                                   isinstance(map_location, torch.dtype)))
    if isinstance(device, str) and device.split(":")[0].strip() == "meta":
        raise ConfigError("map_location 'meta' gives a model without weights: load onto a device (\"cpu\", \"cuda\")")
    directory = Path(directory)
    # building draws random initial weights, which the saved ones replace: under a fork of the CPU's generator (the
    # model is built there), so the caller's draws after a load are those it seeded (the weights are the same)
    with torch.random.fork_rng(devices=[]):
        model, cfg = _build(directory, loading=True)
    for _ in range(3):  # a run still training may prune the checkpoint just chosen: take the next newest
        weights = weights_file(directory)
        if weights is None:
            raise CheckpointError(f"{directory} has no {WEIGHTS} and no checkpoint{_why_no_weights(directory)}")
        try:
            tensors = load_tensors(weights)
        except CheckpointError:
            if weights.parent.exists():  # corrupt, not pruned while being read
                raise
            continue
        _check_save_id(directory, cfg, weights)
        load_state(model, tensors, weights, f"the model of {directory / CONFIG}")
        return _moved(model, map_location)
    raise CheckpointError(f"{directory}: its checkpoints changed while being read (a run still training?); try again")


def _moved(model, device):
    """``model`` on ``device`` in eval mode; a ConfigError for a device this torch cannot use (cuda here)."""
    try:
        return model.to(device).eval()
    except (AssertionError, RuntimeError) as e:  # "Torch not compiled with CUDA enabled", no such device
        raise ConfigError(f"cannot load the model onto {device}: {str(e).splitlines()[0]}") from None


_LOCKED: dict[Path, int] = {}  # lock file -> the thread of this process that holds it (run_lock is re-entrant)
_UNLOCKABLE: set[Path] = set()  # lock files flock refused (NO_LOCKS) and warned about: once a process


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike):
    """Hold ``run_dir/.lock`` (an exclusive ``flock``) for the block: a second process that would train the
    same run (two ``train`` into one ``--run-dir``, two ``--resume`` at once) gets a :class:`RunLocked` error
    instead of writing over the first one's files. The lock dies with its process, even on SIGKILL, so a
    killed run never stays locked; the file is removed, still locked, when the block ends, and a process that
    locked a file just removed tries again on the new one. Re-entrant within a thread (``genzoo train`` holds
    it from before it writes run.json, ``fit`` again around training); another thread is refused. Where
    ``fcntl`` is missing (Windows) there is no lock; where the file system does not lock (:data:`NO_LOCKS`)
    neither, with a :class:`GenZooWarning` (once a process); another error of ``flock`` is a :class:`WriteError`.
    A ``.lock`` that is a symlink is a :class:`WriteError` too: the file locked, then removed, is the name in the
    run folder, never what a link points at (a folder shared with others must not make training remove a file).
    """
    try:
        import fcntl
    except ImportError:
        yield
        return
    path = Path(run_dir).resolve() / ".lock"  # the folder resolved (a symlinked run shares its lock), not the file
    if _LOCKED.get(path) == threading.get_ident():  # held by this thread: `genzoo train` around fit
        yield
        return
    while True:
        try:  # never through a symlink (O_NOFOLLOW where the system has it; the look before, where it has not)
            if path.is_symlink():
                raise OSError(errno.ELOOP, "a symlink")
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0)
            f = os.fdopen(os.open(path, flags, 0o666), "a")
        except OSError as e:
            if path.is_symlink():
                raise WriteError(f"the run's lock file {path} is a symlink: remove it (training makes its own, and "
                                 "removes it at the end)") from None
            raise WriteError(f"cannot write the run's lock file {path}: {e.strerror or e}") from None
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise RunLocked(f"another process is training the run in {run_dir}: wait for it to end (two at once "
                            "would write over each other's checkpoints)") from None
        except OSError as e:
            if e.errno not in NO_LOCKS:
                f.close()
                raise WriteError(f"cannot lock the run's lock file {path}: {e.strerror or e}") from None
            if path not in _UNLOCKABLE:
                _UNLOCKABLE.add(path)
                warnings.warn(f"cannot lock {path} ({e.strerror or e}): a second process training this run would "
                              "not be stopped", GenZooWarning, stacklevel=3)
            break  # go on unlocked; the file is removed at the end as a held one is
        try:  # the holder before may have removed the file between our open and our lock: lock the current one
            same = os.fstat(f.fileno()).st_ino == os.lstat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        f.close()
    try:
        _LOCKED[path] = threading.get_ident()
        yield
    finally:
        _LOCKED.pop(path, None)
        # while still locked: the next process locks a new file. A folder gone read-only (a remount after an I/O
        # error) refuses it: the lock dies with f anyway, and that error must not replace the one unwinding (a
        # "permission denied: RUN/.lock" in place of "cannot write RUN/model.safetensors")
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
        f.close()


def locked_elsewhere(run_dir: str | os.PathLike) -> bool:
    """Whether another process (or thread) holds ``run_dir``'s :func:`run_lock` now: a run being trained."""
    try:
        with run_lock(run_dir):
            return False
    except RunLocked:
        return True
    except WriteError:  # no lock file can be made there: nothing can hold one
        return False


# -- checkpoints ----------------------------------------------------------------------------------
def _flatten_optimizer(i: int, opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer's state_dict into tensors (for safetensors) and plain data (for JSON)."""
    sd = opt.state_dict()
    tensors, plain_state = {}, {}
    for pid, st in sd["state"].items():
        plain_state[str(pid)] = {}
        for key, val in st.items():
            if isinstance(val, torch.Tensor):
                tensors[f"opt{i}.{pid}.{key}"] = val
            else:
                plain_state[str(pid)][key] = val
    return tensors, {"state": plain_state, "param_groups": sd["param_groups"]}


def _unflatten_optimizer(i: int, tensors: dict[str, torch.Tensor], plain: dict) -> dict:
    state: dict[int, dict] = {int(pid): dict(v) for pid, v in plain["state"].items()}
    prefix = f"opt{i}."
    for name, t in tensors.items():
        if name.startswith(prefix):
            pid, key = name[len(prefix):].split(".", 1)
            state.setdefault(int(pid), {})[key] = t
    return {"state": state, "param_groups": plain["param_groups"]}


def _is_step(name: str) -> bool:
    """Whether ``name`` is a checkpoint folder's: ``step-`` and ASCII digits (str.isdigit alone takes '²', which
    int() refuses, and other scripts' digits, '١٢' read as 12: no name genzoo writes)."""
    return name.startswith("step-") and name[5:].isascii() and name[5:].isdigit()


def _step_of(checkpoint: Path) -> int:
    """The step of a checkpoint folder, ``step-N`` or the ``.old-step-N`` a save cut short left."""
    return int(checkpoint.name.rpartition("-")[2])


def checkpoint_dirs(run_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints of a run, oldest first (temporary folders are ignored)."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and _is_step(p.name)]
    return sorted(found, key=lambda p: int(p.name[5:]))


def sample_grids(run_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """The training-evolution grids ``samples/step-NNNNNNNN.png`` of a run as (step, path), by step; other files
    (and folders of such names) are ignored."""
    found = [(int(p.stem[5:]), p) for p in (Path(run_dir) / "samples").glob("step-*.png")
             if p.stem[5:].isascii() and p.stem[5:].isdigit() and p.is_file()]
    return sorted(found, key=lambda sp: sp[0])


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint ``checkpoints/step-NNNNNNNN`` of ``run_dir`` (by step, not by name or time),
    or None if it has none (temporary ``.tmp-step-*`` folders are not checkpoints).

    >>> import tempfile
    >>> run = Path(tempfile.mkdtemp()); before = latest_checkpoint(run)
    >>> for name in ("step-00000900", "step-00001000", ".tmp-step-00002000-x"):
    ...     (run / "checkpoints" / name).mkdir(parents=True)
    >>> before, latest_checkpoint(run).name
    (None, 'step-00001000')
    """
    dirs = checkpoint_dirs(run_dir)
    return dirs[-1] if dirs else None


def set_aside(run_dir: str | os.PathLike) -> list[Path]:
    """The checkpoints of ``run_dir`` that a divergence set aside (``checkpoints/.diverged-step-N``;
    :func:`~genzoo.train.callbacks.kept`), oldest first.

    >>> import tempfile
    >>> run = Path(tempfile.mkdtemp())
    >>> (run / CHECKPOINTS / ".diverged-step-00000003").mkdir(parents=True)
    >>> [ck.name for ck in set_aside(run)], set_aside(run / "none")
    (['.diverged-step-00000003'], [])
    """
    folder = Path(run_dir) / CHECKPOINTS
    return sorted(p for p in folder.glob(DIVERGED + "step-*") if p.is_dir()) if folder.is_dir() else []


def save_checkpoint(run_dir: str | os.PathLike, step: int, model, optimizers, state: dict,
                    rng: dict[str, torch.Tensor], keep: int = 3) -> Path:
    """Write ``checkpoints/step-NNNNNNNN/`` atomically: the folder is filled under a temporary
    name and renamed into place, then all but the newest ``keep`` (at least 1) checkpoints are removed. ``rng`` holds the
    generator states ``"torch"`` and ``"data"`` (:func:`load_checkpoint` refuses a checkpoint without them);
    ``state`` is JSON written beside ``step`` in ``state.json``. Returns the checkpoint's folder. A checkpoint
    that cannot be written (a full disk) is a :class:`WriteError` naming it and the newest one left intact.

    >>> import os, tempfile, genzoo
    >>> _ = torch.manual_seed(0); m = genzoo.build("nice", data_shape=(2,))
    >>> opt = torch.optim.Adam(m.parameters())
    >>> rng = {"torch": torch.get_rng_state(), "data": torch.Generator().get_state()}
    >>> run = tempfile.mkdtemp()
    >>> for step in (10, 20):
    ...     path = save_checkpoint(run, step, m, [opt], {"epoch": 1}, rng, keep=1)
    >>> path.name, sorted(os.listdir(os.path.join(run, "checkpoints")))   # step 10 pruned
    ('step-00000020', ['step-00000020'])
    """
    if keep < 1:  # (0 kept them all; -1 removed each one as soon as it was written)
        raise ConfigError(f"keep must be >= 1, got {keep}: the newest checkpoint is always kept")
    root = Path(run_dir) / CHECKPOINTS
    final = root / f"step-{step:08d}"
    tmp = None
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".tmp-step-{step:08d}-"))
        tmp.chmod(0o777 & ~_UMASK)  # mkdtemp makes 0700; give the folder the mode mkdir would
        save_tensors(tmp / WEIGHTS, model.state_dict())
        opt_tensors, opt_plain = {}, []
        for i, opt in enumerate(optimizers):
            t, p = _flatten_optimizer(i, opt)
            opt_tensors.update(t)
            opt_plain.append(p)
        opt_tensors.update({f"rng.{k}": v for k, v in rng.items()})
        save_tensors(tmp / "state.safetensors", opt_tensors)
        atomic_write_json(tmp / "state.json", {"step": step, "optimizers": opt_plain, **state})
        replace_folder(tmp, final)  # over a checkpoint of the same step from an earlier attempt, if any
    except (WriteError, OSError) as e:  # a full disk: say which checkpoint failed (not the temporary folder, gone)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        why = e.__context__ if isinstance(e, WriteError) and isinstance(e.__context__, OSError) else e  # (from None)
        last = latest_checkpoint(run_dir)
        how = (f"`genzoo train --resume --run-dir {run_dir}`" if (Path(run_dir) / "run.json").is_file()
               else f"fit(..., run_dir={str(run_dir)!r}, resume=True)")  # (a run of genzoo.fit has no run.json)
        raise WriteError(f"cannot write the checkpoint {final}: {getattr(why, 'strerror', None) or why}; " + (
            f"the checkpoints written so far are intact: continue from {last.name} with {how}"
            if last is not None else "no checkpoint was written yet")) from None
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    prune_checkpoints(run_dir, keep)
    return final


def prune_checkpoints(run_dir: str | os.PathLike, keep: int) -> None:
    """Remove all but the newest ``keep`` (>= 1) checkpoints of ``run_dir``: each renamed out of the run first, so
    a kill mid-removal leaves no half-deleted ``step-N`` (the next start removes ``.tmp-step-*``)."""
    for old in checkpoint_dirs(run_dir)[:-keep]:
        gone = old.with_name(f".tmp-{old.name}-pruned")
        try:
            os.rename(old, gone)
        except OSError:
            continue
        shutil.rmtree(gone, ignore_errors=True)


def _match_layouts(opt: torch.optim.Optimizer) -> None:
    """Give each per-parameter state tensor (Adam's moments) its parameter's memory layout. A checkpoint stores
    them contiguous, and ``load_state_dict`` keeps that, but a channels-last parameter's moments were channels-last
    when saved; fused Adam pairs a parameter's elements with its moments' by memory position, so mismatched
    layouts would scramble every update after a resume (element-wise ops elsewhere match by index)."""
    for group in opt.param_groups:
        for p in group["params"]:
            for key, v in opt.state.get(p, {}).items():
                if isinstance(v, torch.Tensor) and v.shape == p.shape and v.stride() != p.stride():
                    opt.state[p][key] = torch.empty_like(p, dtype=v.dtype).copy_(v)


def load_checkpoint(path: str | os.PathLike, model, optimizers) -> tuple[dict, dict[str, torch.Tensor]]:
    """Restore model and optimizers from a checkpoint folder; return (state.json, rng tensors).

    Everything is checked before training reads it (:func:`_check_checkpoint`): a file that parses but holds
    damage (an optimizer moment of another shape, which fused Adam would read and write past its end; NaN weights;
    an RNG state torch refuses) is a :class:`CheckpointError`, so :func:`load_newest_checkpoint` goes on from the
    checkpoint before it.

    >>> import tempfile, genzoo
    >>> _ = torch.manual_seed(0); m = genzoo.build("nice", data_shape=(2,)); opt = torch.optim.Adam(m.parameters())
    >>> (-m.log_prob(torch.randn(8, 2)).mean()).backward(); opt.step()         # one step: Adam has moments
    >>> rng = {"torch": torch.get_rng_state(), "data": torch.Generator().get_state()}
    >>> path = save_checkpoint(tempfile.mkdtemp(), 7, m, [opt], {"epoch": 2}, rng)
    >>> m2 = genzoo.build("nice", data_shape=(2,)); opt2 = torch.optim.Adam(m2.parameters())  # other weights
    >>> state, rng2 = load_checkpoint(path, m2, [opt2])
    >>> state, sorted(rng2), all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), m2.state_dict().values()))
    ({'step': 7, 'epoch': 2}, ['data', 'torch'], True)
    >>> opt2.state_dict()["state"][0]["step"].item()
    1.0
    """
    path = Path(path)
    load_state(model, load_tensors(path / WEIGHTS), path / WEIGHTS)
    tensors = load_tensors(path / "state.safetensors", "checkpoint state file (optimizer and RNG states)")
    state = read_json(path / "state.json", "checkpoint state")
    step = state.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise CheckpointError(f"{path / 'state.json'} is corrupt: its step is {step!r}, not a count of steps")
    if _is_step(path.name) and int(path.name[5:]) != step:
        raise CheckpointError(f"{path / 'state.json'} is corrupt: it says step {step}, its folder step {int(path.name[5:])}")
    plain = state.pop("optimizers", [])
    if not isinstance(plain, list):
        raise CheckpointError(f"{path / 'state.json'} is corrupt: its optimizers are not a list")
    if len(plain) != len(optimizers):
        raise CheckpointError(f"{path} holds {len(plain)} optimizer states, the model has {len(optimizers)}")
    for i, opt in enumerate(optimizers):
        try:
            saved = _unflatten_optimizer(i, tensors, plain[i])
            _check_groups(path, i, saved["param_groups"], opt.param_groups)
            opt.load_state_dict(saved)
        except (ValueError, KeyError, RuntimeError, TypeError, AttributeError, IndexError) as e:
            raise CheckpointError(f"optimizer state in {path} does not fit: {' '.join(str(e).split())[:200]}") from None
        _match_layouts(opt)
    rng = {k[4:]: v for k, v in tensors.items() if k.startswith("rng.")}
    _check_checkpoint(path, model, optimizers, state, rng)
    return state, rng


#: the numeric settings of an optimizer's parameter group and the ranges a run's own can take: a schedule (genzoo's lr
#: schedules, a user's callback moving the weight decay or Adam's betas) moves them, so a checkpoint restores them
_RANGES = {"lr": (0.0, math.inf), "initial_lr": (0.0, math.inf), "eps": (0.0, math.inf),
           "weight_decay": (0.0, math.inf), "momentum": (0.0, math.inf), "alpha": (0.0, 1.0), "betas": (0.0, 1.0)}


def _check_groups(path: Path, i: int, saved, live: list[dict]) -> None:
    """A :class:`CheckpointError` where a checkpoint's parameter groups of optimizer ``i`` are not what training
    writes: ``load_state_dict`` takes every setting of the file, and an edited ``maximize: true`` trained the loss
    from 2.3 up to 541 with exit 0 and replaced the good checkpoints, a negative lr did the same, ``amsgrad`` or a
    missing ``lr`` crashed at the first step (audit a137 F10, review r116). A setting of kind (the booleans and
    choices: maximize, amsgrad, differentiable ...) must be the model's fresh optimizer's (``live``, built from its
    config), since no training changes it, but for the implementation's (``fused``, ``foreach``: a checkpoint of an
    older genzoo has ``fused: null``); a number must be finite and in the range any run's can take
    (:data:`_RANGES`: lr and eps not negative, betas in [0, 1) ...), since schedules move those. Settings the file lacks
    or the optimizer does not know (another torch's) are left to torch."""
    if not isinstance(saved, list) or len(saved) != len(live) or not all(isinstance(g, dict) for g in saved):
        return  # (load_state_dict says it does not fit)

    def bad(key, shown: str, why):
        return CheckpointError(f"checkpoint {path} is damaged: optimizer {i}'s {key} is {shown}{why}")

    for group, own in zip(saved, live):
        if "lr" not in group:
            raise CheckpointError(f"checkpoint {path} is damaged: optimizer {i}'s parameter group has no lr")
        for key in sorted(group.keys() & (own.keys() | {"initial_lr"}) - {"params"}):
            value = group[key]
            if key in _RANGES:
                low, high = _RANGES[key]

                def within(v) -> bool:  # (betas below 1: Adam divides by 1 - beta^t)
                    x = _number(v)
                    return x is not None and math.isfinite(x) and low <= x <= high and not (key == "betas" and x == 1.0)

                ok = (isinstance(value, (list, tuple)) and len(value) == 2 and all(map(within, value))
                      if key == "betas" else within(value))
                if not ok:
                    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
                    raise bad(key, shown, f", not a number in [{low:g}, {high:g}{')' if key == 'betas' else ']'}")
            elif key in own and key not in ("fused", "foreach") and (value != own[key] or type(value) is not type(own[key])):
                raise bad(key, repr(value)[:40], f", where the model's optimizer has {own[key]!r}")


#: what each optimizer genzoo uses keeps for a parameter once it has stepped (the first step reads them all)
_OPTIMIZER_STATE = {"Adam": ("step", "exp_avg", "exp_avg_sq"), "AdamW": ("step", "exp_avg", "exp_avg_sq"),
                    "RMSprop": ("step", "square_avg")}


def _number(v) -> float | None:
    """``v`` as a float where it is a real number that float() takes, else None (a bool, a string, a JSON integer of
    400 digits, which overflows float)."""
    import numbers

    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        return None
    try:
        return float(v)
    except OverflowError:
        return None


def _check_checkpoint(path: Path, model, optimizers, state: dict, rng: dict[str, torch.Tensor]) -> None:
    """A :class:`CheckpointError` for damage that parses: what :func:`load_checkpoint` restored must be what a
    run writes (finite weights, optimizer moments of their parameters' shapes, numeric hyper-parameters, RNG
    states torch takes, the logger's and guard's records)."""
    import numbers

    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"checkpoint {path} is damaged: {what}")

    if not all(bool(torch.isfinite(t).all()) for t in model.state_dict().values() if t.is_floating_point()):
        raise bad("its weights hold NaN or infinite values (genzoo never writes such a checkpoint)")  # buffers too: a GMM's
    for i, opt in enumerate(optimizers):
        for group in opt.param_groups:
            for key in ("lr", "eps", "weight_decay"):
                v = group.get(key, 0.0)
                if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
                    raise bad(f"optimizer {i}'s {key} is {v!r}")
            betas = group.get("betas", (0.0, 0.0))
            if not (isinstance(betas, (tuple, list)) and len(betas) == 2 and
                    all(isinstance(b, numbers.Real) and not isinstance(b, bool) for b in betas)):
                raise bad(f"optimizer {i}'s betas are {betas!r}")
            needs = _OPTIMIZER_STATE.get(type(opt).__name__, ()) + tuple(  # (and what its settings make it keep)
                k for k, on in (("momentum_buffer", (_number(group.get("momentum", 0)) or 0) > 0),
                                ("grad_avg", group.get("centered") is True),
                                ("max_exp_avg_sq", group.get("amsgrad") is True)) if on)
            for p in group["params"]:
                lacks = [k for k in needs if opt.state.get(p) and k not in opt.state[p]]
                if lacks:
                    raise bad(f"optimizer {i}'s state of a parameter lacks {', '.join(lacks)}")
                for key, v in opt.state.get(p, {}).items():
                    if not isinstance(v, torch.Tensor):
                        continue
                    want = () if key == "step" else tuple(p.shape)
                    if v.numel() != math.prod(want) or (key != "step" and tuple(v.shape) != want) or \
                            not v.is_floating_point() or not bool(torch.isfinite(v).all()):
                        raise bad(f"optimizer {i}'s {key} has shape {tuple(v.shape)} ({v.dtype}) for a parameter of "
                                  f"shape {tuple(p.shape)}, or values that are not finite")
    for key in ("torch", "data"):
        try:
            torch.Generator().set_state(rng[key])
        except (KeyError, RuntimeError, TypeError) as e:
            raise bad(f"its RNG state '{key}' {'is missing' if isinstance(e, KeyError) else 'is not one torch takes'}") from None
    def real(v) -> bool:  # a number float() takes (a JSON integer of 400 digits is a Real that overflows it)
        return _number(v) is not None

    logs = state.get("partial_logs")
    if logs is not None and not (isinstance(logs, dict) and all(
            isinstance(logs.get(k, {}), dict) and all(real(v) for v in logs.get(k, {}).values())
            for k in ("sums", "counts"))):
        raise bad("its partial_logs are not the logger's sums and counts")
    guard = state.get("guard")
    if guard is not None and not (isinstance(guard, dict) and isinstance(guard.get("recent", []), list) and all(
            real(v) for v in guard.get("recent", [])) and isinstance(guard.get("run", 0), int)
            and not isinstance(guard.get("run", 0), bool) and guard.get("run", 0) >= 0):
        raise bad("its guard record is not the divergence guard's")


def _cut_short_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """The ``checkpoints/.old-step-N`` a :func:`replace_folder` killed between its renames left of step N's checkpoint
    (:func:`load_newest_checkpoint` puts them back)."""
    root = Path(run_dir) / CHECKPOINTS
    return [old for old in root.glob(".old-step-*") if _is_step(old.name[5:]) and old.is_dir()] if root.is_dir() else []


def holds_checkpoint(run_dir: str | os.PathLike) -> bool:
    """Whether ``run_dir`` holds a checkpoint to go on from: a complete ``checkpoints/step-N``, or one a save cut
    short between its renames left as ``.old-step-N`` (which a resume puts back): a run with either is not one
    that stopped before its first checkpoint, and nothing of it may be removed as a run that never started.

    >>> import tempfile
    >>> run = Path(tempfile.mkdtemp()); before = holds_checkpoint(run)
    >>> (run / "checkpoints" / ".old-step-00000004").mkdir(parents=True)
    >>> before, latest_checkpoint(run), holds_checkpoint(run)
    (False, None, True)
    """
    return latest_checkpoint(run_dir) is not None or bool(_cut_short_checkpoints(run_dir))


def load_newest_checkpoint(run_dir: str | os.PathLike, model, optimizers
                           ) -> tuple[Path, dict, dict[str, torch.Tensor], list[tuple[Path, CheckpointError]]] | None:
    """:func:`load_checkpoint` from the newest checkpoint of ``run_dir`` that loads, and the newer ones that did
    not with their errors; None if it has none. A checkpoint set aside by a :func:`replace_folder` cut short is
    put back first.

    Writes are atomic, so a damaged checkpoint comes from outside (a disk fault, a partial copy): the one before
    it is tried, and the caller sets the damaged ones aside (:func:`set_aside_damaged`) once it goes on from the
    one that loaded. If none loads, the newest one's error is raised (weights that do not fit the model fail
    every checkpoint alike).
    """
    # the resuming run's look at its checkpoints (rank 0 holds its lock): a save_checkpoint killed between the renames
    # of replace_folder left step N's checkpoint as .old-step-N, put back here (restore_folder; removed where a new
    # step-N is in). Not in checkpoint_dirs: a reader (load, eval) could catch a live run between the two renames
    for old in _cut_short_checkpoints(run_dir):
        with contextlib.suppress(OSError):  # (another process of a torchrun run, reading the folder too, did it)
            restore_folder(old.with_name(old.name[5:]))
    errors = []
    for path in reversed(checkpoint_dirs(run_dir)):
        try:
            saved, rng = load_checkpoint(path, model, optimizers)
        except CheckpointError as e:  # the next one loaded restores every tensor this one may have set
            errors.append((path, e))
            continue
        return path, saved, rng, errors
    if errors:
        raise errors[0][1]
    return None


def set_aside_damaged(damaged: list[tuple[Path, CheckpointError]], resumed_from: Path) -> None:
    """Move each damaged checkpoint of :func:`load_newest_checkpoint` to ``checkpoints/.damaged-step-N`` (kept,
    out of the run's way), with a :class:`GenZooWarning`."""
    for bad, e in damaged:
        aside = bad.with_name(f".damaged-{bad.name}")
        remove(aside)  # (a stray file or link of that name blocked every resume: 'Not a directory'; audit a137 F6)
        os.rename(bad, aside)
        warnings.warn(f"{e}; set aside as {aside}, resuming from {resumed_from.name}", GenZooWarning, stacklevel=2)


def remove(path: Path, ignore_errors: bool = True) -> None:
    """Remove the folder, file or symlink at ``path``: a link itself, never what it points at (``shutil.rmtree``
    refuses a link to a folder, and ignoring that left it in the way of the next rename: a ``best/`` moved to another
    disk and linked back stopped every later session at its second new best; audit a137 F8)."""
    try:
        if path.is_symlink() or path.is_file():
            path.unlink(missing_ok=True)
        elif path.exists():
            shutil.rmtree(path)
    except OSError:
        if not ignore_errors:
            raise


def replace_folder(tmp: Path, final: Path) -> None:
    """Put the filled folder ``tmp`` in place of ``final`` by renames: a ``final`` already there is set aside
    as ``.old-NAME`` until the new one is in, then removed, so a kill at any moment leaves a complete folder
    under one of the two names (:func:`restore_folder` puts it back)."""
    old = final.with_name(f".old-{final.name}")
    if there := final.exists() or final.is_symlink():
        remove(old)
    try:
        if there:
            os.rename(final, old)
        os.rename(tmp, final)
    except BaseException:  # (a full disk; Ctrl-C, raised after the rename it lands in): the old folder back under
        with contextlib.suppress(OSError):  # its name, not left as .old-NAME
            restore_folder(final)
        raise
    _fsync_dir(final.parent)
    remove(old)


def restore_folder(final: Path) -> None:
    """Undo a :func:`replace_folder` cut short between its renames: the set-aside folder returns as
    ``final`` if nothing took its place, else it is removed."""
    old = final.with_name(f".old-{final.name}")
    if old.is_dir():
        if final.exists():
            remove(old)
        else:
            os.rename(old, final)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


__all__ = ["save", "load", "save_checkpoint", "load_checkpoint", "latest_checkpoint", "atomic_write_bytes",
           "atomic_write_json", "check_output", "is_run_dir"]
