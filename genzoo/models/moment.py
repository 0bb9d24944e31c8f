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

Logged terms (``statistic="mmd"``): ``loss`` is the objective sqrt(MMD_b^2) of the batch, and ``mmd2`` the
unbiased MMD_u^2 of the same batch and kernels (detached, no gradient; it may be slightly negative). MMD_b^2 carries
a bias of about S (1/N + 1/M) (1 - mean kernel) that shrinks with the batch, so ``loss`` is no measure of the fit
across batch sizes: for a model whose samples are ring data (the default bandwidths), MMD_b^2 averages 0.047 at
the training batch of 128 and 0.0038 at the 2,000 validation examples, 12 times less, and ``loss`` reads 0.21 and
0.06. MMD_u^2 averages the population MMD^2 at any batch size (there 0.0001 +- 0.0012 and 0.0008 +- 0.0004: about 0
for a perfect generator), so ``mmd2`` and ``valid_mmd2`` are one quantity, drawn on one panel by ``genzoo report``;
``loss`` and ``valid_loss`` are drawn apart (``valid_loss_is_training_loss = False``).

Kernel bandwidths: ``bandwidths=()`` (the default) sets them in :meth:`GMMN.setup` from the data:
``sigma_s = f_s * m`` with ``m`` the median pairwise distance of 1,000 training examples (the
median heuristic of Gretton et al. 2012, widened to a multi-scale family) and
``f_s = 1/64, 1/16, 1/4, 1, 4``. The data's own scale fixes the range: on the unit ring (m = 1.41:
sigma = 0.022 .. 5.7) the smallest is at the scale of its modes (std 0.01 at radius 1) and the
largest sees the whole ring; on 8x8 digits m = 3.1 (sigma = 0.05 .. 12). On MNIST (m = 10.3,
sigma = 0.16 .. 41) the narrow end is idle: in a batch of 256 distinct images the median
nearest-neighbour distance is 6.4 (the least 1.8), so the sigma-0.16 kernel is ~0 between any two
(at most 2e-29) and the 0.64 one nearly so (at most 0.016, ~1e-6 on average): 3 of the 5 kernels
(2.6, 10, 41) carry the gradient. Spacing by factors of 4 costs half as much as factors of 2
and measured the same on the ring. The bandwidths live in a buffer, so they travel with the
weights through ``save``/``load`` and checkpoints; given explicitly they are used as they are, each in
[1e-6, 1e18] (``1 / (2 sigma^2)`` a normal float32). ``setup`` refuses a set of which every one is over
1,000 times the data's largest pairwise distance (kernels constant on the data: the MMD would train
nothing), and warns where every one is that wide or so narrow that its kernel is under 1e-3 at the median
nearest-neighbour distance of 128 examples, a training batch (:meth:`GMMN.check_bandwidths`).

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
import warnings
from typing import Literal, Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal

from ..base import GenerativeModel
from ..errors import ConfigError, DataError, GenZooWarning
from ..nn import ACTIVATIONS, Activation, mlp
from ..registry import register
from ..train import distributed

#: ``bandwidths=()``: sigma_s = factor * (median pairwise distance of the data), factors 4^-3 .. 4
BANDWIDTH_FACTORS = (1 / 64, 1 / 16, 1 / 4, 1.0, 4.0)
#: examples used for the median pairwise distance in ``setup`` (1,000 give ~500k pairs)
MEDIAN_SUBSAMPLE = 1000
#: examples whose nearest-neighbour distances ``check_bandwidths`` compares given bandwidths with: the default batch
NN_SUBSAMPLE = 128


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
    ``bandwidths`` are the sigma_s of :func:`gaussian_kernel`: one or more, each > 0 and finite (a ConfigError
    otherwise); ``x`` and ``y`` must hold examples of the same size (a DataError otherwise). It is computed in the
    wider of their two dtypes, whichever comes first (integers as the default float).

    >>> x, y = torch.tensor([[0.0], [1.0]]), torch.tensor([[0.0]])
    >>> round(float(mmd2(x, y, torch.tensor([1.0]))), 4)   # (2 + 2e^-1/2)/4 - 2(1 + e^-1/2)/2 + 1
    0.1967
    >>> mmd2(x, y, [])
    Traceback (most recent call last):
    ...
    genzoo.errors.ConfigError: mmd2: give one or more kernel bandwidths
    """
    sigmas = _floats(bandwidths)                              # once: no device sync per block
    _check_mmd_args(x, y, sigmas, unbiased)
    x, y = _common_float(x, y)
    return _estimate(*_kernel_blocks(x, y, sigmas), len(sigmas), unbiased)


def _common_float(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """``x`` and ``y`` in one floating dtype, the wider of the two (float32 with float64: float64, in either order),
    integer ones (counts, uint8 pixels) as the default float, as :meth:`~genzoo.base.GenerativeModel.check_input`
    converts them; a no-op (the same tensors, gradients kept) where both are already so."""
    dtypes = [t.dtype if t.is_floating_point() else torch.get_default_dtype() for t in (x, y)]
    dtype = torch.promote_types(*dtypes)
    return x.to(dtype), y.to(dtype)


def _subsample(x: Tensor, k: int, generator: torch.Generator | None) -> Tensor:
    """A random ``k`` of the examples ``x`` (N, ...) (all of them where N <= k), flattened, in float64: (n', D)."""
    n = x.shape[0]
    idx = torch.randperm(n, generator=generator)[:k] if n > k else torch.arange(n)
    return x[idx.to(x.device)].reshape(len(idx), -1).double()


def _estimate(kxx: Tensor, kyy: Tensor, kxy: Tensor, s: int, unbiased: bool) -> Tensor:
    """MMD_b^2 or MMD_u^2 (:func:`mmd2`) from the kernel blocks of a sum of ``s`` kernels (:func:`_kernel_blocks`)."""
    if unbiased:
        n, m = kxx.shape[0], kyy.shape[0]  # k(a, a) = S exactly on the diagonal (its distances are exactly 0)
        return (kxx.sum() - s * n) / (n * (n - 1)) + (kyy.sum() - s * m) / (m * (m - 1)) - 2 * kxy.mean()
    return kxx.mean() + kyy.mean() - 2 * kxy.mean()


def _check_mmd_args(x: Tensor, y: Tensor, sigmas: list[float], unbiased: bool) -> None:
    """:func:`mmd2`'s one-line refusals, from shapes and the bandwidths already read (no pass over the data)."""
    if not sigmas:
        raise ConfigError("mmd2: give one or more kernel bandwidths")
    if not all(0 < s < math.inf for s in sigmas):  # NaN fails it too
        raise ConfigError(f"mmd2: kernel bandwidths must be > 0 and finite, got {sigmas}")
    for name, t in (("x", x), ("y", y)):
        if not isinstance(t, Tensor) or t.dim() < 1:
            got = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise DataError(f"mmd2: {name} must be a tensor of examples (N, ...), got {got}")
        if not t.shape[0]:
            raise DataError(f"mmd2: {name} holds no examples")
    if math.prod(x.shape[1:]) != math.prod(y.shape[1:]):
        raise DataError(f"mmd2: x and y must hold examples of one size, got {tuple(x.shape[1:])} and "
                        f"{tuple(y.shape[1:])}")
    if unbiased and (x.shape[0] < 2 or y.shape[0] < 2):
        raise DataError("the unbiased MMD needs at least 2 examples in each sample")


def _kernel_blocks(x: Tensor, y: Tensor, sigmas: list[float]) -> tuple[Tensor, Tensor, Tensor]:
    """k(x, x') (N, N), k(y, y') (M, M) and k(x, y) (N, M) of checked samples: both estimators are sums of them
    (:meth:`GMMN.loss` takes the two from one set)."""
    n, m = x.shape[0], y.shape[0]
    x, y = x.reshape(n, -1), y.reshape(m, -1).to(x.dtype)    # (N, D), (M, D)
    # shifted by the first sample's mean, which changes no distance: the matmul form loses float32's digits for data
    # far from the origin (moved by 1e4, the MMD read 80% low and the generator collapsed to a point)
    centre = x.detach().mean(0)                               # (D,)
    x, y = x - centre, y - centre                             # (N, D), (M, D)
    # three blocks, so that k(x, x') of a data batch is computed once and stays out of the graph
    kxx = gaussian_kernel(sq_distances(x), sigmas)           # (N, N)
    kyy = gaussian_kernel(sq_distances(y), sigmas)           # (M, M)
    kxy = gaussian_kernel(sq_distances(x, y), sigmas)        # (N, M)
    return kxx, kyy, kxy


def moment_gaps(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """|mean_x - mean_y|^2 and |Cov_x - Cov_y|_F^2 of (N, ...) and (M, ...) samples, two scalars.

    Covariances with the 1/(n-1) normalisation; the examples are flattened to D numbers, computed in the wider
    of the two dtypes (integers as the default float).

    >>> x, y = torch.tensor([[1.0, 0.0], [-1.0, 0.0]]), torch.zeros(2, 2)
    >>> [round(float(t), 4) for t in moment_gaps(x, y)]     # Cov_x = diag(2, 0)
    [0.0, 4.0]
    """
    x, y = _common_float(x.reshape(x.shape[0], -1), y.reshape(y.shape[0], -1))  # (N, D), (M, D)
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
        statistic: "mmd" (the GMMN: trains on the sqrt of the biased MMD^2 with a sum of Gaussian
            kernels, and logs the unbiased MMD^2 as ``mmd2``; batches of 2 or more) or "moments"
            (|mean gap|^2 + |covariance gap|_F^2).
        bandwidths: kernel sigmas in data units; ``()`` sets them in ``setup`` from the data as
            ``BANDWIDTH_FACTORS`` (1/64 .. 4) times the median pairwise distance (see above).
        lr: Adam learning rate.
    """

    DEFAULT_NOTES = {"bandwidths": "(): 1/64 .. 4 times the data's median pairwise distance, set by setup"}
    #: the loss, sqrt(MMD_b^2), carries the biased estimator's bias, which shrinks with the batch: at the 2,000
    #: validation examples it is smaller than at the training batch (a model whose samples are ring data: 0.06 against
    #: 0.21 at 128), so valid_loss and loss are not drawn on one panel; the logged mmd2 (unbiased) and valid_mmd2 are
    #: one quantity at any batch size, drawn on one panel. (Under "moments" too: its covariance gap has a 1/N bias.)
    valid_loss_is_training_loss = False

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
        return torch.pdist(_subsample(x, MEDIAN_SUBSAMPLE, generator))

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
        """Given bandwidths against the data, on their own random subsamples (a generator seeded 0: training's stream
        is untouched):

        * a DataError where every one is over 1,000 times the data's largest pairwise distance among (up to 1,000)
          examples, or under 1/1,000 of its smallest nonzero one: every kernel is then about 1 on the data, or about
          0 but between equal points, the MMD and its gradient vanish, and the generator learns nothing;
        * a :class:`~genzoo.errors.GenZooWarning` where none lies between: each is that wide, or so narrow that its
          kernel is under 1e-3 at the median nearest-neighbour distance d_nn of ``NN_SUBSAMPLE`` examples (a
          training batch), exp(-d_nn^2 / (2 sigma^2)) < 1e-3: the kernels vanish between distinct examples of a
          batch, and the data never attract the generator (the ring at sigma 0.001: a flat loss, 3/8 modes). A
          warning, as a user may mean it. Bandwidths at the scale of tight clusters, far below the median distance,
          pass.
        """
        if x.shape[0] < 2:
            return
        d = self.pair_distances(x, torch.Generator().manual_seed(0))  # its own stream: training's is untouched
        d = d[d > 0]
        if not len(d):
            return
        lo, hi, sigmas = float(d.min()), float(d.max()), self.bandwidths.tolist()
        shown = ", ".join(f"{s:.3g}" for s in sigmas)
        wide = [s > 1e3 * hi for s in sigmas]
        if all(w or s < 1e-3 * lo for s, w in zip(sigmas, wide)):
            raise DataError(f"gmmn: every kernel bandwidth ({shown}) is over 1,000 times the data's largest "
                            f"pairwise distance ({hi:.3g}) or under 1/1,000 of its smallest ({lo:.3g}): the kernels are "
                            "constant on the data and the MMD trains nothing; leave bandwidths=() to set them from the "
                            "data")
        d_nn = self.nn_distance(x, torch.Generator().manual_seed(0))
        narrow = [s for s, w in zip(sigmas, wide) if not w and math.exp(-d_nn**2 / (2 * s**2)) < 1e-3]
        if len(narrow) + sum(wide) == len(sigmas):  # (exp underflows to 0.0 for the narrowest: no error)
            one = len(narrow) == 1
            also = (f", and {', '.join(f'{s:.3g}' for s, w in zip(sigmas, wide) if w)} over 1,000 times its largest "
                    f"pairwise distance ({hi:.3g})") if any(wide) else ""
            which = "the kernels are constant on the data or" if also else "its kernel is" if one else "their kernels are"
            warnings.warn(f"gmmn: kernel bandwidth{'s' * (not one)} {', '.join(f'{s:.3g}' for s in narrow)} "
                          f"{'is' if one else 'are'} narrow against the data's median nearest-neighbour distance in a "
                          f"batch of {NN_SUBSAMPLE} ({d_nn:.3g}){also}: {which} under 1e-3 between distinct examples "
                          "of a batch, so the data never attract the generator; leave bandwidths=() to set them from "
                          "the data", GenZooWarning, stacklevel=3)

    @staticmethod
    def nn_distance(x: Tensor, generator: torch.Generator | None = None) -> float:
        """The median nearest-neighbour Euclidean distance among (up to ``NN_SUBSAMPLE`` of) ``x`` (N, ...), N >= 2:
        the distance at which the examples of a training batch see one another.

        >>> GMMN.nn_distance(torch.tensor([[0.0], [1.0], [3.0], [7.0], [8.0]]))   # neighbours at 1, 1, 2, 1, 1
        1.0
        >>> GMMN.nn_distance(torch.tensor([[0.0], [2.0], [5.0]]))                 # neighbours at 2, 2, 3
        2.0
        """
        a = _subsample(x, NN_SUBSAMPLE, generator)               # (n', D)
        d = torch.cdist(a, a).fill_diagonal_(math.inf)            # (n', n')
        return float(d.min(1).values.median())                  # (the lower median, as median_distance's)

    def outside_unit_interval(self, lo: float, hi: float) -> str | None:
        """Image data outside [0, 1] (in [lo, hi]), which the sigmoid generator cannot reach: refused besides NaN and
        infinities by :meth:`~genzoo.base.GenerativeModel.check_training_data` (one pass, :meth:`check_pixels`) on
        every new run (a trained GMMN, which skips :meth:`setup`, too). Vector data take any range."""
        if len(self.data_shape) != 3:
            return None
        return (f"gmmn: a sigmoid generator needs image data in [0, 1], got values in [{lo:.3g}, {hi:.3g}]; "
                "scale the images to [0, 1]")

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
        return 2  # a covariance of one example is none; the unbiased MMD (the logged mmd2) leaves out i = j

    def check_batch_size(self, batch_size: int) -> None:
        """``batch_size`` per process: under torchrun the statistics are the global batch's (:meth:`loss`). Both
        statistics need 2 or more examples a batch."""
        if batch_size * distributed.world()[1] >= 2:
            return
        if self.statistic == "moments":
            raise ConfigError("gmmn: statistic=moments compares covariances, which need batches of 2 or more examples")
        # MMD_b^2 of M = N = 1 is 2S - 2k(x, g): no k(g, g') term pushes generated examples apart (measured on the
        # ring: 2/8 modes, samples' std 0.17 against the ring's 0.71)
        raise ConfigError("gmmn: the MMD of a batch of 1 example has no term that pushes generated examples apart, so "
                          "the generator collapses to a point: use batches of 2 or more (64 or more advised)")

    def loss(self, x: Tensor) -> dict[str, Tensor]:
        """Compare ``x`` (B, *data_shape) with B generated examples (noise from torch's generator): under "mmd",
        ``loss`` sqrt(MMD_b^2) and ``mmd2`` the unbiased MMD_u^2 (logged, no gradient), from one set of kernel
        blocks; under "moments", ``loss`` the sum of ``mean_gap`` and ``cov_gap``."""
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
        if x.shape[0] < 2:  # (fit refuses such batches before any work: check_batch_size, min_loss_examples)
            raise DataError("gmmn: the MMD compares the examples of a batch and needs 2 or more, got 1")
        sigmas = self.bandwidths.tolist()
        if not any(sigmas):  # neither given nor set by setup() (a bare model): from this batch
            self.set_bandwidths(x)
            sigmas = self.bandwidths.tolist()
        blocks = _kernel_blocks(x, g, sigmas)  # (checked: x by check_input, the sigmas as options or by setup)
        d2 = _estimate(*blocks, len(sigmas), False)  # biased V-statistic, >= 0: Gretton et al. 2012 eq. 5, Li et al. eqs. 1-2
        with torch.no_grad():  # logged: the unbiased U-statistic of the same kernel blocks (no second kernel pass)
            u2 = _estimate(*blocks, len(sigmas), True)
        # Li et al. 2015, Section 3: minimise sqrt(MMD^2), whose gradient does not vanish as MMD -> 0
        return {"loss": distributed.global_loss(d2.clamp_min(1e-12).sqrt()), "mmd2": u2}

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return [torch.optim.Adam(self.parameters(), lr=self.lr, fused=True)]
