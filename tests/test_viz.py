"""Sample grids and point plots: layout, value mapping and one-line errors for what cannot be drawn."""

import numpy as np
import pytest
import torch
from PIL import Image

from genzoo.errors import DataError
from genzoo.viz import save_grid
from genzoo.viz.grids import image_grid, save_samples
from genzoo.viz.plots import save_points


def test_grid_layout_and_values():
    x = torch.zeros(5, 1, 4, 3)
    x[2] = 1.0
    arr = image_grid(x, nrow=2)  # 3 rows x 2 columns, one-pixel grey borders
    assert arr.shape == (3 * 5 + 1, 2 * 4 + 1, 1) and arr.dtype == np.uint8
    assert arr[0, 0, 0] == 128 and arr[1, 1, 0] == 0  # border, then the first image
    assert (arr[6:10, 1:4, 0] == 255).all()  # image 2: second row, first column
    rgb = image_grid(torch.rand(4, 3, 2, 2), scale=3)
    assert rgb.shape == (3 * (2 * 3 + 1), 3 * (2 * 3 + 1), 3)


def test_uint8_images_are_read_as_0_to_255_and_nan_as_black():
    levels = torch.tensor([0, 128, 255], dtype=torch.uint8).reshape(1, 1, 1, 3)
    assert image_grid(levels, pad=0)[0, :, 0].tolist() == [0, 128, 255]  # 128 was clipped to 255
    nan = torch.full((1, 1, 1, 2), float("nan"))
    assert image_grid(nan, pad=0)[0, :, 0].tolist() == [0, 0]


@pytest.mark.parametrize("bad", [torch.rand(0, 1, 8, 8), torch.rand(3, 8, 8), torch.rand(2, 5, 8, 8), np.zeros((2, 1, 4, 4))])
def test_what_cannot_be_a_grid_is_a_one_line_error(bad, tmp_path):
    with pytest.raises(DataError, match="an image grid needs images"):
        save_grid(bad, tmp_path / "g.png")
    assert not (tmp_path / "g.png").exists()


def test_points_scatter_histogram_and_empty(tmp_path):
    save_samples(torch.randn(100, 2), tmp_path / "p.png")
    save_samples(torch.randn(100, 1), tmp_path / "h.png")
    save_samples(torch.rand(6, 1, 8, 8), tmp_path / "i.png")
    for f in ("p.png", "h.png", "i.png"):
        Image.open(tmp_path / f).load()
    with pytest.raises(DataError, match="N >= 1 points"):
        save_points(torch.zeros(0, 2), tmp_path / "e.png")


def test_a_2d_scatter_shows_the_whole_true_density(monkeypatch, tmp_path):
    """The axes followed the samples alone: 7 GAN samples in one cluster left the ring out of the picture."""
    import genzoo.viz.plots as plots
    from genzoo.data.toy import ring

    figures = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: figures.append(fig))
    save_points(torch.full((7, 2), 0.05), tmp_path / "p.png", density=ring())
    (ax,) = figures[0].axes
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    assert x0 <= -1.0 and x1 >= 1.0 and y0 <= -1.0 and y1 >= 1.0  # the ring of radius 1


def test_a_scatter_over_a_toy_density_keeps_its_box_and_resolves_narrow_modes(monkeypatch, tmp_path):
    """The axes followed the samples (an outlier hid the density; each GIF frame had other limits) and the truth was
    drawn on a fixed 150-point grid, between whose points the ring's modes (std 0.01) vanished."""
    from genzoo.data import load_dataset
    from genzoo.viz import plots

    figures = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: figures.append(fig))
    ring = load_dataset("ring", "test").density
    grids = []
    real = ring.log_prob
    monkeypatch.setattr(ring, "log_prob", lambda pts: grids.append(len(pts)) or real(pts))
    x = torch.randn(500, 2) * 0.01 + torch.tensor([1.0, 0.0])
    x[0] = torch.tensor([50.0, -40.0])
    plots.save_points(x, tmp_path / "a.png", "gan", density=ring)
    plots.save_points(torch.randn(100, 2) * 0.01, tmp_path / "b.png", "gan", density=ring)
    (ax_a,), (ax_b,) = figures[0].axes, figures[1].axes
    assert ax_a.get_xlim() == ax_b.get_xlim() and ax_a.get_ylim() == ax_b.get_ylim()  # one view for the run
    assert any("1 of 500 outside the view" in t.get_text() for t in ax_a.texts) and ax_a.get_title() == "gan"
    side = grids[0] ** 0.5  # the truth's grid: a step of at most half a mode's std (0.01) over the view
    assert (ax_a.get_xlim()[1] - ax_a.get_xlim()[0]) / (side - 1) <= 0.006


def test_a_histogram_is_not_squeezed_by_an_outlier_and_keeps_the_density_scale(monkeypatch, tmp_path):
    """The 1-D histogram's range followed the samples' min and max: one sample at 1e6 put the other 999 in one bin.
    Points beyond the view are counted, and the bars' area stays the share of all points inside."""
    from genzoo.data.toy import mixture1d
    from genzoo.viz import plots

    figures = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: figures.append(fig))
    x = torch.rand(1000, 1, generator=torch.Generator().manual_seed(0))
    x[0] = 1e6
    plots.save_points(x, tmp_path / "h.png")
    (ax,) = figures[0].axes
    heights = [p.get_height() for p in ax.patches]
    widths = [p.get_width() for p in ax.patches]
    assert ax.get_xlim()[1] < 3 and sum(h > 0 for h in heights) > 30  # the uniform's bars, not one spike
    assert sum(h * w for h, w in zip(heights, widths)) == pytest.approx(999 / 1000, rel=1e-6)
    assert any("1 of 1000 outside the view" in t.get_text() for t in ax.texts)
    truth = mixture1d()
    plots.save_points(torch.full((50, 1), 2.0), tmp_path / "m.png", density=truth)  # (N, 1), all at one mode
    (ax,) = figures[1].axes
    (b_lo, b_hi), = truth.bounds()
    assert ax.get_xlim()[0] <= b_lo and ax.get_xlim()[1] >= b_hi  # the true density's box, whatever the samples


@pytest.mark.parametrize("dims", [1, 2])
def test_points_that_are_not_finite_are_counted_in_the_picture(dims, monkeypatch, tmp_path):
    """NaN samples (a diverged training step's grid) were neither drawn nor counted: the picture looked fine."""
    from genzoo.viz import plots

    figures = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: figures.append(fig))
    x = torch.randn(100, dims)
    x[:3] = float("nan")
    x[3] = float("inf")
    plots.save_points(x, tmp_path / "p.png")
    assert any("4 of 100 not finite, not drawn" in t.get_text() for t in figures[0].axes[0].texts)
    plots.save_points(torch.full((2, dims), float("nan")), tmp_path / "q.png")  # a picture that says so, no error
    assert any("2 of 2 not finite, not drawn" in t.get_text() for t in figures[1].axes[0].texts)


def test_a_histogram_keeps_every_mode_and_tiny_values_in_view(monkeypatch, tmp_path):
    """Tukey's fences (the first view rule) hid a second mode of 20% of the points and drew only the 0 bar of 0/1
    data; points near 1e-14 divided by a zero bin width."""
    from genzoo.viz import plots

    figures = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: figures.append(fig))
    g = torch.Generator().manual_seed(0)
    plots.save_points(torch.cat([torch.randn(800, 1, generator=g), torch.randn(200, 1, generator=g) + 100]),
                      tmp_path / "a.png")
    plots.save_points(torch.tensor([[0.0], [1.0]] * 50), tmp_path / "b.png")
    plots.save_points(torch.rand(100, 1, generator=g) * 1e-14, tmp_path / "c.png")
    for fig in figures:
        (ax,) = fig.axes
        assert not ax.texts  # nothing outside the view
        area = sum(p.get_height() * p.get_width() for p in ax.patches)
        assert area == pytest.approx(1.0, rel=1e-5)  # every point in a bar
