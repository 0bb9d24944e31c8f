"""Planar flows as a density model (Rezende & Mohamed 2015, Section 4.1).

K planar layers ``x -> x + u_k tanh(w_k'x + b_k)`` map data to the base (standard normal, or logistic). ``log_prob`` is in
closed form; sampling inverts each layer by a 1-D root search along ``w_k``, ``decode`` differentiable in z (see
:func:`~genzoo.models.flows.transforms.planar_inverse`). The same layers, with parameters produced by
an encoder, make the VAE posterior ``genzoo train vae --set posterior_flow=planar``.

>>> import torch, genzoo
>>> m = genzoo.build("planar", data_shape=(2,), n_layers=4)
>>> x = torch.randn(3, 2)
>>> m.log_prob(x).shape, bool(torch.allclose(m.decode(m.encode(x)), x, atol=1e-5))
(torch.Size([3]), True)
"""

from __future__ import annotations

from ...errors import ConfigError
from ...registry import register
from .base import Base, Flow
from .transforms import ActNorm, Compose, Planar


@register("planar", "Planar flow density (Rezende & Mohamed 2015): K layers z + u tanh(w'z + b)")
class PlanarFlow(Flow):
    """``n_layers`` planar layers after an activation normalisation; ``base`` "normal" (the default) or
    "logistic"; Adam with ``lr`` and ``weight_decay``, gradients clipped to ``max_grad_norm`` (0: off).

    Planar layers are weak one at a time (each bends space along one direction): use many on 2-D data.

    >>> import torch
    >>> m = PlanarFlow(data_shape=(2,), n_layers=4)
    >>> m.setup(torch.randn(100, 2) * 3, torch.Generator().manual_seed(0))  # the ActNorm from the data (else: the
    >>> z = torch.randn(5, 2)                                                # first forward pass's batch)
    >>> with torch.no_grad():
    ...     float((m.encode(m.decode(z)) - z).abs().max()) < 1e-5    # decode inverts each layer by a 1-D root search
    True
    """

    def __init__(self, *, data_shape: tuple[int, ...], n_layers: int = 32, base: Base = "normal",
                 lr: float = 5e-3, weight_decay: float = 0.0, max_grad_norm: float = 100.0):
        super().__init__(data_shape, base, lr, weight_decay=weight_decay, max_grad_norm=max_grad_norm)
        if len(self.data_shape) != 1:
            raise ConfigError(f"planar flows work on vectors (D,), got examples of shape {self.data_shape}")
        if n_layers < 1:
            raise ConfigError("n_layers must be >= 1")
        self.transform = Compose(ActNorm(self.data_shape), *(Planar(self.latent_dim) for _ in range(n_layers)))

    @classmethod
    def defaults(cls, config: dict) -> dict:
        """The two moons: 5,000 steps of 256."""
        return {"data": {"name": "moons"}, "train": {"steps": 5000, "batch_size": 256, "lr_schedule": "cosine"}}
