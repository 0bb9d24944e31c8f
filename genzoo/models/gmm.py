"""Gaussian mixture model fit by expectation-maximisation (full or diagonal covariance).

The density is :math:`p(x) = \\sum_k \\pi_k \\mathcal{N}(x \\mid \\mu_k, \\Sigma_k)` over the flattened
example ``x`` (D = prod(data_shape)). Training is full-batch EM: every ``training_step`` is one
E-step + M-step over the whole training set, computed in chunks of ``chunk_size`` rows so memory
stays bounded, with the sufficient statistics (N_k, sum r x, sum r x x^T) accumulated in float64.
Initialisation (``setup``) is k-means++ seeding plus at most 10 Lloyd iterations (an empty cluster keeps its
centre), then one M-step from the hard assignments: scikit-learn's ``init_params="kmeans"`` in outline, whose
KMeans runs to convergence and moves empty clusters. A component left with no data (the data hold fewer
distinct points than K, as integer data or repeated rows can) starts EM at a weight of about 1e-15 / N, where
it stayed in every such run measured: ``setup`` warns (:class:`~genzoo.errors.GenZooWarning`), as
scikit-learn's KMeans does. It warns too of a feature constant in vector training data, whose variance is then
``reg_covar`` in every component, so that its share of the log-likelihood is set by ``reg_covar`` (the flows refuse
such data; scikit-learn takes it silently).

Parameters are buffers (saved with the state dict): ``weights`` (K,), ``means`` (K, D) and
``precisions_cholesky``, stored as scikit-learn stores ``precisions_cholesky_``: for "full" an
upper-triangular (K, D, D) ``U_k`` with precision ``U_k U_k^T`` (so the Mahalanobis term is
``|(x - mu_k) U_k|^2``); for "diag" (K, D) the inverse standard deviations. ``covariances`` is a
property.

References:
    A. P. Dempster, N. M. Laird, D. B. Rubin, "Maximum likelihood from incomplete data via the
    EM algorithm", J. Royal Statistical Society B 39(1), 1977.
    C. M. Bishop, "Pattern Recognition and Machine Learning", Springer 2006, §9.2 (the E/M
    formulas; equation numbers are written beside the lines that implement them).
    D. Arthur, S. Vassilvitskii, "k-means++: the advantages of careful seeding", SODA 2007.

>>> import torch
>>> from genzoo.base import Batch
>>> from genzoo.models.gmm import GaussianMixture
>>> g = torch.Generator().manual_seed(0)
>>> x = torch.cat([torch.randn(300, 2, generator=g) - 4, torch.randn(300, 2, generator=g) + 4])
>>> model = GaussianMixture(data_shape=(2,), n_components=2, covariance="diag")
>>> model.setup(x, g)
>>> logs = [model.training_step(Batch(x), []) for _ in range(5)]
>>> logs[-1]["loss"] <= logs[0]["loss"]
True
>>> sorted(round(m) for m in model.means[:, 0].tolist())
[-4, 4]
>>> model.sample(3, generator=g).shape, model.log_prob(x).shape
(torch.Size([3, 2]), torch.Size([600]))
>>> one = GaussianMixture(data_shape=(2,), n_components=1, covariance="diag")
>>> one.setup(x, g); _ = one.training_step(Batch(x), [])
>>> model.bic(x) < one.bic(x)     # BIC prefers the two components the data have
True
"""

from __future__ import annotations

import math
import warnings
from typing import Literal

import torch
from torch import Tensor
from torch.distributions import Categorical, Independent, MixtureSameFamily, MultivariateNormal, Normal

from ..base import Batch, GenerativeModel
from ..errors import ConfigError, DataError, GenZooError, GenZooWarning, TrainingDiverged
from ..registry import register

_LLOYD_ITERS = 10  # Lloyd refinements after the seeding (stops early once assignments settle)
_LOG_2PI = math.log(2 * math.pi)
_EPS64 = torch.finfo(torch.float64).eps


@register("gmm", "Gaussian mixture fit by EM (diagonal or full covariance, k-means++ init)")
class GaussianMixture(GenerativeModel):
    """Gaussian mixture fit by EM (diagonal or full covariance, k-means++ init).

    Args:
        data_shape: shape of one example; inputs (N, *data_shape) are flattened to (N, D).
        n_components: number of mixture components K.
        covariance: "full" (K, D, D) or "diag" (K, D) covariances.
        reg_covar: added to the diagonal of every covariance after each M-step (a variance
            floor, as scikit-learn's ``reg_covar``); keeps constant pixels finite. At least ``dtype``'s smallest
            normal number (or 0), whose precision 1 / reg_covar it can hold.
        init: "kmeans++" seeding or "random" (the examples at K distinct random indices: repeated rows can give
            equal centres) for the centres, each followed by a few Lloyd iterations and an M-step from the hard
            assignments.
        chunk_size: rows per chunk in the E-step / statistics; bounds memory to O(chunk * D).
        dtype: computation and storage dtype of the parameters.
    """

    full_batch = True

    @classmethod
    def defaults(cls, config: dict) -> dict:
        """Digits, dequantized once (a density on [0,1]^64 is then a likelihood bound); 100 EM steps, each logged
        (a row of several would average the likelihoods of several parameter sets)."""
        return {"data": {"name": "digits", "dequantize": True},
                "train": {"steps": 100, "checkpoint_every": 25, "log_every": 1}}

    def __init__(self, *, data_shape: tuple[int, ...], n_components: int = 10,
                 covariance: Literal["full", "diag"] = "full", reg_covar: float = 1e-6,
                 init: Literal["kmeans++", "random"] = "kmeans++", chunk_size: int = 4096,
                 dtype: Literal["float32", "float64"] = "float32") -> None:
        super().__init__()
        data_shape = tuple(int(s) for s in data_shape)
        if not data_shape or any(s < 1 for s in data_shape):
            raise ConfigError(f"gmm: data_shape must be positive sizes, got {data_shape}")
        if int(n_components) != n_components or n_components < 1:
            raise ConfigError(f"gmm: n_components must be an integer >= 1, got {n_components}")
        if not reg_covar >= 0:  # also rejects NaN
            raise ConfigError(f"gmm: reg_covar must be >= 0, got {reg_covar}")
        if covariance not in ("full", "diag"):
            raise ConfigError(f"gmm: covariance must be 'full' or 'diag', got {covariance!r}")
        if init not in ("kmeans++", "random"):
            raise ConfigError(f"gmm: init must be 'kmeans++' or 'random', got {init!r}")
        if int(chunk_size) != chunk_size or chunk_size < 1:
            raise ConfigError(f"gmm: chunk_size must be an integer >= 1, got {chunk_size}")
        if dtype not in ("float32", "float64"):
            raise ConfigError(f"gmm: dtype must be 'float32' or 'float64', got {dtype!r}")
        _check_reg_covar(float(reg_covar), dtype)
        self.data_shape = data_shape
        self.n_components = K = int(n_components)
        self.covariance_type = covariance
        self.reg_covar = float(reg_covar)
        self.init = init
        self.chunk_size = int(chunk_size)
        self.dim = D = math.prod(data_shape)
        dt = getattr(torch, dtype)
        # Before setup: K standard normals at the origin with equal weights (a valid density).
        self.register_buffer("weights", torch.full((K,), 1.0 / K, dtype=dt))  # (K,)
        self.register_buffer("means", torch.zeros(K, D, dtype=dt))  # (K, D)
        if covariance == "full":
            # identities, not torch.eye: on the meta device of load's size check that imports torch._dynamo (2-3 s)
            self.register_buffer("precisions_cholesky", torch.zeros(K, D, D, dtype=dt))  # (K, D, D)
            self.precisions_cholesky.diagonal(dim1=1, dim2=2).fill_(1.0)
        else:
            self.register_buffer("precisions_cholesky", torch.ones(K, D, dtype=dt))  # (K, D)

    def extra_repr(self) -> str:
        return (f"data_shape={self.data_shape}, n_components={self.n_components}, "
                f"covariance={self.covariance_type!r}, reg_covar={self.reg_covar}")

    # -- derived parameters -------------------------------------------------------------------
    @property
    def dtype(self) -> torch.dtype:
        return self.means.dtype

    @property
    def scale_tril(self) -> Tensor:
        """Lower Cholesky factor of each covariance, (K, D, D) (full) or std devs (K, D) (diag)."""
        if self.covariance_type == "diag":
            return self.precisions_cholesky.reciprocal()  # (K, D)
        eye = torch.eye(self.dim, dtype=self.dtype, device=self.means.device)
        # cov = (U U^T)^-1 = U^-T U^-1, and U^-T is lower triangular
        return torch.linalg.solve_triangular(self.precisions_cholesky, eye, upper=True).mT  # (K, D, D)

    @property
    def covariances(self) -> Tensor:
        """Covariance of each component: (K, D, D) for "full", variances (K, D) for "diag".

        One component after one EM step holds the data's maximum-likelihood covariance (divided by N):

        >>> from genzoo.base import Batch
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.randn(500, 2, generator=g) @ torch.tensor([[2.0, 0.0], [1.0, 0.5]])   # correlated
        >>> m = GaussianMixture(data_shape=(2,), n_components=1); m.setup(x, g); _ = m.training_step(Batch(x), [])
        >>> m.covariances.shape, torch.allclose(m.covariances[0], torch.cov(x.T, correction=0), atol=1e-4)
        (torch.Size([1, 2, 2]), True)
        >>> torch.allclose(m.covariances @ m.precisions, torch.eye(2), atol=1e-5)
        True
        """
        L = self.scale_tril
        return L.square() if self.covariance_type == "diag" else L @ L.mT

    @property
    def precisions(self) -> Tensor:
        """Inverse covariances: (K, D, D) for "full", (K, D) for "diag"."""
        U = self.precisions_cholesky
        return U.square() if self.covariance_type == "diag" else U @ U.mT

    @property
    def n_parameters(self) -> int:
        """Free parameters, counted as scikit-learn's ``_n_parameters`` (used by :meth:`bic`).

        K D means, K - 1 weights, and K D (D + 1) / 2 covariance entries ("full") or K D variances ("diag"):

        >>> GaussianMixture(data_shape=(2,), n_components=3).n_parameters                     # 6 + 2 + 9
        17
        >>> GaussianMixture(data_shape=(2,), n_components=3, covariance="diag").n_parameters   # 6 + 2 + 6
        14
        """
        K, D = self.n_components, self.dim
        cov = K * D * (D + 1) // 2 if self.covariance_type == "full" else K * D
        return int(cov + K * D + K - 1)

    def distribution(self) -> MixtureSameFamily:
        """The mixture as a ``torch.distributions`` object over flattened examples (D,)."""
        mix = Categorical(probs=self.weights)
        if self.covariance_type == "full":
            comp = MultivariateNormal(self.means, scale_tril=self.scale_tril)
        else:
            comp = Independent(Normal(self.means, self.scale_tril), 1)
        return MixtureSameFamily(mix, comp)

    # -- density ------------------------------------------------------------------------------
    def _flatten(self, x: Tensor, check_values: bool = False) -> Tensor:
        """(N, *data_shape) or (N, D) -> (N, D) in the model's dtype and device; a DataError, as every family
        gives (:meth:`~genzoo.base.GenerativeModel.check_input`), for anything else (another shape, an empty
        batch, a numpy array or a list), and with ``check_values`` for NaN or infinite values (the densities
        that evaluation calls; :meth:`~genzoo.base.GenerativeModel.check_pixels`)."""
        if isinstance(x, Tensor) and x.dim() == 2 and x.shape[1] == self.dim:  # flattened rows: (N, D)
            x = x.reshape(x.shape[0], *self.data_shape)
        x = self.check_pixels(x) if check_values else self.check_input(x)  # (N, *data_shape)
        return x.reshape(x.shape[0], self.dim).to(self.means.device, self.dtype)

    def _component_log_prob(self, x: Tensor) -> Tensor:
        """log N(x_n | mu_k, Sigma_k) for a chunk x (n, D) -> (n, K)."""
        U, mu = self.precisions_cholesky, self.means
        n, D = x.shape
        # log|Sigma_k|^{-1/2} = sum log diag(U_k)
        if self.covariance_type == "full":
            log_det = U.diagonal(dim1=-2, dim2=-1).log().sum(-1)  # (K,)
            # Mahalanobis |(x - mu_k) U_k|^2: a (n, D) @ (D, D) product per component, computed
            # from the difference (not |x|^2 + |m|^2 - 2 x m^T) so float32 keeps full accuracy
            maha = torch.stack([((x - mu[k]) @ U[k]).square().sum(-1) for k in range(self.n_components)], 1)  # (n, K)
        else:
            log_det = U.log().sum(-1)  # (K,)
            # same difference form: |x|^2 p - 2 x (m p) + |m|^2 p loses float32 digits when a
            # pixel's variance is at the reg_covar floor (p ~ 1e6) -- several nats on images
            maha = torch.stack([((x - mu[k]) * U[k]).square().sum(-1) for k in range(self.n_components)], 1)  # (n, K)
        return -0.5 * (D * _LOG_2PI + maha) + log_det  # (n, K)

    def _weighted_log_prob(self, x: Tensor) -> Tensor:
        """log pi_k + log N(x_n | mu_k, Sigma_k), chunk (n, D) -> (n, K)."""
        return self._component_log_prob(x) + self.weights.log()  # (n, K)

    def _chunks(self, x: Tensor):
        for start in range(0, x.shape[0], self.chunk_size):
            yield x[start:start + self.chunk_size]

    def log_prob(self, x: Tensor) -> Tensor:
        """Exact log-density in nats: (N, *data_shape) -> (N,); NaN or infinite data are a DataError."""
        x = self._flatten(x, check_values=True)  # (N, D)
        return torch.cat([torch.logsumexp(self._weighted_log_prob(c), dim=1) for c in self._chunks(x)])  # (N,)

    def responsibilities(self, x: Tensor) -> Tensor:
        """Posterior component probabilities gamma(z_nk), (N, *data_shape) -> (N, K).

        >>> m = GaussianMixture(data_shape=(1,), n_components=2, covariance="diag")   # unit variances, equal weights
        >>> _ = m.means.copy_(torch.tensor([[-1.0], [1.0]]))
        >>> x = torch.tensor([[-3.0], [0.0], [0.5], [3.0]])
        >>> r = m.responsibilities(x)                           # (4, 2); log N(x; 1, 1) - log N(x; -1, 1) = 2x
        >>> torch.allclose(r.sum(1), torch.ones(4)), torch.allclose(r[:, 1], torch.sigmoid(2 * x[:, 0]))
        (True, True)
        """
        x = self._flatten(x, check_values=True)  # (N, D)
        return torch.cat([torch.softmax(self._weighted_log_prob(c), dim=1) for c in self._chunks(x)])  # (N, K)

    def bic(self, x: Tensor) -> float:
        """Bayesian information criterion: -2 * total log-likelihood + n_parameters * log N."""
        lp = self.log_prob(x).double()  # (N,)
        return float(-2.0 * lp.sum() + self.n_parameters * math.log(lp.shape[0]))

    def loss(self, x: Tensor) -> dict[str, Tensor]:
        return {"loss": -self.log_prob(x).mean()}

    # -- sampling -----------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``n`` examples, (n, *data_shape): a component by weight, then mu_k + L_k eps."""
        n = self.check_count(n)
        dev = generator.device if generator is not None else self.means.device
        comp = torch.multinomial(self.weights.to(dev, torch.float64), n, replacement=True,
                                 generator=generator).to(self.means.device)  # (n,)
        eps = torch.randn(n, self.dim, generator=generator, device=dev, dtype=self.dtype).to(self.means.device)  # (n, D)
        L = self.scale_tril
        if self.covariance_type == "diag":
            x = self.means[comp] + eps * L[comp]  # (n, D)
        else:
            x = torch.empty_like(eps)  # (n, D)
            for k in range(self.n_components):
                idx = (comp == k).nonzero().squeeze(1)  # (n_k,)
                x[idx] = self.means[k] + eps[idx] @ L[k].mT  # (n_k, D)
        return x.reshape(n, *self.data_shape)

    # -- fitting ------------------------------------------------------------------------------
    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return []

    @torch.no_grad()
    def setup(self, x: Tensor, generator: torch.Generator) -> None:
        """k-means++ (or random) seeding, Lloyd refinement, then an M-step from hard assignments.

        Every random draw uses ``generator``, so the result is a function of its state. A :class:`GenZooWarning`
        names the components the initialisation gives no data (they start EM at weight ~0):

        >>> import warnings
        >>> m = GaussianMixture(data_shape=(1,), n_components=3)
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     m.setup(torch.tensor([[0.0], [1.0]]).repeat(5, 1), torch.Generator().manual_seed(0))
        >>> print(caught[0].message)
        gmm: n_components=3 but only 2 distinct points: 1 component gets no data and starts at weight ~0: use n_components <= 2
        """
        x = self._flatten(x)  # (N, D)
        N, K = x.shape[0], self.n_components
        if N < K:
            raise DataError(f"gmm: need at least n_components={K} examples, got {N}")
        if not torch.isfinite(x).all():
            raise DataError("gmm: training data contains NaN or infinite values")
        center = x.double().mean(0).to(self.dtype)  # (D,) shift for accurate squared distances
        x_sq = torch.cat([(c - center).square().sum(1) for c in self._chunks(x)])  # (N,)
        far = float(x_sq.double().max())  # EM sums up to chunk_size such squares (about the components' means)
        if not math.isfinite(far) or 4 * far * min(N, self.chunk_size) > torch.finfo(self.dtype).max:
            spread = f"{math.sqrt(far):.3g}" if math.isfinite(far) else f"more than {math.sqrt(torch.finfo(self.dtype).max):.2g}"
            raise DataError(f"gmm: the data lie up to {spread} from their mean, and EM's {str(self.dtype)[6:]} sums of "
                            "squares would overflow: rescale the data" + (", or --set dtype=float64"
                                                                          if self.dtype != torch.float64 else ""))
        if self.init == "kmeans++":
            centres = self._kmeans_plusplus(x, x_sq, center, generator)  # (K, D)
        else:
            idx = torch.randperm(N, generator=generator, device=_gen_device(generator))[:K]  # (K,)
            centres = x[idx.to(x.device)]  # (K, D)
        centres, labels = self._lloyd(x, x_sq, center, centres)  # (K, D), (N,)
        # a component with no data starts EM at weight ~1e-15 / N (and stays there): said once, here, not per EM step
        if empty := K - int(torch.bincount(labels, minlength=K).count_nonzero()):
            distinct = len(torch.unique(x, dim=0))  # (a sort of the data: only when a cluster is empty)
            few, one = distinct < K, empty == 1
            why = (f" but only {distinct} distinct points" if few else
                   f", and k-means left {empty} cluster{'s' * (not one)} empty")
            gets = f"{empty} component{' gets' if one else 's get'} no data and start{'s' * one} at weight ~0"
            warnings.warn(f"gmm: n_components={K}{why}: {gets}" + (f": use n_components <= {distinct}" if few else ""),
                          GenZooWarning, stacklevel=3)  # (3: setup's caller, past torch.no_grad's wrapper)
        self._warn_constant_features(x)
        nk, sum_d, sum_dd, _ = self._statistics(x, centres, labels=labels)
        self._m_step(nk, sum_d, sum_dd, centres, N, DataError)

    def _warn_constant_features(self, x: Tensor) -> None:
        """A :class:`GenZooWarning` naming the features of vector data ``x`` (N, D) that are constant in the training
        data. Every component gives such a feature the variance ``reg_covar`` (its sample variance is 0), so each adds
        log N(c | c, reg_covar) = -0.5 log(2 pi reg_covar) nats per example to the log-likelihood (5.99 at 1e-6),
        a figure set by ``reg_covar``, not by the data. The flows refuse such data
        (:meth:`~genzoo.models.flows.base.Flow.check_training_data`); scikit-learn takes it, and so does the GMM,
        saying so. Images are left alone: a constant pixel (a digit's border) is what ``reg_covar`` is for.

        >>> m = GaussianMixture(data_shape=(3,), n_components=1)
        >>> x = torch.tensor([[0.0, 1, 2], [1, 1, 3], [2, 1, 5]])
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     m.setup(x, torch.Generator().manual_seed(0))
        >>> print(caught[0].message)
        gmm: feature 1 (1 of 3) is constant in the training data: every component gives it variance reg_covar=1e-06, which adds 5.99 nats per example to the log-likelihood (-0.5 log(2 pi reg_covar): set by reg_covar, not by the data): drop it, or add noise to the data
        """
        if len(self.data_shape) != 1 or x.shape[0] < 2 or self.reg_covar == 0:  # (0: the M-step refuses it)
            return
        lo, hi = x.aminmax(dim=0)  # (D,) each
        const = (lo == hi).nonzero().flatten().tolist()
        if not (k := len(const)):
            return
        which = ", ".join(map(str, const[:5])) + (", ..." if k > 5 else "")
        nats = -0.5 * math.log(2 * math.pi * self.reg_covar)  # log N(c | c, reg_covar), per example and feature
        warnings.warn(f"gmm: feature{'s' * (k > 1)} {which} ({k} of {self.dim}) {'are' if k > 1 else 'is'} constant in "
                      f"the training data: every component gives {'them' if k > 1 else 'it'} variance "
                      f"reg_covar={self.reg_covar:g}, which adds {nats:.3g} nats per example{' for each' * (k > 1)} to "
                      "the log-likelihood (-0.5 log(2 pi reg_covar): set by reg_covar, not by the data): drop "
                      f"{'them' if k > 1 else 'it'}, or add noise to the data", GenZooWarning, stacklevel=4)

    def _sq_dist(self, x: Tensor, x_sq: Tensor, center: Tensor, c: Tensor) -> Tensor:
        """Squared Euclidean distances of every row of x (N, D) to c (m, D) -> (N, m)."""
        cc = c - center  # (m, D)
        c_sq = cc.square().sum(1)  # (m,)
        out = [(x_sq[s:s + len(xc), None] + c_sq - 2 * (xc - center) @ cc.T).clamp_min_(0)  # (n, m)
               for s, xc in zip(range(0, x.shape[0], self.chunk_size), self._chunks(x))]
        return torch.cat(out)  # (N, m)

    def _kmeans_plusplus(self, x: Tensor, x_sq: Tensor, center: Tensor, generator: torch.Generator) -> Tensor:
        """Greedy k-means++ (Arthur & Vassilvitskii 2007, with scikit-learn's 2 + log K local trials)."""
        N, K = x.shape[0], self.n_components
        gdev = _gen_device(generator)
        trials = 2 + int(math.log(K))
        first = torch.randint(N, (1,), generator=generator, device=gdev).to(x.device)  # (1,)
        centres = [x[first]]  # [(1, D)]
        closest = self._sq_dist(x, x_sq, center, x[first]).squeeze(1).double()  # (N,)
        for _ in range(1, K):
            cum = torch.cumsum(closest, 0)  # (N,)
            u = torch.rand(trials, generator=generator, device=gdev, dtype=torch.float64).to(x.device)  # (T,)
            cand = torch.searchsorted(cum, u * cum[-1]).clamp_(max=N - 1)  # (T,) sampled ∝ D(x)^2
            d = torch.minimum(closest[:, None], self._sq_dist(x, x_sq, center, x[cand]).double())  # (N, T)
            best = int(d.sum(0).argmin())  # the candidate that lowers the potential most
            closest = d[:, best]  # (N,)
            centres.append(x[cand[best:best + 1]])
        return torch.cat(centres)  # (K, D)

    def _lloyd(self, x: Tensor, x_sq: Tensor, center: Tensor, centres: Tensor) -> tuple[Tensor, Tensor]:
        """A few Lloyd iterations; returns the centres and the nearest-centre labels (N,)."""
        K = self.n_components
        labels = self._sq_dist(x, x_sq, center, centres).argmin(1)  # (N,)
        for _ in range(_LLOYD_ITERS):
            sums = x.new_zeros(K, self.dim, dtype=torch.float64)  # (K, D)
            counts = x.new_zeros(K, dtype=torch.float64)  # (K,)
            for s, xc in zip(range(0, x.shape[0], self.chunk_size), self._chunks(x)):
                onehot = torch.nn.functional.one_hot(labels[s:s + len(xc)], K).to(x.dtype)  # (n, K)
                sums += (onehot.T @ (xc - center)).double()  # (K, D)  (a GEMM: deterministic)
                counts += onehot.sum(0).double()  # (K,)
            keep = counts == 0  # an empty cluster keeps its centre
            new = (sums / counts.clamp_min(1)[:, None]).to(x.dtype) + center  # (K, D)
            centres = torch.where(keep[:, None], centres, new)  # (K, D)
            new_labels = self._sq_dist(x, x_sq, center, centres).argmin(1)  # (N,)
            if torch.equal(new_labels, labels):
                break
            labels = new_labels
        return centres, labels

    def _statistics(self, x: Tensor, shift: Tensor, labels: Tensor | None = None):
        """Sufficient statistics, accumulated over chunks in float64 about ``shift`` (K, D).

        With ``labels`` the responsibilities are hard (one-hot); otherwise it runs the E-step.
        Returns N_k (K,), sum_n r_nk d_nk (K, D), sum_n r_nk d_nk d_nk^T (K, D, D) or
        sum_n r_nk d_nk^2 (K, D) with d_nk = x_n - shift_k, and the total log-likelihood.
        """
        K, D = self.n_components, self.dim
        f64 = dict(dtype=torch.float64, device=x.device)
        nk = torch.zeros(K, **f64)  # (K,)
        sum_d = torch.zeros(K, D, **f64)  # (K, D)
        sum_dd = torch.zeros(K, D, D, **f64) if self.covariance_type == "full" else torch.zeros(K, D, **f64)
        total_ll = torch.zeros((), **f64)
        for s, xc in zip(range(0, x.shape[0], self.chunk_size), self._chunks(x)):
            if labels is None:
                wlp = self._weighted_log_prob(xc)  # (n, K)  log pi_k N(x_n | mu_k, Sigma_k)
                lse = torch.logsumexp(wlp, dim=1, keepdim=True)  # (n, 1)  log p(x_n)      (9.14)
                r = (wlp - lse).exp()  # (n, K)  gamma(z_nk)                                  (9.13)
                total_ll += lse.sum().double()
            else:
                r = torch.nn.functional.one_hot(labels[s:s + len(xc)], K).to(xc.dtype)  # (n, K)
            nk += r.sum(0).double()  # (K,)  N_k = sum_n gamma(z_nk)                          (9.18)
            for k in range(K):
                d = xc - shift[k]  # (n, D)
                rd = d * r[:, k:k + 1]  # (n, D)
                sum_d[k] += rd.sum(0).double()  # (D,)
                if self.covariance_type == "full":
                    sum_dd[k] += (rd.T @ d).double()  # (D, D)
                else:
                    sum_dd[k] += (rd * d).sum(0).double()  # (D,)
        return nk, sum_d, sum_dd, total_ll

    def _m_step(self, nk: Tensor, sum_d: Tensor, sum_dd: Tensor, shift: Tensor, n: int,
                error: type[GenZooError]) -> None:
        """New weights, means and covariances (+ reg_covar) from float64 statistics."""
        nk = nk + 10 * _EPS64  # (K,)  as scikit-learn: an empty component stays finite
        delta = sum_d / nk[:, None]  # (K, D)  mu_k^new - shift_k
        means = shift.double() + delta  # (K, D)  mu_k = (1/N_k) sum_n gamma_nk x_n              (9.17)
        weights = nk / n  # (K,)  pi_k = N_k / N                                                  (9.22)
        if self.covariance_type == "full":
            # Sigma_k = (1/N_k) sum_n gamma_nk (x_n - mu_k)(x_n - mu_k)^T (+ reg_covar I)           (9.19)
            cov = sum_dd / nk[:, None, None] - delta[:, :, None] * delta[:, None, :]  # (K, D, D)
            cov = 0.5 * (cov + cov.mT)
            cov.diagonal(dim1=-2, dim2=-1).add_(self.reg_covar)
            L, info = torch.linalg.cholesky_ex(cov)  # (K, D, D)
            if bool((info > 0).any()):
                k = int((info > 0).nonzero()[0])
                raise error(self._not_positive_definite(k, float(nk[k])))
            eye = torch.eye(self.dim, dtype=torch.float64, device=L.device)
            prec_chol = torch.linalg.solve_triangular(L, eye, upper=False).mT  # (K, D, D)  U = L^-T
        else:
            var = sum_dd / nk[:, None] - delta.square()  # (K, D)                                 (9.19)
            var = var.clamp_min(0) + self.reg_covar  # (K, D)
            if bool((var <= 0).any()):
                k = int((var <= 0).any(1).nonzero()[0])
                raise error(f"gmm: a variance of component {k} is zero; "
                            f"increase reg_covar (now {self.reg_covar:g})")
            prec_chol = var.rsqrt()  # (K, D)
        self.weights.copy_(weights)
        self.means.copy_(means)
        self.precisions_cholesky.copy_(prec_chol)

    def _not_positive_definite(self, k: int, nk: float) -> str:
        """The message for component ``k``'s covariance, of effective count ``nk``, that Cholesky refused. A component
        that holds no more examples (by responsibility) than dimensions has a singular sample covariance (rank at
        most nk - 1), whatever the data's scale or the dtype: only the floor, fewer components or diagonal
        covariances help (scikit-learn's message for it: "decrease the number of components")."""
        reg = f"now {self.reg_covar:g}, in the data's units squared"
        floor = "give reg_covar > 0" if self.reg_covar == 0 else f"increase reg_covar ({reg})"
        if nk <= self.dim:  # diagonal covariances need two examples: one has zero variance in every direction
            return (f"gmm: component {k} holds {nk:.3g} example{'s' * (f'{nk:.3g}' != '1')} (by responsibility) for {self.dim} dimensions, so its "
                    f"covariance is singular: {floor}" + (", use fewer components (now n_components="
                    f"{self.n_components}), or --set covariance=diag" if nk >= 2 else " or use fewer components "
                    f"(now n_components={self.n_components})"))
        return (f"gmm: covariance of component {k} is not positive definite; {floor}"
                + (", standardise the data, or use --set dtype=float64" if self.dtype != torch.float64
                   else " or standardise the data"))

    @torch.no_grad()
    def training_step(self, batch: Batch, optimizers: list[torch.optim.Optimizer]) -> dict[str, float]:
        """One EM iteration on the whole training set ``batch.x``.

        Returns the mean log-likelihood per example (nats) of the parameters *before* the
        update, as ``log_likelihood`` and its negative as ``loss``. A non-finite E-step leaves
        the parameters unchanged (the trainer then sees the non-finite loss).
        """
        from ..train.distributed import all_reduce_sum

        if self._as_built():
            raise ConfigError(f"gmm: its {self.n_components} components are as built, all equal (a model saved before "
                              "its fit, and loaded: fit trains loaded weights on, without the k-means setup), and EM "
                              "never separates equal components: fit a new model, or call setup(x, generator) first")
        x = self._flatten(batch.x)  # (N, D), this rank's shard under torchrun
        shift = self.means.clone()  # (K, D)  statistics about the old means: no cancellation
        nk, sum_d, sum_dd, total_ll = self._statistics(x, shift)  # E-step
        # data-parallel EM: the statistics are sums over examples, so the shards' sums add up
        N = int(all_reduce_sum(torch.tensor([float(x.shape[0])], dtype=torch.float64, device=nk.device)))
        if N == 0:
            raise DataError("gmm: empty training set")
        for t in (nk, sum_d, sum_dd):
            all_reduce_sum(t)
        total_ll = all_reduce_sum(torch.as_tensor(total_ll, dtype=torch.float64, device=nk.device).reshape(1))[0]
        ll = float(total_ll) / N  # mean of (9.14) per example
        if math.isfinite(ll):
            self._m_step(nk, sum_d, sum_dd, shift, N, TrainingDiverged)  # M-step
        return {"loss": -ll, "log_likelihood": ll}


    def _as_built(self) -> bool:
        """Whether the K > 1 components are still the constructor's (equal weights, means 0, unit precisions), which
        EM cannot tell apart: every E-step gives each the same responsibilities, every M-step the same parameters
        (one Gaussian copied K times). ``setup`` (k-means) moves them; a model saved before it and loaded skips it."""
        if self.n_components == 1 or self.means.any():
            return False
        eye = torch.eye(self.dim, dtype=self.means.dtype, device=self.means.device)
        unit = eye if self.covariance_type == "full" else eye.diagonal()  # (D, D) or (D,)
        return bool((self.precisions_cholesky == unit).all() and (self.weights == self.weights[0]).all())


def _check_reg_covar(reg_covar: float, dtype: str) -> None:
    """A ConfigError for a positive ``reg_covar`` below ``dtype``'s smallest normal number: the precision
    1 / reg_covar of a constant feature would overflow to inf in the model's buffers (``precisions`` squares
    the stored 1 / sqrt(var)), and EM's first step then failed as a NaN loss blamed on the data's scale."""
    tiny = torch.finfo(getattr(torch, dtype)).tiny
    if 0 < reg_covar < tiny:
        wider = ", or --set dtype=float64" if dtype == "float32" and reg_covar >= torch.finfo(torch.float64).tiny else ""
        raise ConfigError(f"gmm: reg_covar={reg_covar:g} is below the smallest normal {dtype} ({tiny:.3g}), and its "
                          f"precision 1/reg_covar would overflow: give reg_covar >= {tiny:.3g}{wider}")


def _gen_device(generator: torch.Generator | None) -> torch.device | None:
    return generator.device if generator is not None else None
