"""Parzen-window log-likelihood: the protocol of Goodfellow et al. 2014 (Section 5, Table 1; their
``parzen_ll.py``, after Breuleux et al. 2011) for models that can only be sampled.

A Gaussian kernel of width ``sigma`` is put on each of ``S`` model samples ``mu_j`` and a point ``x``
in ``D`` dimensions is scored under the mixture::

    log p(x) = log (1/S) sum_j exp(-||x - mu_j||^2 / (2 sigma^2)) - D log(sigma sqrt(2 pi))

The protocol: 10,000 samples; ``sigma`` chosen on ``logspace(-1, 0, 10)`` by the mean log-likelihood
of the first 1,000 validation images; then the mean and standard error over the test set. The
figures are nats per example on the data space as given (MNIST grey levels in [0, 1], not
dequantized), comparable only with other Parzen estimates made the same way: the estimate is biased
and has high variance in high dimensions (Theis et al. 2016, Section 3.2), which is why genzoo
labels it ``parzen`` and never puts it in a likelihood column.

Squared distances come from one matrix product per block of points (``||x||^2 + ||mu||^2 -
2 x.mu``, in float32 on the samples' device), so memory is ``batch_size x S`` whatever the sizes, and
one product serves every sigma of the search. The log-sum-exp stays in float32 too, shifted by each
point's nearest kernel (whose term is exactly 1), with that shift added back in float64. On MNIST
(10,000 test digits, 10,000 kernels, sigma 0.2) it moves no point by more than 2e-7 nats from a
float64 log-sum-exp of the same distances, and the mean stays within 3e-5 nats of float64 distances
and log-sum-exp (each point within 1e-3); the call takes half the time of one with a float64
log-sum-exp (1 thread: 3.2 s of CPU against 6.1 s), as long as NumPy and SciPy in float32.

>>> import torch
>>> samples = torch.zeros(1, 3)                    # one kernel at the origin: p = N(0, sigma^2 I)
>>> x = torch.tensor([[1.0, 0.0, 0.0]])
>>> round(float(parzen_log_prob(x, samples, 0.5)), 4)  # = -1/(2*0.25) - 3 log(0.5 sqrt(2 pi))
-2.6774
>>> out = parzen_protocol(torch.randn(2000, 2), valid=torch.randn(500, 2), test=torch.randn(500, 2), progress=False)
>>> abs(out["ll"] - (-1 - math.log(2 * math.pi))) < 0.15, out["sigma_at_edge"]  # N(0, I)'s mean log-density
(True, False)
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor

from ..errors import DataError

#: Goodfellow et al. 2014's sigma grid (``numpy.logspace(-1., 0., num=10)`` in parzen_ll.py)
SIGMAS = torch.logspace(-1.0, 0.0, 10, dtype=torch.float64)
N_SAMPLES, N_VALID = 10_000, 1_000
# the log-sum-exp's exponents are floored at -87 (a term of 1.6e-38, which a sum of 1 or more cannot hold unless S is
# over 1e22): torch's CPU exp takes ~9x as long on an input whose result is subnormal or 0, as most kernels' are
_EXP_FLOOR = -87.0


def check_sigmas(sigmas) -> Tensor:
    """``sigmas`` (a float, sequence or tensor) as a float64 (K,) tensor; a DataError unless K >= 1 and each is
    finite, at least 1e-150 and at most 1e150 (sigma^2 stays a float64).

    >>> check_sigmas([0.01, 0.03])
    tensor([0.0100, 0.0300], dtype=torch.float64)
    """
    try:
        sig = torch.as_tensor(sigmas, dtype=torch.float64).reshape(-1)  # (K,)
    except (TypeError, ValueError, RuntimeError):
        raise DataError(f"Parzen sigmas must be numbers, got {sigmas!r}") from None
    if sig.numel() == 0 or not bool(((sig > 0) & torch.isfinite(sig)).all()):
        raise DataError(f"Parzen needs one or more finite sigmas > 0, got {sig.tolist()}")
    if not bool(torch.isfinite(1 / (2 * sig * sig)).all()):  # sigma^2 underflows to 0: 0/0 in the kernel
        raise DataError(f"Parzen sigmas must be at least 1e-150 (sigma^2 is taken), got {sig.min().item():g}")
    if not bool((sig <= 1e150).all()):  # sigma^2 stays finite (and its 1% tolerance, 2 sigma^2 * 100, too)
        raise DataError(f"Parzen sigmas must be at most 1e150 (sigma^2 is taken), got {sig.max().item():g}")
    return sig


def _flat(x: Tensor, what: str) -> Tensor:
    if not isinstance(x, Tensor) or x.dim() < 2 or x.shape[0] == 0:
        raise DataError(f"Parzen {what} must be a tensor of shape (N, ...) with N >= 1")
    x = x.reshape(x.shape[0], -1)  # (N, D)
    if not bool(torch.isfinite(x).all()):
        raise DataError(f"Parzen {what} contain NaN or infinite values")
    return x


@torch.no_grad()
def parzen_log_prob(x: Tensor, samples: Tensor, sigma: float | Tensor, *, batch_size: int = 500,
                    progress: bool = False) -> Tensor:
    """log p(x) under a Gaussian Parzen window on ``samples``, for one sigma or several.

    ``x`` is (N, ...) and ``samples`` (S, ...) with the same trailing shape; ``sigma`` one width (a Python or NumPy
    number, or a 0-d tensor) or K of them (a list, tuple, NumPy array or 1-D tensor). Returns float64 (N,) for one
    width, (K, N) for several. The distances are computed with autocast off (a caller's bf16 autocast would run
    the product in bf16: 0.87 nats off at sigma 0.2, D = 784). A batch whose float32 product would round the
    distances by more than 1% of 2 sigma^2 is computed in float64, and where float64's would too (sigma 1e-6 of
    the data's spread at D = 784), the near kernels' distances directly (:func:`_exact_near`).

    >>> x, mu = torch.zeros(4, 3), torch.rand(50, 3)
    >>> parzen_log_prob(x, mu, 0.5).shape, parzen_log_prob(x, mu, [0.1, 0.5]).shape
    (torch.Size([4]), torch.Size([2, 4]))
    >>> mu = torch.tensor([[0.25], [0.75]], dtype=torch.float64).expand(2, 784)  # sigma 1e-8 of the data's scale
    >>> x = mu[:1] + 1e-8                                  # |x - mu_0|^2 / (2 sigma^2) = 392; mu_1 is far
    >>> want = -392 - math.log(2) - 784 * math.log(1e-8 * math.sqrt(2 * math.pi))
    >>> abs(float(parzen_log_prob(x, mu, 1e-8)) - want) < 1e-3
    True
    """
    from tqdm.auto import tqdm

    x, mu = _flat(x, "points"), _flat(samples, "samples")
    if x.shape[1] != mu.shape[1]:
        raise DataError(f"Parzen points have {x.shape[1]} dimensions, the samples {mu.shape[1]}")
    scalar = isinstance(sigma, numbers.Real) or getattr(sigma, "ndim", None) == 0  # a number, 0-d tensor or array
    sig = check_sigmas(sigma).to(mu.device)  # (K,)
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise DataError(f"Parzen batch_size must be a whole number >= 1, got {batch_size!r}")
    S, D = mu.shape
    # |x - mu|^2 = |x|^2 + |mu|^2 - 2 x.mu loses float32 digits when the data sit far from the origin
    # (|x|^2 >> |x - mu|^2): shift both by the samples' mean first, which leaves every distance unchanged
    centre = mu.double().mean(0)  # (D,)
    mu64 = mu.double() - centre  # (S, D)
    mu64_sq = (mu64 * mu64).sum(1)  # (S,)
    mu, mu_sq = mu64.float(), mu64_sq.float()  # (S, D), (S,)
    # ... and a set spread over many window widths (a ring of radius 1e4, std 1) still does: float32's rounding of
    # |x|^2 + |mu|^2 must stay under 1% of 2 sigma^2 (an error of 0.01 nats a kernel), else the batch is in float64
    # (MNIST's test digits stay in float32: 3e-5 against 2e-4 at sigma 0.1)
    tolerance = 0.01 * 2 * float(sig.min()) ** 2
    # log of the normaliser of one kernel plus the 1/S of the mean: (K,)
    log_z = D * torch.log(sig * math.sqrt(2 * math.pi)) + math.log(S)
    out = []
    with torch.autocast(mu.device.type, enabled=False):  # a caller's autocast would run the product in bf16
        for i in tqdm(range(0, x.shape[0], batch_size), desc=f"Parzen ({len(sig)} sigma)", leave=False,
                      disable=None if progress else True):
            xb = x[i:i + batch_size].to(mu.device, torch.float64) - centre  # (B, D)
            xb_sq = (xb * xb).sum(1, keepdim=True)  # (B, 1)
            wide = torch.finfo(torch.float32).eps * float(xb_sq.max() + mu64_sq.max()) > tolerance
            xs, xs_sq, ms, ms_sq = (xb, xb_sq, mu64, mu64_sq) if wide else (xb.float(), xb_sq.float(), mu, mu_sq)
            d2 = (xs_sq + ms_sq - 2.0 * xs @ ms.T).clamp_min(0)  # (B, S), float32 (float64 where wide)
            if wide and torch.finfo(torch.float64).eps * float(xb_sq.max() + mu64_sq.max()) > tolerance:
                d2 = _exact_near(d2, xb, mu64, sig, torch.finfo(torch.float64).eps * float(xb_sq.max() + mu64_sq.max()))
            # log sum_j exp(-d2_j / 2s^2) = -near / 2s^2 + log sum_j exp(-gap_j / 2s^2): the nearest kernel's term
            # is exp(0) = 1, so the sum neither underflows nor overflows in d2's dtype, and the shift is in float64
            near = d2.amin(1, keepdim=True)  # (B, 1)
            gap = d2.sub_(near)  # (B, S) >= 0, in place
            lse = torch.stack([_scaled(gap, 0.5 / (s * s)).clamp_min_(_EXP_FLOOR).exp_().sum(1).log_().double()
                               - near[:, 0].double() * (0.5 / (s * s)) for s in sig.tolist()])  # (K, B)
            out.append((lse - log_z[:, None]).cpu())  # (K, B)
    lp = torch.cat(out, dim=1)  # (K, N)
    return lp[0] if scalar else lp


def _exact_near(d2: Tensor, xb: Tensor, mu: Tensor, sig: Tensor, err: float) -> Tensor:
    """d2 (B, S) float64 with the near kernels' distances computed directly, ``||x - mu||^2`` as a sum of squared
    differences: where even float64's ``|x|^2 + |mu|^2 - 2 x.mu`` rounds by more than 1% of 2 sigma^2 (``err``, its
    rounding, against a sigma of 1e-7 on MNIST-like data, D = 784: 11 nats off). For the sigmas it cannot resolve
    (2 sigma^2 < 100 err), a kernel's term counts only within 2 sigma^2 * 88 of the nearest (beyond, it is floored
    at e^-87); for the rest the product is as accurate as float32's is where float32 is taken. So only the kernels
    within 2 sigma_max^2 * 88 + 16 err of each point's nearest are recomputed: its near duplicates. xb (B, D) and mu
    (S, D) are float64, centred alike."""
    s2 = max(s * s for s in sig.tolist() if 0.02 * s * s < err)  # the widest sigma the product cannot resolve
    cand = (d2 <= d2.amin(1, keepdim=True) + (2 * s2 * 88 + 16 * err)).nonzero()  # (P, 2) (point, kernel) pairs
    step = max(1, (1 << 22) // max(1, xb.shape[1]))  # pairs per block: 32 MiB of differences
    for pairs in cand.split(step):  # (p, 2)
        i, j = pairs[:, 0], pairs[:, 1]  # (p,), (p,)
        d2[i, j] = (xb[i] - mu[j]).square().sum(1)  # (p,) directly: no cancellation
    return d2


def _scaled(gap: Tensor, c: float) -> Tensor:
    """``-c * gap`` in ``gap``'s dtype, or in float64 where ``c`` is beyond that dtype's range (sigma under 4e-20 in
    float32, whose ``c`` would be inf and make the nearest kernel's 0 * inf a NaN)."""
    return gap * -c if c <= torch.finfo(gap.dtype).max else gap.double() * -c


def select_sigma(samples: Tensor, valid: Tensor, sigmas: Tensor = SIGMAS, *, batch_size: int = 500,
                 progress: bool = False) -> tuple[float, Tensor]:
    """The sigma of ``sigmas`` with the highest mean validation log-likelihood, and every mean (K,)."""
    means = parzen_log_prob(valid, samples, torch.as_tensor(sigmas, dtype=torch.float64), batch_size=batch_size,
                            progress=progress).mean(dim=1)  # (K,)
    best = int(means.nan_to_num(nan=-math.inf).argmax())  # a NaN mean never wins
    return float(torch.as_tensor(sigmas, dtype=torch.float64)[best]), means


def parzen_protocol(samples: Tensor, valid: Tensor, test: Tensor, *, sigmas: Tensor = SIGMAS,
                    n_valid: int | None = None, batch_size: int = 500, progress: bool = True) -> dict:
    """Goodfellow et al. 2014: choose sigma on the first ``n_valid`` validation points, score the test set.

    ``n_valid`` None takes the first 1,000 (:data:`N_VALID`), or all of them when there are fewer; a number must
    be a whole number from 1 to the size of ``valid``.

    Returns ``{"ll", "stderr", "sigma", "valid_ll": {sigma: mean}, "n_samples", "n_test"}``; ``ll`` is the
    mean test log-likelihood in nats per example (higher is better), ``stderr`` its standard error.
    ``valid_ll``'s keys are the sigmas at full precision, ``repr(sigma)`` ('0.1', '0.12915496650148828'), so
    that no two sigmas share one. A sigma at either end of the grid is reported (``"sigma_at_edge": True``): the
    grid may be too narrow.
    """
    sigmas = check_sigmas(sigmas)
    if not isinstance(valid, Tensor) or valid.dim() < 2 or valid.shape[0] == 0:
        raise DataError("Parzen validation points must be a tensor of shape (N, ...) with N >= 1")
    if n_valid is None:
        n_valid = min(N_VALID, valid.shape[0])
    elif isinstance(n_valid, bool) or not isinstance(n_valid, numbers.Integral) or not 1 <= n_valid <= valid.shape[0]:
        # 0 was 'points must have N >= 1', a negative n sliced from the end (valid[:-299])
        raise DataError(f"Parzen n_valid must be a whole number from 1 to the {valid.shape[0]} validation points, "
                        f"got {n_valid!r}")
    sigma, means = select_sigma(samples, valid[:int(n_valid)], sigmas, batch_size=batch_size, progress=progress)
    lp = parzen_log_prob(test, samples, sigma, batch_size=batch_size, progress=progress)  # (N,)
    edge = len(sigmas) > 1 and sigma in (float(sigmas.min()), float(sigmas.max()))  # one sigma given: no grid
    return {"ll": float(lp.mean()), "stderr": float(lp.std() / math.sqrt(len(lp))) if len(lp) > 1 else float("nan"),
            "sigma": sigma, "sigma_at_edge": edge, "valid_ll": {repr(s): float(m) for s, m in zip(sigmas.tolist(), means)},
            "n_samples": int(samples.shape[0]), "n_test": int(test.shape[0])}
