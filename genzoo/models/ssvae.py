"""The semi-supervised VAE "M2" of Kingma, Rezende, Mohamed & Welling 2014, "Semi-supervised Learning
with Deep Generative Models" (Sections 2.2, 3.1.2 and 3.2).

Generative model: y ~ Cat(pi) (uniform), z ~ N(0, I), x ~ p(x | y, z) (Bernoulli on binarized pixels).
Inference: q(y | x) = Cat(pi(x)) (the classifier) and q(z | x, y) = N(mu(x, y), diag sigma^2(x, y)).

Labelled bound (their eq. 6): log p(x, y) >= -L(x, y) =
    E_q(z|x,y)[log p(x | y, z)] + log p(y) - KL(q(z | x, y) || p(z))
Unlabelled bound (eq. 7), y summed out exactly: log p(x) >= -U(x) =
    sum_y q(y | x) (-L(x, y)) + H(q(y | x))
Objective (eq. 9): J^alpha = sum_labelled L(x, y) + sum_unlabelled U(x) + alpha E_labelled[-log q(y | x)],
alpha = 0.1 N. Every step here takes a batch of unlabelled examples (the whole training set, labels
ignored) and a batch of ``labelled_batch`` of the ``labels`` kept examples, and minimises the per-example
means ``labelled_weight`` mean L + mean U + alpha' mean CE. Divided by N_u, the paper's sums weigh mean L
by N_l / N_u (0.002 for 100 labels of 50,000) and mean CE by 0.1 N / N_u ~ 0.1 if E_labelled is an average,
or by 0.1 N N_l / N_u ~ 0.1 N_l if it is a sum over the labelled set (10 for 100 labels). The authors'
code settles it for the first reading (dpkingma/nips14-ssl, ``learn_yz_x_ss.py``: each labelled example's
log q(y|x) weighted by alpha N / N_l with alpha = 0.1, summed over the labelled set: 0.1 N times the mean).
genzoo's default, alpha' = 0.1 N_l (the second reading's value) with labelled_weight = 1, is its own,
empirical choice, not the paper's: it gives the labelled bound the weight of the unlabelled one and the
classifier 100 times the paper's, so that the 100 labels shape p(x|y,z) and q(y|x) within a few epochs
rather than the paper's thousands. (On MNIST with 100 labels and 2,000 steps, alpha' of 1 or 10 and labelled_weight
of 0.05 or 1 gave errors within 2-3 points of each other: q(y|x) fits the 100 labels within ~1,000 steps
whichever is used. The paper's own weights, alpha' = 0.1 and labelled_weight = 0.002, with the shared
trunk below: 37.5% after 2,000 steps, 40% after 6,000 of a 10,000-step run.)

Options beyond the paper's networks (all off by default): ``shared_trunk`` makes q(y|x) and q(z|x,y)
heads on one feature network of x, so that the unlabelled bound, through q(z|x,y), trains the features
the classifier reads; ``y_every_layer`` concatenates y to the input of every decoder layer;
``batch_norm`` normalises the hidden layers of the inference networks. What they did on MNIST with 100
labels (2,000 steps, seed 0): batch normalisation with y at every layer 28.7%, adding the shared trunk
24.7% (alpha' = 1: 24.3%). A small z (3 to 10 dimensions) makes the decoder use y (a decoded z is read as
the class it was decoded with 60-99% of the time, against 20% at 50 dimensions) but does not help the
classifier (28-39%): p(x|y,z) then learns what y means from the classifier's own confident mistakes, and
the unlabelled bound pulls q(y|x) towards that generative posterior, which is no more accurate.
That recipe (shared trunk, batch normalisation, y at every layer, alpha' = 1, Adam 3e-4) gave 26.4 +- 1.3%
after 2,000 steps (3 seeds) and 29.5% after 10,000 (seed 0). Its generative posterior argmax_y -L(x, y) was
wrong on ~70% of test digits, so the unlabelled bound had nothing to teach q(y|x).

Three more options, off by default and in training only, make that posterior a classifier:
``kl_weight`` (beta of Higgins et al. 2017, "beta-VAE", ICLR) multiplies KL(q(z|x,y) || p(z)) in both
bounds of the training step, so that z's information costs more and the class goes into y (the public
bounds, evaluation and the validation loss keep the true bound, beta = 1); ``classifier_dropout`` and
``classifier_input_dropout`` (Srivastava et al. 2014, JMLR 15) drop the features the classifier reads and
the pixels of its own pass through the trunk, so that q(y|x) fits the 100 labels more slowly.
``configs/ssvae-mnist.toml`` (beta = 5, dropout 0.2 on the pixels and 0.5 on the features, Adam 4e-3,
15,000 steps) gives 11.17 +- 0.94% (3 seeds), under the paper's 11.97 +- 1.71 (13.0 +- 0.3% at 6,000
steps); the pilots are in BENCHMARKS.md (``m2-mnist`` notes).

The labelled subset is balanced (``labels / n_classes`` per class), chosen once, by the first run's seed from
its training set, and kept with the weights: a resumed run, a second ``fit`` and a loaded model's ``fit`` train
on the same labels (:meth:`SSVAE.reset_labels` asks the next one for a new draw).

The public bounds (``elbo``, ``labelled_bound``, ``unlabelled_bound``, ``iwae_bound``), ``classify``, ``encode``
and ``analogies`` run in eval mode whatever the model's (batch-norm running statistics, no dropout, beta = 1): a
model just built (in train mode) gives the numbers a trained or loaded one would. They check their images as
the bounds do (:meth:`~genzoo.base.GenerativeModel.check_pixels`): NaN, or pixels outside [0, 1] such as uint8
images of 0..255, are a DataError.

>>> import torch, genzoo
>>> m2 = genzoo.build("ssvae", data_shape=(1, 8, 8), latent_dim=4, hidden=(32,), labels=20)
>>> x = torch.rand(6, 1, 8, 8).bernoulli()
>>> m2.classify(x).shape, m2.elbo(x).shape, m2.sample(4, y=torch.tensor([0, 1, 2, 3])).shape
(torch.Size([6]), torch.Size([6]), torch.Size([4, 1, 8, 8]))
>>> m2.analogies(x[:2]).shape                 # each image's style z decoded with every class
torch.Size([2, 10, 1, 8, 8])
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Distribution, Independent, Normal

from ..base import Batch, GenerativeModel, evaluating
from ..errors import ConfigError, DataError
from ..nn import mlp
from ..nn.linear import Linear
from ..nn.mlp import ACTIVATIONS
from ..registry import register
from ..train import distributed
from .vae import bernoulli_log_prob, elements_per_row, iwae_chunk, log_mean_exp_chunked


@register("ssvae", "Semi-supervised VAE M2 (Kingma et al. 2014): labels y, style z, trained from a few labels")
class SSVAE(GenerativeModel):
    """M2 with MLP networks: ``hidden`` sizes for the classifier, the encoder and the decoder,
    ``latent_dim`` for z, ``n_classes`` for y, ``labels`` (labelled examples kept, balanced per class),
    ``labelled_batch`` (labelled examples per step), ``alpha`` (weight of the classification term; 0 picks
    0.1 N_l, genzoo's default, which the module docstring compares with the paper's weights; a term that
    small but not 0, such as 1e-9, all but turns it off), ``lr`` (Adam). ``classifier_hidden`` and
    ``decoder_hidden`` override ``hidden`` for q(y|x) and p(x|y,z) (the decoder's default: ``hidden``
    reversed); ``y_every_layer`` feeds y to every layer of the decoder, not only its first;
    ``batch_norm`` adds batch normalisation after the hidden layers of q(y|x) and q(z|x,y) (and of the
    trunk); ``shared_trunk`` builds a trunk of ``hidden`` layers on x whose features feed q(y|x) (a head
    with ``classifier_hidden`` layers, none by default) and q(z|x,y) (a head of one hidden layer of
    ``hidden[-1]`` units on the features and y); ``labelled_weight`` weighs the labelled bound;
    ``classifier_dropout`` and ``classifier_input_dropout`` drop (in training) the classifier's features
    and the pixels of its pass through the trunk (Srivastava et al. 2014); ``kl_weight`` multiplies the
    KL of z in both bounds of the training step (beta, Higgins et al. 2017). See the module docstring."""

    bernoulli_pixels = True  # p(x|y, z) is a mass on binary pixels

    needs_labels = True

    DEFAULT_NOTES = {"alpha": "0: 0.1 x labels, genzoo's default (the paper's code amounts to about 0.1 with "
                              "labelled_weight = labels / N); a tiny value such as 1e-9 all but turns it off",
                     "classifier_hidden": "None (or an empty value): hidden, none with shared_trunk; [] for none",
                     "decoder_hidden": "None: hidden reversed"}

    def __init__(self, *, data_shape: tuple[int, ...], latent_dim: int = 50, hidden: tuple[int, ...] = (500,),
                 activation: Literal["relu", "softplus", "elu", "tanh"] = "softplus", n_classes: int = 10,
                 labels: int = 100, labelled_batch: int = 100, alpha: float = 0.0, lr: float = 3e-4,
                 classifier_hidden: tuple[int, ...] | None = None, decoder_hidden: tuple[int, ...] | None = None,
                 y_every_layer: bool = False, batch_norm: bool = False, shared_trunk: bool = False,
                 labelled_weight: float = 1.0, classifier_dropout: float = 0.0,
                 classifier_input_dropout: float = 0.0, kl_weight: float = 1.0) -> None:
        super().__init__()
        for name, value, least in (("latent_dim", latent_dim, 1), ("n_classes", n_classes, 2), ("labelled_batch", labelled_batch, 1)):
            if value < least:
                raise ConfigError(f"ssvae: {name} must be >= {least}, got {value}")
        if labels < n_classes or labels % n_classes:
            raise ConfigError(f"ssvae: labels must be a positive multiple of n_classes ({n_classes}), got {labels}")
        if batch_norm and labelled_batch < 2:  # batch statistics of one example: torch refuses them mid-step
            raise ConfigError(f"ssvae: batch_norm needs labelled_batch >= 2, got {labelled_batch}")
        if alpha < 0 or labelled_weight < 0:
            raise ConfigError(f"ssvae: alpha and labelled_weight must be >= 0, got {alpha} and {labelled_weight}")
        if not (0 <= classifier_dropout < 1 and 0 <= classifier_input_dropout < 1):
            raise ConfigError("ssvae: classifier_dropout and classifier_input_dropout must be in [0, 1)")
        self.classifier_dropout, self.classifier_input_dropout = classifier_dropout, classifier_input_dropout
        if kl_weight <= 0:
            raise ConfigError(f"ssvae: kl_weight must be > 0, got {kl_weight}")
        self.kl_weight = kl_weight
        self.data_shape, self.latent_dim, self.n_classes = tuple(data_shape), latent_dim, n_classes
        self.labels, self.labelled_batch, self.lr = labels, labelled_batch, lr
        self.alpha = alpha or 0.1 * labels
        self.labelled_weight = labelled_weight
        d = math.prod(self.data_shape)
        hidden = tuple(hidden)
        chidden = hidden if classifier_hidden is None else tuple(classifier_hidden)
        dhidden = tuple(reversed(hidden)) if decoder_hidden is None else tuple(decoder_hidden)
        net = functools.partial(mlp, batch_norm=batch_norm)
        if shared_trunk:  # q(y|x) and q(z|x,y) read the same features of x
            if not hidden:
                raise ConfigError("ssvae: shared_trunk needs at least one hidden layer")
            self.trunk = torch.nn.Sequential(*net([d, *hidden, 1], activation)[:-1])
            self.classifier = net([hidden[-1], *(classifier_hidden or ()), n_classes], activation)
            self.encoder = net([hidden[-1] + n_classes, hidden[-1], 2 * latent_dim], activation)
        else:
            self.trunk = torch.nn.Identity()
            self.classifier = net([d, *chidden, n_classes], activation)                  # q(y|x)
            self.encoder = net([d + n_classes, *hidden, 2 * latent_dim], activation)   # q(z|x,y)
        if y_every_layer:  # p(x|y,z), logits
            self.decoder = _ConditionedMLP([latent_dim, *dhidden, d], n_classes, activation)
        else:
            self.decoder = mlp([latent_dim + n_classes, *dhidden, d], activation)
        self.y_every_layer, self.batch_norm = y_every_layer, batch_norm
        # the labelled subset, chosen by setup_labels and saved with the weights
        self.register_buffer("labelled_x", torch.zeros(labels, *self.data_shape))
        self.register_buffer("labelled_y", torch.zeros(labels, dtype=torch.long))
        self.register_buffer("labels_ready", torch.zeros((), dtype=torch.bool))
        # 1 where the training batches are binarized (the labelled examples then are too, afresh at every use),
        # 0 where they are grey levels fed as they are
        self.register_buffer("labelled_binarize", torch.ones(()))
        self.register_buffer("_zero", torch.zeros(()), persistent=False)

    @classmethod
    def defaults(cls, config: dict) -> dict:
        return {"data": {"name": "digits", "binarize": True}, "train": {"steps": 3000, "batch_size": 100}}

    def check_batch_size(self, batch_size: int) -> None:
        if self.batch_norm and batch_size < 2:  # (the unlabelled batches: one example has no batch statistics)
            raise ConfigError("ssvae: batch_norm needs batches of 2 or more examples (per process under torchrun)")

    # -- the labelled subset ------------------------------------------------------------------------------
    #: weights written before ``labelled_binarize`` existed binarized their labelled examples whatever the data
    state_defaults = {"labelled_binarize": torch.ones}

    @torch.no_grad()
    def setup_labels(self, x: Tensor, y: Tensor, generator: torch.Generator, space: str = "binarized") -> None:
        """Keep ``labels / n_classes`` examples of each class of the training set (grey levels, kept as they are).
        They are treated as the unlabelled batches in ``space`` are (:attr:`genzoo.data.Dataset.space`):
        binarized afresh at every use for ``"binarized"``, fed as grey levels otherwise; dequantized data are
        refused (a Bernoulli decoder gives them no likelihood). A model that holds a subset already
        (``labels_ready``: an earlier ``fit``, or loaded weights) keeps it and takes only ``space`` from the new
        data, which must still be examples of ``data_shape`` with labels in 0..n_classes-1 (the kept examples are
        not looked for in it): the model has then seen ``labels`` labelled examples, not one subset per ``fit``.
        :meth:`reset_labels` first to draw a new one."""
        if space == "dequantized":
            raise ConfigError("ssvae: its Bernoulli decoder gives dequantized data no likelihood: train on binarized "
                              "pixels (data.binarize=true, data.dequantize=false) or on grey levels (both false)")
        self.check_pixels(x)
        y = self.check_labels(y, x.shape[0], "training labels").to(x.device)  # the subset is drawn beside x
        if not bool(self.labels_ready):  # a subset chosen already (an earlier fit, loaded weights) is kept
            self._draw_labels(x, y, generator)
        self.labelled_binarize.fill_(space == "binarized")

    def _draw_labels(self, x: Tensor, y: Tensor, generator: torch.Generator) -> None:
        """:meth:`setup_labels`' draw from checked examples and classes: ``labels / n_classes`` of each class."""
        per = self.labels // self.n_classes
        keep = []
        for c in range(self.n_classes):
            idx = (y == c).nonzero().flatten()
            if len(idx) < per:
                present = sorted(set(y.tolist()))
                # the data's classes are 0..m-1 with m < n_classes: n_classes=m fits them (a gap in them would not)
                hint = (f"; the data's classes are 0..{present[-1]}: set n_classes={present[-1] + 1}"
                        if present and present == list(range(present[-1] + 1)) and present[-1] + 1 < self.n_classes
                        else "")
                raise DataError(f"ssvae: class {c} has {len(idx)} training examples, fewer than the {per} per class "
                                f"that labels={self.labels} asks for{hint}")
            keep.append(idx[torch.randperm(len(idx), generator=generator)[:per]])
        keep = torch.cat(keep)  # (labels,)
        self.labelled_x.copy_(x[keep].to(self.labelled_x))
        self.labelled_y.copy_(y[keep].to(self.labelled_y))
        self.labels_ready.fill_(True)

    def reset_labels(self) -> None:
        """Forget the labelled subset: the next ``fit`` (or :meth:`setup_labels`) draws a new one from its training
        set. A model trained on from its weights otherwise keeps the subset it was first given."""
        self.labels_ready.fill_(False)

    def check_labels(self, y: Tensor, n: int, what: str = "y") -> Tensor:
        """``y`` as int64 on the model's device (a CUDA model's CPU labels moved, as :meth:`check_input` moves x),
        the index type one_hot takes (uint8 MNIST labels, int32 NumPy ones); a DataError unless
        ``y`` is an integer tensor (n,) of classes in 0..n_classes-1: a class beyond them would be dropped from
        the labelled set without a word (or fail inside one_hot)."""
        if not isinstance(y, Tensor) or y.is_floating_point() or y.is_complex() or y.dtype == torch.bool \
                or tuple(y.shape) != (n,):
            got = f"{y.dtype} {tuple(y.shape)}" if isinstance(y, Tensor) else type(y).__name__
            raise DataError(f"ssvae: {what} must be {n} integer classes, got {got}")
        if n and (int(y.min()) < 0 or int(y.max()) >= self.n_classes):
            raise DataError(f"ssvae: {what} must lie in 0..{self.n_classes - 1} (n_classes={self.n_classes}), "
                            f"got {int(y.min())}..{int(y.max())}")
        return y.to(self.device, torch.long)

    # -- networks -----------------------------------------------------------------------------------------
    def _onehot(self, y: Tensor) -> Tensor:
        return F.one_hot(y, self.n_classes).to(self._zero.dtype)  # (..., K)

    def class_logits(self, x: Tensor, features: Tensor | None = None, *, sliced: bool = False) -> Tensor:
        """Logits of q(y|x), (B, K); ``features``: ``self.trunk`` of the flattened x when already computed.
        In training mode the classifier's path alone sees ``classifier_input_dropout`` on the pixels (the
        trunk then runs again on the masked x) and ``classifier_dropout`` on the features. ``sliced``: x is this
        rank's part of the global batch (the unlabelled pass under torchrun), whose masks are then the global
        batch's (:func:`~genzoo.train.distributed.dropout`; alone, the same as F.dropout)."""
        drop = distributed.dropout if sliced else F.dropout
        flat = self.check_input(x).reshape(x.shape[0], -1)
        if self.training and self.classifier_input_dropout > 0:
            features = self.trunk(drop(flat, self.classifier_input_dropout))
        elif features is None:
            features = self.trunk(flat)
        if self.training and self.classifier_dropout > 0:
            features = drop(features, self.classifier_dropout)
        return self.classifier(features)

    def classify(self, x: Tensor) -> Tensor:
        """The most probable class under q(y|x), (B,), in eval mode whatever the model's (no dropout, batch-norm
        running statistics, left as they are). ``x`` is checked as the bounds check it (:meth:`check_pixels`:
        NaN, or pixels outside [0, 1], are a DataError)."""
        x = self.check_pixels(x)
        with torch.no_grad(), evaluating(self):
            return self.class_logits(x).argmax(-1)

    def encode(self, x: Tensor, y: Tensor | None = None, features: Tensor | None = None) -> Distribution:
        """q(z|x, y), batch (B,), event (latent_dim,); without ``y``, the classifier's choice. ``features``:
        ``self.trunk`` of the flattened x when already computed (x itself without ``shared_trunk``). ``y`` is
        checked as :meth:`labelled_bound` checks it (B integer classes in 0..n_classes-1, a DataError otherwise),
        and ``x`` as the bounds check it (:meth:`check_pixels`). In eval mode whatever the model's, as
        :meth:`classify` (batch-norm running statistics, left as they are; no dropout): the training step reads
        :meth:`_encode`, in its own mode."""
        x = self.check_pixels(x)
        if y is not None:
            y = self.check_labels(y, x.shape[0])
        with evaluating(self):
            return self._encode(x, y, features)

    def _encode(self, x: Tensor, y: Tensor | None = None, features: Tensor | None = None) -> Distribution:
        """:meth:`encode` with classes ``y`` that need no check (the bounds' own enumeration, the labelled subset)."""
        if features is None:
            features = self.trunk(self.check_input(x).reshape(x.shape[0], -1))
        if y is None:
            y = self.classifier(features).argmax(-1)
        h = self.encoder(torch.cat([features, self._onehot(y)], -1))  # (B, 2L)
        mu, log_sigma = h.chunk(2, -1)
        return Independent(Normal(mu, log_sigma.exp(), validate_args=False), 1)

    def _decoder_logits(self, z: Tensor, y: Tensor) -> Tensor:
        """The logits of p(x|y, z) for z (..., B, L) and classes y (B,): (..., B, D)."""
        y1 = self._onehot(y).expand(*z.shape[:-1], self.n_classes)
        return self.decoder(z, y1) if self.y_every_layer else self.decoder(torch.cat([z, y1], -1))

    def decode(self, z: Tensor, y: Tensor | None = None) -> Distribution:
        """p(x|y, z) for latents z (..., B, latent_dim) and classes y (B,): independent Bernoulli pixels, batch
        z.shape[:-1]. Latents of another width and classes that are not B integers in 0..n_classes-1 are a
        DataError (float64 or integer latents are converted); M2 has no p(x|z) without y."""
        z = self.check_latent(z)
        if y is None:
            raise DataError("ssvae: decode(z, y) needs the classes y (B,) too: M2 decodes p(x|y, z)")
        y = self.check_labels(y, z.shape[-2], "decode's y")
        return self._decode(z, y)

    def _decode(self, z: Tensor, y: Tensor) -> Distribution:
        """:meth:`decode` of checked latents and classes."""
        logits = self._decoder_logits(z, y)                                                 # (..., B, D)
        return Independent(torch.distributions.Bernoulli(logits=logits.reshape(*z.shape[:-1], *self.data_shape),
                                                         validate_args=False), len(self.data_shape))

    @property
    def prior(self) -> Distribution:
        zeros = self._zero.expand(self.latent_dim)
        return Independent(Normal(zeros, torch.ones_like(zeros), validate_args=False), 1)

    # -- bounds -------------------------------------------------------------------------------------------
    def _log_px(self, x: Tensor, y: Tensor, z: Tensor) -> Tensor:
        """log p(x | y, z) for z (..., B, L): Bernoulli pixels from logits, (..., B)."""
        logits = self._decoder_logits(z, y)  # (..., B, D)
        return bernoulli_log_prob(logits, x.reshape(x.shape[0], -1))                        # (..., B)

    def _log_w(self, x: Tensor, y: Tensor, k: int, q: Distribution | None = None) -> Tensor:
        """log p(x, y, z_i) - log q(z_i|x, y) for k reparameterised z_i ~ q(z|x, y): (k, B)."""
        q = self._encode(x, y) if q is None else q
        z = q.rsample((k,))  # (k, B, L)
        return self._log_px(x, y, z) + self.prior.log_prob(z) - q.log_prob(z) - math.log(self.n_classes)  # log p(y) uniform

    def labelled_bound(self, x: Tensor, y: Tensor, features: Tensor | None = None, eps: Tensor | None = None) -> Tensor:
        """-L(x, y) (B,): the ELBO of log p(x, y) (eq. 6), KL in closed form (Kingma & Welling, App. B), in eval
        mode whatever the model's (the training step's beta and batch statistics are not this bound's). ``eps``
        (B, L): the standard normal draws of z's reparameterisation (default: fresh ones)."""
        x = self.check_pixels(x)
        y = self.check_labels(y, x.shape[0])
        with evaluating(self):
            return self._labelled_bound(x, y, features, None if eps is None else eps.to(x))

    def _labelled_bound(self, x: Tensor, y: Tensor, features: Tensor | None = None, eps: Tensor | None = None,
                        beta: float = 1.0) -> Tensor:
        """:meth:`labelled_bound` of a checked batch and classes (the unlabelled bound's enumeration, the
        training step's labelled subset), in the model's mode: no checks, no host syncs, on the training path.
        ``beta`` multiplies the KL of z (the training step's ``kl_weight``; 1: the bound itself)."""
        q = self._encode(x, y, features)
        mu, sigma = q.base_dist.loc, q.base_dist.scale
        z = q.rsample() if eps is None else mu + eps * sigma  # (B, L)
        log_px = self._log_px(x, y, z)  # (B,)
        kl = 0.5 * (mu.pow(2) + sigma.pow(2) - 1 - 2 * sigma.log()).sum(-1)  # (B,)
        if beta != 1:  # beta-VAE weight on z's KL (Higgins et al. 2017), the training step's only
            kl = beta * kl
        return log_px - kl - math.log(self.n_classes)

    def unlabelled_bound(self, x: Tensor, logits: Tensor | None = None) -> Tensor:
        """-U(x) (B,): sum_y q(y|x) (-L(x, y)) + H(q(y|x)) (eq. 7), every class enumerated, in eval mode as
        :meth:`labelled_bound`; ``x`` is checked (:meth:`check_pixels`)."""
        x = self.check_pixels(x)
        with evaluating(self):
            return self._unlabelled_bound(x, logits)

    def _unlabelled_bound(self, x: Tensor, logits: Tensor | None = None, beta: float = 1.0) -> Tensor:
        """:meth:`unlabelled_bound` with only the shape checked (:meth:`check_input`), in the model's mode, with
        ``beta`` on the KL of z (:meth:`_labelled_bound`): no host sync, for training."""
        x = self.check_input(x)
        B, K = x.shape[0], self.n_classes
        features = self.trunk(x.reshape(B, -1))  # computed once for the K classes
        logits = self.class_logits(x, features, sliced=True) if logits is None else logits
        log_q = F.log_softmax(logits, -1)  # (B, K)
        ys = torch.arange(K, device=x.device).repeat_interleave(B)  # (K*B,) class-major
        # the noise of the K*B rows, drawn as (K, B, L): under torchrun each rank takes its slice of the global
        # batch's along B, so the draws are a single process's (which draws the same stream as (K*B, L))
        eps = distributed.randn(K, B, self.latent_dim, dim=1, device=x.device, dtype=x.dtype).reshape(K * B, -1)
        bounds = self._labelled_bound(x.repeat(K, *[1] * (x.dim() - 1)), ys, features.repeat(K, 1),
                                      eps=eps, beta=beta).reshape(K, B).T  # (B, K)
        q = log_q.exp()
        return (q * bounds).sum(-1) - (q * log_q).sum(-1)

    def elbo(self, x: Tensor) -> Tensor:
        """The unlabelled bound -U(x) on log p(x), (B,)."""
        return self.unlabelled_bound(x)

    @torch.no_grad()
    def iwae_bound(self, x: Tensor, k: int) -> Tensor:
        """log p(x) >= E log sum_y (1/k) sum_i p(x, y, z_i) / q(z_i|x, y): an IWAE bound (Burda et al. 2015)
        for each class, the classes summed exactly; (B,), in eval mode as :meth:`labelled_bound`."""
        x = self.check_pixels(x)
        k = self.check_count(k, "iwae_bound's k, the importance samples (k >= 1)")
        with evaluating(self):
            return self._iwae_bound(x, k)

    def _iwae_bound(self, x: Tensor, k: int) -> Tensor:
        """:meth:`iwae_bound` of a checked batch and count, in the model's mode."""
        B = x.shape[0]
        ys = [torch.full((B,), c, device=x.device) for c in range(self.n_classes)]
        z1 = self._zero.new_zeros(1, 1, self.latent_dim)  # one row, for the cost of a row (the genzoo.models.vae chunks)
        cost = elements_per_row(self.decoder, lambda: self._log_px(x[:1], ys[0][:1], z1)) + 2 * x[0].numel()
        chunk = iwae_chunk(cost, B, k, None)
        per_class = []  # K x (B,); each class's k samples in chunks, their memory bounded as the VAE's
        for y in ys:
            q = self._encode(x, y)
            per_class.append(log_mean_exp_chunked(lambda s: self._log_w(x, y, s, q), k, chunk))
        return torch.logsumexp(torch.stack(per_class), 0)

    # -- training -----------------------------------------------------------------------------------------
    valid_loss_is_training_loss = False  # loss() is U(x); the training loss adds the labelled terms

    def loss(self, x: Tensor) -> dict[str, Tensor]:
        """The unlabelled objective alone (validation): mean U(x), logged as ``valid_loss`` and ``valid_unlabelled``
        (the training step's ``unlabelled`` is its twin; its ``loss`` has the labelled bound and alpha CE too)."""
        u = -self._unlabelled_bound(x).mean()  # beta = 1: the true bound, whatever kl_weight
        return {"loss": u, "unlabelled": u.detach()}

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return [torch.optim.Adam(self.parameters(), lr=self.lr)]

    def training_step(self, batch: Batch, optimizers: list[torch.optim.Optimizer]) -> dict[str, float]:
        (opt,) = optimizers
        if not bool(self.labels_ready):
            raise DataError("ssvae needs a training set with labels (e.g. digits or mnist), this one has none")
        idx = torch.randint(self.labels, (self.labelled_batch,), device=self.labelled_y.device)  # global RNG: resumable
        xl, yl = self.labelled_x[idx], self.labelled_y[idx]  # (b, *shape), (b,)
        xl = torch.lerp(xl, torch.bernoulli(xl), self.labelled_binarize)  # dynamic binarization where the batches have it
        # in the model's (train) mode, with kl_weight on z's KL: the labelled subset was checked by setup_labels
        labelled = -self._labelled_bound(xl, yl, beta=self.kl_weight).mean()
        ce = F.cross_entropy(self.class_logits(xl), yl)
        unlabelled = -self._unlabelled_bound(batch.x, beta=self.kl_weight).mean()
        loss = self.labelled_weight * labelled + unlabelled + self.alpha * ce
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {k: float(v.detach()) for k, v in (("loss", loss), ("labelled", labelled), ("unlabelled", unlabelled), ("ce", ce))}

    # -- sampling and analogies ---------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, y: Tensor | None = None) -> Tensor:
        """``n`` decoder means (n, *data_shape) for z ~ p(z) and y ~ p(y) (or the given classes (n,)); y and z
        are drawn with ``generator`` on its device (the model's without one), in that order."""
        n = self.check_count(n)
        if y is None:
            y = self.randint(self.n_classes, (n,), generator)                               # (n,)
        y = torch.as_tensor(y)
        try:  # any integer dtype, as int64; bools, floats, other counts and classes refused
            y = self.check_labels(y, n, "sample's y")
        except DataError:  # a ConfigError, as sample's y always was; a long y by its type and shape alone
            got = y.tolist() if y.numel() <= 16 else f"{y.dtype} {tuple(y.shape)}"
            raise ConfigError(f"ssvae: y must hold {n} classes in 0..{self.n_classes - 1}, got {got}") from None
        z = self.randn((n, self.latent_dim), generator, self._zero.dtype)                   # (n, L)
        return self._decode(z, y).mean

    @torch.no_grad()
    def analogies(self, x: Tensor) -> Tensor:
        """The paper's Figure 1: z = E q(z|x) inferred from each image, decoded with every class:
        (B, K, *data_shape); in eval mode, and ``x`` checked, as :meth:`encode`."""
        z = self.encode(x).mean  # (B, L); in eval mode (p(x|y,z) has no mode-dependent layer)
        B, K = x.shape[0], self.n_classes
        ys = torch.arange(K, device=z.device).repeat(B)  # (B*K,) on the model's device, wherever x came from
        return self._decode(z.repeat_interleave(K, 0), ys).mean.reshape(B, K, *self.data_shape)


class _ConditionedMLP(torch.nn.Module):
    """An MLP whose every layer also sees the one-hot class ``y`` (concatenated to its input), so the
    class cannot be washed out on the way to the pixels. ``self[-1]`` is the last linear layer."""

    def __init__(self, sizes: list[int], n_classes: int, activation: str) -> None:
        super().__init__()
        self.layers = torch.nn.ModuleList(Linear(a + n_classes, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.act = ACTIVATIONS[activation]()

    def __getitem__(self, i: int) -> Linear:
        return self.layers[i]

    def forward(self, z: Tensor, y: Tensor) -> Tensor:
        h = z
        for i, layer in enumerate(self.layers):
            h = layer(torch.cat([h, y], -1))
            if i < len(self.layers) - 1:
                h = self.act(h)
        return h
