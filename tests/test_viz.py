"""Sample grids and point plots: layout, value mapping and one-line errors for what cannot be drawn."""

import math

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


def test_uint8_images_are_read_as_0_to_255():
    levels = torch.tensor([0, 128, 255], dtype=torch.uint8).reshape(1, 1, 1, 3)
    assert image_grid(levels, pad=0)[0, :, 0].tolist() == [0, 128, 255]  # 128 was clipped to 255


def test_nonfinite_pixels_are_drawn_red_and_a_training_grid_warns_once(monkeypatch, tmp_path):
    """NaN pixels were drawn black and inf white, with no word: a grid of a model that decodes some NaN looked like
    dark or blank images (the 2-D scatters count such points in their picture)."""
    import warnings
    from types import SimpleNamespace

    import genzoo
    from genzoo.errors import GenZooWarning
    from genzoo.train.callbacks import SampleGrid

    x = torch.rand(4, 1, 2, 2)
    x[0], x[1, 0, 0, 0] = float("nan"), float("inf")
    a = image_grid(x, nrow=4, pad=0)  # (2, 8, 3): RGB for the mark
    assert a.shape == (2, 8, 3) and a[:, :2].tolist() == [[[255, 0, 0]] * 2] * 2 and a[0, 2].tolist() == [255, 0, 0]
    assert (a[:, 4:, 0] == a[:, 4:, 1]).all()  # the finite images stay grey
    assert image_grid(torch.rand(2, 1, 2, 2)).shape[-1] == 1  # a finite grey grid stays one channel
    gmm = genzoo.build("gmm", data_shape=(1, 4, 4))
    monkeypatch.setattr(gmm, "sample", lambda n, generator=None: torch.full((n, 1, 4, 4), float("nan")))
    cb = SampleGrid(tmp_path, every=1, n=9)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in (1, 2):
            cb.on_step_end(SimpleNamespace(step=step, total_steps=2, seed=0, model=gmm, data=None), {})
    said = [str(w.message) for w in caught if issubclass(w.category, GenZooWarning)]
    assert len(said) == 1 and "9 of 9 samples have NaN or infinite pixels, drawn red" in said[0], said
    grid = np.asarray(Image.open(tmp_path / "samples" / "step-00000002.png"))
    assert grid.ndim == 3 and (grid == [255, 0, 0]).all(-1).sum() == 9 * 16 * 14 ** 2  # every pixel red (scaled 14x)


def test_samples_of_a_dequantized_model_are_drawn_on_the_datas_levels(tmp_path):
    """`genzoo sample` and the training grids drew (v + u) / L as sampled: 256 greys where the digits have 17, a
    white pixel as 240..255, as eval and interpolate do not."""
    from genzoo.cli import main

    rd = tmp_path / "gmm"  # on the digits, dequantized (17 levels)
    assert main(["train", "gmm", "--steps", "1", "--sample-every", "1", "--set", "data.n=200", "--set", "n_components=2",
                 "--run-dir", str(rd), "--no-progress"]) == 0
    assert main(["sample", str(rd), "-n", "16", "-o", str(tmp_path / "s.png")]) == 0
    levels = {int(255 * v / 16 + 0.5) for v in range(17)} | {128}  # and the grey border
    for png in (tmp_path / "s.png", rd / "samples" / "step-00000001.png"):
        values = set(np.unique(np.asarray(Image.open(png))).tolist())
        assert values <= levels, sorted(values - levels)[:10]


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
    side = max(grids) ** 0.5  # the truth's grid (after a 256-point probe of its cost): a step of at most half a mode's
    # std (0.01) over the view
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


def test_a_histogram_of_points_a_few_float32_ulps_apart_or_near_its_limit_is_drawn(monkeypatch, tmp_path):
    """A nearly collapsed 1-D generator's samples (2 +- 1e-6) made numpy refuse float32 bins ("too many bins for
    data range"), which stopped genzoo sample and the training run whose sample grid it was (a123 #1)."""
    from genzoo.viz import plots

    figures = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: figures.append(fig))
    g = torch.Generator().manual_seed(0)
    plots.save_points(2.0 + 1e-6 * torch.randn(1000, 1, generator=g), tmp_path / "a.png")
    plots.save_points(torch.cat([torch.zeros(5, 1), torch.full((5, 1), 3.4e38)]), tmp_path / "b.png")
    for fig in figures:
        (ax,) = fig.axes
        assert not ax.texts  # nothing outside the view
        assert sum(p.get_height() * p.get_width() for p in ax.patches) == pytest.approx(1.0, rel=1e-5)


def _truth_panel(monkeypatch, tmp_path, density):
    """The true density's panel of save_density over the box _density_picture draws: (map, extent)."""
    from genzoo.viz import plots

    figures = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: figures.append(fig))
    bounds = [(lo - 0.15 * (hi - lo), hi + 0.15 * (hi - lo)) for lo, hi in density.bounds()]
    plots.save_density(lambda x: torch.zeros(len(x)), tmp_path / "d.png", bounds, "m", density=density)  # a flat model
    image = figures[0].axes[1].images[0]
    return np.asarray(image.get_array()), image.get_extent()


def test_the_density_picture_resolves_narrow_modes(monkeypatch, tmp_path):
    """save_density drew the densities at the points of a fixed 200 x 200 grid: of 25 equal modes of std 0.01 the
    weakest was drawn at 0.008 of the strongest, in the true density's panel too."""
    from genzoo.data import load_dataset

    truth = load_dataset("grid", std=0.01).density
    m, (x0, x1, y0, y1) = _truth_panel(monkeypatch, tmp_path, truth)
    n_y, n_x = m.shape
    xs = x0 + (np.arange(n_x) + 0.5) * (x1 - x0) / n_x  # (n_x,) pixel centres; row 0 at the bottom
    ys = y0 + (np.arange(n_y) + 0.5) * (y1 - y0) / n_y
    peaks = [m[np.ix_(np.abs(ys - cy) < 0.1, np.abs(xs - cx) < 0.1)].max() for cx, cy in truth.centres.tolist()]
    assert min(peaks) >= 0.5 * m.max(), min(peaks) / m.max()  # (0.008 on the fixed grid)


def test_a_true_density_too_slow_to_draw_is_left_out(monkeypatch, tmp_path):
    # a spiral of noise 4e-5 sums up to 10^6 quadrature nodes a curve: its density picture's grid took hours, and
    # each training grid's contour about 50 minutes; over the budget the pictures go without the truth
    from genzoo.data.toy import ring
    from genzoo.viz import plots

    truth = ring()
    model = truth.log_prob
    assert len(plots.density_maps(model, [(-1.2, 1.2), (-1.2, 1.2)], truth, n=20)) == 2
    monkeypatch.setattr(plots, "TRUTH_BUDGET_S", 0.0)
    assert len(plots.density_maps(model, [(-1.2, 1.2), (-1.2, 1.2)], truth, n=20)) == 1
    plots._truth_grid.cache_clear()
    assert plots._truth_grid(truth, (-1.2, -1.2), (1.2, 1.2)) is None
    plots.save_density(model, tmp_path / "d.png", [(-1.2, 1.2), (-1.2, 1.2)], density=truth, n=20)
    plots.save_points(torch.randn(50, 2) * 0.5, tmp_path / "p.png", density=truth)
    assert (tmp_path / "d.png").stat().st_size > 0 and (tmp_path / "p.png").stat().st_size > 0
    plots._truth_grid.cache_clear()


def test_pictures_leave_pyplot_and_the_callers_backend_alone(monkeypatch, tmp_path):
    """Every picture called matplotlib.use("Agg") through pyplot: a notebook's plt.show() showed nothing afterwards,
    genzoo.fit's sample grids of 2-D data included. The pictures are bare figures now: pyplot is never imported."""
    import json
    import sys

    import matplotlib
    from torch.distributions import Normal

    from genzoo.data.toy import ring
    from genzoo.eval.implicit import plot_implicit_density
    from genzoo.viz import plots
    from genzoo.viz.report import _curves

    def refuse(*args, **kwargs):
        raise AssertionError("matplotlib.use was called")

    monkeypatch.setattr(matplotlib, "use", refuse)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)  # import matplotlib.pyplot: an ImportError
    monkeypatch.delattr(matplotlib, "pyplot", raising=False)  # (from matplotlib import pyplot, had it been imported)
    save_samples(torch.randn(50, 2), tmp_path / "a.png", density=ring())
    save_samples(torch.randn(50, 1), tmp_path / "b.png")
    plots.save_density(ring().log_prob, tmp_path / "c.png", [(-1.2, 1.2), (-1.2, 1.2)], density=ring(), n=20)
    plot_implicit_density(torch.exp, Normal(torch.tensor(0.0), torch.tensor(1.0)), tmp_path / "d.png", n_samples=200,
                          generator=torch.Generator().manual_seed(0))
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 2.0}) + "\n")
    assert _curves(tmp_path)[:8] == b"\x89PNG\r\n\x1a\n"
    for f in "abcd":
        Image.open(tmp_path / f"{f}.png").load()


def test_a_picture_that_fails_leaves_no_figure_open(tmp_path):
    """A picture that raised midway (a density whose log_prob fails) left its figure open in pyplot; an API caller
    retrying in a loop got matplotlib's "More than 20 figures" warning."""
    plt = pytest.importorskip("matplotlib.pyplot")

    class Broken:
        def bounds(self):
            return [(-1.0, 1.0), (-1.0, 1.0)]

        def log_prob(self, x):
            raise ValueError("broken density")

    before = plt.get_fignums()
    for _ in range(3):
        with pytest.raises(ValueError, match="broken density"):
            save_points(torch.randn(20, 2), tmp_path / "p.png", density=Broken())
    assert plt.get_fignums() == before and not (tmp_path / "p.png").exists()


def test_an_unhashable_density_and_a_title_with_dollars_are_drawn(monkeypatch, tmp_path):
    """The truth's cache took the density as its key: a plain @dataclass (unhashable) raised a TypeError. A title
    with two '$' was read as mathtext: garbled, or (an unknown command) a ValueError at savefig."""
    from dataclasses import dataclass

    from genzoo.data.toy import ring
    from genzoo.viz import plots

    @dataclass
    class D:
        scale: float = 1.0

        def bounds(self):
            return ring().bounds()

        def log_prob(self, x):
            return ring().log_prob(x / self.scale)

    figures = []
    real = plots.save_figure
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: figures.append(fig) or real(fig, path))
    save_points(torch.randn(50, 2) * 0.5, tmp_path / "p.png", r"cost $\frac$ and a$b$", density=D())
    save_points(torch.randn(50, 2) * 0.5, tmp_path / "q.png", density=D())  # again: computed afresh, no cache
    plots.save_density(ring().log_prob, tmp_path / "d.png", [(-1.2, 1.2), (-1.2, 1.2)], r"$\frac$", n=20)
    assert figures[0].axes[0].get_title() == r"cost $\frac$ and a$b$"
    assert len(figures[0].axes[0].collections) > 1  # the truth's contours beneath the scatter
    for f in ("p.png", "q.png", "d.png"):
        Image.open(tmp_path / f).load()


@pytest.mark.parametrize("bad", ["nan", "inf"])
def test_a_nan_or_infinite_density_is_marked_and_the_scale_follows_the_finite_values(bad, monkeypatch, tmp_path):
    """One NaN log-density made the shared colour scale NaN (a log-density over 88.7, exp's float32 limit, made it
    inf): the model's panel was one flat colour and the true density's was blank, with no word why."""
    from genzoo.data.toy import ring
    from genzoo.viz import plots

    truth = ring()

    def model(x):  # the ring's density, but NaN (or beyond float32's exp) beyond x0 = 1.1
        lp = truth.log_prob(x)
        return torch.where(x[:, 0] > 1.1, torch.full_like(lp, float("nan") if bad == "nan" else 100.0), lp)

    figures = []
    real = plots.save_figure
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: figures.append(fig) or real(fig, path))
    plots.save_density(model, tmp_path / "d.png", [(-1.3, 1.3), (-1.3, 1.3)], "m", density=truth, n=60)
    model_ax, truth_ax = figures[0].axes
    vmax = truth_ax.images[0].norm.vmax
    assert math.isfinite(vmax) and vmax == pytest.approx(float(np.nanmax(np.asarray(truth_ax.images[0].get_array()))))
    png = np.asarray(Image.open(tmp_path / "d.png").convert("RGB"))
    right = png[:, png.shape[1] // 2:].reshape(-1, 3)
    assert len(np.unique(right, axis=0)) > 50  # the true density, drawn (its axes alone before)
    marked = [t.get_text() for t in model_ax.texts]
    assert len(marked) == 1 and marked[0].endswith(" of 3600 pixels not finite, drawn red") and not truth_ax.texts
    n_bad = int(marked[0].split()[0])
    assert 60 * 5 <= n_bad <= 60 * 8  # the columns beyond x0 = 1.1 (7 or so of 60)
    assert ((png == [255, 0, 0]).all(-1)).sum() >= n_bad  # the marked pixels, red


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.int16, torch.uint8])
def test_integer_images_of_any_dtype_are_levels_0_to_255(dtype):
    """Only uint8 was divided by 255: an int64 image of levels 0..255 was clamped to [0, 1], all but 0 white."""
    x = torch.tensor([0, 1, 128, 255], dtype=dtype).reshape(1, 1, 1, 4)
    assert image_grid(x, pad=0)[0, :, 0].tolist() == [0, 1, 128, 255]
    if dtype != torch.uint8:
        with pytest.raises(DataError, match=r"integer images must hold levels 0..255 \(or 0/1\), got values in -1..300"):
            image_grid(torch.tensor([-1, 300], dtype=dtype).reshape(1, 1, 1, 2))
    assert image_grid(torch.tensor([[[[False, True]]]]), pad=0)[0, :, 0].tolist() == [0, 255]  # bool: 0 and 1


@pytest.mark.parametrize("kwargs, needle", [
    ({"nrow": -1}, "nrow must be an integer >= 1, got -1"), ({"nrow": 0}, "nrow must be an integer >= 1, got 0"),
    ({"nrow": 2.5}, "nrow must be an integer >= 1, got 2.5"), ({"scale": 0}, "scale must be an integer >= 1, got 0"),
    ({"scale": 2.5}, "scale must be an integer >= 1, got 2.5"), ({"pad": -1}, "pad must be an integer >= 0, got -1"),
    ({"scale": True}, "scale must be an integer >= 1, got True")])
def test_a_bad_grid_layout_is_a_one_line_error(kwargs, needle):
    """nrow or pad of -1 ended in torch's RuntimeErrors, scale 2.5 was truncated, scale 0 was taken as 1 and nrow 0
    as "about the square root"."""
    with pytest.raises(DataError, match=needle):
        image_grid(torch.rand(4, 1, 2, 2), **kwargs)
    assert image_grid(torch.rand(4, 1, 2, 2), nrow=np.int64(4), pad=0, scale=np.int32(2)).shape == (4, 16, 1)


def test_samples_that_are_no_tensor_or_empty_images_are_one_line_errors(tmp_path):
    """save_samples of a numpy array raised an AttributeError, of 0 x 0 images a ZeroDivisionError; image_grid drew
    0 x 0 images as a grid of border alone."""
    with pytest.raises(DataError, match="save_samples takes a torch tensor of images .* got ndarray"):
        save_samples(np.zeros((2, 1, 4, 4)), tmp_path / "a.png")
    for shape in ((2, 1, 0, 0), (2, 1, 4, 0)):
        with pytest.raises(DataError, match=r"an image grid needs images \(N, C, H, W\) with N, H, W >= 1"):
            save_samples(torch.rand(shape), tmp_path / "b.png")
    assert not list(tmp_path.iterdir())


def test_integer_images_of_0_and_1_alone_are_binary():
    """Read as levels 0..255 (f49e61c's rule for integers), an int 0/1 mask was drawn near-black: black and white
    again, as before it; uint8 is levels whatever its values."""
    mask = torch.tensor([[[[0, 1], [1, 0]]]], dtype=torch.int64)
    assert image_grid(mask, pad=0)[..., 0].tolist() == [[0, 255], [255, 0]]
    assert image_grid(mask * 2, pad=0)[..., 0].tolist() == [[0, 2], [2, 0]]  # levels, once any is above 1
    assert image_grid(mask.to(torch.uint8), pad=0)[..., 0].tolist() == [[0, 1], [1, 0]]
