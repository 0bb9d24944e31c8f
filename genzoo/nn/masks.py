"""Binary masks for coupling layers (Dinh et al. 2016, "RealNVP", Section 3.4).

A mask is True on the part a coupling layer conditions on and leaves unchanged. Masks are made on the CPU, whatever
device a build puts its weights on: a coupling computes its index buffers from the mask's values and then moves them
(:class:`genzoo.models.flows.transforms.Coupling`), which a build on the meta device (the size check of
:func:`genzoo.load`) could not do with a mask of its own.

>>> checkerboard((1, 2, 2), parity=0).int().tolist()
[[[1, 0], [0, 1]]]
>>> channel_mask((4, 1, 1), parity=1).flatten().int().tolist()
[0, 0, 1, 1]
>>> alternating(5, parity=0).int().tolist()
[1, 0, 1, 0, 1]
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import ConfigError

CPU = torch.device("cpu")


def _parity(parity: int) -> int:
    if parity not in (0, 1):  # 2 gave checkerboard and alternating an all-False mask, channel_mask parity 1's
        raise ConfigError(f"a mask's parity is 0 or 1, got {parity!r}")
    return int(parity)


def checkerboard(shape: tuple[int, int, int], parity: int = 0) -> Tensor:
    """(C, H, W) mask, True where (row + column) % 2 == parity, the same in every channel."""
    parity = _parity(parity)
    c, h, w = shape
    ij = torch.arange(h, device=CPU).unsqueeze(1) + torch.arange(w, device=CPU).unsqueeze(0)  # (H, W)
    return ((ij % 2) == parity).unsqueeze(0).expand(c, h, w).clone()


def channel_mask(shape: tuple[int, int, int], parity: int = 0) -> Tensor:
    """(C, H, W) mask, True on the first half of the channels (parity 0) or the second (parity 1)."""
    parity = _parity(parity)
    c, h, w = shape
    first = torch.arange(c, device=CPU) < c // 2                     # (C,)
    keep = first if parity == 0 else ~first
    return keep.reshape(c, 1, 1).expand(c, h, w).clone()


def alternating(dim: int, parity: int = 0) -> Tensor:
    """(D,) mask, True on the even (parity 0) or odd (parity 1) indices: NICE's partition (Dinh et al. 2014,
    Section 5.1)."""
    parity = _parity(parity)
    return (torch.arange(dim, device=CPU) % 2) == parity
