"""Every metric a model admits, in one call: what ``genzoo eval``, ``genzoo compare`` and the benchmarks use.

Metrics by name (``--metrics``):

* ``nll``: the likelihood figures of :func:`~genzoo.eval.likelihood.likelihood_report`: exact
  ``log_prob`` (GMM, flows), ELBO and IWAE bound (VAE, M2); admitted by models with ``Density`` or
  ``LatentVariable``;
* ``parzen``: the Parzen-window estimate of :mod:`genzoo.eval.parzen` (Goodfellow et al. 2014) on
  samples: admitted by every model (all can sample); a different kind from ``nll``, never mixed with it;
* ``fid``, ``kid``, ``pr`` (precision/recall), ``dc`` (density/coverage), ``is`` (the Inception-Score
  analogue and class histogram): from the features of genzoo's own digit classifier
  (:mod:`genzoo.eval.features`); admitted on MNIST and the 8x8 digits;
* ``modes``: mode coverage (:mod:`genzoo.eval.modes`) on toy mixtures with known centres (ring, grid);
* ``error``: the test classification error of models that classify (the semi-supervised M2).

``"auto"`` is ``nll`` where admitted, else ``parzen``, plus ``modes`` and ``error`` where admitted; ``"all"`` is
every admitted metric. Samples are drawn once (``n_samples``, from ``seed``'s samples stream:
:func:`~genzoo.eval.likelihood.stream_seed`) and shared by the
sample-based metrics; images are clipped to [0, 1], the data space. The feature metrics compare samples of a
model of binarized images with the test images binarized as the likelihoods score them, unless the samples are
decoder means (:func:`samples_are_means`), which are grey.

>>> import genzoo
>>> from genzoo.data import load_dataset
>>> gmm = genzoo.build("gmm", data_shape=(2,), n_components=8)
>>> _ = genzoo.fit(gmm, load_dataset("ring", n=2000), steps=30, progress=False)
>>> out = evaluate(gmm, {"name": "ring"}, metrics="all", n_samples=2000, progress=False)
>>> sorted(out["metrics"]), out["modes"]["n_modes"]
(['modes', 'nll', 'parzen'], 8)
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch

from ..base import Density, LatentVariable, evaluating
from ..data import load_spec
from ..data.transforms import requantize
from ..errors import ConfigError, DataError, did_you_mean
from .features import K, WHICH, min_images
from .likelihood import check_eval_options, check_weights, format_stderr, likelihood_report, stream_seed
from .parzen import check_sigmas

FEATURE_METRICS = WHICH  # fid, kid, pr, dc, is
METRICS = ("nll", "parzen", *FEATURE_METRICS, "modes", "error")
#: datasets with a shipped classifier for the feature metrics
FEATURE_SETS = ("mnist", "digits")
#: the datasets that read files from a data root (``data_spec["root"]``, ``--data-root``): MNIST's folder
ROOT_DATASETS = ("mnist",)


def admitted(model, data) -> list[str]:
    """The metrics ``model`` admits on ``data`` (a Dataset), in :data:`METRICS` order."""
    out = []
    if isinstance(model, (Density, LatentVariable)):
        out.append("nll")
    out.append("parzen")
    if data.name in FEATURE_SETS and data.is_image:
        out += FEATURE_METRICS
    if getattr(data.density, "centres", None) is not None:
        out.append("modes")
    if hasattr(model, "classify") and data.y is not None:
        out.append("error")
    return out


def applicable(metrics: str | list[str], model, data) -> tuple[list[str], dict[str, str]]:
    """``"auto"``, ``"all"`` or a list / comma-separated names -> (the metrics ``model`` admits on ``data``, in
    :data:`METRICS` order; ``{named metric it does not admit: why}``). An unknown name is a ConfigError."""
    ok = admitted(model, data)
    if isinstance(metrics, str):
        if metrics == "all":
            return ok, {}
        if metrics == "auto":
            return [m for m in ok if m in ("nll", "modes", "error") or (m == "parzen" and "nll" not in ok)], {}
        metrics = [m.strip() for m in metrics.split(",") if m.strip()]
    if not metrics:
        raise ConfigError("no metrics named: give e.g. --metrics nll,parzen,fid or all")
    skipped = {}
    for m in metrics:
        if m in ("auto", "all"):
            raise ConfigError(f"'{m}' stands alone: give --metrics {m}, or name the metrics one by one")
        if m not in METRICS:
            raise ConfigError(f"unknown metric '{m}'{did_you_mean(m, METRICS)}: choose from {', '.join(METRICS)}, "
                              "auto or all")
        if m not in ok:
            skipped[m] = {"nll": f"{model.name} has no likelihood or bound (it is a sampler: use parzen)",
                          "modes": f"dataset '{data.name}' has no known mode centres",
                          "error": f"{model.name} does not classify, or '{data.name}' has no labels"}.get(
                              m, f"the feature metrics need MNIST or digits images, not '{data.name}'")
    return [m for m in METRICS if m in metrics and m not in skipped], skipped


def resolve_metrics(metrics: str | list[str], model, data) -> list[str]:
    """The metrics to compute, as :func:`applicable` finds them; a named one the model does not admit is a
    ConfigError."""
    chosen, skipped = applicable(metrics, model, data)
    for m, why in skipped.items():
        raise ConfigError(f"metric '{m}' does not apply: {why}")
    return chosen


#: bumped whenever a metric's value or label changes, so results an older genzoo wrote (``eval.json``) are not
#: taken for current ones: 2 since the likelihood space follows the model's support and the modes' reverse KL
#: is to the mixture's weights; 3 since KID's subsets of a small set are half of it, not all of it; 4 since samples
#: of a dequantizing model are scored on the data's levels, KID's subsets are at most half of the smaller set and IS's
#: parts hold 1,000 samples or more; 5 since a Gaussian VAE of vectors is scored on its draws, not its decoder means;
#: 6 since a mixture of unequal stds puts a sample in the mode nearest in its own stds, and KID is unbiased for sets of
#: unequal size; 7 since the feature metrics compare samples (not decoder means) of a model of binarized images with
#: binarized test images; 8 since mode coverage scores the protocol's 2,500 samples, not all of ``n_samples``; 9 since
#: the bounds' noise and the samples are drawn from streams of their own, not from the test set's binarization uniforms
METRICS_VERSION = 9


def unused_settings(result: dict) -> set[str]:
    """The settings of :func:`evaluate` that none of the metrics of its ``result`` read (an ``eval.json`` of any
    genzoo): ``parzen_sigmas`` without Parzen; ``iwae_k`` without an ELBO row (no likelihood, or an exact one: a
    flow's, a GMM's); ``n_samples`` where no metric draws samples (nll, error); ``batch_size`` without nll; ``n``
    where only samples are scored (modes); and ``root``, the data spec's, where the data read no files from it
    (:data:`ROOT_DATASETS`). ``genzoo eval`` records the others alone, and ``compare`` compares them alone, so an
    idle setting forces no evaluation again; a result that does not say its metrics leaves none out.

    >>> sorted(unused_settings({"metrics": ["nll", "modes"], "dataset": "ring", "likelihood": {"rows": [{"kind": "exact"}]}}))
    ['iwae_k', 'parzen_sigmas', 'root']
    >>> sorted(unused_settings({"metrics": ["nll"], "dataset": "mnist", "likelihood": {"rows": [{"kind": "elbo"}]}}))
    ['n_samples', 'parzen_sigmas']
    >>> unused_settings({"metrics": "nll"})
    set()
    """
    metrics = result.get("metrics") if isinstance(result, dict) else None
    if not isinstance(metrics, list):
        return set()
    rows = (result.get("likelihood") or {}).get("rows") if isinstance(result.get("likelihood"), dict) else None
    bounds = any(isinstance(r, dict) and r.get("kind") == "elbo" for r in rows or [])  # (the IWAE bound's beside it)
    unused = {"parzen_sigmas": "parzen" not in metrics, "iwae_k": not bounds,
              "n_samples": not set(metrics) - {"nll", "error"}, "batch_size": "nll" not in metrics,
              "n": not set(metrics) - {"modes"}, "root": result.get("dataset") not in ROOT_DATASETS}
    return {k for k, idle in unused.items() if idle}


def samples_are_means(model) -> bool:
    """Whether ``model``'s samples of images are decoder means E[x|z], grey even for a model of binarized images: its
    ``samples_are_means`` where it says, else whether it is a latent-variable model (the VAE and M2, whose ``sample``
    returns the means for images). Other samplers (GAN, WGAN, f-GAN, GMMN, GMM, flows) draw images like the data.

    >>> import genzoo
    >>> [samples_are_means(genzoo.build(name, data_shape=(1, 8, 8))) for name in ("vae", "ssvae", "gan", "gmmn")]
    [True, True, False, False]
    """
    return bool(getattr(model, "samples_are_means", isinstance(model, LatentVariable)))


@torch.no_grad()
def draw_finite(model, n: int, seed: int, batch_size: int = 1000) -> torch.Tensor:
    """``n`` samples (n, *shape) from ``seed``, drawn in blocks of ``batch_size`` (memory: 10,000 MNIST samples of a
    RealNVP at once took ~4.7 GB), float32 on the CPU; a DataError where any holds NaN or inf (clipped, they
    would pass for plausible images)."""
    g = torch.Generator(device=model.device).manual_seed(seed)
    with evaluating(model):
        x = torch.cat([model.sample(min(batch_size, n - i), generator=g).float().cpu() for i in range(0, n, batch_size)])
    bad = int((~torch.isfinite(x.reshape(n, -1))).any(1).sum())
    if bad:
        raise DataError(f"{bad} of {n} samples of the {model.name} model have NaN or infinite values: did its training diverge?")
    return x


@torch.no_grad()
def draw(model, n: int, seed: int, data, batch_size: int = 1000) -> torch.Tensor:
    """``n`` samples in blocks, on the CPU (:func:`draw_finite`); images clipped to the data space [0, 1], and those
    of a model of dequantized data put back on the data's levels (:func:`~genzoo.data.transforms.requantize`), as
    the images they are scored against are stored."""
    x = draw_finite(model, n, seed, batch_size)
    if data.dequantized_levels:  # (vectors of levels too, from integer arrays)
        return requantize(x, data.dequantized_levels)
    return x.clamp(0, 1) if data.is_image else x  # (n, *shape)


def evaluate(model, data_spec: dict, *, metrics: str | list[str] = "auto", split: str = "test", n: int | None = None,
             n_samples: int = 10_000, iwae_k: int = 5000, batch_size: int = 100, seed: int = 0,
             parzen_sigmas: Sequence[float] | None = None, strict: bool = True, progress: bool = True) -> dict:
    """Compute ``metrics`` for ``model`` on the ``split`` of the dataset described by ``data_spec`` (a run's
    data recipe: name, root, binarize/dequantize, dataset options).

    ``n`` limits the likelihoods, Parzen and the test error to the first ``n`` examples of the split, and the
    feature metrics to a random ``n`` of them (seeded: MNIST's test set is ordered by writer population). Where the
    data are binarized and the samples are not decoder means (:func:`samples_are_means`), the feature metrics compare
    them with the split's binarized draw from ``seed``, the one the likelihoods score (``real_binarized``).
    Parzen chooses its sigma from ``parzen_sigmas`` (default :data:`genzoo.eval.parzen.SIGMAS`, made for
    images in [0, 1]) on the validation split, or on the training split when ``split="valid"``.

    A metric named in ``metrics`` that the model does not admit is a :class:`ConfigError`; with ``strict=False``
    it is left out and listed with the reason under ``"skipped"`` (``{metric: why}``).

    Returns ``{"metrics": [...], "dataset", "split", "n_samples", "seconds": {metric: s}}`` plus one entry per
    family of results: ``"likelihood"`` (a likelihood report), ``"parzen"``, ``"features"`` (the feature metrics
    asked for), ``"modes"``, ``"error"``.
    """
    check_eval_options(n=n, n_samples=n_samples, iwae_k=iwae_k, batch_size=batch_size)
    if not isinstance(data_spec, dict) or not data_spec.get("name"):
        raise ConfigError(f"data_spec is a run's data recipe, a dict with a 'name' (such as {{'name': 'mnist', "
                          f"'binarize': True}}), got {data_spec!r}")
    check_weights(model)
    if parzen_sigmas is not None:
        parzen_sigmas = check_sigmas(parzen_sigmas)
    test = load_spec(data_spec, split, nonempty=True)
    chosen, skipped = (resolve_metrics(metrics, model, test), {}) if strict else applicable(metrics, model, test)
    out: dict = {"model": model.name, "metrics": chosen, "dataset": test.name, "split": split, "n_samples": n_samples, "seed": seed,
                 "seconds": {}}
    if skipped:
        out["skipped"] = skipped
    asked_features = [m for m in chosen if m in FEATURE_METRICS]
    if asked_features:  # the sizes the feature metrics take, checked before any work (an IWAE bound takes minutes)
        need = min_images(asked_features)
        bad = [f"{flag} {v}" for flag, v in (("n_samples (--n-samples)", n_samples), ("n (-n)", n)) if v is not None and v < need]
        if bad:
            what = (f"pr and dc compare k = {K} nearest neighbours: they need more than {K} samples and real images"
                    if need > 2 else "the feature metrics compare sets of images: they need at least 2 of each")
            raise ConfigError(f"{what}, got {' and '.join(bad)}")
    samples = None
    if set(chosen) - {"nll"}:
        t0 = time.time()
        # from a stream of their own: the binarized test images they are compared with are drawn from seed itself
        samples = draw(model, n_samples, stream_seed(seed, "samples"), test)
        out["seconds"]["sampling"] = time.time() - t0
    if {"nll", "parzen"} & set(chosen):
        t0 = time.time()
        # sigma is chosen on points other than the scored ones: the validation split, or training when that is scored
        # or when there is no validation split (an .npz in Keras's layout: the test split if training's is scored);
        # the output names the split
        valid = None
        if "parzen" in chosen:
            valid = load_spec(data_spec, "train" if split == "valid" else "valid")
            if len(valid) == 0:  # never the points scored: the test split when training's is
                valid = load_spec(data_spec, "test" if split == "train" else "train", nonempty=True)
        out["likelihood"] = likelihood_report(model, test, iwae_k=iwae_k, batch_size=batch_size, seed=seed, n=n,
                                              progress=progress, bounds="nll" in chosen, valid=valid, samples=samples,
                                              parzen_sigmas=parzen_sigmas)
        if "parzen" in chosen:
            out["parzen"] = out["likelihood"].pop("parzen")
        out["seconds"]["likelihood"] = time.time() - t0
    if set(chosen) & set(FEATURE_METRICS):
        from .features import feature_metrics

        t0 = time.time()
        binarize = bool(test.binarize) and not samples_are_means(model)  # draws of binary images: binary references
        out["features"] = feature_metrics(samples, test.name, root=data_spec.get("root"), split=split, n_real=n,
                                          binarize=binarize, seed=seed, which=asked_features, k=K, progress=progress)
        out["seconds"]["features"] = time.time() - t0
    if "modes" in chosen:
        from .modes import SAMPLES, mode_coverage

        scored = samples[:SAMPLES]  # (<= 2500, ...) the protocol's count: modes captured grows with the number scored
        out["modes"] = mode_coverage(scored, test.density.centres, test.density.std, weights=getattr(test.density, "weights", None))
        out["modes"]["counts"] = [int(c) for c in out["modes"]["counts"]]
        out["modes"]["n_samples"] = int(scored.shape[0])
    if "error" in chosen:
        x, y = (test.x, test.y) if n is None else (test.x[:n], test.y[:n])
        with evaluating(model):
            pred = torch.cat([model.classify(x[i:i + 1000].to(model.device)).cpu() for i in range(0, len(x), 1000)])
        # the stored images (grey levels where the data have them), not the binarized draws the bounds score
        out["error"] = {"error": float((pred != y).double().mean()), "n": int(len(y))}
        if test.binarize:
            out["error"]["inputs"] = "the images as stored, not binarized draws"
    return out


def summary_row(result: dict) -> dict:
    """One flat row of the headline numbers of :func:`evaluate`'s result (None where not computed):
    the best likelihood figure with its kind, Parzen, the feature metrics, mode coverage."""
    row: dict = {}
    rows = result.get("likelihood", {}).get("rows", [])  # the Parzen row has its own column
    best = (next((r for r in rows if r["kind"] == "exact"), None) or next((r for r in rows if r["kind"].startswith("iwae")), None)
            or next((r for r in rows if r["kind"] == "elbo"), None))
    row["nll"] = best["nats"] if best else None
    row["nll_se"] = best.get("stderr") if best else None
    row["nll_kind"] = best["kind"] if best else None
    row["nll_space"] = result["likelihood"].get("space") if best else None
    row["bits_per_dim"] = best["bits_per_dim"] if best else None
    p = result.get("parzen")
    row["parzen_ll"], row["parzen_se"] = (p["ll"], p["stderr"]) if p else (None, None)
    row["parzen_sigma"], row["parzen_sigma_at_edge"] = (p["sigma"], p["sigma_at_edge"]) if p else (None, None)
    f = result.get("features", {})
    for key in ("fid", "kid", "precision", "recall", "density", "coverage", "is"):
        row[key] = f.get(key)
    m = result.get("modes")
    row["modes"] = f"{m['modes']}/{m['n_modes']}" if m else None
    row["high_quality"] = m["high_quality"] if m else None
    row["reverse_kl"] = m.get("reverse_kl") if m else None
    row["error"] = result["error"]["error"] if "error" in result else None
    return row


#: below this many real images (``-n``) the feature metrics' note says FID is biased high and the others noisy: real
#: digits training images against n real test ones score FID 86.8 at n = 8, 11.5 at 50, 2.3 at all 300
FEW_REAL = 100


def _few_images_note(f: dict, split: str) -> str:
    """The caveat of a feature-metrics result ``f`` scored on few samples (fewer than 1,000, as the IS line says for
    IS) or few real images (fewer than :data:`FEW_REAL`, from ``-n``), naming the side; "" where neither, or where
    only IS is asked (its own line says).

    >>> _few_images_note({"fid": 1.0, "n_fake": 2000, "n_real": 8}, "test")
    'only 8 test images (-n): FID is biased high; compare runs scored with the same -n'
    >>> _few_images_note({"fid": 1.0, "n_fake": 2000, "n_real": 300}, "test")
    ''
    """
    noisy = [name for name, keys in (("KID", ("kid",)), ("the k-NN figures", ("precision", "density")))
             if any(k in f for k in keys)]
    caveats = ["FID is biased high"] * ("fid" in f) + [f"{' and '.join(noisy)} noisy"] * bool(noisy)
    few = [(f"{f['n_fake']:,} samples, fewer than 1,000", "--n-samples")] * (f["n_fake"] < 1000)
    few += [(f"{f['n_real']:,} {split} images (-n)", "-n")] * (f["n_real"] < FEW_REAL)
    if not (few and caveats):
        return ""
    return (f"only {', and '.join(what for what, _ in few)}: {', '.join(caveats)}; compare runs scored with the same "
            f"{' and '.join(flag for _, flag in few)}")


def format_result(result: dict) -> str:
    """The plain-text lines of an :func:`evaluate` result (the likelihood table first)."""
    from .likelihood import format_table

    lines = []
    if "likelihood" in result:
        lines.append(format_table(result["likelihood"]))
    if "parzen" in result:
        p = result["parzen"]
        edge = "  (sigma at the edge of the grid: widen it with --parzen-sigmas)" if p["sigma_at_edge"] else ""
        on = p.get("sigma_chosen_on", "valid")
        chosen = "" if on == "valid" else f" (chosen on the {on} split{': the data have no validation split' * (result['split'] != 'valid')})"
        lines.append(f"Parzen window (Goodfellow et al. 2014): {result['split']} log-likelihood {p['ll']:.2f} +- "
                     f"{format_stderr(p['stderr'], 2)} "
                     f"nats/example of the points as given, sigma {p['sigma']:.4g}{chosen} from {p['n_samples']:,} samples{edge}")
    if "features" in result:
        f = result["features"]
        real = f"{'binarized ' * bool(f.get('real_binarized'))}{result['split']} images"  # (grey where not said)
        lines.append(f"features of genzoo's {f['classifier']} classifier ({100 * f['classifier_accuracy']:.2f}% test "
                     f"accuracy; {f['n_fake']:,} samples vs {f['n_real']:,} {real}):")
        # KID's and IS's spread is over subsets or parts (ddof 0), not a standard error as the likelihoods' +-
        subsets = f" over {f['kid_subsets']} subsets of {f['kid_subset_size']:,}" if "kid_subsets" in f else " over subsets"
        parts = {"fid": lambda: f"FID {f['fid']:.3f}", "kid": lambda: f"KID {f['kid']:.5f} (sd {f['kid_std']:.5f}{subsets})",
                 "precision": lambda: f"precision {f['precision']:.3f}  recall {f['recall']:.3f}",
                 "density": lambda: f"density {f['density']:.3f}  coverage {f['coverage']:.3f}",
                 "is": lambda: f"IS {f['is']:.3f} " + (f"(sd {f['is_std']:.3f} over {f['is_splits']} parts)"
                                                        if f.get("is_splits", 10) > 1 else
                                                        f"(one part of {f['n_fake']:,}: biased low below 1,000)"
                                                        if f["n_fake"] < 1000 else f"(one part of {f['n_fake']:,})")}
        lines.append("  " + "  ".join(text() for key, text in parts.items() if key in f))  # only the metrics asked for
        if note := _few_images_note(f, result["split"]):
            lines.append(f"  ({note})")
        lines.append("  class histogram of samples: " + " ".join(f"{100 * c:.1f}" for c in f["class_histogram"]) + " (%)")
    if "modes" in result:
        m = result["modes"]
        scored = f" ({m['n_samples']:,} samples)" if "n_samples" in m else ""
        lines.append(f"modes captured {m['modes']}/{m['n_modes']}, high quality {100 * m['high_quality']:.1f}%, "
                     f"reverse KL {m['reverse_kl']:.3f}{scored}")
    if "error" in result:
        e = result["error"]
        inputs = f" ({e['inputs']})" if "inputs" in e else ""
        lines.append(f"classification error {100 * e['error']:.2f}% on {e['n']:,} {result['split']} examples{inputs}")
    return "\n".join(lines)
