"""Tests of genzoo.data.images' image folders: which files and folders are read, and which class gets which label."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from genzoo.data import Dataset, load_dataset, typed_spec
from genzoo.data.images import SYSTEM_FOLDERS, load_folder
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
    assert "2 file(s) skipped, not images by their extension (a/photo.heic, ...); genzoo reads .png" in str(got[0].message)
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
