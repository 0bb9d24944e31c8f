"""Sample grids as PNG (Pillow), and the one entry point ``save_samples`` for any data shape.

>>> import torch, tempfile, os
>>> p = os.path.join(tempfile.mkdtemp(), "g.png")
>>> save_grid(torch.rand(10, 1, 8, 8), p, nrow=5)
>>> from PIL import Image; Image.open(p).size
(46, 19)
"""

from __future__ import annotations

import io
import math
import numbers
import os

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..errors import DataError
from ..io import atomic_write_bytes


def image_grid(images: Tensor, nrow: int | None = None, pad: int = 1, scale: int = 1) -> np.ndarray:
    """(N, C, H, W) floats in [0, 1] (or integers in 0..255; other than uint8, of 0 and 1 alone: binary) -> (rows*(H+pad)+pad, cols*(W+pad)+pad,
    C) uint8 array.

    ``nrow`` is the number of images per row (default: about the square root of N); the border is grey (128), ``pad``
    pixels wide; each pixel is drawn ``scale`` x ``scale``. NaN or infinite pixels (a diverging model's samples) are
    drawn red, a grey grid made RGB for it: black and white, as they were drawn, passed for plausible pixels.

    >>> a = image_grid(torch.stack([torch.zeros(1, 2, 2), torch.ones(1, 2, 2)]), nrow=2)  # black, white
    >>> a.shape, a.dtype, a[1:3, 1:3, 0].tolist(), a[1:3, 4:6, 0].tolist(), int(a[0, 0, 0])
    ((4, 7, 1), dtype('uint8'), [[0, 0], [0, 0]], [[255, 255], [255, 255]], 128)
    >>> image_grid(torch.rand(5, 3, 4, 4), scale=2).shape               # 3 x 2 images, each pixel 2 x 2
    (22, 32, 3)
    >>> image_grid(torch.tensor([[[[0.0, float("nan")]]]]), pad=0).tolist()  # RGB: a black pixel, a red one
    [[[0, 0, 0], [255, 0, 0]]]
    """
    if (not isinstance(images, Tensor) or images.dim() != 4 or images.shape[1] not in (1, 3)
            or 0 in images.shape[:1] + images.shape[2:]):
        got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise DataError(f"an image grid needs images (N, C, H, W) with N, H, W >= 1 and C = 1 or 3, got {got}")
    # (a negative nrow or pad ended in torch's errors, scale 2.5 was truncated and nrow 0 taken as None)
    for name, v, least in (("nrow", 1 if nrow is None else nrow, 1), ("scale", scale, 1), ("pad", pad, 0)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < least:
            raise DataError(f"an image grid's {name} must be an integer >= {least}, got {v!r}")
    pad, scale = int(pad), int(scale)
    x = images.detach().cpu()
    if not x.is_floating_point() and x.dtype != torch.bool:
        # levels 0..255 in any integer dtype, as in uint8 (an int64 128 was clamped to 1 and drawn white); but an
        # int tensor of 0s and 1s alone is binary (a mask, binarized samples), drawn black and white as it always was
        lo, hi = x.aminmax()
        if lo < 0 or hi > 255:
            raise DataError(f"integer images must hold levels 0..255 (or 0/1), got values in {int(lo)}..{int(hi)}")
        x = x.float() / (255 if hi > 1 or x.dtype == torch.uint8 else 1)
    x = _mark_nonfinite(x.float())  # (N, C or 3, H, W) in [0, 1]
    n, c, h, w = x.shape
    cols = int(nrow or math.ceil(math.sqrt(n)))
    rows = math.ceil(n / cols)
    grid = torch.ones(c, rows * (h + pad) + pad, cols * (w + pad) + pad) * 0.5  # grey border
    for i in range(n):
        r, k = divmod(i, cols)
        top, left = pad + r * (h + pad), pad + k * (w + pad)
        grid[:, top:top + h, left:left + w] = x[i]
    arr = (grid.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)  # (H', W', C)
    if scale > 1:
        arr = arr.repeat(scale, 0).repeat(scale, 1)
    return arr


def _mark_nonfinite(x: Tensor) -> Tensor:
    """(N, C, H, W) -> in [0, 1], with every pixel that is NaN or infinite in any channel red (3 channels then)."""
    bad = ~torch.isfinite(x).all(1, keepdim=True)  # (N, 1, H, W)
    x = x.nan_to_num(0.0).clamp(0, 1)
    if not bad.any():
        return x
    x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x  # (N, 3, H, W)
    red = torch.tensor([1.0, 0.0, 0.0]).reshape(1, 3, 1, 1)
    return torch.where(bad, red, x)


def _png_bytes(arr: np.ndarray) -> bytes:
    img = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def save_grid(images: Tensor, path: str | os.PathLike, nrow: int | None = None, scale: int = 1) -> None:
    """Write (N, C, H, W) images in [0, 1] as one PNG grid, atomically."""
    atomic_write_bytes(path, _png_bytes(image_grid(images, nrow, scale=scale)))


def save_samples(samples: Tensor, path: str | os.PathLike, title: str = "", density=None) -> None:
    """A PNG for any samples (a tensor): a grid for images, a scatter for 2-D points, a histogram for 1-D.

    Images are scaled by ``56 // side`` (whole pixels), so small ones stay visible.

    >>> import tempfile
    >>> from PIL import Image
    >>> p = os.path.join(tempfile.mkdtemp(), "samples.png")
    >>> save_samples(torch.rand(4, 1, 8, 8), p)                         # 2 x 2 images of 8 x 8, 7 times
    >>> Image.open(p).size, (2 * (8 + 1) + 1) * 7
    ((133, 133), 133)
    """
    if not isinstance(samples, Tensor):  # (a numpy array raised an AttributeError)
        raise DataError(f"save_samples takes a torch tensor of images (N, C, H, W) or points (N, D), got "
                        f"{type(samples).__name__}")
    if samples.dim() == 4:
        side = max(samples.shape[-2:])  # the longer side: a tall, narrow image is not scaled by its width
        save_grid(samples, path, scale=max(1, 56 // max(side, 1)))  # (0 x 0 images: image_grid's error)
        return
    from .plots import save_points

    save_points(samples, path, title=title, density=density)
