"""Generators trained by moment matching: GMMN (Li et al. 2015) and plain mean/covariance matching.

A generator ``x = g(z)``, ``z ~ N(0, I)``, is trained to make a generated batch and a data batch
statistically indistinguishable, with no discriminator and no encoder:

* ``statistic="mmd"``, the generative moment matching network (GMMN): minimise the maximum mean
  discrepancy with a sum of Gaussian kernels, which compares *all* moments of the two
  distributions at once (the kernel is characteristic, so MMD = 0 iff the distributions agree);
* ``statistic="moments"``: match only the mean and the covariance. Any distribution with the
  data's first two moments is a minimiser: on the ring of 8 Gaussians a single blob N(0, I/2)
  scores as well as the ring itself -- the failure of plain statistic matching.

The MMD estimator (:func:`mmd2`) is the biased V-statistic MMD_b^2 of Gretton et al. 2012
(eq. 5), the all-pairs form Li et al. 2015 write in their eqs. 1-2: diagonals included, so
MMD_b^2 >= 0 and its square root is defined. Following Li et al.'s practical considerations
(Section 3) the model trains on ``sqrt(MMD_b^2)``, whose gradient does not shrink with MMD^2 as the
fit gets good, and uses a *sum* of Gaussian kernels of several bandwidths, so that no single
length scale has to be right. ``mmd2(..., unbiased=True)`` gives the U-statistic MMD_u^2
(Gretton et al. 2012, Lemma 6, eq. 3): unbiased, but it can be negative. Dziugaite et al. 2015
train the same kind of generator on the MMD (their "MMD nets") and analyse the estimator.

Kernel bandwidths: ``bandwidths=()`` (the default) sets them in :meth:`GMMN.setup` from the data:
``sigma_s = f_s * m`` with ``m`` the median pairwise distance of 1,000 training examples (the
median heuristic of Gretton et al. 2012, widened to a multi-scale family) and
``f_s = 1/64, 1/16, 1/4, 1, 4``. The data's own scale fixes the range, so one default serves the
unit ring (m = 1.41: sigma = 0.022 .. 5.7, the smallest at the scale of its modes, std 0.01 at
radius 1, the largest seeing the whole ring) and images (8x8 digits: m = 3.1, sigma = 0.05 .. 12;
MNIST: m = 10.3, sigma = 0.16 .. 41). Spacing by factors of 4 costs half as much as factors of 2
and measured the same on the ring. The bandwidths live in a buffer, so they travel with the
weights through ``save``/``load`` and checkpoints; given explicitly they are used as they are, each in
[1e-6, 1e18] (``1 / (2 sigma^2)`` a normal float32), and ``setup`` refuses a set of which every one is over
1,000 times the data's largest pairwise distance or under 1/1,000 of its smallest (kernels constant on the
data: the MMD would train nothing).

Measured on the ring (the defaults: 6,000 steps of 128, 10-12 s of ``fit`` on one CPU thread;
2,500 samples scored by :func:`genzoo.eval.modes.mode_coverage`, seeds 0-2): "mmd" captures 8/8
modes, high-quality share 0.65-0.76; "moments" gets the mean (within 0.06) and covariance (within
0.04 of I/2) but not the modes: high-quality share 0.007-0.014, one smear over the annulus
0.5 < |x| < 1.4 with no mode structure (its "modes captured", 6-8, counts a handful of stray
samples). It is an annulus rather than a Gaussian blob because the loss on batches also pays the
batch covariance's own variance, which is smaller for light tails: with batches of 128 its
expectation is 0.024 against the ring itself or a uniform circle, 0.032 against N(0, I/2) -- and
nothing in it prefers the ring's 8 modes to the circle. A linear generator (``hidden=()``) under
"moments" becomes N(0, I/2) itself, the one blob of the statistic-matching argument (covariance
within 0.02 of I/2, high-quality share 0.003).

References:
    Y. Li, K. Swersky, R. Zemel, "Generative Moment Matching Networks", ICML 2015.
    G. K. Dziugaite, D. M. Roy, Z. Ghahramani, "Training generative neural networks via Maximum
    Mean Discrepancy optimization", UAI 2015.
    A. Gretton, K. M. Borgwardt, M. J. Rasch, B. Schoelkopf, A. Smola, "A Kernel Two-Sample Test",
    JMLR 13, 2012.

>>> import torch, genzoo
>>> m = genzoo.build("gmmn", data_shape=(2,), hidden=(16,), bandwidths=(0.5, 1.0))
>>> x = torch.randn(8, 2)
>>> sorted(m.loss(x))
['loss', 'mmd2']
>>> m.sample(3, generator=torch.Generator().manual_seed(0)).shape
torch.Size([3, 2])
>>> y = torch.randn(64, 2)
>>> abs(float(mmd2(y, y, torch.tensor([1.0])))) < 1e-6   # identical samples
True
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal

from ..base import GenerativeModel
from ..errors import ConfigError, DataError
from ..nn import ACTIVATIONS, Activation, mlp
from ..registry import register
from ..train import distributed

#: ``bandwidths=()``: sigma_s = factor * (median pairwise distance of the data), factors 4^-3 .. 4
BANDWIDTH_FACTORS = (1 / 64, 1 / 16, 1 / 4, 1.0, 4.0)
#: examples used for the median pairwise distance in ``setup`` (1,000 give ~500k pairs)
MEDIAN_SUBSAMPLE = 1000


def sq_distances(a: Tensor, b: Tensor | None = None) -> Tensor:
    """Pairwise squared Euclidean distances |a_i - b_j|^2 of (N, D) and (M, D): (N, M).

    The matmul form |a|^2 + |b|^2 - 2 a b' (one GEMM instead of an (N, M, D) difference), clamped
    at 0 where rounding makes it slightly negative. ``b=None`` means ``b = a``, whose diagonal is
    then exactly 0 (rounding would leave ~1e-7 |a|^2 there, which narrow kernels notice).
    """
    same = b is None
    b = a if same else b
    d2 = torch.addmm(a.pow(2).sum(1, keepdim=True), a, b.T, alpha=-2)  # |a_i|^2 - 2 a_i.b_j  (N, M)
    d2 = d2.add_(b.pow(2).sum(1)).clamp_min_(0)                        # + |b_j|^2, >= 0     (N, M)
    if same:
        d2.fill_diagonal_(0)                                            # (N, N)
    return d2


def gaussian_kernel(d2: Tensor, bandwidths: Tensor | Sequence[float]) -> Tensor:
    """Sum of Gaussian kernels k = sum_s exp(-d^2 / (2 sigma_s^2)) (Li et al. 2015, Section 3),
    from squared distances ``d2`` (...) and bandwidths sigma_s (S,): shape (...).

    The exponent is floored at -80 (exp(-80) = 2e-35, an error far below float32 resolution of the
    sum): narrow kernels push most exponents into the hundreds, where exp underflows through
    subnormal numbers and runs ~15x slower on x86 CPUs.
    """
    k = torch.zeros_like(d2)
    if d2.requires_grad and torch.is_grad_enabled():
        for sigma in _floats(bandwidths):  # one (...) exp per kernel: faster than an (..., S) tensor
            k = k + torch.exp((d2 * (-0.5 / sigma**2)).clamp_min(-80.0))  # (...)
        return k
    e = torch.empty_like(d2)  # no graph to keep (a data batch, validation): in place, one buffer
    for sigma in _floats(bandwidths):
        k += torch.mul(d2, -0.5 / sigma**2, out=e).clamp_min_(-80.0).exp_()  # (...)
    return k


def _floats(bandwidths: Tensor | Sequence[float]) -> list[float]:
    return bandwidths.tolist() if isinstance(bandwidths, Tensor) else [float(b) for b in bandwidths]


def mmd2(x: Tensor, y: Tensor, bandwidths: Tensor | Sequence[float], unbiased: bool = False) -> Tensor:
    """Squared maximum mean discrepancy between samples ``x`` (N, ...) and ``y`` (M, ...), a scalar.

    Biased (V-statistic; Gretton et al. 2012, eq. 5; Li et al. 2015, eqs. 1-2):
        MMD_b^2 = 1/N^2 sum_ij k(x_i, x_j) - 2/(N M) sum_ij k(x_i, y_j) + 1/M^2 sum_ij k(y_i, y_j),
    always >= 0 (the squared RKHS distance between the two empirical mean embeddings).
    Unbiased (U-statistic; Gretton et al. 2012, Lemma 6, eq. 3): the within-sample sums leave out
    i = j and divide by N(N-1) and M(M-1); its expectation is the population MMD^2, so it can be < 0.
    ``bandwidths`` are the sigma_s of :func:`gaussian_kernel`.

    >>> x, y = torch.tensor([[0.0], [1.0]]), torch.tensor([[0.0]])
    >>> round(float(mmd2(x, y, torch.tensor([1.0]))), 4)   # (2 + 2e^-1/2)/4 - 2(1 + e^-1/2)/2 + 1
    0.1967
    """
    n, m = x.shape[0], y.shape[0]
    if unbiased and (n < 2 or m < 2):
        raise DataError("the unbiased MMD needs at least 2 examples in each sample")
    sigmas = _floats(bandwidths)                              # once: no device sync per block
    x, y = x.reshape(n, -1), y.reshape(m, -1).to(x.dtype)    # (N, D), (M, D)
    # shifted by the first sample's mean, which changes no distance: the matmul form loses float32's digits for data
    # far from the origin (moved by 1e4, the MMD read 80% low and the generator collapsed to a point)
    centre = x.detach().mean(0)                               # (D,)
    x, y = x - centre, y - centre                             # (N, D), (M, D)
    # three blocks, so that k(x, x') of a data batch is computed once and stays out of the graph
    kxx = gaussian_kernel(sq_distances(x), sigmas)           # (N, N)
    kyy = gaussian_kernel(sq_distances(y), sigmas)           # (M, M)
    kxy = gaussian_kernel(sq_distances(x, y), sigmas)        # (N, M)
    if unbiased:
        s = len(sigmas)  # k(a, a) = S exactly on the diagonal (its distances are exactly 0)
        return ((kxx.sum() - s * n) / (n * (n - 1)) + (kyy.sum() - s * m) / (m * (m - 1))
                - 2 * kxy.mean())
    return kxx.mean() + kyy.mean() - 2 * kxy.mean()


def moment_gaps(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """|mean_x - mean_y|^2 and |Cov_x - Cov_y|_F^2 of (N, ...) and (M, ...) samples, two scalars.

    Covariances with the 1/(n-1) normalisation; the examples are flattened to D numbers.

    >>> x, y = torch.tensor([[1.0, 0.0], [-1.0, 0.0]]), torch.zeros(2, 2)
    >>> [round(float(t), 4) for t in moment_gaps(x, y)]     # Cov_x = diag(2, 0)
    [0.0, 4.0]
    """
    x, y = x.reshape(x.shape[0], -1), y.reshape(y.shape[0], -1).to(x.dtype)  # (N, D), (M, D)
    if x.shape[0] < 2 or y.shape[0] < 2:
        raise DataError("a covariance needs at least 2 examples in each sample")
    mx, my = x.mean(0), y.mean(0)                                          # (D,)
    cx = (x - mx).T @ (x - mx) / (x.shape[0] - 1)                          # (D, D)
    cy = (y - my).T @ (y - my) / (y.shape[0] - 1)                          # (D, D)
    return (mx - my).pow(2).sum(), (cx - cy).pow(2).sum()


@register("gmmn", "Generator trained by moment matching: MMD with Gaussian kernels (Li et al. 2015) or mean/covariance")
class GMMN(GenerativeModel):
    """A generator x = g(z), z ~ N(0, I), trained by matching moments of generated and data batches.

    Args:
        data_shape: shape of one example. Images (C, H, W) get a sigmoid output, so samples lie in
            [0, 1] as the data do (Li et al. 2015 use a sigmoid output layer on MNIST); vectors an
            unbounded linear one.
        latent_dim: size of z; 2 suits the 2-D toy sets (on the ring it reached 8 modes sooner than
            8 did, same final quality); images want more (say 10-50). The prior is N(0, I): Li et
            al. draw uniform noise, the Gaussian is the genzoo convention (the VAE decoder, GANs).
        hidden: hidden sizes of the generator MLP latent -> hidden -> prod(data_shape).
        activation: nonlinearity between layers (a name in ``genzoo.nn.ACTIVATIONS``).
        statistic: "mmd" (the GMMN: sqrt of the biased MMD^2 with a sum of Gaussian kernels) or
            "moments" (|mean gap|^2 + |covariance gap|_F^2).
        bandwidths: kernel sigmas in data units; ``()`` sets them in ``setup`` from the data as
            ``BANDWIDTH_FACTORS`` (1/64 .. 4) times the median pairwise distance (see above).
        lr: Adam learning rate.
    """

    DEFAULT_NOTES = {"bandwidths": "(): 1/64 .. 4 times the data's median pairwise distance, set by setup"}

    def __init__(self, *, data_shape: tuple[int, ...], latent_dim: int = 2, hidden: tuple[int, ...] = (128, 128),
                 activation: Activation = "relu", statistic: Literal["mmd", "moments"] = "mmd",
                 bandwidths: tuple[float, ...] = (), lr: float = 1e-3) -> None:
        super().__init__()
        self.data_shape = tuple(int(s) for s in data_shape)
        if not self.data_shape or any(s < 1 for s in self.data_shape):
            raise ConfigError(f"gmmn: data_shape must be positive sizes, got {data_shape}")
        if int(latent_dim) != latent_dim or latent_dim < 1:
            raise ConfigError(f"gmmn: latent_dim must be an integer >= 1, got {latent_dim}")
        if any(int(h) != h or h < 1 for h in hidden):
            raise ConfigError(f"gmmn: hidden sizes must be integers >= 1, got {tuple(hidden)}")
        if activation not in ACTIVATIONS:
            raise ConfigError(f"gmmn: unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}")
        if statistic not in ("mmd", "moments"):
            raise ConfigError(f"gmmn: statistic must be 'mmd' or 'moments', got {statistic!r}")
        if not all(1e-6 <= b <= 1e18 for b in bandwidths):  # 1 / (2 sigma^2) must be a normal float32
            raise ConfigError(f"gmmn: bandwidths must lie in [1e-6, 1e18], got {tuple(bandwidths)}")
        if not lr > 0:
            raise ConfigError(f"gmmn: lr must be > 0, got {lr}")
        self.latent_dim = int(latent_dim)
        self.statistic = statistic
        self.fixed_bandwidths = bool(bandwidths)
        self.lr = float(lr)
        d = math.prod(self.data_shape)
        layers: list[nn.Module] = [mlp([self.latent_dim, *map(int, hidden), d], activation)]
        if len(self.data_shape) == 3:
            layers.append(nn.Sigmoid())
        self.net = nn.Sequential(*layers)
        # sigma_s; all zeros means "not set yet" (setup, or else the first batch, sets them)
        self.register_buffer("bandwidths", torch.tensor(bandwidths, dtype=torch.float32) if bandwidths
                             else torch.zeros(len(BANDWIDTH_FACTORS)))  # (S,)
        self.register_buffer("_zero", torch.zeros(()), persistent=False)

    @classmethod
    def defaults(cls, config: dict) -> dict:
        """The ring of 8 Gaussians: 6,000 steps of 128, ~20 s on one CPU thread, all 8 modes."""
        return {"data": {"name": "ring"}, "train": {"steps": 6000, "batch_size": 128, "log_every": 50}}

    def extra_repr(self) -> str:
        return f"statistic={self.statistic!r}, bandwidths={[round(b, 4) for b in self.bandwidths.tolist()]}"

    # -- the generator ---------------------------------------------------------------------------
    @property
    def prior(self) -> Distribution:
        """p(z) = N(0, I), event shape (latent_dim,)."""
        zeros = self._zero.expand(self.latent_dim)
        return Independent(Normal(zeros, torch.ones_like(zeros)), 1)

    def generate(self, z: Tensor) -> Tensor:
        """x = g(z): z (..., B, latent_dim) -> (..., B, *data_shape). Latents of another width are a DataError
        (:meth:`~genzoo.base.GenerativeModel.check_latent`); float64 or integer ones are converted.

        >>> import genzoo
        >>> m = genzoo.build("gmmn", data_shape=(2,), hidden=(16,))
        >>> g = lambda: torch.Generator().manual_seed(0)
        >>> m.generate(torch.randn(3, 5, 2)).shape                  # (..., B, latent_dim) -> (..., B, *data_shape)
        torch.Size([3, 5, 2])
        >>> torch.equal(m.sample(4, g()), m.generate(torch.randn(4, 2, generator=g())))   # sample: g(z), z ~ N(0, I)
        True
        >>> images = genzoo.build("gmmn", data_shape=(1, 4, 4), latent_dim=3, hidden=(8,))   # a sigmoid output
        >>> x = images.generate(100 * torch.randn(6, 3))
        >>> x.shape, 0 <= x.min().item() <= x.max().item() <= 1
        (torch.Size([6, 1, 4, 4]), True)
        """
        return self._generate(self.check_latent(z))

    def _generate(self, z: Tensor) -> Tensor:
        """:meth:`generate` of checked latents (the training step's own draws)."""
        x = self.net(z.reshape(-1, self.latent_dim))  # (N, D), N = prod(...) B
        return x.reshape(*z.shape[:-1], *self.data_shape)  # (..., B, *data_shape)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` samples (n, *data_shape): g(z) for z ~ N(0, I) drawn with ``generator``, on its device."""
        n = self.check_count(n)
        z = self.randn((n, self.latent_dim), generator, self._zero.dtype)  # (n, L)
        return self._generate(z)

    def unused_options(self) -> dict[str, str]:
        """The kernel ``bandwidths`` when no kernel is used."""
        return {"bandwidths": "statistic=moments (no kernel)"} if self.statistic == "moments" else {}

    # -- training -----------------------------------------------------------------------------------
    @staticmethod
    def pair_distances(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The pairwise Euclidean distances of (up to ``MEDIAN_SUBSAMPLE`` of) ``x`` (N, ...), N >= 2: (n'(n'-1)/2,)."""
        n = x.shape[0]
        idx = torch.randperm(n, generator=generator)[:MEDIAN_SUBSAMPLE] if n > MEDIAN_SUBSAMPLE else torch.arange(n)
        return torch.pdist(x[idx.to(x.device)].reshape(len(idx), -1).double())

    @classmethod
    def median_distance(cls, x: Tensor, generator: torch.Generator | None = None) -> float:
        """The median pairwise Euclidean distance of (up to ``MEDIAN_SUBSAMPLE`` of) ``x``; where over half the
        pairs are duplicates, the median of the others (0 only for identical examples)."""
        d = cls.pair_distances(x, generator)
        med = float(d.median())
        return med if med > 0 or not bool((d > 0).any()) else float(d[d > 0].median())

    @torch.no_grad()
    def set_bandwidths(self, x: Tensor, generator: torch.Generator | None = None) -> None:
        """sigma_s = BANDWIDTH_FACTORS[s] * median pairwise distance of (up to 1,000 of) ``x``.

        >>> import genzoo
        >>> m = genzoo.build("gmmn", data_shape=(2,), hidden=(16,))   # bandwidths=(): zeros until set
        >>> m.set_bandwidths(torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]]))   # distances 3, 4, 5
        >>> m.bandwidths.tolist()                                  # (1/64, 1/16, 1/4, 1, 4) times the median 4
        [0.0625, 0.25, 1.0, 4.0, 16.0]
        """
        if x.shape[0] < 2:
            raise DataError("gmmn: setting kernel bandwidths from the data needs at least 2 examples")
        med = self.median_distance(x, generator)
        if not med > 0:
            raise DataError("gmmn: the examples are all identical; give --set bandwidths=... explicitly")
        self.bandwidths.copy_(torch.tensor(BANDWIDTH_FACTORS) * med)

    def check_bandwidths(self, x: Tensor) -> None:
        """A DataError where every given bandwidth is over 1,000 times the data's largest pairwise distance (every
        kernel is then about 1 on the data: the MMD and its gradient vanish, and the generator learns nothing)
        or under 1/1,000 of its smallest nonzero one (about 0 but between equal points); on (up to 1,000 of) the
        examples. Bandwidths at the scale of tight clusters, far below the median distance, pass."""
        if x.shape[0] < 2:
            return
        d = self.pair_distances(x, torch.Generator().manual_seed(0))  # its own stream: training's is untouched
        d = d[d > 0]
        if not len(d):
            return
        lo, hi, sigmas = float(d.min()), float(d.max()), self.bandwidths.tolist()
        if all(s > 1e3 * hi or s < 1e-3 * lo for s in sigmas):
            raise DataError(f"gmmn: every kernel bandwidth ({', '.join(f'{s:.3g}' for s in sigmas)}) is over 1,000 "
                            f"times the data's largest pairwise distance ({hi:.3g}) or under 1/1,000 of its smallest "
                            f"({lo:.3g}): the kernels are constant on the data and the MMD trains nothing; leave "
                            "bandwidths=() to set them from the data")

    def check_training_data(self, x: Tensor) -> None:
        """Besides NaN and infinities, image data outside [0, 1], which the sigmoid generator cannot reach (on every
        new run: a trained GMMN, which skips :meth:`setup`, too)."""
        super().check_training_data(x)
        if len(self.data_shape) == 3 and (x.min() < 0 or x.max() > 1):
            raise DataError(f"gmmn: a sigmoid generator needs image data in [0, 1], got values in "
                            f"[{float(x.min()):.3g}, {float(x.max()):.3g}]")

    @torch.no_grad()
    def setup(self, x: Tensor, generator: torch.Generator) -> None:
        """Bandwidths from the data (when not given); the output bias at the data mean (for images
        the logit of the mean pixel, as the VAE does), so training starts at the right place."""
        self.check_training_data(x)  # (fit asked already; setup called directly asks here)
        if self.statistic == "mmd":
            if self.fixed_bandwidths:
                self.check_bandwidths(x)
            else:
                self.set_bandwidths(x, generator)
        mean = x.float().mean(0).reshape(-1)  # (D,)
        last = self.net[0][-1]
        last.bias.copy_(torch.logit(mean.clamp(1e-3, 1 - 1e-3)) if len(self.data_shape) == 3 else mean)

    @property
    def min_loss_examples(self) -> int:
        return 2 if self.statistic == "moments" else 1  # a covariance of one example is none

    def check_batch_size(self, batch_size: int) -> None:
        """``batch_size`` per process: under torchrun the statistics are the global batch's (:meth:`loss`)."""
        if batch_size * distributed.world()[1] < 2 and self.statistic == "moments":
            raise ConfigError("gmmn: statistic=moments compares covariances, which need batches of 2 or more examples")

    def loss(self, x: Tensor) -> dict[str, Tensor]:
        """Compare ``x`` (B, *data_shape) with B generated examples (noise from torch's generator)."""
        x = self.check_input(x)
        z = distributed.randn(x.shape[0], self.latent_dim, device=x.device, dtype=self._zero.dtype)  # (B, L); a slice under torchrun
        g = self._generate(z)                                                                  # (B, *data_shape)
        # under torchrun, the statistics of the global batch: the MMD of a shard is biased by 1/shard (a V-statistic),
        # so N processes trained another objective (at 1 example a process, a collapse to one blob)
        x, g = distributed.global_batch(x), distributed.global_batch(g)                        # (B x N, ...) each
        if self.statistic == "moments":
            mean_gap, cov_gap = moment_gaps(x, g)
            return {"loss": distributed.global_loss(mean_gap + cov_gap), "mean_gap": mean_gap.detach(),
                    "cov_gap": cov_gap.detach()}
        sigmas = self.bandwidths.tolist()
        if not any(sigmas):  # neither given nor set by setup() (a bare model): from this batch
            self.set_bandwidths(x)
            sigmas = self.bandwidths.tolist()
        d2 = mmd2(x, g, sigmas)  # biased V-statistic, >= 0: Gretton et al. 2012 eq. 5, Li et al. 2015 eqs. 1-2
        # Li et al. 2015, Section 3: minimise sqrt(MMD^2), whose gradient does not vanish as MMD -> 0
        return {"loss": distributed.global_loss(d2.clamp_min(1e-12).sqrt()), "mmd2": d2.detach()}

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return [torch.optim.Adam(self.parameters(), lr=self.lr, fused=True)]
