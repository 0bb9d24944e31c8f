"""Convolutional encoders and decoders for images whose sides are divisible by 4.

Two stride-2 convolutions halve the sides twice (28 -> 14 -> 7, 8 -> 4 -> 2); the decoder mirrors
them with fractionally strided convolutions, as in DCGAN (Radford et al. 2016): no pooling.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from .linear import Linear
from .mlp import ACTIVATIONS


def _check(shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(shape) != 3 or shape[1] % 4 or shape[2] % 4:
        raise ConfigError(f"the conv architecture needs images (C, H, W) with H and W divisible by 4, got {tuple(shape)}")
    return shape[0], shape[1], shape[2]


class ConvEncoder(nn.Module):
    """(B, C, H, W) -> (B, out_dim): two stride-2 convolutions, then a linear layer.

    >>> ConvEncoder((1, 28, 28), 40)(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 40])
    """

    def __init__(self, in_shape: tuple[int, ...], out_dim: int, channels: tuple[int, int] = (32, 64), activation: str = "relu"):
        super().__init__()
        c, h, w = _check(in_shape)
        act = ACTIVATIONS[activation]
        self.net = nn.Sequential(
            nn.Conv2d(c, channels[0], 4, stride=2, padding=1), act(),            # (B, c0, H/2, W/2)
            nn.Conv2d(channels[0], channels[1], 4, stride=2, padding=1), act(),  # (B, c1, H/4, W/4)
            nn.Flatten(),
            Linear(channels[1] * (h // 4) * (w // 4), out_dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ConvDecoder(nn.Module):
    """(B, in_dim) -> (B, out_channels, H, W): a linear layer, then two stride-2 transposed convolutions.

    >>> ConvDecoder(20, (1, 28, 28))(torch.zeros(2, 20)).shape
    torch.Size([2, 1, 28, 28])
    """

    def __init__(self, in_dim: int, out_shape: tuple[int, ...], channels: tuple[int, int] = (64, 32),
                 activation: str = "relu", out_channels: int | None = None):
        super().__init__()
        c, h, w = _check(out_shape)
        act = ACTIVATIONS[activation]
        self.start = (channels[0], h // 4, w // 4)
        self.net = nn.Sequential(
            Linear(in_dim, math.prod(self.start)), act(),
            nn.Unflatten(1, self.start),                                                 # (B, c0, H/4, W/4)
            nn.ConvTranspose2d(channels[0], channels[1], 4, stride=2, padding=1), act(),  # (B, c1, H/2, W/2)
            nn.ConvTranspose2d(channels[1], out_channels or c, 4, stride=2, padding=1),   # (B, C, H, W)
        )

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)
