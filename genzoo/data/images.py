"""Image datasets that need no download: scikit-learn's 8x8 digits, and the user's own data.

* :func:`load_digits` -- the UCI optical digits shipped inside scikit-learn (1,797 images).
* :func:`load_folder` -- a folder of PNG / JPEG / ... images (Pillow), optionally one sub-folder per class.
* :func:`load_npz` -- a ``.npz`` file with an array ``x`` (and optional labels ``y``).

Every problem with the user's files is a one-line :class:`~genzoo.errors.DataError`.

>>> ds = load_digits("valid")
>>> len(ds), ds.shape, ds.levels, float(ds.x.max())
(200, (1, 8, 8), 17, 1.0)
"""

from __future__ import annotations

import functools
import os
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError, GenZooWarning
from .dataset import Dataset, arrays_digest, check_float32_detail, check_n, check_split, split_slices, take_first

__all__ = ["load_digits", "load_folder", "load_npz", "convert_image", "DIGITS_SPLIT", "IMAGE_EXTENSIONS"]

#: sizes of the fixed digits split (train / valid / test), in permutation order
DIGITS_SPLIT = {"train": (0, 1297), "valid": (1297, 1497), "test": (1497, 1797)}
_DIGITS_PERM_SEED = 20_14  # fixed: the split never depends on the user's seed

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp",  # a GIF: its first frame
                    ".pgm", ".ppm", ".pbm", ".pnm",  # Netpbm, as torchvision's ImageFolder reads .pgm/.ppm
                    ".jfif", ".jpe")  # JPEG under the names browsers and old Windows tools save it with


# -- digits ---------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits as _sk_load_digits

    d = _sk_load_digits()
    perm = np.random.default_rng(_DIGITS_PERM_SEED).permutation(len(d.target))
    images = np.rint(d.images[perm]).astype(np.uint8)  # (1797, 8, 8), values 0..16
    return images, d.target[perm].astype(np.int64)


def load_digits(split: str = "train", *, n: int | None = None) -> Dataset:
    """scikit-learn's 8x8 handwritten digits: x = v / 16, shape (N, 1, 8, 8), 17 levels, y the digit.

    The 1,797 images are shuffled by a permutation with a fixed seed (independent of the
    user's ``seed``) and cut into train 1,297 / valid 200 / test 300, in that order, so the
    splits are disjoint and identical on every machine. ``n`` takes the first ``n`` of the split.
    Source: Alpaydin & Kaynak (1998), UCI "Optical Recognition of Handwritten Digits" (test part).
    """
    check_split(split)
    images, labels = _digits_arrays()
    a, b = DIGITS_SPLIT[split]
    x = torch.from_numpy(images[a:b].astype(np.float32) / 16.0)[:, None]  # (N, 1, 8, 8)
    y = torch.from_numpy(labels[a:b].copy())  # (N,)
    x, y = take_first(x, y, check_n(n))
    return Dataset("digits", split, x, y, levels=17)


# -- shared helpers for the user's own data -------------------------------------------------


def _permuted_split(x: torch.Tensor, y: torch.Tensor | None, split: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The fixed 80/10/10 split of a permutation with seed 0 (see :func:`split_slices`)."""
    perm = torch.from_numpy(np.random.default_rng(0).permutation(len(x)))
    idx = perm[split_slices(len(x))[split]]
    return x[idx], (None if y is None else y[idx])


def split_fingerprint(kind: str, path: str | os.PathLike) -> str | None:
    """What the fixed 80/10/10 split of a folder or a .npz (:func:`_permuted_split`) follows, in one line: a
    folder's sorted image names, or the data array of a .npz/.npy without its own split arrays (its rows, in
    order; not the file's bytes, which compression or an added label array change). A run records it
    (:func:`~genzoo.data.typed_spec`) and its later reads compare it (:func:`~genzoo.data.load_spec`): one image
    added or removed, or the rows reordered, moves most examples to another split, so that a "test" split of the
    changed data would be mostly training examples. For a .npz with split arrays of its own, their names and sizes
    (rewritten as one ``x``, or the other way, its splits hold other rows); None for data that cannot be read (its
    loader says why)."""
    import hashlib

    p = Path(path)
    try:
        if kind == "folder":
            files, h = image_files(p)[0], hashlib.blake2b(digest_size=12)
            for f in files:  # the name's own bytes: a name that is not UTF-8 (a Latin-1 caf\xe9.png) holds
                # surrogate escapes, which str.encode() refuses; for UTF-8 names the bytes are the same
                h.update(os.fsencode(f.relative_to(p).as_posix()) + b"\0")
            return f"{len(files)} images, names blake2b {h.hexdigest()}"
        st = p.stat()
        return _npz_fingerprint(str(p.resolve()), st.st_mtime_ns, st.st_size)
    except (OSError, DataError):
        return None


@functools.lru_cache(maxsize=8)
def _npz_fingerprint(path: str, mtime_ns: int, size: int) -> str | None:
    """:func:`split_fingerprint` of an .npz, once per version of the file (a command checks each split it reads)."""
    arrays = _read_arrays(Path(path), f"data file {path}")
    key, a = _data_array(arrays, f"data file {path}")
    if key is None:  # its own splits: rewritten as one x (or back), a "test" split would hold training rows
        return "split arrays " + ", ".join(f"{k} ({len(arrays[k])} rows)" for k in SPLIT_ARRAYS if k in arrays)
    return f"{len(a)} rows of {a.dtype}, blake2b {arrays_digest(a)}"


# -- folder of images -----------------------------------------------------------------------


def _channels_option(channels: int | None, mode: str | None) -> int | None:
    by_mode = {"l": 1, "gray": 1, "grey": 1, "grayscale": 1, "greyscale": 1, "rgb": 3, "color": 3, "colour": 3}
    c = None
    if mode is not None:
        if str(mode).lower() not in by_mode:
            raise DataError(f"unknown image mode '{mode}'; use 'L' (grayscale) or 'RGB'")
        c = by_mode[str(mode).lower()]
    if channels is not None:
        if channels not in (1, 3):
            raise DataError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels}")
        if c is not None and c != channels:
            raise DataError(f"mode '{mode}' and channels={channels} disagree")
        c = channels
    return c


#: folders that systems and tools put beside the data, never a class: a macOS zip's __MACOSX (of ._name sidecars),
#: ext4's lost+found, Python's __pycache__ (torchvision refuses the first as an empty class; genzoo read past them)
SYSTEM_FOLDERS = frozenset({"__MACOSX", "lost+found", "__pycache__"})


def _entries(d: Path, root: Path | None = None) -> tuple[list[Path], list[Path], list[Path]]:
    """(image files, other files, sub-folders) directly in ``d``, each sorted by name. Hidden names (``.name``:
    macOS's ``._name`` sidecars, editors' backups, ``.ipynb_checkpoints``) and :data:`SYSTEM_FOLDERS` are not part
    of the data set. A symbolic link whose target is missing is a DataError naming it (from ``root``, the image
    folder) where it would be data, an image by its extension or (none) a class folder: neither a file nor a folder,
    it was left out without a word, and as a class folder it moved every later label, as an empty class folder did
    (:func:`image_files`); one of another extension (``notes.txt``) is among the other files, skipped with a note,
    but where it stands beside class folders (``b.v1``, which may have been one)."""
    images, other, subs, dangling = [], [], [], []
    with os.scandir(d) as entries:  # its file types come with the listing: no stat per file
        for e in sorted(entries, key=lambda e: e.name):
            if not e.name.startswith(".") and not (e.name in SYSTEM_FOLDERS and e.is_dir()):
                if e.is_dir():
                    subs.append(d / e.name)
                elif e.is_file():
                    (images if os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS else other).append(d / e.name)
                elif e.is_symlink() and not os.path.exists(e.path):  # (is_dir and is_file follow links: dangling)
                    ext = os.path.splitext(e.name)[1].lower()
                    if ext and ext not in IMAGE_EXTENSIONS:  # no image (a class folder b.v1 where classes are read)
                        dangling.append(d / e.name)
                        continue
                    _refuse_dangling(d / e.name, d if root is None else root)
    if dangling and subs and (root is None or d == root):  # among class folders: it may have been one
        _refuse_dangling(dangling[0], d)
    other += dangling  # else skipped, with the note
    return images, other, subs


def _refuse_dangling(link: Path, root: Path) -> None:
    """The DataError for a symbolic link whose target is missing, where it would be data."""
    try:
        target = os.readlink(link)
    except OSError:
        target = "?"
    raise DataError(f"image folder {root}: {link.relative_to(root).as_posix()} is a symbolic link to {target}, which "
                    "does not exist (a drive not mounted?): restore its target or remove the link (left out, it would "
                    "change the data without a word)")


def _holds_images(d: Path) -> bool:
    """Whether folder ``d``, or a folder below it, holds an image file (hidden names left out)."""
    for _, dirs, names in os.walk(d):
        dirs[:] = [s for s in dirs if not s.startswith(".") and s not in SYSTEM_FOLDERS]
        if any(not s.startswith(".") and os.path.splitext(s)[1].lower() in IMAGE_EXTENSIONS for s in names):
            return True
    return False


def _some(names: list[str]) -> str:
    """The first three of ``names``, and ``...`` for more."""
    return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")


def image_files(root: Path, skipped: list[Path] | None = None) -> tuple[list[Path], list[int] | None, list[str]]:
    """Image files directly in ``root`` (unlabelled); else one class per sub-folder, labels 0, 1, ... by sorted folder
    name (as torchvision's ``ImageFolder``), returned as (files, labels, class names in label order). A class folder
    that holds no images of its own, or sub-folders with images, is a DataError naming it: left out, it would move
    the label of every class after it, and genzoo reads one level of folders (in a folder of images too, a
    sub-folder with images is refused); so is a symbolic link whose target is missing, file or folder. Hidden files
    and folders are skipped; other files of an extension not in :data:`IMAGE_EXTENSIONS` go into ``skipped`` where
    given."""
    skipped = [] if skipped is None else skipped
    files, other, subs = _entries(root, root)
    skipped += other
    if files:
        if mixed := [d.name for d in subs if _holds_images(d)]:
            raise DataError(f"image folder {root}: holds {len(files)} image(s) of its own ({files[0].name}, ...) and "
                            f"class sub-folders ({_some(mixed)}); put every image in a class sub-folder, or point at a "
                            "folder of one kind")
        return files, None, []
    labels: list[int] = []
    for k, d in enumerate(subs):
        found, loose, below = _entries(d, root)
        if nested := [s.name + "/" for s in below if _holds_images(s)]:
            raise DataError(f"image folder {root}: class folder {d.name} holds sub-folders with images "
                            f"({_some(nested)}), which genzoo does not read (one level of class folders): put their "
                            "images in the class folder, or point at the folder whose sub-folders are the classes")
        if not found:
            raise DataError(f"image folder {root}: class folder {d.name} holds no images "
                            f"({', '.join(IMAGE_EXTENSIONS)}): remove it or fill it; labels follow the sorted folder "
                            "names")
        files += found
        labels += [k] * len(found)
        skipped += loose
    return files, (labels if files else None), [d.name for d in subs]


#: why 16-bit images of values 1..255 are refused (8-bit values in 16-bit files: black, two levels, read as 0..65535)
_EIGHT_IN_SIXTEEN = ("{what}: 8-bit values in 16-bit files, which genzoo reads as 0..65535 (almost black, two levels); "
                     "save them with 8 bits (uint8)")
#: a 16-bit image's largest value must reach this: below it, 10- or 12-bit data (scientific, medical and machine-vision
#: cameras write 0..1023 or 0..4095 into 16-bit PNG/TIFF), which /257 would make images in [0, 0.063] of 17 levels
SIXTEEN_BIT_LEAST_MAX = 4096
_TWELVE_IN_SIXTEEN = ("{what}: 10- or 12-bit values in 16-bit files, which genzoo reads as 0..65535 (almost black, at "
                      "most 17 levels); rescale them to 0..65535 (12 bits: x * 16) or save them with 8 bits (uint8)")


def _judge_sixteen(top: int, path: Path, wide: list[int] | None) -> None:
    """A 16-bit image's largest value ``top`` into ``wide`` where given (a folder judges its images together), else
    the DataError of :func:`_eight_bit` for 8-, 10- or 12-bit values in a 16-bit file."""
    if wide is not None:
        wide.append(top)
    elif 0 < top <= 255:
        raise DataError(_EIGHT_IN_SIXTEEN.format(what=f"image file {path} is 16-bit with no value above {top}"))
    elif 0 < top < SIXTEEN_BIT_LEAST_MAX:
        raise DataError(_TWELVE_IN_SIXTEEN.format(what=f"image file {path} is 16-bit with no value above {top}"))


def _rawmode(im) -> str:
    """How Pillow decodes the opened, not yet loaded, image ``im`` (its first tile's raw mode: ``"RGB;16B"`` for a
    16-bit RGB PNG, ``"L;4"`` for a 4-bit grey one); "" where it does not say. ``load()`` clears the tiles."""
    for t in getattr(im, "tile", None) or ():  # (codec, extents, offset, args): Pillow 11's _Tile, 10's plain tuple
        args = t[3] if len(t) > 3 else None
        raw = args[0] if isinstance(args, tuple) and args else args
        return raw if isinstance(raw, str) else ""
    return ""


#: raw modes of 16-bit colour and grey+alpha files (PNG, TIFF), which Pillow decodes into 8-bit RGB / RGBA by keeping
#: each value's high byte (LA;16B: R = G = B = the grey); premultiplied RGBa;16 is left out (its high bytes are no
#: bound of the values), and so is CMYK;16 (ink: 0..255 in 16 bits reads white, not black)
_SIXTEEN_COLOUR = ("RGB;16B", "RGB;16L", "RGB;16N", "RGBA;16B", "RGBA;16L", "RGBA;16N", "RGBX;16B", "RGBX;16L",
                   "RGBX;16N", "LA;16B")


def _eight_bit(im, path: Path, wide: list[int] | None = None, raw: str = ""):
    """``im`` with 8 bits per channel. Pillow's ``convert("L")`` clips a 16-bit grey image at 255 (almost every
    pixel white), so 16-bit values are scaled to 0..255 instead; 32-bit and float images have no fixed range.
    A 16-bit image's largest value goes into ``wide`` where given (a folder judges them together, :func:`load_folder`);
    without it, an image whose values are all 1..255 is refused: 8-bit values saved in a 16-bit file (Pillow's
    ``fromarray`` of a uint16 array, OpenCV), which read as 0..65535 would be two levels, black; so is one whose
    largest value is below :data:`SIXTEEN_BIT_LEAST_MAX` (10- or 12-bit data: near-black, 17 levels).

    16-bit colour files (``raw``, the file's raw mode, :func:`_rawmode`, in :data:`_SIXTEEN_COLOUR`) are judged
    alike: Pillow hands them over already narrowed to their high bytes, so their largest value is taken as the
    largest the high bytes allow (``hi * 256 + 255``: exact for the 4096 bound; an all-black file counts as 0..255),
    the alpha channel left out; a 16-bit grey+alpha file stays grey (1 channel). A PNG's transparent grey level
    (tRNS) is in the file's bit depth: for 16-bit grey it is matched on the 16-bit values, for 2- and 4-bit grey
    scaled as Pillow scales the pixels (each was ignored: the colour matched no pixel)."""
    from PIL import Image

    if im.mode.startswith("I;16") or im.mode == "I":
        v = np.asarray(im).astype(np.int64)  # (H, W)
        if v.min() < 0 or v.max() > 65535:
            raise DataError(f"image file {path}: 32-bit values outside 0..65535; save it with 8 or 16 bits per channel")
        _judge_sixteen(int(v.max()), path, wide)
        out = Image.fromarray(np.round(v / 257.0).astype(np.uint8), mode="L")  # 65535 / 257 = 255
        key = im.info.get("transparency")
        if isinstance(key, int):  # matched before the scaling, which merges 257 values into one (fromarray drops it)
            out = Image.merge("LA", (out, Image.fromarray(np.where(v == key, 0, 255).astype(np.uint8), mode="L")))
        return out
    if im.mode == "F":
        raise DataError(f"image file {path}: floating-point pixels have no fixed range; save it with 8 or 16 bits per channel")
    if raw in _SIXTEEN_COLOUR and im.mode in ("RGB", "RGBA"):
        grey = raw.startswith("LA")
        hi = max(top for _, top in im.getextrema()[:1 if grey else 3])  # (alpha left out)
        _judge_sixteen(hi * 256 + 255, path, wide)
        if grey:
            return Image.merge("LA", (im.getchannel("R"), im.getchannel("A")))
        key = im.info.get("transparency")
        if isinstance(key, tuple):  # a 16-bit tRNS colour against the high bytes: the 256 values of each (nearest)
            im.info["transparency"] = tuple(c >> 8 for c in key)
        return im
    if raw in ("L;2", "L;4") and isinstance(im.info.get("transparency"), int):  # Pillow scales the pixels to 0..255
        im.info["transparency"] *= 85 if raw == "L;2" else 17
    return im


_BLACK_INK = ("black on a transparent background (the picture in the alpha channel alone): composited over black, as "
              "genzoo reads transparency, {it} all black; save {them} as light ink on black, or without transparency")


def _opaque(im, path: Path | None = None, blank: list[Path] | None = None):
    """``im`` without transparency, composited over black (MNIST's background). Pillow's ``convert("L")``
    and ``convert("RGB")`` drop the alpha channel, leaving whatever colour the transparent pixels hold
    (often white, or noise), which is not what the picture shows. Black ink on a transparent background (icon
    sets, font glyphs: the picture in the alpha channel alone) would be all black: ``path`` goes into ``blank``
    where given (a folder judges its images together: one black sprite with a soft edge is a picture), else a
    DataError naming it. A PNG's tRNS chunk (``im.info["transparency"]``: a grey level, an RGB colour or palette
    alphas) counts for 1-bit and grey, RGB and palette images alike, and a grey palette stays grey (1 channel)."""
    from PIL import Image

    if "transparency" in im.info and im.mode in ("1", "L", "RGB", "P") or im.mode in ("PA", "La", "RGBa"):
        grey = im.mode in ("1", "L", "La") or im.mode in ("P", "PA") and _grey_palette(im)
        im = im.convert("LA" if grey else "RGBA")  # Pillow applies the tRNS colour key or palette alphas
    if im.mode not in ("LA", "RGBA"):
        return im
    gray = im.mode == "LA"
    im = im.convert("RGBA")
    out = Image.alpha_composite(Image.new("RGBA", im.size, (0, 0, 0, 255)), im).convert("RGB")
    alpha = im.getchannel("A").getextrema()
    if out.getextrema() == ((0, 0),) * 3 and alpha[0] != alpha[1]:
        if blank is None:
            raise DataError(f"image file {path}: " + _BLACK_INK.format(it="it is", them="it"))
        blank.append(path)
    return out.convert("L") if gray else out


def _grey_palette(im) -> bool:
    """Whether every colour of palette image ``im``'s palette is a grey."""
    palette = np.asarray(im.getpalette() or [], dtype=np.int64).reshape(-1, 3)  # (colours, RGB)
    return bool((palette == palette[:, :1]).all())


def _unpaletted(im):
    """A palette image as grey ("L") if every palette colour is a grey, else as "RGB": a grey-palette PNG (what
    optimisers such as pngquant write) is a grayscale image, not a colour one."""
    if im.mode != "P":
        return im
    return im.convert("L" if _grey_palette(im) else "RGB")


def read_image(path: str | os.PathLike, what: str = "image file", wide: list[int] | None = None,
               blank: list[Path] | None = None):
    """The image at ``path`` as a PIL image of 8 bits per channel without transparency (:func:`_eight_bit`,
    :func:`_opaque`), turned as its EXIF orientation says (as viewers show a phone's photo) and with a grey
    palette read as grey (:func:`_unpaletted`): how every image genzoo reads is read (data folders,
    ``inpaint --image``, masks). A :class:`DataError` naming the file if it cannot be read (beyond twice Pillow's
    decompression-bomb limit ``Image.MAX_IMAGE_PIXELS`` too; Pillow only warns between once and twice it).
    ``wide``: see :func:`_eight_bit`; ``blank``: :func:`_opaque`. The mode may still be one that Pillow converts
    to RGB only (CIE L*a*b*): make it grey or RGB with :func:`convert_image`."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            raw = _rawmode(im)  # before load(), which forgets it: a 16-bit colour file reads as 8-bit RGB
            im.load()
            try:
                img = ImageOps.exif_transpose(im)  # a copy, turned upright
            except Exception:  # an unreadable EXIF block (Pillow raises several kinds): the pixels as stored
                img = im.copy()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        why = str(e).splitlines()[0] if str(e) else "unreadable"
        raise DataError(f"{what} {path}: cannot be read ({type(e).__name__}: {why})") from None
    return _unpaletted(_opaque(_eight_bit(img, path, wide, raw), path, blank))


def convert_image(img, mode: str, path: str | os.PathLike, what: str = "image file"):
    """``img`` (from :func:`read_image`) converted to ``mode`` ("L" or "RGB"), through RGB where Pillow converts
    the image's mode to RGB alone (a CIE L*a*b* TIFF, from Photoshop or a scanner: "conversion from LAB to RGB not
    supported" when made grey); a one-line DataError naming ``what`` ``path`` for a mode it cannot convert at all.
    Every conversion of a read image to grey or RGB goes through it (data folders, ``inpaint --image``, masks).

    >>> from PIL import Image
    >>> lab = Image.new("RGB", (2, 2), (255, 255, 255)).convert("LAB")
    >>> convert_image(lab, "L", "white.tif").getpixel((0, 0))
    255
    """
    try:
        return img.convert(mode)
    except ValueError:
        pass
    try:
        return img.convert("RGB").convert(mode)
    except ValueError as e:
        raise DataError(f"{what} {path}: its {img.mode} pixels cannot be converted to {mode} ({e}); save it as RGB or "
                        "grayscale") from None


def load_folder(path: str | os.PathLike, split: str = "train", *, n: int | None = None,
                channels: int | None = None, mode: str | None = None) -> Dataset:
    """A folder of PNG / JPEG / BMP / GIF / TIFF / WebP / PGM / PPM images of one size, x in [0, 1] with 256 levels.

    Images directly inside ``path`` are unlabelled; if there are none, each sub-folder is a class (labels 0, 1, ...
    by sorted sub-folder name, recorded in ``classes``: :func:`image_files`); a folder with both is refused, and so
    is a class folder without images of its own or with image-holding sub-folders (one level of folders is read).
    Hidden files and folders (names starting with ``.``) are skipped; other files not named as images
    (:data:`IMAGE_EXTENSIONS`) too, with a :class:`~genzoo.errors.GenZooWarning`. Transparent pixels are
    composited over black.
    ``channels`` (1 or 3) or ``mode`` (``"L"`` / ``"RGB"``) picks grayscale or colour; the default is 1
    if every image is grayscale, else 3. Split: a fixed permutation (seed 0) cut 80 / 10 / 10 into train / valid /
    test (every image goes to train when there are fewer than 10).

    >>> import os, tempfile
    >>> from PIL import Image
    >>> d = tempfile.mkdtemp()
    >>> for c, v in (("cat", 0), ("dog", 255)):         # a class per sub-folder: 5 black cats, 5 white dogs, 4x3
    ...     os.mkdir(os.path.join(d, c))
    ...     for i in range(5): Image.new("L", (4, 3), v).save(os.path.join(d, c, f"{i}.png"))
    >>> ds = load_folder(d)                               # 8 of the 10 in train; labels by sorted name: dog = 1
    >>> len(ds), ds.shape, ds.levels, torch.equal(ds.x.flatten(1).mean(1), ds.y.float()), ds.classes
    (8, (1, 3, 4), 256, True, ('cat', 'dog'))
    >>> len(load_folder(d, "valid")), len(load_folder(d, "test"))
    (1, 1)
    """
    check_split(split)
    want = _channels_option(channels, mode)
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"image folder {root}: not found")
    skipped: list[Path] = []
    files, labels, classes = image_files(root, skipped)
    if not files:
        raise DataError(f"image folder {root}: no images found (looked for {', '.join(IMAGE_EXTENSIONS)})")
    images, size0, gray, wide, blank = [], None, True, [], []
    for f in files:
        img = read_image(f, wide=wide, blank=blank)
        if size0 is None:
            size0 = img.size
        elif img.size != size0:
            raise DataError(
                f"image folder {root}: {f.relative_to(root)} is {img.size[0]}x{img.size[1]} but "
                f"{files[0].relative_to(root)} is "
                f"{size0[0]}x{size0[1]}; all images must have the same size"
            )
        gray = gray and img.mode in ("1", "L")
        images.append(img)
    if wide and 0 < max(wide) < SIXTEEN_BIT_LEAST_MAX:  # every 16-bit image of the folder: one dark image is no
        why = _EIGHT_IN_SIXTEEN if max(wide) <= 255 else _TWELVE_IN_SIXTEEN  # proof, all are
        raise DataError(why.format(what=f"image folder {root}: no value of its {len(wide)} 16-bit image(s) is above "
                                        f"{max(wide)}"))
    if 2 * len(blank) > len(files):  # most: one black sprite with a soft edge among coloured ones is a picture
        raise DataError(f"image folder {root}: {len(blank)} of its {len(files)} images are "
                        + _BLACK_INK.format(it="each is", them="them") + f" (the first: {blank[0].name})")
    c = want or (1 if gray else 3)
    arr = np.stack([np.asarray(convert_image(im, "L" if c == 1 else "RGB", f), dtype=np.uint8)
                    for im, f in zip(images, files)])
    arr = arr[:, None] if c == 1 else arr.transpose(0, 3, 1, 2)  # (N, C, H, W)
    x = torch.from_numpy(arr.astype(np.float32) / 255.0)  # (N, C, H, W)
    y = None if labels is None else torch.tensor(labels, dtype=torch.int64)
    x, y = take_first(*_permuted_split(x, y, split), check_n(n))
    if skipped:  # not silence: a .heic or .jp2 folder would lose its images without a word
        warnings.warn(f"image folder {root}: {len(skipped)} file(s) skipped, not images by their extension "
                      f"({_some([f.relative_to(root).as_posix() for f in skipped])}); genzoo reads "
                      f"{', '.join(IMAGE_EXTENSIONS)}", GenZooWarning, stacklevel=2)
    return Dataset(f"folder:{root.resolve()}", split, x, y, levels=256, classes=classes or None)


# -- .npz -----------------------------------------------------------------------------------


def _as_nchw(a: np.ndarray, where: str) -> np.ndarray:
    """(N, D) vectors stay; images become (N, C, H, W) with C in {1, 3}."""
    if a.ndim == 2:
        return a
    if a.ndim == 3:
        return a[:, None]  # (N, 1, H, W)
    if a.ndim == 4 and a.shape[1] in (1, 3):
        return a  # (N, C, H, W)
    if a.ndim == 4 and a.shape[3] in (1, 3) and a.shape[1] > 4 and a.shape[2] > 4:
        return a.transpose(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)
    raise DataError(
        f"{where} has the wrong image shape {a.shape}; expected (N, D) vectors or images (N, H, W), "
        "(N, C, H, W) or (N, H, W, C) with C in {1, 3}"
    )


#: an integer image array must reach this level: below it, it is not 0..255 data (0/1 masks, 0..16 digits)
SMALLEST_MAX_LEVEL = 32


def _on_grid(a: np.ndarray) -> bool:
    """Whether float images ``a`` in [0, 1] are all on ``v / 255`` (``x / 255.``, torchvision's ``ToTensor``; 0/1
    images too), within the rounding of their own dtype (float16 holds 254/255 only to 0.12 of a level).

    >>> _on_grid(np.array([[0.0, 1 / 255, 1.0]], np.float32)), _on_grid(np.array([[0.0, 0.3]]))
    (True, False)
    >>> _on_grid((np.arange(256) / 255).astype(np.float16)[None])
    True
    """
    if a.dtype.kind != "f":
        return False
    # twice the largest rounding of v / 255 in a's dtype, in levels (float16: 0.06 of a level, so 0.12; levels are 1
    # apart), and at least 1e-3
    tolerance = max(1e-3, 255 * float(np.finfo(a.dtype).eps) / 2)
    scaled = a.astype(np.float32) * np.float32(255)  # (like a)
    return bool(np.abs(scaled - np.rint(scaled)).max() <= tolerance)


def _convert_x(a: np.ndarray, where: str, on_grid: bool | None = None) -> tuple[torch.Tensor, int | None]:
    """Validate one data array; return float32 x and its number of levels (None: continuous). Float images are 256
    levels where they are on ``v / 255`` (:func:`_on_grid`; ``on_grid``: decided for the whole file, whose splits
    must be in one space)."""
    if a.dtype.kind not in "biuf":
        raise DataError(f"{where} has non-numeric dtype {a.dtype}")
    if a.ndim == 0:
        raise DataError(f"{where} is a single number, not an array of examples")
    if len(a) == 0:
        raise DataError(f"{where} is empty")
    if a.size == 0:  # (N, 0) or (N, H, 0): the checks below take a max or min of no values (numpy: a bare ValueError)
        raise DataError(f"{where} has examples of no values (shape {a.shape})")
    if a.dtype.kind == "f":
        if np.isnan(a).any():
            raise DataError(f"{where} contains NaN")
        if np.isinf(a).any():
            raise DataError(f"{where} contains inf")
        big = float(np.abs(a).max())
        if big > float(np.finfo(np.float32).max):
            raise DataError(f"{where} holds values up to {big:.3g}, beyond float32's range (3.4e38): rescale them")
    if a.ndim == 1:  # N numbers, or one example of D: the shape must say which
        raise DataError(f"{where} has shape {a.shape}; give N examples of one number as (N, 1), one example as (1, D)")
    a = _as_nchw(a, where)
    image = a.ndim == 4
    levels: int | None = None
    if a.dtype.kind in "iu" and (image or a.dtype == np.uint8):  # levels of 0..255
        lo, hi = int(a.min()), int(a.max())
        if lo < 0 or hi > 255:
            raise DataError(f"{where} has integer image values in [{lo}, {hi}]; expected 0..255")
        if 0 < hi < SMALLEST_MAX_LEVEL:  # 0/1 masks (x > 0.5).astype(int), or 0..16 digits, would be near-black
            raise DataError(f"{where} is {a.dtype} with no value above {hi}, which genzoo reads as levels of 0..255 "
                            "(almost black); save binary data as bool, other levels scaled to 0..255 or as floats in [0, 1]")
        levels, a = 256, a.astype(np.float32) / 255.0
    elif a.dtype.kind == "b":
        levels, a = 2, a.astype(np.float32)
    else:
        check_float32_detail(a, where)
        if image and on_grid is None:
            on_grid = _on_grid(a)  # in its own dtype's rounding
        a = a.astype(np.float32)
        if image:
            lo, hi = float(a.min()), float(a.max())
            if lo < 0 or hi > 1:
                raise DataError(f"{where} has image values in [{lo:.4g}, {hi:.4g}]; float images must lie in [0, 1] (or be uint8)")
            if on_grid:  # 256 levels, as the same pixels stored as uint8 are, the values put exactly on them: read
                # as continuous, such images skipped the model's default dequantization, and a density on them was
                # scored as "continuous" (the same MNIST pixels: 1.27 bits/dim as float32, 7.67 as uint8)
                levels, a = 256, (np.rint(a * np.float32(255)) / np.float32(255)).astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(a)), levels


def _example_kind(a: np.ndarray, where: str, on_grid: bool | None) -> tuple[tuple[int, ...], int | None] | None:
    """(the shape of one example, the number of levels) of data array ``a`` as :func:`_convert_x` reads it, from its
    dtype and shape alone (no pass over the values); None for an array it refuses anyway (it says why)."""
    if a.dtype.kind not in "biuf" or a.ndim < 2:
        return None
    shape = _as_nchw(a, where).shape[1:]  # a view
    image = len(shape) == 3
    if a.dtype.kind == "b":
        return shape, 2
    if a.dtype.kind in "iu" and (image or a.dtype == np.uint8):
        return shape, 256
    return shape, (256 if a.dtype.kind == "f" and image and on_grid else None)


def _check_splits_agree(arrays: dict[str, np.ndarray], label: str, on_grid: bool | None) -> None:
    """A DataError naming two split arrays of an .npz whose examples differ in shape or in kind of values (levels
    against continuous, 2 levels against 256): training reads x_train and x_valid, and x_test only at eval, where it
    was refused after the training (another shape), or scored on another scale without a word (uint8 / 255 against
    raw floats)."""
    kinds = {k: kind for k in SPLIT_ARRAYS if k in arrays
             and (kind := _example_kind(arrays[k], f"{label}: array '{k}'", on_grid)) is not None}
    if len(kinds) < 2:
        return
    (first, (shape0, levels0)), *rest = kinds.items()

    def says(key: str, levels: int | None) -> str:
        return f"'{key}' ({arrays[key].dtype}: {'continuous values' if levels is None else f'{levels} levels'})"

    for key, (shape, levels) in rest:
        if shape != shape0:
            raise DataError(f"{label}: arrays '{first}' and '{key}' hold examples of shapes {shape0} and {shape}; "
                            "every split must hold examples of one shape")
        if levels != levels0:
            raise DataError(f"{label}: arrays {says(first, levels0)} and {says(key, levels)} hold data of different "
                            "kinds, which would be read on different scales; save every split with one dtype (images: "
                            "uint8, or floats in [0, 1])")


def _convert_y(a: np.ndarray, n: int, where: str) -> torch.Tensor:
    if a.shape == (n, 1):  # Keras's CIFAR labels
        a = a[:, 0]
    if a.shape != (n,):
        raise DataError(f"{where} has shape {a.shape}, expected ({n},)")
    if a.dtype.kind == "f":
        if not np.isfinite(a).all() or not (a == np.round(a)).all():
            raise DataError(f"{where} must hold integer labels")
    elif a.dtype.kind not in "biu":
        raise DataError(f"{where} must hold integer labels, got dtype {a.dtype}")
    if n and a.max() > 2**31 - 1:  # before the int64 cast, where a uint64 above 2^63 would wrap to a negative
        raise DataError(f"{where} must hold class labels 0, 1, ..., got {a.max()}")
    if n and a.min() < 0:  # classes are 0, 1, ...: a negative one would index from the end
        raise DataError(f"{where} must hold class labels 0, 1, ..., got {a.min()}")
    return torch.from_numpy(a.astype(np.int64))


#: the arrays of an .npz that split it itself (else a fixed permutation is cut 80 / 10 / 10)
SPLIT_ARRAYS = ("x_train", "x_valid", "x_test")


def _read_arrays(p: Path, label: str) -> dict[str, np.ndarray]:
    """Every array of the .npz (or the one of the .npy, as ``x``) at ``p``; DataErrors for what is none."""
    if not p.is_file():
        raise DataError(f"{label}: not found")
    try:
        with open(p, "rb") as f:
            head = f.read(6)
    except OSError as e:
        raise DataError(f"{label}: cannot be read ({e.strerror or e})") from None
    if not (head.startswith(b"PK") or head == b"\x93NUMPY"):  # a zip archive (.npz) or numpy's .npy header
        raise DataError(f"{label}: not a .npz or .npy file (genzoo reads numpy's .npz/.npy arrays, or a folder of "
                        "images; convert other formats with numpy.savez)")
    objects: list[str] = []
    try:
        loaded = np.load(p, allow_pickle=False)
        if isinstance(loaded, np.ndarray):  # a plain .npy file: its array is x
            arrays = {"x": loaded}
        else:
            arrays = {}
            with loaded:
                for k in loaded.files:
                    try:
                        arrays[k] = loaded[k]
                    except ValueError as e:  # an object array (metadata beside the data): left out, never unpickled
                        if "pickle" not in str(e):
                            raise
                        objects.append(k)
    except MemoryError:  # (numpy allocates the shape its header claims before it reads)
        raise DataError(f"{label}: its arrays do not fit in memory, or a damaged header claims a shape the file does "
                        "not hold") from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError, RuntimeError, TypeError) as e:
        why = str(e).splitlines()[0] if str(e) else ""
        if "pickle" in why:  # numpy's reading of any file that is neither .npy nor .npz, or of object arrays
            raise DataError(f"{label}: not a valid .npz/.npy file of numeric arrays (genzoo never loads pickled "
                            "Python objects)") from None
        raise DataError(f"{label}: not a valid .npz/.npy file ({type(e).__name__}{': ' + why if why else ''})") from None
    wanted = [k for k in objects if k.lower() in ("x", "y", *SPLIT_ARRAYS) or k.lower().startswith("y_")]
    if wanted or objects and not arrays:
        raise DataError(f"{label}: array '{(wanted or objects)[0]}' holds Python objects, which genzoo never unpickles: "
                        "save it as a numeric array")
    if not arrays:
        raise DataError(f"{label}: contains no arrays")
    return _canonical_names(arrays)


def _canonical_names(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``arrays`` with the other usual names of genzoo's arrays as genzoo's own, where that one is not there too:
    scikit-learn's capitals (``X_train``, ``X``) and the short ``x_val`` / ``y_val`` (which were ignored: no
    validation split, without a word).

    >>> sorted(_canonical_names({"X_train": 1, "X_val": 2, "y_val": 3, "X_test": 4, "meta": 5}))
    ['meta', 'x_test', 'x_train', 'x_valid', 'y_valid']
    """
    own = {"x", "y", *SPLIT_ARRAYS, *(f"y_{s}" for s in ("train", "valid", "test"))}
    if "x" in arrays:  # genzoo's own data array: the others beside it stay as they were, ignored (x_val beside x was,
        own = {"x", "y"}  # and a run trained so must still find the file unchanged)
    out = {}
    for key, value in arrays.items():
        name = key.lower()
        name = name[:-4] + "_valid" if name in ("x_val", "y_val") else name
        out[name if name in own and name not in arrays and name not in out else key] = value
    return out


def _data_array(arrays: dict[str, np.ndarray], label: str) -> tuple[str | None, np.ndarray | None]:
    """(name, array) of the data of an .npz without split arrays: ``x``, or its only array; (None, None) for an
    .npz that has split arrays."""
    if any(k in SPLIT_ARRAYS for k in arrays):
        return None, None
    if "x" in arrays:
        return "x", arrays["x"]
    if len(arrays) == 1:
        return next(iter(arrays.items()))
    raise DataError(f"{label}: no array 'x' (found {', '.join(sorted(arrays))}); name the data array 'x'")


def load_npz(path: str | os.PathLike, split: str = "train", *, n: int | None = None) -> Dataset:
    """Data from a ``.npz`` file: array ``x`` (or the file's only array) and optional labels ``y``.

    * uint8, and integer images of any type, -> ``x / 255`` with 256 levels: they must lie in 0..255, and an
      array whose largest value is 1 to 31 (below ``SMALLEST_MAX_LEVEL``: 0/1 masks, 0..16 digits) is refused, as it
      would be read as near-black levels (save binary data as bool); bool -> 2 levels; float images must
      lie in [0, 1], and are 256 levels where all are on ``v / 255`` (``x / 255.``; 0/1 images too), else
      continuous; other integer vectors and float vectors are continuous (within float32's range).
    * Shapes: (N, D) vectors (N numbers: (N, 1)); (N, H, W) -> (N, 1, H, W); (N, C, H, W) or (N, H, W, C) with
      C in {1, 3} (H, W > 4 for the latter, which is transposed to NCHW).
    * Splits: arrays ``x_train`` / ``x_valid`` / ``x_test`` (and ``y_*``) if present (without ``x_valid``, as
      Keras's ``mnist.npz``, the validation split is empty), else a fixed permutation (seed 0) cut 80 / 10 / 10.
      ``X_train`` (capitals) and ``x_val`` name the same arrays; labels may be (N,) or (N, 1). The split arrays
      must hold examples of one shape and one kind (the same levels, or all continuous), whichever split is read.

    >>> import os, tempfile, numpy as np
    >>> p = os.path.join(tempfile.mkdtemp(), "data.npz")
    >>> np.savez(p, x=np.full((20, 3, 6, 6), 255, np.uint8), y=np.arange(20) % 2)   # uint8 images, NCHW
    >>> ds = load_npz(p)
    >>> len(ds), ds.shape, ds.levels, float(ds.x.max()), [len(load_npz(p, s)) for s in ("valid", "test")]
    (16, (3, 6, 6), 256, 1.0, [2, 2])
    >>> np.savez(p, x_train=np.zeros((3, 2), np.float32), x_test=np.ones((2, 2), np.float32))  # its own splits
    >>> len(load_npz(p, "test")), load_npz(p, "test").levels, len(load_npz(p, "valid"))     # no x_valid: empty
    (2, None, 0)
    """
    check_split(split)
    p = Path(path)
    label = f"data file {p}"
    arrays = _read_arrays(p, label)
    split_keys = [k for k in arrays if k in SPLIT_ARRAYS]
    if split_keys:
        key = f"x_{split}"
        # one space for the file: float splits are levels only where every one is (else the training split's
        # default dequantization met a continuous test split, and eval refused the run)
        floats = [arrays[k] for k in split_keys if arrays[k].dtype.kind == "f" and arrays[k].ndim >= 3]
        on_grid = all(_on_grid(a) for a in floats) if floats else None
        _check_splits_agree(arrays, label, on_grid)  # whichever split is read: training stops before it starts
        if key == "x_valid" and key not in arrays and "x_train" in arrays:  # Keras's layout: no validation split
            x, levels = _convert_x(arrays["x_train"], f"{label}: array 'x_train'", on_grid)
            return Dataset(f"npz:{p.resolve()}", split, x[:0], None, levels=levels)
        if key not in arrays:
            raise DataError(f"{label}: has {', '.join(sorted(split_keys))} but no '{key}' for the {split} split")
        x, levels = _convert_x(arrays[key], f"{label}: array '{key}'", on_grid)
        ykey = f"y_{split}"
        y = _convert_y(arrays[ykey], len(x), f"{label}: array '{ykey}'") if ykey in arrays else None
    else:
        key, data = _data_array(arrays, label)
        x, levels = _convert_x(data, f"{label}: array '{key}'")
        y = _convert_y(arrays["y"], len(x), f"{label}: array 'y'") if "y" in arrays and key != "y" else None
        x, y = _permuted_split(x, y, split)
    x, y = take_first(x, y, check_n(n))
    return Dataset(f"npz:{p.resolve()}", split, x, y, levels=levels)
