"""NICE: non-linear independent components estimation (Dinh, Krueger & Bengio 2014).

Additive coupling layers ``y_B = x_B + m(x_A)`` (unit Jacobian) over alternating partitions of the
dimensions, then a diagonal scaling ``exp(s)`` (Section 3.3), and a standard logistic prior
(Section 3.4). On MNIST the paper uses 4 couplings whose ``m`` has 5 hidden layers of 1,000 ReLU units,
on data dequantized to [0, 1] (Section 5.1): ``configs/nice-mnist.toml`` and ``genzoo bench nice-mnist``.

>>> import torch, genzoo
>>> m = genzoo.build("nice", data_shape=(4,), hidden=(16,))
>>> x = torch.rand(3, 4)
>>> m.log_prob(x).shape, bool(torch.allclose(m.decode(m.encode(x)), x, atol=1e-5))
(torch.Size([3]), True)
"""

from __future__ import annotations

from typing import Literal

from torch import nn

from ...errors import ConfigError
from ...nn import mlp
from ...nn.masks import alternating
from ...registry import register
from .base import Base, Flow
from .transforms import Compose, Coupling, DiagonalScaling, Flatten, Logit


def coupling_net(n_in: int, hidden: tuple[int, ...], n_out: int, activation: str = "relu") -> nn.Sequential:
    """An MLP for a vector coupling whose last layer starts at zero, so the layer starts as the identity."""
    net = mlp([n_in, *hidden, n_out], activation)
    nn.init.zeros_(net[-1].weight)
    nn.init.zeros_(net[-1].bias)
    return net


@register("nice", "NICE (Dinh et al. 2014): additive couplings, diagonal scaling, logistic prior")
class NICE(Flow):
    """``n_couplings`` additive couplings over the flattened example, partitions alternating between even
    and odd indices, each with an MLP of ``hidden`` sizes; a final diagonal scaling; ``base`` logistic
    (the paper) or normal. ``preprocess="logit"`` puts the logit transform (and its Jacobian) first.
    Adam with the paper's settings is the default: lr 1e-3, eps 1e-4, momentum 0.9 and "beta2 = 0.01", which in
    the first Adam paper's convention (1 - decay) is a second-moment decay of 0.99 here.
    """

    def __init__(self, *, data_shape: tuple[int, ...], n_couplings: int = 4, hidden: tuple[int, ...] = (1000,) * 5,
                 activation: Literal["relu", "tanh", "elu", "softplus"] = "relu", base: Base = "logistic",
                 preprocess: Literal["none", "logit"] = "none", alpha: float = 1e-6, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.99), eps: float = 1e-4, weight_decay: float = 0.0,
                 max_grad_norm: float = 0.0):
        super().__init__(data_shape, base, lr, betas=betas, eps=eps, weight_decay=weight_decay, max_grad_norm=max_grad_norm)
        d = self.latent_dim
        if n_couplings < 1 or d < 2:
            raise ConfigError("NICE needs n_couplings >= 1 and at least 2 dimensions")
        layers = [Logit(alpha)] if preprocess == "logit" else []
        layers.append(Flatten(self.data_shape))
        for i in range(n_couplings):
            mask = alternating(d, parity=i % 2)                          # (D,): A = even, then odd indices
            n_a = int(mask.sum())
            layers.append(Coupling(mask, coupling_net(n_a, tuple(hidden), d - n_a, activation), additive=True))
        layers.append(DiagonalScaling((d,)))
        self.transform = Compose(*layers)

    def _latent_shape(self, z):
        return z  # the flattening is part of the transform

