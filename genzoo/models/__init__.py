"""One file per family; importing this package registers them all."""

from . import gan, gmm, moment, vae  # noqa: F401
