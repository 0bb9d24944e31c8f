"""Convolutional encoders and decoders for images whose sides are divisible by 4.

Two stride-2 convolutions halve the sides twice (28 -> 14 -> 7, 8 -> 4 -> 2); the decoder mirrors
them with fractionally strided convolutions, as in DCGAN (Radford et al. 2016): no pooling.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.fx import Proxy as _Proxy
from torch.nn.modules import module as _module

from ..errors import ConfigError
from .linear import Linear, linear
from .mlp import activation_class


def _check(shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(shape) != 3 or shape[1] % 4 or shape[2] % 4:
        raise ConfigError(f"the conv architecture needs images (C, H, W) with H and W divisible by 4, got {tuple(shape)}")
    return shape[0], shape[1], shape[2]


def _channels(channels: tuple[int, ...]) -> tuple[int, int]:
    if len(channels) != 2:
        raise ConfigError(f"the conv architecture has two convolutions: channels needs 2 numbers, got {tuple(channels)}")
    return channels[0], channels[1]


def _run(layers, x: Tensor) -> Tensor:
    """``x`` through ``layers`` in turn, as ``nn.Sequential`` runs them. The networks here call their installed
    layers so rather than slicing their Sequential (``self.net[:-2](x)``): a slice is a new Sequential that is
    not a submodule, which ``torch.fx`` cannot trace."""
    for layer in layers:
        x = layer(x)
    return x


def _nhwc(x: Tensor) -> bool:
    """Whether a (B, C, H, W) tensor is laid out channels-last (and not also NCHW, as when C == 1)."""
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def _hooked(layer: nn.Module) -> bool:
    """Whether calling ``layer`` would run any module hook: the test ``nn.Module._call_impl`` makes
    before it skips them (torch/nn/modules/module.py)."""
    return bool(layer._forward_pre_hooks or layer._forward_hooks or layer._backward_pre_hooks
                or layer._backward_hooks or _module._global_forward_pre_hooks or _module._global_forward_hooks
                or _module._global_backward_pre_hooks or _module._global_backward_hooks)


_PLAIN_FORWARDS = (nn.Linear.forward, Linear.forward)  # heads that compute linear(x, weight, bias) and nothing else


def flat_linear(x: Tensor, layer: nn.Linear) -> Tensor:
    """``layer(x.flatten(1))`` for (B, C, H, W) features, read in place when they are channels-last.

    ``flatten`` orders the features (C, H, W), so on a channels-last ``x`` it copies the activations
    into NCHW order, and its backward hands the elementwise layer before it a gradient in NCHW while
    that layer saved its input channels-last: a mixed-layout kernel 20-30x slower than a same-layout
    one (1.1 ms against 0.04 ms for a LeakyReLU backward on (64, 128, 7, 7), 2 cores). Here a
    channels-last ``x`` is flattened in its own (H, W, C) order, a free view, and the layer's weight
    columns (out, C*H*W) are permuted to that order instead: the same function, no activation copy in
    either pass, and a channels-last gradient. The weight and checkpoint keep the NCHW order.

    That product does not go through ``layer.__call__``, so a layer with module hooks (its own or
    torch's global ones: a feature hook, or the hook-based ``nn.utils.spectral_norm``, ``weight_norm``
    and ``prune``, which recompute ``weight`` in a forward pre-hook) takes ``layer(x.flatten(1))``
    instead: the same values, with its hooks run, at the cost of the copy and slow backward above. So
    does a head whose ``forward`` is not ``nn.Linear``'s or :class:`~genzoo.nn.linear.Linear`'s (a subclass
    that overrides it, or another module: the product here would skip what it adds), and a ``torch.fx``
    trace, whose ``x`` has no layout.

    >>> layer = nn.Linear(2 * 3 * 3, 4)
    >>> x = torch.randn(5, 2, 3, 3)
    >>> y = flat_linear(x.contiguous(memory_format=torch.channels_last), layer)
    >>> bool(torch.allclose(y, layer(x.flatten(1)), atol=1e-6))
    True
    """
    if (isinstance(x, _Proxy) or type(layer).forward not in _PLAIN_FORWARDS or x.dim() != 4 or not _nhwc(x)
            or _hooked(layer)):
        return layer(x.flatten(1))
    c, h, w = x.shape[1:]
    weight = layer.weight.unflatten(1, (c, h, w)).permute(0, 2, 3, 1).flatten(1)  # (out, H*W*C)
    return linear(x.permute(0, 2, 3, 1).flatten(1), weight, layer.bias)           # (B, out)


def layout_of(x: Tensor, conv: nn.Module) -> Tensor:
    """``x`` (B, C, H, W) in the memory layout of ``conv``'s weight (channels-last after
    ``model.to(memory_format=torch.channels_last)``). Reshaping a projection into an image gives NCHW;
    converted here, the batch norm and activation between it and ``conv`` run in the convolution's
    layout, so their backward gets its gradient in the layout they saved (see :func:`flat_linear`). Under a
    ``torch.fx`` trace (Proxies, which have no layout) ``x`` as it is: the layout changes no value."""
    weight = conv.weight
    if isinstance(x, _Proxy) or isinstance(weight, _Proxy):
        return x
    if weight.dim() == 4 and _nhwc(weight) and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


class ConvEncoder(nn.Module):
    """(B, C, H, W) -> (B, out_dim): two stride-2 convolutions, then a linear layer.

    >>> ConvEncoder((1, 28, 28), 40)(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 40])
    """

    def __init__(self, in_shape: tuple[int, ...], out_dim: int, channels: tuple[int, int] = (32, 64), activation: str = "relu"):
        super().__init__()
        c, h, w = _check(in_shape)
        channels = _channels(channels)
        act = activation_class(activation)
        self.net = nn.Sequential(
            nn.Conv2d(c, channels[0], 4, stride=2, padding=1), act(),            # (B, c0, H/2, W/2)
            nn.Conv2d(channels[0], channels[1], 4, stride=2, padding=1), act(),  # (B, c1, H/4, W/4)
            nn.Flatten(),                                                         # run with the next
            Linear(channels[1] * (h // 4) * (w // 4), out_dim),                  # as one flat_linear
        )

    def forward(self, x: Tensor) -> Tensor:
        *body, _, head = self.net                 # the convolutions, the Flatten, the linear layer
        return flat_linear(_run(body, x), head)  # (B, out_dim)


class ConvDecoder(nn.Module):
    """(B, in_dim) -> (B, out_channels, H, W): a linear layer, then two stride-2 transposed convolutions.

    >>> ConvDecoder(20, (1, 28, 28))(torch.zeros(2, 20)).shape
    torch.Size([2, 1, 28, 28])
    """

    def __init__(self, in_dim: int, out_shape: tuple[int, ...], channels: tuple[int, int] = (64, 32),
                 activation: str = "relu", out_channels: int | None = None):
        super().__init__()
        c, h, w = _check(out_shape)
        channels = _channels(channels)
        act = activation_class(activation)
        self.start = (channels[0], h // 4, w // 4)
        self.net = nn.Sequential(
            Linear(in_dim, math.prod(self.start)), act(),
            nn.Unflatten(1, self.start),                                                 # (B, c0, H/4, W/4)
            nn.ConvTranspose2d(channels[0], channels[1], 4, stride=2, padding=1), act(),  # (B, c1, H/2, W/2)
            nn.ConvTranspose2d(channels[1], out_channels or c, 4, stride=2, padding=1),   # (B, C, H, W)
        )

    def forward(self, z: Tensor) -> Tensor:
        layers = list(self.net)
        h = layout_of(_run(layers[:3], z), layers[3])  # (B, c0, H/4, W/4), in the convolutions' layout
        return _run(layers[3:], h)                     # (B, C, H, W)
