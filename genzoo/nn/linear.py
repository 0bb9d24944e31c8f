"""A linear layer whose float32 CPU products run on oneDNN, on the CPUs where that is faster than the BLAS call.

``torch.nn.functional.linear`` on a CPU float32 tensor calls the BLAS torch was built with (MKL in
the PyTorch wheels). Which of MKL and oneDNN (the library torch already uses for convolutions) is
faster depends on the CPU's maker, and ``genzoo bench speed`` times both on each layer shape of
genzoo's models (BENCHMARKS.md):
- on 2 cores of an AMD EPYC with AVX-512, MKL's sgemm ran the forward products of a 784-D RealNVP's
  couplings at 140-165 GFLOP/s and oneDNN's at 185-200 GFLOP/s (whole training steps: RealNVP 1.09-1.16x,
  NICE 1.13x faster on oneDNN);
- on 2 cores of an Intel Xeon with AVX-512 and AMX, MKL was the faster on every shape (oneDNN 0.53-0.96x;
  whole training steps on oneDNN: VAE 0.79x, RealNVP 0.90x, DCGAN 0.98x).
So the default (:func:`onednn_default`) is oneDNN on an AMD CPU (``AuthenticAMD``) and ``F.linear`` on any
other; ``GENZOO_ONEDNN_LINEAR=1`` or ``0`` in the environment overrides it, and :func:`use_onednn` switches
it within a block. :class:`Linear` is ``nn.Linear`` with the same parameters, initialisation and checkpoint
names; where oneDNN is on, its forward sends a float32 CPU product to oneDNN through :class:`_OneDNNLinear`,
whose backward also runs its two products (the input's and the weight's gradients) on oneDNN. It does so only
where the layer is large enough to gain (``in_features * out_features >= MIN_SIZE``: below that, the extra
Python call costs more than the product saves) and takes ``F.linear`` everywhere else: other devices or
dtypes, an empty batch, autocast (bf16), ``torch.compile`` tracing, forward-mode AD, anything run under
a ``torch.func`` transform (``vmap``, ``grad``, ``jvp``, ``jacrev`` ...), whether it is over the
input or over the parameters (``functional_call``, ``stack_module_state`` ensembles), TorchScript
(``torch.jit.script``, and ``torch.jit.trace`` with the ONNX exporter built on it), ``torch.fx`` symbolic
tracing (``symbolic_trace`` and the tools on it: FX quantization, torchvision's feature extractor), a
torch without oneDNN, or the switch off. A traced or scripted graph holds ``aten::linear``.

Results agree with ``F.linear`` to float32 rounding (the two libraries sum in different orders), and
second derivatives (the WGAN-GP penalty) are taken through ordinary differentiable products.

>>> import torch
>>> layer = Linear(1024, 512)
>>> x = torch.randn(8, 1024)
>>> bool(torch.allclose(layer(x), torch.nn.functional.linear(x, layer.weight, layer.bias), atol=1e-4))
True
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
import threading

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd import forward_ad
from torch.fx import Proxy as _Proxy

MIN_SIZE = 2 ** 18  # in_features * out_features from which oneDNN pays, measured on 2 cores (BENCHMARKS.md)

_ON, _OFF = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def cpu_vendor() -> str | None:
    """The CPU maker's id, such as ``"GenuineIntel"`` or ``"AuthenticAMD"`` (``vendor_id`` in ``/proc/cpuinfo`` on
    Linux, else the end of :func:`platform.processor` on Windows), or None where neither says (macOS, ARM Linux;
    elsewhere than on Windows ``platform.processor`` runs ``uname -p``, which never names the maker)."""
    try:
        with open("/proc/cpuinfo", errors="replace") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip() or None
    except OSError:
        pass
    if sys.platform != "win32":
        return None
    found = [v for v in ("GenuineIntel", "AuthenticAMD") if v in platform.processor()]
    return found[0] if found else None


def onednn_default(setting: str | None = None, vendor: str | None = None) -> bool:
    """Whether :class:`Linear` layers take oneDNN outside any :func:`use_onednn` block: ``setting`` (by default
    ``GENZOO_ONEDNN_LINEAR`` from the environment) if it is one of 1/true/yes/on or 0/false/no/off, else (unset,
    empty or ``auto``) by measurement, oneDNN on an AMD CPU and ``F.linear`` on any other (the module docstring; a
    maker not measured, such as Hygon's Zen-based CPUs, ``HygonGenuine``, takes ``F.linear``).

    >>> onednn_default("0"), onednn_default("on"), onednn_default("auto", "AuthenticAMD"), onednn_default("", "GenuineIntel")
    (False, True, True, False)
    """
    setting = os.environ.get("GENZOO_ONEDNN_LINEAR", "") if setting is None else setting
    word = setting.strip().lower()
    if word in _ON or word in _OFF:
        return word in _ON
    if word not in ("", "auto"):
        raise ValueError(f"GENZOO_ONEDNN_LINEAR={setting!r}: use 1 (oneDNN), 0 (F.linear) or auto "
                         "(oneDNN on an AMD CPU, F.linear on others)")
    return (cpu_vendor() if vendor is None else vendor) == "AuthenticAMD"


def _environment_default() -> tuple[bool, str]:
    """The process default (:func:`onednn_default` of the environment) and why, in words: the setting that decided it,
    or the CPU's maker."""
    setting = os.environ.get("GENZOO_ONEDNN_LINEAR", "")
    maker = f"genzoo's default for this CPU's maker, {cpu_vendor() or 'unknown'}"
    try:
        on = onednn_default(setting)
    except ValueError as e:  # a mistyped setting: said once, and the measured default taken
        import warnings

        from ..errors import GenZooWarning

        warnings.warn(f"{e}; taking auto", GenZooWarning, stacklevel=2)
        return onednn_default("auto"), f"{maker}: GENZOO_ONEDNN_LINEAR={setting!r} is not 1, 0 or auto"
    return on, (maker if setting.strip().lower() in ("", "auto") else f"GENZOO_ONEDNN_LINEAR={setting.strip()}")


#: the process default: whether a thread outside any :func:`use_onednn` block takes oneDNN (:func:`onednn_default`),
#: and why (the setting or the CPU's maker), decided once as genzoo is imported
_enabled, _reason = _environment_default()


class _Switch(threading.local):
    enabled: bool | None = None  # this thread's use_onednn setting; None: the process default, _enabled


_switch = _Switch()


def _onednn_op():
    try:
        return torch.ops.mkldnn._linear_pointwise
    except (AttributeError, RuntimeError):
        return None


_OP = _onednn_op()
# torch.jit.is_tracing() without its is_scripting() test (always False in Python): a fifth of the cost, per call
_is_tracing = getattr(torch._C, "_is_tracing", torch.jit.is_tracing)


def onednn_available() -> bool:
    """Whether this torch has oneDNN's linear product and oneDNN is switched on in torch."""
    return _OP is not None and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled


def onednn_in_use() -> bool:
    """Whether large float32 CPU products outside any :func:`use_onednn` block run on oneDNN here: the process default
    is oneDNN (:func:`onednn_default`) and this torch can run it."""
    return _enabled and onednn_available()


@contextlib.contextmanager
def use_onednn(enabled: bool):
    """Within the block, :class:`Linear` layers use oneDNN (``True``) or ``F.linear`` (``False``).

    The setting is the calling thread's, as torch's grad mode is: blocks in other threads, overlapping or
    not, neither see nor change it, and a thread started inside the block gets the process default
    (:func:`onednn_default`). Blocks nest; each restores what its thread had before it."""
    before, _switch.enabled = _switch.enabled, bool(enabled)
    try:
        yield
    finally:
        _switch.enabled = before


def _product(a: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
    """a @ w.T + b on oneDNN; a (M, K), w (N, K), b (N,) -> (M, N). ``w`` may be a strided view (such as
    a transpose) at no cost; a non-contiguous ``a`` is copied first."""
    return _OP(a, w, b, "none", [], "")


class _OneDNNLinear(torch.autograd.Function):
    """y = x W^T + b with all three products (forward, dL/dx, dL/dW) on oneDNN."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _product(x, weight, bias)                                   # (M, N)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, weight = ctx.saved_tensors                                      # (M, K), (N, K)
        need_x, need_w, need_b = ctx.needs_input_grad
        if torch.is_grad_enabled():  # create_graph=True: products that autograd can differentiate again
            return (grad @ weight if need_x else None, grad.t() @ x if need_w else None,
                    grad.sum(0) if need_b and ctx.has_bias else None)
        grad = grad.contiguous()                                           # (M, N)
        grad_x = _product(grad, weight.t()) if need_x else None           # (M, K) = grad W
        grad_w = _product(grad.t(), x.t()) if need_w else None            # (N, K) = grad^T x
        grad_b = grad.sum(0) if need_b and ctx.has_bias else None         # (N,)
        return grad_x, grad_w, grad_b


def _transformed() -> bool:
    """Whether a torch.func transform (vmap, grad, jvp, jacrev ...) or forward-mode AD is active. Under a
    transform ``autograd.Function.apply`` refuses a Function without ``setup_context``, as
    :class:`_OneDNNLinear` is, whichever operand is wrapped (the input, or the weight and bias when the
    transform is over the parameters): this is the test it makes (torch/autograd/function.py). The
    Function has no forward-mode rule either. Both take ``F.linear``."""
    return torch._C._are_functorch_transforms_active() or forward_ad._current_level >= 0


def _eligible(x: Tensor, weight: Tensor) -> bool:
    if torch.compiler.is_compiling():  # first, so that dynamo does not trace the thread-local and torch._C tests below
        return False
    on = _switch.enabled
    if not (_enabled if on is None else on):
        return False
    # torch.jit.trace records aten ops, not the Function's; under torch.fx the operands are Proxies, whose
    # shapes cannot be compared (and would put Python control flow into the graph)
    if _is_tracing() or isinstance(x, _Proxy) or isinstance(weight, _Proxy):
        return False
    # x.numel() > 0: oneDNN makes no primitive for an empty batch's weight gradient (a zero inner size)
    return (weight.shape[0] * weight.shape[1] >= MIN_SIZE and x.dim() >= 2 and x.numel() > 0
            and x.dtype == torch.float32 and weight.dtype == torch.float32
            and x.device.type == "cpu" and weight.device.type == "cpu"
            and not torch.is_autocast_enabled("cpu") and onednn_available() and not _transformed())


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.linear`` on oneDNN where that is switched on and pays (see the module docstring), else ``F.linear`` itself."""
    if torch.jit.is_scripting():  # TorchScript compiles this branch alone: the rest is Python it cannot script
        return F.linear(x, weight, bias)
    if not _eligible(x, weight):
        return F.linear(x, weight, bias)
    lead = x.shape[:-1]
    y = _OneDNNLinear.apply(x.reshape(-1, x.shape[-1]).contiguous(), weight.contiguous(), bias)  # (M, N)
    return y.reshape(*lead, weight.shape[0])


class Linear(nn.Linear):
    """``nn.Linear`` whose large float32 CPU products run on oneDNN where it is on; same parameters and state_dict."""

    def forward(self, x: Tensor) -> Tensor:
        return linear(x, self.weight, self.bias)
