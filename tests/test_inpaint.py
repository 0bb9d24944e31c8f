"""Inpainting by latent optimisation (Yeh et al.): masks, importance weights, Poisson blending, the search."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.distributions import Independent, Normal

import genzoo
from genzoo.apps.inpaint import (HOLE_COLOUR, SAMPLES, choose_sigma, context_weights, effective_sample_size, inpaint,
                                 make_mask, model_draws, poisson_blend, posterior_fill, posterior_mean, psnr)
from genzoo.cli import main
from genzoo.errors import ConfigError, DataError, GenZooWarning


def test_masks():
    c = make_mask("center", (1, 28, 28))
    assert c.shape == (1, 28, 28) and int((c == 0).sum()) == 14 * 14 and float(c[0, 14, 14]) == 0
    left = make_mask("left", (3, 8, 8))
    assert left.shape == (3, 8, 8) and float(left[:, :, :4].sum()) == 0 and float(left[:, :, 4:].min()) == 1
    r = make_mask("random:0.8", (1, 100, 100), torch.Generator().manual_seed(0))
    assert abs(float(1 - r.mean()) - 0.8) < 0.02


def test_mask_from_png_and_errors(tmp_path):
    a = np.full((16, 16), 255, np.uint8)
    a[:, :8] = 0  # black = missing
    Image.fromarray(a).save(tmp_path / "m.png")
    with pytest.warns(GenZooWarning, match="16x16 made 8x8"):  # resized, and said so
        m = make_mask(str(tmp_path / "m.png"), (1, 8, 8))
    assert float(m[0, :, :4].sum()) == 0 and float(m[0, :, 4:].min()) == 1
    rgba = np.full((16, 16, 4), 255, np.uint8)
    rgba[:, :8, 3] = 0  # a painted mask: holes transparent (white underneath), read as black = missing
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "t.png")
    with pytest.warns(GenZooWarning):
        assert torch.equal(make_mask(str(tmp_path / "t.png"), (1, 8, 8)), m)
    for bad, needle in (("middle", "unknown mask"), ("random:1.5", "in \\(0, 1\\)"), ("random:x", "needs a number"),
                        ("random:0.0", "in \\(0, 1\\), the share of pixels missing, got 0.0"),  # no seed could help
                        ("centre", "unknown mask 'centre' \\(did you mean 'center'\\?\\)"),
                        ("rnadom:0.5", "did you mean 'random'"), ("random", "needs the share of pixels missing: "
                                                                       "random:P, e.g. random:0.5")):
        with pytest.raises(ConfigError, match=needle):
            make_mask(bad, (1, 8, 8))
    with pytest.raises(ConfigError, match="nothing to fill: a random draw"):
        make_mask("random:0.001", (1, 4, 4), torch.Generator().manual_seed(0))


def test_context_weights_match_the_definition():
    m = make_mask("random:0.5", (1, 9, 9), torch.Generator().manual_seed(1))[0].numpy()
    w = context_weights(torch.from_numpy(m)[None])[0].numpy()
    ref = np.zeros_like(m)
    for i in range(9):
        for j in range(9):
            if m[i, j]:
                win = m[max(0, i - 3):i + 4, max(0, j - 3):j + 4]
                ref[i, j] = (1 - win).sum() / 49  # zero padding counts as known
    np.testing.assert_allclose(w, ref, atol=1e-6)


def test_poisson_blend_keeps_known_pixels_and_source_gradients():
    g = torch.Generator().manual_seed(2)
    y, mask = torch.rand(1, 10, 10, generator=g), make_mask("center", (1, 10, 10))
    assert torch.allclose(poisson_blend(y, y, mask), y, atol=1e-6)  # source = target: nothing changes
    shifted = (y * 0.5 + 0.2)  # same picture at another brightness: the fill keeps y's border, source's gradients
    out = poisson_blend(y, shifted.clone(), mask)
    assert torch.equal(out[mask > 0], y[mask > 0])
    hole = mask[0] < 0.5
    ref_grad = (shifted[0, 1:, :] - shifted[0, :-1, :])[hole[1:, :] & hole[:-1, :]]
    out_grad = (out[0, 1:, :] - out[0, :-1, :])[hole[1:, :] & hole[:-1, :]]
    assert float((out_grad - ref_grad).abs().mean()) < float((shifted - y).abs().mean())


def test_psnr():
    x = torch.zeros(2, 1, 4, 4)
    y = x.clone()
    y[0] += 0.1
    y[1, :, :2] += 0.01
    where = torch.ones_like(x)
    np.testing.assert_allclose(psnr(x, y, where).numpy(), [20.0, 40 + 10 * np.log10(2)], rtol=1e-5)
    only_changed = torch.zeros_like(x)
    only_changed[:, :, :2] = 1
    assert float(psnr(x, y, only_changed)[1]) == pytest.approx(40.0, rel=1e-5)


class LinearGenerator(nn.Module):
    """x = sigmoid(A z): a known generator whose latent the known pixels determine."""

    name, data_shape, latent_dim = "linear", (1, 4, 4), 6

    def __init__(self):
        super().__init__()
        self.A = nn.Parameter(torch.randn(16, 6, generator=torch.Generator().manual_seed(3)) / 2)

    @property
    def device(self):
        return self.A.device

    @property
    def prior(self):
        return Independent(Normal(torch.zeros(6), torch.ones(6)), 1)

    def generate(self, z):
        return torch.sigmoid(z @ self.A.T).reshape(-1, 1, 4, 4)


def test_search_recovers_the_missing_pixels_of_an_image_the_model_can_make():
    model = LinearGenerator()
    z_true = torch.randn(3, 6, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        y = model.generate(z_true)
    mask = make_mask("center", (1, 4, 4)).expand(3, 1, 4, 4)
    out = inpaint(model, y, mask, lam=0.0, steps=1500, lr=0.05, restarts=2, blend="mask",
                  generator=torch.Generator().manual_seed(5))
    assert float(psnr(out["filled"], y, 1 - mask).min()) > 35
    assert torch.equal(out["filled"][mask > 0], y[mask > 0])  # known pixels kept as they were
    assert all(p.requires_grad for p in model.parameters())


def test_cli_inpaint_panel_and_psnr(tmp_path, capsys):
    rd = tmp_path / "vae"
    assert main(["train", "vae", "--steps", "50", "--run-dir", str(rd), "--no-progress", "--set", "latent_dim=4"]) == 0
    capsys.readouterr()
    assert main(["inpaint", str(rd), "--test-index", "0", "1", "2", "--steps", "30", "--restarts", "2"]) == 0
    out = capsys.readouterr().out
    assert "PSNR on the missing pixels" in out and (rd / "inpaint.png").is_file()
    Image.fromarray((np.random.default_rng(0).random((8, 8)) * 255).astype(np.uint8)).save(tmp_path / "x.png")
    assert main(["inpaint", str(rd), "--image", str(tmp_path / "x.png"), "--mask", "left", "--steps", "5",
                 "--blend", "mask", "-o", str(tmp_path / "p.png")]) == 0
    panel = np.asarray(Image.open(tmp_path / "p.png").convert("RGB"))[::2, ::2]  # scale 2 undone: (4 * 9 + 1, 10, 3)
    image, masked = panel[1:9, 1:9], panel[10:18, 1:9]                            # rows 1 and 2 of one column
    hole = np.floor(np.array(HOLE_COLOUR) * 255 + 0.5)                              # as image_grid rounds
    assert (masked[:, :4] == hole).all() and (masked[:, 4:] == image[:, 4:]).all()  # holes in blue, known pixels kept
    assert (image[..., 0] == image[..., 1]).all() and image[:, :4].std() > 0       # grey image shown as grey
    assert main(["inpaint", str(rd), "--mask", "middle"]) == 2
    assert "unknown mask" in capsys.readouterr().err
    assert main(["inpaint", str(rd), "--image", str(tmp_path / "none.png")]) == 2
    # -o naming the command's own input replaced the user's picture with the panel, exit 0
    before = (tmp_path / "x.png").read_bytes()
    capsys.readouterr()
    assert main(["inpaint", str(rd), "--image", str(tmp_path / "x.png"), "--steps", "2", "-o", str(tmp_path / "x.png")]) == 2
    assert "is an input of this command" in capsys.readouterr().err and (tmp_path / "x.png").read_bytes() == before
    # a lam whose float32 loss overflows turned the codes NaN: 'a bug in genzoo' (VAE) or a NaN PSNR (GAN)
    assert main(["inpaint", str(rd), "--steps", "2", "--lam", "1e38", "-o", str(tmp_path / "q.png")]) == 2
    assert "--lam must be in 0..1000, got 1e+38" in capsys.readouterr().err


def test_bf16_search_fills_like_fp32_and_keeps_known_pixels():
    torch.manual_seed(0)
    flow = genzoo.build("realnvp", data_shape=(1, 8, 8), width=8, n_blocks=1, n_scales=1)
    y = torch.rand(4, 1, 8, 8) * 0.8 + 0.1
    mask = make_mask("center", (1, 8, 8))
    out = {p: inpaint(flow, y, mask, steps=20, restarts=1, blend="mask", precision=p) for p in ("fp32", "bf16")}
    for o in out.values():
        known = mask.bool().expand_as(y)
        assert torch.equal(o["filled"][known], y[known])  # known pixels untouched
        assert o["filled"].dtype == torch.float32 and torch.isfinite(o["filled"]).all()
    gap = (out["bf16"]["generated"] - out["fp32"]["generated"]).abs().mean()
    assert gap < 0.05, gap  # the same search, to bf16 rounding


@pytest.mark.parametrize("method", ["search", "posterior"])
@pytest.mark.parametrize("name", ["realnvp", "vae"])
def test_fill_never_reads_the_hidden_pixels(name, method):
    torch.manual_seed(0)
    kw = {"width": 8, "n_blocks": 1, "n_scales": 1} if name == "realnvp" else {"latent_dim": 3, "hidden": (16,)}
    model = genzoo.build(name, data_shape=(1, 8, 8), **kw)
    y = torch.rand(2, 1, 8, 8) * 0.8 + 0.1
    mask = make_mask("center", (1, 8, 8))
    other = y.clone()
    other[:, :, 2:6, 2:6] = 1 - other[:, :, 2:6, 2:6]  # different hidden pixels, the same known ones

    def fill(t):
        g = torch.Generator().manual_seed(1)
        if method == "search":
            return inpaint(model, t, mask, steps=5, restarts=2, blend="mask", generator=g)
        return posterior_fill(model, t, mask, n_samples=600, generator=g)

    assert torch.equal(fill(y)["generated"], fill(other)["generated"])


def test_bench_nearest_neighbour_baseline_matches_brute_force():
    from genzoo.bench.inpaint_mnist import nearest_fill

    g = torch.Generator().manual_seed(0)
    train, y = torch.rand(3000, 1, 6, 6, generator=g), torch.rand(40, 1, 6, 6, generator=g)
    mask = (torch.rand(40, 1, 6, 6, generator=g) > 0.5).float()
    expected = []
    for yi, mi in zip(y.flatten(1), mask.flatten(1)):
        j = int((((train.flatten(1) - yi) * mi) ** 2).sum(1).argmin())
        expected.append(mi * yi + (1 - mi) * train.flatten(1)[j])
    torch.testing.assert_close(nearest_fill(train, y, mask, chunk=700), torch.stack(expected).reshape(y.shape))


def test_cli_defaults_are_the_library_defaults():
    """The CLI leaves the tuning flags unset (so that one given to the other method is refused, not ignored),
    fills them from the library's constants, and its help names those."""
    import inspect

    from genzoo.apps.inpaint import LAMBDA, RESTARTS, STEPS
    from genzoo.cli import _parser

    args = _parser().parse_args(["inpaint", "RUN"])
    assert (args.steps, args.restarts, args.lam, args.samples, args.sigma, args.precision) == (None,) * 6
    defaults = inspect.signature(inpaint).parameters
    assert (STEPS, RESTARTS, LAMBDA) == tuple(defaults[k].default for k in ("steps", "restarts", "lam"))
    assert SAMPLES == inspect.signature(posterior_fill).parameters["n_samples"].default
    helps = {a.dest: a.help for a in _parser().commands["inpaint"]._actions}
    for dest, value in (("steps", STEPS), ("restarts", RESTARTS), ("lam", LAMBDA), ("samples", f"{SAMPLES:,}")):
        assert f"(default {value})" in helps[dest]


# -- the posterior mean by importance sampling -----------------------------------------------------------
def test_posterior_mean_matches_the_gaussian_conditional_in_closed_form():
    """Draws of N(mu, S) in 5-D, 2 coordinates known through noise sigma: the importance-sampling average
    equals mu + S[:, k] (S[k, k] + sigma^2 I)^-1 (y_k - mu_k), the exact posterior mean."""
    g = torch.Generator().manual_seed(0)
    L = torch.randn(5, 5, generator=g, dtype=torch.float64) / 2
    cov, mu = L @ L.T + 0.1 * torch.eye(5, dtype=torch.float64), torch.randn(5, generator=g, dtype=torch.float64)
    bank = mu + torch.randn(400_000, 5, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(cov).T  # (S, 5)
    y = mu + torch.randn(3, 5, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(cov).T
    mask = torch.tensor([1., 0., 1., 0., 0.], dtype=torch.float64).expand(3, 5)
    k, sigma = [0, 2], 0.5
    gain = cov[:, k] @ torch.linalg.inv(cov[k][:, k] + sigma ** 2 * torch.eye(2, dtype=torch.float64))  # (5, 2)
    exact = mu + (y[:, k] - mu[k]) @ gain.T                                                              # (3, 5)
    got = posterior_mean(bank, y, mask, sigma).double()
    torch.testing.assert_close(got, exact, atol=0.03, rtol=0)
    ess = effective_sample_size(bank, y, mask, sigma)
    assert ((ess > 1) & (ess < len(bank))).all()


def test_posterior_mean_agrees_with_explicit_weights_in_chunks():
    g = torch.Generator().manual_seed(1)
    bank, y = torch.rand(500, 12, generator=g), torch.rand(7, 12, generator=g)
    mask = (torch.rand(7, 12, generator=g) > 0.4).float()
    expected = []
    for yi, mi in zip(y, mask):
        logw = -(((bank - yi) * mi) ** 2).sum(1) / (2 * 0.2 ** 2)
        expected.append(torch.softmax(logw, 0) @ bank)
    torch.testing.assert_close(posterior_mean(bank, y, mask, 0.2, chunk=3), torch.stack(expected))


def test_chosen_sigma_fills_fresh_draws_better_than_the_grid_ends():
    """sigma is chosen on held-out draws of the model; on fresh draws it must beat the extremes of the grid."""
    model = LinearGenerator()
    g = torch.Generator().manual_seed(2)
    bank, fresh = model_draws(model, 3000, g), model_draws(model, 300, g)          # (S, 16), (300, 16)
    mask = make_mask("random:0.5", (1, 4, 4), g).flatten(1)
    grid = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
    s = choose_sigma(bank, mask, grid)
    assert s not in (grid[0], grid[-1])

    def err(sig):
        return float((((posterior_mean(bank, fresh, mask.expand_as(fresh), sig) - fresh) * (1 - mask)) ** 2).mean())

    assert err(s) < min(err(grid[0]), err(grid[-1]))


def test_posterior_fill_keeps_known_pixels_and_beats_the_mean_of_the_draws():
    model = LinearGenerator()
    g = torch.Generator().manual_seed(3)
    y = model_draws(model, 50, g).reshape(50, 1, 4, 4)                      # images the model makes
    mask = make_mask("center", (1, 4, 4))
    out = posterior_fill(model, y, mask, n_samples=5000, generator=g)
    known = mask.bool().expand_as(y)
    assert torch.equal(out["filled"][known], y[known]) and out["sigma"] > 0
    bank_mean = model_draws(model, 5000, g).mean(0).reshape(1, 4, 4)
    mean_fill = mask * y + (1 - mask) * bank_mean
    assert float(psnr(out["filled"], y, 1 - mask).mean()) > float(psnr(mean_fill, y, 1 - mask).mean()) + 3
    with pytest.raises(ConfigError, match="sigma"):
        posterior_fill(model, y, mask, sigma=0.0, n_samples=500)
    with pytest.raises(ConfigError, match="at least 400"):
        posterior_fill(model, y, mask, n_samples=100)


def test_cli_inpaint_posterior_method(tmp_path, capsys):
    rd = tmp_path / "flow"
    assert main(["train", "realnvp", "--steps", "20", "--run-dir", str(rd), "--no-progress",
                 "--set", "width=8", "--set", "n_blocks=1", "--set", "n_scales=1"]) == 0
    capsys.readouterr()
    assert main(["inpaint", str(rd), "--test-index", "0", "1", "--samples", "600"]) == 0  # auto: a flow's posterior
    out = capsys.readouterr().out
    assert "posterior mean from 600 draws" in out and "mask-blended" in out and "PSNR" in out
    assert main(["inpaint", str(rd), "--test-index", "0", "--method", "search", "--steps", "3", "--restarts", "1"]) == 0
    assert "G(z*), poisson-blended" in capsys.readouterr().out
    assert main(["inpaint", str(rd), "--samples", "10"]) == 2
    assert "--samples" in capsys.readouterr().err
    assert main(["inpaint", str(rd), "--test-index", "0", "--samples", "400", "--sigma", "1e300"]) == 0  # was an OverflowError


def test_inpaint_refuses_images_and_masks_outside_their_range():
    torch.manual_seed(0)
    model = genzoo.build("gan", data_shape=(1, 4, 4), latent_dim=2, hidden=(8,))
    y, mask = torch.rand(2, 1, 4, 4), (torch.rand(1, 1, 4, 4) > 0.5).float()
    for args, needle in (((y * 255, mask), "must lie in \\[0, 1\\]"),
                         ((y, mask * 255), r"mask values must be 0 or 1 \(1 = known, 0 = hole\) \(8-bit masks: divide"),
                         ((y, mask * 0.7), r"mask values must be 0 or 1 \(1 = known, 0 = hole\)$"),  # soft: a138 F5
                         ((y, torch.ones(3, 1, 4, 4)), "does not fit images")):
        for fill in (inpaint, posterior_fill):
            with pytest.raises(DataError, match=needle):
                fill(model, *args)
    with pytest.raises(ConfigError, match="steps >= 1"):
        inpaint(model, y, mask, steps=-1)
    with pytest.raises(ConfigError, match="sigma must be > 0"):
        posterior_fill(model, y, mask, sigma=float("nan"))


def test_a_search_that_diverges_from_every_start_is_an_error():
    """A NaN code was kept as the 'best' start and drawn, or failed in the prior's log-density."""
    model = LinearGenerator()
    y = torch.rand(2, 1, 4, 4)
    mask = make_mask("center", (1, 4, 4))
    with torch.no_grad():  # a generator gone NaN: every start's loss is NaN, as after an overflow
        next(model.parameters()).fill_(float("nan"))
    with pytest.raises(genzoo.ConfigError, match=r"diverged .* for image\(s\) 0, 1: lower lam"):
        inpaint(model, y, mask, lam=0.0, steps=3, restarts=2, generator=torch.Generator().manual_seed(0))
    with pytest.raises(genzoo.ConfigError, match="0 <= lam <= 1000"):
        inpaint(model, y, mask, lam=1e4)


@pytest.mark.parametrize("name", ["gan", "wgan", "fgan"])
def test_search_on_a_float64_adversarial_model(name):
    """A float64 GAN (genzoo.save of a .double() model) crashed the search: its discriminator got float32 images."""
    torch.manual_seed(0)
    model = genzoo.build(name, data_shape=(1, 8, 8), latent_dim=4).double()
    y = torch.rand(2, 1, 8, 8) * 0.8 + 0.1
    mask = make_mask("center", (1, 8, 8))
    out = inpaint(model, y, mask, steps=3, restarts=1, blend="mask")
    assert torch.isfinite(out["filled"]).all() and torch.equal(out["filled"][mask.bool().expand_as(y)],
                                                                 y[mask.bool().expand_as(y)])


def test_inpaint_nits_empty_mask_picture_cap_and_one_square_of_the_draws(tmp_path, capsys, monkeypatch):
    """--mask "" was read as the current folder ("mask image : cannot be read"); 10,000 --test-index images made
    one panel 580,000 pixels wide; the posterior squared its whole bank of draws again for every 256 images."""
    import genzoo.apps.inpaint as ip

    with pytest.raises(ConfigError, match="unknown mask ''"):
        make_mask("", (1, 8, 8))
    rd = tmp_path / "r"
    assert main(["train", "vae", "--steps", "2", "--set", "data.n=64", "--run-dir", str(rd), "--no-progress"]) == 0
    assert main(["inpaint", str(rd), "--test-index", *["0"] * 2501, "--no-progress", "-o", str(tmp_path / "p.png")]) == 2
    assert "at most 2,500" in capsys.readouterr().err and not (tmp_path / "p.png").exists()
    squares = []
    real = torch.Tensor.square
    monkeypatch.setattr(torch.Tensor, "square", lambda t: squares.append(t.shape) or real(t))
    bank = torch.rand(50, 64)
    ip._posterior(bank, torch.rand(600, 64), torch.ones(600, 64), sigma=0.5, chunk=256)  # 3 chunks
    assert squares.count(bank.shape) == 1


def test_a_dequantized_flows_search_starts_from_its_code_of_the_image_at_its_levels_centres():
    """A flow of dequantized data started its search from its code of the stored image, whose 0s and 1s it never saw:
    RealNVP's logit put that code far off the prior (a 30-step digits run: 5.48 dB by search from it, 9.84 dB from
    the levels' centres, 16 test digits, centre mask, 100 steps)."""
    from genzoo.data import load_dataset
    from genzoo.data.transforms import level_centres

    test = load_dataset("digits", "test", n=4)
    model = genzoo.build("realnvp", data_shape=(1, 8, 8))
    model.setup(load_dataset("digits", n=200, dequantize=True).x, torch.Generator().manual_seed(0))
    model.eval()  # (inpaint's mode, for the encodes below)
    mask = torch.stack([make_mask("center", (1, 8, 8), torch.Generator().manual_seed(i)) for i in range(4)])
    known = (mask * test.x).flatten(1).sum(1) / mask.flatten(1).sum(1)                 # (4,)
    start = mask * test.x + (1 - mask) * known.reshape(4, 1, 1, 1)                      # (4, 1, 8, 8)
    z = {lv: inpaint(model, test.x, mask, steps=1, restarts=1, lr=1e-12, levels=lv)["z"] for lv in (None, 17)}
    with torch.no_grad():
        assert torch.allclose(z[17], model.encode(level_centres(start, 17)).flatten(1), atol=1e-4)
        assert torch.allclose(z[None], model.encode(start).flatten(1), atol=1e-4)
    assert (z[None].norm(dim=1) > 1.5 * z[17].norm(dim=1)).all()  # (untrained; a 30-step run: 150x)


def test_a_mask_of_another_size_keeps_thin_holes_and_says_it_was_resized(tmp_path, capsys, monkeypatch):
    """A mask PNG of another size was resized silently with NEAREST: a 2-pixel hole of a 28x28 mask fell between the
    sampled columns of an 8x8 model, and the error said the mask 'leaves nothing to fill'; a missing mask.tif was an
    'unknown mask'."""
    a = np.full((28, 28), 255, np.uint8)
    a[:, 13:15] = 0  # columns 13-14 of 28: inside model columns 3 and 4 (3.5 source columns each)
    Image.fromarray(a).save(tmp_path / "thin.png")
    with pytest.warns(GenZooWarning, match=r"thin.png: 28x28 made 8x8, the model's images \(a pixel is missing where "
                                           r"any part of it is\)$"):
        m = make_mask(str(tmp_path / "thin.png"), (1, 8, 8))
    assert (m[0, :, 3:5] == 0).all() and float(m[0, :, :3].min()) == 1 and float(m[0, :, 5:].min()) == 1
    wide = np.full((2, 3), 255, np.uint8)
    wide[0, 1] = 0  # upscaled 3x3 columns to 8: model columns touching source column 1 (1/3 to 2/3 of the width)
    Image.fromarray(wide).save(tmp_path / "small.png")
    with pytest.warns(GenZooWarning, match="3x2 made 8x8.*aspect ratio not kept"):
        m = make_mask(str(tmp_path / "small.png"), (1, 8, 8))
    assert m[0, :4].min(0).values.tolist() == [1, 1, 0, 0, 0, 0, 1, 1] and float(m[0, 4:].min()) == 1
    Image.fromarray(np.full((28, 28), 255, np.uint8)).save(tmp_path / "white.png")
    with pytest.warns(GenZooWarning), pytest.raises(ConfigError, match=r"white.png' \(28x28, resized to 8x8\) leaves "
                                                                       "nothing to fill"):
        make_mask(str(tmp_path / "white.png"), (1, 8, 8))
    with pytest.raises(DataError, match=r"mask image .*mask.tif: cannot be read \(FileNotFoundError"):
        make_mask(str(tmp_path / "mask.tif"), (1, 8, 8))
    rd = tmp_path / "r"  # the command line says so too, as it does of an --image it resizes
    assert main(["train", "vae", "--steps", "2", "--set", "data.n=64", "--run-dir", str(rd), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["inpaint", str(rd), "--mask", str(tmp_path / "thin.png"), "--test-index", "0", "--steps", "1",
                 "--restarts", "1", "--no-progress", "-o", str(tmp_path / "p.png")]) == 0
    printed = capsys.readouterr()
    assert "genzoo: warning: mask " in printed.err
    # how much the mask leaves missing, so that one drawn the other way round (white = hole) shows (a107 nit)
    with pytest.warns(GenZooWarning, match="made 8x8"):
        missing = int((make_mask(str(tmp_path / "thin.png"), (1, 8, 8)) == 0).sum())
    assert f"thin.png: {missing} of 64 pixels missing ({100 * missing / 64:.0f}%; white = known" in printed.out
    # a keyword is no file, whatever the working folder holds: a file named center there was described (a138 F4)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "center").write_bytes(b"")
    assert main(["inpaint", str(rd), "--mask", "center", "--test-index", "0", "--steps", "1", "--restarts", "1",
                 "--no-progress", "-o", str(tmp_path / "p.png")]) == 0
    assert "pixels missing" not in capsys.readouterr().out


def test_the_center_mask_is_centred_for_every_size():
    """The hole started at H // 4: off centre for H = 4k + 3 (7x7: one row above it, three below; 3x3: the top-left
    pixel)."""
    for H in range(2, 41):
        for W in range(2, 41):
            hole = make_mask("center", (1, H, W))[0] == 0
            rows, cols = hole.any(1).nonzero().flatten(), hole.any(0).nonzero().flatten()
            assert int(hole.sum()) == (H // 2) * (W // 2) and len(rows) == H // 2 and len(cols) == W // 2
            assert abs(int(rows[0]) - (H - 1 - int(rows[-1]))) <= 1 and abs(int(cols[0]) - (W - 1 - int(cols[-1]))) <= 1
    for n in (8, 28):  # the sizes of the digits and MNIST: the same mask as before
        old = torch.ones(1, n, n)
        old[:, n // 4:n // 4 + n // 2, n // 4:n // 4 + n // 2] = 0
        assert torch.equal(make_mask("center", (1, n, n)), old)
    assert make_mask("center", (1, 3, 3))[0].int().tolist() == [[1, 1, 1], [1, 0, 1], [1, 1, 1]]


def test_a_mask_of_black_ink_on_transparency_or_of_greys_is_named_as_a_mask(tmp_path):
    """A hole layer saved as black on a transparent background got an image's advice ('save it as light ink on
    black'); grey mask pixels were thresholded at 128 without a word."""
    ink = np.zeros((8, 8, 4), np.uint8)
    ink[2:6, 2:6, 3] = 255  # the holes painted black, the rest transparent: every pixel black or transparent
    Image.fromarray(ink, mode="RGBA").save(tmp_path / "ink.png")
    with pytest.raises(ConfigError, match=r"^mask .*ink.png: every pixel is black or transparent \(missing\); "
                                          r"white = known$"):
        make_mask(str(tmp_path / "ink.png"), (1, 8, 8))
    soft = np.full((8, 8), 255, np.uint8)
    soft[:, :4], soft[:, 3:5] = 0, (100, 200)  # a soft edge: 100 missing, 200 known
    Image.fromarray(soft).save(tmp_path / "soft.png")
    with pytest.warns(GenZooWarning, match="soft.png: grey values thresholded at 128"):
        m = make_mask(str(tmp_path / "soft.png"), (1, 8, 8))
    assert m[0, 0].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]


# -- audit 135 (mutation testing): each test below kills a mutant the suite let through ----------


class _ConstGenerator(torch.nn.Module):
    """x = sigmoid(z_0) in every pixel of a 1x4x4 image: its best fit of known pixels under L1 is their median."""

    name, data_shape, latent_dim = "const", (1, 4, 4), 1

    def __init__(self):
        super().__init__()
        self._p = torch.nn.Parameter(torch.zeros(1))

    @property
    def device(self):
        return self._p.device

    @property
    def prior(self):
        return Independent(Normal(torch.zeros(1), torch.ones(1)), 1)

    def generate(self, z):
        return torch.sigmoid(z[:, :1]).reshape(-1, 1, 1, 1).expand(-1, 1, 4, 4)


def _median_case():
    y = torch.full((1, 1, 4, 4), 0.2)
    y[0, 0, 0, :] = 0.9              # 4 of the 12 known pixels at 0.9, 8 at 0.2: median 0.2, mean 0.433
    mask = torch.ones(1, 1, 4, 4)
    mask[..., 1:3, 1:3] = 0          # the 2x2 centre missing; every known pixel's 7x7 window weighs 4/49
    return y, mask


def test_inpaints_contextual_loss_is_l1_so_the_fill_is_the_known_pixels_median():
    """Yeh et al. eq. 2: L_c = ||W (G(z) - y)||_1. With equal weights and G(z) one grey level, the L1 optimum is the
    known pixels' median (0.2), the L2 one their mean (0.43)."""
    from genzoo.apps.inpaint import inpaint

    y, mask = _median_case()
    out = inpaint(_ConstGenerator(), y, mask, lam=0.0, steps=300, restarts=2, blend="mask",
                  generator=torch.Generator().manual_seed(0))
    assert float(out["generated"].mean()) == pytest.approx(0.2, abs=0.03)


def test_inpaint_keeps_the_restart_with_the_lowest_loss():
    """inpaint: 'several random starts; the lowest final loss wins'. With one step per start, the fill of 8 starts
    is at least as close (in the L1 contextual loss) as that of the first start alone, drawn from the same stream."""
    from genzoo.apps.inpaint import context_weights, inpaint

    y, mask = _median_case()
    w = context_weights(mask)

    def loss(k):
        out = inpaint(_ConstGenerator(), y, mask, lam=0.0, steps=1, restarts=k, blend="mask",
                      generator=torch.Generator().manual_seed(1))
        return float((w * (out["generated"] - y)).abs().sum())

    assert loss(8) < loss(1)


def test_inpaints_gan_realism_term_is_log_of_one_minus_d():
    """_prior_loss for a GAN is Yeh et al.'s eq. 3, log(1 - D(G(z))), minimised towards images D calls real:
    against sigmoid of the discriminator's logit, computed by hand."""
    from genzoo.apps.inpaint import _prior_loss

    torch.manual_seed(0)
    gan = genzoo.build("gan", data_shape=(2,)).eval()
    x = torch.randn(6, 2)
    with torch.no_grad():
        d = torch.sigmoid(gan.discriminator(gan._to_net(x)).reshape(-1))
        assert torch.allclose(_prior_loss(gan, None, x), torch.log1p(-d), atol=1e-6)


def test_inpaints_flow_prior_is_nats_per_dimension():
    """_prior_loss of a flow: -log p(x) per dimension (module docstring), so lambda weighs it as for a 1-D term."""
    from genzoo.apps.inpaint import _prior_loss

    torch.manual_seed(0)
    nice = genzoo.build("nice", data_shape=(1, 2, 2), hidden=(8,)).eval()
    x = torch.rand(3, 1, 2, 2)
    with torch.no_grad():
        assert torch.allclose(_prior_loss(nice, None, x), -nice.log_prob(x) / 4)
