"""Adversarial models: the GAN (Goodfellow et al. 2014), the Wasserstein GAN (Arjovsky et al. 2017;
Gulrajani et al. 2017) and the f-GAN (Nowozin et al. 2016).

All three share :class:`Adversarial`: a generator G(z) with z ~ N(0, I) and a discriminator (critic)
D(x), each an MLP for vectors or the DCGAN stack for images (:mod:`genzoo.nn.dcgan`). One call of
``training_step`` is **one discriminator update**; every ``d_steps``-th call is followed by one
generator update, so ``--steps`` counts discriminator updates and the generator gets
``steps / d_steps`` of them. The subclasses differ only in their two losses.

Images live in [0, 1] in genzoo; the networks see them in [-1, 1] (tanh output, Radford et al.
2016), and ``generate`` maps back. Vector data is standardised for the networks in the same way
(mean and standard deviation per dimension, from the training set in ``setup``).

>>> import torch, genzoo
>>> gan = genzoo.build("gan", data_shape=(2,), latent_dim=2, hidden=(16,))
>>> opts = gan.configure_optimizers()
>>> logs = gan.training_step(genzoo.Batch(torch.randn(32, 2)), opts)
>>> sorted(k for k in logs if k.startswith("d_")), gan.sample(5).shape
(['d_acc', 'd_fake', 'd_loss', 'd_real'], torch.Size([5, 2]))
"""

from __future__ import annotations

import copy
import math
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal

from .. import divergences
from ..base import Batch, GenerativeModel, evaluating
from ..errors import ConfigError, DataError
from ..nn import ACTIVATIONS, Activation, mlp
from ..nn.dcgan import DCGANDiscriminator, DCGANGenerator
from ..registry import register
from ..train import distributed

Arch = Literal["mlp", "dcgan", "affine"]
#: the names of :data:`genzoo.divergences.DIVERGENCES`, the f-GAN's choices
Divergence = Literal["kl", "reverse_kl", "js", "jeffrey", "pearson", "hellinger", "gan"]
assert set(get_args(Divergence)) == set(divergences.DIVERGENCES), "keep Divergence in step with genzoo.divergences"


class Affine(nn.Module):
    """x = mu + sigma * z elementwise: the one-Gaussian generator of Nowozin et al. 2016, Section 4, a Gaussian with
    a diagonal covariance diag(sigma^2) (per-dimension mu and sigma), which cannot represent correlated data.

    >>> g = Affine(2)
    >>> x = g(torch.randn(100_000, 2, generator=torch.Generator().manual_seed(0)))
    >>> abs(float(torch.corrcoef(x.detach().T)[0, 1])) < 0.01
    True
    """

    def __init__(self, dim: int):
        super().__init__()
        self.mu = nn.Parameter(torch.zeros(dim))
        self.log_sigma = nn.Parameter(torch.zeros(dim))

    def forward(self, z: Tensor) -> Tensor:
        return self.mu + self.log_sigma.exp() * z  # (B, D)


class Adversarial(GenerativeModel):
    """Generator, discriminator and the alternating update; subclasses give the losses.

    Shared arguments: ``latent_dim``; ``arch`` ("mlp", "dcgan" for images, "affine" for the
    x = mu + sigma z generator, a Gaussian with a diagonal covariance); ``hidden`` (MLP hidden sizes of
    both networks); ``width`` (DCGAN channels); ``d_norm`` (the DCGAN discriminator's normalisation);
    ``d_activation`` (the nonlinearity of the MLP discriminator, a name in ``genzoo.nn.ACTIVATIONS``; the
    DCGAN one uses leaky ReLU);
    ``d_steps`` (k discriminator
    updates per generator update); ``pack`` (PacGAN, Lin et al. 2018: the discriminator judges
    ``pack`` samples at once); ``lr`` and ``betas`` (Adam) for both networks; ``g_hidden`` (the MLP
    generator's hidden sizes when they differ from ``hidden``); ``g_ema`` (None: off; a decay beta in
    [0, 1): sample from an exponential moving average of the generator's weights, see
    :meth:`update_ema`); ``g_fresh_noise`` (False: the generator's update reuses the G(z) of the
    discriminator update just made, as the DCGAN reference loop does, one generator pass fewer;
    True: it draws fresh noise, as Algorithm 1 of Goodfellow et al. 2014 and of Gulrajani et al. 2017 do).
    ``gan``, ``wgan`` and ``fgan`` all take these (``d_norm`` only ``gan``: the WGAN's follows its penalty, the
    f-GAN's is batch norm). Under bf16 autocast,
    samples and critic scores are cast to float32 before any loss.
    """

    autocast_safe = True
    DEFAULT_NOTES = {"g_hidden": "None: hidden's sizes", "g_ema": "None: no average"}
    #: the validation loss is the discriminator's (critic's), which says how well it tells the samples from the
    #: data, not how good they are: its lowest point is no best generator
    best_by_valid_loss = False

    def __init__(self, *, data_shape: tuple[int, ...], latent_dim: int, arch: Arch, hidden: tuple[int, ...],
                 width: int, d_norm: str, d_steps: int, pack: int, lr: float, betas: tuple[float, float],
                 d_activation: Activation = "leaky_relu", g_hidden: tuple[int, ...] | None = None,
                 g_ema: float | None = None, g_fresh_noise: bool = False):
        super().__init__()
        if latent_dim < 1 or d_steps < 1 or pack < 1 or width < 1:
            raise ConfigError("latent_dim, d_steps, pack and width must be >= 1")
        if g_ema is not None and not 0 <= g_ema < 1:
            raise ConfigError(f"g_ema must be a decay in [0, 1) or None (off), got {g_ema}")
        if d_activation not in ACTIVATIONS:
            raise ConfigError(f"unknown d_activation '{d_activation}': choose one of {', '.join(ACTIVATIONS)}")
        self.data_shape, self.latent_dim = tuple(data_shape), latent_dim
        self.d_steps, self.pack, self.lr, self.betas = d_steps, pack, lr, tuple(betas)
        self.is_image = len(self.data_shape) == 3
        d = math.prod(self.data_shape)
        self.arch, self.hidden, self.width, self.d_activation = arch, tuple(hidden), width, d_activation
        if arch == "dcgan":
            if not self.is_image:
                raise ConfigError(f"arch='dcgan' needs images (C, H, W), the data has shape {self.data_shape}")
            self.generator: nn.Module = DCGANGenerator(latent_dim, self.data_shape, width)
        elif arch == "affine":
            if self.is_image:  # x = mu + sigma z has no way into [0, 1]
                raise ConfigError("arch='affine' is the one-Gaussian generator x = mu + sigma z for vector data; "
                                  "images take arch='mlp' or 'dcgan'")
            if latent_dim != d:
                raise ConfigError(f"arch='affine' needs latent_dim equal to the data dimension ({d})")
            self.generator = Affine(d)
        else:
            out = [nn.Tanh()] if self.is_image else []
            g_sizes = hidden if g_hidden is None else g_hidden
            self.generator = nn.Sequential(mlp([latent_dim, *g_sizes, d], "relu"), *out)
        self.g_ema, self.g_fresh_noise = g_ema, bool(g_fresh_noise)
        # the averaged generator: a copy whose weights are buffers (saved, never optimised or counted)
        self.generator_ema = _buffers_only(copy.deepcopy(self.generator)) if g_ema is not None else None
        self.discriminator = self._discriminator(pack, d_norm)
        # discriminator updates so far: fixes the generator's turn and the instance-noise schedule
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))
        # vector data is standardised for the networks (set by setup from the training set)
        self.register_buffer("data_loc", torch.zeros(d))
        self.register_buffer("data_scale", torch.ones(d))
        self.register_buffer("_zero", torch.zeros(()), persistent=False)

    def unused_options(self) -> dict[str, str]:
        """The options of the networks that ``arch`` does not build: DCGAN's ``width`` and ``d_norm`` and the
        MLP discriminator's ``d_activation`` on MLPs, the MLPs' ``hidden`` with DCGAN, ``g_hidden`` unless the
        generator is an MLP."""
        opts, arch = self.config, self.arch
        idle = {}
        if arch != "dcgan":
            idle.update(dict.fromkeys([k for k in ("width", "d_norm") if k in opts], f"arch={arch}"))
        else:
            idle.update(dict.fromkeys([k for k in ("hidden", "d_activation") if k in opts], "arch=dcgan"))
        if arch != "mlp" and "g_hidden" in opts:
            idle["g_hidden"] = f"arch={arch}"
        return idle

    def _discriminator(self, pack: int, d_norm: str) -> nn.Module:
        """(B / pack, pack * C, H, W) or (B / pack, pack * D) -> (B / pack,) raw scores."""
        if self.arch == "dcgan":
            c, h, w = self.data_shape
            return DCGANDiscriminator((pack * c, h, w), self.width, d_norm)
        d = math.prod(self.data_shape)
        return nn.Sequential(nn.Flatten(), mlp([pack * d, *self.hidden, 1], self.d_activation), nn.Flatten(0))

    @classmethod
    def defaults(cls, config: dict) -> dict:
        """The ring of 8 Gaussians for vector models; digits (grey levels in [0, 1]) for DCGAN."""
        if config.get("arch") == "dcgan":
            return {"data": {"name": "digits"}, "train": {"steps": 4000, "batch_size": 64}}
        return {"data": {"name": "ring"}, "train": {"steps": 4000, "batch_size": 256}}

    # -- the Generator capability ------------------------------------------------------------
    @property
    def prior(self) -> Distribution:
        """p(z) = N(0, I)."""
        zeros = self._zero.expand(self.latent_dim)
        return Independent(Normal(zeros, torch.ones_like(zeros)), 1)

    def setup(self, x: Tensor, generator: torch.Generator) -> None:
        """Vector data (arch "mlp" and "affine"): the networks see it standardised per dimension, so one learning
        rate suits a ring of radius 1 and a grid spanning [-4, 4] alike (the affine generator's mu and sigma are
        then in those units: :meth:`gaussian` gives them in the data's; unstandardised, an affine f-GAN of data
        centred at 20 ended at 0.08, its Adam steps of about the lr from 0)."""
        if not self.is_image and self.arch in ("mlp", "affine") and x.shape[0] > 1:
            flat = x.reshape(x.shape[0], -1).to(self.data_loc)  # (N, D)
            self.data_loc.copy_(flat.mean(0))
            self.data_scale.copy_(flat.std(0).clamp_min(1e-6))

    def gaussian(self) -> tuple[Tensor, Tensor]:
        """The mean and std (D,) of the affine generator's Gaussian in data units (arch "affine" only): with
        ``g_ema``, the averaged generator's, which :meth:`sample` draws from.

        >>> import genzoo
        >>> m = genzoo.build("fgan", data_shape=(1,), latent_dim=1, arch="affine", hidden=(8,))
        >>> m.setup(20 + 2 * torch.randn(1000, 1, generator=torch.Generator().manual_seed(0)), torch.Generator())
        >>> [round(float(v), 1) for v in m.gaussian()]            # it starts at the data's mean and std
        [20.1, 2.1]
        """
        if self.arch != "affine":
            raise ConfigError(f"gaussian() is the affine generator's Gaussian; this {self.name} has arch={self.arch!r}")
        g = self.generator if self.generator_ema is None else self.generator_ema
        return (self.data_loc + self.data_scale * g.mu).detach(), (self.data_scale * g.log_sigma.exp()).detach()

    def generate(self, z: Tensor) -> Tensor:
        """G(z) in data space for latents z (..., B, latent_dim): (..., B, *data_shape); images in [0, 1]. With
        ``g_ema`` in eval mode, the averaged generator. Latents of another width are a DataError
        (:meth:`~genzoo.base.GenerativeModel.check_latent`); float64 or integer ones are converted."""
        z = self.check_latent(z)
        x = self.sampler(z.reshape(-1, self.latent_dim))                    # (N, ...) in network space, N = prod(...) B
        return self._from_net(x.reshape(*z.shape[:-1], *self.data_shape))  # (..., B, *data_shape)

    def sampler(self, z: Tensor) -> Tensor:
        """The generator that samples, in network space: the averaged one with ``g_ema`` in eval mode,
        else the trained one."""
        g = self.generator_ema if (self.generator_ema is not None and not self.training) else self.generator
        return g(z)

    @torch.no_grad()
    def update_ema(self) -> None:
        """After each generator update: theta_ema <- beta theta_ema + (1 - beta) theta, from theta_ema
        = theta at initialisation (Yazici et al. 2019, eq. 2; Karras et al. 2018, Section 3); the
        generator's own buffers (batch-norm statistics) are copied."""
        ema = dict(self.generator_ema.named_buffers())
        for name, p in self.generator.named_parameters():
            ema[name].lerp_(p, 1.0 - self.g_ema)
        for name, b in self.generator.named_buffers():
            ema[name].copy_(b)

    def outside_unit_interval(self, lo: float, hi: float) -> str | None:
        """Image data outside [0, 1] (in [lo, hi]): the tanh generator draws only there, so it could never match them
        (:meth:`~genzoo.base.GenerativeModel.check_pixels` asks, from the one pass :meth:`check_training_data` makes,
        on every new run: a trained or loaded model too). Vector data take any range (standardised, no bounded output).

        >>> import genzoo
        >>> genzoo.build("gan", data_shape=(1, 4, 4)).check_training_data(torch.full((2, 1, 4, 4), -1.0))
        Traceback (most recent call last):
        genzoo.errors.DataError: gan: a tanh generator draws images in [0, 1] (its networks see 2x - 1), got values in [-1, -1]; scale the images to [0, 1]
        """
        if not self.is_image:
            return None
        return (f"{self.name}: a tanh generator draws images in [0, 1] (its networks see 2x - 1), got values in "
                f"[{lo:.3g}, {hi:.3g}]; scale the images to [0, 1]")

    def _from_net(self, x: Tensor) -> Tensor:
        if self.is_image:
            return (x + 1) / 2
        return x * self.data_scale.reshape(self.data_shape) + self.data_loc.reshape(self.data_shape)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` draws G(z), z ~ N(0, I), in data space (n, *data_shape), without a graph. In eval mode whatever
        the model's mode, as the flows sample: batch norm on its running statistics (left as they are, and a draw
        independent of ``n``), and with ``g_ema`` the averaged generator. :meth:`generate` follows the mode."""
        n = self.check_count(n)
        z = self.randn((n, self.latent_dim), generator)  # (n, L), drawn on the generator's device
        with evaluating(self):  # the mode comes back after an error too
            return self.generate(z)

    # -- the networks in their own space ----------------------------------------------------
    def _fake(self, n: int) -> Tensor:
        """n generated examples in network space ([-1, 1] for images), with gradients to G."""
        z = distributed.randn(n, self.latent_dim, device=self._zero.device,
                              dtype=self._zero.dtype)  # (n, L) in the model's dtype; under torchrun, a slice
        return self.generator(z).to(z.dtype).reshape(n, *self.data_shape)  # fp32 under autocast

    def _to_net(self, x: Tensor) -> Tensor:
        if self.is_image:
            return 2 * x - 1
        return (x - self.data_loc.reshape(self.data_shape)) / self.data_scale.reshape(self.data_shape)

    #: True while the gradient penalty scores its interpolates: the critic then runs its class's own ``forward``,
    #: not the one ``--compile`` compiled (a double backward does not run through a compiled graph)
    _critic_eager: bool = False

    def critic(self, x: Tensor) -> Tensor:
        """Raw discriminator scores of network-space examples, (B,) -> (B / pack,) groups of ``pack``."""
        if self.pack > 1:  # PacGAN: concatenate consecutive examples (channels for images, features otherwise)
            x = x.reshape(x.shape[0] // self.pack, self.pack * x.shape[1], *x.shape[2:])
        net = self.discriminator
        out = type(net).forward(net, x) if self._critic_eager else net(x)
        return out.to(self._zero.dtype)  # losses in fp32 under autocast

    #: the instance noise on the inputs of the discriminator step under way (0 outside it: validation, sampling)
    input_noise_now: float = 0.0

    def discriminator_input_noise(self) -> float:
        """Standard deviation of the instance noise added to the discriminator's inputs now (0: none)."""
        return 0.0

    # -- training ---------------------------------------------------------------------------
    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """[discriminator optimizer, generator optimizer]: Adam unless a subclass says otherwise."""
        return [torch.optim.Adam(self.discriminator.parameters(), lr=self.lr, betas=self.betas, fused=True),
                torch.optim.Adam(self.generator.parameters(), lr=self.lr, betas=self.betas, fused=True)]

    def discriminator_loss(self, real: Tensor, fake: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """(loss to minimise, terms to log) for network-space real and fake batches."""
        raise NotImplementedError

    def generator_loss(self, v_fake: Tensor) -> Tensor:
        """The generator's loss from the critic's raw scores of fresh fakes."""
        raise NotImplementedError

    @property
    def min_loss_examples(self) -> int:
        return self.pack  # the discriminator judges whole packs

    def check_batch_size(self, batch_size: int) -> None:
        """``batch_size`` per process: a multiple of ``pack``. A DCGAN of 4x4 images batch-normalises (H/4) x (W/4)
        = 1 value per channel of each example, in G's first layer over the batch and in a batch-norm D over its
        ``batch_size / pack`` packs: each needs 2 or more ("Expected more than 1 value per channel")."""
        if batch_size % self.pack:  # PacGAN's discriminator judges whole groups: a remainder would be dropped
            raise ConfigError(f"batch_size {batch_size} (per process) must be a multiple of pack ({self.pack})")
        if self.arch == "dcgan" and self.data_shape[1:] == (4, 4):
            d_bn = any(isinstance(m, nn.BatchNorm2d) for m in self.discriminator.modules())
            least = 2 * self.pack if d_bn else 2  # G: 2 examples; a batch-norm D: 2 packs
            if batch_size < least:
                packs = f" ({least // self.pack} packs of {self.pack} for its batch-norm discriminator)" if (
                    d_bn and self.pack > 1) else ""
                raise ConfigError(f"{self.name}: arch=dcgan on 4x4 images batch-normalises one value per channel of "
                                  f"each example, so batch_size (per process) must be {least} or more{packs}, "
                                  f"got {batch_size}")

    def after_discriminator_step(self) -> None:
        """Hook after each discriminator update (WGAN: weight clipping)."""

    def training_step(self, batch: Batch, optimizers: list[torch.optim.Optimizer]) -> dict[str, float]:
        opt_d, opt_g = optimizers
        n = batch.x.shape[0] // self.pack * self.pack
        if n == 0:
            raise ConfigError(f"batch_size must be at least pack ({self.pack})")
        real = self._to_net(batch.x[:n].to(self._zero.dtype))              # (n, ...), in the model's dtype
        g_turn = (int(self.updates) + 1) % self.d_steps == 0               # the generator updates after this
        reuse = g_turn and not self.g_fresh_noise
        if reuse:  # one G(z) serves both updates, as in the DCGAN reference loop: D sees it detached
            fake_g = self._fake(n)                                        # (n, ...), with G's graph
            fake = fake_g.detach()
        else:
            with torch.no_grad():
                fake = self._fake(n)                                      # (n, ...), G frozen here
        sigma = self.discriminator_input_noise()
        if sigma > 0:  # instance noise on both inputs (Sonderby et al. 2017; Arjovsky & Bottou 2017)
            real, fake = real + sigma * distributed.randn_like(real), fake + sigma * distributed.randn_like(fake)
        self.input_noise_now = sigma  # for fakes the loss makes itself (GAN's rejector under g_ema)
        try:
            d_loss, logs = self.discriminator_loss(real, fake)
        finally:
            self.input_noise_now = 0.0
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        self.after_discriminator_step()
        self.updates += 1
        out = {"loss": float(d_loss.detach()), "d_loss": float(d_loss.detach())}
        out.update({k: float(v.detach()) for k, v in logs.items()})
        if g_turn:
            # no discriminator weight gradients in the generator's update: D frozen, which spares them in a compiled
            # D's backward too (backward(inputs=G's) does not: its compiled backward computes them all)
            flags = [(p, p.requires_grad) for p in self.discriminator.parameters()]
            for p, _ in flags:
                p.requires_grad_(False)
            try:
                fake = fake_g if reuse else self._fake(n)                 # (n, ...), with G's graph
                if sigma > 0:
                    fake = fake + sigma * distributed.randn_like(fake)
                g_loss = self.generator_loss(self.critic(fake))
                opt_g.zero_grad(set_to_none=True)
                g_loss.backward()
                opt_g.step()
            finally:
                for p, flag in flags:  # as they were, after an error too: a layer the user froze stays frozen
                    p.requires_grad_(flag)
            if self.generator_ema is not None:
                self.update_ema()
            out["g_loss"] = float(g_loss.detach())
        return out

    def loss(self, x: Tensor) -> dict[str, Tensor]:
        """Discriminator terms on ``x`` against fresh fakes (validation metrics; no update)."""
        x = self.check_input(x)
        n = x.shape[0] // self.pack * self.pack
        if n == 0:  # PacGAN judges whole groups: none here, and the means over nothing would be NaN
            raise DataError(f"{self.name}: the loss needs at least pack ({self.pack}) examples, got {x.shape[0]}")
        d_loss, logs = self.discriminator_loss(self._to_net(x[:n]), self._fake(n))
        return {"loss": d_loss, **logs}


def _buffers_only(module: nn.Module) -> nn.Module:
    """``module`` with every parameter turned into a buffer of the same name (no gradient)."""
    for m in module.modules():
        for name, p in list(m._parameters.items()):
            if p is not None:
                del m._parameters[name]
                m.register_buffer(name, p.detach().clone())
    return module


@register("gan", "GAN (Goodfellow et al. 2014): minimax or non-saturating loss, MLP or DCGAN, optional training aids")
class GAN(Adversarial):
    """The original GAN: D(x) = sigmoid(critic(x)) trained by cross-entropy, and a generator loss.

    ``loss``: "minimax", the generator minimises E log(1 - D(G(z))) (Goodfellow et al. 2014, eq. 1),
    or "nonsaturating", it minimises -E log D(G(z)) (same fixed point, stronger gradients early;
    their Section 3). Training aids, each off by default: ``instance_noise`` (std of Gaussian noise
    added to both discriminator inputs, decaying linearly to 0 over ``instance_noise_steps``
    discriminator updates; 0 counts as 1, noise on the first update only), ``label_smoothing`` (one-sided: real targets 1 - s; Salimans et al. 2016,
    Section 3.4) and ``label_flip`` (each discriminator target flipped with this probability).
    ``rejection`` trains a second, unpacked discriminator beside the first and makes ``sample``
    keep only what it accepts (discriminator rejection sampling, Azadi et al. 2019; see ``sample``
    for ``rejection_sharpness``); ``generate`` stays the plain G(z). ``g_hidden``, ``g_ema`` (a
    moving average of the generator's weights to sample from) and ``g_fresh_noise`` (new noise for the
    generator's update) are described in :class:`Adversarial`.

    Computed every step (``metrics.jsonl`` keeps their means over ``log_every`` steps): ``d_real``
    and ``d_fake`` (mean D on real and fake), ``d_acc`` (share of both classified right at 0.5), and
    ``js``, the Jensen-Shannon estimate (V + log 4) / 2 that is exact when D is the optimal
    discriminator (Goodfellow et al. 2014, Theorem 1): with ``pack`` = m, between m-tuples of samples, and
    not exact with ``label_smoothing`` (the optimum is then (1 - s) p / (p + q)). With ``g_ema`` and
    ``rejection`` the second discriminator learns against the averaged generator, which ``sample`` proposes from.
    """

    def __init__(self, *, data_shape: tuple[int, ...], latent_dim: int = 2, arch: Arch = "mlp",
                 hidden: tuple[int, ...] = (128, 128, 128), width: int = 64,
                 d_norm: Literal["batch", "layer", "none"] = "batch", loss: Literal["minimax", "nonsaturating"] = "nonsaturating",
                 d_steps: int = 1, pack: int = 1, lr: float = 2e-4, betas: tuple[float, float] = (0.5, 0.999),
                 instance_noise: float = 0.0, instance_noise_steps: int = 10000, label_smoothing: float = 0.0,
                 label_flip: float = 0.0, rejection: bool = False, rejection_sharpness: float = 1.0,
                 g_hidden: tuple[int, ...] | None = None, g_ema: float | None = None, g_fresh_noise: bool = False,
                 d_activation: Activation = "leaky_relu"):
        super().__init__(data_shape=data_shape, latent_dim=latent_dim, arch=arch, hidden=hidden, width=width,
                         d_norm=d_norm, d_steps=d_steps, pack=pack, lr=lr, betas=betas, g_hidden=g_hidden,
                         g_ema=g_ema, g_fresh_noise=g_fresh_noise, d_activation=d_activation)
        # discriminator rejection sampling (Azadi et al. 2019): a second, unpacked discriminator trained
        # beside the first on the same batches, whose logit estimates log p_data(x) / p_model(x)
        self.rejector = self._discriminator(pack=1, d_norm=d_norm) if rejection else None
        if rejection_sharpness <= 0:
            raise ConfigError("rejection_sharpness must be > 0")
        self.rejection_sharpness = rejection_sharpness
        if instance_noise < 0 or not 0 <= label_smoothing < 1 or not 0 <= label_flip < 0.5:
            raise ConfigError("instance_noise must be >= 0, label_smoothing in [0, 1), label_flip in [0, 0.5)")
        self.g_loss_kind = loss
        self.instance_noise, self.instance_noise_steps = instance_noise, max(1, instance_noise_steps)
        self.label_smoothing, self.label_flip = label_smoothing, label_flip

    def discriminator_input_noise(self) -> float:
        return self.instance_noise * max(0.0, 1.0 - int(self.updates) / self.instance_noise_steps)

    def unused_options(self) -> dict[str, str]:
        """:meth:`Adversarial.unused_options`, and the settings of the aids that are off."""
        idle = super().unused_options()
        if self.rejector is None:
            idle["rejection_sharpness"] = "rejection=false"
        if self.instance_noise == 0:
            idle["instance_noise_steps"] = "instance_noise=0"
        return idle

    def configure_optimizers(self):
        opts = super().configure_optimizers()
        if self.rejector is not None:  # one optimizer over both discriminators: their losses add
            opts[0].add_param_group({"params": list(self.rejector.parameters())})
        return opts

    def _rejector_loss(self, real: Tensor, fake: Tensor) -> Tensor:
        """Plain cross-entropy of the rejection discriminator against the proposals :meth:`sample` draws; its
        optimum is log p_data / p_proposal, the ratio rejection sampling needs (Azadi et al. 2019, Section 3.1).
        With ``g_ema`` the proposals come from the averaged generator (in eval mode, as ``sample`` runs it), so
        its fakes replace G's here: against G's, the accepted samples would follow p_ema p_data / p_G."""
        if self.generator_ema is not None:
            with torch.no_grad(), evaluating(self.generator_ema):
                z = distributed.randn(fake.shape[0], self.latent_dim, device=fake.device,
                                      dtype=self._zero.dtype)                                  # (B, L)
                fake = self.generator_ema(z).to(fake.dtype).reshape(fake.shape)              # (B, ...)
            if self.input_noise_now > 0:  # the instance noise the reals carry in this step: both sides alike
                fake = fake + self.input_noise_now * distributed.randn_like(fake)
        return (F.binary_cross_entropy_with_logits(self.rejector(real), torch.ones(real.shape[0], device=real.device))
                + F.binary_cross_entropy_with_logits(self.rejector(fake), torch.zeros(fake.shape[0], device=fake.device)))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """G(z), or with ``rejection`` the samples the rejection discriminator accepts: a proposal x
        is kept with probability min(1, exp(s (logit(x) - M))) (Azadi et al. 2019, Section 3.1),
        which turns p_model into p_data where the logit is exact and below M. M is the 99th
        percentile of the first proposals' logits rather than their maximum, which a few outliers
        would set (the role of the paper's shift gamma); s > 1 (``rejection_sharpness``) trades
        diversity for quality."""
        n = self.check_count(n)
        if self.rejector is None:
            return super().sample(n, generator)
        kept, m = [], None
        with evaluating(self):  # the mode comes back even when the sampler gives up
            chunk, tries = max(4 * n, 4096), 0
            while sum(len(k) for k in kept) < n:
                tries += 1
                if tries > 200:
                    raise ConfigError("rejection sampling accepts almost nothing: train longer or set rejection=false")
                z = self.randn((chunk, self.latent_dim), generator)                                  # (chunk, L)
                x = self.sampler(z).reshape(chunk, *self.data_shape)
                logit = self.rejector(x)                                                             # (chunk,)
                if m is None:
                    m = torch.quantile(logit.float(), 0.99)
                u = self.rand((chunk,), generator)                                                   # (chunk,)
                kept.append(x[u < (self.rejection_sharpness * (logit - m)).exp()])
        return self._from_net(torch.cat(kept)[:n])

    def discriminator_loss(self, real, fake):
        v_real, v_fake = self.critic(real), self.critic(fake)                 # (B,) logits each
        real_t = 1.0 - self.label_smoothing                                    # one-sided smoothing: fakes' target 0
        t_real = torch.full_like(v_real, real_t)
        t_fake = torch.zeros_like(v_fake)
        if self.label_flip > 0:  # the class flipped, then smoothed as its new class (1 - t would smooth fakes to s)
            flip_r = distributed.rand(*t_real.shape, device=t_real.device) < self.label_flip  # a slice under torchrun
            flip_f = distributed.rand(*t_fake.shape, device=t_fake.device) < self.label_flip
            t_real = torch.where(flip_r, torch.zeros_like(t_real), t_real)
            t_fake = torch.where(flip_f, torch.full_like(t_fake, real_t), t_fake)
        # -E[t log D + (1 - t) log(1 - D)] on both batches, with D = sigmoid(v)
        loss = (F.binary_cross_entropy_with_logits(v_real, t_real)
                + F.binary_cross_entropy_with_logits(v_fake, t_fake))
        if self.rejector is not None:
            loss = loss + self._rejector_loss(real, fake)
        with torch.no_grad():
            # V(D, G) = E log D(x) + E log(1 - D(G(z))) (Goodfellow et al. 2014, eq. 1)
            value = F.logsigmoid(v_real).mean() + F.logsigmoid(-v_fake).mean()
            logs = {"d_real": torch.sigmoid(v_real).mean(), "d_fake": torch.sigmoid(v_fake).mean(),
                    "d_acc": 0.5 * ((v_real > 0).float().mean() + (v_fake < 0).float().mean()),
                    "js": (value + math.log(4)) / 2}  # C(G) = -log 4 + 2 JS (Theorem 1)
        return loss, logs

    def generator_loss(self, v_fake):
        if self.g_loss_kind == "minimax":
            return -F.softplus(v_fake).mean()  # E log(1 - D(G(z))) = E -softplus(v)
        return F.softplus(-v_fake).mean()      # -E log D(G(z)) = E softplus(-v)


@register("wgan", "Wasserstein GAN: weight clipping (Arjovsky et al. 2017) or gradient penalty (Gulrajani et al. 2017)")
class WGAN(Adversarial):
    """The critic maximises E f(x) - E f(G(z)) over 1-Lipschitz f (Arjovsky et al. 2017, eq. 3); the
    generator minimises -E f(G(z)).

    ``penalty``: "clip" keeps every critic weight in [-clip, clip] after each critic update
    (Arjovsky et al., Algorithm 1: c = 0.01, RMSProp, lr 5e-5, 5 critic steps); "gp" adds
    ``gp_weight`` * E (|grad f(x_hat)| - 1)^2 at random interpolates x_hat (Gulrajani et al. 2017,
    Algorithm 1: lambda = 10, Adam lr 1e-4, betas (0, 0.9), 5 critic steps). ``lr`` and ``betas``
    left at None take the paper's values. Logged: ``wasserstein``, the critic's estimate
    E f(x) - E f(G(z)), and ``gp``.

    >>> import torch, genzoo
    >>> _ = torch.manual_seed(0)
    >>> x = torch.randn(512, 2) * torch.tensor([1.0, 0.1])    # the data: a flat Gaussian
    >>> w = genzoo.build("wgan", data_shape=(2,), latent_dim=2, hidden=(32,), d_steps=1000, lr=1e-2)  # critic only
    >>> w.setup(x, torch.Generator().manual_seed(0))
    >>> opts = w.configure_optimizers()
    >>> est = [w.training_step(genzoo.Batch(x), opts)["wasserstein"] for _ in range(100)]
    >>> abs(est[0]) < 0.2 and est[-1] > 0.5                  # the critic learns to tell G(z) from the data
    True
    >>> [o.param_groups[0]["lr"] for o in genzoo.build("wgan", data_shape=(2,), penalty="clip").configure_optimizers()]
    [5e-05, 5e-05]
    """

    DEFAULT_NOTES = {**Adversarial.DEFAULT_NOTES, "lr": "None: 5e-5 with penalty=clip, 1e-4 with gp",
                     "betas": "None: (0, 0.9)"}

    def __init__(self, *, data_shape: tuple[int, ...], latent_dim: int = 2, arch: Arch = "mlp",
                 hidden: tuple[int, ...] = (128, 128, 128), width: int = 64, penalty: Literal["clip", "gp"] = "gp",
                 clip: float = 0.01, gp_weight: float = 10.0, d_steps: int = 5, pack: int = 1,
                 lr: float | None = None, betas: tuple[float, float] | None = None,
                 d_activation: Activation = "leaky_relu", g_hidden: tuple[int, ...] | None = None,
                 g_ema: float | None = None, g_fresh_noise: bool = False):
        lr = lr if lr is not None else (5e-5 if penalty == "clip" else 1e-4)
        betas = betas if betas is not None else (0.0, 0.9)
        # a gradient-penalty critic must not use batch norm (Gulrajani et al. 2017, Section 4)
        super().__init__(data_shape=data_shape, latent_dim=latent_dim, arch=arch, hidden=hidden, width=width,
                         d_norm="batch" if penalty == "clip" else "layer", d_steps=d_steps, pack=pack, lr=lr,
                         betas=betas, d_activation=d_activation, g_hidden=g_hidden, g_ema=g_ema,
                         g_fresh_noise=g_fresh_noise)
        if clip <= 0 or gp_weight < 0:
            raise ConfigError("clip must be > 0 and gp_weight >= 0")
        self.penalty, self.clip, self.gp_weight = penalty, clip, gp_weight

    def unused_options(self) -> dict[str, str]:
        idle = super().unused_options()
        if self.penalty == "clip":
            return {**idle, "gp_weight": "penalty=clip", "betas": "penalty=clip (RMSProp has no betas)"}
        return {**idle, "clip": "penalty=gp"}

    def configure_optimizers(self):
        if self.penalty == "clip":  # momentum-free RMSProp: Arjovsky et al. 2017, Section 3
            return [torch.optim.RMSprop(self.discriminator.parameters(), lr=self.lr),
                    torch.optim.RMSprop(self.generator.parameters(), lr=self.lr)]
        return super().configure_optimizers()

    def gradient_penalty(self, real: Tensor, fake: Tensor) -> Tensor:
        """E (|grad_x f(x_hat)|_2 - 1)^2, x_hat = eps x + (1 - eps) G(z), eps ~ U[0, 1] per critic input
        (Gulrajani et al. 2017, eq. 3): with ``pack`` one eps per pack, so that a packed x_hat lies on the
        segment between a real pack and a fake one."""
        eps = distributed.rand(real.shape[0] // self.pack, *([1] * (real.dim() - 1)), device=real.device)  # (B/m, 1, ...)
        eps = eps.repeat_interleave(self.pack, dim=0)                                     # (B, 1, ...)
        with torch.enable_grad():  # also under no_grad (validation metrics): the penalty is a gradient
            x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)                 # (B, ...)
            self._critic_eager = True
            try:
                (grad,) = torch.autograd.grad(self.critic(x_hat).sum(), x_hat, create_graph=True)
            finally:
                self._critic_eager = False
        if self.pack > 1:  # the gradient of one packed critic output is over its pack of examples
            grad = grad.reshape(real.shape[0] // self.pack, -1)
        return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()

    def discriminator_loss(self, real, fake):
        w = self.critic(real).mean() - self.critic(fake).mean()  # the Wasserstein estimate
        loss = -w
        logs = {"wasserstein": w.detach()}
        if self.penalty == "gp":
            gp = self.gradient_penalty(real, fake)
            loss = loss + self.gp_weight * gp
            logs["gp"] = gp.detach()
        return loss, logs

    def after_discriminator_step(self):
        if self.penalty == "clip":
            with torch.no_grad():
                for p in self.discriminator.parameters():
                    p.clamp_(-self.clip, self.clip)

    def generator_loss(self, v_fake):
        return -v_fake.mean()


@register("fgan", "f-GAN (Nowozin et al. 2016): variational divergence minimisation for KL, reverse KL, JS, ...")
class FGAN(Adversarial):
    """The critic V maximises F = E_P g_f(V(x)) - E_Q f*(g_f(V(x))) (Nowozin et al. 2016, eq. 6), a
    lower bound on D_f(P || Q) that is tight at the optimal critic; the generator minimises it.

    ``divergence``: one of :data:`genzoo.divergences.DIVERGENCES` ("kl", "reverse_kl", "js",
    "jeffrey", "pearson", "hellinger", "gan"). ``g_loss``: "minimax" (the saddle-point objective
    above) or "alternative", the generator maximises E_Q g_f(V(G(z))) instead (their Section 3.2).
    ``d_activation``: the nonlinearity of the MLP critic V (a name in ``genzoo.nn.ACTIVATIONS``; tanh by
    default, leaky ReLU in the DCGAN critic). The other options are :class:`Adversarial`'s.
    Logged: ``divergence``, the critic's current estimate F.

    >>> import torch, genzoo
    >>> _ = torch.manual_seed(0)
    >>> x = torch.randn(512, 2) * torch.tensor([1.0, 0.1])
    >>> f = genzoo.build("fgan", data_shape=(2,), latent_dim=2, hidden=(32,), divergence="kl", d_steps=1000, lr=1e-2)
    >>> f.setup(x, torch.Generator().manual_seed(0))
    >>> opts = f.configure_optimizers()
    >>> est = [f.training_step(genzoo.Batch(x), opts)["divergence"] for _ in range(100)]
    >>> est[0] < 0 < 1 < est[-1]      # a lower bound on KL(data || G), raised as the critic learns
    True
    """

    def __init__(self, *, data_shape: tuple[int, ...], latent_dim: int = 2, arch: Arch = "mlp",
                 hidden: tuple[int, ...] = (64, 64), width: int = 64, divergence: Divergence = "js",
                 g_loss: Literal["minimax", "alternative"] = "minimax", d_steps: int = 1, pack: int = 1,
                 lr: float = 2e-4, betas: tuple[float, float] = (0.5, 0.999), d_activation: Activation = "tanh",
                 g_hidden: tuple[int, ...] | None = None, g_ema: float | None = None, g_fresh_noise: bool = False):
        super().__init__(data_shape=data_shape, latent_dim=latent_dim, arch=arch, hidden=hidden, width=width,
                         d_norm="batch", d_steps=d_steps, pack=pack, lr=lr, betas=betas, d_activation=d_activation,
                         g_hidden=g_hidden, g_ema=g_ema, g_fresh_noise=g_fresh_noise)
        self.div = divergences.get(divergence)
        self.g_loss_kind = g_loss

    def discriminator_loss(self, real, fake):
        value = self.div.objective(self.critic(real), self.critic(fake))  # F(theta, omega)
        return -value, {"divergence": value.detach()}

    def generator_loss(self, v_fake):
        if self.g_loss_kind == "alternative":
            return -self.div.activation(v_fake).mean()
        return -self.div.conjugate_of_activation(v_fake).mean()  # the Q-part of F, the only one with G in it
