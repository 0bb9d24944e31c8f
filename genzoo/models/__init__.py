"""One file per family; importing this package registers them all."""

from . import flows, gan, gmm, moment, ssvae, vae  # noqa: F401
