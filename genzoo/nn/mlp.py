"""Multi-layer perceptrons, with activations chosen by name so configs stay plain data."""

from __future__ import annotations

from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "softplus": nn.Softplus,
    "gelu": nn.GELU,
}


def mlp(sizes: tuple[int, ...] | list[int], activation: str = "relu") -> nn.Sequential:
    """Linear layers of the given sizes with ``activation`` between them (none after the last).

    >>> mlp([784, 400, 40]).__len__()
    3
    """
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)
