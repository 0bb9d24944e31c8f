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

import math
from typing import Literal

import torch
from torch import Tensor, nn

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
    and odd indices, each with an MLP of ``hidden`` sizes and ``activation``; a final diagonal scaling;
    ``base`` logistic (the paper) or normal. ``preprocess="logit"`` puts the logit transform (and its
    Jacobian) first, on ``alpha + (1 - 2 alpha) x`` (``alpha`` keeps 0 and 1 finite; idle without it).
    ``data_init`` starts the flow at a per-dimension standardisation of the data and, with ``scaled_shifts``,
    expresses each coupling's shift in units of the data's spread (see :meth:`setup`; without ``data_init`` the units stay 1).
    Adam with the paper's settings is the default: lr 1e-3, eps 1e-4, momentum 0.9 and "beta2 = 0.01", which in
    the first Adam paper's convention (1 - decay) is a second-moment decay of 0.99 here (``lr``, ``eps``,
    ``betas``); ``weight_decay`` is Adam's L2 penalty, ``max_grad_norm`` clips the gradient norm (0: off).

    >>> m = NICE(data_shape=(4,), n_couplings=4, hidden=(16,))
    >>> x = torch.randn(6, 4)
    >>> m.setup(x, torch.Generator().manual_seed(0))            # the data standardised per dimension to start from
    >>> with torch.no_grad():
    ...     float((m.decode(m.encode(x)) - x).abs().max()) < 1e-5     # additive couplings invert exactly
    True
    """

    def __init__(self, *, data_shape: tuple[int, ...], n_couplings: int = 4, hidden: tuple[int, ...] = (1000,) * 5,
                 activation: Literal["relu", "tanh", "elu", "softplus"] = "relu", base: Base = "logistic",
                 preprocess: Literal["none", "logit"] = "none", alpha: float = 1e-6, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.99), eps: float = 1e-4, weight_decay: float = 0.0,
                 max_grad_norm: float = 0.0, data_init: bool = True, scaled_shifts: bool = True):
        super().__init__(data_shape, base, lr, betas=betas, eps=eps, weight_decay=weight_decay, max_grad_norm=max_grad_norm)
        d = self.latent_dim
        if d < 2:
            raise ConfigError(f"NICE couples two halves of the dimensions and needs data of 2 or more; this data has "
                              f"shape {tuple(self.data_shape)}: planar or gmm model 1-D data")
        if n_couplings < 1:
            raise ConfigError(f"NICE needs n_couplings >= 1, got {n_couplings}")
        layers = [Logit(alpha)] if preprocess == "logit" else []
        layers.append(Flatten(self.data_shape))
        for i in range(n_couplings):
            mask = alternating(d, parity=i % 2)                          # (D,): A = even, then odd indices
            n_a = int(mask.sum())
            layers.append(Coupling(mask, coupling_net(n_a, tuple(hidden), d - n_a, activation), additive=True,
                                   shift_scale=scaled_shifts))
        layers.append(DiagonalScaling((d,)))
        self.transform = Compose(*layers)
        self.data_init = data_init
        self.preprocess = preprocess

    def unused_options(self) -> dict[str, str]:
        """``alpha`` without the logit pre-processing; ``scaled_shifts`` without ``data_init``, which alone sets
        the shifts' units (they stay 1)."""
        idle = {"alpha": "preprocess=none"} if self.preprocess == "none" else {}
        if not self.data_init:
            idle["scaled_shifts"] = "data_init=false"
        return idle

    @torch.no_grad()
    def setup(self, x: Tensor, generator: torch.Generator) -> None:
        """With ``data_init`` (genzoo's addition, not in the paper): start the flow at a per-dimension
        standardisation (centring, scaling; not a decorrelation) of the data. The couplings start as the identity (zero last layers), so h = x before the scaling: the
        biases of the first two couplings' last layers remove each dimension's mean (every dimension is
        transformed by one of them; with ``n_couplings=1`` only the half it transforms is centred) and the scaling starts at ``std_base / std(h)`` per dimension. Without
        it the scaling starts at 1, and Adam needs thousands of steps to move it to the ~100x that MNIST's
        near-constant border pixels want.

        With ``scaled_shifts`` each coupling's shift is ``t = c * net(x_A)`` with the fixed
        ``c = std(h) / std_base`` per dimension (the inverse of the initial scaling): the same family of
        maps, but the net's outputs are in the units of z. Without it, a border pixel of std 0.001 is scaled
        ~1,600x, so every Adam step on the weights that shift it moves z by ~1,600x the step on a central
        pixel; in pilots on MNIST that noise switched off 98-100% of the last hidden layer's ReLUs within
        50 steps, whatever the lr, and training stalled near 1,700 nats (BENCHMARKS.md, NICE on MNIST)."""
        if not self.data_init:
            return
        idx = torch.randperm(x.shape[0], generator=generator)[:4096].to(x.device)
        h = self._check(x[idx])
        *pre, scaling = list(self.transform.transforms)
        for t in pre:
            if isinstance(t, Coupling):
                break
            h, _ = t(h)                                                # the logit and the flattening
        couplings = [t for t in pre if isinstance(t, Coupling)]
        std = h.std(0) if len(h) > 1 else torch.ones_like(h[0])          # one example has no spread
        # 1e-4, and relative for data whose largest spread is under 0.1 (1e-4 made data of std 1e-6 start 100x too wide)
        top = float(std.max())
        mean, std = h.mean(0), std.clamp_min(1e-4 * min(1.0, top / 0.1) if top > 0 else 1e-4)  # (D,) each
        std_base = math.pi / math.sqrt(3) if self.base_name == "logistic" else 1.0
        unit = std / std_base                                         # (D,) the data's units per unit of z
        for c in couplings:
            if c.shift_scale is not None:
                c.shift_scale.copy_(unit[c.idx_b])
        for c in couplings[:2]:
            c.net[-1].bias.copy_(-mean[c.idx_b] / (1.0 if c.shift_scale is None else c.shift_scale))
        scaling.log_scale.copy_(torch.log(std_base / std))

    def _latent_shape(self, z):
        return z  # the flattening is part of the transform

