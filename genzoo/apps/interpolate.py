"""Latent interpolation and vector arithmetic for any model with a latent space (VAE, flows, GAN, GMMN).

Paths between two latents are linear or spherical. Spherical interpolation (slerp; Shoemake 1985,
advocated for generative models by White 2016, "Sampling Generative Networks") keeps the path at the
norm that a high-dimensional Gaussian prior puts its mass on, where a straight line passes through
the improbable region near the origin::

    slerp(z0, z1; t) = sin((1 - t) w) / sin(w) z0 + sin(t w) / sin(w) z1,   cos(w) = z0.z1 / (|z0| |z1|)

Latents come from the prior, or are inferred from images (:func:`infer_latent`): the posterior mean
of a VAE's encoder, the exact inverse of a flow, and for a GAN or GMMN, which have no encoder, the z
whose image is nearest in L2 after gradient descent from several starts (as in Yeh et al. 2016 and
the "projection" of Zhu et al. 2016). Vector arithmetic averages each concept's latent over a few
exemplars (Radford et al. 2016, Section 6.3: three per concept) before adding and subtracting.

>>> import torch, genzoo
>>> vae = genzoo.build("vae", data_shape=(1, 8, 8), latent_dim=4, hidden=(16,))
>>> z0, z1 = torch.randn(2, 4)
>>> path = latent_path(z0, z1, 5, "slerp")
>>> path.shape, bool(torch.allclose(path[0], z0)), bool(torch.allclose(path[-1], z1, atol=1e-6))
(torch.Size([5, 4]), True, True)
>>> interpolate(vae, z0, z1, steps=5).shape
torch.Size([5, 1, 8, 8])
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from ..base import Density, Generator, LatentVariable, evaluating
from ..errors import ConfigError

Kind = Literal["lerp", "slerp"]


def lerp(z0: Tensor, z1: Tensor, t: Tensor) -> Tensor:
    """(1 - t) z0 + t z1 for each t: (T,) x (L,) -> (T, L)."""
    t = t.reshape(-1, 1).to(z0)  # (T, 1)
    return (1 - t) * z0 + t * z1  # (T, L)


def slerp(z0: Tensor, z1: Tensor, t: Tensor, eps: float = 1e-7) -> Tensor:
    """Spherical interpolation (Shoemake 1985) of (L,) latents at times t (T,) -> (T, L); lerp for
    (anti)parallel ends, where the great circle is undefined or not unique."""
    t = t.reshape(-1, 1).to(z0)  # (T, 1)
    a, b = z0.double(), z1.double()
    cos = (a @ b / (a.norm() * b.norm()).clamp_min(eps)).clamp(-1, 1)
    omega = torch.arccos(cos)
    if float(torch.sin(omega)) < 1e-4:
        return lerp(z0, z1, t)
    s = torch.sin(omega)
    out = torch.sin((1 - t.double()) * omega) / s * a + torch.sin(t.double() * omega) / s * b  # (T, L)
    return out.to(z0.dtype)


def latent_path(z0: Tensor, z1: Tensor, steps: int, kind: Kind = "slerp") -> Tensor:
    """``steps`` latents from z0 to z1 inclusive, (steps, L)."""
    if steps < 2:
        raise ConfigError(f"an interpolation needs at least 2 steps, got {steps}")
    if kind not in ("lerp", "slerp"):
        raise ConfigError(f"unknown interpolation '{kind}': use lerp or slerp")
    if z0.shape != z1.shape or z0.dim() != 1:
        raise ConfigError(f"the two ends must be latents of the same shape (L,), got {tuple(z0.shape)} and {tuple(z1.shape)}")
    t = torch.linspace(0, 1, steps)
    return (slerp if kind == "slerp" else lerp)(z0, z1, t)


def check_latent_model(model, task: str = "interpolate in") -> None:
    """A one-line error unless ``model`` maps latents to data (the ``Generator`` capability)."""
    if not isinstance(model, Generator):
        hint = ("; M2 decodes p(x | y, z): see model.analogies(x) and model.sample(n, y=...)"
                if hasattr(model, "analogies") else "")
        raise ConfigError(f"{model.name} has no latent space to {task} (it needs generate(z) and a prior){hint}")


def draw_prior(model, n: int, generator: torch.Generator | None = None) -> Tensor:
    """``n`` latents (n, L) from the model's prior, on the CPU, reproducibly from ``generator``: a Normal as
    ``loc + scale * eps`` (eps standard normal), genzoo's :class:`~genzoo.models.flows.base.Logistic` (NICE's) as
    ``loc + scale * logit(u)`` and any other prior with an inverse cdf (a Uniform) as ``icdf(u)``, u uniform (kept
    1e-6 from 0 and 1). A prior of none of these kinds is a :class:`ConfigError` naming it. The standard normal and
    logistic, genzoo's own priors, are drawn as eps and logit(u) themselves.

    >>> from torch.distributions import Independent, Normal, Uniform
    >>> class Mine:                                       # a user's model: N(3, 0.1^2) on two latents ...
    ...     latent_dim, prior = 2, Independent(Normal(torch.full((2,), 3.0), torch.full((2,), 0.1)), 1)
    >>> z = draw_prior(Mine(), 10_000, torch.Generator().manual_seed(0))
    >>> z.shape, round(float(z.mean()), 2), round(float(z.std()), 2)
    (torch.Size([10000, 2]), 3.0, 0.1)
    >>> Mine.prior = Independent(Uniform(-torch.ones(2), torch.ones(2)), 1)   # ... or Yeh et al.'s U(-1, 1)
    >>> bool(draw_prior(Mine(), 10_000).abs().max() < 1)
    True
    """
    from ..models.flows.base import Logistic

    prior = model.prior
    base = prior
    while isinstance(base, torch.distributions.Independent):
        base = base.base_dist
    shape = (n, model.latent_dim)
    name = f"{getattr(model, 'name', type(model).__name__)}'s prior {_named(prior)}"
    if isinstance(base, torch.distributions.Normal):
        z, affine = torch.randn(shape, generator=generator), (base.loc, base.scale)
    else:
        u = torch.rand(shape, generator=generator).clamp(1e-6, 1 - 1e-6)
        if isinstance(base, Logistic):
            z, affine = torch.log(u) - torch.log1p(-u), (base.loc, base.scale)  # the standard logistic's inverse cdf
        else:
            affine = None
            try:
                z = base.icdf(u.to(getattr(model, "device", "cpu"))).cpu()
            except NotImplementedError:
                raise ConfigError(f"{name} cannot be drawn from here: the latent apps draw a Normal, a Logistic or a "
                                  "prior with an inverse cdf (icdf)") from None
            except RuntimeError:  # parameters that do not broadcast to (n, L)
                z = None
    if affine is not None:
        loc, scale = (t.detach().cpu() for t in affine)
        if not (bool((loc == 0).all()) and bool((scale == 1).all())):  # the standard ones: eps as drawn, bit for bit
            try:
                fits = torch.broadcast_shapes(loc.shape, scale.shape, shape) == shape
            except RuntimeError:
                fits = False
            z = loc + scale * z if fits else None
    if z is None or tuple(z.shape) != shape:
        raise ConfigError(f"{name} does not give latents of shape ({model.latent_dim},) (latent_dim)")
    return z


def _named(d) -> str:
    """A distribution's kind, as an error names it: ``Independent(Uniform)``."""
    inner = getattr(d, "base_dist", None)
    return f"{type(d).__name__}({_named(inner)})" if inner is not None else type(d).__name__


@torch.no_grad()
def generate(model, z: Tensor, batch_size: int = 256) -> Tensor:
    """Images (or vectors) for latents (N, L), in eval mode, on the CPU; images clipped to [0, 1]."""
    check_latent_model(model)
    L = getattr(model, "latent_dim", None)
    if z.dim() != 2 or z.shape[0] == 0 or (L is not None and z.shape[1] != L):
        raise ConfigError(f"{model.name} generates from latents of shape (N, {L}), got {tuple(z.shape)}")
    p = next(model.parameters(), None)  # genzoo's families convert latents themselves; a user's model may not
    z = z.to(model.device, p.dtype if p is not None and z.is_floating_point() else None)  # float64 latents too
    with evaluating(model):
        out = torch.cat([model.generate(z[i:i + batch_size]).float().cpu() for i in range(0, len(z), batch_size)])
    return out.clamp(0, 1) if out.dim() == 4 else out


def interpolate(model, z0: Tensor, z1: Tensor, steps: int = 8, kind: Kind = "slerp") -> Tensor:
    """The model's outputs along the path from z0 to z1: (steps, *data_shape)."""
    return generate(model, latent_path(z0, z1, steps, kind))


def infer_latent(model, x: Tensor, *, steps: int = 300, lr: float = 0.05, restarts: int = 4,
                 prior_weight: float = 1e-3, generator: torch.Generator | None = None) -> Tensor:
    """Latents (B, L) for data ``x`` (B, *data_shape).

    VAE: the mean of q(z|x) (pushed through the planar maps when the posterior is a flow). Flow: f(x),
    exact. GAN/GMMN: argmin_z ||G(z) - x||^2 - prior_weight log p(z) (a weak pull towards the prior's mass:
    ||z||^2 / 2 for N(0, I)), by Adam from ``restarts`` prior draws with a cosine-annealed step, keeping each
    example's best. The starts come from a generator of their own, seeded with ``generator``'s seed + 1, so
    ``generator`` is not advanced (``genzoo interpolate`` draws its prior rows from it after the projections of
    ``--between``) and each call with it starts from the same draws.

    >>> import genzoo
    >>> _ = torch.manual_seed(0); x = torch.randn(3, 2)
    >>> nice = genzoo.build("nice", data_shape=(2,))
    >>> torch.equal(infer_latent(nice, x), nice.encode(x))                  # a flow: exact
    True
    >>> gmmn = genzoo.build("gmmn", data_shape=(2,), hidden=(16,))          # no encoder: projection
    >>> target = gmmn.generate(torch.randn(4, 2)).detach()                  # images that have a latent
    >>> def error(restarts):                                                # (4,) distances to the targets
    ...     z = infer_latent(gmmn, target, steps=100, restarts=restarts, generator=torch.Generator().manual_seed(0))
    ...     return (gmmn.generate(z) - target).norm(dim=1)
    >>> err2, err4 = error(2), error(4)                                     # the same first two starts
    >>> bool((err4 <= err2).all()), err4.median().item() < 0.02             # each one's best; most found again
    (True, True)
    """
    check_latent_model(model)
    x = model.check_input(x)  # (B, *data_shape): another shape would broadcast against G(z) below
    with evaluating(model):  # and each module's mode back afterwards
        if isinstance(model, LatentVariable):
            with torch.no_grad():
                q = model.encode(x)
                if hasattr(q, "transforms"):  # a flow posterior: the base mean through the maps
                    z = q.base_dist.mean
                    for t in q.transforms:
                        z = t(z)
                    return z
                return q.mean  # (B, L)
        if isinstance(model, Density) and hasattr(model, "encode"):
            with torch.no_grad():
                return model.encode(x)  # (B, L), exact
        return _project(model, x, steps=steps, lr=lr, restarts=restarts, prior_weight=prior_weight, generator=generator)


def _project(model, x: Tensor, *, steps: int, lr: float, restarts: int, prior_weight: float,
             generator: torch.Generator | None) -> Tensor:
    """Gradient descent on z for each example, from several starts (the model's weights stay fixed)."""
    B = x.shape[0]
    if generator is not None:  # the starts' own generator: the caller's is left where it was
        generator = torch.Generator().manual_seed((generator.initial_seed() + 1) % 2 ** 64)
    prior = model.prior
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        best, best_err = None, None
        for _ in range(max(1, restarts)):
            z = draw_prior(model, B, generator).to(model.device).requires_grad_(True)  # (B, L)
            opt = torch.optim.Adam([z], lr=lr)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, steps))
            for _ in range(steps):
                opt.zero_grad()
                err = ((model.generate(z) - x) ** 2).reshape(B, -1).sum(1)  # (B,)
                (err + prior_weight * _neg_log_prior(prior, z)).sum().backward()
                opt.step()
                sched.step()
            with torch.no_grad():
                err = ((model.generate(z) - x) ** 2).reshape(B, -1).sum(1)  # (B,)
                if best is None:
                    best, best_err = z.detach().clone(), err
                else:
                    better = err < best_err
                    best[better], best_err = z.detach()[better], torch.where(better, err, best_err)
        return best
    finally:
        for p, flag in flags:  # as they were: a parameter the user froze stays frozen
            p.requires_grad_(flag)


def _neg_log_prior(prior, z: Tensor) -> Tensor:
    """-log p(z) (B,), the projection's pull; NaN in the rows whose z the prior refuses (a diverged search's NaN, a
    point outside a Uniform's support): a constant there, so in those rows alone the pull drops out and
    ||G(z) - x||^2 alone moves z."""
    try:
        return -prior.log_prob(z)
    except ValueError:  # torch's argument validation, of the whole batch: the refused rows stand in for one taken
        try:
            ok = prior.support.check(z)  # (B,)
        except NotImplementedError:
            ok = torch.zeros_like(z[:, 0], dtype=torch.bool)
        if not bool(ok.any()):
            return torch.full_like(z[:, 0], math.nan)
        safe = torch.where(ok[:, None], z, z[ok][:1].detach())  # (B, L): the others' pull as it was
        return torch.where(ok, -prior.log_prob(safe), math.nan)  # (B,)


def arithmetic(model, a: Tensor, b: Tensor, c: Tensor, **infer) -> tuple[Tensor, Tensor]:
    """Radford et al. 2016's vector arithmetic: z = mean z(a) - mean z(b) + mean z(c), each concept an
    (n_i, *data_shape) batch of exemplars. Returns (the three concept means and z, (4, L); their images).

    >>> import genzoo
    >>> nice = genzoo.build("nice", data_shape=(2,))
    >>> a, b, c = torch.randn(3, 1, 2, generator=torch.Generator().manual_seed(0))   # one exemplar each
    >>> z, images = arithmetic(nice, a, b, c)
    >>> z.shape, images.shape, torch.allclose(z[3], z[0] - z[1] + z[2])
    (torch.Size([4, 2]), torch.Size([4, 2]), True)
    >>> torch.allclose(images[:3], torch.cat([a, b, c]), atol=1e-5)       # a flow's latents are exact
    True
    """
    if any(len(e) == 0 for e in (a, b, c)):
        raise ConfigError("vector arithmetic needs at least one exemplar of each of its three concepts")
    zs = [infer_latent(model, e, **infer).mean(0) for e in (a, b, c)]  # 3 x (L,)
    z = torch.stack([*zs, zs[0] - zs[1] + zs[2]])  # (4, L)
    return z, generate(model, z)
