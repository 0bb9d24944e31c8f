"""genzoo: the classic zoo of deep generative models behind one interface.

>>> import genzoo, torch
>>> model = genzoo.build("vae", data_shape=(1, 8, 8), latent_dim=4)
>>> model.sample(3).shape
torch.Size([3, 1, 8, 8])
>>> {"fit", "load", "GenerativeModel", "WriteError"} <= set(dir(genzoo))   # the lazy names too
True
>>> genzoo.nope
Traceback (most recent call last):
AttributeError: module 'genzoo' has no attribute 'nope'
"""

from .errors import CheckpointError, ConfigError, DataError, GenZooError, TrainingDiverged, WriteError
from .registry import build, list_models, register

__version__ = "0.1.0"

__all__ = [
    "Batch", "Density", "GenerativeModel", "Generator", "Invertible", "LatentVariable",
    "CheckpointError", "ConfigError", "DataError", "GenZooError", "TrainingDiverged", "WriteError",
    "build", "list_models", "register", "save", "load", "fit", "__version__",
]


def __getattr__(name):  # lazy: `import genzoo` (and so the CLI's start, Ctrl-C included) does not wait for torch
    if name in ("Batch", "Density", "GenerativeModel", "Generator", "Invertible", "LatentVariable"):
        from . import base

        return getattr(base, name)
    if name in ("save", "load"):
        from . import io

        return getattr(io, name)
    if name == "fit":
        from .train.loop import fit

        return fit
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():  # the lazy names too (tab completion, dir(genzoo)), which __getattr__ adds only when first used
    return sorted(set(globals()) | set(__all__))
