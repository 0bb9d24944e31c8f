"""The best likelihood figure each model admits, in declared units.

Kinds, never mixed silently in one column:

* ``exact``: ``-log_prob(x)`` of a model with an exact density (GMM, flows);
* ``elbo``: the negative ELBO, an upper bound on the NLL (VAE, M2);
* ``iwae-k``: the negative importance-weighted bound of Burda et al. 2015 with k samples, a tighter
  upper bound that tends to the NLL as k grows: the literature's "test NLL" for VAEs;
* ``parzen``: minus the Parzen-window estimate (Goodfellow et al. 2014, :mod:`genzoo.eval.parzen`) for
  any model that samples (GAN, GMMN): neither a bound nor consistent in high dimensions.

Units follow the data space the model was trained on (``Dataset.space``):

* ``binarized``: a probability mass on {0,1}^D (a Bernoulli decoder on 0/1 pixels, whether binarized
  by genzoo or already binary); nats per example and bits per dimension directly;
* ``dequantized``: a density on [0,1]^D of x = (v + u) / L; the discrete NLL of v is at most
  ``NLL(x) + D log L`` (Theis et al. 2016, eq. 3; the NICE/RealNVP convention), reported with
  bits/dim = that / (D log 2);
* ``continuous``: a density (toy data); bits/dim of a density, may be negative;
* ``discrete-as-real``: a density on discrete values fed as reals (grey levels not dequantized, or
  binarized pixels): not a likelihood of the discrete data, reported with that label;
* ``bernoulli-on-grey``: a Bernoulli decoder (VAE, M2) scored on pixels that are not 0 or 1 (grey or
  dequantized levels): a cross-entropy, not a likelihood of any data, so nothing is added for levels.

>>> import genzoo
>>> from genzoo.data import load_dataset
>>> data = load_dataset("ring", split="test", n=200)
>>> gmm = genzoo.build("gmm", data_shape=(2,), n_components=8)
>>> _ = genzoo.fit(gmm, load_dataset("ring", n=2000), steps=20, progress=False)
>>> rep = likelihood_report(gmm, data, progress=False)
>>> rep["rows"][0]["kind"]
'exact'
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np
import torch

from ..base import Density, LatentVariable, evaluating, forked_rng
from ..errors import ConfigError, DataError

#: the evaluation's random streams besides the test set's own draw (its binarization and dequantization noise, from
#: ``torch.Generator().manual_seed(seed)``): the ELBO's and IWAE's samples, the model's samples, and the feature
#: metrics' choice of real images and KID's subsets
STREAMS = ("bounds", "samples", "subsets")


def stream_seed(seed: int, stream: str) -> int:
    """The seed of the evaluation's ``stream`` (:data:`STREAMS`), derived from ``seed`` (``SeedSequence([seed,
    i])``): independent of the test set's draw from ``seed`` itself. Seeded alike, both Mersenne Twisters gave the
    same words, so the ELBO's noise of test example 0 was Box-Muller of the very uniforms that binarized its first
    pixels, and a fake sample's latents of those that binarized the real images it is compared with (the bound
    E[log mean w] <= log p(x) and KID's unbiasedness take the draws independent of x).

    >>> stream_seed(0, "bounds") != stream_seed(0, "samples") != 0, stream_seed(3, "bounds") == stream_seed(3, "bounds")
    (True, True)
    """
    state = np.random.SeedSequence([int(seed) % 2**63, 1 + STREAMS.index(stream)]).generate_state(2, np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1  # below 2^63


def to_bits_per_dim(nll_nats: float, dims: int, space: str, levels: int | None) -> tuple[float, float]:
    """(NLL in nats on the reported space, bits per dimension) for a model NLL on ``space``.

    On dequantized data ``D log L`` is added first (the bound on the discrete levels' NLL); then bits/dim =
    nats / (D log 2).

    >>> to_bits_per_dim(10 * math.log(2), 5, "continuous", None)       # 10 bits over 5 dimensions
    (6.931471805599453, 2.0)
    >>> nats, bpd = to_bits_per_dim(0.0, 3, "dequantized", 256)          # + 3 log 256: 8 bits a dimension
    >>> math.isclose(nats, 3 * math.log(256)), bpd
    (True, 8.0)
    """
    if isinstance(dims, bool) or not isinstance(dims, numbers.Integral) or dims < 1:
        raise ConfigError(f"bits per dimension need a whole number of dimensions >= 1, got {dims!r}")
    if space == "dequantized" and levels:
        nll_nats = nll_nats + dims * math.log(levels)
    return nll_nats, nll_nats / (dims * math.log(2))


@torch.no_grad()
def _batched(fn, x: torch.Tensor, batch_size: int, progress: bool, desc: str) -> torch.Tensor:
    from tqdm.auto import tqdm

    out = []
    for i in tqdm(range(0, x.shape[0], batch_size), desc=desc, disable=None if progress else True, leave=False):
        out.append(fn(x[i:i + batch_size]).double().cpu())
    return torch.cat(out)


@torch.no_grad()
def check_eval_options(*, n: int | None = None, n_samples: int = 2, iwae_k: int = 0, batch_size: int = 1) -> None:
    """A ConfigError unless the evaluation sizes are in range: ``n`` (None: every example) and ``batch_size``
    >= 1, ``n_samples`` >= 2, ``iwae_k`` >= 0, and no more than 1,000,000 samples of either kind.

    >>> check_eval_options(n=-5)
    Traceback (most recent call last):
    genzoo.errors.ConfigError: n and batch_size must be >= 1, n_samples >= 2 and iwae_k >= 0 (-n, --n-samples, --iwae-k, --batch-size), got (-5, 2, 0, 1)
    """
    sizes = (n, n_samples, iwae_k, batch_size)
    if any(v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Integral)) for v in sizes):
        raise ConfigError(f"n, n_samples, iwae_k and batch_size are whole numbers, got {sizes}")
    if n is not None and n < 1 or n_samples < 2 or iwae_k < 0 or batch_size < 1:
        raise ConfigError(f"n and batch_size must be >= 1, n_samples >= 2 and iwae_k >= 0 (-n, --n-samples, "
                          f"--iwae-k, --batch-size), got {sizes}")
    for name, flag, v in (("n_samples", "--n-samples", n_samples), ("iwae_k", "--iwae-k", iwae_k)):
        if v > 1_000_000:
            raise ConfigError(f"{name} ({flag}) must be at most 1,000,000, got {v:,}")


def check_weights(model, nothing_to: str = "evaluate") -> None:
    """A DataError if ``model`` has a NaN or infinite parameter or buffer (a diverged run): its figures would
    be NaN or internal errors deep in a metric, its pictures black (the message ends "Nothing to ``nothing_to``")."""
    bad = [name for name, t in (*model.named_parameters(), *model.named_buffers())
           if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise DataError(f"the {model.name} model has NaN or infinite weights ({', '.join(bad[:3])}"
                        f"{', ...' if len(bad) > 3 else ''}): did its training diverge? Nothing to {nothing_to}")


def likelihood_report(model, data, *, iwae_k: int = 5000, batch_size: int = 100, seed: int = 0,
                      n: int | None = None, progress: bool = True, bounds: bool = True, valid=None,
                      samples: torch.Tensor | None = None, n_samples: int = 10_000,
                      parzen_sigmas: Sequence[float] | torch.Tensor | None = None) -> dict:
    """Every likelihood figure ``model`` admits on ``data`` (a Dataset), with kind and units.

    Returns ``{"space", "dims", "n", "rows": [{"metric", "kind", "nats", "stderr", "bits_per_dim"}]}``
    where ``nats`` is the mean NLL per example (lower is better) and ``stderr`` its standard error.
    With ``bounds`` the exact NLL (``Density``) and the ELBO and IWAE bounds (``LatentVariable``); with
    ``valid`` (the validation Dataset) also the Parzen-window estimate of any sampler (kind ``parzen``;
    :func:`genzoo.eval.parzen.parzen_protocol` on ``samples``, else ``n_samples`` fresh draws), which
    scores the raw test points, so it has no bits/dim (``None``) and its details go to ``"parzen"``;
    ``parzen_sigmas`` is the grid its sigma is chosen from (default: Goodfellow et al.'s,
    :data:`genzoo.eval.parzen.SIGMAS`). Stochastic parts use ``seed``: the test set's binarization and
    dequantization noise ``torch.Generator().manual_seed(seed)``, the ELBO and IWAE samples and the model's
    samples streams derived from it (:func:`stream_seed`), independent of the test set's; the ELBO and IWAE samples
    are drawn batch after batch, so another ``batch_size`` gives another Monte Carlo estimate (within its standard
    error).
    """
    check_eval_options(n=n, n_samples=n_samples, iwae_k=iwae_k, batch_size=batch_size)
    check_weights(model)
    with evaluating(model), forked_rng(model.device):  # the device's too: manual_seed reseeds it
        torch.manual_seed(stream_seed(seed, "bounds"))  # the ELBO's and IWAE's noise: not the test set's uniforms
        x = data.transformed(torch.Generator().manual_seed(seed))
        if n is not None:
            x = x[:n]
        x = x.to(model.device)
        dims = math.prod(x.shape[1:])
        rows = []
        space = data.space  # what the data are; what the figures are also depends on the model's support:
        if bounds and getattr(model, "bernoulli_pixels", False):
            space = bernoulli_space(x)  # a mass on {0,1}^D, on or off its support
        elif space == "binarized":
            space = "discrete-as-real"  # a density evaluated at the points of {0,1}^D is no mass there
        out = {"split": data.split, "dataset": data.name, "space": space, "levels": data.levels,
               "dims": dims, "n": int(x.shape[0]), "rows": rows}

        def row(metric: str, kind: str, nll: torch.Tensor) -> None:
            nats, bpd = to_bits_per_dim(float(nll.mean()), dims, space, data.levels)
            se = float(nll.std() / math.sqrt(len(nll))) if len(nll) > 1 else float("nan")
            rows.append({"metric": metric, "kind": kind, "nats": nats, "stderr": se, "bits_per_dim": bpd})

        if bounds and isinstance(model, Density):
            row("NLL", "exact", -_batched(model.log_prob, x, batch_size, progress, "log_prob"))
        if bounds and isinstance(model, LatentVariable):
            row("-ELBO", "elbo", -_batched(model.elbo, x, batch_size, progress, "elbo"))
            if iwae_k > 0:
                iw = _batched(lambda b: model.iwae_bound(b, iwae_k), x, batch_size, progress, f"iwae k={iwae_k}")
                row(f"NLL (IWAE k={iwae_k})", f"iwae-{iwae_k}", -iw)
        if valid is not None:
            from .metrics import draw
            from .parzen import parzen_protocol

            if samples is None:
                samples = draw(model, n_samples, stream_seed(seed, "samples"), data)  # (as evaluate draws them)
            grid = {} if parzen_sigmas is None else {"sigmas": parzen_sigmas}
            p = parzen_protocol(samples.to(model.device), valid.x, data.x[:n], progress=progress, **grid)
            rows.append({"metric": "-LL (Parzen, raw)", "kind": "parzen", "nats": -p["ll"], "stderr": p["stderr"],
                         "bits_per_dim": None})
            out["parzen"] = {**p, "sigma_chosen_on": valid.split}
    return out


def bernoulli_space(x: torch.Tensor) -> str:
    """The space a Bernoulli decoder's figures on ``x`` are in: ``binarized`` where every value is 0 or 1, else
    ``bernoulli-on-grey``.

    >>> bernoulli_space(torch.tensor([0.0, 1.0])), bernoulli_space(torch.tensor([0.0, 0.5]))
    ('binarized', 'bernoulli-on-grey')
    """
    return "binarized" if bool(((x == 0) | (x == 1)).all()) else "bernoulli-on-grey"


def format_stderr(se: float, digits: int = 3) -> str:
    """A standard error for a table: ``n/a`` where it is NaN (one example has no spread).

    >>> format_stderr(0.01234), format_stderr(float("nan"))
    ('0.012', 'n/a')
    """
    return "n/a" if se != se else f"{se:.{digits}f}"


def format_table(report: dict) -> str:
    """A plain-text table of a likelihood report; its header names the space only where a row is in it (Parzen's
    scores the points as given)."""
    kinds = {r["kind"] for r in report["rows"]}
    own = bool(kinds - {"parzen"})  # the model scored a density or bound of its own (a GAN's table is Parzen's alone)
    space = f", space: {report['space']}" if own else ""
    head = f"{report['dataset']} {report['split']} (n={report['n']}, D={report['dims']}{space})"
    lines = [head, f"{'metric':<22} {'kind':<12} {'nats/example':>14} {'+-':>7} {'bits/dim':>9}"]
    for r in report["rows"]:
        bpd = "n/a" if r["bits_per_dim"] is None else f"{r['bits_per_dim']:.4f}"
        lines.append(f"{r['metric']:<22} {r['kind']:<12} {r['nats']:>14.3f} {format_stderr(r['stderr']):>7} {bpd:>9}")
    if own and report["space"] == "discrete-as-real":
        lines.append("note: a density scored on discrete values (grey levels not dequantized, or binarized pixels): "
                     "not a likelihood of the discrete data")
    if own and report["space"] == "bernoulli-on-grey":
        lines.append("note: a Bernoulli decoder scored on pixels that are not 0 or 1: a cross-entropy, not a likelihood "
                     "(binarize the data, data.binarize=true, for one)")
    if "parzen" in kinds and report["space"] != "continuous":  # (the header's space is the model's, not Parzen's)
        where = f", not in the model's '{report['space']}' space" if own else ""
        lines.append(f"Parzen (raw): scores the {report['split']} points as given{where} (Goodfellow et al. 2014): "
                     "an estimate, not a bound")
    if "parzen" in report:
        p = report["parzen"]
        edge = " (at the edge of the grid: widen it)" if p["sigma_at_edge"] else ""
        lines.append(f"Parzen: a Gaussian window of sigma {p['sigma']:.4g}{edge}, chosen on the "
                     f"{p.get('sigma_chosen_on', 'valid')} split, on {p['n_samples']:,} samples")
    return "\n".join(lines)
