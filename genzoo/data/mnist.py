"""MNIST (LeCun et al. 1998) from the four standard IDX files, and a downloader for them.

The split is the one of Goodfellow et al. (2014, "Generative Adversarial Nets") and most
likelihood papers since: train = the first 50,000 of the 60,000 training images, valid = the
last 10,000, test = the 10,000 ``t10k`` images. ``x = v / 255``, shape (N, 1, 28, 28), 256 levels.

Files are found in ``root`` (argument), else in ``$GENZOO_DATA`` or ``$GENZOO_DATA/mnist``; each
may be plain or gzipped (``.gz``). The IDX format is parsed by hand (magic number, dimensions,
byte count), so a truncated or corrupt file is a one-line DataError, never a traceback.

>>> import numpy as np, tempfile, os
>>> p = os.path.join(tempfile.mkdtemp(), "tiny-idx1-ubyte")
>>> write_idx(p, np.arange(5, dtype=np.uint8))
>>> read_idx(p).tolist()
[0, 1, 2, 3, 4]
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.client
import math
import os
import struct
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .dataset import Dataset, arrays_digest, check_n, check_split, take_first

__all__ = [
    "load_mnist", "download_mnist", "find_mnist", "read_idx", "write_idx",
    "MNIST_FILES", "MNIST_MD5", "MNIST_ARRAYS", "DEFAULT_MIRRORS", "ENV_VAR",
]

ENV_VAR = "GENZOO_DATA"

#: the four files, by role
MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

#: md5 of the four official ``.gz`` files
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}

#: arrays_digest(read_idx(file)) of each official file: its decoded array, which recompressing (or gunzipping) the file
#: keeps. Computed from the four files of /work/shared/data/mnist (recompressed: their .gz md5s differ from MNIST_MD5),
#: whose arrays are MNIST's: uint8 of the shapes below, label sums 267,236 and 44,434 (the official digit counts)
MNIST_ARRAYS = {
    "train-images-idx3-ubyte": "4121b60a879e4d0bd0556de1",
    "train-labels-idx1-ubyte": "f2983f152d16d5ad00f7073a",
    "t10k-images-idx3-ubyte": "2991edf860e5f4fbb64974a3",
    "t10k-labels-idx1-ubyte": "c7d9e1e8572dab0a940e34a7",
}

#: the array each file holds
MNIST_SHAPES = {
    "train-images-idx3-ubyte": (60_000, 28, 28),
    "train-labels-idx1-ubyte": (60_000,),
    "t10k-images-idx3-ubyte": (10_000, 28, 28),
    "t10k-labels-idx1-ubyte": (10_000,),
}

#: tried in order (the list torchvision uses)
DEFAULT_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

N_TRAIN = 50_000  # of the 60,000 training images; the rest is the validation split

# IDX type codes -> big-endian numpy dtypes
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IDX_CODES = {np.dtype(v).newbyteorder("=").str: k for k, v in _IDX_DTYPES.items()}


# -- IDX ------------------------------------------------------------------------------------


def _gunzip(raw: bytes, path: Path) -> bytes:
    """Every member of a gzip file, concatenated (as gunzip does: ``cat a.gz b.gz`` is a valid gzip file, and zero
    bytes after the last member are padding); a DataError for a corrupt or truncated member or for other bytes after
    the last member that are not one."""
    out, rest = [], raw
    while rest:
        if rest[:1] == b"\0" and not rest.strip(b"\0"):  # zero padding after the last member (a tape's or a block
            break  # device's copy): gunzip ignores it ("trailing zero bytes ignored"), as gzip.decompress does
        if rest[:2] != b"\x1f\x8b":
            raise DataError(f"IDX file {path}: {len(rest)} bytes after the gzip data that are not gzip data")
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)  # zlib directly: faster than the gzip module
        try:
            out.append(d.decompress(rest))
        except zlib.error as e:
            raise DataError(f"IDX file {path}: corrupt gzip data ({e})") from None
        if not d.eof:
            raise DataError(f"IDX file {path}: truncated gzip data (the stream ends early)")
        rest = d.unused_data
    return b"".join(out)


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"IDX file {path}: cannot be read ({e.strerror or e})") from None
    if raw[:2] == b"\x1f\x8b":
        return _gunzip(raw, path)
    if path.suffix == ".gz":
        raise DataError(f"IDX file {path}: not a gzip file (bad magic bytes {raw[:2].hex() or 'none'})")
    return raw


def _parse_idx(raw: bytes, path: Path) -> np.ndarray:
    if len(raw) < 4:
        raise DataError(f"IDX file {path}: truncated header ({len(raw)} bytes)")
    zero, code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or code not in _IDX_DTYPES:
        raise DataError(f"IDX file {path}: bad magic number 0x{raw[:4].hex()} (not an IDX file)")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"IDX file {path}: truncated header ({len(raw)} of {header} bytes)")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = math.prod(dims) * dtype.itemsize  # Python ints: a corrupt header cannot wrap around to a match
    found = len(raw) - header
    if found < expected:
        raise DataError(f"IDX file {path}: truncated: {found} data bytes, expected {expected} for shape {dims}")
    if found > expected:
        raise DataError(f"IDX file {path}: {found - expected} unexpected bytes after the data of shape {dims}")
    arr = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return arr if dtype.itemsize == 1 else arr.astype(dtype.newbyteorder("="))


@functools.lru_cache(maxsize=8)
def _read_idx_cached(resolved: str, mtime_ns: int, size: int) -> np.ndarray:
    arr = _parse_idx(_read_bytes(Path(resolved)), Path(resolved))
    arr.flags.writeable = False  # shared between callers: never modified in place
    return arr


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Parse an IDX file (plain or gzipped) into a read-only array; cached per resolved path."""
    p = Path(path)
    try:
        st = p.resolve().stat()
    except OSError:
        raise DataError(f"IDX file {p}: not found") from None
    return _read_idx_cached(str(p.resolve()), st.st_mtime_ns, st.st_size)


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file (gzipped when ``path`` ends in ``.gz``); used by tests."""
    a = np.asarray(array)
    code = _IDX_CODES.get(a.dtype.newbyteorder("=").str)
    if code is None:
        raise DataError(f"IDX cannot store dtype {a.dtype}")
    data = struct.pack(">HBB", 0, code, a.ndim) + struct.pack(f">{a.ndim}I", *a.shape)
    data += a.astype(np.dtype(_IDX_DTYPES[code])).tobytes()
    if str(path).endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    Path(path).write_bytes(data)


# -- locating and loading -------------------------------------------------------------------

_NOT_FOUND_HINT = "pass --data-root DIR or set GENZOO_DATA; `genzoo data download mnist --root DIR` fetches it"


def _file_in(d: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (d / name).is_file():
            return d / name
    return None


def find_mnist(root: str | os.PathLike | None = None, stems: tuple[str, ...] = tuple(MNIST_FILES.values())) -> dict[str, Path]:
    """Locate the IDX files ``stems`` (plain or ``.gz``) in ``root`` or ``$GENZOO_DATA``[/mnist].

    >>> find_mnist("/nonexistent")
    Traceback (most recent call last):
    ...
    genzoo.errors.DataError: MNIST not found in /nonexistent or /nonexistent/mnist (/nonexistent lacks train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]); `genzoo data download mnist --root /nonexistent` fetches it
    """
    given = "MNIST's folder"  # (--data-root, a run's recorded root or a caller's)
    if root is None:
        root, given = os.environ.get(ENV_VAR) or None, f"${ENV_VAR}"
        if root is None:
            raise DataError(f"MNIST not found: {_NOT_FOUND_HINT}")
    base = Path(root).expanduser()
    if base.is_file():  # (a download into it is refused too)
        raise DataError(f"{given} {base} is a file: give the folder that holds MNIST's four files")
    for d in (base, base / "mnist"):
        found = {s: _file_in(d, s) for s in stems}
        if all(found.values()):
            return found  # type: ignore[return-value]
    d = max((base, base / "mnist"), key=lambda d: sum(_file_in(d, s) is not None for s in stems))  # the nearer miss
    missing = ", ".join(f"{s}[.gz]" for s in stems if _file_in(d, s) is None)
    raise DataError(
        f"MNIST not found in {base} or {base / 'mnist'} ({d} lacks {missing}); "
        f"`genzoo data download mnist --root {base}` fetches it"
    )


def mnist_fingerprint(root: str | os.PathLike | None = None) -> str | None:
    """What the four MNIST files found in ``root`` (or ``$GENZOO_DATA``) hold, in one line: a BLAKE2b of their
    decoded arrays (not of the files' bytes, which gzip changes). A run records it and its later reads compare it
    (:func:`~genzoo.data.load_spec`): Fashion-MNIST, for one, comes in files of the same names and format, so a
    ``--data-root`` pointing at it would otherwise train or score a run on other data. None where they are not
    found (the loader says why)."""
    try:
        resolved = [p.resolve() for p in find_mnist(root).values()]
        stats = tuple((str(p), st.st_mtime_ns, st.st_size) for p, st in ((p, p.stat()) for p in resolved))
    except (DataError, OSError):
        return None
    return _mnist_fingerprint(stats)


@functools.lru_cache(maxsize=4)
def _mnist_fingerprint(stats: tuple) -> str:
    """:func:`mnist_fingerprint`, once per version of the files (a command reads several splits)."""
    return f"images and labels blake2b {arrays_digest(*(read_idx(path) for path, _, _ in stats))}"  # parsed once, cached


def _images_and_labels(img_path: Path, lab_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images, labels = read_idx(img_path), read_idx(lab_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError(f"IDX file {img_path}: expected uint8 images of shape (N, 28, 28), got {images.dtype} {images.shape}")
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DataError(f"IDX file {lab_path}: expected uint8 labels of shape (N,), got {labels.dtype} {labels.shape}")
    if len(labels) != len(images):
        raise DataError(f"IDX file {lab_path}: {len(labels)} labels for {len(images)} images in {img_path.name}")
    if len(labels) and labels.max() > 9:
        raise DataError(f"IDX file {lab_path}: label {int(labels.max())} is not a digit 0..9")
    return images, labels


def load_mnist(split: str = "train", *, root: str | os.PathLike | None = None, n: int | None = None) -> Dataset:
    """MNIST, split as Goodfellow et al. (2014): train 50,000 / valid 10,000 / test 10,000.

    ``x = v / 255`` float32 (N, 1, 28, 28), 256 levels, ``y`` the digit. The decoded files are
    cached in-process, so loading train then valid parses the training file once. ``n`` takes
    the first ``n`` of the split. If the training file holds fewer than 60,000 images, the last
    sixth of it (rounded down) is the validation split.

    A stand-in of 12 training images in the IDX format (no download) shows the split:

    >>> import os, tempfile, numpy as np
    >>> root = tempfile.mkdtemp()
    >>> write_idx(os.path.join(root, "train-images-idx3-ubyte"), np.full((12, 28, 28), 255, np.uint8))
    >>> write_idx(os.path.join(root, "train-labels-idx1-ubyte.gz"), np.arange(12, dtype=np.uint8) % 10)
    >>> ds = load_mnist("train", root=root)                    # 12 - 12 // 6 = 10; valid: the last 2
    >>> len(ds), ds.shape, ds.levels, float(ds.x.max()), load_mnist("valid", root=root).y.tolist()
    (10, (1, 28, 28), 256, 1.0, [0, 1])
    """
    check_split(split)
    kind = "test" if split == "test" else "train"
    paths = find_mnist(root, (MNIST_FILES[f"{kind}_images"], MNIST_FILES[f"{kind}_labels"]))
    images, labels = _images_and_labels(*paths.values())
    if split != "test":
        cut = N_TRAIN if len(images) == 60_000 else len(images) - len(images) // 6
        sl = slice(0, cut) if split == "train" else slice(cut, len(images))
        images, labels = images[sl], labels[sl]
    images, labels = take_first(images, labels, check_n(n))  # numpy slicing works the same way
    x = torch.from_numpy(images.astype(np.float32)).div_(255.0)[:, None]  # (N, 1, 28, 28)
    y = torch.from_numpy(labels.astype(np.int64))  # (N,)
    return Dataset("mnist", split, x, y, levels=256)


# -- download -------------------------------------------------------------------------------


def _usable(d: Path, stem: str) -> bool:
    """Whether ``d`` holds MNIST's file ``stem`` (plain or ``.gz``) as an IDX array of the official shape."""
    path = _file_in(d, stem)
    if path is None:
        return False
    try:
        return read_idx(path).shape == MNIST_SHAPES[stem]
    except DataError:
        return False


def _other_content(d: Path, stems: tuple[str, ...]) -> None:
    """A DataError naming the files of ``d`` (those the loader reads: plain before ``.gz``) that read as MNIST's
    arrays of the right shape but hold other values (:data:`MNIST_ARRAYS`): Fashion-MNIST (the same names, shapes
    and format), edited files, noise. The download would keep them, and report them as MNIST."""
    other = [path for stem in stems if (path := _file_in(d, stem)) is not None and _usable(d, stem)
             and arrays_digest(read_idx(path)) != MNIST_ARRAYS[stem]]  # read_idx: parsed once, cached
    if other:
        raise DataError(f"{', '.join(p.name for p in other)} in {d}: MNIST's file names and shapes, not MNIST's "
                        "content (another data set, such as Fashion-MNIST, or edited files); remove or rename them, "
                        "then download again")


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fetch(url: str, part: Path, name: str, progress: bool, timeout: float) -> str:
    """Stream ``url`` into ``part``; return the md5 of what was written."""
    from tqdm import tqdm

    h = hashlib.md5()
    req = urllib.request.Request(url, headers={"User-Agent": "genzoo (python urllib)"})
    with urllib.request.urlopen(req, timeout=timeout) as resp, open(part, "wb") as out:
        total = resp.headers.get("Content-Length")
        total = int(total) if total and total.isdigit() else None
        got = 0
        with tqdm(total=total, unit="B", unit_scale=True, desc=name, disable=not progress, leave=False) as bar:
            for block in iter(lambda: resp.read(1 << 16), b""):
                out.write(block)
                h.update(block)
                got += len(block)
                bar.update(len(block))
    if total is not None and got != total:
        raise OSError(f"incomplete download ({got} of {total} bytes)")
    return h.hexdigest()


def download_mnist(
    root: str | os.PathLike,
    *,
    mirrors: tuple[str, ...] | list[str] = DEFAULT_MIRRORS,
    checksums: dict[str, str] | None = MNIST_MD5,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Download the four MNIST ``.gz`` files into ``root``; return the folder that holds them (``root``, or
    ``root/mnist`` where the files are already there).

    Mirrors are tried in order for each file. Each file is written to ``NAME.part``, its md5
    checked against ``checksums`` (when given; keys are the ``.gz`` file names), then moved into
    place atomically with ``os.replace``. Files already present are skipped: a ``.gz`` matching its
    checksum, or a file (gzipped or not, recompressed, any checksum) that reads as the MNIST array of
    the right shape, in ``root`` or, when ``root`` holds none of them, in ``root/mnist`` (the loader's two
    places); with the default ``checksums``, one whose decoded array is not MNIST's (:data:`MNIST_ARRAYS`:
    Fashion-MNIST, noise of MNIST's shapes) is refused, naming it, before anything is fetched. With
    ``checksums=None`` a present file is kept where it reads as an array of MNIST's shape, whatever its
    values; a truncated or corrupt one is fetched again. A plain (not gzipped) file that is not MNIST's is
    refused before anything is fetched: the loader would read it, not the download. A file that no mirror
    delivers intact is a DataError naming it and the last error; no partial file is left behind.
    """
    dest = Path(root).expanduser()
    if dest.exists() and not dest.is_dir():
        raise DataError(f"cannot download into {dest}: it is a file, not a folder")
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create data folder {dest}: {e.strerror or e}") from None
    if isinstance(mirrors, str):
        mirrors = (mirrors,)
    if not mirrors:
        raise DataError("download_mnist needs at least one mirror URL")
    stems = tuple(MNIST_FILES.values())
    official = checksums == MNIST_MD5  # MNIST's own: present files must hold its arrays (other checksums: other data)
    if not any(_file_in(dest, s) for s in stems) and all(_usable(dest / "mnist", s) for s in stems):
        if official:
            _other_content(dest / "mnist", stems)
        return dest / "mnist"  # it holds them, where the loader looks next
    for stem in stems:  # a plain file is read before the .gz: one that is not MNIST's would hide the download
        plain = dest / stem
        if plain.is_file() and not _usable(dest, stem):
            try:
                why = f"an array of shape {read_idx(plain).shape}, not {MNIST_SHAPES[stem]}"
            except DataError as e:
                why = str(e).removeprefix(f"IDX file {plain.resolve()}: ")  # read_idx names the resolved path
            raise DataError(f"{plain} is not MNIST's file ({why}) and the loader reads it before {stem}.gz: "
                            "remove or rename it, then download again")
    if official:
        _other_content(dest, stems)
    for stem in stems:
        name = stem + ".gz"
        target = dest / name
        want = None if checksums is None else checksums.get(name)
        if _usable(dest, stem) or want is not None and target.is_file() and _md5(target) == want:
            continue  # (with no checksum, a .gz is kept only where it reads as MNIST's array: not a truncated one)
        part = dest / (name + ".part")
        last_error = "no mirror tried"
        for mirror in mirrors:
            url = mirror if mirror.endswith("/") else mirror + "/"
            url += name
            try:
                got = _fetch(url, part, name, progress, timeout)
            except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
                reason = getattr(e, "reason", None) or e
                last_error = f"{url}: {reason}"
                part.unlink(missing_ok=True)
                continue
            except BaseException:  # Ctrl-C mid-download: leave no partial file
                part.unlink(missing_ok=True)
                raise
            if want is not None and got != want:
                last_error = f"{url}: md5 mismatch (got {got}, expected {want})"
                part.unlink(missing_ok=True)
                continue
            os.replace(part, target)
            break
        else:
            raise DataError(f"could not download {name}: {last_error}")
    return dest
