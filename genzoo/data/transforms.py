"""Per-batch transforms of image intensities: dynamic binarization, uniform dequantization, logit.

Raw images are stored as ``x = v / (levels - 1)`` with integer levels ``v in {0 .. levels-1}``.

* **Dynamic binarization** (Salakhutdinov & Murray 2008; Burda et al. 2016, "IWAE"): every
  time a batch is taken each pixel is drawn afresh as ``Bernoulli(x)``.
* **Uniform dequantization** (Theis, van den Oord & Bethge 2016, "A note on the evaluation of
  generative models"): ``x = (v + u) / levels`` with ``u ~ U[0, 1)``. A continuous density on
  the dequantized data lower-bounds the discrete log-likelihood of ``v`` (up to ``log levels``
  per dimension), which is what bits/dim reports.
* **Logit transform** (Dinh et al. 2017, "RealNVP", section 4.1): ``y = logit(a + (1 - 2a) x)``
  maps ``[0, 1)`` to the real line; its log-Jacobian must be added to a flow's log-likelihood.

>>> import torch
>>> g = torch.Generator().manual_seed(0)
>>> x = torch.tensor([[0.0, 1.0, 128 / 255]])                    # (1, 3) on the 256-level grid
>>> d = dequantize(x, 256, generator=g)
>>> torch.floor(d * 256).long().tolist()                          # back to the raw levels
[[0, 255, 128]]
>>> binarize(torch.tensor([0.0, 1.0]), generator=g).tolist()
[0.0, 1.0]
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..errors import DataError

__all__ = ["binarize", "dequantize", "to_levels", "logit_transform", "inverse_logit_transform"]


def _check_generator(x: Tensor, generator: torch.Generator | None, what: str) -> None:
    """A DataError where ``generator`` lives on another device than ``x``: torch draws a tensor's noise from a
    generator of its own device only (a bare RuntimeError, or binarize's "[0, 1]" message, before)."""
    if generator is None:
        return
    g, d = generator.device, x.device
    if g.type != d.type or (g.index is not None and d.index is not None and g.index != d.index):
        raise DataError(f"{what}: a generator on {g} for a tensor on {d}: pass a generator on the tensor's device "
                        "(torch.Generator(device=x.device)), or move the tensor")


def binarize(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Dynamic binarization: a fresh ``Bernoulli(x)`` draw of every entry, on ``x``'s device (x must lie in [0, 1];
    integer or bool 0/1 come back as float32). ``generator``, where given, must be on ``x``'s device."""
    _check_generator(x, generator, "binarize")
    x = x if x.is_floating_point() else x.float()  # torch's bernoulli of ints: "not implemented for 'Long'"
    try:
        return torch.bernoulli(x, generator=generator)  # same shape as x, values {0., 1.}
    except RuntimeError as e:  # torch checks 0 <= x <= 1 itself
        raise DataError(f"binarize takes probabilities in [0, 1]: {str(e).splitlines()[0]}") from None


def _check_level_count(levels: int) -> None:
    """A DataError unless ``levels`` is an integer >= 2."""
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2:
        raise DataError(f"levels must be an integer >= 2, got {levels!r}")


def _check_levels(x: Tensor, levels: int) -> None:
    """A DataError unless ``levels`` is an integer >= 2 and ``x`` holds floats ``v / (levels - 1)``, not raw ``v``,
    within half a level of [0, 1] (where rounding reaches an end level: raw levels 0..255 held as floats were
    clamped, all but 0 to the top level, without a word). NaN is let through."""
    _check_level_count(levels)
    if not x.is_floating_point():
        raise DataError(f"x must hold floats v / (levels - 1) in [0, 1], got {x.dtype}: divide raw levels v by "
                        f"{levels - 1} first")
    if not x.numel():
        return
    lo, hi = (float(t) for t in torch.aminmax(x.detach()))  # one pass, one host sync (dequantize has one anyway)
    half = 0.5 / (levels - 1)
    if lo < -half or hi > 1 + half:
        hint = f": divide raw levels v by {levels - 1} first" if hi > 1 + half else ""
        raise DataError(f"x must hold v / (levels - 1) in [0, 1], got values in [{lo:g}, {hi:g}]{hint}")


def to_levels(x: Tensor, levels: int) -> Tensor:
    """The integer levels ``v = round(x * (levels - 1))`` of data stored as ``v / (levels - 1)`` (whole numbers in
    ``x``'s float dtype, float32 for half-precision ``x``, clamped to ``0 .. levels - 1``).

    >>> to_levels(torch.tensor([0.0, 0.5, 1.0, 0.26]), 3).tolist()      # 0.26 * 2 = 0.52 rounds to 1
    [0.0, 1.0, 2.0, 1.0]
    >>> torch.equal(to_levels(torch.arange(256) / 255, 256), torch.arange(256.0))
    True
    """
    _check_levels(x, levels)
    return _to_levels(x, levels)


def _to_levels(x: Tensor, levels: int) -> Tensor:
    """:func:`to_levels` with its arguments already checked (on dequantize's per-batch path)."""
    # float16 / bfloat16 in float32: float16 holds levels only up to 65,504 (the clamp to 65,535 raised a bare torch
    # RuntimeError), bfloat16 whole numbers only up to 256
    x = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    return torch.round(x * (levels - 1)).clamp_(0, levels - 1)


def requantize(x: Tensor, levels: int) -> Tensor:
    """Values on the dequantized scale back on the data's levels: ``min(floor(x levels), levels - 1) / (levels -
    1)``, the inverse of :func:`dequantize`. Samples of a model of dequantized data, ``(v + u) / levels``, are
    compared with the stored images ``v / (levels - 1)`` this way (on 17 levels the shift between the two scales
    alone raised a perfect sampler's FID from 2.35 to 3.32). Values beyond [0, 1] go to the end levels; NaN and
    infinite ones stay as they are (for a picture to mark them). ``levels`` must be an integer >= 2.

    >>> v = torch.tensor([0.0, 1.0, 2.0]) / 2
    >>> torch.equal(requantize(dequantize(v, 3, torch.Generator().manual_seed(0)), 3), v)
    True
    >>> requantize(torch.tensor([-0.5, 1.5, float("inf")]), 3)
    tensor([0., 1., inf])
    """
    _check_level_count(levels)  # (levels = 1 divided by 0: NaN everywhere)
    return torch.where(torch.isfinite(x), (x * levels).floor().clamp(0, levels - 1) / (levels - 1), x)


def level_centres(x: Tensor, levels: int) -> Tensor:
    """The middle of each level's dequantization interval, ``(v + 1/2) / levels``, of ``x = v / (levels - 1)``: where a
    model of dequantized data (:func:`dequantize`) reads a stored image best. The stored values themselves reach 0 and
    1, which such a model never saw (RealNVP's logit sends them to +-13.8 and its latents far off the prior).
    Half-precision ``x`` (float16, bfloat16) is computed, and returned, in float32.

    >>> level_centres(torch.tensor([0.0, 0.5, 1.0]), 3) * 6          # (2 v + 1) / 6 for v = 0, 1, 2
    tensor([1., 3., 5.])
    >>> v = torch.tensor([0.0, 1.0, 2.0]) / 2
    >>> torch.equal(requantize(level_centres(v, 3), 3), v)           # each on its own level
    True
    """
    _check_levels(x, levels)
    return (_to_levels(x, levels) + 0.5) / levels


def dequantize(x: Tensor, levels: int, generator: torch.Generator | None = None) -> Tensor:
    """Uniform dequantization ``(v + u) / levels``, ``u ~ U[0, 1)``, of ``x = v / (levels - 1)``.

    The result lies in ``[0, 1)`` and ``floor(result * levels) == v`` holds exactly: the few
    values that land within 1e-3 of a level boundary (where float32 rounding could push them
    across) are recomputed in float64 and nudged back inside by one ulp. Half-precision ``x``
    (float16, bfloat16) is dequantized, and returned, in float32: bfloat16's 8-bit mantissa
    rounded ``v + u`` back to ``v`` for every level from 128 up. The noise is drawn on ``x``'s
    device, from ``generator`` where given (which must be on that device).

    >>> dequantize(torch.full((2, 2), 1.0), 2, torch.Generator().manual_seed(1)).lt(1).all().item()
    True
    """
    _check_levels(x, levels)
    _check_generator(x, generator, "dequantize")
    return _dequantize(x, levels, generator)


def _dequantize(x: Tensor, levels: int, generator: torch.Generator | None = None) -> Tensor:
    """:func:`dequantize` of ``x`` known to be floats on the levels' range (a :class:`~genzoo.data.Dataset`'s,
    checked when it was built): without the pass over ``x`` that checks it, on the per-batch path."""
    x = x.detach()  # not differentiable (its levels are rounded), and torch's out= below refuses a graph
    dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    buf = _to_levels(x.to(dtype), levels)  # same shape as x: the levels v, as floats
    # on x's device: drawn on the CPU, the noise of a CUDA tensor met buf there in a bare torch RuntimeError
    y = torch.rand(x.shape, generator=generator, dtype=dtype, device=x.device).add_(buf).div_(levels)  # (v+u) / L
    frac = torch.mul(y, levels, out=buf).frac_()  # buffers reused in place: this runs on whole datasets
    near = frac.sub_(0.5).abs_() > 0.5 - 1e-3  # within 1e-3 of a boundary: rounding may have crossed it
    if bool(near.any()):
        vn, yn = _to_levels(x[near].double(), levels), y[near]
        scaled = yn.double() * levels  # exact: float32 mantissa times a small integer
        yn = torch.where(scaled >= vn + 1, torch.nextafter(yn, torch.zeros_like(yn)), yn)
        yn = torch.where(scaled < vn, torch.nextafter(yn, torch.ones_like(yn)), yn)
        y[near] = yn
    return y


def logit_transform(x: Tensor, alpha: float = 1e-6) -> tuple[Tensor, Tensor]:
    """``y = logit(alpha + (1 - 2 alpha) x)`` and its log-Jacobian per example, shape (B,); x in [0, 1].

    RealNVP uses ``alpha = 0.05`` on CIFAR-10; ``1e-6`` suits MNIST (whose many pixels at 0 and 1 a flow
    after alpha = 0.05 puts partly beyond the map's range, so its density on [0, 1]^D then lacks that mass). Add the returned
    log-determinant to the log-likelihood of ``y`` to get the log-likelihood of ``x``. ``alpha`` must be positive
    (at 0 a pixel of exactly 0 or 1 maps to -inf or inf, as :class:`~genzoo.models.flows.transforms.Logit` says).
    Half-precision ``x`` (float16, bfloat16) is computed, and returned, in float32: there ``1 - 2 alpha`` rounds to
    1, and x = 1 mapped to inf. ``1 - p`` is computed as ``alpha + (1 - 2 alpha)(1 - x)``, exact near x = 1, where
    ``log1p(-p)`` of float32 ``p = 1 - 1e-6`` was 3% off (0.013 nats per pixel at x = 1): the map is odd about 1/2.

    >>> y, ld = logit_transform(torch.full((1, 3), 0.5))
    >>> y.abs().max().item() < 1e-6, round(ld.item(), 4)    # log 4 per dimension at x = 0.5
    (True, 4.1589)
    >>> (logit_transform(torch.ones(1, 1))[0] + logit_transform(torch.zeros(1, 1))[0]).abs().item() < 1e-5
    True
    """
    if not 0 < alpha < 0.5:
        raise DataError(f"alpha must lie in (0, 0.5), got {alpha}")
    if x.dim() < 2:
        raise DataError(f"logit_transform takes a batch (B, ...), got shape {tuple(x.shape)}")
    x = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    p = alpha + (1 - 2 * alpha) * x  # (B, ...)
    q = alpha + (1 - 2 * alpha) * (1 - x)  # (B, ...) 1 - p, without the rounding of p near 1
    log_p, log_q = torch.log(p), torch.log(q)
    y = log_p - log_q  # (B, ...) logit(p) (Dinh et al. 2017, Section 4.1)
    log_det = math.log1p(-2 * alpha) - log_p - log_q  # (B, ...) log dy/dx = log(1 - 2 alpha) - log p - log(1 - p)
    return y, log_det.flatten(1).sum(1)  # (B, ...), (B,)


def inverse_logit_transform(y: Tensor, alpha: float = 1e-6) -> Tensor:
    """The inverse of :func:`logit_transform`: ``(sigmoid(y) - alpha) / (1 - 2 alpha)``, clamped to [0, 1].

    >>> x = torch.tensor([[0.1, 0.9]])
    >>> torch.allclose(inverse_logit_transform(logit_transform(x)[0]), x)
    True
    """
    return ((torch.sigmoid(y) - alpha) / (1 - 2 * alpha)).clamp(0.0, 1.0)
