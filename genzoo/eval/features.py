"""Feature-based metrics for digit images, from small classifiers that genzoo trained and ships.

Inception-v3 weights cannot be downloaded here, and an ImageNet network is a poor judge of 28x28
digits anyway, so FID & co. use a small CNN per dataset (:class:`DigitClassifier`), trained by
:mod:`genzoo.eval.train_classifier` and shipped in ``genzoo/eval/weights/`` as safetensors plus
a JSON record of the exact recipe, the torch version and the test accuracy. Numbers computed with
these features are comparable with each other, not with published Inception-based FIDs; say so
beside any table (the ``classifier`` and ``classifier_accuracy`` entries of the result do).

* penultimate features (post-ReLU hidden layer) give FID and KID (:mod:`genzoo.eval.fid`), and
  precision / recall / density / coverage (:mod:`genzoo.eval.prdc`);
* predicted class probabilities give an Inception-Score analogue and the class histogram.

Features of the real split are computed once and cached (:func:`reference_stats`) in
``$GENZOO_CACHE``, else ``~/.cache/genzoo``, under a key made of the data's contents and the
classifier weights' hash, so new data or new weights never meet stale statistics. Samples of a model
trained on binarized images that are not decoder means (a GAN's, a GMMN's) are compared with a seeded
binarized draw of the split (``binarize=True``), cached under its own key.

>>> load_classifier("digits").features(torch.zeros(2, 1, 8, 8)).shape
torch.Size([2, 64])
"""

from __future__ import annotations

import functools
import hashlib
import os
import warnings
from collections.abc import Collection
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors_bytes
from safetensors.torch import save as safetensors_bytes
from torch import Tensor, nn

from ..errors import CheckpointError, ConfigError, DataError, WriteError, did_you_mean
from ..io import atomic_write_bytes, read_json
from .fid import class_histogram, feature_stats, frechet_distance, inception_score, kid
from .fid import kid_subset_size as kid_rows  # (the name kid_subset_size is feature_metrics' argument)
from .likelihood import stream_seed
from .prdc import prdc

__all__ = [
    "DigitClassifier", "CLASSIFIERS", "WEIGHTS_DIR", "classifier_info", "load_classifier", "check_images",
    "extract", "reference_images", "reference_stats", "cache_dir", "feature_metrics", "K", "min_images",
]

#: the shipped classifiers, by the dataset they were trained on
CLASSIFIERS = ("mnist", "digits")
WEIGHTS_DIR = Path(__file__).with_name("weights")
_CACHE_FORMAT = "genzoo-reference-stats/1"


class DigitClassifier(nn.Module):
    """A small CNN for (N, 1, S, S) grey images in [0, 1]: conv blocks, one hidden layer, logits.

    Each entry of ``channels`` is a block ``conv 3x3 (padding 1) -> ReLU -> max-pool 2`` that halves
    the side (rounding down); the flattened output goes through ``Linear -> ReLU`` to ``features``
    units, the feature vector of the metrics, then dropout and a linear layer to ``n_classes``
    logits.

    >>> DigitClassifier(image_size=8, channels=(8,), features=16)(torch.zeros(3, 1, 8, 8)).shape
    torch.Size([3, 10])
    """

    def __init__(self, image_size: int = 28, channels: tuple[int, ...] = (16, 32, 64), features: int = 128,
                 n_classes: int = 10, dropout: float = 0.25) -> None:
        super().__init__()
        self.image_size = image_size
        layers: list[nn.Module] = []
        c_in, side = 1, image_size
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            c_in, side = c, side // 2
        if side < 1:
            raise ConfigError(f"{len(channels)} pooling blocks are too many for {image_size}x{image_size} images")
        self.conv = nn.Sequential(*layers)
        self.hidden = nn.Linear(c_in * side * side, features)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(features, n_classes)

    def features(self, x: Tensor) -> Tensor:
        """(N, 1, S, S) images -> (N, features) penultimate activations (after the ReLU)."""
        h = self.conv(x).flatten(1)        # (N, C * s * s), s = S / 2^blocks
        return F.relu(self.hidden(h))      # (N, features)

    def forward(self, x: Tensor) -> Tensor:
        """(N, 1, S, S) images -> (N, n_classes) logits."""
        return self.head(self.dropout(self.features(x)))   # (N, n_classes)


# -- the shipped weights -----------------------------------------------------------------------


def _check_name(name: str) -> str:
    if name not in CLASSIFIERS:
        raise ConfigError(f"no feature classifier '{name}'{did_you_mean(str(name), CLASSIFIERS)}; known: {', '.join(CLASSIFIERS)}")
    return name


def _weights_path(name: str) -> Path:
    return WEIGHTS_DIR / f"{_check_name(name)}-classifier.safetensors"


def _weights_bytes(name: str) -> bytes:
    """The bytes of classifier ``name``'s weights file, or a one-line CheckpointError where it is missing."""
    path = _weights_path(name)
    if not path.is_file():
        raise CheckpointError(f"missing classifier weights {path}: restore both {name}-classifier files from genzoo's "
                              f"package or repository, or retrain it (python -m genzoo.eval.train_classifier {name})")
    return path.read_bytes()


#: what every classifier record holds, and of which type (train_classifier writes them all)
_RECORD_KEYS = {"dataset": str, "architecture": dict, "test_accuracy": (int, float), "weights_sha256": str}


def _restore_hint(name: str) -> str:
    return (f"restore both {name}-classifier files from genzoo's package or repository, or retrain it "
            f"(python -m genzoo.eval.train_classifier {name})")


def classifier_info(name: str) -> dict:
    """The JSON record of a shipped classifier: architecture, recipe, torch version, accuracy, command; a one-line
    CheckpointError where it lacks one of ``dataset``, ``architecture`` (with ``image_size``), ``test_accuracy``
    or ``weights_sha256``.

    >>> info = classifier_info("digits")
    >>> info["architecture"]["image_size"], info["test_accuracy"] > 0.95
    (8, True)
    """
    path = WEIGHTS_DIR / f"{_check_name(name)}-classifier.json"
    info = read_json(path, "classifier record")
    # checked here, where every caller reads it: a key missing was a bare KeyError deep in feature_metrics
    bad = [k for k, t in _RECORD_KEYS.items() if not isinstance(info.get(k), t) or isinstance(info.get(k), bool)]
    side = info["architecture"].get("image_size") if not bad else None
    if not bad and (not isinstance(side, int) or isinstance(side, bool) or side < 1):  # (True is an int to Python)
        bad = ["architecture.image_size"]
    if bad:
        raise CheckpointError(f"classifier record {path} lacks a valid {', '.join(bad)}: {_restore_hint(name)}")
    return info


def load_classifier(name: str) -> DigitClassifier:
    """The shipped classifier ``name`` ("mnist" or "digits"), in eval mode, on the CPU (no pickle); a one-line
    CheckpointError where the weights are not those its record names (``weights_sha256``: weights replaced
    without their record), where the record has no ``weights_sha256``, or where the tensors do not fit the
    record's architecture."""
    info = classifier_info(name)                 # (weights_sha256 is required: no record skips the check)
    path = _weights_path(name)
    record = path.with_suffix(".json").name
    # one read, hashed and parsed: the bytes checked are the bytes loaded, even if the file is replaced meanwhile
    # (not _weights_sha256, which is cached per process: a classifier retrained since is new)
    raw = _weights_bytes(name)
    if hashlib.sha256(raw).hexdigest() != info["weights_sha256"]:
        raise CheckpointError(f"{path} is not the classifier its record {record} describes "
                              "(its sha256 differs): retrain it (python -m genzoo.eval.train_classifier) or restore both files")
    try:
        tensors = load_tensors_bytes(raw)
        arch = dict(info["architecture"])
        if "channels" in arch:
            arch["channels"] = tuple(arch["channels"])
        model = DigitClassifier(**arch)
        # the names and shapes checked first: load_state_dict's own message spans several lines
        want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        got = {k: tuple(v.shape) for k, v in tensors.items()}
        if got != want:
            missing, extra = sorted(want.keys() - got.keys()), sorted(got.keys() - want.keys())
            shapes = [f"{k} {got[k]} for {want[k]}" for k in sorted(want.keys() & got.keys()) if got[k] != want[k]]
            raise ValueError("; ".join(
                [f"missing {', '.join(missing)}"] * bool(missing) + [f"unexpected {', '.join(extra)}"] * bool(extra)
                + [f"shapes {', '.join(shapes)}"] * bool(shapes)))
        model.load_state_dict(tensors)
    except (SafetensorError, TypeError, ValueError, RuntimeError, ConfigError) as e:
        why = " ".join(str(e).split()) or type(e).__name__   # one line
        raise CheckpointError(f"{path} does not fit its record {record} ({why}): {_restore_hint(name)}") from None
    return model.eval()


@functools.lru_cache(maxsize=len(CLASSIFIERS))
def _shared_classifier(name: str) -> DigitClassifier:
    return load_classifier(name).requires_grad_(False)


@functools.lru_cache(maxsize=len(CLASSIFIERS))
def _weights_sha256(name: str) -> str:
    return hashlib.sha256(_weights_bytes(name)).hexdigest()


def check_images(x: Tensor, name: str) -> Tensor:
    """``x`` as a float32 CPU tensor (N, 1, S, S) in [0, 1] for classifier ``name``, else a DataError.

    Round-off just outside [0, 1] (1e-6) is clamped; anything further is refused.

    >>> x = check_images(torch.full((2, 1, 8, 8), 1 + 1e-7, dtype=torch.float64), "digits")
    >>> x.dtype, float(x.max())
    (torch.float32, 1.0)
    >>> check_images(torch.zeros(2, 1, 28, 28), "digits")
    Traceback (most recent call last):
    ...
    genzoo.errors.DataError: the 'digits' classifier takes images of shape (N, 1, 8, 8), got (2, 1, 28, 28)
    """
    side = int(classifier_info(name)["architecture"]["image_size"])
    x = torch.as_tensor(x).detach().cpu()
    if x.ndim != 4 or x.shape[1:] != (1, side, side):
        raise DataError(f"the '{name}' classifier takes images of shape (N, 1, {side}, {side}), got {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise DataError("no images to score")
    x = x.float()
    if not torch.isfinite(x).all():
        raise DataError("images contain NaN or infinite values")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise DataError(f"images must have values in [0, 1], got values in [{lo:.4g}, {hi:.4g}]")
    return x.clamp(0, 1)


@torch.no_grad()
def extract(x: Tensor, name: str, batch_size: int = 500, progress: bool = False) -> tuple[Tensor, Tensor]:
    """Features (N, F) and class probabilities (N, 10), float64, of images ``x`` (N, 1, S, S) in [0, 1].

    The classifier runs in eval mode (no dropout) under ``no_grad``, ``batch_size`` images at a time (an integer
    >= 1, else a ConfigError).

    >>> x = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    >>> feats, probs = extract(x, "digits", batch_size=2)
    >>> feats.shape, probs.dtype, bool((feats >= 0).all())   # post-ReLU features
    (torch.Size([5, 64]), torch.float64, True)
    >>> torch.allclose(probs, torch.softmax(load_classifier("digits")(x).double(), 1), atol=1e-6)
    True
    """
    from tqdm.auto import tqdm

    batch_size = _positive_int(batch_size, "batch_size")  # 0 or -1 gave bare ValueErrors from range() or torch.cat
    x = check_images(x, name)
    model = _shared_classifier(name)
    feats, probs = [], []
    for i in tqdm(range(0, x.shape[0], batch_size), desc=f"{name} features", disable=None if progress else True, leave=False):
        h = model.features(x[i:i + batch_size])                   # (b, F)
        feats.append(h.double())
        probs.append(model.head(h).double().softmax(1))           # (b, 10)
    return torch.cat(feats), torch.cat(probs)


# -- cached statistics of the real data -------------------------------------------------------


def cache_dir() -> Path:
    """Where reference statistics are cached: ``$GENZOO_CACHE``, else ``~/.cache/genzoo``.

    >>> import os, tempfile
    >>> before, os.environ["GENZOO_CACHE"] = os.environ.get("GENZOO_CACHE"), tempfile.mkdtemp()
    >>> cache_dir() == Path(os.environ["GENZOO_CACHE"])
    True
    >>> _ = os.environ.pop("GENZOO_CACHE") if before is None else os.environ.update(GENZOO_CACHE=before)
    """
    return Path(os.environ.get("GENZOO_CACHE") or "~/.cache/genzoo").expanduser()


def _cache_file(name: str, split: str, x: Tensor, binarized: bool = False) -> Path:
    which = f"{split}-binarized" if binarized else split  # (grey references keep the keys they always had)
    h = hashlib.sha256(f"{_CACHE_FORMAT}|{name}|{which}|{_weights_sha256(name)}|{tuple(x.shape)}|".encode())
    h.update(x.contiguous().numpy())        # the data itself: new files, another split or another draw never hit
    return cache_dir() / "reference" / f"{name}-{which}-{h.hexdigest()[:24]}.safetensors"


def reference_images(name: str, split: str = "test", root: str | None = None, binarize: bool = False,
                     seed: int = 0) -> Tensor:
    """The real ``split`` of classifier ``name``'s dataset (N, 1, S, S): the grey images, or with ``binarize`` one
    Bernoulli draw of them from ``seed``, the draw ``genzoo eval --seed`` scores a likelihood of binarized data on
    (:meth:`genzoo.data.Dataset.transformed`, as :func:`~genzoo.eval.likelihood.likelihood_report`).

    >>> x = reference_images("digits", binarize=True, seed=3)
    >>> x.unique().tolist(), torch.equal(x, reference_images("digits", binarize=True, seed=3)), x.shape
    ([0.0, 1.0], True, torch.Size([300, 1, 8, 8]))
    """
    from ..data import load_dataset

    data = load_dataset(classifier_info(name)["dataset"], split, root=root, binarize=binarize)
    return data.transformed(torch.Generator().manual_seed(seed)) if binarize else data.x


def _fits(stored: dict[str, Tensor], n: int, arch: dict) -> bool:
    """Whether cached statistics are whole: the four tensors, features (n, F) with F the classifier's width,
    probs (n, K), mu (F,), sigma (F, F), all finite. (A file edited by hand, with a key missing or features cut to
    10 rows, gave a KeyError or scored against 10 images while the FID used the stored mu and sigma of all.)"""
    if set(stored) != {"features", "probs", "mu", "sigma"}:
        return False
    f, k = int(arch.get("features", 128)), int(arch.get("n_classes", 10))
    shapes = {"features": (n, f), "probs": (n, k), "mu": (f,), "sigma": (f, f)}
    return all(tuple(stored[key].shape) == shape and stored[key].is_floating_point() and bool(torch.isfinite(stored[key]).all())
               for key, shape in shapes.items())


def reference_stats(name: str, split: str = "test", root: str | None = None, progress: bool = False, *,
                    binarize: bool = False, seed: int = 0) -> dict[str, Tensor]:
    """Features of the real ``split`` of dataset ``name`` under its classifier, cached on disk.

    Returns float64 tensors ``{"features": (N, F), "probs": (N, 10), "mu": (F,), "sigma": (F, F)}``.
    ``root`` is where MNIST lives (as for :func:`genzoo.data.load_dataset`); with ``binarize``, of the split's
    binarized draw from ``seed`` (:func:`reference_images`). The cache file lives
    in :func:`cache_dir` under a key hashed from the split's pixels, whether they are binarized, and the classifier
    weights; it is written to a temporary file and renamed into place, and one that is unreadable, lacks one of the
    four tensors, or holds tensors of other shapes (another count of images, another width) or non-finite values is
    recomputed. When the cache folder cannot be written, the statistics are returned with a warning.
    """
    x = reference_images(name, split, root, binarize, seed)         # (N, 1, S, S)
    path = _cache_file(name, split, x, binarize)
    if path.is_file():
        try:
            stored = load_tensors_bytes(path.read_bytes())  # (bytes: safetensors refuses a path that is not UTF-8)
            if _fits(stored, x.shape[0], classifier_info(name)["architecture"]):
                return {k: v.double() for k, v in stored.items()}
        except (SafetensorError, OSError, ValueError, TypeError):
            pass  # corrupt, truncated or edited by hand: recompute and overwrite
    feats, probs = extract(x, name, progress=progress)        # (N, F), (N, 10)
    mu, sigma = feature_stats(feats)
    stats = {"features": feats, "probs": probs, "mu": mu, "sigma": sigma}
    # the features are float32 activations: storing them as float32 loses nothing
    stored = {"features": feats.float(), "probs": probs, "mu": mu, "sigma": sigma}
    meta = {"format": _CACHE_FORMAT, "classifier": name, "split": split, "n": str(feats.shape[0]),
            "binarized": str(bool(binarize)).lower()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, safetensors_bytes({k: v.contiguous() for k, v in stored.items()}, metadata=meta))
    except OSError as e:
        warnings.warn(f"could not cache reference statistics in {path.parent}: {e.strerror or e}", stacklevel=2)
    except WriteError as e:
        warnings.warn(f"could not cache reference statistics: {e}", stacklevel=2)
    return stats


# -- the one function the CLI calls -------------------------------------------------------------


def _positive_int(value: object, what: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return value


#: the feature metrics by name (``pr``: precision and recall, ``dc``: density and coverage)
WHICH = ("fid", "kid", "pr", "dc", "is")
#: the neighbourhood size of precision/recall and density/coverage: 5, as Naeem et al. 2020 recommend (Kynkaanniemi
#: et al. 2019's code uses 3: :func:`genzoo.eval.prdc.prdc`)
K = 5


def min_images(which: Collection[str], k: int = K) -> int:
    """The fewest images, fake or real, that the feature metrics ``which`` take: more than ``k`` for ``pr`` and ``dc``
    (a k-th nearest neighbour other than the point itself), else 2 (a covariance, a pair for KID).

    >>> min_images(["fid", "is"]), min_images(["fid", "pr"])
    (2, 6)
    """
    return k + 1 if {"pr", "dc"} & set(which) else 2


def is_parts(n: int) -> int:
    """The parts the Inception Score of ``n`` samples is averaged over: 10 (Salimans et al.) where each holds
    1,000 or more, else as many as do, at least one. ``p(y)`` is estimated within a part, and a small part's
    score is biased low (real MNIST test images: 6.29 in ten parts of 10 images each, 9.24 in one of 100).

    >>> is_parts(10_000), is_parts(2_500), is_parts(300)
    (10, 2, 1)
    """
    return max(1, min(10, n // 1000))


def feature_metrics(
    fake: Tensor,
    name: str,
    *,
    root: str | None = None,
    split: str = "test",
    n_real: int | None = None,
    binarize: bool = False,
    k: int = K,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    seed: int = 0,
    which: Collection[str] | None = WHICH,
    progress: bool = True,
) -> dict:
    """FID, KID, precision/recall, density/coverage, IS and class histogram of ``fake`` images.

    ``fake`` is (N, 1, S, S) in [0, 1], with S the classifier's side (28 for "mnist", 8 for
    "digits"). It is compared with the real ``split`` of the classifier's dataset (``n_real`` of its
    images drawn at random from ``seed``'s subsets stream when given, else all; ``root`` locates MNIST; with ``binarize``, a
    Bernoulli draw of them from ``seed``, for samples of a model of binarized images: :func:`reference_images`),
    through the features of the shipped classifier ``name``:

    * ``fid``: Frechet distance of the feature Gaussians (Heusel et al. 2017); near 0 for real data;
    * ``kid``, ``kid_std``: unbiased polynomial-kernel MMD^2 over ``kid_subsets`` random subsets of
      ``kid_subset_size`` (Binkowski et al. 2018), drawn from ``seed``'s subsets stream
      (:func:`~genzoo.eval.likelihood.stream_seed`); ``kid_std`` is their spread (not a
      standard error), and ``kid_subsets``, ``kid_subset_size`` say what was used (the size is at most half
      of the smaller set: :func:`~genzoo.eval.fid.kid_subset_size`);
    * ``precision``, ``recall`` (Kynkaanniemi et al. 2019) and ``density``, ``coverage`` (Naeem et al.
      2020) with ``k`` nearest neighbours (5, as Naeem et al.; Kynkaanniemi et al. use 3; recorded as ``k``). Precision, and
      less so density, can be high for blank or collapsed images (blank MNIST images: precision 1.0, density
      0.6, as they fall in the large balls of a few faint real digits): read them with recall, coverage and
      the class histogram;
    * ``is``, ``is_std``: the Inception-Score analogue (Salimans et al. 2016) averaged over
      :func:`is_parts` parts: 10 parts of 1,000 samples or more, fewer parts for fewer samples;
    * ``class_histogram``: the share of each predicted digit among the fakes (empty bins: mode collapse).

    ``which`` names the metrics to compute (``fid``, ``kid``, ``pr``, ``dc``, ``is``; default all); the
    others are left out of the result, and the class histogram is always there. Also ``n_fake``, ``n_real``,
    ``real_binarized`` (``binarize``), ``classifier`` and ``classifier_accuracy`` (its test accuracy, on grey images).
    All values are plain Python numbers.

    >>> import os, tempfile
    >>> from unittest import mock
    >>> from genzoo.data import load_dataset
    >>> real = load_dataset("digits", "test").x                           # (300, 1, 8, 8)
    >>> noisy = (real + 0.3 * torch.randn(real.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    >>> with mock.patch.dict(os.environ, GENZOO_CACHE=tempfile.mkdtemp()):   # keep ~/.cache clean
    ...     same = feature_metrics(real, "digits", kid_subset_size=100, progress=False)
    ...     worse = feature_metrics(noisy, "digits", kid_subset_size=100, progress=False)
    >>> round(same["fid"], 6), same["precision"], same["coverage"], same["n_real"]
    (0.0, 1.0, 1.0, 300)
    >>> worse["fid"] > 10 * max(abs(same["fid"]), 1e-3) and worse["kid"] > same["kid"]
    True
    """
    _check_name(name)
    which = WHICH if which is None else [which] if isinstance(which, str) else list(which)
    if not which or not set(which) <= set(WHICH):
        raise ConfigError(f"which must name one or more of {', '.join(WHICH)}, got {which}")
    k = _positive_int(k, "k")
    kid_subsets = _positive_int(kid_subsets, "kid_subsets")
    kid_subset_size = _positive_int(kid_subset_size, "kid_subset_size", 2)
    if n_real is not None:
        n_real = _positive_int(n_real, "n_real", 2)
    x = check_images(fake, name)
    need = min_images(which, k)  # k-NN balls need k + 1 images (pr, dc); a covariance 2
    what = f"pr and dc need more than k = {k}" if need > 2 else "the feature metrics need at least 2"
    if x.shape[0] < need:
        raise DataError(f"{what} fake images, got {x.shape[0]}")

    binarize = bool(binarize)
    ref = reference_stats(name, split, root, progress=progress, binarize=binarize, seed=seed)
    real = ref["features"]                                          # (N_real, F)
    # the real subset, then KID's subsets, from one stream of their own: not the binarization's uniforms (seed itself)
    subsets = torch.Generator().manual_seed(stream_seed(seed, "subsets"))
    if n_real is not None and n_real < real.shape[0]:
        # a random subset, not the first n_real: MNIST's test set is ordered by writer population
        keep = torch.randperm(real.shape[0], generator=subsets)[:n_real]
        real = real[keep.sort().values]
        mu_r, sigma_r = feature_stats(real)
    else:
        mu_r, sigma_r = ref["mu"], ref["sigma"]
    if real.shape[0] < need:
        raise DataError(f"{what} real images, got {real.shape[0]}")

    feats, probs = extract(x, name, progress=progress)              # (N, F), (N, 10)
    out: dict = {}
    if "fid" in which:
        out["fid"] = frechet_distance(mu_r, sigma_r, *feature_stats(feats))
    if "kid" in which:
        out["kid"], out["kid_std"] = kid(real, feats, kid_subsets, kid_subset_size, subsets)
        out["kid_subsets"] = kid_subsets
        out["kid_subset_size"] = kid_rows(real.shape[0], feats.shape[0], kid_subsets, kid_subset_size)
    if "pr" in which or "dc" in which:  # one k-NN pass gives both pairs
        pr = prdc(real, feats, k)
        out.update({key: pr[key] for key in ("precision", "recall") if "pr" in which})
        out.update({key: pr[key] for key in ("density", "coverage") if "dc" in which})
        out["k"] = k  # the k-NN radii's k: precision, recall, density and coverage move with it
    if "is" in which:
        out["is_splits"] = is_parts(x.shape[0])
        out["is"], out["is_std"] = inception_score(probs, splits=out["is_splits"])
    return {
        **out,
        "class_histogram": class_histogram(probs).tolist(),
        "n_fake": int(x.shape[0]),
        "n_real": int(real.shape[0]),
        "real_binarized": binarize,
        "classifier": name,
        "classifier_accuracy": float(classifier_info(name)["test_accuracy"]),
    }
