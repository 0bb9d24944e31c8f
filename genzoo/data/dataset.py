"""The :class:`Dataset` record every loader returns, and the split helpers the loaders share.

A dataset holds the raw data in memory (``x`` float32, images in [0, 1]) and applies its per-batch
transform -- dynamic binarization or uniform dequantization -- whenever a batch is taken, with the
caller's ``torch.Generator`` so that training is reproducible.

>>> import torch
>>> ds = Dataset("demo", "train", torch.tensor([[0.0], [0.5], [1.0]]), None, levels=3, dequantize=True)
>>> len(ds), ds.shape, ds.space
(3, (1,), 'dequantized')
>>> b = ds.batch(torch.tensor([2, 0]), generator=torch.Generator().manual_seed(0))   # (2, 1)
>>> torch.floor(b * 3).flatten().tolist()
[2.0, 0.0]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from ..errors import DataError, did_you_mean
from . import transforms as T

if TYPE_CHECKING:
    from .toy import ToyDensity

__all__ = ["Dataset", "SPLITS", "check_split", "split_slices", "take_first", "check_n"]

SPLITS = ("train", "valid", "test")


def arrays_digest(*arrays: np.ndarray) -> str:
    """A BLAKE2b (24 hex digits) of arrays' dtypes, shapes and values, in order: what a run's data fingerprints
    record (the content, not a file's bytes, which compression changes).

    >>> arrays_digest(np.zeros(3)) == arrays_digest(np.zeros(3)) != arrays_digest(np.zeros(4))
    True
    """
    import hashlib

    h = hashlib.blake2b(digest_size=12)
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str} {a.shape}".encode())
        h.update(a.data)
    return h.hexdigest()


#: a float64 value's float32 rounding is harmful where it exceeds this share of the span of its 20 nearest distinct
#: values (in its feature): the cast then moves it across its neighbours, merging a cluster onto float32's grid
FLOAT32_ROUNDING = 0.1


def check_float32_detail(a: np.ndarray, where: str) -> None:
    """A DataError where holding float64 examples ``a`` (N, ...) in float32, as every genzoo dataset does, would
    merge distinct values: in some feature, 10 or more (and over 1%) of its distinct values move by more than
    :data:`FLOAT32_ROUNDING` of the span of their 20 nearest distinct neighbours. A cluster of points near 1e6 that
    vary by 0.01 (float32's step there is 0.0625) collapses onto a few grid points, and a density fitted to them
    reports a likelihood of other data. Merges of values float32 cannot tell apart anyway (a rare reading, a
    near-constant feature, a million uniform draws) pass; so do values float32 holds exactly, and other dtypes.
    Every float wider than float32 is checked: float64 in either byte order (``>f8``, as MATLAB, Java or HDF5
    conversions write it, is not ``== np.float64`` on a little-endian machine) and ``np.longdouble``.

    >>> far = 1e6 + 0.01 * np.random.default_rng(0).standard_normal((200, 1))
    >>> check_float32_detail(np.concatenate([far, far - 1e6]), "x")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    genzoo.errors.DataError: x: float64 values lose their detail in float32, in which genzoo holds data (feature 0: 187 of 400 distinct values, near 1e+06, move by up to 0.024, ...); ...
    >>> check_float32_detail(np.concatenate([far, far - 1e6]).astype(">f8"), "x")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    genzoo.errors.DataError: x: float64 values lose their detail in float32, ...
    >>> check_float32_detail(np.random.default_rng(0).random((100_000, 1)), "x")  # merges of neighbours 1e-8 apart
    """
    if a.dtype.kind != "f" or a.dtype.itemsize <= 4 or len(a) < 2:  # float16/32 values are float32's own
        return
    flat = a.reshape(len(a), -1)  # (N, D)
    rounded = (flat != flat.astype(np.float32)).any(0)  # (D,): only these features need the sort below
    for j in np.flatnonzero(rounded):
        v = np.unique(flat[:, j])  # (U,) sorted distinct values
        moved = np.abs(v - v.astype(np.float32))  # (U,) float32's rounding
        if len(v) < 10:
            continue
        i = np.arange(len(v))
        span = v[np.minimum(i + 10, len(v) - 1)] - v[np.maximum(i - 10, 0)]  # (U,) > 0: distinct values
        harmed = moved > FLOAT32_ROUNDING * span  # (U,)
        count = int(harmed.sum())
        if count >= 10 and count > 0.01 * len(v):
            raise DataError(f"{where}: float64 values lose their detail in float32, in which genzoo holds data (feature "
                            f"{j}: {count} of {len(v)} distinct values, near {float(np.median(v[harmed])):.3g}, move by up "
                            f"to {float(moved.max()):.3g}, more than the spread of their neighbours); subtract the offset "
                            "(x - x.mean(0)) or rescale them before saving")


def check_split(split: str) -> str:
    """Return ``split`` if it is one of train / valid / test, else raise DataError.

    >>> check_split("valid")
    'valid'
    >>> check_split("tset")
    Traceback (most recent call last):
    ...
    genzoo.errors.DataError: unknown split 'tset' (did you mean 'test'?); known: train, valid, test
    """
    if split not in SPLITS:
        raise DataError(f"unknown split '{split}'{did_you_mean(str(split), SPLITS)}; known: {', '.join(SPLITS)}")
    return split


def check_n(n: int | None) -> int | None:
    """``n`` must be None or a positive integer (returned as a Python int), else a DataError.

    >>> check_n(None), check_n(np.int64(5))
    (None, 5)
    >>> check_n(0)
    Traceback (most recent call last):
    ...
    genzoo.errors.DataError: n must be a positive integer, got 0
    """
    if n is None:
        return None
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise DataError(f"n must be a positive integer, got {n!r}")
    return int(n)


def split_slices(total: int) -> dict[str, slice]:
    """The fixed 80/10/10 train/valid/test split of ``total`` (permuted) examples.

    ``valid`` and ``test`` get ``total // 10`` examples each and ``train`` the rest, so fewer
    than 10 examples all go to ``train`` (the other splits are then empty).

    >>> {k: (s.start, s.stop) for k, s in split_slices(25).items()}
    {'train': (0, 21), 'valid': (21, 23), 'test': (23, 25)}
    """
    k = total // 10
    return {"train": slice(0, total - 2 * k), "valid": slice(total - 2 * k, total - k), "test": slice(total - k, total)}


def take_first(x: Tensor, y: Tensor | None, n: int | None) -> tuple[Tensor, Tensor | None]:
    """The first ``n`` examples (all of them when ``n`` is None or larger than the split).

    >>> x, y = take_first(torch.arange(5.0)[:, None], torch.arange(5), 2)
    >>> x.tolist(), y.tolist(), len(take_first(x, None, 10)[0])
    ([[0.0], [1.0]], [0, 1], 2)
    """
    if n is None or n >= len(x):
        return x, y
    return x[:n], (None if y is None else y[:n])


def _is_integer(t: Tensor) -> bool:
    """Whether ``t`` holds integers (bool aside)."""
    return not (t.is_floating_point() or t.is_complex() or t.dtype == torch.bool)


@dataclass(repr=False, eq=False)
class Dataset:
    """One split of a dataset, in memory.

    ``x`` is float32 (float64 given is converted, or refused where that would merge distinct values:
    :func:`check_float32_detail`): images (N, C, H, W) in [0, 1], vectors (N, D). ``levels`` is the number of
    discrete intensity levels of the raw data (images are stored as ``v / (levels - 1)``), or None
    for continuous data. At most one of ``binarize`` / ``dequantize`` is set; it is applied by
    :meth:`batch` and :meth:`transformed`, never to ``x`` itself. ``classes``: the names of labels 0, 1, ...
    where the data name them (a folder's class sub-folders), else None.
    """

    name: str
    split: str  # "train" | "valid" | "test"
    x: Tensor  # (N, C, H, W) or (N, D), float32
    y: Tensor | None  # (N,) int64, or None
    levels: int | None = None
    binarize: bool = False
    dequantize: bool = False
    density: ToyDensity | None = None
    classes: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        check_split(self.split)
        if not isinstance(self.x, Tensor):
            raise DataError(f"dataset '{self.name}': x must be a torch.Tensor, got {type(self.x).__name__}")
        if self.x.dim() < 2:
            raise DataError(f"dataset '{self.name}': x must have shape (N, ...), got {tuple(self.x.shape)}")
        if math.prod(self.x.shape[1:]) == 0:  # an example of no values: no model takes it (a bare error deep in one)
            raise DataError(f"dataset '{self.name}': x has examples of no values (shape {tuple(self.x.shape)})")
        integer = None  # the dtype of integer x, converted below
        if self.x.dtype != torch.float32:
            if self.x.dtype == torch.float64:
                check_float32_detail(self.x.detach().cpu().numpy(), f"dataset '{self.name}'")
            elif _is_integer(self.x):
                integer = str(self.x.dtype).removeprefix("torch.")
            self.x = self.x.to(torch.float32)
        for flag in ("binarize", "dequantize"):
            if not isinstance(getattr(self, flag), (bool, np.bool_)):
                raise DataError(f"dataset '{self.name}': {flag} must be True or False, got {getattr(self, flag)!r}")
        if self.y is not None:
            if isinstance(self.y, np.ndarray):
                self.y = torch.from_numpy(self.y)
            if not isinstance(self.y, Tensor) or self.y.shape != (len(self.x),):
                got = tuple(self.y.shape) if isinstance(self.y, Tensor) else type(self.y).__name__
                raise DataError(f"dataset '{self.name}': y must be a tensor of shape ({len(self.x)},), got {got}")
            fractional = self.y.is_complex() or self.y.is_floating_point() and not (
                bool(torch.isfinite(self.y).all()) and torch.equal(self.y, self.y.round()))
            if fractional:
                raise DataError(f"dataset '{self.name}': y must hold integer class labels, got {self.y.dtype} values "
                                "that are not whole numbers")
            if self.y.is_floating_point() and len(self.y) and float(self.y.max()) >= 2**63:  # int64 wrapped it negative
                raise DataError(f"dataset '{self.name}': y must hold class labels 0, 1, ..., got {float(self.y.max()):.4g}, "
                                "beyond int64's range")
            if len(self.y) and int(self.y.min()) < 0:
                raise DataError(f"dataset '{self.name}': y must hold class labels 0, 1, ..., got {int(self.y.min())}")
            if self.y.dtype != torch.int64:
                self.y = self.y.to(torch.int64)
        if self.classes is not None:
            self.classes = tuple(str(c) for c in self.classes)
            if self.y is not None and len(self.y) and int(self.y.max()) >= len(self.classes):
                raise DataError(f"dataset '{self.name}': {len(self.classes)} class names, but y holds label "
                                f"{int(self.y.max())}")
        if isinstance(self.levels, np.integer):
            self.levels = int(self.levels)
        if self.levels is not None and (not isinstance(self.levels, int) or isinstance(self.levels, bool) or self.levels < 2):
            raise DataError(f"dataset '{self.name}': levels must be an integer >= 2 or None, got {self.levels!r}")
        if integer and self.levels is not None and self.x.numel() and float(self.x.max()) > 1:
            # x is taken as the values it holds (converted to float32, not scaled, as float64 is): levels 0 .. 255 left
            # so were read as images of values up to 255 (dequantize said "not on the grid v / 255")
            raise DataError(f"dataset '{self.name}': x holds integer levels up to {float(self.x.max()):.0f} ({integer}), "
                            f"and a Dataset with levels holds v / (levels - 1) in [0, 1]: give x / {self.levels - 1}")
        if self.binarize and self.dequantize:
            raise DataError("binarize and dequantize cannot be used together: choose one")
        if self.binarize and self.x.numel():
            lo, hi = self.x.min().item(), self.x.max().item()
            if not 0 <= lo <= hi <= 1:  # NaN fails it too
                raise DataError(
                    f"cannot binarize dataset '{self.name}'{self._which}: values lie in [{lo:.4g}, {hi:.4g}], binarization needs [0, 1]"
                )
        if self.dequantize:
            if self.levels is None:
                raise DataError(
                    f"cannot dequantize dataset '{self.name}'{self._which}: it is continuous (no discrete levels); "
                    "dequantization is for discrete data such as images (float images are levels only on v / 255 "
                    "or 0/1: store other levels scaled to 0..255, as uint8)"
                )
            if self.x.numel():
                scaled = self.x.flatten()[:1_000_000] * (self.levels - 1)  # a sample is enough to catch misuse
                if not (0 <= self.x.min() <= self.x.max() <= 1) or not (scaled - scaled.round()).abs().max() <= 1e-3:
                    raise DataError(
                        f"cannot dequantize dataset '{self.name}'{self._which}: values are not on the grid v / {self.levels - 1}"
                    )

    @property
    def _which(self) -> str:
        """`` (its valid split)`` for the splits but train, to name the culprit in an error."""
        return "" if self.split == "train" else f" (its {self.split} split)"

    def __len__(self) -> int:
        return len(self.x)

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, split={self.split!r}, n={len(self)}, shape={self.shape}, "
            f"levels={self.levels}, space={self.space!r})"
        )

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of one example, e.g. ``(1, 28, 28)`` or ``(2,)``."""
        return tuple(self.x.shape[1:])

    @property
    def is_image(self) -> bool:
        return self.x.dim() == 4

    @property
    def dequantized_levels(self) -> int | None:
        """The levels L where a model sees these data dequantized, (v + u) / L, else None: such a model reads the
        stored images best at their levels' centres and its own outputs are put back on the levels
        (:func:`~genzoo.data.transforms.level_centres`, :func:`~genzoo.data.transforms.requantize`)."""
        return self.levels if self.dequantize and self.levels else None

    @property
    def space(self) -> str:
        """What a model sees, for labelling likelihood units.

        ``"binarized"`` (Bernoulli draws in {0, 1}), ``"dequantized"`` (continuous, bits/dim
        are meaningful), ``"continuous"`` (truly real-valued data, nats) or ``"discrete-as-real"``
        (discrete levels fed as reals: a continuous density there is not a likelihood of the data).
        """
        if self.binarize:
            return "binarized"
        if self.dequantize:
            return "dequantized"
        if self.levels is None:
            return "continuous"
        return "discrete-as-real"

    def _apply(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        if self.binarize:
            return T.binarize(x, generator=generator)
        if self.dequantize:
            assert self.levels is not None
            return T._dequantize(x, self.levels, generator)  # (x checked in __post_init__: no pass per batch)
        return x

    def batch(self, idx: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``x[idx]`` with the per-batch transform applied, drawn from ``generator``.

        ``idx`` is a 1-D tensor (or list) of indices; the same generator state gives the same batch, the next
        call gives fresh noise.
        """
        need = "Dataset.batch needs a 1-D tensor of indices (a batch of rows)"
        if not isinstance(idx, Tensor):
            if not isinstance(idx, (list, tuple, np.ndarray)):
                raise DataError(f"{need}, got {type(idx).__name__}")
            idx = torch.as_tensor(idx)
        if idx.dim() != 1 or idx.is_floating_point() or idx.is_complex():
            raise DataError(f"{need}, got a {idx.dtype} tensor of shape {tuple(idx.shape)}")
        return self._apply(self.x[idx], generator)  # (B, *shape)

    def transformed(self, generator: torch.Generator | None = None) -> Tensor:
        """The whole of ``x`` with the transform applied once (for evaluation)."""
        return self._apply(self.x, generator)  # (N, *shape)
