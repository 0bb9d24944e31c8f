"""Multi-layer perceptrons, with activations chosen by name so configs stay plain data."""

from __future__ import annotations

from typing import Literal, get_args

from torch import nn

from ..errors import ConfigError
from .linear import Linear

#: the names of :data:`ACTIVATIONS`, for model options (``genzoo models NAME`` lists the choices, ``build`` checks them)
Activation = Literal["relu", "tanh", "leaky_relu", "elu", "softplus", "gelu"]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "softplus": nn.Softplus,
    "gelu": nn.GELU,
}
assert set(get_args(Activation)) == set(ACTIVATIONS), "keep Activation in step with ACTIVATIONS"


def activation_class(name: str) -> type[nn.Module]:
    """The module class of the activation ``name`` in :data:`ACTIVATIONS`; a :class:`ConfigError` naming the
    choices for another name."""
    try:
        return ACTIVATIONS[name]
    except (KeyError, TypeError):  # TypeError: an unhashable value
        raise ConfigError(f"unknown activation {name!r}: choose one of {', '.join(ACTIVATIONS)}") from None


def mlp(sizes: tuple[int, ...] | list[int], activation: str = "relu", batch_norm: bool = False) -> nn.Sequential:
    """Linear layers of the given sizes with ``activation`` between them (none after the last);
    ``batch_norm`` puts a ``BatchNorm1d`` before each hidden activation.

    >>> len(mlp([784, 400, 40])), len(mlp([784, 400, 40], batch_norm=True))
    (3, 4)
    """
    act = activation_class(activation)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(Linear(a, b))
        if i < len(sizes) - 2:
            layers += [nn.BatchNorm1d(b)] if batch_norm else []
            layers.append(act())
    return nn.Sequential(*layers)
