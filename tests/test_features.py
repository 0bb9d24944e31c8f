"""The shipped digit classifiers, cached reference statistics, and feature_metrics on real images.

Figures measured when the MNIST classifier was shipped (torch 2.13.0 CPU), quoted in the asserts:
FID(first 5,000 training images, 10,000 test images) = 2.10. Against the same 5,000, a random
2,000 of the test images score 2.86; Gaussian blur of sigma 0.5, 1, 1.5, 2 px gives 20.3, 209,
495, 722, and additive noise of std 0.1, 0.2, 0.3, 0.4 (clipped to [0, 1]) gives 12.5, 73.8, 222,
411. (The subset is random because the test set is ordered by writer population: its first 2,000
images alone score 10.6.)
"""

import functools
import hashlib
import json
import math
import os
import re

import pytest
import torch
import torch.nn.functional as F

import genzoo.eval.features as feat
from genzoo.data import load_dataset
from genzoo.errors import CheckpointError, ConfigError, DataError
from genzoo.eval.features import (
    CLASSIFIERS, WEIGHTS_DIR, classifier_info, extract, feature_metrics, load_classifier, reference_stats,
)
from genzoo.eval.fid import class_histogram, feature_stats, frechet_distance, inception_score


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("genzoo-cache")


@pytest.fixture(autouse=True)
def _private_cache(monkeypatch, shared_cache, one_thread):
    """Never write to ~/.cache: every test caches into a temporary folder shared by this module."""
    monkeypatch.setenv("GENZOO_CACHE", str(shared_cache))


@functools.lru_cache(maxsize=1)
def _mnist(root: str) -> dict:
    """Reference statistics of the MNIST test set (cached in the module's folder) and train features."""
    ref = reference_stats("mnist", "test", root)
    train_feats, _ = extract(load_dataset("mnist", "train", root=root, n=5000).x, "mnist")
    return {"ref": ref, "train": train_feats}


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, 1, H, W) images, zero padding."""
    r = math.ceil(3 * sigma)
    t = torch.arange(-r, r + 1.0)
    k = torch.exp(-t**2 / (2 * sigma**2))
    k = k / k.sum()
    x = F.conv2d(x, k.view(1, 1, 1, -1), padding=(0, r))
    return F.conv2d(x, k.view(1, 1, -1, 1), padding=(r, 0))


# -- the shipped classifiers ------------------------------------------------------------------


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_shipped_classifier_record(name):
    info = classifier_info(name)
    weights = WEIGHTS_DIR / f"{name}-classifier.safetensors"
    assert weights.stat().st_size < 2 * 2**20
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == info["weights_sha256"]
    recipe = info["recipe"]
    for key in ("optimizer", "lr", "epochs", "batch_size", "augmentation", "seed"):
        assert key in recipe
    assert info["torch_version"] and info["command"].startswith(f"python -m genzoo.eval.train_classifier {name}")
    model = load_classifier(name)
    assert not model.training
    side = info["architecture"]["image_size"]
    assert model.features(torch.zeros(2, 1, side, side)).shape == (2, info["architecture"]["features"])


def test_mnist_classifier_accuracy(mnist_root):
    ref = _mnist(str(mnist_root))["ref"]
    y = load_dataset("mnist", "test", root=str(mnist_root)).y
    acc = float((ref["probs"].argmax(1) == y).double().mean())
    assert acc >= 0.99
    assert acc == pytest.approx(classifier_info("mnist")["test_accuracy"], abs=1e-3)


def test_digits_classifier_accuracy():
    test = load_dataset("digits", "test")
    _, probs = extract(test.x, "digits")
    acc = float((probs.argmax(1) == test.y).double().mean())
    assert acc == pytest.approx(classifier_info("digits")["test_accuracy"], abs=0.005)
    assert acc >= 0.97


# -- FID on real images -----------------------------------------------------------------------


def test_fid_train_vs_test_near_zero_and_rising_with_blur_and_noise(mnist_root):
    m = _mnist(str(mnist_root))
    train = m["train"]                                             # (5000, 128)
    # 5,000 training images against the cached statistics of the 10,000 test images: measured 2.10
    base = frechet_distance(*feature_stats(train), m["ref"]["mu"], m["ref"]["sigma"])
    assert 0 <= base < 3.5

    g = torch.Generator().manual_seed(0)
    x = load_dataset("mnist", "test", root=str(mnist_root)).x[torch.randperm(10_000, generator=g)[:2000]]
    noise = torch.randn(x.shape, generator=g)

    def fid_to_train(images: torch.Tensor) -> float:
        return frechet_distance(*feature_stats(train), *feature_stats(extract(images, "mnist")[0]))

    clean = fid_to_train(x)
    blurred = [clean] + [fid_to_train(_blur(x, s).clamp(0, 1)) for s in (0.5, 1.0, 1.5, 2.0)]
    noised = [clean] + [fid_to_train((x + s * noise).clamp(0, 1)) for s in (0.1, 0.2, 0.3, 0.4)]
    assert clean < 5
    assert all(a < b for a, b in zip(blurred, blurred[1:])), blurred
    assert all(a < b for a, b in zip(noised, noised[1:])), noised
    assert blurred[1] > 4 * clean and noised[1] > 2 * clean


# -- predictions: IS and the class histogram ---------------------------------------------------


def test_inception_score_and_histogram_of_real_and_collapsed_sets(mnist_root):
    probs = _mnist(str(mnist_root))["ref"]["probs"]                # (10000, 10)
    y = load_dataset("mnist", "test", root=str(mnist_root)).y
    is_real, _ = inception_score(probs)
    assert 9.5 < is_real <= 10.0                                    # measured 9.78
    hist = class_histogram(probs)
    assert hist.sum() == pytest.approx(1.0) and bool((hist > 0.08).all() and (hist < 0.12).all())

    ones = probs[y == 1]                                            # a "generator" that only draws 1s
    assert inception_score(ones)[0] < 1.2
    assert class_histogram(y[y == 1]).tolist() == [0.0, 1.0] + [0.0] * 8
    assert class_histogram(ones)[1] > 0.99


# -- cached reference statistics ---------------------------------------------------------------


def test_reference_stats_cache_is_written_atomically_and_read_back(tmp_path, monkeypatch):
    monkeypatch.setenv("GENZOO_CACHE", str(tmp_path))

    def crash(*args, **kwargs):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as mp:                               # the rename fails: nothing left behind
        mp.setattr(os, "replace", crash)
        with pytest.warns(UserWarning, match="could not cache"):
            first = reference_stats("digits", "test")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []

    first = reference_stats("digits", "test")
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) == 1 and files[0].suffix == ".safetensors" and files[0].parent == tmp_path / "reference"
    assert first["features"].shape == (300, 64) and first["probs"].shape == (300, 10)
    assert first["sigma"].shape == (64, 64) and first["mu"].dtype == torch.float64

    def no_extract(*args, **kwargs):
        raise AssertionError("the cache should have been read")

    monkeypatch.setattr(feat, "extract", no_extract)
    second = reference_stats("digits", "test")
    assert set(second) == set(first) and all(torch.equal(first[k], second[k]) for k in first)

    files[0].write_bytes(files[0].read_bytes()[:100])               # truncated: recomputed, not trusted
    monkeypatch.undo()
    monkeypatch.setenv("GENZOO_CACHE", str(tmp_path))
    third = reference_stats("digits", "test")
    assert torch.equal(third["features"], first["features"])
    reference_stats("digits", "valid")                              # other data: another key
    assert len([p for p in tmp_path.rglob("*") if p.is_file()]) == 2


# -- feature_metrics ---------------------------------------------------------------------------


def test_feature_metrics_digits_real_and_degraded():
    real = load_dataset("digits", "test").x
    noisy = (real + 0.3 * torch.randn(real.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    same = feature_metrics(real, "digits", kid_subset_size=100, progress=False)
    worse = feature_metrics(noisy, "digits", kid_subset_size=100, progress=False)
    expected = {"fid", "kid", "kid_std", "kid_subsets", "kid_subset_size", "precision", "recall", "density", "coverage",
                "is", "is_std", "is_splits", "class_histogram", "n_fake", "n_real", "real_binarized", "classifier",
                "classifier_accuracy", "k"}
    assert set(same) == expected and same["k"] == 5                 # the k-NN figures' k is recorded
    assert (same["kid_subsets"], same["kid_subset_size"]) == (100, 100)   # min(100 asked, half of 300)
    json.dumps(same)                                                # plain Python values only
    assert same["fid"] == pytest.approx(0, abs=1e-6) and same["density"] == pytest.approx(1.0)
    assert same["real_binarized"] is False                          # grey test images
    assert same["classifier"] == "digits" and same["classifier_accuracy"] == classifier_info("digits")["test_accuracy"]
    assert worse["fid"] > 10 and worse["kid"] > same["kid"] and worse["precision"] < same["precision"]
    assert len(same["class_histogram"]) == 10 and sum(same["class_histogram"]) == pytest.approx(1.0)


def test_feature_metrics_mnist_subsets(mnist_root):
    _mnist(str(mnist_root))                                         # the test statistics are cached
    train = load_dataset("mnist", "train", root=str(mnist_root), n=1000).x
    r = feature_metrics(train, "mnist", root=str(mnist_root), n_real=2000, kid_subsets=10,
                        kid_subset_size=500, progress=False)
    assert r["n_fake"] == 1000 and r["n_real"] == 2000
    assert r["classifier_accuracy"] >= 0.99
    assert r["precision"] > 0.85 and r["recall"] > 0.85 and r["coverage"] > 0.6 and 0.7 < r["density"] < 1.3
    assert r["fid"] < 10 and abs(r["kid"]) < 3 * r["kid_std"] + 1.0
    assert 9 < r["is"] <= 10


def test_eval_speed_bench_times_the_same_computation_as_the_public_calls():
    """`genzoo bench eval-speed` times feature_metrics' steps one by one: they must give its numbers."""
    from genzoo.bench.eval_speed import time_evaluation
    from genzoo.eval.parzen import parzen_log_prob

    train, test = load_dataset("digits", "train").x[:400], load_dataset("digits", "test").x
    stages, staged, public = time_evaluation(train, test, "digits", None, sigma=0.2, kid_subsets=5,
                                             kid_subset_size=100)
    assert [label for label, _ in stages][:2] == ["reference features of the test set, empty cache",
                                                  "reference features of the test set, from the cache"]
    assert len(stages) == 8 and all(s >= 0 for _, s in stages)
    for key, value in staged.items():
        assert value == pytest.approx(public[key], rel=1e-12, abs=1e-12), key
    assert public["parzen"] == pytest.approx(float(parzen_log_prob(test, train, 0.2).mean()))
    assert public["fid"] < 10 and public["precision"] > 0.8                  # real digits against real digits
    assert set(public["seconds"]) == {"feature_metrics", "parzen"}


@pytest.mark.parametrize("fake,name,error,needle", [
    (torch.rand(10, 1, 28, 28), "digits", DataError, "shape (N, 1, 8, 8), got (10, 1, 28, 28)"),
    (torch.rand(10, 3, 8, 8), "digits", DataError, "shape (N, 1, 8, 8)"),
    (255 * torch.rand(10, 1, 8, 8), "digits", DataError, "values in [0, 1]"),
    (torch.full((10, 1, 8, 8), float("nan")), "digits", DataError, "NaN"),
    (torch.rand(4, 1, 8, 8), "digits", DataError, "more than k = 5 fake images"),
    (torch.rand(5, 1, 8, 8), "digits", DataError, "pr and dc need more than k = 5 fake images, got 5"),
    (torch.rand(10, 1, 8, 8), "digts", ConfigError, "did you mean 'digits'"),
])
def test_feature_metrics_errors_are_one_line(fake, name, error, needle):
    with pytest.raises(error) as e:
        feature_metrics(fake, name, progress=False)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_feature_metrics_without_pr_or_dc_take_fewer_than_k_images():
    """The k-NN check stopped FID, KID and IS of 3 images (they need 2), citing a k they do not use."""
    x = load_dataset("digits", "test").x
    r = feature_metrics(x[:3], "digits", which=["fid"], progress=False)
    assert r["fid"] > 0 and r["n_fake"] == 3 and "precision" not in r
    assert feature_metrics(x[:2], "digits", which=["kid", "is"], kid_subsets=1, progress=False)["kid_subset_size"] == 2
    with pytest.raises(DataError, match="at least 2 fake images, got 1"):
        feature_metrics(x[:1], "digits", which=["fid"], progress=False)
    with pytest.raises(DataError, match="more than k = 5 real images, got 5"):
        feature_metrics(x[:50], "digits", which=["fid", "dc"], n_real=5, progress=False)
    assert feature_metrics(x[:50], "digits", which=["fid"], n_real=2, progress=False)["n_real"] == 2


def test_precision_of_blank_mnist_images_is_high_as_the_readme_warns(mnist_root):
    """A documented property, not a wish: blank images fall inside the large k-NN balls of a few faint real digits,
    so precision (and density) stay high while recall and coverage show the failure (README, feature metrics)."""
    _mnist(str(mnist_root))                                         # the test statistics are cached
    r = feature_metrics(torch.zeros(100, 1, 28, 28), "mnist", root=str(mnist_root), which=["pr", "dc"], progress=False)
    assert r["precision"] > 0.9 and 0.3 < r["density"] < 1.0
    assert r["recall"] < 0.01 and r["coverage"] < 0.01 and max(r["class_histogram"]) == 1.0


def test_weights_that_do_not_match_their_record_are_refused(tmp_path, monkeypatch):
    """New weights beside an old record (a retraining whose record was not written) were loaded silently."""
    for suffix in (".safetensors", ".json"):
        (tmp_path / f"digits-classifier{suffix}").write_bytes((WEIGHTS_DIR / f"digits-classifier{suffix}").read_bytes())
    monkeypatch.setattr(feat, "WEIGHTS_DIR", tmp_path)
    assert not load_classifier("digits").training                  # an intact pair loads
    record = json.loads((tmp_path / "digits-classifier.json").read_text())
    (tmp_path / "digits-classifier.json").write_text(json.dumps({**record, "weights_sha256": "0" * 64}))
    with pytest.raises(CheckpointError, match="is not the classifier its record digits-classifier.json describes"):
        load_classifier("digits")


def test_feature_metrics_option_errors():
    with pytest.raises(ConfigError, match="k must be an integer >= 1"):
        feature_metrics(torch.rand(10, 1, 8, 8), "digits", k=0)
    with pytest.raises(ConfigError, match="kid_subset_size"):
        feature_metrics(torch.rand(10, 1, 8, 8), "digits", kid_subset_size=1)


def test_binarized_references_are_the_seeded_draw_eval_scores_under_their_own_cache_key(tmp_path, monkeypatch):
    """Samples of a model of binarized digits were compared with the grey test images: a perfect sampler of the
    binarized data (binarized training images) scored FID 41.8. With binarize=True they meet the test split's
    Bernoulli draw from the seed, the one `genzoo eval --seed` scores a likelihood on, cached apart from the grey."""
    from genzoo.data.transforms import binarize

    monkeypatch.setenv("GENZOO_CACHE", str(tmp_path))
    fake = binarize(load_dataset("digits", "train").x, generator=torch.Generator().manual_seed(1))   # (1297, 1, 8, 8)
    grey = feature_metrics(fake, "digits", which=["fid"], progress=False)
    binary = feature_metrics(fake, "digits", which=["fid"], binarize=True, seed=3, progress=False)
    assert grey["fid"] > 30 and not grey["real_binarized"]
    assert binary["fid"] < 8 and binary["real_binarized"] is True and binary["n_real"] == 300
    names = sorted(p.name for p in (tmp_path / "reference").iterdir())
    assert len(names) == 2 and names[0].startswith("digits-test-") and names[1].startswith("digits-test-binarized-")
    drawn = load_dataset("digits", "test", binarize=True).transformed(torch.Generator().manual_seed(3))
    feats, _ = extract(drawn, "digits")
    monkeypatch.setattr(feat, "extract", lambda *a, **k: pytest.fail("the cache should have been read"))
    assert torch.allclose(reference_stats("digits", "test", binarize=True, seed=3)["features"], feats)


def test_a_missing_classifier_weights_file_is_a_one_line_error_with_a_hint(tmp_path, monkeypatch):
    """A record without its .safetensors gave a bare FileNotFoundError (from the weights' hash in the cache key)."""
    (tmp_path / "digits-classifier.json").write_bytes((WEIGHTS_DIR / "digits-classifier.json").read_bytes())
    monkeypatch.setattr(feat, "WEIGHTS_DIR", tmp_path)
    monkeypatch.setattr(feat, "_weights_sha256", functools.lru_cache(feat._weights_sha256.__wrapped__))  # a fresh cache
    for call in (lambda: feat._weights_sha256("digits"), lambda: load_classifier("digits"),
                 lambda: feature_metrics(torch.rand(10, 1, 8, 8), "digits", which=["fid"], progress=False)):
        with pytest.raises(CheckpointError) as e:
            call()
        msg = str(e.value)
        assert "missing classifier weights" in msg and "digits-classifier.safetensors" in msg and "\n" not in msg
        assert "restore both digits-classifier files" in msg and "python -m genzoo.eval.train_classifier digits" in msg


# -- audit a128 F4, F5, F6, F8: records and weights that do not fit, the cache, extract's batch size -----------


def _copy_classifier(tmp_path, monkeypatch, record: dict | None = None, tensors: dict | None = None) -> dict:
    """The digits classifier's two files in tmp_path, which becomes WEIGHTS_DIR: the record (or ``record``) and the
    weights (or ``tensors``, with the record's weights_sha256 set to theirs). Returns the record written."""
    from safetensors.torch import save as safetensors_bytes

    blob = (WEIGHTS_DIR / "digits-classifier.safetensors").read_bytes()
    if tensors is not None:
        blob = safetensors_bytes(tensors, metadata={"format": "pt"})
    record = {**classifier_info("digits"), "weights_sha256": hashlib.sha256(blob).hexdigest()} if record is None else record
    (tmp_path / "digits-classifier.safetensors").write_bytes(blob)
    (tmp_path / "digits-classifier.json").write_text(json.dumps(record))
    monkeypatch.setattr(feat, "WEIGHTS_DIR", tmp_path)
    return record


_HINT = r"restore both digits-classifier files from genzoo's package or repository, or retrain it \(python -m genzoo\.eval\.train_classifier digits\)"


def test_tensors_that_do_not_fit_the_records_architecture_are_a_checkpoint_error(tmp_path, monkeypatch):
    """Tensors missing from the weights, or of the wrong shape for the record's architecture, gave `genzoo eval` an
    "unexpected RuntimeError: Error(s) in loading state_dict ..." of several lines."""
    from safetensors.torch import load_file

    tensors, info = load_file(WEIGHTS_DIR / "digits-classifier.safetensors"), classifier_info("digits")
    weights = re.escape(str(tmp_path / "digits-classifier.safetensors"))
    does_not_fit = rf"^{weights} does not fit its record digits-classifier\.json"
    _copy_classifier(tmp_path, monkeypatch, tensors={k: v for k, v in tensors.items() if k != "head.bias"})
    with pytest.raises(CheckpointError, match=rf"{does_not_fit} \(missing head\.bias\): {_HINT}$"):
        load_classifier("digits")
    _copy_classifier(tmp_path, monkeypatch, tensors={**tensors, "extra": torch.zeros(1)})
    with pytest.raises(CheckpointError, match=rf"{does_not_fit} \(unexpected extra\): {_HINT}$"):
        load_classifier("digits")
    # the shipped weights (their sha256 in the record) under another architecture
    _copy_classifier(tmp_path, monkeypatch, record={**info, "architecture": {**info["architecture"], "n_classes": 5}})
    with pytest.raises(CheckpointError, match=rf"{does_not_fit} \(shapes head\.bias \(10,\) for \(5,\), "
                                              rf"head\.weight \(10, 64\) for \(5, 64\)\): {_HINT}$"):
        load_classifier("digits")
    _copy_classifier(tmp_path, monkeypatch, record={**info, "architecture": {**info["architecture"], "depth": 3}})
    with pytest.raises(CheckpointError, match=rf"{does_not_fit} \(.*'depth'\): {_HINT}$"):
        load_classifier("digits")


@pytest.mark.parametrize("key", ["dataset", "architecture", "test_accuracy", "weights_sha256"])
def test_a_record_without_a_key_genzoo_reads_is_a_checkpoint_error(tmp_path, monkeypatch, key):
    """A record without `dataset` or `architecture` gave "unexpected KeyError: 'dataset'"; one without `weights_sha256`
    skipped the check of the weights, which then loaded whatever they were."""
    record = {k: v for k, v in classifier_info("digits").items() if k != key}
    _copy_classifier(tmp_path, monkeypatch, record=record)
    msg = rf"^classifier record {re.escape(str(tmp_path / 'digits-classifier.json'))} lacks a valid {key}: {_HINT}$"
    for call in (lambda: load_classifier("digits"),
                 lambda: feature_metrics(torch.rand(10, 1, 8, 8), "digits", which=["fid"], progress=False)):
        with pytest.raises(CheckpointError, match=msg):
            call()


@pytest.mark.parametrize("side", [True, 0, -8, 8.0, "8", None])
def test_a_record_whose_image_size_is_no_size_is_a_checkpoint_error(tmp_path, monkeypatch, side):
    """`"image_size": true` passed the check (a bool is an int to Python) and built 1x1 inputs for the classifier."""
    info = classifier_info("digits")
    _copy_classifier(tmp_path, monkeypatch, record={**info, "architecture": {**info["architecture"], "image_size": side}})
    msg = rf"^classifier record {re.escape(str(tmp_path / 'digits-classifier.json'))} lacks a valid architecture\.image_size"
    with pytest.raises(CheckpointError, match=msg):
        load_classifier("digits")


def test_the_weights_hashed_are_the_weights_loaded(tmp_path, monkeypatch):
    """The sha256 was of one read of the file and the tensors came from a second: weights replaced in between (a
    train_classifier writing into the package) loaded unchecked."""
    from safetensors.torch import load_file, save_file

    _copy_classifier(tmp_path, monkeypatch)
    original = load_file(tmp_path / "digits-classifier.safetensors")
    read = feat._weights_bytes

    def read_then_replaced(name):  # the file is replaced by other weights just after the read that is hashed
        raw = read(name)
        save_file({k: v + 1 for k, v in original.items()}, tmp_path / "digits-classifier.safetensors")
        return raw

    monkeypatch.setattr(feat, "_weights_bytes", read_then_replaced)
    model = load_classifier("digits")
    assert all(torch.equal(v, original[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("damage", ["no features", "10 rows", "other width", "no mu", "NaN sigma", "an extra key"])
def test_a_cached_reference_file_with_missing_or_misshapen_tensors_is_recomputed(tmp_path, monkeypatch, damage):
    """A cache file without `features` gave "unexpected KeyError: 'features'"; one with features cut to 10 rows
    scored KID against 10 images and FID against the stored mu and sigma of all 300."""
    from safetensors.torch import save as safetensors_bytes

    monkeypatch.setenv("GENZOO_CACHE", str(tmp_path))
    first = reference_stats("digits", "test")
    (path,) = (tmp_path / "reference").iterdir()
    stored = {k: v.clone() for k, v in first.items()}
    if damage == "no features":
        del stored["features"]
    elif damage == "10 rows":
        stored["features"] = stored["features"][:10]
    elif damage == "other width":
        stored["features"], stored["mu"], stored["sigma"] = stored["features"][:, :8], stored["mu"][:8], stored["sigma"][:8, :8]
    elif damage == "no mu":
        del stored["mu"]
    elif damage == "NaN sigma":
        stored["sigma"][0, 0] = float("nan")
    else:
        stored["x"] = torch.zeros(1)
    path.write_bytes(safetensors_bytes({k: v.contiguous() for k, v in stored.items()}))
    calls = []
    real_extract = feat.extract
    monkeypatch.setattr(feat, "extract", lambda *a, **k: calls.append(1) or real_extract(*a, **k))
    again = reference_stats("digits", "test")
    assert calls == [1] and set(again) == set(first) and all(torch.equal(first[k], again[k]) for k in first)
    calls.clear()
    reference_stats("digits", "test")                               # rewritten whole: read back, not recomputed
    assert calls == []


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, True, "2"])
def test_extract_batch_size_must_be_a_positive_integer(batch_size):
    """batch_size=0 gave "ValueError: range() arg 3 must not be zero", -1 "torch.cat(): expected a non-empty list"."""
    with pytest.raises(ConfigError, match=rf"^batch_size must be an integer >= 1, got {re.escape(repr(batch_size))}$"):
        extract(torch.rand(3, 1, 8, 8), "digits", batch_size=batch_size)


def test_the_real_subset_and_kids_subsets_are_not_drawn_from_the_binarizations_stream(monkeypatch, tmp_path):
    """After 8788d8c the bounds and the samples had streams of their own, but the real images' subset and KID's
    subsets were still drawn from a generator seeded with seed itself, as the binarization's (r113 F7)."""
    import genzoo.eval.features as features

    monkeypatch.setenv("GENZOO_CACHE", str(tmp_path))
    seen, real_kid = [], features.kid

    def spy(real, fake, subsets, size, generator):
        seen.append(generator.get_state())
        return real_kid(real, fake, subsets, size, generator)

    monkeypatch.setattr(features, "kid", spy)
    x = torch.rand(60, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    features.feature_metrics(x, "digits", which=["kid"], kid_subset_size=20, n_real=100, seed=2, progress=False)
    binarization = torch.Generator().manual_seed(2).get_state()
    assert len(seen) == 1 and not torch.equal(seen[0], binarization)
