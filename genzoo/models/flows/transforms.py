"""Invertible transforms with tractable Jacobians: the pieces every flow is built from.

Every :class:`Transform` maps a batch ``x`` (B, *event) to ``(y, log|det dy/dx|)`` with the
log-determinant per example, shape (B,), and has an exact ``inverse(y) -> (x, log|det dx/dy|)``.
:class:`Compose` chains them and sums the log-determinants (the nflows convention). Flow models
apply them in the *normalizing* direction, data to latent, so that
``log p(x) = log p_base(f(x)) + log|det df/dx|`` (Dinh et al. 2014, eq. 1).

>>> import torch
>>> t = Compose(DiagonalScaling((3,)), Permutation(3, seed=0), Planar(3))
>>> x = torch.randn(5, 3)
>>> y, ld = t(x)
>>> x2, ld_inv = t.inverse(y)
>>> bool(torch.allclose(x, x2, atol=1e-5)), bool(torch.allclose(ld, -ld_inv, atol=1e-5))
(True, True)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...data.transforms import inverse_logit_transform, logit_transform
from ...errors import ConfigError

__all__ = ["Transform", "Compose", "Planar", "planar", "planar_inverse", "constrain_u", "Coupling",
           "DiagonalScaling", "ActNorm", "BatchNorm", "Swap", "Permutation", "LULinear", "Squeeze", "Flatten", "Logit"]


def _build_device() -> torch.device:
    """The device a build puts new tensors on (a ``with torch.device(...)`` block's; the meta device in
    :func:`genzoo.load`'s size check, whose tensors hold no values to compute from)."""
    return torch.empty(0).device


def _to_build_device(t: Tensor) -> Tensor:
    """``t``, computed on the CPU from values (a mask's indices, a permutation, a rotation), on the
    :func:`_build_device`. A tensor given on another device stays there."""
    return t.to(_build_device()) if t.device.type == "cpu" else t


def _sum_event(t: Tensor) -> Tensor:
    """Sum every dimension but the batch one: (B, ...) -> (B,)."""
    return t.flatten(1).sum(1)


class Transform(nn.Module):
    """Base class: ``forward(x) -> (y, log|det J|)``, ``inverse(y) -> (x, log|det J^-1|)``.

    A subclass implements both directions, each returning a log-determinant per example (B,):

    >>> class Shift(Transform):                  # y = x + 1: unit Jacobian
    ...     def forward(self, x): return x + 1, x.new_zeros(x.shape[0])
    ...     def inverse(self, y): return y - 1, y.new_zeros(y.shape[0])
    >>> y, ld = Compose(Shift(), Shift())(torch.zeros(2, 3))
    >>> y.tolist(), ld.shape
    ([[2.0, 2.0, 2.0], [2.0, 2.0, 2.0]], torch.Size([2]))
    """

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError


class Compose(Transform):
    """Transforms applied in order; log-determinants add (chain rule)."""

    def __init__(self, *transforms: Transform):
        super().__init__()
        self.transforms = nn.ModuleList(transforms)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        total = x.new_zeros(x.shape[0])
        for t in self.transforms:
            x, ld = t(x)
            total = total + ld
        return x, total

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        total = y.new_zeros(y.shape[0])
        for t in reversed(self.transforms):
            y, ld = t.inverse(y)
            total = total + ld
        return y, total


# -- planar flows (Rezende & Mohamed 2015) ---------------------------------------------------------
def constrain_u(u: Tensor, w: Tensor, shift: float | Tensor = 0.0) -> Tensor:
    """Rezende & Mohamed 2015, Appendix A.1: u_hat = u + (m(w'u) - w'u) w / |w|^2, m(a) = -1 + softplus(a + shift),
    so that w'u_hat > -1 and ``z + u_hat tanh(w'z + b)`` is invertible. u, w: (..., D). The paper's m has
    ``shift`` 0, so that u = 0 gives w'u_hat = softplus(0) - 1 = -0.31, a contraction along w; with ``shift``
    log(e - 1) (the :class:`Planar` layers') m(0) = 0, and small u start near the identity. Either m is
    increasing and above -1.

    The rounding of ``u + (m - w'u) w / |w|^2`` puts w'u_hat within about eps (|w| |u| + |m - w'u|) of m
    (eps: the dtype's), which can be below -1 (a non-invertible map) where m is near -1: m keeps a margin above
    -1 of 1e-4, or 16 times that rounding where it is larger (|w| |u| in the hundreds in float32). The margin
    changes m only where softplus(a) < 1e-4 (a < -9.2) or where the rounding is that large.

    >>> w, u = torch.tensor([1.0, 0.0]), torch.tensor([-5.0, 2.0])     # w'u = -5: not invertible as it is
    >>> u_hat = constrain_u(u, w)                                       # only the part along w moves
    >>> round((w @ u_hat).item(), 4), round(F.softplus(torch.tensor(-5.0)).item() - 1, 4), u_hat[1].item()
    (-0.9933, -0.9933, 2.0)
    >>> constrain_u(torch.zeros(2), w, shift=math.log(math.e - 1)).tolist()   # m(0) = 0: u = 0 stays 0
    [0.0, 0.0]
    """
    wu = (w * u).sum(-1, keepdim=True)                            # (..., 1)
    m = F.softplus(wu + shift) - 1                                # (..., 1)
    w_norm = w.norm(dim=-1, keepdim=True).clamp_min(1e-6)         # (..., 1)
    rounding = torch.finfo(u.dtype).eps * (w_norm * u.norm(dim=-1, keepdim=True) + (m - wu).abs()).detach()
    m = torch.maximum(m, -1 + torch.clamp(16 * rounding, min=1e-4))  # (..., 1)
    return u + (m - wu) * w / w_norm.pow(2)


def planar(z: Tensor, u: Tensor, w: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """One planar map ``f(z) = z + u tanh(w'z + b)`` and ``log|det df/dz| = log|1 + u'psi(z)|``,
    ``psi(z) = (1 - tanh^2(w'z + b)) w`` (Rezende & Mohamed 2015, eqs. 10-12).

    z: (B, D); u, w: (D,) or (B, D) (per-example parameters from an encoder); b: () or (B,).
    u must already satisfy w'u >= -1 (see :func:`constrain_u`).
    """
    a = (z * w).sum(-1) + b                                       # (B,)
    h = torch.tanh(a)                                             # (B,)
    y = z + u * h.unsqueeze(-1)                                   # (B, D)
    det = 1 + (1 - h.pow(2)) * (w * u).sum(-1)                    # (B,): 1 + u' psi(z), > 0 when w'u > -1
    return y, torch.log(det.abs().clamp_min(1e-12))


def planar_inverse(y: Tensor, u: Tensor, w: Tensor, b: Tensor, iters: int = 60) -> Tensor:
    """Solve ``y = z + u tanh(w'z + b)`` for z. Along w the map is the scalar, increasing
    ``g(a) = a + (w'u) tanh(a + b)`` of ``a = w'z``, with ``a`` within ``|w'u|`` of ``w'y``: bisection
    in float64 (without gradients) finds it to machine precision, then ``z = y - u tanh(a + b)``. One Newton step
    from that root, ``a - (g(a) - w'y) / g'(a)``, taken in the graph, makes z differentiable in y, u, w and b: its
    value is the root's (to float64 rounding), its gradient the implicit function's.

    >>> g = torch.Generator().manual_seed(0)
    >>> w, u, b = torch.randn(3, generator=g), torch.randn(3, generator=g), torch.tensor(0.5)
    >>> u = constrain_u(u, w)                                           # w'u > -1: invertible
    >>> z = torch.randn(8, 3, generator=g)
    >>> y, _ = planar(z, u, w, b)
    >>> (planar_inverse(y, u, w, b) - z).abs().max().item() < 1e-5
    True
    """
    yd, ud, wd, bd = y.double(), u.double(), w.double(), torch.as_tensor(b).double()
    wy, wu = (yd * wd).sum(-1), (wd * ud).sum(-1).expand(y.shape[0])  # (B,) each
    with torch.no_grad():
        lo, hi = wy - wu.abs() - 1e-6, wy + wu.abs() + 1e-6             # (B,) brackets
        for _ in range(iters):
            mid = 0.5 * (lo + hi)
            above = mid + wu * torch.tanh(mid + bd) > wy
            hi, lo = torch.where(above, mid, hi), torch.where(above, lo, mid)
        a = 0.5 * (lo + hi)                                              # (B,)
    h = torch.tanh(a + bd)
    a = a - (a + wu * h - wy) / (1 + wu * (1 - h.pow(2)))                # (B,) the Newton step: slope > 0 for w'u > -1
    return (yd - ud * torch.tanh(a + bd).unsqueeze(-1)).to(y.dtype)


class Planar(Transform):
    """A planar flow layer with its own parameters on vectors of size ``dim``.

    >>> t = Planar(2)
    >>> z = torch.randn(4, 2)
    >>> bool(torch.allclose(t.inverse(t(z)[0])[0], z, atol=1e-5))
    True
    """

    #: weights written before ``m_shift`` existed were trained with the paper's m (shift 0): they load with it
    state_defaults = {"m_shift": torch.zeros}

    def __init__(self, dim: int, init_scale: float = 0.1):
        super().__init__()
        if _build_device().type == "meta":  # genzoo.io's size check: the shapes (meta randn and * would import
            u, w = torch.empty(dim), torch.empty(dim)  # torch._dynamo, 2-3 s a load)
        else:
            u, w = torch.randn(dim) * init_scale, torch.randn(dim) * init_scale
        self.u, self.w = nn.Parameter(u), nn.Parameter(w)
        self.b = nn.Parameter(torch.zeros(()))
        # m(0) = 0 (constrain_u): the layer starts near the identity. With the paper's m, w'u_hat = -0.31 at u ~ 0:
        # every layer started contracting along w, 32 layers at a log-det of about -11 nats, with early loss spikes
        self.register_buffer("m_shift", torch.tensor(math.log(math.e - 1)))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return planar(x, constrain_u(self.u, self.w, self.m_shift), self.w, self.b)

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        x = planar_inverse(y, constrain_u(self.u, self.w, self.m_shift), self.w, self.b)
        return x, -self.forward(x)[1]


# -- coupling layers (NICE, RealNVP) ----------------------------------------------------------------
class Coupling(Transform):
    """``y_A = x_A``, ``y_B = x_B * exp(s(x_A)) + t(x_A)``: affine coupling (Dinh et al. 2016, eq. 4-5), or
    ``y_B = x_B + t(x_A)`` with ``additive=True`` (Dinh et al. 2014, eq. 2: unit Jacobian).

    ``mask`` (event shape, bool) is True on the conditioning part A. On vectors (1-D events) the net
    sees only ``x_A`` (B, |A|) and returns (B, k |B|), k = 1 (additive) or 2 (affine), so no weights are
    spent on masked zeros; on images the net sees ``x * mask`` (B, C, H, W) and returns (B, k C, H, W),
    used where the mask is False (checkerboard and channel masks, Dinh et al. 2016, Section 3.4).
    The log-scale is bounded, ``s = scale * tanh(raw / scale)`` with a learned per-dimension ``scale``
    initialised at 1, which keeps early training stable.

    ``shift_scale=True`` (additive couplings on vectors) multiplies the shift by a fixed per-dimension
    buffer ``shift_scale`` (B-part, ones until a data-dependent initialisation sets it; see
    :meth:`genzoo.models.flows.nice.NICE.setup`): the same family of maps, ``t = shift_scale * net(x_A)``,
    with the net's outputs in other units. Weights saved without the buffer load with it at ones.

    >>> _ = torch.manual_seed(0)
    >>> c = Coupling(torch.tensor([True, False, False]), nn.Linear(1, 4))   # x_0 gives s, t of x_1 and x_2
    >>> x = torch.randn(5, 3)
    >>> (y, ld), (x2, ld_inv) = c(x), c.inverse(c(x)[0])
    >>> torch.equal(y[:, 0], x[:, 0]), (x2 - x).abs().max().item() < 1e-5, torch.allclose(ld_inv, -ld)
    (True, True, True)
    >>> J = torch.autograd.functional.jacobian(lambda v: c(v[None])[0][0], x[0])   # (3, 3)
    >>> abs(torch.linalg.slogdet(J)[1] - ld[0]).item() < 1e-5                    # log|det| = sum of s
    True
    """

    def __init__(self, mask: Tensor, net: nn.Module, additive: bool = False, shift_scale: bool = False):
        super().__init__()
        mask = mask.bool()
        self.additive = additive
        self.vector = mask.dim() == 1
        self.net = net
        self.register_buffer("mask", _to_build_device(mask))  # (its indices computed from the values given)
        if shift_scale and not (additive and self.vector):
            raise ValueError("shift_scale is for additive couplings on vectors")
        self.state_defaults = {"shift_scale": torch.ones} if shift_scale else {}  # filled in by io.load_state
        if self.vector:
            idx_a, idx_b = mask.nonzero().squeeze(1), (~mask).nonzero().squeeze(1)
            # a mask that is a prefix (A = the first |A| features) needs no gather: slices and a cat
            self.prefix = int(idx_a.numel()) if bool(mask[:idx_a.numel()].all()) else 0
            self.register_buffer("idx_a", _to_build_device(idx_a), persistent=False)
            self.register_buffer("idx_b", _to_build_device(idx_b), persistent=False)
            self.register_buffer("order", _to_build_device(torch.argsort(torch.cat([idx_a, idx_b]))), persistent=False)
            n_out = idx_b.numel()
            self.log_scale_bound = nn.Parameter(torch.zeros(n_out)) if not additive else None
            self.register_buffer("shift_scale", torch.ones(n_out) if shift_scale else None)  # (|B|,) or None
        else:
            self.log_scale_bound = nn.Parameter(torch.zeros(mask.shape[0], 1, 1)) if not additive else None
            self.shift_scale = None

    def _params(self, x: Tensor) -> tuple[Tensor | None, Tensor, Tensor | None, Tensor]:
        """(x_A, x_B, s or None, t) from the conditioning part; shapes (B, |A|) and (B, |B|) on vectors;
        on images x_A is None and the rest (B, C, H, W)."""
        if self.vector:
            if self.prefix:  # two views with one backward (a cat), where slices would each zero-fill a (B, D)
                xa, xb = x.split([self.prefix, x.shape[1] - self.prefix], 1)  # (B, |A|), (B, |B|)
            else:
                # index_select, not x[:, idx]: on the CPU about 4x faster forward and backward, the same numbers
                xa, xb = x.index_select(1, self.idx_a), x.index_select(1, self.idx_b)  # (B, |A|), (B, |B|)
            h = self.net(xa)                                             # (B, k |B|)
        else:
            m = self.mask.to(x.dtype)
            xa, xb = None, x
            h = self.net(x * m)                                          # (B, k C, H, W)
        h = h.to(x.dtype)  # under bf16 autocast: s, t and the log-det in fp32
        if self.additive:
            return xa, xb, None, h if self.shift_scale is None else h * self.shift_scale  # (B, |B|)
        raw, t = h.chunk(2, dim=1)
        bound = self.log_scale_bound.exp()
        s = bound * torch.tanh(raw / bound)
        return xa, xb, s, t

    def _merge(self, x: Tensor, xa: Tensor | None, yb: Tensor) -> Tensor:
        if self.vector:
            if self.prefix:
                return torch.cat([xa, yb], 1)                            # (B, D)
            return torch.cat([xa, yb], 1).index_select(1, self.order)    # (B, D)
        return torch.where(self.mask, x, yb)                              # (B, C, H, W)

    def _free(self, s: Tensor) -> Tensor:
        """The log-scale on the transformed part only (images: zero where the mask is True)."""
        return s if self.vector else s.masked_fill(self.mask, 0.0)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        xa, xb, s, t = self._params(x)
        if s is None:
            return self._merge(x, xa, xb + t), x.new_zeros(x.shape[0])
        s = self._free(s)
        return self._merge(x, xa, xb * s.exp() + t), _sum_event(s)

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        ya, yb, s, t = self._params(y)  # y_A = x_A, so the parameters are the same
        if s is None:
            return self._merge(y, ya, yb - t), y.new_zeros(y.shape[0])
        s = self._free(s)
        return self._merge(y, ya, (yb - t) * (-s).exp()), -_sum_event(s)


# -- element-wise and volume-preserving layers ----------------------------------------------------
class DiagonalScaling(Transform):
    """``y = x * exp(s)``, one learned ``s`` per dimension: NICE's final scaling layer (Dinh et al. 2014,
    Section 3.3); log|det| = sum(s)."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(shape))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x * self.log_scale.exp(), self.log_scale.sum().expand(x.shape[0])

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        return y * (-self.log_scale).exp(), (-self.log_scale.sum()).expand(y.shape[0])


def _stat_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Per-feature statistics for vectors (D,), per-channel for images (C, 1, 1)."""
    return (shape[0],) if len(shape) == 1 else (shape[0],) + (1,) * (len(shape) - 1)


def _reduce_dims(x: Tensor) -> list[int]:
    return [0] if x.dim() == 2 else [0] + list(range(2, x.dim()))


class ActNorm(Transform):
    """Activation normalisation (Kingma & Dhariwal 2018, Glow, Section 3.1): ``y = (x - loc) * exp(-log_scale)``
    per channel, initialised from the first batch it sees so that y has zero mean and unit variance (a channel
    constant in that batch is centred and keeps the scale 1).

    >>> _ = torch.manual_seed(0)
    >>> a, x = ActNorm((2,)), torch.randn(100, 2) * 3 + 1
    >>> y, ld = a(x)                                        # training mode: loc, log_scale from this batch
    >>> y.mean(0).abs().max().item() < 1e-5, (y.std(0) - 1).abs().max().item() < 1e-5
    (True, True)
    >>> torch.allclose(ld, -x.std(0).log().sum().expand(100)), (a.inverse(y)[0] - x).abs().max().item() < 1e-5
    (True, True)
    """

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(_stat_shape(shape)))
        self.log_scale = nn.Parameter(torch.zeros(_stat_shape(shape)))
        self.register_buffer("initialized", torch.tensor(False))
        self.per_stat = math.prod(shape[1:])  # pixels per channel (1 for vectors)
        self._ready = False  # the buffer's value once it is True, a Python bool: no host sync (or graph break) per step

    def reset(self) -> None:
        """Initialise again from the next training batch."""
        self.initialized.fill_(False)
        self._ready = False

    def _load_from_state_dict(self, *args, **kwargs):  # trust a loaded flag at once: a resumed compiled run would
        super()._load_from_state_dict(*args, **kwargs)   # otherwise read the tensor in its graph (a break per layer)
        self._ready = bool(self.initialized)

    @torch.no_grad()
    def _init(self, x: Tensor) -> None:
        dims = _reduce_dims(x)
        if x.numel() // x.shape[1] < 2 or not bool(torch.isfinite(x).all()):  # no spread, or NaN: wait for a
            return                                                              # real batch
        std = x.std(dims)
        self.loc.copy_(x.mean(dims).reshape(self.loc.shape))
        # a channel of no spread keeps the scale 1: 1e6 there compounded over the ActNorms a constant feature passes
        # (still 0 after each), 1e30 after five, which the first steps' updates overflowed
        self.log_scale.copy_(torch.where(std > 0, std.clamp_min(1e-6).log(), 0.0).reshape(self.log_scale.shape))
        self.initialized.fill_(True)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.training and not self._ready:  # read the buffer (a checkpoint may have set it) until it is True
            if not bool(self.initialized):
                self._init(x)
            self._ready = bool(self.initialized)
        ld = -self.log_scale.sum() * self.per_stat
        return (x - self.loc) * (-self.log_scale).exp(), ld.expand(x.shape[0])

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        ld = self.log_scale.sum() * self.per_stat
        return y * self.log_scale.exp() + self.loc, ld.expand(y.shape[0])


class BatchNorm(Transform):
    """Batch normalisation as a transform (Dinh et al. 2016, Section 3.7): ``y = (x - mu) / sqrt(var + eps)
    * exp(log_gamma) + beta`` with batch statistics in training and running averages in eval;
    log|det| counts ``log_gamma - 0.5 log(var + eps)`` per pixel.

    >>> _ = torch.manual_seed(0)
    >>> bn, x = BatchNorm((2,)), torch.randn(200, 2) * 2
    >>> y, ld = bn(x)                                       # training: the batch's statistics
    >>> y.mean(0).abs().max().item() < 1e-5, torch.allclose(ld[0], -0.5 * (x.var(0, unbiased=False) + 1e-5).log().sum())
    (True, True)
    >>> bn.inverse(y)
    Traceback (most recent call last):
    ...
    genzoo.errors.ConfigError: a batch-norm flow inverts exactly only in eval mode: call model.eval() first (sample() does)
    >>> y, ld = bn.eval()(x)                                # eval: the running averages, exactly invertible
    >>> (bn.inverse(y)[0] - x).abs().max().item() < 1e-5, torch.allclose(bn.inverse(y)[1], -ld)
    (True, True)
    """

    def __init__(self, shape: tuple[int, ...], momentum: float = 0.05, eps: float = 1e-5):
        super().__init__()
        stat = _stat_shape(shape)
        self.log_gamma = nn.Parameter(torch.zeros(stat))
        self.beta = nn.Parameter(torch.zeros(stat))
        self.register_buffer("running_mean", torch.zeros(stat))
        self.register_buffer("running_var", torch.ones(stat))
        self.momentum, self.eps = momentum, eps
        self.per_stat = math.prod(shape[1:])  # pixels per channel (1 for vectors)

    def _stats(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if not self.training:
            return self.running_mean, self.running_var
        dims = _reduce_dims(x)
        mean = x.mean(dims).reshape(self.running_mean.shape)
        var = x.var(dims, unbiased=False).reshape(self.running_var.shape)
        with torch.no_grad():
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(var, self.momentum)
        return mean, var

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mean, var = self._stats(x)
        y = (x - mean) * torch.rsqrt(var + self.eps) * self.log_gamma.exp() + self.beta
        ld = (self.log_gamma - 0.5 * torch.log(var + self.eps)).sum() * self.per_stat
        return y, ld.expand(x.shape[0])

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        if self.training:  # forward normalises by the batch's statistics: no inverse of that but in eval mode
            raise ConfigError("a batch-norm flow inverts exactly only in eval mode: call model.eval() first "
                              "(sample() does)")
        mean, var = self.running_mean, self.running_var  # sampling uses the running statistics
        x = (y - self.beta) * (-self.log_gamma).exp() * torch.sqrt(var + self.eps) + mean
        ld = -(self.log_gamma - 0.5 * torch.log(var + self.eps)).sum() * self.per_stat
        return x, ld.expand(y.shape[0])


class Swap(Transform):
    """Exchange the first ``k`` features and the rest: ``y = (x[k:], x[:k])``, a cyclic shift (volume-preserving).
    After a coupling in which the first half conditions, the transformed half conditions the next one (the
    "swap" between couplings of normflows, and in 2-D the same as a reversal).

    >>> import torch
    >>> Swap(4, 2)(torch.arange(4.0)[None])[0]
    tensor([[2., 3., 0., 1.]])
    """

    def __init__(self, d: int, k: int):
        super().__init__()
        self.k = k

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return torch.roll(x, -self.k, dims=1), x.new_zeros(x.shape[0])     # (B, D): a copy, no gather

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        return torch.roll(y, self.k, dims=1), y.new_zeros(y.shape[0])


class Permutation(Transform):
    """A fixed permutation of features (vectors) or channels (images): ``perm`` (output j is input ``perm[j]``),
    or random from ``seed``, or reversed (neither); volume-preserving."""

    def __init__(self, n: int, seed: int | None = None, perm: Tensor | None = None):
        super().__init__()
        if perm is None:  # on the CPU, where its seeded generator draws (then on the build's device)
            perm = (torch.arange(n - 1, -1, -1, device="cpu") if seed is None else
                    torch.randperm(n, generator=torch.Generator().manual_seed(seed), device="cpu"))
        self.register_buffer("perm", _to_build_device(perm))
        self.register_buffer("inv", _to_build_device(torch.argsort(perm)), persistent=False)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self.inv = torch.argsort(self.perm)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return _Permute.apply(x, self.perm, self.inv), x.new_zeros(x.shape[0])

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        return _Permute.apply(y, self.inv, self.perm), y.new_zeros(y.shape[0])


class _Permute(torch.autograd.Function):
    """``x[:, perm]`` whose gradient is the gather ``g[:, inv]`` (inv = perm^-1): autograd's own backward of
    indexing is a scatter-add (index_put with accumulate), several times slower for a permutation. Both
    gathers are ``index_select``, about 3x faster on the CPU than ``x[:, perm]`` for the same result."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, perm: Tensor, inv: Tensor) -> Tensor:
        return x.index_select(1, perm)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.perm, ctx.inv = inputs[1], inputs[2]

    @staticmethod
    def backward(ctx, g: Tensor):
        return _Permute.apply(g, ctx.inv, ctx.perm), None, None  # differentiable again (double backward)

    @staticmethod
    def jvp(ctx, dx: Tensor, *_):
        return dx.index_select(1, ctx.perm)


class LULinear(Transform):
    """A learned invertible linear map of vectors, ``y = W x`` with ``W = P L U`` (Kingma & Dhariwal 2018, Glow,
    Section 3.2, the LU-decomposed 1x1 convolution, here on features): P a fixed permutation, L unit lower
    triangular, U upper triangular with diagonal ``sign * exp(log_diag)``; log|det| = sum(log_diag).
    Starts at a random rotation drawn from ``seed``, so it generalises the fixed :class:`Permutation`.

    >>> t, x = LULinear(4, seed=0), torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    >>> y, ld = t(x)                                        # a rotation: lengths kept, log|det| 0
    >>> (y.norm(dim=1) - x.norm(dim=1)).abs().max().item() < 1e-5, ld.abs().max().item() < 1e-5
    (True, True)
    >>> with torch.no_grad(): _ = t.log_diag.add_(0.1)     # scale U's diagonal: log|det| = 4 * 0.1
    >>> J = torch.autograd.functional.jacobian(lambda v: t(v[None])[0][0], x[0])
    >>> round(torch.linalg.slogdet(J)[1].item(), 4), round(t(x)[1][0].item(), 4)
    (0.4, 0.4)
    >>> (t.inverse(t(x)[0])[0] - x).abs().max().item() < 1e-5
    True
    """

    def __init__(self, n: int, seed: int = 0):
        super().__init__()
        dt = torch.get_default_dtype()
        # genzoo.io's size check builds on the meta device: the shapes only there (meta linalg and eye would import
        # torch._dynamo, 2-3 s a load, and nothing n x n is made on the CPU for a data_shape a config.json asks for);
        # elsewhere drawn and decomposed on the CPU in float64, kept on the build's device in the default dtype
        if _build_device().type == "meta":
            p, sign, lower, upper, log_diag, eye = (torch.empty(s, dtype=dt)
                                                    for s in [(n, n), (n,), (n, n), (n, n), (n,), (n, n)])
        else:
            g = torch.Generator().manual_seed(seed)
            q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64, device="cpu"))  # (n, n) orthogonal
            p, lower, upper = torch.linalg.lu(q)
            diag = upper.diagonal()
            p, sign, lower, upper, log_diag = (t.to(dt) for t in (p, diag.sign(), lower.tril(-1), upper.triu(1),
                                                                   diag.abs().log()))
            eye = torch.eye(n, device="cpu")
        self.register_buffer("p", _to_build_device(p))
        self.register_buffer("sign", _to_build_device(sign))
        self.register_buffer("eye", _to_build_device(eye), persistent=False)
        self.lower = nn.Parameter(_to_build_device(lower))
        self.upper = nn.Parameter(_to_build_device(upper))
        self.log_diag = nn.Parameter(_to_build_device(log_diag))

    def _lu(self) -> tuple[Tensor, Tensor]:
        lower = self.lower.tril(-1) + self.eye
        upper = self.upper.triu(1) + torch.diag(self.sign * self.log_diag.exp())
        return lower, upper

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        with torch.autocast(x.device.type, enabled=False):  # a bijection on the data itself: not under autocast
            lower, upper = self._lu()
            w = self.p @ lower @ upper                                        # (n, n)
            return x @ w.T, self.log_diag.sum().expand(x.shape[0])

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        with torch.autocast(y.device.type, enabled=False):
            lower, upper = self._lu()
            # at least float32: the triangular solves have no half-precision kernel (a model cast to bf16)
            work = torch.promote_types(y.dtype, torch.float32)
            h = (y @ self.p).T.to(work)                                       # P^T y, (n, B)
            h = torch.linalg.solve_triangular(lower.to(work), h, upper=False, unitriangular=True)
            x = torch.linalg.solve_triangular(upper.to(work), h, upper=True).T.to(y.dtype)  # (B, n)
            return x, (-self.log_diag.sum()).expand(y.shape[0])


class Squeeze(Transform):
    """(C, H, W) -> (4C, H/2, W/2): each 2x2 spatial block becomes 4 channels (Dinh et al. 2016, Section 3.6).

    >>> x = torch.arange(16.0).reshape(1, 1, 4, 4)
    >>> y, ld = Squeeze()(x)
    >>> y.shape, y[0, :, 0, 0].tolist(), ld.tolist()        # the top-left 2x2 block, row by row
    (torch.Size([1, 4, 2, 2]), [0.0, 1.0, 4.0, 5.0], [0.0])
    >>> torch.equal(Squeeze().inverse(y)[0], x)
    True
    """

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        b, c, h, w = x.shape
        if h % 2 or w % 2:
            raise ConfigError(f"a squeeze needs an even height and width, got {h}x{w}")
        y = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)   # (B, C, 2, 2, H/2, W/2)
        return y.reshape(b, 4 * c, h // 2, w // 2), x.new_zeros(b)

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        b, c4, h, w = y.shape
        x = y.reshape(b, c4 // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)      # (B, C, H, 2, W, 2)
        return x.reshape(b, c4 // 4, 2 * h, 2 * w), y.new_zeros(b)


class Flatten(Transform):
    """(B, *shape) <-> (B, D): a reshape, volume-preserving.

    >>> f, x = Flatten((1, 2, 2)), torch.arange(8.0).reshape(2, 1, 2, 2)
    >>> (y, ld), (x2, _) = f(x), f.inverse(f(x)[0])
    >>> y.tolist(), ld.tolist(), torch.equal(x2, x)
    ([[0.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0]], [0.0, 0.0], True)
    """

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x.reshape(x.shape[0], -1), x.new_zeros(x.shape[0])

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        return y.reshape(y.shape[0], *self.shape), y.new_zeros(y.shape[0])


class Logit(Transform):
    """The logit pre-processing of data in [0, 1] (Dinh et al. 2016, Section 4.1; Papamakarios et al. 2017):
    ``y = logit(alpha + (1 - 2 alpha) x)`` with its log-Jacobian, so a flow's ``log_prob`` stays a density
    on [0, 1]^D, less the flow's mass beyond ``[logit(alpha), logit(1 - alpha)]`` (whose draws the inverse clamps
    onto 0 and 1). See :func:`genzoo.data.transforms.logit_transform`.

    >>> t = Logit(alpha=0.05)
    >>> y, ld = t(torch.full((1, 3), 0.5))                 # logit(0.5) = 0, slope (1 - 2 alpha) / (1/4)
    >>> y.tolist(), round(ld.item(), 4), round(3 * math.log(4 * 0.9), 4)
    ([[0.0, 0.0, 0.0]], 3.8428, 3.8428)
    >>> x = torch.rand(4, 3, generator=torch.Generator().manual_seed(0))
    >>> x2, ld_inv = t.inverse(t(x)[0])
    >>> (x2 - x).abs().max().item() < 1e-5, torch.allclose(ld_inv, -t(x)[1])
    (True, True)
    """

    def __init__(self, alpha: float = 1e-6):
        super().__init__()
        if not 0 < alpha < 0.5:  # alpha = 0 sends a pixel of exactly 0 or 1 to -inf or inf
            raise ConfigError(f"the logit's alpha must lie in (0, 0.5), got {alpha}")
        self.alpha = alpha

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        # the flows check the range where data enter (Flow._check, their setup): here, a host sync every step would
        # be done twice, and would break a compiled graph. Half-precision x is mapped in float32 (logit_transform): y
        # goes back to x's dtype for the next layer's weights (a bf16 model), the log-det stays float32
        y, ld = logit_transform(x, self.alpha)
        return y.to(x.dtype), ld

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        x = inverse_logit_transform(y, self.alpha)
        return x, -logit_transform(x, self.alpha)[1]
