"""The model contract: one base class and the capability protocols.

Every family subclasses :class:`GenerativeModel` (an ``nn.Module``) and is registered by name
with :func:`genzoo.registry.register`. What a model *can* do beyond sampling is told by the
runtime-checkable protocols below, never by a class hierarchy: ``isinstance(model, Density)``.

>>> import genzoo
>>> from genzoo.base import Density, Generator, LatentVariable
>>> [[isinstance(genzoo.build(name, data_shape=(2,)), p) for p in (Density, LatentVariable, Generator)]
...  for name in ("gmm", "vae", "gan", "realnvp")]
[[True, False, False], [False, True, True], [False, False, True], [True, False, True]]

The training contract, used by :func:`genzoo.fit` and nothing else:

* ``configure_optimizers()`` returns the optimizers (an empty list for EM-fitted models);
* ``check_training_data(x)`` refuses training data the model cannot learn from, on every new run (a loaded
  or trained model's too, which skips ``setup``);
* ``setup(x, generator)`` does data-dependent initialisation once, before step 0 (not on resume);
* ``training_step(batch, optimizers)`` does one update and returns floats to log. The default
  calls ``loss(batch.x)["loss"]``, then zero_grad / backward / (clip to ``max_grad_norm``) / step, with the
  one optimizer ``configure_optimizers()`` returns (so a single-objective model writes those two).
  Adversarial models override it to alternate critic and generator updates; the GMM does an EM
  iteration with no optimizer.
"""

from __future__ import annotations

import contextlib
import math
import numbers
from typing import ClassVar, NamedTuple, Protocol, runtime_checkable

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from .errors import ConfigError, DataError


class Batch(NamedTuple):
    """One mini-batch: data ``x`` (B, ...) and labels ``y`` (B,) or None."""

    x: Tensor
    y: Tensor | None = None


class GenerativeModel(nn.Module):
    """Base class of every genzoo model.

    Subclasses take only keyword arguments in ``__init__`` (recorded by ``@register`` into
    ``self.config`` and saved as ``config.json``) and always receive ``data_shape``: the shape
    of one example, e.g. ``(1, 28, 28)`` or ``(2,)``.
    """

    #: registry name, set by ``@register``
    name: ClassVar[str] = ""
    #: one-line description, shown by ``genzoo models``
    description: ClassVar[str] = ""
    #: True for models whose step sees the whole training set (full-batch EM)
    full_batch: ClassVar[bool] = False
    #: True for models that learn from labels (M2): :func:`~genzoo.fit` refuses a training set without them
    needs_labels: ClassVar[bool] = False
    #: True for models that may train under bf16 autocast: they cast network outputs to float32 before
    #: any log-det, log-sum-exp or loss accumulation (see :mod:`genzoo.train.acceleration`)
    autocast_safe: ClassVar[bool] = False
    #: True where p(x|z) is a mass on binary pixels (M2; the VAE with a Bernoulli decoder): its bounds are
    #: likelihoods only on 0/1 data (:meth:`check_pixels`, the ``bernoulli-on-grey`` space)
    bernoulli_pixels: bool = False
    #: False where :meth:`loss` (the validation loss, ``valid_loss``) is not the training step's ``loss`` (M2: U(x)
    #: alone, its objective has labelled terms) or not comparable with it (the GMMN's sqrt(MMD_b^2), whose bias
    #: shrinks with the batch, at 2,000 validation examples against the training batch): the report does not draw
    #: the two on one panel (the other terms keep their ``valid_`` twins beside them)
    valid_loss_is_training_loss: ClassVar[bool] = True
    #: constructor arguments, set by ``@register``
    config: dict
    #: False where the validation loss does not measure the model (a GAN's is its discriminator's): ``keep_best``,
    #: which keeps the weights of its lowest value, is then refused
    best_by_valid_loss: ClassVar[bool] = True

    @property
    def min_loss_examples(self) -> int:
        """The fewest examples :meth:`loss` takes: a validation split of fewer is no use (a packed GAN's pack, 2 for
        covariances)."""
        return 1
    #: what a placeholder default stands for (option -> note), shown by ``genzoo models NAME``
    DEFAULT_NOTES: ClassVar[dict[str, str]] = {}
    #: the default training step clips the gradient norm to this when > 0 (a model option where offered)
    max_grad_norm: float = 0.0
    #: True once the model holds weights of its own: set up by :func:`~genzoo.fit` (which then runs no second
    #: :meth:`setup`) or read from a file by :func:`genzoo.load` or a checkpoint. A second ``fit`` trains on from them:
    #: a flow's setup would re-initialise its activation norms, the GMM's restart EM from k-means. (A plain
    #: ``load_state_dict`` does not set it: the weights may be a fresh model's; set it where they are trained ones.)
    initialised: bool = False

    @classmethod
    def defaults(cls, config: dict) -> dict:
        """Data and training settings the CLI uses where the user gives none (see ``genzoo train``)."""
        return {"data": {"name": "digits"}, "train": {"steps": 2000, "batch_size": 128}}

    # -- sampling ---------------------------------------------------------------------------
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``n`` examples, shape (n, *data_shape)."""
        raise NotImplementedError(f"{type(self).__name__} defines no sample(n, generator=None), which draws n examples")

    # -- training ---------------------------------------------------------------------------
    def loss(self, x: Tensor) -> dict[str, Tensor]:
        """Return a dict with a scalar ``"loss"`` to minimise, plus any terms worth logging."""
        raise NotImplementedError(f"{type(self).__name__} defines no loss(x), which the default training_step "
                                  "minimises (returning {'loss': a scalar tensor}), nor a training_step of its own")

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """The optimizers :meth:`training_step` takes; default none (an EM model's). The default training step
        takes exactly one: a model that keeps it returns ``[torch.optim.Adam(self.parameters(), lr=...)]``, say."""
        return []

    def check_training_data(self, x: Tensor) -> None:
        """A DataError where the training data ``x`` (N, ...), as the batches see them, are no data the model can
        learn from. :func:`~genzoo.fit` asks on every new run, before :meth:`setup`, and also where a loaded or
        trained model (:attr:`initialised`) skips setup and the checks in it: a Bernoulli VAE trained on from
        its weights took data in [-1, 1] and its loss went negative. Default: :meth:`check_pixels` (NaN or
        infinite values; outside [0, 1] for a Bernoulli decoder or a flow's logit pre-processing); a family whose
        setup refuses other data may override it.

        >>> import torch, genzoo
        >>> genzoo.build("vae", data_shape=(2,)).check_training_data(torch.tensor([[-1.0, 0.5]]))
        Traceback (most recent call last):
        genzoo.errors.DataError: vae: a Bernoulli decoder scores pixels in [0, 1], got values in [-1, 0.5]; scale the data, or use --set likelihood=gaussian
        """
        self.check_pixels(x)

    def setup(self, x: Tensor, generator: torch.Generator) -> None:
        """Data-dependent initialisation from (a sample of) the training set; default: none."""

    def setup_labels(self, x: Tensor, y: Tensor, generator: torch.Generator, space: str = "binarized") -> None:
        """For training sets with labels: the raw examples (N, ...), labels (N,) and the space the training
        batches are in (:attr:`genzoo.data.Dataset.space`: the raw examples have not been through its
        binarization or dequantization); default: ignore them."""

    def training_step(self, batch: Batch, optimizers: list[torch.optim.Optimizer]) -> dict[str, float]:
        """One update of ``loss(batch.x)["loss"]`` by the one optimizer :meth:`configure_optimizers` returns."""
        if len(optimizers) != 1:  # (fit asks before it writes anything; this is for a loop of the user's)
            raise ConfigError(f"{type(self).__name__}: the default training_step takes one optimizer, got "
                              f"{len(optimizers)}: return [one optimizer] from configure_optimizers()")
        (opt,) = optimizers
        terms = self.loss(batch.x)
        opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        if self.max_grad_norm > 0:
            from .train import distributed  # here: genzoo.train imports this module

            distributed.average_gradients(opt)  # under torchrun: clip the global batch's gradient, not a shard's
            clip_grad_norm(self.parameters(), self.max_grad_norm)
        opt.step()
        return {k: float(v.detach()) for k, v in terms.items()}

    def unused_options(self) -> dict[str, str]:
        """Options that the model's other settings make idle, each with the setting that does (the CLI notes the
        ones a user gave, which would otherwise be accepted without a word); default: none."""
        return {}

    def check_batch_size(self, batch_size: int) -> None:
        """A ConfigError if the model cannot train on batches of ``batch_size`` examples (per process), which
        :func:`genzoo.fit` asks before anything is written; default: any size."""

    def check_count(self, n: int, what: str = "the number of samples") -> int:
        """``n``, a number of samples to draw (or ``what``), as an int >= 1 (a ConfigError otherwise)."""
        if isinstance(n, Tensor) and n.dim() == 0 and not n.is_floating_point():
            n = int(n)
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
            raise ConfigError(f"{self.name}: {what} must be a whole number >= 1, got {n!r}")
        return int(n)

    def check_input(self, x: Tensor) -> Tensor:
        """``x`` as a batch (B, *data_shape) on the model's device and in the dtype of its parameters (a CPU
        batch for a CUDA model is moved, float64 or integer input converted, as :meth:`check_latent` does for
        latents); a DataError for examples of another shape, which would otherwise be flattened or
        broadcast without a word, and for an empty batch (B = 0), which torch would fail on deep inside.

        >>> import torch, genzoo
        >>> genzoo.build("vae", data_shape=(1, 8, 8)).check_input(torch.zeros(5, 64))
        Traceback (most recent call last):
        genzoo.errors.DataError: vae models examples of shape (1, 8, 8), got a batch of shape (5, 64)
        >>> genzoo.build("vae", data_shape=(1, 8, 8)).check_input(torch.zeros(0, 1, 8, 8))
        Traceback (most recent call last):
        genzoo.errors.DataError: vae: got an empty batch (0 examples of shape (1, 8, 8))
        """
        shape = tuple(self.data_shape)
        if not isinstance(x, Tensor):
            raise DataError(f"{self.name} takes a torch.Tensor batch of examples of shape {shape}, got a "
                            f"{type(x).__name__} (torch.as_tensor converts one)")
        if x.dim() < 1 or tuple(x.shape[1:]) != shape:
            raise DataError(f"{self.name} models examples of shape {shape}, got a batch of shape {tuple(x.shape)}")
        if x.shape[0] == 0:
            raise DataError(f"{self.name}: got an empty batch (0 examples of shape {shape})")
        return x.to(self.device, self.param_dtype)  # x itself where both already match; the GMM keeps x's dtype

    def check_pixels(self, x: Tensor) -> Tensor:
        """``x`` as :meth:`check_input` returns it; a DataError for NaN or infinite values (a bound or density
        of them would be NaN, or a raw error from torch.distributions); and for a model whose p(x|z) is a mass
        on binary pixels (``bernoulli_pixels``: the Bernoulli VAE, M2), a DataError unless the values lie in
        [0, 1]: outside, ``x log p + (1 - x) log(1 - p)`` is no likelihood and grows without bound (grey levels
        inside are scored as a cross-entropy, the ``bernoulli-on-grey`` space; likewise a flow's logit
        pre-processing: :meth:`outside_unit_interval`). One pass and one host sync: for
        the bounds and densities that evaluation calls; the training steps call :meth:`check_input`, but for
        the flows' (whose loss is ``log_prob``: the one sync per step their NaN check always cost).

        >>> import torch, genzoo
        >>> genzoo.build("vae", data_shape=(1, 8, 8)).check_pixels(torch.full((2, 1, 8, 8), 255.0))
        Traceback (most recent call last):
        genzoo.errors.DataError: vae: a Bernoulli decoder scores pixels in [0, 1], got values in [255, 255]; scale the data, or use --set likelihood=gaussian
        >>> genzoo.build("vae", data_shape=(2,), likelihood="gaussian").check_pixels(torch.tensor([[0.0, float("nan")]]))
        Traceback (most recent call last):
        genzoo.errors.DataError: vae: examples with NaN or infinite values
        """
        x = self.check_input(x)
        if not (x.is_floating_point() or self.bernoulli_pixels):  # integers are finite
            return x
        lo, hi = torch.stack(torch.aminmax(x.detach())).tolist()  # one pass, one sync; NaN propagates to both
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise DataError(f"{self.name}: examples with NaN or infinite values")
        if (lo < 0 or hi > 1) and (why := self.outside_unit_interval(lo, hi)):
            raise DataError(why)
        return x

    def outside_unit_interval(self, lo: float, hi: float) -> str | None:
        """The error for data in [lo, hi], not within [0, 1], where the model needs them there (None: any range
        will do): a Bernoulli decoder's pixels here; a flow's logit pre-processing too (:meth:`check_pixels`
        asks, from the one pass it makes)."""
        if not self.bernoulli_pixels:
            return None
        hint = "; scale the data, or use --set likelihood=gaussian" if hasattr(self, "likelihood") else ""
        return f"{self.name}: a Bernoulli decoder scores pixels in [0, 1], got values in [{lo:.3g}, {hi:.3g}]{hint}"

    def check_latent(self, z: Tensor, leading: bool = True) -> Tensor:
        """``z`` as latents for :meth:`decode` / :meth:`generate`: a tensor (..., B, latent_dim) (exactly
        (B, latent_dim) with ``leading=False``), converted to the dtype of the model's parameters and to its
        device (float64 latents from numpy, integer ones, CPU ones for a GPU model). A DataError for any other
        width, an unbatched (latent_dim,), a non-tensor or no latents at all, which would otherwise be
        reshaped into garbage of another shape or fail inside torch.

        >>> import torch, genzoo
        >>> genzoo.build("vae", data_shape=(1, 8, 8), latent_dim=4).check_latent(torch.zeros(5, 8))
        Traceback (most recent call last):
        genzoo.errors.DataError: vae: latents must be a torch.Tensor of shape (..., B, 4), got (5, 8)
        """
        L = self.latent_dim
        want = f"(..., B, {L})" if leading else f"(B, {L})"
        if not isinstance(z, Tensor) or z.dim() < 2 or (not leading and z.dim() != 2) or z.shape[-1] != L:
            got = tuple(z.shape) if isinstance(z, Tensor) else f"a {type(z).__name__}"
            raise DataError(f"{self.name}: latents must be a torch.Tensor of shape {want}, got {got}")
        if z.numel() == 0:
            raise DataError(f"{self.name}: got no latents (shape {tuple(z.shape)})")
        dtype = self.param_dtype or (z.dtype if z.is_floating_point() else torch.get_default_dtype())
        return z.to(self.device, dtype)

    # -- random draws for sample() ------------------------------------------------------------------------
    def _draw_device(self, generator: torch.Generator | None) -> torch.device:
        return generator.device if generator is not None else self.device

    def randn(self, shape: tuple[int, ...], generator: torch.Generator | None = None,
              dtype: torch.dtype | None = None) -> Tensor:
        """Standard normal draws of ``shape`` for :meth:`sample`, made on ``generator``'s device (the model's
        without one) and moved to the model's: a CPU generator then gives a CUDA model the same numbers as a
        CPU one, and a CUDA generator works too. ``dtype``: the parameters' by default.

        >>> import torch, genzoo
        >>> m, g = genzoo.build("gmmn", data_shape=(2,)), torch.Generator().manual_seed(0)
        >>> torch.equal(m.randn((3, 2), g), torch.randn(3, 2, generator=torch.Generator().manual_seed(0)))
        True
        """
        return torch.randn(shape, generator=generator, device=self._draw_device(generator),
                           dtype=dtype or self.param_dtype or torch.get_default_dtype()).to(self.device)

    def rand(self, shape: tuple[int, ...], generator: torch.Generator | None = None,
             dtype: torch.dtype | None = None) -> Tensor:
        """Uniform draws on [0, 1) of ``shape``, made and moved as :meth:`randn` makes them."""
        return torch.rand(shape, generator=generator, device=self._draw_device(generator),
                          dtype=dtype or self.param_dtype or torch.get_default_dtype()).to(self.device)

    def randint(self, high: int, shape: tuple[int, ...], generator: torch.Generator | None = None) -> Tensor:
        """Integers in 0..high-1 (int64) of ``shape``, made and moved as :meth:`randn` makes them."""
        return torch.randint(high, shape, generator=generator, device=self._draw_device(generator)).to(self.device)

    @property
    def param_dtype(self) -> torch.dtype | None:
        """The dtype of the model's parameters (None: it has none, as the GMM, whose state is buffers)."""
        p = next(self.parameters(), None)
        return None if p is None else p.dtype

    @property
    def device(self) -> torch.device:
        for t in self.parameters():
            return t.device
        for t in self.buffers():
            return t.device
        return torch.device("cpu")


def forked_rng(device: torch.device | str = "cpu"):
    """``torch.random.fork_rng`` over the CPU's generator and ``device``'s (CUDA or MPS): both streams are the
    caller's again afterwards. A ``torch.manual_seed`` inside reseeds every device, so a block that seeds
    (validation, evaluation) forks the device it draws on, or training's noise on it would restart from the
    same state after each such block.

    >>> import torch
    >>> before = torch.get_rng_state()
    >>> with forked_rng("cpu"):
    ...     _ = torch.manual_seed(0); _ = torch.rand(3)
    >>> torch.equal(torch.get_rng_state(), before)
    True
    """
    device = torch.device(device)
    if device.type == "mps":
        return torch.random.fork_rng(device_type="mps")
    return torch.random.fork_rng(devices=[torch.cuda.current_device() if device.index is None else device.index]
                                 if device.type == "cuda" else [])


@contextlib.contextmanager
def evaluating(model: nn.Module):
    """The block with ``model`` in eval mode, and each of its modules back in the mode it had afterwards (after an
    error too): evaluation, sampling and the apps query a model without changing it.

    >>> import genzoo
    >>> m = genzoo.build("vae", data_shape=(2,)).train()
    >>> with evaluating(m):
    ...     m.training
    False
    >>> m.training
    True
    """
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, mode in modes:
            m.training = mode


def clip_grad_norm(parameters, max_norm: float) -> float:
    """``torch.nn.utils.clip_grad_norm_`` that rescales the gradients only when their total norm exceeds
    ``max_norm`` (torch's multiplies every gradient by min(1, ...) on every step, a pass over all of them
    that a rarely-clipping model pays for nothing); returns the total norm before clipping."""
    params = [p for p in parameters if p.grad is not None]
    if not params:
        return 0.0
    total = torch.nn.utils.get_total_norm([p.grad for p in params])
    if float(total) > max_norm:
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, total)
    return float(total)


@runtime_checkable
class Density(Protocol):
    """Exact log-density: ``log_prob(x)`` (B, ...) -> (B,) in nats (GMM, flows)."""

    def log_prob(self, x: Tensor) -> Tensor: ...


@runtime_checkable
class LatentVariable(Protocol):
    """A latent-variable model: q(z|x), p(x|z), the ELBO and the IWAE bound (VAE, M2)."""

    latent_dim: int

    def encode(self, x: Tensor) -> Distribution: ...

    def decode(self, z: Tensor) -> Distribution: ...

    def elbo(self, x: Tensor) -> Tensor: ...

    def iwae_bound(self, x: Tensor, k: int) -> Tensor: ...


@runtime_checkable
class Generator(Protocol):
    """A deterministic map from a latent prior to data space (GAN, GMMN, VAE decoder, flows).

    >>> import torch, genzoo
    >>> gan = genzoo.build("gan", data_shape=(1, 8, 8), latent_dim=4, hidden=(16,))
    >>> z = gan.prior.sample((3,))                 # (3, latent_dim)
    >>> x = gan.generate(z)                        # images in [0, 1]
    >>> x.shape, bool(0 <= x.min() and x.max() <= 1), torch.equal(gan.generate(z), x)
    (torch.Size([3, 1, 8, 8]), True, True)
    """

    latent_dim: int

    @property
    def prior(self) -> Distribution: ...

    def generate(self, z: Tensor) -> Tensor: ...


@runtime_checkable
class Invertible(Protocol):
    """A transform returning ``(y, log|det J|)`` with an exact ``inverse``."""

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]: ...

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]: ...
