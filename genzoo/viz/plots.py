"""Matplotlib pictures of low-dimensional samples (headless: the Agg backend)."""

from __future__ import annotations

import io
import os

import torch
from torch import Tensor

from ..io import atomic_write_bytes


def save_points(samples: Tensor, path: str | os.PathLike, title: str = "", density=None) -> None:
    """Scatter (N, 2) points over the true density's contours when known; histogram (N, 1) points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = samples.detach().float().cpu().reshape(samples.shape[0], -1)
    fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
    if x.shape[1] == 1:
        ax.hist(x[:, 0].numpy(), bins=100, density=True, alpha=0.6, label="samples")
        if density is not None:
            lo, hi = float(x.min()), float(x.max())
            t = torch.linspace(lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo), 400)
            ax.plot(t.numpy(), density.log_prob(t[:, None]).exp().numpy(), label="true density")
            ax.legend()
    else:
        if density is not None and x.shape[1] == 2:
            lo, hi = x.min(0).values - 0.5, x.max(0).values + 0.5
            gx, gy = torch.meshgrid(torch.linspace(float(lo[0]), float(hi[0]), 150),
                                    torch.linspace(float(lo[1]), float(hi[1]), 150), indexing="xy")
            lp = density.log_prob(torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)).reshape(gx.shape)
            ax.contourf(gx.numpy(), gy.numpy(), lp.exp().numpy(), levels=20, cmap="Blues")
        ax.scatter(x[:, 0].numpy(), x[:, 1].numpy(), s=2, c="crimson", alpha=0.6)
        ax.set_aspect("equal", adjustable="datalim")
    ax.set_title(title)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
