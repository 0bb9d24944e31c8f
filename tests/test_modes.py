import math

import pytest
import torch

from genzoo.data.toy import grid, ring
from genzoo.errors import DataError
from genzoo.eval.modes import mode_coverage


def test_true_samples_score_all_modes_and_the_2d_ceiling():
    for d in (ring(), grid()):
        x = d.sample(20000, torch.Generator().manual_seed(0))
        r = mode_coverage(x, d.centres, d.std)
        assert r["modes"] == r["n_modes"] == len(d.centres)
        assert r["high_quality"] == pytest.approx(1 - math.exp(-4.5), abs=0.005)  # chi(2) mass within 3 std
        assert r["reverse_kl"] < 0.01


def test_collapse_to_one_mode_gives_log_k():
    d = ring()
    x = d.centres[3].float() + 0.005 * torch.randn(1000, 2)
    r = mode_coverage(x, d.centres, d.std)
    assert (r["modes"], r["high_quality"]) == (1, 1.0)
    assert r["reverse_kl"] == pytest.approx(math.log(8))
    assert r["counts"][3] == 1000


def test_hand_counted_histogram():
    c = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = torch.tensor([[0.1, 0.0], [0.0, 0.2], [10.0, 0.25], [5.0, 5.0], [float("nan"), 0.0]])
    r = mode_coverage(x, c, std=0.1)  # radius 0.3: the first three are high quality
    assert r["counts"] == [2, 1, 0] and r["modes"] == 2 and r["high_quality"] == pytest.approx(3 / 5)
    p = torch.tensor([2 / 3, 1 / 3])
    assert r["reverse_kl"] == pytest.approx(float((p * (p * 3).log()).sum()))


def test_the_reverse_kl_is_to_the_mixtures_weights():
    """On a 0.9/0.1 mixture the true distribution scored 0.37 against uniform weights and a 50/50 model 0."""
    from genzoo.data import load_dataset

    d = load_dataset("mixture1d", "test", weights=(0.9, 0.1), n=20_000).density
    x = d.sample(20_000, torch.Generator().manual_seed(0))
    truth = mode_coverage(x, d.centres, d.std, weights=d.weights)
    assert truth["reverse_kl"] < 0.002 and mode_coverage(x, d.centres, d.std)["reverse_kl"] > 0.3
    c = torch.tensor([[0.0], [10.0]])
    half = mode_coverage(torch.tensor([[0.0], [10.0]]), c, 0.1, weights=torch.tensor([9.0, 1.0]))  # unnormalised
    assert half["reverse_kl"] == pytest.approx(0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1))
    assert mode_coverage(torch.tensor([[10.0]]), c, 0.1, weights=[1.0, 0.0])["reverse_kl"] == math.inf
    with pytest.raises(DataError, match="2 non-negative mode weights"):
        mode_coverage(x, d.centres, d.std, weights=[1.0])


def test_nothing_near_any_mode_and_bad_input():
    d = ring()
    r = mode_coverage(torch.full((10, 2), 5.0), d.centres, d.std)
    assert r["modes"] == 0 and r["high_quality"] == 0 and r["reverse_kl"] == math.inf
    with pytest.raises(DataError, match="dimensions"):
        mode_coverage(torch.zeros(3, 3), d.centres, d.std)
    with pytest.raises(DataError, match="at least one"):
        mode_coverage(torch.zeros(0, 2), d.centres, d.std)


def test_mode_coverage_refuses_meaningless_widths_and_centres():
    x = torch.zeros(5, 2)
    for kwargs in ({"std": -0.1}, {"std": float("nan")}, {"std": 0.1, "threshold": -1.0},
                   {"std": [0.1, float("inf"), 0.1]}):  # an infinite std took every sample into its mode
        with pytest.raises(DataError, match="std > 0 and threshold > 0"):
            mode_coverage(x, torch.zeros(3, 2), **kwargs)
    with pytest.raises(DataError, match="shape \\(K, D\\)"):
        mode_coverage(x, torch.zeros(0, 2), 0.1)


def test_options_are_keywords():
    """The README gave (samples, centres, std, weights=None): weights passed fourth became the threshold and failed
    inside torch ('Boolean value of Tensor ... is ambiguous'). The TypeError is Python's, of the signature: a bare
    ``pytest.raises(TypeError)`` also took one raised inside by a fourth positional parameter (audit 134 F8)."""
    c = torch.tensor([[0.0], [10.0]])
    with pytest.raises(TypeError, match=r"takes 3 positional arguments but 4 were given"):
        mode_coverage(torch.zeros(3, 1), c, 0.1, torch.tensor([0.5, 0.5]))
    with pytest.raises(DataError, match="threshold is a number of stds, got Tensor"):
        mode_coverage(torch.zeros(3, 1), c, 0.1, threshold=torch.tensor([0.5, 0.5]))
    assert mode_coverage(torch.zeros(3, 1), c, 0.1, threshold=2)["modes"] == 1


def test_the_nearest_mode_is_nearest_in_its_own_stds():
    """Audit 94: x = 1 is 10 std from a mode at 0 of std 0.1 and 1 std from a mode at 3 of std 2. The plain nearest
    centre (0) rejected it; PacGAN's metric code measures the distance to each mode in that mode's std. The true
    mixture scored 90% high quality (its ceiling in 1-D is 99.7%)."""
    from genzoo.data.toy import mixture1d

    r = mode_coverage(torch.tensor([[1.0]]), torch.tensor([[0.0], [3.0]]), torch.tensor([0.1, 2.0]))
    assert r["high_quality"] == 1.0 and r["counts"] == [0, 1]
    d = mixture1d(means=(0.0, 3.0), stds=(0.1, 2.0))
    x = d.sample(20_000, torch.Generator().manual_seed(0))
    r = mode_coverage(x, d.centres, d.std)
    assert r["high_quality"] > 0.99 and r["modes"] == 2  # measured 0.9985


def test_one_std_for_all_modes_keeps_the_plain_nearest_centre_bit_for_bit():
    """The ring's and grid's figures (genzoo bench modes) must not move: with equal stds the counts are those of the
    plain nearest centre within 3 std, on samples of the truth and on samples spread well past it."""
    for d in (ring(), grid()):
        g = torch.Generator().manual_seed(1)
        x = d.sample(5000, g)
        x = torch.cat([x, 1.3 * x + 0.05 * torch.randn(x.shape, generator=g, dtype=x.dtype)])
        dist = torch.cdist(x.double(), d.centres.double())  # (N, K)
        near_d, near = dist.min(1)
        good = near_d <= 3 * d.std
        r = mode_coverage(x, d.centres, d.std)
        assert r["counts"] == torch.bincount(near[good], minlength=len(d.centres)).tolist()
        assert r["high_quality"] == int(good.sum()) / len(x)
        per_mode = mode_coverage(x, d.centres, torch.full((len(d.centres),), float(d.std)))  # (K,) equal stds
        assert per_mode == r


def test_non_finite_centres_and_arguments_that_are_not_numbers_give_one_line_errors():
    """Audit 120: a NaN or infinite centre was taken (its cdist column made every sample's nearest distance NaN: 0
    modes, KL inf, even for a sample right on the finite centre), and a str std or samples gave a bare TypeError."""
    x = torch.zeros(3, 2)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(DataError, match="mode centres must be finite, got 1 of 2"):
            mode_coverage(x, torch.tensor([[bad, 0.0], [0.0, 0.0]]), 1.0)
    for args, kwargs, what in (((x, torch.zeros(2, 2), "a"), {}, "std"),
                               (("ab", torch.zeros(2, 2), 1.0), {}, "samples"),
                               ((x, [["a", "b"]], 1.0), {}, "mode centres"),
                               ((x, torch.zeros(2, 2), 1.0), {"weights": "ab"}, "weights")):
        with pytest.raises(DataError, match=f"mode coverage's {what} must be numbers") as e:
            mode_coverage(*args, **kwargs)
        assert "\n" not in str(e.value)
    assert mode_coverage(x, torch.zeros(1, 2), 1.0)["modes"] == 1  # finite: as before
