"""What every flow model shares: a base distribution, a transform in the normalizing direction, and the
exact log-likelihood ``log p(x) = log p_base(f(x)) + log|det df/dx|`` (Dinh et al. 2014, eq. 1).

A flow is a :class:`~genzoo.base.Density` (``log_prob``) and a :class:`~genzoo.base.Generator`
(``prior``, ``generate``), with ``encode`` (x to z) and ``decode`` (z to x) for the applications.
"""

from __future__ import annotations

import math
import warnings
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Distribution, Independent, Normal, constraints

from ...base import GenerativeModel, evaluating
from ...errors import ConfigError, DataError, GenZooWarning
from .transforms import ActNorm, BatchNorm, Logit, Transform

Base = Literal["normal", "logistic"]


class Logistic(Distribution):
    """The logistic distribution: density ``exp(-(x - loc)/s) / (s (1 + exp(-(x - loc)/s))^2)``, evaluated
    stably as ``-softplus(-u) - softplus(u) - log s``, ``u = (x - loc) / s``. NICE's prior (Dinh et al. 2014,
    Section 3.4). torch's ``TransformedDistribution(Uniform, SigmoidTransform.inv)`` returns -inf where
    float32 sigmoid rounds to 1 (|u| > 17); this does not.

    >>> d = Logistic(torch.zeros(1), torch.ones(1))
    >>> round(float(d.log_prob(torch.zeros(1))), 4) == round(-math.log(4), 4), bool(d.log_prob(torch.tensor([50.0])).isfinite())
    (True, True)
    """

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.real
    has_rsample = True

    def __init__(self, loc: Tensor, scale: Tensor, validate_args: bool | None = False):
        self.loc, self.scale = torch.broadcast_tensors(torch.as_tensor(loc), torch.as_tensor(scale))
        super().__init__(self.loc.shape, validate_args=validate_args)

    @property
    def mean(self) -> Tensor:
        return self.loc

    @property
    def variance(self) -> Tensor:
        return self.scale.pow(2) * math.pi ** 2 / 3

    def log_prob(self, value: Tensor) -> Tensor:
        u = (value - self.loc) / self.scale
        return -F.softplus(-u) - F.softplus(u) - self.scale.log()

    def cdf(self, value: Tensor) -> Tensor:
        return torch.sigmoid((value - self.loc) / self.scale)

    def icdf(self, value: Tensor) -> Tensor:
        return self.loc + self.scale * (torch.log(value) - torch.log1p(-value))

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:
        shape = self._extended_shape(sample_shape)
        u = torch.rand(shape, dtype=self.loc.dtype, device=self.loc.device).clamp_(1e-7, 1 - 1e-7)
        return self.icdf(u)


class Flow(GenerativeModel):
    """Base class of the flow models: subclasses set ``self.transform`` (data to latent) in ``__init__``
    after calling ``super().__init__(...)``.

    ``log_prob(x)`` (B,) is exact, in nats, on the space the data are given in; ``encode(x)`` returns
    z (B, D), ``decode(z)`` x (B, *data_shape); ``sample`` draws z from the base and decodes it.
    Under bf16 autocast only the coupling networks run in bf16; every transform returns float32 values
    and log-determinants, so the likelihood is accumulated in float32.

    >>> import genzoo
    >>> from genzoo.base import Density, Invertible
    >>> flow = genzoo.build("realnvp", data_shape=(3,), n_couplings=2, hidden=(8,))
    >>> isinstance(flow, Flow) and isinstance(flow, Density) and isinstance(flow.transform, Invertible)
    True
    >>> x = torch.randn(5, 3)
    >>> z, logdet = flow.transform(x)                        # (5, 3), (5,): data to latent, log|det J|
    >>> torch.allclose(flow.log_prob(x), flow.prior.log_prob(z) + logdet, atol=1e-5)   # change of variables
    True
    """

    transform: Transform
    autocast_safe = True

    def __init__(self, data_shape: tuple[int, ...], base: Base, lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, max_grad_norm: float = 0.0):
        super().__init__()
        if base not in ("normal", "logistic"):
            raise ConfigError(f"unknown base distribution '{base}': use normal or logistic")
        if lr <= 0 or weight_decay < 0 or max_grad_norm < 0:
            raise ConfigError("lr must be > 0, weight_decay and max_grad_norm >= 0")
        self.data_shape = tuple(data_shape)
        self.latent_dim = math.prod(self.data_shape)
        self.base_name = base
        self.lr, self.betas, self.eps, self.weight_decay = lr, tuple(betas), eps, weight_decay
        self.max_grad_norm = max_grad_norm
        self.register_buffer("_zero", torch.zeros(()), persistent=False)

    @classmethod
    def defaults(cls, config: dict) -> dict:
        """Digits dequantized to [0, 1) (a density there bounds the discrete likelihood); 3,000 steps of 128."""
        return {"data": {"name": "digits", "dequantize": True}, "train": {"steps": 3000, "batch_size": 128}}

    # -- distributions -------------------------------------------------------------------------
    @property
    def prior(self) -> Distribution:
        """The base distribution over z (D,): standard normal or standard logistic, independent dimensions."""
        zeros = self._zero.expand(self.latent_dim)
        ones = torch.ones_like(zeros)
        if self.base_name == "logistic":
            return Independent(Logistic(zeros, ones), 1)
        return Independent(Normal(zeros, ones, validate_args=False), 1)

    def _draw_base(self, n: int, generator: torch.Generator | None) -> Tensor:
        """``n`` draws (n, D) from the base, with ``generator`` on its device, moved to the model's."""
        shape = (n, self.latent_dim)
        if self.base_name == "logistic":
            u = self.rand(shape, generator).clamp_(1e-7, 1 - 1e-7)               # (n, D)
            return torch.log(u) - torch.log1p(-u)                                 # (n, D) inverse cdf
        return self.randn(shape, generator)                                       # (n, D)

    def _check(self, x: Tensor) -> Tensor:
        """``x`` as a batch (B, *data_shape) in the dtype of the parameters (float64 or integer input too); a
        DataError for another shape, an empty batch, NaN or infinite values (a density of NaN is NaN: say so
        where it enters) and, with the logit pre-processing, values outside [0, 1]: all from one pass, here
        where data enter, outside what torch.compile may compile."""
        return self.check_pixels(x)

    def outside_unit_interval(self, lo: float, hi: float) -> str | None:
        first = getattr(self.transform, "transforms", [self.transform])[0]
        if not isinstance(first, Logit):
            return None
        return (f"the logit pre-processing takes data in [0, 1], got values in [{lo:.4g}, {hi:.4g}] "
                "(preprocess=none for other data)")

    # -- the two directions -----------------------------------------------------------------------
    def forward_and_log_det(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """z = f(x) flattened (B, D), and log|det df/dx| (B,)."""
        x = self._check(x)
        if self.training and x.shape[0] < 2 and any(isinstance(m, BatchNorm) for m in self.modules()):
            raise DataError("a batch-norm flow in training mode normalises by the batch's own statistics, which one "
                            "example has not: call model.eval() (genzoo.fit and genzoo.load return it so)")
        z, ld = self.transform(x)
        return z.reshape(x.shape[0], -1), ld

    def log_prob(self, x: Tensor) -> Tensor:
        """Exact log-density (B,) in nats: log p_base(f(x)) + log|det df/dx|, in eval mode (:func:`genzoo.fit` and
        :func:`genzoo.load` return the model so; genzoo's evaluation, sampling and apps use it). In training mode, the
        one :func:`genzoo.build` and ``.train()`` leave, it is the training loss's term: a batch-norm flow normalises
        by the batch's own statistics, so an example's value depends on the others in its batch, and moves its
        running averages, even under ``torch.no_grad()``; an ActNorm not yet initialised takes its scale from this
        batch. Call ``model.eval()`` first for a density.

        >>> import genzoo
        >>> flow = genzoo.build("realnvp", data_shape=(2,), norm="batch", n_couplings=2, hidden=(8,)).eval()
        >>> x = torch.randn(4, 2)
        >>> torch.allclose(flow.log_prob(x[:1]), flow.log_prob(x)[:1])     # eval: each example alone
        True
        """
        z, ld = self.forward_and_log_det(x)
        return self.prior.log_prob(z) + ld

    def encode(self, x: Tensor) -> Tensor:
        """x (B, *data_shape) -> z (B, D)."""
        return self.forward_and_log_det(x)[0]

    def decode(self, z: Tensor) -> Tensor:
        """z (B, D) -> x (B, *data_shape), the exact inverse of :meth:`encode`. Latents of another shape are a
        DataError (:meth:`~genzoo.base.GenerativeModel.check_latent`); float64 or integer ones are converted."""
        z = self.check_latent(z, leading=False)
        return self.transform.inverse(self._latent_shape(z))[0].reshape(z.shape[0], *self.data_shape)

    def generate(self, z: Tensor) -> Tensor:
        """:meth:`decode`: z (B, D) -> x (B, *data_shape)."""
        return self.decode(z)

    def _latent_shape(self, z: Tensor) -> Tensor:
        """z as the transform's output shape; flat by default (multi-scale flows override)."""
        return z.reshape(z.shape[0], *self.data_shape)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` draws (n, *data_shape): z from the base, decoded."""
        n = self.check_count(n)
        with evaluating(self):  # the mode comes back even when the inverse fails
            return self.decode(self._draw_base(n, generator))

    # -- training ---------------------------------------------------------------------------------
    def check_training_data(self, x: Tensor) -> None:
        """Besides NaN, infinities and the logit's [0, 1]: features of no spread in the training data ``x`` (N, ...),
        along which a continuous density is unbounded (the flow can shrink them without limit). No spread is a range
        ``max - min <= 4 eps max(|min|, |max|)`` (eps: the dtype's), a few ulps: a column of 2.0 and the next float32
        trained a RealNVP to a loss of 1e7 and an eval NLL of 3,829 nats. On vectors a DataError (a RealNVP diverged
        within 5 steps, a planar flow reported +1,117 nats; a constant column is dropped at no loss). On images a
        warning: each pixel of undequantized levels is such a point mass already (the 'discrete-as-real' space eval
        labels), a constant one (a digit's border) its extreme, and an image keeps every pixel.

        On vectors also a warning (:class:`~genzoo.errors.GenZooWarning`) for a feature of few values, on which the
        density is as unbounded (a 0/1 column's NLL fell without end): one that takes at most ``max(16, n / 50)``
        distinct values in ``n`` evenly spaced examples of the data (at most 4,096), and at most ``n / 8`` (each seen
        8 times on average; a continuous feature repeats almost none).

        >>> import genzoo
        >>> genzoo.build("planar", data_shape=(3,)).check_training_data(torch.tensor([[0.0, 1, 2], [1, 1, 3]]))
        Traceback (most recent call last):
        genzoo.errors.DataError: planar: feature 1 (1 of 3) is constant in the training data, where a continuous density is unbounded: drop it, or add noise to the data (or, for data of discrete levels, keep data.dequantize on)
        >>> x = torch.randn(64, 3)
        >>> x[:, 2] = (x[:, 2] > 0).float()                                 # a 0/1 feature
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as w:
        ...     warnings.simplefilter("always")
        ...     genzoo.build("planar", data_shape=(3,)).check_training_data(x)
        >>> print(w[0].message)
        planar: feature 2 (1 of 3) takes only 2 distinct values in 64 training examples, where a continuous density is unbounded: its NLL is no likelihood of these data; add noise of their spacing to it, or drop it
        """
        super().check_training_data(x)
        if x.shape[0] < 2:  # (one example has no spread in any feature)
            return
        flat = x.detach().flatten(1)                                                 # (N, D)
        lo, hi = flat.aminmax(dim=0)                                                 # (D,) each
        if flat.is_floating_point():  # a spread of a few ulps is rounding, not spread
            spread = (hi - lo) <= 4 * torch.finfo(flat.dtype).eps * torch.maximum(lo.abs(), hi.abs())  # (D,)
        else:
            spread = lo == hi                                                        # (D,)
        const = spread.nonzero().flatten().tolist()
        k, d = len(const), lo.numel()
        if k and len(self.data_shape) == 1:
            which = ", ".join(map(str, const[:5])) + (", ..." if k > 5 else "")
            raise DataError(f"{self.name}: feature{'s' * (k > 1)} {which} ({k} of {d}) {'are' if k > 1 else 'is'} "
                            "constant in the training data, where a continuous density is unbounded: drop "
                            f"{'them' if k > 1 else 'it'}, or add noise to the data (or, for data of discrete levels, keep "
                            "data.dequantize on)")
        if k:
            warnings.warn(f"{self.name}: {k} of {d} pixels are constant in the training data, where a density is "
                          "unbounded: its NLL is no likelihood of these data; dequantize them (data.dequantize=true, "
                          "in place of data.binarize=true where that is on) for one", GenZooWarning, stacklevel=2)
        if len(self.data_shape) == 1:
            self._warn_of_few_values(flat, stacklevel=3)

    def _warn_of_few_values(self, flat: Tensor, stacklevel: int) -> None:
        """The warning of :meth:`check_training_data` for vector features of few distinct values in ``flat`` (N, D)."""
        sample = flat[::-(-flat.shape[0] // 4096)]                                  # (n, D), n <= 4096 evenly spaced
        n = sample.shape[0]
        s = sample.sort(dim=0).values                                               # (n, D)
        counts = 1 + (s[1:] != s[:-1]).sum(0)                                       # (D,) distinct values per feature
        few = (counts <= min(max(16, n // 50), n // 8)).nonzero().flatten().tolist()
        if not few:
            return
        k, d = len(few), flat.shape[1]
        which = ", ".join(map(str, few[:5])) + (", ..." if k > 5 else "")
        lo, hi = int(counts[few].min()), int(counts[few].max())
        values = f"{lo}" if lo == hi else f"{lo}-{hi}"
        warnings.warn(f"{self.name}: feature{'s' * (k > 1)} {which} ({k} of {d}) take{'s' * (k == 1)} only {values} "
                      f"distinct values in {n:,} training examples, where a continuous density is unbounded: its NLL is "
                      f"no likelihood of these data; add noise of their spacing to {'them' if k > 1 else 'it'}, or drop "
                      f"{'them' if k > 1 else 'it'}", GenZooWarning, stacklevel=stacklevel)

    def loss(self, x: Tensor) -> dict[str, Tensor]:
        """Mean negative log-likelihood in nats per example."""
        nll = -self.log_prob(x)                                                   # (B,)
        return {"loss": nll.mean(), "nll": nll.mean().detach()}

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return [torch.optim.Adam(self.parameters(), lr=self.lr, betas=self.betas, eps=self.eps,
                                 weight_decay=self.weight_decay, fused=True)]

    @torch.no_grad()
    def setup(self, x: Tensor, generator: torch.Generator) -> None:
        """Data-dependent initialisation: one forward pass over up to 512 examples sets activation norms, and a
        batch norm's running averages to that sample's statistics (momentum 1 for the pass). They started at mean 0,
        variance 1, which the pass moved only 5%: on data of std 0.002 the eval-mode model (genzoo eval, sampling,
        the validation loss) was 8 nats worse after 150 steps than the one that trained.

        >>> import genzoo
        >>> flow = genzoo.build("realnvp", data_shape=(2,), norm="batch", n_couplings=2, hidden=(8,))
        >>> x = 0.002 * torch.randn(256, 2)
        >>> flow.setup(x, torch.Generator().manual_seed(0))
        >>> torch.allclose(flow.transform.transforms[0].running_var, x.var(0, unbiased=False))
        True
        """
        idx = torch.randperm(x.shape[0], generator=generator)[:512]
        norms = [m for m in self.modules() if isinstance(m, BatchNorm)]
        momenta = [m.momentum for m in norms]
        for m in self.modules():  # from the training data, whatever batch a log_prob before fit showed them
            if isinstance(m, ActNorm):
                m.reset()
        was = self.training
        self.train()
        try:
            for m in norms:  # the running averages: this sample's statistics outright
                m.momentum = 1.0
            self.transform.forward(self._check(x[idx.to(x.device)]))  # eager, even once compiled: a one-off pass
        finally:
            for m, momentum in zip(norms, momenta):
                m.momentum = momentum
            self.train(was)
