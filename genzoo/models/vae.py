"""The variational auto-encoder (Kingma & Welling 2014, "Auto-Encoding Variational Bayes").

q(z|x) = N(mu(x), diag sigma(x)^2), p(z) = N(0, I), p(x|z) Bernoulli (binary data) or Gaussian
(continuous data). Training maximises the ELBO with S reparameterised samples per example; the
importance-weighted bound of Burda et al. 2015 gives likelihood estimates.

``posterior_flow="planar"`` makes q(z|x) richer (Rezende & Mohamed 2015, Section 4): z_0 ~ N(mu, sigma^2)
goes through ``flow_length`` planar maps whose parameters (u, w, b) the encoder outputs for each x, and
the ELBO counts the log-determinants, E_q0[log p(x, z_K) - log q_0(z_0) + sum_k log|det dz_k/dz_(k-1)|]
(their eq. 15); the KL is then a Monte Carlo term.

>>> import torch, genzoo
>>> vae = genzoo.build("vae", data_shape=(1, 8, 8), latent_dim=4, hidden=(32,))
>>> x = torch.rand(5, 1, 8, 8).bernoulli()
>>> vae.elbo(x).shape, vae.iwae_bound(x, k=10).shape
(torch.Size([5]), torch.Size([5]))
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Bernoulli, Distribution, Independent, Normal, TransformedDistribution
from torch.distributions import Transform as _TorchTransform
from torch.distributions import constraints

from ..base import GenerativeModel
from ..errors import ConfigError
from ..nn import ConvDecoder, ConvEncoder, mlp
from ..registry import register
from ..train import distributed
from .flows.transforms import constrain_u, planar, planar_inverse


#: float elements of decoder activations that one chunk of an IWAE bound's samples may hold: 2^27, 0.5 GB in float32
IWAE_CHUNK_ELEMENTS = 2**27


@torch.no_grad()
def elements_per_row(net: nn.Module, run) -> int:
    """The float elements that every module of ``net`` outputs while ``run()`` pushes one decoder row through it
    (plus nothing for ``run``'s own temporaries): what one importance sample costs in memory. A conv decoder's
    row is ~10x an MLP's, so a chunk counted in rows took a conv MNIST VAE's ``genzoo eval`` to ~6 GB.

    >>> import torch
    >>> mlp_ = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> elements_per_row(mlp_, lambda: mlp_(torch.zeros(1, 2)))  # 8 + 8 + 3, and the Sequential's own 3
    22
    """
    total = 0

    def count(module, inputs, output):
        nonlocal total
        total += output.numel() if isinstance(output, Tensor) else 0

    handles = [m.register_forward_hook(count) for m in net.modules()]
    try:
        run()
    finally:
        for h in handles:
            h.remove()
    return total


def iwae_chunk(samples_per_row_cost: int, batch: int, k: int, chunk_rows: int | None) -> int:
    """Importance samples per chunk: ``chunk_rows // batch`` decoder rows where given, else as many as
    :data:`IWAE_CHUNK_ELEMENTS` holds at ``samples_per_row_cost`` elements a row; at least 1, at most ``k``."""
    rows = chunk_rows if chunk_rows is not None else IWAE_CHUNK_ELEMENTS // max(1, samples_per_row_cost)
    return max(1, min(k, rows // max(1, batch)))


def log_mean_exp_chunked(log_w, k: int, chunk: int) -> Tensor:
    """log (1/k) sum_i exp(w_i) over k importance samples drawn ``chunk`` at a time: ``log_w(s)`` draws s of them and
    returns their log-weights (s, B); (B,). The IWAE bound's accumulation, in bounded memory.

    >>> import torch
    >>> w = torch.randn(10, 3)
    >>> parts = iter(w.split(4))
    >>> bool(torch.allclose(log_mean_exp_chunked(lambda s: next(parts), 10, 4), w.logsumexp(0) - math.log(10)))
    True
    """
    total, done = None, 0
    while done < k:
        s = min(chunk, k - done)
        part = torch.logsumexp(log_w(s), 0)  # (B,)
        total = part if total is None else torch.logaddexp(total, part)
        done += s
    return total - math.log(k)


def bernoulli_log_prob(logits: Tensor, x: Tensor) -> Tensor:
    """log Bernoulli(x; sigmoid(logits)) summed over the last dimension, (..., D) -> (...); ``x`` in [0, 1]
    broadcasts against ``logits``. x log sigmoid(l) + (1 - x) log sigmoid(-l) = x l - softplus(l): stable for
    any l, and fewer passes over the tensor than ``-F.binary_cross_entropy_with_logits`` (1.01-1.03x on a
    784-400-20 VAE's training step in ``fit``, BENCHMARKS.md).

    >>> bernoulli_log_prob(torch.zeros(2, 3), torch.ones(2, 3))  # three pixels, each p = 1/2
    tensor([-2.0794, -2.0794])
    """
    return torch.addcmul(F.softplus(logits), x, logits, value=-1).sum(-1).neg()     # (...)


@register("vae", "Variational auto-encoder (Kingma & Welling 2014), MLP or conv, Bernoulli or Gaussian decoder")
class VAE(GenerativeModel):
    """Variational auto-encoder with a closed-form KL to N(0, I) and an IWAE bound.

    Arguments: ``latent_dim`` (size of z), ``hidden`` (MLP hidden sizes, mirrored in the decoder;
    idle with ``arch="conv"``), ``arch`` ("mlp" or "conv"), ``activation`` (the nonlinearity of both
    networks, MLP or conv), ``likelihood`` ("bernoulli" for binary data, "gaussian" for continuous data: a
    per-pixel scale that the decoder outputs with the mean for each z, softplus(.) + ``min_std``, not one
    learned parameter per pixel), ``n_samples`` (S reparameterised samples per
    example in the training ELBO), ``lr`` (Adam), ``posterior_flow`` ("none" or "planar") and
    ``flow_length`` (K planar maps, amortised: the encoder outputs them).
    Under bf16 autocast the networks' outputs are cast to float32, so the KL, the planar log-dets and
    the likelihood are accumulated in float32.
    """

    autocast_safe = True

    @property
    def bernoulli_pixels(self) -> bool:
        """Whether p(x|z) is a mass on binary pixels (its bounds are likelihoods only on 0/1 data)."""
        return self.likelihood == "bernoulli"

    def __init__(self, *, data_shape: tuple[int, ...], latent_dim: int = 20, hidden: tuple[int, ...] = (400,),
                 arch: Literal["mlp", "conv"] = "mlp", activation: Literal["relu", "tanh", "elu", "softplus"] = "relu",
                 likelihood: Literal["bernoulli", "gaussian"] = "bernoulli", n_samples: int = 1,
                 min_std: float = 1e-2, lr: float = 1e-3, posterior_flow: Literal["none", "planar"] = "none",
                 flow_length: int = 10) -> None:
        super().__init__()
        if latent_dim < 1 or n_samples < 1:
            raise ConfigError("latent_dim and n_samples must be >= 1")
        if posterior_flow not in ("none", "planar"):
            raise ConfigError(f"unknown posterior_flow '{posterior_flow}': use none or planar")
        if posterior_flow == "planar" and flow_length < 1:
            raise ConfigError("flow_length must be >= 1 with posterior_flow=planar")
        self.flow_length = flow_length if posterior_flow == "planar" else 0
        self.data_shape = tuple(data_shape)
        self.latent_dim = latent_dim
        self.likelihood = likelihood
        self.n_samples = n_samples
        self.min_std = min_std
        self.lr = lr
        d = math.prod(self.data_shape)
        out = 1 if likelihood == "bernoulli" else 2  # Gaussian: loc and scale per dimension
        n_enc = 2 * latent_dim + self.flow_length * (2 * latent_dim + 1)  # mu, log sigma, then (u, w, b) per map
        if arch == "mlp":
            self.encoder = nn.Sequential(nn.Flatten(), mlp([d, *hidden, n_enc], activation))
            self.decoder = nn.Sequential(mlp([latent_dim, *reversed(hidden), out * d], activation),
                                         nn.Unflatten(1, (out * self.data_shape[0], *self.data_shape[1:])))
        else:
            self.encoder = ConvEncoder(self.data_shape, n_enc, activation=activation)
            self.decoder = ConvDecoder(latent_dim, self.data_shape, activation=activation,
                                       out_channels=out * self.data_shape[0])
        self.register_buffer("_zero", torch.zeros(()), persistent=False)

    @classmethod
    def defaults(cls, config: dict) -> dict:
        """Digits, binarized afresh every batch for a Bernoulli decoder, dequantized for a Gaussian one."""
        transform = "binarize" if config.get("likelihood", "bernoulli") == "bernoulli" else "dequantize"
        return {"data": {"name": "digits", transform: True}, "train": {"steps": 6000, "batch_size": 128}}

    def unused_options(self) -> dict[str, str]:
        """``hidden`` with the conv networks, ``activation`` with MLPs of no hidden layer, ``flow_length``
        without planar maps, ``min_std`` (the Gaussian decoder's floor) with a Bernoulli decoder."""
        idle = {}
        if self.config["arch"] == "conv":
            idle["hidden"] = "arch=conv (the conv networks have fixed sizes)"
        elif not self.config["hidden"]:
            idle["activation"] = "hidden=() (linear networks: no hidden layer)"
        if self.config["posterior_flow"] == "none":
            idle["flow_length"] = "posterior_flow=none"
        if self.likelihood == "bernoulli":
            idle["min_std"] = "likelihood=bernoulli"
        return idle

    # -- distributions -------------------------------------------------------------------------
    @property
    def prior(self) -> Distribution:
        """p(z) = N(0, I)."""
        zeros = self._zero.expand(self.latent_dim)
        return Independent(Normal(zeros, torch.ones_like(zeros)), 1)

    def _posterior(self, x: Tensor) -> tuple[Tensor, Tensor, list[tuple[Tensor, Tensor, Tensor]]]:
        """mu, log sigma (B, L) and, with a planar posterior, K triples (u_hat, w, b): (B, L), (B, L), (B,)."""
        h = self.encoder(x).to(self._zero.dtype)                             # (B, 2L + K(2L+1)), fp32 under autocast
        L = self.latent_dim
        mu, log_sigma, rest = h[:, :L], h[:, L:2 * L], h[:, 2 * L:]
        maps = []
        for k in range(self.flow_length):
            p = rest[:, k * (2 * L + 1):(k + 1) * (2 * L + 1)]
            u, w, b = p[:, :L], p[:, L:2 * L], p[:, 2 * L]
            maps.append((constrain_u(u, w), w, b))
        return mu, log_sigma, maps

    def encode(self, x: Tensor) -> Distribution:
        """q(z|x), batch shape (B,), event shape (latent_dim,): N(mu, sigma^2), or with a planar posterior
        that Gaussian pushed through the K planar maps (a ``TransformedDistribution``: ``rsample`` and
        ``log_prob`` work; its mean has no closed form, use ``encode(x).base_dist.mean`` for mu). ``x`` is
        checked as the bounds check it (:meth:`~genzoo.base.GenerativeModel.check_pixels`: NaN or infinite
        values, and for a Bernoulli decoder pixels outside [0, 1], such as uint8 images of 0..255, are a
        DataError); the training step reads the encoder without that check.

        >>> import genzoo
        >>> _ = torch.manual_seed(0)
        >>> vae = genzoo.build("vae", data_shape=(1, 8, 8), latent_dim=4, hidden=(32,))
        >>> q = vae.encode(torch.rand(5, 1, 8, 8).bernoulli())
        >>> q.batch_shape, q.event_shape
        (torch.Size([5]), torch.Size([4]))
        >>> sigma = q.base_dist.scale                           # (5, 4); at the mean: -sum log sigma - (L/2) log 2 pi
        >>> torch.allclose(q.log_prob(q.mean), -sigma.log().sum(1) - 2 * math.log(2 * math.pi))
        True
        """
        mu, log_sigma, maps = self._posterior(self.check_pixels(x))
        q0 = Independent(Normal(mu, log_sigma.exp(), validate_args=False), 1)
        if not maps:
            return q0
        return TransformedDistribution(q0, [_PlanarMap(*m) for m in maps], validate_args=False)

    def decode(self, z: Tensor) -> Distribution:
        """p(x|z) for latents z (..., B, latent_dim): batch shape z.shape[:-1], event shape data_shape. Latents
        of another width are a DataError (:meth:`~genzoo.base.GenerativeModel.check_latent`); float64 or
        integer ones are converted.

        >>> import genzoo
        >>> _ = torch.manual_seed(0)
        >>> vae = genzoo.build("vae", data_shape=(1, 8, 8), latent_dim=4, hidden=(32,))   # Bernoulli p(x|z)
        >>> p = vae.decode(torch.randn(3, 5, 4))                # 3 latents for each of 5 examples
        >>> p.batch_shape, p.event_shape, p.log_prob(torch.ones(5, 1, 8, 8)).shape
        (torch.Size([3, 5]), torch.Size([1, 8, 8]), torch.Size([3, 5]))
        >>> torch.allclose(p.log_prob(torch.ones(5, 1, 8, 8)), p.mean.log().sum((-3, -2, -1)))  # log prod of p(x=1)
        True
        """
        return self._decode(self.check_latent(z))

    def _decode(self, z: Tensor) -> Distribution:
        """:meth:`decode` of checked latents (..., B, L), as the bounds draw them."""
        h = self.decoder(z.reshape(-1, self.latent_dim)).to(z.dtype)  # (N, out*C, H, W) or (N, out*D), N = prod(...) B
        h = h.reshape(*z.shape[:-1], -1, *self.data_shape[1:])         # (..., B, out*C, H, W) or (..., B, out*D)
        if self.likelihood == "bernoulli":
            return Independent(Bernoulli(logits=h, validate_args=False), len(self.data_shape))
        loc, raw = h.chunk(2, dim=len(z.shape) - 1)                    # (..., B, *data_shape) each
        return Independent(Normal(loc, F.softplus(raw) + self.min_std, validate_args=False), len(self.data_shape))

    def generate(self, z: Tensor) -> Tensor:
        """The decoder's mean E[x|z] for latents z (..., B, latent_dim): (..., B, *data_shape).

        >>> import genzoo
        >>> vae = genzoo.build("vae", data_shape=(1, 8, 8), latent_dim=4, hidden=(32,))
        >>> z = torch.randn(6, 4)
        >>> x = vae.generate(z)                                 # Bernoulli means: sigmoid(logits), in (0, 1)
        >>> x.shape, torch.equal(x, vae.decode(z).mean), bool(((x > 0) & (x < 1)).all())
        (torch.Size([6, 1, 8, 8]), True, True)
        """
        return self.decode(z).mean

    # -- objectives -------------------------------------------------------------------------------
    def _log_px(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x|z) summed over dimensions; z (S, B, L) -> (S, B)."""
        if self.likelihood == "bernoulli":
            logits = self.decoder(z.reshape(-1, self.latent_dim)).to(z.dtype).reshape(*z.shape[:2], -1)  # (S, B, D)
            return bernoulli_log_prob(logits, x.reshape(1, x.shape[0], -1))                 # (S, B)
        return self._decode(z).log_prob(x)

    def _draw(self, x: Tensor, n_samples: int, with_log_q: bool = True) -> tuple[Tensor, Tensor | None, Tensor, Tensor]:
        """z_K (S, B, L) from q(z|x) by reparameterisation, log q(z_K|x) (S, B) (None unless ``with_log_q``
        or the posterior has planar maps), and mu, log sigma (B, L)."""
        mu, log_sigma, maps = self._posterior(x)                                            # (B, L) each
        eps = distributed.randn(n_samples, *mu.shape, dim=1, dtype=mu.dtype, device=mu.device)  # (S, B, L)
        z = torch.addcmul(mu, log_sigma.exp(), eps)                                         # mu + sigma eps: reparameterisation
        if not (with_log_q or maps):
            return z, None, mu, log_sigma
        # log N(z_0; mu, sigma^2), then log q_K(z_K) = log q_0(z_0) - sum_k log|det| (Rezende & Mohamed 2015, eq. 13)
        log_q = (-0.5 * eps.pow(2) - log_sigma - 0.5 * math.log(2 * math.pi)).sum(-1)      # (S, B)
        for u, w, b in maps:
            z, log_det = planar(z, u, w, b)                                                 # (S, B, L), (S, B)
            log_q = log_q - log_det
        return z, log_q, mu, log_sigma

    def _terms(self, x: Tensor, n_samples: int) -> tuple[Tensor, Tensor]:
        """Monte Carlo E_q[log p(x|z)] over ``n_samples`` draws and the KL term, each (B,): in closed form
        for a Gaussian q, by Monte Carlo, log q(z_K|x) - log p(z_K), with a planar posterior."""
        x = self.check_input(x)
        z, log_q, mu, log_sigma = self._draw(x, n_samples, with_log_q=bool(self.flow_length))  # closed-form KL: no log q
        rec = self._log_px(x, z).mean(0)                                                    # (B,)
        if self.flow_length:
            kl = (log_q - self.prior.log_prob(z)).mean(0)                                   # (B,)
        else:  # KL(N(mu, sigma^2) || N(0, I)) in closed form: Kingma & Welling 2014, Appendix B
            kl = 0.5 * (mu.pow(2) + (2 * log_sigma).exp() - 1 - 2 * log_sigma).sum(-1)    # (B,)
        return rec, kl

    def elbo(self, x: Tensor, n_samples: int | None = None) -> Tensor:
        """ELBO per example, (B,): E_q[log p(x|z)] - KL(q(z|x) || N(0, I)), in nats, averaged over ``n_samples``
        draws of z (None: the model's ``n_samples``). NaN or infinite data are a DataError, as in
        :meth:`iwae_bound` (:meth:`~genzoo.base.GenerativeModel.check_pixels`)."""
        if n_samples is not None:
            n_samples = self.check_count(n_samples, f"elbo's n_samples (None: the model's {self.n_samples})")
        rec, kl = self._terms(self.check_pixels(x), n_samples or self.n_samples)
        return rec - kl

    def loss(self, x: Tensor) -> dict[str, Tensor]:
        rec, kl = self._terms(x, self.n_samples)
        elbo = (rec - kl).mean()
        return {"loss": -elbo, "elbo": elbo.detach(), "kl": kl.mean().detach()}

    @torch.no_grad()
    def iwae_bound(self, x: Tensor, k: int, chunk_rows: int | None = None) -> Tensor:
        """Importance-weighted bound (Burda et al. 2015, eq. 8) per example, (B,), in nats.

        log (1/k) sum_i p(x, z_i) / q(z_i|x), z_i ~ q(z|x); k=1 is the ELBO, k -> inf log p(x).
        Samples are drawn in chunks to bound memory: of ``chunk_rows`` decoder rows where given, else of as
        many rows as hold :data:`IWAE_CHUNK_ELEMENTS` decoder activations (a conv decoder's rows are larger);
        at least one sample per example a chunk, however large the batch.
        """
        x = self.check_pixels(x)
        k = self.check_count(k, "iwae_bound's k, the importance samples (k >= 1)")
        if chunk_rows is not None:
            chunk_rows = self.check_count(chunk_rows, "iwae_bound's chunk_rows")
        z1 = self._zero.new_zeros(1, 1, self.latent_dim)  # one row, for the cost of a row
        cost = elements_per_row(self.decoder, lambda: self._log_px(x[:1], z1)) + 2 * x[0].numel()  # + log p terms
        chunk = iwae_chunk(cost, x.shape[0], k, chunk_rows)

        def log_w(s: int) -> Tensor:
            z, log_q, _, _ = self._draw(x, s)                                        # (s, B, L), (s, B)
            return self._log_px(x, z) + self.prior.log_prob(z) - log_q              # (s, B)

        return log_mean_exp_chunked(log_w, k, chunk)

    # -- training and sampling ------------------------------------------------------------------
    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return [torch.optim.Adam(self.parameters(), lr=self.lr, fused=True)]

    @torch.no_grad()
    def setup(self, x: Tensor, generator: torch.Generator) -> None:
        """Start the Bernoulli MLP decoder's output bias at the logit of the mean pixel (Burda et al. 2015); a conv
        decoder's output bias is one per channel and keeps its default."""
        self.check_pixels(x)
        last = self.decoder[0][-1] if isinstance(self.decoder, nn.Sequential) else None
        if self.likelihood == "bernoulli" and isinstance(last, nn.Linear):
            p = x.float().mean(0).reshape(-1).clamp(1e-3, 1 - 1e-3)
            last.bias.copy_(torch.logit(p))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, mean: bool | None = None) -> Tensor:
        """``n`` samples (n, *data_shape) for z ~ p(z): with ``mean=True`` the decoder's mean E[x|z],
        sigmoid(logits) or the Gaussian's loc; with ``mean=False`` a draw x ~ p(x|z), binary pixels
        x = [u < p], u ~ U(0, 1), or loc + scale * eps, eps ~ N(0, I). The default is the mean for images and
        for a Bernoulli decoder (the field's convention for pictures and Parzen scores) and a draw for a
        Gaussian decoder of vectors, whose means lie on a ``latent_dim``-dimensional surface rather than
        spread as the model does (a VAE of the ring in one run: means in 2 of its 8 modes, draws in all 8). Every random
        number (z, u, eps) comes from ``generator`` (torch's global generator without one), drawn on its device.

        >>> import genzoo
        >>> vae = genzoo.build("vae", data_shape=(1, 8, 8), latent_dim=4, hidden=(32,))
        >>> g = lambda: torch.Generator().manual_seed(0)
        >>> torch.equal(vae.sample(3, g()), vae.generate(torch.randn(3, 4, generator=g())))   # images: the means
        True
        >>> vae.sample(3, g(), mean=False).unique().tolist()     # a draw of binary pixels
        [0.0, 1.0]
        >>> v2 = genzoo.build("vae", data_shape=(2,), likelihood="gaussian", latent_dim=2, hidden=(8,))
        >>> torch.equal(v2.sample(3, g()), v2.sample(3, g(), mean=False))                    # vectors: a draw
        True
        """
        n = self.check_count(n)
        if mean is None:
            mean = self.likelihood == "bernoulli" or len(self.data_shape) > 1
        z = self.randn((n, self.latent_dim), generator, self._zero.dtype)                   # (n, L)
        px = self._decode(z)
        if mean:
            return px.mean                                                                  # (n, *data_shape)
        if self.likelihood == "bernoulli":
            probs = px.mean                                                                 # (n, *data_shape)
            return (self.rand(probs.shape, generator, probs.dtype) < probs).to(probs.dtype)
        loc, scale = px.base_dist.loc, px.base_dist.scale                                   # (n, *data_shape) each
        return loc + scale * self.randn(loc.shape, generator, loc.dtype)


class _PlanarMap(_TorchTransform):
    """One amortised planar map as a ``torch.distributions.Transform``, so that :meth:`VAE.encode` can return
    the flow posterior as a ``TransformedDistribution``; the inverse is the 1-D root search of
    :func:`~genzoo.models.flows.transforms.planar_inverse`."""

    domain = constraints.independent(constraints.real, 1)
    codomain = constraints.independent(constraints.real, 1)
    bijective = True

    def __init__(self, u: Tensor, w: Tensor, b: Tensor):
        super().__init__(cache_size=1)
        self.u, self.w, self.b = u, w, b

    def _call(self, z: Tensor) -> Tensor:
        return planar(z, self.u, self.w, self.b)[0]

    def _inverse(self, y: Tensor) -> Tensor:
        shape = y.shape
        flat = y.reshape(-1, shape[-1])
        reps = flat.shape[0] // self.u.shape[0]
        u, w, b = self.u.repeat(reps, 1), self.w.repeat(reps, 1), self.b.repeat(reps)
        return planar_inverse(flat, u, w, b).reshape(shape)

    def log_abs_det_jacobian(self, z: Tensor, y: Tensor) -> Tensor:
        return planar(z, self.u, self.w, self.b)[1]
