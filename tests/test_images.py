"""Tests of genzoo.data.images' image folders: which files and folders are read, and which class gets which label."""

from __future__ import annotations

import os
import re
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from genzoo.data import Dataset, load_dataset, load_spec, typed_spec
from genzoo.data.images import SYSTEM_FOLDERS, convert_image, load_folder, read_image, split_fingerprint
from genzoo.errors import DataError, GenZooWarning


def _fill(d: Path, n: int, value: int, ext: str = "png") -> None:
    """``n`` 6x6 grey images of one ``value`` in folder ``d``: a label's mean pixel tells which folder it came from."""
    from PIL import Image

    d.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(np.full((6, 6), value, np.uint8)).save(d / f"{i}.{ext}")


def _values_by_label(ds: Dataset) -> dict[int, int]:
    return {int(k): round(float(ds.x[ds.y == k].mean()) * 255) for k in ds.y.unique()}


def _one_line(err: pytest.ExceptionInfo) -> str:
    assert "\n" not in str(err.value) and str(err.value)
    return str(err.value)


@pytest.mark.parametrize("fill_b", ["empty", "a README only", "hidden files only", "a digit folder"])
def test_a_class_folder_without_images_is_refused(tmp_path, fill_b):
    """a/ b/ c/ with b holding no images: b was skipped and c read as label 1, so every class after b moved down
    (folders 0..9 with 3/ empty: label 3 was folder "4"), and nothing recorded the mapping."""
    b = "3" if fill_b == "a digit folder" else "b"
    names = [str(k) for k in range(10)] if b == "3" else ["a", "b", "c"]
    for k, name in enumerate(names):
        _fill(tmp_path / name, 0 if name == b else 10, 20 * k)
    if fill_b == "a README only":
        (tmp_path / b / "README.txt").write_text("to do")
    if fill_b == "hidden files only":  # what a macOS zip leaves: __MACOSX/ holds ._ sidecars alone
        (tmp_path / b / "._0.png").write_bytes(b"\x00\x05\x16\x07")
        (tmp_path / b / ".DS_Store").write_bytes(b"\x00")
    with pytest.raises(DataError) as e:
        load_dataset(str(tmp_path))
    assert f"class folder {b} holds no images (.png, " in _one_line(e)
    assert "remove it or fill it; labels follow the sorted folder names" in str(e.value)


def test_netpbm_images_are_read(tmp_path):
    """.pgm/.ppm (which Pillow and torchvision's ImageFolder read) were not image extensions: a class of .pgm files
    was dropped as if empty, moving the labels after it, and half of a folder of .png and .pgm was read."""
    _fill(tmp_path / "cls" / "a", 10, 0)
    _fill(tmp_path / "cls" / "b", 10, 100, "pgm")
    _fill(tmp_path / "cls" / "c", 10, 200, "ppm")
    _fill(tmp_path / "cls" / "d", 10, 250, "pnm")
    ds = load_folder(tmp_path / "cls", "train")
    assert _values_by_label(ds) == {0: 0, 1: 100, 2: 200, 3: 250} and ds.classes == ("a", "b", "c", "d")
    _fill(tmp_path / "flat", 6, 40)
    _fill(tmp_path / "flat", 6, 40, "pgm")  # 0.pgm beside 0.png: twelve images
    assert sum(len(load_folder(tmp_path / "flat", s)) for s in ("train", "valid", "test")) == 12


def test_images_below_a_class_folder_are_refused_not_dropped(tmp_path):
    """b/ with 4 images and b/more/ with 6, and d/sub/ with 10: 24 of 40 images were read, d was no class, and
    nothing was said; a folder of split folders (train/cat/...) said only "no images found"."""
    _fill(tmp_path / "nested" / "a", 10, 0)
    _fill(tmp_path / "nested" / "b", 4, 100)
    _fill(tmp_path / "nested" / "b" / "more", 6, 100)
    _fill(tmp_path / "nested" / "c", 10, 200)
    with pytest.raises(DataError) as e:
        load_folder(tmp_path / "nested")
    assert "class folder b holds sub-folders with images (more/)" in _one_line(e)
    (tmp_path / "nested" / "b" / "more").rename(tmp_path / "nested" / "b" / ".more")  # a hidden folder: skipped
    assert len(load_folder(tmp_path / "nested")) == 20  # 24 images: 20 in train
    _fill(tmp_path / "splits" / "train" / "cat", 5, 0)
    _fill(tmp_path / "splits" / "train" / "dog", 5, 255)
    with pytest.raises(DataError) as e:
        load_folder(tmp_path / "splits")
    assert "class folder train holds sub-folders with images (cat/, dog/)" in _one_line(e)
    assert "point at the folder whose sub-folders are the classes" in str(e.value)
    assert load_folder(tmp_path / "splits" / "train").classes == ("cat", "dog")


def test_a_folder_of_images_refuses_a_sub_folder_with_images_further_down(tmp_path):
    """Images in ``root`` and ``root/extra/deeper/``: the deeper ones were dropped without a word (images directly
    in ``root/extra/`` are refused, as a layout of which kind is unclear); an empty sub-folder is no matter."""
    _fill(tmp_path / "flat", 10, 50)
    (tmp_path / "flat" / "empty").mkdir()
    assert len(load_folder(tmp_path / "flat")) == 8
    _fill(tmp_path / "flat" / "extra" / "deeper", 3, 60)
    with pytest.raises(DataError) as e:
        load_folder(tmp_path / "flat")
    assert "holds 10 image(s) of its own (0.png, ...) and class sub-folders (extra)" in _one_line(e)


def test_files_of_other_extensions_are_named_in_a_note(tmp_path):
    """A notes.txt, or photos saved as .heic, were skipped in silence; hidden files still are (macOS sidecars)."""
    _fill(tmp_path / "a", 5, 0)
    _fill(tmp_path / "b", 5, 255)
    (tmp_path / "a" / "photo.heic").write_bytes(b"\x00\x00\x00\x18ftypheic")
    (tmp_path / "b" / "notes.txt").write_text("hi")
    (tmp_path / "a" / "._0.png").write_bytes(b"\x00\x05\x16\x07")
    (tmp_path / "b" / ".DS_Store").write_bytes(b"\x00")
    (tmp_path / ".ipynb_checkpoints").mkdir()  # a hidden folder is no class either
    with pytest.warns(GenZooWarning) as got:
        ds = load_folder(tmp_path)
    assert len(got) == 1 and ds.classes == ("a", "b")
    assert ("2 file(s) skipped, not images by their extension (a/photo.heic, b/notes.txt); genzoo reads .png"
            in str(got[0].message))
    (tmp_path / "a" / "photo.heic").unlink()
    (tmp_path / "b" / "notes.txt").unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # hidden files alone: no note
        assert len(load_folder(tmp_path)) == 8


def test_the_classes_are_recorded_in_label_order(tmp_path):
    """Nothing said which folder a label was: a shifted mapping could not be seen."""
    for k, name in enumerate(["zebra", "Ant", "cat"]):  # sorted as Python sorts: upper case first
        _fill(tmp_path / "cls" / name, 10, 100 * k)
    splits = [load_dataset(str(tmp_path / "cls"), s) for s in ("train", "valid", "test")]
    assert all(s.classes == ("Ant", "cat", "zebra") for s in splits)  # each split, whatever labels it holds
    assert _values_by_label(splits[0]) == {0: 100, 1: 200, 2: 0}
    assert load_dataset(str(tmp_path / "cls"), dequantize=True).classes == ("Ant", "cat", "zebra")
    _fill(tmp_path / "flat", 3, 0)
    assert load_folder(tmp_path / "flat").classes is None and load_dataset("digits").classes is None
    with pytest.raises(DataError, match="2 class names, but y holds label 2"):
        Dataset("d", "train", torch.zeros(3, 2), torch.tensor([0, 1, 2]), classes=["a", "b"])


def test_a_run_of_a_folder_records_the_netpbm_images(tmp_path):
    """The split fingerprint follows the images read: .pgm files count."""
    _fill(tmp_path / "f", 4, 0)
    _fill(tmp_path / "f", 5, 0, "pgm")
    assert typed_spec({"name": str(tmp_path / "f")})["split_fingerprint"].startswith("9 images")


@pytest.mark.parametrize("folder", sorted(SYSTEM_FOLDERS))
def test_system_folders_beside_the_classes_are_not_classes(tmp_path, folder):
    """A macOS zip's __MACOSX/ (of ._ sidecars), lost+found/ or __pycache__/ beside the class folders was read past
    before the empty-class rule; then each was refused as an empty class, and a run of such a folder could not be
    evaluated."""
    for k, name in enumerate("ab"):
        _fill(tmp_path / name, 10, 100 * k)
    (tmp_path / folder).mkdir()
    (tmp_path / folder / "._0.png" if folder == "__MACOSX" else tmp_path / folder / "x.pyc").write_bytes(b"\x00")
    ds = load_dataset(str(tmp_path))
    assert ds.classes == ("a", "b") and _values_by_label(ds) == {0: 0, 1: 100}


def test_the_skipped_files_note_names_a_few_of_them(tmp_path):
    """The note named the first skipped file alone (``notes.txt, ...`` hid a ``photo.heic``)."""
    _fill(tmp_path, 5, 0)
    for name in ("a.txt", "b.heic", "c.heic", "d.heic"):
        (tmp_path / name).write_bytes(b"\x00")
    with pytest.warns(GenZooWarning, match=r"4 file\(s\) skipped, not images by their extension "
                                           r"\(a.txt, b.heic, c.heic, \.\.\.\)"):
        load_folder(tmp_path)


def test_jfif_and_jpe_files_are_read(tmp_path):
    """``.jfif`` (what browsers save a JPEG as) and ``.jpe`` were skipped as not images, though Pillow reads them."""
    _fill(tmp_path, 4, 0)
    _fill(tmp_path, 3, 255, "jfif")
    _fill(tmp_path, 3, 255, "jpe")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "skipped" note
        ds = load_folder(tmp_path)
    assert len(ds) == 8 and typed_spec({"name": str(tmp_path)})["split_fingerprint"].startswith("10 images")


# -- names, links -------------------------------------------------------------------------------------------------


def _make_name(d: Path, name: bytes) -> Path:
    """A file or folder named by the bytes ``name`` in ``d`` (skipped where the file system refuses non-UTF-8 names,
    as macOS's does)."""
    p = d / os.fsdecode(name)
    try:
        p.mkdir() if b"." not in name else p.write_bytes(b"")
    except (OSError, UnicodeError):
        pytest.skip("this file system refuses file names that are not UTF-8")
    return p


@pytest.mark.parametrize("where", ["file", "class folder"])
def test_a_file_name_that_is_not_utf8_is_read(tmp_path, where):
    """A Latin-1 ``caf\xe9.png`` (an old Windows share, a zip): its name hashed by ``str.encode()``, which refuses
    the surrogate escape, gave "unexpected UnicodeEncodeError" at train and eval (exit code 1, nothing named)."""
    if where == "file":
        _fill(tmp_path, 11, 30)
        from PIL import Image

        Image.new("L", (6, 6), 30).save(_make_name(tmp_path, b"caf\xe9.png"), format="PNG")
    else:
        _fill(tmp_path / "a", 10, 0)
        _fill(_make_name(tmp_path, b"caf\xe9"), 10, 200)
    assert split_fingerprint("folder", tmp_path).startswith(f"{12 if where == 'file' else 20} images, names blake2b ")
    assert len(load_spec(typed_spec({"name": str(tmp_path)}), "test")) == (1 if where == "file" else 2)


def test_the_fingerprint_of_utf8_names_is_unchanged(tmp_path):
    """The name's bytes (``os.fsencode``) are ``str.encode()``'s for UTF-8 names: every recorded fingerprint stays
    valid (the value is the one genzoo recorded before)."""
    for name in ("café/ü.png", "café/a.png", "猫/naïve.png"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert split_fingerprint("folder", tmp_path) == "3 images, names blake2b a6c5bc523c35b963debff6b2"


def _dangling(link: Path, target: Path) -> None:
    try:
        link.symlink_to(target)
    except OSError:  # (Windows without the right to make links)
        pytest.skip("no symbolic links here")


@pytest.mark.parametrize("where", ["class folder", "file", "file in a class folder"])
def test_a_broken_symbolic_link_is_refused_not_dropped(tmp_path, where):
    """a/ b -> (gone) c/: b was neither a file nor a folder, so left out without a word, and c read as label 1
    (as an empty class folder was); a dangling zz.png was dropped from the images (and from the split fingerprint)."""
    missing = tmp_path / "unmounted" / "b"
    data = tmp_path / "data"
    if where == "file":
        _fill(data, 12, 50)
        _dangling(data / "zz.png", missing)
        name = "zz.png"
    else:
        _fill(data / "a", 10, 0)
        _fill(data / "c", 10, 255)
        name = "b" if where == "class folder" else "c/zz.png"
        _dangling(data / name, missing)
    with pytest.raises(DataError) as e:
        load_folder(data)
    assert f"image folder {data}: {name} is a symbolic link to {missing}, which does not exist" in _one_line(e)
    assert "restore its target or remove the link" in str(e.value)
    assert typed_spec({"name": str(data)}).get("split_fingerprint") is None  # (load_spec then says why)
    (data / name).unlink()
    _dangling(data / ".hidden.png", missing)  # a hidden link is no part of the data, as a hidden file
    assert len(load_folder(data)) > 0


def test_a_broken_link_of_another_extension_is_skipped_with_the_note(tmp_path):
    """A dangling README.txt refused the whole folder, where a README.txt file is skipped with a note: no image,
    nor a class folder, it is no part of the data."""
    data = tmp_path / "data"
    _fill(data, 12, 50)
    _dangling(data / "README.txt", tmp_path / "gone" / "notes.txt")
    with pytest.warns(GenZooWarning, match=r"1 file\(s\) skipped.*README.txt"):
        assert len(load_folder(data)) > 0
    classes = tmp_path / "classes"  # beside class folders, a dotted name may have been one: refused (r112 #2)
    _fill(classes / "a", 10, 0)
    _fill(classes / "c", 10, 255)
    _dangling(classes / "b.v1", tmp_path / "gone" / "b.v1")
    with pytest.raises(DataError, match="b.v1 is a symbolic link"):
        load_folder(classes)
    _dangling(classes / "a" / "notes.txt", tmp_path / "gone" / "notes.txt")  # in a class folder: no class
    (classes / "b.v1").unlink()
    with pytest.warns(GenZooWarning, match="notes.txt"):
        assert list(load_folder(classes).classes) == ["a", "c"]


def test_the_raw_mode_is_read_from_the_tiles_of_every_pillow():
    """Pillow 10's tiles are plain tuples (11's a NamedTuple with .args): reading t.args failed every image read."""
    from types import SimpleNamespace

    from genzoo.data.images import _rawmode

    for tile in (("zip", (0, 0, 1, 1), 0, "RGB;16B"), ("zip", (0, 0, 1, 1), 0, ("RGB;16B", 0, 1))):
        assert _rawmode(SimpleNamespace(tile=[tile])) == "RGB;16B"  # a plain tuple; its args a mode or a tuple
    assert _rawmode(SimpleNamespace(tile=[])) == "" and _rawmode(SimpleNamespace()) == ""


# -- bit depths, transparency, modes ------------------------------------------------------------------------------


def _png(path: Path, a: np.ndarray, depth: int = 16, trns: int | None = None) -> Path:
    """A PNG written byte by byte (Pillow writes no 16-bit colour, nor 4-bit grey): ``a`` (H, W) grey, (H, W, 2)
    grey+alpha, (H, W, 3) RGB or (H, W, 4) RGBA of ``depth`` bits (16, or 2/4 for grey), ``trns`` a tRNS grey level."""
    a = np.asarray(a)
    a = a[..., None] if a.ndim == 2 else a
    h, w, c = a.shape
    if depth == 16:
        rows = [a[i].astype(">u2").tobytes() for i in range(h)]
    else:  # grey of 2 or 4 bits, packed from the left of each byte
        per = 8 // depth
        v = np.zeros((h, -(-w // per) * per), np.uint8)
        v[:, :w] = a[..., 0]
        rows = [bytes(np.sum(v[i].reshape(-1, per) << (depth * np.arange(per - 1, -1, -1)), 1).astype(np.uint8))
                for i in range(h)]

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    head = struct.pack(">IIBBBBB", w, h, depth, {1: 0, 2: 4, 3: 2, 4: 6}[c], 0, 0, 0)
    key = b"" if trns is None else chunk(b"tRNS", struct.pack(">H", trns))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", head) + key
                     + chunk(b"IDAT", zlib.compress(b"".join(b"\0" + r for r in rows))) + chunk(b"IEND", b""))
    return path


def _tiff16(path: Path, a: np.ndarray) -> Path:
    """An uncompressed little-endian 16-bit RGB TIFF of ``a`` (H, W, 3), written byte by byte."""
    a = np.asarray(a, "<u2")
    h, w, _ = a.shape
    data = a.tobytes()
    tags = [(256, 3, 1, w), (257, 3, 1, h), (258, 3, 3, 8 + len(data)), (259, 3, 1, 1), (262, 3, 1, 2),
            (273, 4, 1, 8), (277, 3, 1, 3), (278, 3, 1, h), (279, 4, 1, len(data)), (284, 3, 1, 1)]
    ifd = struct.pack("<H", len(tags)) + b"".join(
        struct.pack("<HHI", tag, kind, n) + (struct.pack("<HH", v, 0) if kind == 3 and n == 1 else struct.pack("<I", v))
        for tag, kind, n, v in tags) + struct.pack("<I", 0)
    path.write_bytes(b"II*\0" + struct.pack("<I", 8 + len(data) + 6) + data + struct.pack("<HHH", 16, 16, 16) + ifd)
    return path


_SIXTEEN_BIT_FILES = {  # what, channels, file extension
    "RGB": (3, "png"), "RGBA": (4, "png"), "grey+alpha": (2, "png"), "grey": (1, "png"), "RGB TIFF": (3, "tif")}


@pytest.mark.parametrize("kind", sorted(_SIXTEEN_BIT_FILES))
@pytest.mark.parametrize("bits", [8, 12])
def test_sixteen_bit_colour_files_are_judged_as_grey_ones(tmp_path, kind, bits):
    """16-bit RGB, RGBA and grey+alpha files, which Pillow narrows to 8-bit RGB(A) before genzoo sees them, skipped
    the check of 8- or 12-bit values in 16-bit files that 16-bit grey had: 8-bit values read all black, 12-bit ones
    near-black, and both trained without a word (inpaint --image too)."""
    c, ext = _SIXTEEN_BIT_FILES[kind]
    rng = np.random.default_rng(bits)
    for i in range(10):
        a = rng.integers(0, 2 ** bits, (6, 6, c)).astype(np.uint16)
        if c in (2, 4):
            a[..., -1] = 65535  # opaque
        (_tiff16 if ext == "tif" else _png)(tmp_path / f"{i}.{ext}", a if c > 1 else a[..., 0])
    why = "8-bit values in 16-bit files" if bits == 8 else "10- or 12-bit values in 16-bit files"
    with pytest.raises(DataError, match=rf"image folder {re.escape(str(tmp_path))}: no value of its 10 16-bit "
                                        rf"image\(s\) is above \d+: {why}"):
        load_folder(tmp_path)
    one = tmp_path / f"0.{ext}"
    with pytest.raises(DataError, match=rf"image file {re.escape(str(one))} is 16-bit with no value above \d+: {why}"):
        read_image(one, "--image")


@pytest.mark.parametrize("kind", sorted(_SIXTEEN_BIT_FILES))
def test_sixteen_bit_files_of_the_full_range_are_read(tmp_path, kind):
    """... while full-range 16-bit files are read as before (grey+alpha as grey), and 4096 is enough."""
    c, ext = _SIXTEEN_BIT_FILES[kind]
    a = np.array([[0, 4096, 32768, 65535]], np.uint16)[..., None].repeat(c, -1)  # (1, 4, c)
    if c in (2, 4):
        a[..., -1] = 65535
    img = read_image((_tiff16 if ext == "tif" else _png)(tmp_path / f"x.{ext}", a if c > 1 else a[..., 0]))
    assert img.mode == ("L" if c < 3 else "RGB")
    assert np.asarray(convert_image(img, "L", "x")).tolist()[0] in ([0, 16, 127, 255], [0, 16, 128, 255])


def _square(bits: int) -> np.ndarray:
    """4x4, a 2x2 square of the top level on 0 (the top level transparent: all black, composited)."""
    a = np.zeros((4, 4), np.uint16)
    a[1:3, 1:3] = 2 ** bits - 1
    return a


@pytest.mark.parametrize("bits", [1, 4, 8, 16])
def test_a_transparent_grey_level_counts_at_every_bit_depth(tmp_path, bits):
    """A PNG's tRNS grey level counted for 8-bit grey alone: 1-, 4- and 16-bit files kept their transparent white
    square, so one picture read differently by bit depth."""
    from PIL import Image

    p = tmp_path / "t.png"
    if bits in (1, 8):  # Pillow writes these
        Image.fromarray((_square(bits) * (255 if bits == 1 else 1)).astype(np.uint8)).convert(
            "1" if bits == 1 else "L").save(p, transparency=255 if bits == 8 else 1)
    else:
        _png(p, _square(bits), bits, trns=2 ** bits - 1)
    with pytest.raises(DataError, match="black on a transparent background"):  # the white square transparent
        read_image(p)


def test_a_transparent_16_bit_grey_level_is_matched_on_16_bits(tmp_path):
    """Only 65535 is transparent, not 65534 beside it, which /257 makes 255 too."""
    p = _png(tmp_path / "t.png", np.array([[0, 65535, 65534, 30000]], np.uint16), trns=65535)
    assert np.asarray(read_image(p)).tolist() == [[0, 0, 255, 117]]


def test_a_lab_image_is_made_grey_through_rgb(tmp_path):
    """Pillow converts CIE L*a*b* (Photoshop's, scanners' TIFFs) to RGB, not to L: a folder read as grey, a grey
    model's inpaint --image and a mask ended in "unexpected ValueError: conversion from LAB to RGB not supported"."""
    from PIL import Image

    from genzoo.apps.inpaint import make_mask
    from genzoo.cli import _read_image

    white = np.zeros((6, 6, 3), np.uint8)
    white[:, 3:] = 255
    for i in range(10):
        Image.fromarray(white).convert("LAB").save(tmp_path / f"{i}.tif")
    ds = load_folder(tmp_path, channels=1)
    assert ds.shape == (1, 6, 6) and ds.x[:, 0, :, :3].max() == 0 and ds.x[:, 0, :, 3:].min() == 1
    assert load_folder(tmp_path).shape == (3, 6, 6)
    assert _read_image(str(tmp_path / "0.tif"), (1, 6, 6))[0, 0].tolist() == [0, 0, 0, 1, 1, 1]
    assert make_mask(str(tmp_path / "0.tif"), (1, 6, 6))[0, 0].tolist() == [0, 0, 0, 1, 1, 1]
    with pytest.raises(DataError) as e:  # a mode Pillow converts to nothing: named, in one line
        convert_image(Image.new("La", (2, 2)), "L", "odd.tif", "mask image")
    assert _one_line(e).startswith("mask image odd.tif: its La pixels cannot be converted to L")
