"""Speed options of the training loop: mixed precision, channels-last layout and ``torch.compile``.

* ``precision="bf16"`` runs each training step under ``torch.autocast`` with bfloat16: matrix
  products and convolutions in bf16, everything else in float32. Only models whose class sets
  ``autocast_safe = True`` accept it; they cast their networks' outputs to float32 before any
  log-determinant, log-sum-exp or loss is accumulated (the VAE, the GANs, NICE, RealNVP and the
  planar flows). The GMM (EM sufficient statistics), the GMMN (kernel sums) and M2 (a sum over
  classes) stay float32. fp16 is refused: it needs loss scaling, which the models' own optimizer
  steps do not do. Measured on 2 cores of an AVX512-BF16 CPU (``genzoo bench speed``): against fp32,
  RealNVP on 784-D data trains 1.7x as fast, the VAE 1.3-1.5x, the DCGAN 1.2-1.4x.
* ``channels_last``: 4-D weights and image batches in NHWC layout, which oneDNN (CPU) and cuDNN
  prefer; ``None`` ("auto") turns it on for models with convolutions (the DCGAN: 1.12-1.16x on two CPU
  threads). Values are unchanged; only the layout differs.
* ``compile=True``: ``torch.compile`` on each of the model's top-level networks (in place, so
  parameter names and checkpoints are unchanged), after the model's data-dependent setup. Off by default,
  by measurement on a 2-core CPU:
  20-30 s of compiling per run for 1.08x on the 784-D RealNVP and 0.79x on the DCGAN.

>>> import torch
>>> from torch import nn
>>> has_convolutions(nn.Sequential(nn.Conv2d(1, 2, 3))), has_convolutions(nn.Linear(2, 2))
(True, False)
>>> with autocast(torch.device("cpu"), "bf16"):
...     (torch.ones(2, 2) @ torch.ones(2, 2)).dtype
torch.bfloat16
"""

from __future__ import annotations

import contextlib
import types
import warnings
from collections.abc import Callable

import torch
from torch import nn

from ..base import Batch
from ..errors import ConfigError, GenZooWarning

PRECISIONS = ("fp32", "bf16", "fp16")


def check_precision(model: nn.Module, precision: str) -> None:
    """Raise ConfigError unless ``model`` can train at ``precision``; warn (:func:`bf16_warning`) where its bf16
    would run emulated."""
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision '{precision}': use fp32 or bf16")
    if precision == "fp16":
        raise ConfigError("precision fp16 needs loss scaling, which genzoo's training steps do not do; use bf16")
    if precision == "bf16" and not getattr(model, "autocast_safe", False):
        raise ConfigError(f"precision bf16: {type(model).__name__} keeps its own dtype (its accumulations are not "
                          "safe in bfloat16); use fp32")
    if precision == "bf16":
        bf16_warning(getattr(model, "device", torch.device("cpu")), stacklevel=4)


def bf16_emulated(device: torch.device) -> bool:
    """Whether bf16 autocast on ``device`` runs emulated: a CPU without native bf16 (AVX512-BF16, AMX), by oneDNN's
    own check, where bf16 products take many times as long as fp32's (60x for a 512 x 512 product on a 2-core AMD
    EPYC with AVX2 only; :func:`genzoo.bench.speed.bf16_slowdown` measures it)."""
    return device.type == "cpu" and not torch.ops.mkldnn._is_mkldnn_bf16_supported()


def bf16_warning(device: torch.device, stacklevel: int = 3) -> None:
    """Warn (:class:`~genzoo.errors.GenZooWarning`) where bf16 runs emulated (:func:`bf16_emulated`)."""
    if bf16_emulated(device):
        warnings.warn("precision bf16: this CPU has no native bf16 (AVX512-BF16 or AMX), so torch emulates it and "
                      "the run is many times slower than in fp32", GenZooWarning, stacklevel=stacklevel)


def check_compile(device: torch.device) -> None:
    """Raise ConfigError where ``torch.compile`` cannot build its kernels: on the CPU, inductor compiles C++ and
    needs a compiler (g++, clang++ or $CXX), which it otherwise misses only at the first compiled step."""
    if device.type != "cpu":
        return
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        get_cpp_compiler()
    except Exception as e:  # InvalidCxxCompiler, or a torch without inductor
        raise ConfigError(f"compile: torch.compile needs a C++ compiler on the CPU and found none ({type(e).__name__}): "
                          "install g++ or set CXX, or leave compile off (--no-compile when resuming a compiled run)") from None


def autocast(device: torch.device, precision: str):
    """The context a training step runs in: bf16 autocast, or nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def has_convolutions(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules())


def use_channels_last(model: nn.Module, option: bool | None) -> bool:
    """The ``channels_last`` option resolved: None ("auto") is on for models with convolutions."""
    return has_convolutions(model) if option is None else bool(option)


def to_channels_last(model: nn.Module) -> None:
    """4-D parameters and buffers in NHWC layout, in place (the same Parameter objects)."""
    model.to(memory_format=torch.channels_last)


def batch_layout(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x


def training_step(model, batch: Batch, optimizers, device: torch.device, precision: str, channels_last: bool) -> dict:
    """``model.training_step`` as ``fit`` runs it: under ``precision``, the batch in the chosen layout."""
    with autocast(device, precision):
        return model.training_step(Batch(batch_layout(batch.x, channels_last), batch.y), optimizers)


def _own_forward(cls: type) -> Callable:
    """``cls.forward`` behind a function with a code object of its own. Dynamo keeps its graphs per code object,
    with a limit of 8: every ``nn.Sequential`` of every model in the process shares the one ``forward`` of torch's
    file, so M2's three networks, with their batch sizes for training, sampling and validation, went past the
    limit within 3 steps (and ran eagerly from then on, with a warning)."""
    def forward(self, *args, **kwargs):
        return cls.forward(self, *args, **kwargs)

    forward.__code__ = forward.__code__.replace()  # a new code object: its own cache
    return forward


def eager_networks(model: nn.Module) -> None:
    """Undo :func:`compile_networks`: every network it compiled runs its class's ``forward`` again (``fit`` with
    ``compile=False`` on a model an earlier ``fit(compile=True)`` compiled); a ``forward`` a user set is kept."""
    for child in model.children():
        if getattr(vars(child).get("forward"), "genzoo_compiled", False):
            del child.forward


def networks(model: nn.Module) -> list[nn.Module]:
    """The networks :func:`compile_networks` compiles: the top-level submodules that have parameters (none for the
    GMM, whose EM updates buffers).

    >>> import genzoo
    >>> len(networks(genzoo.build("gmm", data_shape=(2,)))), len(networks(genzoo.build("gan", data_shape=(2,))))
    (0, 2)
    """
    return [child for child in model.children() if any(True for _ in child.parameters())]


def compile_networks(model: nn.Module) -> None:
    """``torch.compile`` the ``forward`` of every top-level submodule that has parameters, in place (parameter
    names and checkpoints unchanged), each with its own graph cache (:func:`_own_forward`). The bound
    ``forward``, not ``Module.compile()``: that compiles the call machinery, through which dynamo does not trace
    an ``nn.Sequential``, so each of its layers became a graph of its own (recompiled per shape, until dynamo's
    limit) and the activations ran eagerly."""
    for child in networks(model):
        # not twice (a second fit), nor over a forward the user set on the instance; one that is the class's own, as
        # a compiled model pickled (torch.save) comes back, is no forward of the user's
        forward = vars(child).get("forward")
        if forward is None or getattr(forward, "__func__", None) is type(child).forward:
            # the class's function, compiled, bound to this module: a deepcopy binds it to the copy (whose own
            # weights it then uses), and pickling stores the method by name
            compiled = torch.compile(_own_forward(type(child)))
            compiled.genzoo_compiled = True  # what eager_networks takes off again
            child.forward = types.MethodType(compiled, child)
