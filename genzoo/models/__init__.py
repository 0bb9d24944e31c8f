"""One file per family; importing this package registers them all."""

from . import gmm, vae  # noqa: F401
