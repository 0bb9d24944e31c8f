"""The semi-supervised VAE "M2" of Kingma, Rezende, Mohamed & Welling 2014, "Semi-supervised Learning
with Deep Generative Models" (Sections 2.2, 3.1.2 and 3.2).

Generative model: y ~ Cat(pi) (uniform), z ~ N(0, I), x ~ p(x | y, z) (Bernoulli on binarized pixels).
Inference: q(y | x) = Cat(pi(x)) (the classifier) and q(z | x, y) = N(mu(x, y), diag sigma^2(x, y)).

Labelled bound (their eq. 6): log p(x, y) >= -L(x, y) =
    E_q(z|x,y)[log p(x | y, z)] + log p(y) - KL(q(z | x, y) || p(z))
Unlabelled bound (eq. 7), y summed out exactly: log p(x) >= -U(x) =
    sum_y q(y | x) (-L(x, y)) + H(q(y | x))
Objective (eq. 9): J^alpha = sum_labelled L(x, y) + sum_unlabelled U(x) + alpha E_labelled[-log q(y | x)].
Every step here takes a batch of unlabelled examples (the whole training set, labels ignored) and a
batch of ``labelled_batch`` of the ``labels`` kept examples, and minimises the per-example means
mean L + mean U + alpha' mean CE. The paper's alpha = 0.1 N on sums puts a weight 0.1 N N_l / N_u on
the classification term relative to the unlabelled mean, i.e. ``alpha' = 0.1 N_l`` for N_l << N
(10 with 100 labels): the default.

The labelled subset is balanced (``labels / n_classes`` per class), chosen once from the training
set by the run's seed, and kept in the checkpoint, so a resumed run trains on the same labels.

>>> import torch, genzoo
>>> m2 = genzoo.build("ssvae", data_shape=(1, 8, 8), latent_dim=4, hidden=(32,), labels=20)
>>> x = torch.rand(6, 1, 8, 8).bernoulli()
>>> m2.classify(x).shape, m2.elbo(x).shape, m2.sample(4, y=torch.tensor([0, 1, 2, 3])).shape
(torch.Size([6]), torch.Size([6]), torch.Size([4, 1, 8, 8]))
>>> m2.analogies(x[:2]).shape                 # each image's style z decoded with every class
torch.Size([2, 10, 1, 8, 8])
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Distribution, Independent, Normal

from ..base import Batch, GenerativeModel
from ..errors import ConfigError, DataError
from ..nn import mlp
from ..registry import register


@register("ssvae", "Semi-supervised VAE M2 (Kingma et al. 2014): labels y, style z, trained from a few labels")
class SSVAE(GenerativeModel):
    """M2 with MLP networks: ``hidden`` sizes for the classifier, the encoder and the decoder,
    ``latent_dim`` for z, ``n_classes`` for y, ``labels`` (labelled examples kept, balanced per class),
    ``labelled_batch`` (labelled examples per step), ``alpha`` (weight of the classification term; 0 picks
    the paper's 0.1 N_l, see the module docstring), ``lr`` (Adam)."""

    def __init__(self, *, data_shape: tuple[int, ...], latent_dim: int = 50, hidden: tuple[int, ...] = (500,),
                 activation: Literal["relu", "softplus", "elu", "tanh"] = "softplus", n_classes: int = 10,
                 labels: int = 100, labelled_batch: int = 100, alpha: float = 0.0, lr: float = 3e-4) -> None:
        super().__init__()
        if latent_dim < 1 or n_classes < 2 or labelled_batch < 1:
            raise ConfigError("ssvae: latent_dim and labelled_batch must be >= 1, n_classes >= 2")
        if labels < n_classes or labels % n_classes:
            raise ConfigError(f"ssvae: labels must be a positive multiple of n_classes ({n_classes}), got {labels}")
        if alpha < 0:
            raise ConfigError(f"ssvae: alpha must be >= 0, got {alpha}")
        self.data_shape, self.latent_dim, self.n_classes = tuple(data_shape), latent_dim, n_classes
        self.labels, self.labelled_batch, self.lr = labels, labelled_batch, lr
        self.alpha = alpha or 0.1 * labels
        d = math.prod(self.data_shape)
        hidden = tuple(hidden)
        self.classifier = mlp([d, *hidden, n_classes], activation)                  # q(y|x)
        self.encoder = mlp([d + n_classes, *hidden, 2 * latent_dim], activation)   # q(z|x,y)
        self.decoder = mlp([latent_dim + n_classes, *reversed(hidden), d], activation)  # p(x|y,z), logits
        # the labelled subset, chosen by setup_labels and saved with the weights
        self.register_buffer("labelled_x", torch.zeros(labels, *self.data_shape))
        self.register_buffer("labelled_y", torch.zeros(labels, dtype=torch.long))
        self.register_buffer("labels_ready", torch.zeros((), dtype=torch.bool))
        self.register_buffer("_zero", torch.zeros(()), persistent=False)

    @classmethod
    def defaults(cls, config: dict) -> dict:
        return {"data": {"name": "digits", "binarize": True}, "train": {"steps": 3000, "batch_size": 100}}

    # -- the labelled subset ------------------------------------------------------------------------------
    @torch.no_grad()
    def setup_labels(self, x: Tensor, y: Tensor, generator: torch.Generator) -> None:
        """Keep ``labels / n_classes`` examples of each class of the training set (grey levels; they are
        binarized afresh at every use, like the unlabelled batches)."""
        if x.min() < 0 or x.max() > 1:
            raise DataError("ssvae: a Bernoulli decoder needs data in [0, 1]")
        per = self.labels // self.n_classes
        keep = []
        for c in range(self.n_classes):
            idx = (y == c).nonzero().flatten()
            if len(idx) < per:
                raise DataError(f"ssvae: class {c} has {len(idx)} training examples, fewer than the {per} labels asked for")
            keep.append(idx[torch.randperm(len(idx), generator=generator)[:per]])
        keep = torch.cat(keep)  # (labels,)
        self.labelled_x.copy_(x[keep].to(self.labelled_x))
        self.labelled_y.copy_(y[keep].to(self.labelled_y))
        self.labels_ready.fill_(True)

    # -- networks -----------------------------------------------------------------------------------------
    def _onehot(self, y: Tensor) -> Tensor:
        return F.one_hot(y, self.n_classes).to(self._zero.dtype)  # (..., K)

    def class_logits(self, x: Tensor) -> Tensor:
        """Logits of q(y|x), (B, K)."""
        return self.classifier(x.reshape(x.shape[0], -1))

    def classify(self, x: Tensor) -> Tensor:
        """The most probable class under q(y|x), (B,)."""
        with torch.no_grad():
            return self.class_logits(x).argmax(-1)

    def encode(self, x: Tensor, y: Tensor | None = None) -> Distribution:
        """q(z|x, y), batch (B,), event (latent_dim,); without ``y``, the classifier's choice."""
        if y is None:
            y = self.class_logits(x).argmax(-1)
        h = self.encoder(torch.cat([x.reshape(x.shape[0], -1), self._onehot(y)], -1))  # (B, 2L)
        mu, log_sigma = h.chunk(2, -1)
        return Independent(Normal(mu, log_sigma.exp(), validate_args=False), 1)

    def decode(self, z: Tensor, y: Tensor) -> Distribution:
        """p(x|y, z): independent Bernoulli pixels, batch z.shape[:-1]."""
        logits = self.decoder(torch.cat([z, self._onehot(y).expand(*z.shape[:-1], self.n_classes)], -1))
        return Independent(torch.distributions.Bernoulli(logits=logits.reshape(*z.shape[:-1], *self.data_shape),
                                                         validate_args=False), len(self.data_shape))

    @property
    def prior(self) -> Distribution:
        zeros = self._zero.expand(self.latent_dim)
        return Independent(Normal(zeros, torch.ones_like(zeros), validate_args=False), 1)

    # -- bounds -------------------------------------------------------------------------------------------
    def _log_px(self, x: Tensor, y: Tensor, z: Tensor) -> Tensor:
        """log p(x | y, z) for z (..., B, L): Bernoulli pixels from logits, (..., B)."""
        logits = self.decoder(torch.cat([z, self._onehot(y).expand(*z.shape[:-1], self.n_classes)], -1))  # (..., B, D)
        target = x.reshape(x.shape[0], -1).expand_as(logits)
        return -F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(-1)

    def _log_w(self, x: Tensor, y: Tensor, k: int) -> Tensor:
        """log p(x, y, z_i) - log q(z_i|x, y) for k reparameterised z_i ~ q(z|x, y): (k, B)."""
        q = self.encode(x, y)
        z = q.rsample((k,))  # (k, B, L)
        return self._log_px(x, y, z) + self.prior.log_prob(z) - q.log_prob(z) - math.log(self.n_classes)  # log p(y) uniform

    def labelled_bound(self, x: Tensor, y: Tensor) -> Tensor:
        """-L(x, y) (B,): the ELBO of log p(x, y) (eq. 6), KL in closed form (Kingma & Welling, App. B)."""
        q = self.encode(x, y)
        mu, sigma = q.base_dist.loc, q.base_dist.scale
        z = q.rsample()  # (B, L)
        log_px = self._log_px(x, y, z)  # (B,)
        kl = 0.5 * (mu.pow(2) + sigma.pow(2) - 1 - 2 * sigma.log()).sum(-1)  # (B,)
        return log_px - kl - math.log(self.n_classes)

    def unlabelled_bound(self, x: Tensor, logits: Tensor | None = None) -> Tensor:
        """-U(x) (B,): sum_y q(y|x) (-L(x, y)) + H(q(y|x)) (eq. 7), every class enumerated."""
        B, K = x.shape[0], self.n_classes
        logits = self.class_logits(x) if logits is None else logits
        log_q = F.log_softmax(logits, -1)  # (B, K)
        ys = torch.arange(K, device=x.device).repeat_interleave(B)  # (K*B,) class-major
        bounds = self.labelled_bound(x.repeat(K, *[1] * (x.dim() - 1)), ys).reshape(K, B).T  # (B, K)
        q = log_q.exp()
        return (q * bounds).sum(-1) - (q * log_q).sum(-1)

    def elbo(self, x: Tensor) -> Tensor:
        """The unlabelled bound -U(x) on log p(x), (B,)."""
        return self.unlabelled_bound(x)

    @torch.no_grad()
    def iwae_bound(self, x: Tensor, k: int) -> Tensor:
        """log p(x) >= E log sum_y (1/k) sum_i p(x, y, z_i) / q(z_i|x, y): an IWAE bound (Burda et al. 2015)
        for each class, the classes summed exactly; (B,)."""
        per_class = [torch.logsumexp(self._log_w(x, torch.full((x.shape[0],), c, device=x.device), k), 0) - math.log(k)
                     for c in range(self.n_classes)]  # K x (B,)
        return torch.logsumexp(torch.stack(per_class), 0)

    # -- training -----------------------------------------------------------------------------------------
    def loss(self, x: Tensor) -> dict[str, Tensor]:
        """The unlabelled objective alone (validation): mean U(x)."""
        u = -self.unlabelled_bound(x).mean()
        return {"loss": u, "unlabelled": u.detach()}

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return [torch.optim.Adam(self.parameters(), lr=self.lr)]

    def training_step(self, batch: Batch, optimizers: list[torch.optim.Optimizer]) -> dict[str, float]:
        (opt,) = optimizers
        if not bool(self.labels_ready):
            raise DataError("ssvae needs a training set with labels (e.g. digits or mnist), this one has none")
        idx = torch.randint(self.labels, (self.labelled_batch,), device=self.labelled_y.device)  # global RNG: resumable
        xl, yl = torch.bernoulli(self.labelled_x[idx]), self.labelled_y[idx]  # dynamic binarization
        labelled = -self.labelled_bound(xl, yl).mean()
        ce = F.cross_entropy(self.class_logits(xl), yl)
        unlabelled = -self.unlabelled_bound(batch.x).mean()
        loss = labelled + unlabelled + self.alpha * ce
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {k: float(v.detach()) for k, v in (("loss", loss), ("labelled", labelled), ("unlabelled", unlabelled), ("ce", ce))}

    # -- sampling and analogies ---------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, y: Tensor | None = None) -> Tensor:
        """``n`` decoder means (n, *data_shape) for z ~ p(z) and y ~ p(y) (or the given classes (n,))."""
        if y is None:
            y = torch.randint(self.n_classes, (n,), generator=generator)
        z = torch.randn(n, self.latent_dim, generator=generator)
        return self.decode(z.to(self.device), y.to(self.device)).mean

    @torch.no_grad()
    def analogies(self, x: Tensor) -> Tensor:
        """The paper's Figure 1: z = E q(z|x) inferred from each image, decoded with every class:
        (B, K, *data_shape)."""
        z = self.encode(x).mean  # (B, L)
        B, K = x.shape[0], self.n_classes
        ys = torch.arange(K, device=x.device).repeat(B)  # (B*K,)
        return self.decode(z.repeat_interleave(K, 0), ys).mean.reshape(B, K, *self.data_shape)
