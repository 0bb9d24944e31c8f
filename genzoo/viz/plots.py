"""Matplotlib pictures of low-dimensional samples (headless: bare figures, drawn by the Agg renderer)."""

from __future__ import annotations

import functools
import io
import math
import os
import time

import torch
from torch import Tensor

from ..errors import DataError
from ..io import atomic_write_bytes


def figure(figsize: tuple[float, float], dpi: float | None = None):
    """A bare ``matplotlib.figure.Figure`` (imported on first use: matplotlib is slow to import), which saves to PNG
    through Agg whatever the backend. pyplot is never touched: ``matplotlib.use("Agg")`` on every picture had
    switched the caller's backend for good (a notebook's ``plt.show()`` then showed nothing), and a picture that
    failed midway left its figure open in pyplot. A bare figure is freed as any object is: nothing to close."""
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, dpi=dpi)


def save_figure(fig, path: str | os.PathLike) -> None:
    """Write ``fig`` as a PNG atomically (never a half-written picture)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


#: the longest a picture spends on a true density, projected from 256 points: beyond it the picture leaves the truth
#: out (a spiral of noise 4e-5 sums up to 10^6 quadrature nodes a curve: hours for a density picture's grid)
TRUTH_BUDGET_S = 20.0


def _affordable_points(density, lo, hi) -> float:
    """How many points of the box ``lo``..``hi`` ``density.log_prob`` evaluates within :data:`TRUTH_BUDGET_S`,
    projected from its time at 256 of them (the cheap densities: a few ms)."""
    lo, hi = torch.as_tensor(lo, dtype=torch.float32), torch.as_tensor(hi, dtype=torch.float32)
    probe = lo + torch.rand(256, 2, generator=torch.Generator().manual_seed(0)) * (hi - lo)  # (256, 2)
    t0 = time.perf_counter()
    density.log_prob(probe)
    return TRUTH_BUDGET_S * 256 / max(time.perf_counter() - t0, 1e-9)


@functools.lru_cache(maxsize=4)
def _truth_grid(density, lo: tuple[float, float], hi: tuple[float, float]):
    """The true density on a grid over the box ``lo``..``hi``, fine enough for its narrowest mode: a step of half
    its scale (the ring's std 0.01 fell between the points of a fixed 150 and vanished from the picture), 150 to
    500 points a side; kept for the next picture of the same view (a run's sample grids share it). None where that
    would take over :data:`TRUTH_BUDGET_S` (the picture goes without it)."""
    scale, span = getattr(density, "finest_scale", lambda: None)(), max(hi[0] - lo[0], hi[1] - lo[1])
    n = 150 if not scale else min(500, max(150, int(2 * span / scale) + 1))
    if n * n > _affordable_points(density, lo, hi):
        return None
    gx, gy = torch.meshgrid(torch.linspace(lo[0], hi[0], n), torch.linspace(lo[1], hi[1], n), indexing="xy")
    lp = density.log_prob(torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)).reshape(gx.shape)
    return gx.numpy(), gy.numpy(), lp.exp().numpy()


def _truth(density, lo: tuple[float, float], hi: tuple[float, float]):
    """:func:`_truth_grid`, computed afresh for a density that cannot be a cache key (a plain ``@dataclass`` with
    ``bounds`` and ``log_prob`` is unhashable: its picture raised a TypeError)."""
    try:
        hash(density)
    except TypeError:
        return _truth_grid.__wrapped__(density, lo, hi)
    return _truth_grid(density, lo, hi)


def _view_1d(x: Tensor, density=None) -> tuple[float, float]:
    """The x range of a 1-D histogram of the points ``x`` (N,): the true density's box where known, else the range
    of the points within one core width of their core (the 1%..99% quantiles: a mode of any real share is in it),
    10% wider either way. A single outlier at 1e6 had put every other point in one bin.

    >>> x = torch.cat([torch.linspace(0, 1, 999), torch.tensor([1e6])])
    >>> lo, hi = _view_1d(x)
    >>> -1 < lo < 0 and 1 < hi < 3
    True
    """
    if density is not None and hasattr(density, "bounds"):
        (lo, hi), = density.bounds()
    else:
        xs = x.double().sort().values  # (N,)
        core_lo, core_hi = (float(xs[round(q * (len(xs) - 1))]) for q in (0.01, 0.99))
        span = core_hi - core_lo
        lo, hi = max(float(xs[0]), core_lo - span), min(float(xs[-1]), core_hi + span)
    margin = 0.1 * (hi - lo) if hi > lo else 0.5 * max(1.0, abs(lo))
    return lo - margin, hi + margin


def save_points(samples: Tensor, path: str | os.PathLike, title: str = "", density=None) -> None:
    """Scatter (N, 2) points over the true density's contours when known; histogram (N, 1) points; of (N, D) points
    with D > 2, scatter the first two coordinates (the axes and the title say so). The title is drawn as it is
    written (a ``$`` does not start mathtext)."""
    if not isinstance(samples, Tensor) or samples.dim() < 1 or samples.shape[0] == 0 or samples[0].numel() == 0:
        got = tuple(samples.shape) if isinstance(samples, Tensor) else type(samples).__name__
        raise DataError(f"a scatter or histogram needs N >= 1 points (N, D), got {got}")
    x = samples.detach().float().cpu().reshape(samples.shape[0], -1)
    finite = torch.isfinite(x).all(1)  # (N,)
    n_bad, x = int((~finite).sum()), x[finite]  # NaN or inf points cannot be drawn: counted in the picture instead
    fig = figure((4, 4), dpi=100)
    ax = fig.subplots()
    if n_bad:  # (a training run's grid of a diverging model: the picture says so, and training goes on to its guard)
        ax.text(0.02, 0.90, f"{n_bad} of {len(samples)} not finite, not drawn", fontsize=7, color="crimson",
                transform=ax.transAxes)
    if len(x) == 0:
        ax.set_title(title, parse_math=False)
        save_figure(fig, path)
        return
    if x.shape[1] == 1:
        lo, hi = _view_1d(x[:, 0], density)
        # in float64: numpy takes the bins' edges in the data's dtype, and a float32 view a few ulps wide (a collapsed
        # generator's samples) has "too many bins for data range"
        inside = x[:, 0].double()[(x[:, 0] >= lo) & (x[:, 0] <= hi)]  # an outlier no longer squeezes the rest into one bin
        width = (hi - lo) / 100  # > 0: the view is never empty
        # (N,) weights 1 / (N * width): the bars' area is the share of all N points inside, as the density's is
        ax.hist(inside.numpy(), bins=100, range=(lo, hi), weights=torch.full_like(inside, 1 / (len(samples) * width)).numpy(),
                alpha=0.6, label="samples")
        if len(inside) < len(x):
            ax.text(0.02, 0.95, f"{len(x) - len(inside)} of {len(samples)} outside the view", fontsize=7,
                    transform=ax.transAxes)
        if density is not None:
            t = torch.linspace(lo, hi, 400)
            ax.plot(t.numpy(), density.log_prob(t[:, None]).exp().numpy(), label="true density")
            ax.legend()
    else:
        fixed = density is not None and x.shape[1] == 2 and hasattr(density, "bounds")
        if fixed:  # the true density's box, 10% wider, for every picture of the run (a GIF's frames share axes)
            box = torch.tensor(density.bounds(), dtype=x.dtype)  # (2, 2): (lo, hi) per axis
            margin = 0.1 * (box[:, 1] - box[:, 0])
            lo, hi = box[:, 0] - margin, box[:, 1] + margin  # (2,) each
            outside = int(((x[:, :2] < lo) | (x[:, :2] > hi)).any(1).sum())
            x = torch.cat([x[:, :2].clamp(lo, hi), x[:, 2:]], 1)  # drawn at the edge
            if outside:  # inside the axes: a longer title would widen the saved frame, and a GIF's frames would jump
                ax.text(0.02, 0.02, f"{outside} of {len(samples)} outside the view, drawn at its edge", fontsize=7,
                        transform=ax.transAxes)
        elif density is not None and x.shape[1] == 2:
            lo, hi = x[:, :2].min(0).values - 0.5, x[:, :2].max(0).values + 0.5  # (2,) each
        if density is not None and x.shape[1] == 2:
            truth = _truth(density, tuple(lo.tolist()), tuple(hi.tolist()))
            if truth is not None:
                ax.contourf(*truth, levels=20, cmap="Blues")
        ax.scatter(x[:, 0].numpy(), x[:, 1].numpy(), s=2, c="crimson", alpha=0.6)
        if fixed:
            ax.set_xlim(float(lo[0]), float(hi[0]))
            ax.set_ylim(float(lo[1]), float(hi[1]))
            ax.set_aspect("equal")
        else:
            ax.set_aspect("equal", adjustable="datalim")
        if x.shape[1] > 2:
            ax.set_xlabel("x[0]")
            ax.set_ylabel("x[1]")
            title = f"{title}{' ' if title else ''}(x[0], x[1] of {x.shape[1]} dims)"
    ax.set_title(title, parse_math=False)  # a model named "a$b$" was garbled, "$\frac$" raised at savefig
    save_figure(fig, path)


#: the most points a side the density picture evaluates (800 x 800, 16 points a pixel: 640,000 log-densities of the
#: model, about 10 s for a RealNVP of 136,000 weights on one CPU thread; the default ring and grid take 4 a pixel)
MAX_DENSITY_GRID = 800


@torch.no_grad()
def density_maps(log_prob, bounds: list[tuple[float, float]], density=None, n: int = 200) -> list[Tensor]:
    """(n, n) maps, row 0 at the bottom, of ``exp(log_prob(x))`` over ``bounds`` [(x0, x1), (y0, y1)], then of the
    true density when given: each pixel the highest value at k x k points of its cell, k chosen for a step of at most
    the truth's narrowest scale (its ``finest_scale``, as :func:`_truth_grid`: a mode's peak is then drawn at least
    exp(-1/4) = 0.78 of its height), at most :data:`MAX_DENSITY_GRID` points a side. On a fixed grid of n points,
    equal modes of std 0.01 fell between them: the weakest of 25 was drawn at 0.008 of the strongest, in the true
    density's panel too. A truth that would take over :data:`TRUTH_BUDGET_S` so is drawn on the n x n grid, or,
    over it there too, left out (one map).

    >>> from genzoo.data.toy import ring
    >>> model, truth = density_maps(ring().log_prob, [(-1.2, 1.2), (-1.2, 1.2)], ring(), n=50)
    >>> model.shape, torch.equal(model, truth)
    (torch.Size([50, 50]), True)
    """
    (x0, x1), (y0, y1) = bounds
    scale = getattr(density, "finest_scale", lambda: None)() if density is not None else None
    k = 1 if not scale else max(1, min(MAX_DENSITY_GRID // n, math.ceil((max(x1 - x0, y1 - y0) / scale) / n)))
    if density is not None and (n * k) ** 2 > (affordable := _affordable_points(density, (x0, y0), (x1, y1))):
        k = 1  # a truth too slow to evaluate finely: on the n x n grid, or (over TRUTH_BUDGET_S there too) left out
        density = density if n * n <= affordable else None
    m = n * k
    xs = x0 + (torch.arange(m) + 0.5) * (x1 - x0) / m  # (m,) the centres of m cells: each pixel holds k x k of them
    ys = y0 + (torch.arange(m) + 0.5) * (y1 - y0) / m
    gx, gy = torch.meshgrid(xs, ys, indexing="xy")
    grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)                            # (m*m, 2)
    fns = [log_prob] + ([density.log_prob] if density is not None else [])
    return [torch.cat([f(c) for c in grid.split(8192)]).exp().reshape(n, k, n, k).amax((1, 3)).cpu() for f in fns]


def save_density(log_prob, path: str | os.PathLike, bounds: list[tuple[float, float]], title: str = "",
                 density=None, n: int = 200) -> None:
    """Heat maps of a 2-D model density ``exp(log_prob(x))`` over ``bounds`` [(x0, x1), (y0, y1)], beside the
    true density when known (same colour scale, up to the highest finite value; :func:`density_maps`). A pixel
    whose cell holds a NaN or infinite value (a diverging model far from its data, a log-density beyond float32's
    exp) is drawn red and counted on its panel: one NaN had made the shared scale NaN, the model's panel one flat
    colour and the truth's blank."""
    import matplotlib

    # a box of no width (data with a constant feature) widened about its value: matplotlib warned of identical limits
    bounds = [(lo, hi) if hi > lo else (lo - 0.5 * max(abs(lo), 1.0), hi + 0.5 * max(abs(hi), 1.0)) for lo, hi in bounds]
    (x0, x1), (y0, y1) = bounds
    names = [f"{title} model".strip(), "true density"]
    maps = list(zip(names, density_maps(log_prob, bounds, density, n)))
    if density is not None and len(maps) == 1:
        maps[0] = (f"{names[0]} (true density left out: too slow to evaluate)", maps[0][1])
    vmax = max((float(m[ok].max()) for _, m in maps if (ok := torch.isfinite(m)).any()), default=0.0)
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="red")  # imshow masks NaN and inf as "bad"
    fig = figure((4 * len(maps), 4), dpi=100)
    axes = fig.subplots(1, len(maps), squeeze=False)
    for ax, (name, m) in zip(axes[0], maps):
        ax.imshow(m.numpy(), origin="lower", extent=(x0, x1, y0, y1), cmap=cmap, vmin=0, vmax=vmax)
        if n_bad := int((~torch.isfinite(m)).sum()):
            ax.text(0.02, 0.95, f"{n_bad} of {m.numel()} pixels not finite, drawn red", fontsize=7, color="crimson",
                    va="top", transform=ax.transAxes, bbox=dict(facecolor="white", edgecolor="none", alpha=0.8))
        ax.set_title(name, parse_math=False)
    save_figure(fig, path)
