"""DCGAN generator and discriminator (Radford, Metz & Chintala 2016, "Unsupervised Representation
Learning with Deep Convolutional GANs"), for images whose sides are divisible by 4.

The paper's architecture guidelines (its Section 3), followed here:

* no pooling: strided convolutions in the discriminator, fractionally strided ones in the generator;
* batch norm in both networks, except the generator's output layer and the discriminator's input
  layer (and, for a WGAN-GP critic, none at all: Gulrajani et al. 2017, Section 4);
* no hidden fully connected layers: the generator's first layer is a projection of z reshaped into
  a 4-D tensor, the discriminator's last convolution is flattened into a single output;
* ReLU in the generator with tanh at the output, LeakyReLU (slope 0.2) in the discriminator.

>>> import torch
>>> g, d = DCGANGenerator(16, (1, 28, 28)), DCGANDiscriminator((1, 28, 28))
>>> x = g(torch.randn(4, 16))
>>> x.shape, d(x).shape, bool(x.abs().max() <= 1)
(torch.Size([4, 1, 28, 28]), torch.Size([4]), True)
"""

from __future__ import annotations

import math
from typing import Literal

from torch import Tensor, nn

from .conv import _check, _run, flat_linear, layout_of
from .linear import Linear


class DCGANGenerator(nn.Module):
    """(B, latent_dim) -> (B, C, H, W) in [-1, 1]: project, then two fractionally strided convolutions."""

    def __init__(self, latent_dim: int, out_shape: tuple[int, ...], width: int = 64):
        super().__init__()
        c, h, w = _check(out_shape)
        self.start = (2 * width, h // 4, w // 4)
        self.net = nn.Sequential(
            Linear(latent_dim, math.prod(self.start), bias=False),        # project z ...
            nn.Unflatten(1, self.start),                                     # ... into (B, 2w, H/4, W/4)
            nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1, bias=False),  # (B, w, H/2, W/2)
            nn.BatchNorm2d(width), nn.ReLU(),
            nn.ConvTranspose2d(width, c, 4, stride=2, padding=1),            # (B, C, H, W)
            nn.Tanh(),
        )
        _init_dcgan(self)

    def forward(self, z: Tensor) -> Tensor:
        layers = list(self.net)
        h = layout_of(_run(layers[:2], z), layers[4])  # (B, 2w, H/4, W/4), in the convolutions' layout
        return _run(layers[2:], h)                     # (B, C, H, W)


class DCGANDiscriminator(nn.Module):
    """(B, C, H, W) in [-1, 1] -> (B,) raw scores: two strided convolutions, then one linear output.

    ``norm`` is the normalisation of the second convolution: "batch" (DCGAN), "layer" or "none"
    (a WGAN-GP critic must not use batch norm, whose output mixes the examples of a batch).
    """

    def __init__(self, in_shape: tuple[int, ...], width: int = 64,
                 norm: Literal["batch", "layer", "none"] = "batch"):
        super().__init__()
        c, h, w = _check(in_shape)
        if norm == "batch":
            mid: nn.Module = nn.BatchNorm2d(2 * width)
        elif norm == "layer":
            mid = nn.GroupNorm(1, 2 * width)  # layer norm over (C, H, W)
        else:
            mid = nn.Identity()
        self.net = nn.Sequential(
            nn.Conv2d(c, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2),                 # (B, w, H/2, W/2)
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1, bias=norm == "none"), mid,  # (B, 2w, H/4, W/4)
            nn.LeakyReLU(0.2),
            nn.Flatten(),                                                                  # run with the next
            Linear(2 * width * (h // 4) * (w // 4), 1),                                  # as one flat_linear
        )
        _init_dcgan(self)

    def forward(self, x: Tensor) -> Tensor:
        *body, _, head = self.net                            # the convolutions, the Flatten, the linear output
        return flat_linear(_run(body, x), head).squeeze(-1)  # (B, 1) -> (B,)


def _init_dcgan(module: nn.Module) -> None:
    """Weights from N(0, 0.02) (Radford et al. 2016, Section 4); batch-norm scales from N(1, 0.02) and
    shifts 0, as in the PyTorch DCGAN example's ``weights_init`` (the paper gives no batch-norm init)."""
    if any(p.is_meta for p in module.parameters()):  # a meta build (genzoo.io's size check): no values to draw, and
        return                                       # normal_ on the meta device imports torch._dynamo (2-3 s)
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
