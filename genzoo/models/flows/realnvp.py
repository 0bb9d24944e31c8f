"""RealNVP: real-valued non-volume preserving flows (Dinh, Sohl-Dickstein & Bengio 2016).

Affine coupling layers ``y_B = x_B * exp(s(x_A)) + t(x_A)`` (Section 3.3) with activation or batch
normalisation between them (Section 3.7). Two architectures, chosen by the data:

* **vectors** (D,): ``n_couplings`` couplings with MLP nets, the first half of the features
  conditioning the second, and a fixed permutation between couplings (reversal in 2-D, above it a random
  one that sends the half just transformed to the conditioning one: :func:`alternating_permutations`) so
  every dimension is transformed and conditions the others in turn; ``mixing="linear"``
  puts a learned invertible linear map there instead (Glow's LU-decomposed 1x1 convolution, Kingma &
  Dhariwal 2018, on features), started at a random rotation;
* **images** (C, H, W): the multi-scale architecture (Section 3.6). Each of ``n_scales`` scales is
  3 checkerboard couplings, a squeeze (C, H, W) -> (4C, H/2, W/2), 3 channel-wise couplings, then half
  the channels are factored out to the base; a last block of 4 checkerboard couplings takes the rest.
  The s and t nets are small residual convolutional networks.

``preprocess="logit"`` (the default on images) maps [0, 1] data through ``logit(alpha + (1 - 2 alpha) x)``
first and counts its Jacobian, so ``log_prob`` stays a density on [0, 1]^D (Section 4.1), less the flow's mass
beyond ``logit(alpha)`` and ``logit(1 - alpha)``, which ``sample`` clamps onto 0 and 1 (tiny at the default 1e-6).

>>> import torch, genzoo
>>> m = genzoo.build("realnvp", data_shape=(1, 4, 4), n_scales=1, width=8, n_blocks=1)
>>> x = torch.rand(2, 1, 4, 4)
>>> m.log_prob(x).shape, m.encode(x).shape
(torch.Size([2]), torch.Size([2, 16]))
>>> (m.decode(m.encode(x)) - x).abs().max() < 1e-5        # exactly invertible
tensor(True)
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from ...errors import ConfigError
from ...nn.masks import CPU, channel_mask, checkerboard
from ...registry import register
from .base import Base, Flow
from .nice import coupling_net
from .transforms import (ActNorm, BatchNorm, Compose, Coupling, Logit, LULinear, Permutation, Squeeze, Swap, Transform,
                         _build_device)

Norm = Literal["actnorm", "batch", "none"]


class ResidualNet(nn.Module):
    """(B, C_in, H, W) -> (B, C_out, H, W): a 3x3 convolution to ``width`` channels, ``n_blocks`` residual
    blocks (ReLU, 3x3 conv, ReLU, 3x3 conv), and a zero-initialised 3x3 convolution out, so each coupling
    starts as the identity (the role of RealNVP's ResNet s and t, He et al. 2016)."""

    def __init__(self, c_in: int, c_out: int, width: int, n_blocks: int):
        super().__init__()
        self.inp = nn.Conv2d(c_in, width, 3, padding=1)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.ReLU(), nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1))
            for _ in range(n_blocks))
        self.out = nn.Sequential(nn.ReLU(), nn.Conv2d(width, c_out, 3, padding=1))
        nn.init.zeros_(self.out[1].weight)
        nn.init.zeros_(self.out[1].bias)

    def forward(self, x: Tensor) -> Tensor:
        h = self.inp(x)                                   # (B, width, H, W)
        for block in self.blocks:
            h = h + block(h)
        return self.out(h)                                # (B, c_out, H, W)


def _norm(kind: Norm, shape: tuple[int, ...]) -> list[Transform]:
    """The normalisation layer ``kind`` names, alone (not both made and one kept: io's size check counts what a build
    registers)."""
    return [ActNorm(shape)] if kind == "actnorm" else [BatchNorm(shape)] if kind == "batch" else []


class MultiScale(Transform):
    """The multi-scale RealNVP transform on (C, H, W) images; the output is flat (B, C H W): the factored
    halves of every scale, then the last block's output. H and W must be divisible by ``2 ** n_scales`` (each
    squeeze halves them), and the last block larger than 1x1, where a checkerboard is all True or all False."""

    def __init__(self, shape: tuple[int, int, int], n_scales: int, width: int, n_blocks: int, norm: Norm):
        super().__init__()
        c, h, w = shape
        if n_scales >= min(h, w).bit_length():  # before 2 ** n_scales: a config asking for 10^6 scales (review r121 F2)
            raise ConfigError(f"realnvp: {n_scales} scales need H and W divisible by 2^{n_scales}, got {h}x{w}")
        if h % (2 ** n_scales) or w % (2 ** n_scales):
            raise ConfigError(f"realnvp: {n_scales} scales need H and W divisible by {2 ** n_scales}, got {h}x{w}")
        if h == w == 2 ** n_scales:  # a 1x1 checkerboard is all True (no change) or all False (the net sees zeros)
            fewer = f"use n_scales <= {n_scales - 1}" if n_scales > 1 else "flatten them to vectors"
            raise ConfigError(f"realnvp: n_scales={n_scales} brings {h}x{w} images to 1x1 in the last block, whose "
                              f"checkerboard couplings change nothing there or see nothing: {fewer}")

        def couplings(s: tuple[int, int, int], masks: list[Tensor]) -> list[Transform]:
            out: list[Transform] = []
            for m in masks:
                out += [Coupling(m, ResidualNet(s[0], 2 * s[0], width, n_blocks)), *_norm(norm, s)]
            return out

        self.scales = nn.ModuleList()
        self.shapes: list[tuple[int, int, int]] = []     # the shape entering each scale
        s = (c, h, w)
        for _ in range(n_scales):
            self.shapes.append(s)
            sq = (4 * s[0], s[1] // 2, s[2] // 2)
            layers = couplings(s, [checkerboard(s, p % 2) for p in range(3)]) + [Squeeze()]
            layers += couplings(sq, [channel_mask(sq, p % 2) for p in range(3)])
            self.scales.append(Compose(*layers))
            s = (sq[0] // 2, sq[1], sq[2])               # half the channels go on
        self.final_shape = s
        self.final = Compose(*couplings(s, [checkerboard(s, p % 2) for p in range(4)]))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        total, outs = x.new_zeros(x.shape[0]), []
        for scale in self.scales:
            x, ld = scale(x)
            total = total + ld
            out, x = x.chunk(2, dim=1)                    # factor out half the channels
            outs.append(out.flatten(1))
        x, ld = self.final(x)
        outs.append(x.flatten(1))
        return torch.cat(outs, 1), total + ld             # (B, C H W), (B,)

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        sizes = [4 * s[0] * (s[1] // 2) * (s[2] // 2) // 2 for s in self.shapes] + [
            self.final_shape[0] * self.final_shape[1] * self.final_shape[2]]
        parts = list(y.split(sizes, dim=1))
        x, total = self.final.inverse(parts[-1].reshape(y.shape[0], *self.final_shape))
        for scale, s, part in zip(reversed(self.scales), reversed(self.shapes), reversed(parts[:-1])):
            half = (2 * s[0], s[1] // 2, s[2] // 2)
            x = torch.cat([part.reshape(y.shape[0], *half), x], 1)
            x, ld = scale.inverse(x)
            total = total + ld
        return x, total


@register("realnvp", "RealNVP (Dinh et al. 2016): affine couplings; multi-scale on images, MLP couplings on vectors")
class RealNVP(Flow):
    """Vectors: ``n_couplings`` affine couplings with MLPs of ``hidden`` sizes and fixed random permutations.
    Images: ``n_scales`` scales of the multi-scale architecture with residual nets of ``width`` channels and
    ``n_blocks`` blocks. ``norm`` is "actnorm" (Glow), "batch" (the paper) or "none"; ``preprocess`` "auto"
    is "logit" for images and "none" for vectors, the logit taken of ``alpha + (1 - 2 alpha) x``. ``mixing``
    (vectors) is what sits between couplings: a fixed random "permutation", a "swap" of the two halves
    (normflows' choice, and the cheapest: a copy, no gather) or a learned "linear" map
    (:class:`~genzoo.models.flows.transforms.LULinear`); on the 2-D ring of 8 sharp modes the linear maps, with
    32 couplings, take RealNVP within 0.1 nats of the truth (``genzoo bench flows-2d``). ``seed`` (vectors)
    chooses the random permutations (:func:`alternating_permutations`, drawn from ``seed``; in 2-D a reversal;
    runs saved before 2026-12-06 keep their unconstrained ones, seed + i) and the random rotations that start the
    linear maps. ``base``: "normal" or "logistic".
    Adam with ``lr``, ``weight_decay`` an L2 penalty (the paper: 5e-5); ``max_grad_norm`` clips the gradient
    norm (0: off). :meth:`unused_options` names the options the data's kind makes idle.

    >>> m = RealNVP(data_shape=(1, 4, 4), width=4, n_blocks=1, n_scales=1).eval()   # images: the multi-scale form
    >>> x = torch.rand(3, 1, 4, 4) * 0.9 + 0.05
    >>> with torch.no_grad():
    ...     float((m.decode(m.encode(x)) - x).abs().max()) < 1e-4, m.log_prob(x).shape
    (True, torch.Size([3]))
    """

    DEFAULT_NOTES = {"preprocess": "auto: logit on images, none on vectors"}

    def __init__(self, *, data_shape: tuple[int, ...], n_couplings: int = 8, hidden: tuple[int, ...] = (128, 128),
                 n_scales: int = 2, width: int = 32, n_blocks: int = 2, norm: Norm = "actnorm",
                 base: Base = "normal", preprocess: Literal["auto", "none", "logit"] = "auto", alpha: float = 1e-6,
                 lr: float = 1e-3, weight_decay: float = 0.0, max_grad_norm: float = 100.0, seed: int = 0,
                 mixing: Literal["permutation", "swap", "linear"] = "permutation"):
        super().__init__(data_shape, base, lr, weight_decay=weight_decay, max_grad_norm=max_grad_norm)
        if norm not in ("actnorm", "batch", "none"):
            raise ConfigError(f"unknown norm '{norm}': use actnorm, batch or none")
        if mixing not in ("permutation", "swap", "linear"):
            raise ConfigError(f"unknown mixing '{mixing}': use permutation, swap or linear")
        image = len(self.data_shape) == 3
        if preprocess == "auto":
            preprocess = "logit" if image else "none"
        layers: list[Transform] = [Logit(alpha)] if preprocess == "logit" else []
        if image:
            if n_scales < 1:
                raise ConfigError("n_scales must be >= 1")
            layers.append(MultiScale(self.data_shape, n_scales, width, n_blocks, norm))
        elif len(self.data_shape) == 1:
            d = self.latent_dim
            if d < 2:
                raise ConfigError(f"realnvp couples two halves of the dimensions and needs data of 2 or more; this data "
                                  f"has shape {tuple(self.data_shape)}: planar or gmm model 1-D data")
            if n_couplings < 1:
                raise ConfigError(f"realnvp needs n_couplings >= 1, got {n_couplings}")
            layers += _norm(norm, (d,))
            n_a = d // 2
            # drawn in a real build only: a meta build (io's size check) needs their shape, and n_couplings draws made
            # before any coupling registers could not be stopped by its budget (review r121 F1)
            drawn = mixing == "permutation" and d > 2 and _build_device().type != "meta"
            perms = alternating_permutations(d, n_couplings - 1, seed) if drawn else []
            mask = torch.arange(d, device=CPU) < n_a                     # (D,): the first half conditions
            for i in range(n_couplings):
                layers += [Coupling(mask, coupling_net(n_a, tuple(hidden), 2 * (d - n_a))), *_norm(norm, (d,))]
                if i < n_couplings - 1 and mixing == "linear":  # a learned linear map, from a random rotation
                    layers.append(LULinear(d, seed=seed + i))
                elif i < n_couplings - 1 and mixing == "swap":  # the halves exchanged (normflows' "swap")
                    layers.append(Swap(d, n_a))
                elif i < n_couplings - 1:  # a fixed permutation: reversal in 2-D, random (from seed) above
                    layers.append(Permutation(d, perm=perms[i] if perms else None))  # (None: reversed)
        else:
            raise ConfigError(f"realnvp works on vectors (D,) or images (C, H, W), got examples of shape {self.data_shape}")
        self.image = image
        self.norm = norm
        self.preprocess = preprocess
        self.transform = Compose(*layers)

    def unused_options(self) -> dict[str, str]:
        """The vector architecture's options on images and the image one's on vectors; ``alpha`` without the
        logit; ``mixing`` with one coupling (nothing between couplings); ``seed`` where nothing is random."""
        opts = self.config
        if self.image:
            idle = dict.fromkeys(["n_couplings", "hidden", "mixing", "seed"], "images (the multi-scale architecture)")
        else:
            idle = dict.fromkeys(["n_scales", "width", "n_blocks"], "vectors (MLP couplings)")
            if opts["n_couplings"] == 1:
                idle.update(dict.fromkeys(["mixing", "seed"], "n_couplings=1 (nothing between couplings)"))
            elif opts["mixing"] == "swap":
                idle["seed"] = "mixing=swap"
            elif opts["mixing"] == "permutation" and self.latent_dim == 2:
                idle["seed"] = "mixing=permutation on 2-D data (a reversal)"
        if self.preprocess == "none":
            idle["alpha"] = "preprocess=none" if opts["preprocess"] == "none" else "preprocess=auto (none on vectors)"
        return idle

    def check_batch_size(self, batch_size: int) -> None:
        """``batch_size`` per process. With ``norm="batch"`` each statistic averages ``batch_size`` values on vectors:
        one has a variance of 0 (log-det -> inf), two are normalised to +-1 in every feature (the loss fell to -9
        nats on the moons, the test NLL rose to 125), so 3 at least. On images it averages ``batch_size`` x H x W
        values (H x W >= 2 in the last block: see :class:`MultiScale`), but one image's own statistics per channel
        are no invertible map (two degrees of freedom per channel gone: the loss fell to -625 nats, the test NLL
        5e29), so 2 at least."""
        least = 2 if self.image else 3
        if self.norm == "batch" and batch_size < least:
            why = "one image's statistics are its own" if self.image else "two examples normalise every feature to +-1"
            raise ConfigError(f"realnvp: norm=batch needs batches of {least} or more examples on "
                              f"{'images' if self.image else 'vectors'} ({why}; per process under torchrun), "
                              "or norm=actnorm")

    def _latent_shape(self, z: Tensor) -> Tensor:
        return z if self.image else z.reshape(z.shape[0], *self.data_shape)


def alternating_permutations(d: int, count: int, seed: int) -> list[Tensor]:
    """``count`` permutations of ``d`` features to put between couplings whose first ``d // 2`` positions
    condition the rest: each sends the features just transformed to the conditioning half (in a random order) and
    the conditioning ones to the transformed half, so that every feature is transformed and conditions others in
    turn. (Unconstrained random permutations left some feature in one half throughout: never transformed, its
    marginal exactly the base's Gaussian, or never conditioning; in 4-D with 4 couplings at seed 0, 5.54 nats
    where the halves' swap gives 3.47.) With odd ``d`` one transformed feature stays in the transformed half at
    each step; draws where one would never condition are drawn again, from the same seeded stream (up to 100
    times: with odd ``d`` and two couplings one feature cannot; the draw with the fewest such is kept).

    >>> perms = alternating_permutations(5, 3, seed=0)
    >>> [sorted(p[:2].tolist()) for p in perms][0]                  # the next conditioning half: from 2, 3, 4
    [2, 4]
    >>> all(set(p[:2].tolist()) <= {2, 3, 4} and set(p[2:].tolist()) >= {0, 1} for p in perms)
    True
    """
    n_a = d // 2
    g = torch.Generator().manual_seed(seed)
    best, fewest = [], d + 1
    for _ in range(100):
        perms = []
        for _ in range(count):
            transformed = n_a + torch.randperm(d - n_a, generator=g, device=CPU)                # (d - n_a,)
            perms.append(torch.cat([transformed, torch.randperm(n_a, generator=g, device=CPU)]))  # (d,)
        where = torch.arange(d, device=CPU)  # where[f]: the position of feature f before each coupling
        conditions = torch.zeros(d, dtype=torch.bool, device=CPU)
        transformed = torch.zeros(d, dtype=torch.bool, device=CPU)
        for i in range(count + 1):
            conditions |= where < n_a
            transformed |= where >= n_a
            if i < count:
                where = torch.argsort(perms[i])[where]  # output j holds input perms[i][j]
        missed = int((~(conditions & transformed)).sum()) if count else 0
        if missed < fewest:
            best, fewest = perms, missed
        if missed == 0:
            break
    return best
