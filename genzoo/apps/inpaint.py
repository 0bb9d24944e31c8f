"""Inpainting by latent optimisation: Yeh et al. 2016/2017, "Semantic Image Inpainting with Deep
Generative Models" (Section 3), for every model that maps latents to images.

Given a corrupted image y and a mask M (1 = known pixel, 0 = missing), find

    z* = argmin_z  L_c(z) + lambda L_p(z)
    L_c(z) = || W * (G(z) - y) ||_1                                       contextual loss (eq. 2)
    W_i = sum_{j in N(i)} (1 - M_j) / |N(i)|  if M_i = 1, else 0           N(i): the 7x7 window around i
    L_p(z) = log(1 - D(G(z)))                                              perceptual loss (eq. 3), GAN

with Adam from several random starts (``restarts``; the lowest final loss wins), then blend G(z*) into
the known pixels: Poisson blending (Perez et al. 2003: the filled region keeps G(z*)'s gradients and
meets y at the border; Yeh et al. Section 3.3) or the plain mask blend ``M y + (1 - M) G(z*)``.
Models without a discriminator use their own prior instead of L_p (the issue's "the model's own
likelihood"): ``-log p(z)`` for a VAE decoder or a GMMN, and for a flow, whose latent is the image's
code, ``-log p_flow(G(z))`` per dimension.

:func:`posterior_fill` asks the model a different question, without a search: the posterior mean of the
missing pixels given the known ones, under the model as the prior and Gaussian noise of std sigma on the
known pixels (Bayes' rule), estimated by self-normalised importance sampling with the model's own draws
as the proposal:

    E[x_missing | y_known] ~= sum_s w_s x_s,missing,   w_s ∝ exp(-|| M * (x_s - y) ||^2 / (2 sigma^2))

sigma is chosen on the model's own draws (held-out draws masked the same way, the sigma whose fill of
their holes has the smallest squared error), so no data is needed. It is the flows' default: a flow's
search for a likely code fails on MNIST (``genzoo bench inpaint-mnist``, BENCHMARKS.md).

>>> import torch
>>> m = make_mask("center", (1, 8, 8))
>>> int(m.sum()), m.shape                                 # 8x8 with the central 4x4 missing
(48, torch.Size([1, 8, 8]))
>>> w = context_weights(m)
>>> round(float(w[0, 0, 0]), 4), float(w[0, 4, 4])        # a corner: 4 holes among its 49 neighbours; holes weigh 0
(0.0816, 0.0)
>>> bank = torch.tensor([[0., 0.], [1., 1.]])             # two "draws" of 2 pixels; pixel 0 known, pixel 1 missing
>>> posterior_mean(bank, torch.tensor([[1., 0.]]), torch.tensor([[1., 0.]]), sigma=0.1)
tensor([[1., 1.]])
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from ..base import Density, evaluating
from ..data.transforms import level_centres
from ..errors import ConfigError, DataError, GenZooWarning, did_you_mean
from ..train import acceleration
from .interpolate import check_latent_model, draw_prior

LAMBDA = 0.003  # Yeh et al.: the weight of the perceptual loss
MAX_LAMBDA = 1000.0  # past it the prior term is all there is, and its float32 loss overflows to NaN codes
WINDOW = 7  # Yeh et al.: the neighbourhood of the importance weights
STEPS, RESTARTS = 300, 8  # the search's defaults, by measurement (see inpaint)
SAMPLES = 10_000  # posterior_fill's draws from the model
SIGMAS = tuple(round(float(s), 4) for s in torch.logspace(-1.3, 0.3, 17))  # posterior_fill's grid, 0.05 to 2


def is_mask_file(spec: str) -> bool:
    """Whether :func:`make_mask` reads ``spec`` as the path of an image, not as one of its keywords (a file named
    ``center`` in the working folder is not read for ``--mask center``).

    >>> is_mask_file("center"), is_mask_file("random:0.5"), is_mask_file("holes.png")
    (False, False, True)
    """
    return spec not in ("center", "left", "random") and not spec.startswith("random:")


def make_mask(spec: str, shape: tuple[int, ...], generator: torch.Generator | None = None) -> Tensor:
    """A mask (C, H, W) of 1 = known, 0 = missing: ``center`` (the central half-size square), ``left``
    (the left half), ``random:P`` (each pixel missing with probability P, the same for every channel) or
    the path of an image (white = known, black or transparent = missing; grey thresholded at 128, with a
    :class:`GenZooWarning`; an image all black or transparent is a ConfigError). An image of another size than H x W is
    resized, with a :class:`GenZooWarning`: a pixel is missing where any part of its area is, so thin holes stay.

    >>> import tempfile, warnings
    >>> from PIL import Image
    >>> a = np.full((28, 28), 255, np.uint8); a[:, 13:15] = 0             # a hole 2 pixels wide, for an 8x8 model
    >>> path = f"{tempfile.mkdtemp()}/mask.png"; Image.fromarray(a).save(path)
    >>> with warnings.catch_warnings(record=True) as w:
    ...     warnings.simplefilter("always")
    ...     m = make_mask(path, (1, 8, 8))
    >>> m[0, 0].int().tolist(), str(w[0].message).split(": ")[1]     # columns 3 and 4 hold parts of the hole
    ([1, 1, 1, 0, 0, 1, 1, 1], "28x28 made 8x8, the model's images (a pixel is missing where any part of it is)")
    """
    C, H, W = shape
    m = torch.ones(1, H, W)
    made = ""  # what the "leaves nothing" error says of a resized image
    if spec == "center":  # H // 2 x W // 2, its margins differing by at most 1 (H // 4 put 7x7's hole at rows 1-3)
        top, left = (H - H // 2) // 2, (W - W // 2) // 2
        m[:, top:top + H // 2, left:left + W // 2] = 0
    elif spec == "left":
        m[:, :, :W // 2] = 0
    elif spec == "random":  # (did-you-mean would suggest the word itself)
        raise ConfigError("mask 'random' needs the share of pixels missing: random:P, e.g. random:0.5")
    elif spec.startswith("random:"):
        try:
            p = float(spec.split(":", 1)[1])
        except ValueError:
            raise ConfigError(f"mask 'random:P' needs a number P in (0, 1), got '{spec}'") from None
        if not 0 < p < 1:  # P = 0 leaves nothing to fill whatever the seed
            raise ConfigError(f"mask 'random:P' needs P in (0, 1), the share of pixels missing, got {p}")
        m = (torch.rand(1, H, W, generator=generator) >= p).float()
    elif spec and (Path(spec).suffix[1:].isalpha() or "/" in spec or os.sep in spec or Path(spec).is_file()):
        from ..data.images import convert_image, read_image  # (a path that names no file: read_image says so)

        blank: list = []  # black ink on a transparent layer: for a mask, every pixel a hole (not an image's advice)
        grey = np.asarray(convert_image(read_image(spec, "mask image", blank=blank), "L", spec, "mask image"))  # (h, w)
        if blank:
            raise ConfigError(f"mask {spec}: every pixel is black or transparent (missing); white = known")
        if ((grey > 0) & (grey < 255)).any():
            warnings.warn(f"mask {spec}: grey values thresholded at 128 (128 and above known, below missing)",
                          GenZooWarning, stacklevel=2)
        known = grey >= 128
        h, w = known.shape
        if (h, w) != (H, W):
            known = _cover(_cover(known, H, 0), W, 1)  # known where all its area is
            made = f" ({w}x{h}, resized to {W}x{H})"
            warnings.warn(f"mask {spec}: {w}x{h} made {W}x{H}, the model's images (a pixel is missing where any part "
                          f"of it is{'; aspect ratio not kept' if w * H != h * W else ''})", GenZooWarning, stacklevel=2)
        m = torch.from_numpy(known.astype(np.float32))[None]
    else:
        close = did_you_mean(spec.split(":")[0], ["center", "left", "random"])
        raise ConfigError(f"unknown mask '{spec}'{close}: use center, left, random:P or a PNG file")
    if float(m.sum()) in (0.0, float(m.numel())):
        hint = ": a random draw, which another --seed or P changes" if spec.startswith("random:") else ""
        raise ConfigError(f"mask '{spec}'{made} leaves {'nothing known' if float(m.sum()) == 0 else 'nothing to fill'}"
                          f"{hint}")
    return m.expand(C, H, W).clone()


def _cover(known: np.ndarray, n: int, axis: int) -> np.ndarray:
    """``known`` (2-D, bool) resized to ``n`` along ``axis``: each new pixel spans a stretch 1/n of the axis and is
    known only if every old pixel that stretch touches is (an area resize whose any hole makes a hole)."""
    old = known.shape[axis]
    spans = [(i * old // n, -(-(i + 1) * old // n)) for i in range(n)]  # [floor(i old/n), ceil((i+1) old/n))
    return np.stack([known.take(range(a, b), axis).all(axis) for a, b in spans], axis)


HOLE_COLOUR = (0.25, 0.35, 0.6)  # the holes in pictures: a blue no grey image holds, apart from the grid's grey


def show_holes(y: Tensor, mask: Tensor) -> Tensor:
    """The masked input as pictures show it, (N, 3, H, W): ``M y + (1 - M) HOLE_COLOUR``, grey images
    repeated to RGB. In black (``M y``) the holes vanish into MNIST's black background.

    >>> x = show_holes(torch.ones(1, 1, 2, 2), torch.tensor([[[[1.0, 0.0], [1.0, 1.0]]]]))
    >>> x.shape, x[0, :, 0, 0].tolist(), x[0, :, 0, 1].tolist()
    (torch.Size([1, 3, 2, 2]), [1.0, 1.0, 1.0], [0.25, 0.3499999940395355, 0.6000000238418579])
    """
    colour = torch.tensor(HOLE_COLOUR, dtype=y.dtype, device=y.device).reshape(1, 3, 1, 1)
    m = rgb(mask.expand_as(y))                                     # (N, 3, H, W)
    return rgb(y) * m + colour * (1 - m)                           # (N, 3, H, W)


def rgb(x: Tensor) -> Tensor:
    """Images (N, 1 or 3, H, W) as (N, 3, H, W): grey repeated over the three channels."""
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def context_weights(mask: Tensor, window: int = WINDOW) -> Tensor:
    """Yeh et al.'s importance weights W (same shape as mask, (..., H, W)): for each known pixel the share
    of missing pixels in its window x window neighbourhood (zero padding counts as known); 0 on holes."""
    m = mask.reshape(-1, 1, *mask.shape[-2:]).float()  # (N, 1, H, W)
    holes = F.avg_pool2d(1 - m, window, stride=1, padding=window // 2, count_include_pad=True)  # (N, 1, H, W)
    return (holes * m).reshape(mask.shape)


def psnr(x: Tensor, y: Tensor, where: Tensor) -> Tensor:
    """Peak signal-to-noise ratio (dB, peak 1) over the pixels where ``where`` is 1, per image (N,)."""
    err = (((x - y) ** 2) * where).flatten(1).sum(1) / where.flatten(1).sum(1).clamp_min(1)  # (N,)
    return -10 * torch.log10(err.clamp_min(1e-10))


def poisson_blend(target: Tensor, source: Tensor, mask: Tensor) -> Tensor:
    """Fill the holes of ``target`` (C, H, W) with ``source``'s gradients, meeting ``target`` at the
    border: the discrete Poisson equation of Perez et al. 2003 on the 4-neighbour grid, solved exactly
    (a sparse direct solve per channel)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import spsolve

    out = target.detach().double().clone()
    for c in range(out.shape[0]):
        hole = (mask[c] < 0.5).numpy()
        idx = -np.ones(hole.shape, dtype=np.int64)
        idx[hole] = np.arange(int(hole.sum()))
        g, t = source[c].detach().double().numpy(), out[c].numpy()
        rows, cols, vals, b = [], [], [], np.zeros(int(hole.sum()))
        H, W = hole.shape
        for (i, j), k in zip(np.argwhere(hole), idx[hole]):
            n = 0
            for di, dj in ((-1, 0), (1, 0), (0, -1), (0, 1)):
                a, bb = i + di, j + dj
                if not (0 <= a < H and 0 <= bb < W):
                    continue  # the image edge: no constraint across it
                n += 1
                b[k] += g[i, j] - g[a, bb]  # the guidance field: source gradients
                if hole[a, bb]:
                    rows.append(k), cols.append(idx[a, bb]), vals.append(-1.0)
                else:
                    b[k] += t[a, bb]  # the known border value
            rows.append(k), cols.append(k), vals.append(float(n))
        A = coo_matrix((vals, (rows, cols)), shape=(len(b), len(b))).tocsr()
        out[c][torch.from_numpy(hole)] = torch.from_numpy(np.asarray(spsolve(A, b)).reshape(-1))
    return out.to(target.dtype).clamp(0, 1)


def _prior_loss(model, z: Tensor, x: Tensor) -> Tensor:
    """The per-example realism term: log(1 - D(G(z))) for a GAN, else the model's own -log-likelihood. A WGAN's or
    an f-GAN's critic score is read the same way, as a logit (-softplus(score)): a WGAN critic's scale and offset
    are arbitrary, so its term's weight is not Yeh et al.'s lambda there."""
    disc = getattr(model, "rejector", None)  # the unpacked discriminator of a packed GAN, where it has one
    if disc is None and getattr(model, "pack", 1) == 1:
        disc = getattr(model, "discriminator", None)
    if disc is not None:
        dtype = next(disc.parameters()).dtype  # a float64 model (genzoo.save of .double()) scores float64 images
        logit = disc(model._to_net(x.to(dtype))).reshape(-1).to(x.dtype)  # (B,), fp32 under autocast
        return -F.softplus(logit)  # log(1 - sigmoid(logit)) = log(1 - D(G(z)))
    if isinstance(model, Density):
        return -model.log_prob(x) / x[0].numel()  # nats per dimension: a flow's likelihood of the fill
    if not bool(torch.isfinite(z).all()):  # a diverged search: NaN for the caller to see, not the prior's ValueError
        return torch.full_like(z[:, 0], math.nan)
    return -model.prior.log_prob(z)  # (B,) VAE decoder, GMMN


def _check_images(model, y: Tensor, mask: Tensor) -> Tensor:
    """The mask broadcast to ``y``'s shape, after DataErrors for images that are not (N, *data_shape) in
    [0, 1] or a mask that does not fit them or holds values other than 0 and 1 (such as 0/255, or a soft 0.5)."""
    if not isinstance(y, Tensor) or y.dim() != 4 or tuple(y.shape[1:]) != tuple(model.data_shape):
        raise DataError(f"images of shape {tuple(model.data_shape)} expected, got "
                        f"{tuple(y.shape[1:]) if isinstance(y, Tensor) else type(y).__name__}")
    if not bool(torch.isfinite(y).all()) or float(y.min()) < 0 or float(y.max()) > 1:
        raise DataError(f"images must lie in [0, 1] (8-bit images: divide by 255), got values in "
                        f"[{float(y.min()):.4g}, {float(y.max()):.4g}]")
    try:
        mask = mask.to(y.device, y.dtype).expand_as(y)
    except (RuntimeError, AttributeError):
        raise DataError(f"a mask of shape {tuple(getattr(mask, 'shape', ()))} does not fit images of shape "
                        f"{tuple(y.shape)}: give (N or 1, C, H, W), 1 = known") from None
    # 0 or 1: a soft mask meant two things (the Poisson blend kept a pixel of 0.7 exactly, the mask blend mixed it;
    # audit a138 F5), and Yeh et al.'s mask is binary
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise DataError("mask values must be 0 or 1 (1 = known, 0 = hole)" + (
            "" if bool(((mask >= 0) & (mask <= 1)).all()) else " (8-bit masks: divide by 255)"))
    return mask


def inpaint(model, y: Tensor, mask: Tensor, *, lam: float = LAMBDA, steps: int = STEPS, lr: float = 0.03,
            restarts: int = RESTARTS, blend: str = "poisson", generator: torch.Generator | None = None,
            precision: str = "fp32", progress: bool = False, levels: int | None = None) -> dict:
    """Fill the holes of images ``y`` (N, C, H, W) in [0, 1], ``mask`` (N or 1, C, H, W) 1 = known.

    Returns ``{"filled": blended (N, C, H, W), "generated": G(z*) (N, C, H, W), "z": (N, L)}``.
    The defaults were measured on 100 MNIST test digits (``genzoo bench inpaint-mnist``'s GAN, centre
    mask): starts matter and steps past 300 do not, 6.95 / 8.06 / 8.62 / 9.09 dB from 2 / 4 / 8 / 16
    starts of 300 steps, 8.05 dB from 4 starts of 1,000.
    A flow's first start is its exact code of the image with each hole filled by the mean of its known
    pixels (the hidden pixels are never read); ``levels``, for a model of dequantized data, encodes that image at
    its levels' centres (:func:`~genzoo.data.transforms.level_centres`), as such a model never saw the stored 0s
    and 1s (a RealNVP's logit sends them to +-13.8, its code far off the prior).
    ``precision="bf16"`` runs the search under bf16 autocast (models with ``autocast_safe``; the
    losses stay float32), see :mod:`genzoo.train.acceleration`. ``progress``: a bar over the steps.
    """
    check_latent_model(model, "inpaint with")
    acceleration.check_precision(model, precision)
    if blend not in ("poisson", "mask"):
        raise ConfigError(f"unknown blend '{blend}': use poisson or mask")
    mask = _check_images(model, y, mask)
    if not (steps >= 1 and lr > 0 and 0 <= lam <= MAX_LAMBDA and restarts >= 1):
        raise ConfigError(f"inpaint needs steps >= 1, lr > 0, 0 <= lam <= {MAX_LAMBDA:g} and restarts >= 1, got {steps}, "
                          f"{lr}, {lam}, {restarts}")
    with evaluating(model):  # and each module's mode back afterwards
        dev = model.device
        y, mask = y.to(dev), mask.to(dev).expand_as(y)
        w = context_weights(mask)  # (N, C, H, W)
        N = y.shape[0]
        frozen = [p.requires_grad for p in model.parameters()]
        for p in model.parameters():
            p.requires_grad_(False)
        best_z, best_loss = None, None
        bar = tqdm(total=restarts * steps, desc="inpaint: search", unit="step", disable=None if progress else True)
        try:
            for r in range(max(1, restarts)):
                z = draw_prior(model, N, generator).to(dev)  # (N, L)
                if r == 0 and isinstance(model, Density) and hasattr(model, "encode"):
                    known_mean = (mask * y).flatten(1).sum(1) / mask.flatten(1).sum(1).clamp_min(1)  # (N,) known pixels' mean
                    start = mask * y + (1 - mask) * known_mean.reshape(N, 1, 1, 1)  # (N, C, H, W)
                    if levels is not None:
                        start = level_centres(start.clamp(0, 1), levels)
                    with torch.no_grad():
                        z = model.encode(start).reshape(N, -1)
                z = z.detach().requires_grad_(True)
                opt = torch.optim.Adam([z], lr=lr)
                for _ in range(steps):
                    opt.zero_grad()
                    with acceleration.autocast(dev, precision):
                        x = model.generate(z).to(y.dtype)  # (N, C, H, W)
                        loss = (w * (x - y)).abs().flatten(1).sum(1) + lam * _prior_loss(model, z, x)  # (N,)
                    loss.sum().backward()
                    opt.step()
                    bar.update()
                with torch.no_grad():
                    x = model.generate(z)
                    loss = (w * (x - y)).abs().flatten(1).sum(1) + lam * _prior_loss(model, z, x)
                    loss = torch.where(torch.isfinite(loss), loss, torch.full_like(loss, math.inf))
                if best_z is None:
                    best_z, best_loss = z.detach().clone(), loss
                else:
                    better = loss < best_loss
                    best_z[better], best_loss = z.detach()[better], torch.where(better, loss, best_loss)
        finally:
            bar.close()
            for p, f in zip(model.parameters(), frozen):
                p.requires_grad_(f)
        lost = (~torch.isfinite(best_loss)).nonzero().flatten().tolist()  # every start of these ended non-finite
        if lost:
            raise ConfigError(f"inpaint: the latent search diverged (a non-finite loss from every start) for image(s) "
                              f"{', '.join(map(str, lost[:5]))}{', ...' if len(lost) > 5 else ''}: lower lam (now {lam:g}) "
                              f"or lr ({lr:g})")
        with torch.no_grad():
            gen = model.generate(best_z).clamp(0, 1).cpu()
        y, mask = y.cpu(), mask.cpu()
        if blend == "poisson":
            filled = torch.stack([poisson_blend(y[i], gen[i], mask[i]) for i in range(N)])
        else:
            filled = mask * y + (1 - mask) * gen
        return {"filled": filled, "generated": gen, "z": best_z.cpu()}


# -- the posterior mean by importance sampling ---------------------------------------------------------
@torch.no_grad()
def model_draws(model, n: int, generator: torch.Generator | None = None, batch_size: int = 500,
                progress: bool = False) -> Tensor:
    """``n`` draws (n, D) from the model, flattened, in [0, 1], on the CPU: G(z) with z from its prior."""
    from .interpolate import generate

    check_latent_model(model, "inpaint with")
    starts = tqdm(range(0, n, batch_size), desc="inpaint: model draws", disable=None if progress else True)
    return torch.cat([generate(model, draw_prior(model, min(batch_size, n - i), generator)).flatten(1) for i in starts])


def masked_sq_dist(bank: Tensor, y: Tensor, mask: Tensor, bank_sq: Tensor | None = None) -> Tensor:
    """|| M (x_s - y) ||^2 (S, N) for draws ``bank`` (S, D) and images ``y`` with ``mask`` (N, D), without
    forming the (S, N, D) differences: (x^2) . m - 2 x . (m y) + (m y) . y, two matrix products. ``bank_sq``:
    ``bank.square()``, for a caller that scores many chunks of images against one bank."""
    my = mask * y                                                             # (N, D)
    bank_sq = bank.square() if bank_sq is None else bank_sq                   # (S, D)
    return bank_sq @ mask.T - 2 * bank @ my.T + (my * y).sum(1)               # (S, N)


def _weights(d: Tensor, sigma: float) -> Tensor:
    """Self-normalised importance weights (S, N) from squared distances d (S, N): softmax of -d / (2 sigma^2).

    Measured from each image's nearest draw, so a tiny sigma, whose -d / (2 sigma^2) is -inf for every draw,
    gives its limit, all weight on the nearest draw, not 0/0.

    >>> _weights(torch.tensor([[4.0], [1.0], [9.0]]), 1e-30).flatten().tolist()
    [0.0, 1.0, 0.0]
    >>> _weights(torch.tensor([[4.0], [1.0], [9.0]]), 1e-200).flatten().tolist()
    [0.0, 1.0, 0.0]
    """
    d = d.clamp_min(0)                                                         # (S, N)
    scale = 1e38 if sigma < 1e-19 else min(0.5 / sigma / sigma, 1e38)  # 1 / (2 sigma^2) without float ** overflow
    return torch.softmax((d - d.min(0, keepdim=True).values) * -scale, dim=0)


def _posterior(bank: Tensor, y: Tensor, mask: Tensor, sigma: float, chunk: int = 256) -> tuple[Tensor, Tensor]:
    """The posterior mean (N, D) and the weights' effective sample size (N,), a chunk of images at a time."""
    bank = bank.float()
    y, mask = y.flatten(1).float(), mask.flatten(1).float()
    means, ess, bank_sq = [], [], bank.square()  # (S, D) once: a million MNIST draws' square is 3 GB
    for i in range(0, len(y), chunk):
        w = _weights(masked_sq_dist(bank, y[i:i + chunk], mask[i:i + chunk], bank_sq), sigma)  # (S, n)
        means.append(w.T @ bank)                                               # (n, D)
        ess.append(1 / w.square().sum(0))                                      # (n,)
    return torch.cat(means), torch.cat(ess)


def posterior_mean(bank: Tensor, y: Tensor, mask: Tensor, sigma: float, chunk: int = 256) -> Tensor:
    """E[x | the known pixels of y] (N, D) under the empirical prior ``bank`` (S, D) and Gaussian noise
    of std ``sigma`` on the known pixels: the self-normalised importance-sampling average of the draws."""
    return _posterior(bank, y, mask, sigma, chunk)[0]


def effective_sample_size(bank: Tensor, y: Tensor, mask: Tensor, sigma: float) -> Tensor:
    """Kish's effective sample size (N,) of the importance weights, 1 (one draw decides) to S (uniform)."""
    return _posterior(bank, y, mask, sigma)[1]


def choose_sigma(bank: Tensor, mask: Tensor, grid: tuple[float, ...] = SIGMAS, n_probe: int = 200) -> float:
    """The sigma of ``grid`` whose posterior mean best fills the holes of the model's own held-out draws
    (the first ``n_probe`` rows of ``bank``, masked by ``mask`` (N, D) in turn; the rest is the prior):
    the smallest mean squared error on the missing pixels, the loss the posterior mean minimises."""
    if len(bank) < 2 * n_probe:
        raise ConfigError(f"the posterior fill needs at least {2 * n_probe} draws, got {len(bank)}")
    probe, rest = bank[:n_probe].float(), bank[n_probe:].float()
    m = mask.flatten(1).float()[torch.arange(n_probe) % len(mask)]                # (n_probe, D)
    holes = (1 - m).sum().clamp_min(1)
    d = masked_sq_dist(rest, probe, m)                                             # (S - n_probe, n_probe), once

    def err(s: float) -> float:
        return float((((_weights(d, s).T @ rest - probe) * (1 - m)) ** 2).sum() / holes)

    return min(grid, key=err)


def posterior_fill(model, y: Tensor, mask: Tensor, *, n_samples: int = SAMPLES, sigma: float | None = None,
                   blend: str = "mask", generator: torch.Generator | None = None, bank: Tensor | None = None,
                   progress: bool = False) -> dict:
    """Fill the holes of ``y`` (N, C, H, W) in [0, 1] (``mask`` (N or 1, C, H, W), 1 = known) with the
    model's posterior mean given the known pixels (see the module docstring), from ``n_samples`` of its
    draws (or the draws ``bank`` (S, D) given). ``sigma`` None chooses it with :func:`choose_sigma`.

    Returns ``{"filled", "generated": the posterior mean (N, C, H, W), "sigma", "ess": (N,)}``; the
    posterior mean is already the best guess of the holes in squared error, so ``blend`` defaults to the
    plain mask blend (``"poisson"`` is offered as in :func:`inpaint`). ``progress``: a bar over the draws.
    """
    check_latent_model(model, "inpaint with")
    if blend not in ("poisson", "mask"):
        raise ConfigError(f"unknown blend '{blend}': use poisson or mask")
    mask = _check_images(model, y, mask)
    if sigma is not None and not sigma > 0:  # NaN too
        raise ConfigError(f"sigma must be > 0, got {sigma}")
    y, mask = y.cpu().float(), mask.cpu().float().expand_as(y)
    if bank is None:
        if n_samples < 400:
            raise ConfigError(f"the posterior fill needs at least 400 draws, got {n_samples}")
        bank = model_draws(model, n_samples, generator, progress=progress)    # (S, D)
    sigma = choose_sigma(bank, mask) if sigma is None else float(sigma)
    gen, ess = _posterior(bank, y, mask, sigma)
    gen = gen.reshape(y.shape)                                                 # (N, C, H, W)
    if blend == "poisson":
        filled = torch.stack([poisson_blend(y[i], gen[i], mask[i]) for i in range(len(y))])
    else:
        filled = mask * y + (1 - mask) * gen
    return {"filled": filled, "generated": gen, "sigma": sigma, "ess": ess}
