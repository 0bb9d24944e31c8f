"""Mode coverage on mixtures with known centres: the protocol of VEEGAN and PacGAN.

Srivastava et al. 2017 (VEEGAN, Section 5.1) and Lin et al. 2018 (PacGAN, Section 4.1) score a
generator trained on a ring or grid of Gaussians by

* **high-quality share**: the fraction of samples within ``threshold`` (3) standard deviations of
  their nearest mode centre, nearest in standard deviations: the distance to mode k is measured in
  mode k's std, ``||x - c_k|| / std_k`` (PacGAN's metric code, ``sqrt(sum_j d_j^2 / var_j)``), so a
  sample well inside a wide mode belongs to it even where a narrow mode's centre is closer (with
  one std for all modes, as on the ring and grid, this is the plain nearest centre);
* **modes captured**: the number of modes that are the nearest mode of at least one
  high-quality sample;
* **reverse KL**: ``KL(p_hat || uniform) = sum_k p_k log(K p_k)`` where ``p_hat`` is the histogram
  of the high-quality samples over their nearest modes (``0 log 0 = 0``): 0 when every mode gets
  the same share, ``log K`` when all of them fall on one mode. For a mixture of unequal weights
  ``w`` (``mixture1d`` with ``weights``) it is ``KL(p_hat || w) = sum_k p_k log(p_k / w_k)``, 0 for
  the true mixture, whose uniform-weight KL would rank a model of the wrong weights above it.

Both papers score 2,500 samples (:data:`SAMPLES`; PacGAN's ``num_log_figure_sample``). Since one high-quality
sample captures a mode, the count grows with the number scored: a sampler with four of the ring's modes at 0.025%
captures 5.7 of 8 on average from 2,500 samples and 7.55 from 10,000.

In 2-D the true mixture itself puts ``1 - exp(-9/2) = 98.9%`` of its samples within 3 standard
deviations, so that is the ceiling of the high-quality share.

>>> import torch
>>> from genzoo.data.toy import ring
>>> d = ring()                          # 8 modes, radius 1, std 0.01
>>> x = d.sample(2500, torch.Generator().manual_seed(0))
>>> r = mode_coverage(x, d.centres, d.std)
>>> r["modes"], r["high_quality"] > 0.98, r["reverse_kl"] < 0.01
(8, True, True)
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor

from ..errors import DataError

#: the samples the protocol scores (VEEGAN's and PacGAN's 2,500): ``genzoo eval`` and ``genzoo bench modes`` take so many
SAMPLES = 2500


def _numbers(value, what: str, dtype: torch.dtype | None = None) -> Tensor:
    """``value`` as a real tensor (a tensor, NumPy array, number or nested list of them), or a one-line DataError
    naming ``what`` (a string or a list of strings was a bare ``TypeError: new(): invalid data type 'str'``)."""
    try:
        t = torch.as_tensor(value, dtype=dtype)
    except (TypeError, ValueError, RuntimeError):
        raise DataError(f"mode coverage's {what} must be numbers (a tensor or array), got {type(value).__name__} "
                        f"{str(value)[:40]!r}") from None
    if t.is_complex():
        raise DataError(f"mode coverage's {what} must be real numbers, got dtype {t.dtype}")
    return t


@torch.no_grad()
def mode_coverage(samples: Tensor, centres: Tensor, std: float | Tensor, *, threshold: float = 3.0,
                  weights: Tensor | None = None) -> dict:
    """Score (N, D) ``samples`` against (K, D) mode ``centres`` of isotropic std ``std`` (one for all
    modes, or (K,): one per mode, as in ``mixture1d``) and mixture ``weights`` (K,) (None: equal).

    Each sample belongs to the mode nearest in that mode's stds; it is high quality within ``threshold`` of them.
    Returns ``{"modes", "n_modes", "high_quality", "reverse_kl", "counts"}``: modes captured, K, the
    high-quality share, the reverse KL of the mode histogram to the mixture's weights, and the number
    of high-quality samples per mode. Arguments that are not numbers, and centres that are not finite,
    are refused in one line (:class:`~genzoo.errors.DataError`).

    >>> r = mode_coverage(torch.tensor([[0.1], [5.0]]), torch.tensor([[0.0], [1.0]]), 0.1)
    >>> r["modes"], r["high_quality"], r["counts"]       # 0.1 is 1 std from mode 0; 5.0 is near no mode
    (1, 0.5, [1, 0])
    >>> mode_coverage(torch.zeros(3, 1), torch.tensor([[float("nan")], [0.0]]), 1.0)
    Traceback (most recent call last):
    ...
    genzoo.errors.DataError: mode centres must be finite, got 1 of 2 with NaN or infinite coordinates
    """
    samples = _numbers(samples, "samples")
    if samples.dim() == 0 or samples.shape[0] == 0:
        raise DataError("mode coverage needs at least one sample")
    x = samples.detach().double().cpu().reshape(samples.shape[0], -1)  # (N, D)
    c = _numbers(centres, "mode centres").detach().double().cpu()        # (K, D)
    if c.dim() != 2 or c.shape[0] == 0:
        raise DataError(f"mode centres must have shape (K, D) with K >= 1, got {tuple(c.shape)}")
    if not bool(torch.isfinite(c).all()):  # a NaN centre's cdist column made every sample's nearest distance NaN
        bad = int((~torch.isfinite(c).all(1)).sum())
        raise DataError(f"mode centres must be finite, got {bad} of {c.shape[0]} with NaN or infinite coordinates")
    stds = _numbers(std, "std", torch.float64).flatten().cpu()  # (1,) or (K,)
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):  # numpy's scalars too
        raise DataError(f"mode coverage's threshold is a number of stds, got {type(threshold).__name__}")
    if not bool(((stds > 0) & (stds < math.inf)).all()) or not threshold > 0:  # NaN too; an infinite std takes all
        raise DataError(f"mode coverage needs finite std > 0 and threshold > 0, got std {std} and threshold {threshold}")
    if stds.numel() not in (1, c.shape[0]):
        raise DataError(f"mode coverage needs one std or one per mode ({c.shape[0]}), got {stds.numel()}")
    if x.shape[1] != c.shape[1]:
        raise DataError(f"samples have {x.shape[1]} dimensions but the mode centres {c.shape[1]}")
    w = None if weights is None else _numbers(weights, "weights", torch.float64).flatten().cpu()  # (K,)
    if w is not None and (w.shape != (c.shape[0],) or not bool((w >= 0).all()) or not 0 < float(w.sum()) < math.inf):
        raise DataError(f"mode coverage needs {c.shape[0]} non-negative mode weights with a positive sum, got "
                        f"{w.tolist()}")
    finite = torch.isfinite(x).all(1)                                    # NaN samples are never high quality
    dist = torch.cdist(torch.where(finite[:, None], x, torch.zeros_like(x)), c)  # (N, K)
    k = c.shape[0]
    stds = stds.expand(k)  # (K,)
    # the nearest mode in its own stds, ||x - c_k|| / std_k (PacGAN's MetricLogger); with one std for all modes
    # that is the plain nearest centre, taken as such so that the ring's and grid's figures stay bit for bit
    _, nearest = (dist if bool((stds == stds[0]).all()) else dist / stds).min(1)  # (N,)
    nearest_d = dist.gather(1, nearest[:, None]).squeeze(1)               # (N,)
    good = finite & (nearest_d <= threshold * stds[nearest])              # (N,)
    counts = torch.bincount(nearest[good], minlength=k)                  # (K,)
    n_good = int(good.sum())
    if n_good:
        p = counts.double() / n_good
        nz = p > 0
        ratio = p[nz] * k if w is None else p[nz] / (w[nz] / w.sum())  # p_k / w_k; inf where w_k = 0
        reverse_kl = float((p[nz] * ratio.log()).sum())
    else:
        reverse_kl = math.inf  # no sample near any mode: infinitely far from uniform coverage
    return {"modes": int((counts > 0).sum()), "n_modes": k, "high_quality": n_good / x.shape[0],
            "reverse_kl": reverse_kl, "counts": counts.tolist()}
