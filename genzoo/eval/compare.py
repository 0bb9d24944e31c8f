"""One table over several runs: every metric any of them admits, each column labelled with its kind.

The likelihood column holds each run's best figure with its kind and data space beside it (``exact`` < ``iwae-k`` <
``elbo``: an exact NLL, an importance-weighted bound, the ELBO), so a bound is never read as an exact
value; Parzen estimates have their own column (log-likelihood, higher is better). Columns that no run
has are left out.

>>> rows = [("runs/a", {"model": "gmm", "dataset": "ring", "likelihood": {"space": "continuous", "rows": [
...     {"metric": "NLL", "kind": "exact", "nats": -1.5, "stderr": 0.01, "bits_per_dim": -1.08}]}})]
>>> print(compare_table(rows).markdown)
| run | model | data | NLL nats (kind, space) | bits/dim |
|---|---|---|---|---|
| runs/a | gmm | ring | -1.500 +- 0.010 (exact, continuous) | -1.0800 |
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

from .likelihood import format_stderr
from .metrics import summary_row

#: (key in summary_row, Markdown heading, format); which way is better: :data:`HIGHER_IS_BETTER`, :func:`directions`
COLUMNS = [
    ("nll", "NLL nats (kind, space)", None),
    ("bits_per_dim", "bits/dim", "{:.4f}"),
    ("parzen_ll", "Parzen LL nats", None),
    ("fid", "FID", "{:.3f}"),
    ("kid", "KID", "{:.5f}"),
    ("precision", "precision", "{:.3f}"),
    ("recall", "recall", "{:.3f}"),
    ("density", "density", "{:.3f}"),
    ("coverage", "coverage", "{:.3f}"),
    ("is", "IS", "{:.3f}"),
    ("modes", "modes", "{}"),
    ("high_quality", "high quality", "{:.3f}"),
    ("reverse_kl", "modes' reverse KL", "{:.3f}"),
    ("error", "classification error", "{:.2%}"),  # of the split scored (the caption names it); the CSV: a fraction
]


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]  # Markdown cells
    records: list[dict]  # the raw numbers, one dict per run (for CSV)

    @property
    def markdown(self) -> str:
        lines = ["| " + " | ".join(self.header) + " |", "|" + "---|" * len(self.header)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in self.rows]  # a | in a run's name
        return "\n".join(lines)

    @property
    def csv(self) -> str:
        keys = list(self.records[0]) if self.records else []
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
        w.writeheader()
        w.writerows(self.records)
        return buf.getvalue()


#: the columns where a higher value is the better one (in the others, NLL, bits/dim, FID, KID, the modes' reverse KL
#: and the classification error, lower is)
HIGHER_IS_BETTER = ("parzen_ll", "precision", "recall", "density", "coverage", "is", "modes", "high_quality")


def directions(table: "Table") -> str:
    """One line naming, of the table's metric columns, those where lower is better and those where higher is.

    >>> directions(Table(["run", "model", "data", "NLL nats (kind, space)", "Parzen LL nats"], [], []))
    'Lower is better: NLL nats (kind, space). Higher is better: Parzen LL nats.'
    """
    up = {h for k, h, _ in COLUMNS if k in HIGHER_IS_BETTER}
    metrics = table.header[3:]
    parts = [(what, [h for h in metrics if (h in up) == higher]) for what, higher in (("Lower", False), ("Higher", True))]
    return " ".join(f"{what} is better: {', '.join(hs)}." for what, hs in parts if hs)


def _cell(key: str, fmt: str | None, row: dict) -> str:
    v = row.get(key)
    if v is None:
        return ""
    if key == "nll":
        se = f" +- {format_stderr(row['nll_se'])}" if row.get("nll_se") is not None else ""
        kind = f"{row['nll_kind']}, {row['nll_space']}" if row.get("nll_space") else row["nll_kind"]
        return f"{v:.3f}{se} ({kind})"
    if key == "parzen_ll":
        edge = " (sigma at the grid's edge)" if row.get("parzen_sigma_at_edge") else ""
        return f"{v:.3f} +- {format_stderr(row['parzen_se'])}{edge}"  # nats: toy models differ by hundredths
    return fmt.format(v)


def data_label(spec: dict, split: str = "test", result: dict | None = None) -> str:
    """A run's data as the table names it: the data set and the options of its recipe, other than their defaults,
    that change which points are scored (not its folder or fingerprints, nor its size but where the training split
    is scored, nor the data seed but of a toy set, the only ones it draws), so that runs scored on different data are
    told apart. Binarization and dequantization are left to the likelihood's space: Parzen scores the images as
    stored, and the feature metrics compare a VAE's or M2's decoder means with them too; but where ``result`` (the
    run's :func:`~genzoo.eval.metrics.evaluate` result) compared samples with binarized test images (a GAN's or
    GMMN's of binarized images), or scored a likelihood on binarized draws in a space other than ``binarized`` (a
    density's, ``discrete-as-real`` as grey levels are), ``binarized`` joins the options (:func:`binarized_label`).

    >>> data_label({"name": "ring", "std": 0.05, "n": 50000}), data_label({"name": "mnist", "binarize": True, "root": "d"})
    ('ring (std=0.05)', 'mnist')
    >>> data_label({"name": "ring", "std": 0.01, "seed": 0}), data_label({"name": "digits", "seed": 3})  # defaults; idle
    ('ring', 'digits')
    >>> data_label({"name": "digits", "binarize": True}, result={"features": {"fid": 3.0, "real_binarized": True}})
    'digits (binarized)'
    >>> density = {"likelihood": {"space": "discrete-as-real", "rows": [{"kind": "exact", "nats": 88.2}]}}
    >>> data_label({"name": "digits", "binarize": True}, result=density), data_label({"name": "digits"}, result=density)
    ('digits (binarized)', 'digits')
    """
    from ..data import dataset_options, is_toy
    from ..errors import GenZooError

    name = str(spec.get("name", ""))
    try:
        defaults = dataset_options(name)
    except GenZooError:  # a data set no longer known here: every option shown
        defaults = {}
    # load_dataset's own keywords have defaults too (a recipe may write seed=0 out: the same draws)
    defaults = {"seed": 0, "n": None, **defaults}
    skip = {"name", "root", "split_fingerprint", "content_fingerprint", "binarize", "dequantize"}
    skip |= {"n"} if split != "train" else set()
    skip |= {"seed"} if not is_toy(name) else set()  # the seed draws the toy sets alone: digits (seed=3) is digits
    opts = [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in sorted(spec.items())
            if k not in skip and not (k in defaults and _same(defaults[k], v, k))]
    label = f"{name} ({', '.join(opts)})" if opts else name
    if _binarizes(spec) and _nll_space(result) not in (None, "binarized"):
        # a density scored binarized draws: its space (discrete-as-real) is that of grey levels, which it did not score
        return _with_binarized(label)
    return binarized_label(label, result)


def _binarizes(spec: dict) -> bool:
    """Whether a data recipe binarizes (``binarize`` as :func:`~genzoo.data.load_dataset` reads it: a recipe's
    ``"true"`` too); False where it does not read as a bool."""
    from ..errors import GenZooError
    from ..registry import coerce

    try:
        return bool(coerce(spec.get("binarize") or False, bool, "binarize"))
    except GenZooError:
        return False


def _nll_space(result) -> str | None:
    """The space of ``result``'s likelihood figures where the model scored one of its own (not Parzen's alone, which
    scores the images as stored), else None; None too for a result whose likelihood does not read as one."""
    lik = result.get("likelihood") if isinstance(result, dict) else None
    rows = lik.get("rows") if isinstance(lik, dict) else None
    own = isinstance(rows, list) and any(isinstance(r, dict) and r.get("kind") != "parzen" for r in rows)
    space = lik.get("space") if own else None
    return space if isinstance(space, str) else None


def _with_binarized(label: str) -> str:
    """``label`` with ``binarized`` among its options."""
    return f"{label[:-1]}, binarized)" if label.endswith(")") else f"{label} (binarized)"


def binarized_label(label: str, result: dict | None) -> str:
    """``label`` with ``binarized`` among its options where ``result``'s feature metrics compared the samples with
    binarized test images (``real_binarized``): their figures are not comparable with those against grey images.

    >>> r = {"features": {"real_binarized": True}}
    >>> binarized_label("digits", r), binarized_label("ring (std=0.05)", r), binarized_label("digits", {})
    ('digits (binarized)', 'ring (std=0.05, binarized)', 'digits')
    """
    features = (result or {}).get("features") if isinstance(result, dict) else None
    if not (isinstance(features, dict) and features.get("real_binarized")):
        return label
    return _with_binarized(label)


def _same(default, value, key: str = "") -> bool:
    """Whether a recipe's ``value`` is the option's ``default`` (a list as stored in JSON against a tuple; a mixture's
    ``weights``, which the toy sets take as proportions with None for equal ones, once normalised).

    >>> _same(None, [0.5, 0.5], "weights"), _same(None, [1, 3], "weights"), _same((0.25, 0.75), [1, 3], "weights")
    (True, False, True)
    """
    norm = lambda v: list(v) if isinstance(v, (list, tuple)) else v  # noqa: E731
    if key == "weights" and isinstance(value, (list, tuple)) and value:
        base = [1.0] * len(value) if default is None else default
        try:
            a, b = [float(w) for w in base], [float(w) for w in value]
            if len(a) == len(b) and sum(a) > 0 and sum(b) > 0:
                return all(math.isclose(x / sum(a), y / sum(b), rel_tol=1e-9, abs_tol=1e-12) for x, y in zip(a, b))
        except (TypeError, ValueError):
            pass
    return norm(default) == norm(value)


def compare_table(results: list[tuple[str, dict]], data: list[str] | None = None) -> Table:
    """A :class:`Table` from ``(run name, evaluate() result)`` pairs; ``data``: each run's data label
    (:func:`data_label`; the result's data set name without it, marked as :func:`binarized_label` does). A result
    whose ``"weights"`` (:func:`weights_label`) are a checkpoint's has them beside its run's name; the records (the
    CSV) hold them, the split, and what each run scored (:func:`scored`).

    >>> killed = {"model": "vae", "weights": "checkpoint step 710 of 20,000", "split": "test", "error": {"error": 0.1, "n": 300}}
    >>> t = compare_table([("runs/k", killed)])
    >>> t.rows[0][0], {k: t.records[0][k] for k in ("weights", "split", "n", "n_samples", "iwae_k")}
    ('runs/k (checkpoint step 710 of 20,000)', {'weights': 'checkpoint step 710 of 20,000', 'split': 'test', 'n': 300, 'n_samples': None, 'iwae_k': None})
    """
    summaries = [summary_row(r) for _, r in results]
    data = data or [binarized_label(str(res.get("dataset", "")), res) for _, res in results]
    keep = [(k, h, f) for k, h, f in COLUMNS if any(s.get(k) is not None for s in summaries)]
    header = ["run", "model", "data"] + [h for _, h, _ in keep]
    rows, records = [], []
    for (name, res), s, d in zip(results, summaries, data):
        weights = res.get("weights")
        run = f"{name} ({weights})" if weights not in (None, FINAL) else str(name)
        rows.append([run, res.get("model", ""), d] + [_cell(k, f, s) for k, _, f in keep])
        records.append({"run": str(name), "model": res.get("model", ""), "data": d, **s, "split": res.get("split"),
                        **scored(res, s), "weights": weights})  # (weights last: the older columns keep their places)
    return Table(header, rows, records)


#: the columns of metrics of the model's samples (the rest, the likelihoods and the classification error, score the
#: split's examples alone)
SAMPLE_COLUMNS = tuple(k for k, _, _ in COLUMNS if k not in ("nll", "bits_per_dim", "error"))


def scored(result: dict, row: dict | None = None) -> dict:
    """What one :func:`~genzoo.eval.metrics.evaluate` result scored, as its figures were computed (not as a flag
    asked): ``n``, the split's examples (of the likelihoods and Parzen, else of the classification error, else the
    feature metrics' real images), ``n_samples`` where a metric of samples is among its figures and ``iwae_k`` where
    its NLL figure (``row``: its :func:`~genzoo.eval.metrics.summary_row`) is an IWAE bound; None where it has no such
    figure.

    >>> scored({"n_samples": 500, "likelihood": {"n": 300, "rows": [{"kind": "iwae-10", "nats": 2.0, "bits_per_dim": 1.0}]}})
    {'n': 300, 'n_samples': None, 'iwae_k': 10}
    >>> scored({"n_samples": 500, "features": {"fid": 3.0, "n_real": 300}})
    {'n': 300, 'n_samples': 500, 'iwae_k': None}
    """
    row = summary_row(result) if row is None else row
    sizes = [(result.get(key) or {}).get(field) for key, field in (("likelihood", "n"), ("error", "n"),
                                                                     ("features", "n_real"))]
    kind = str(row.get("nll_kind") or "")
    return {"n": next((v for v in sizes if v is not None), None),
            "n_samples": result.get("n_samples") if any(row.get(k) is not None for k in SAMPLE_COLUMNS) else None,
            "iwae_k": int(kind[5:]) if kind.startswith("iwae-") and kind[5:].isdigit() else None}


def scored_caption(table: Table, split: str, n: int | None = None) -> str:
    """The sentence below a table saying what was scored (``n``: the ``-n`` asked, None for every example), from what
    its runs scored (:func:`scored`): the split's examples where a figure scored them, the samples where a metric of
    samples is among the figures, the IWAE k where a figure is an IWAE bound.

    >>> t = Table([], [], [{"n": 300, "n_samples": None, "iwae_k": None}])
    >>> scored_caption(t, "test", 100_000), scored_caption(t, "test", 300)   # an -n beyond the split: what was scored
    ('Scored on the test split (all its 300 examples).', 'Scored on the test split (300 of its examples).')
    >>> scored_caption(Table([], [], [{"n": None, "n_samples": 500, "iwae_k": None}]), "test")
    'Scored on the test split (500 samples for the metrics of samples).'
    >>> scored_caption(Table([], [], [{"n": None, "n_samples": 10_000, "iwae_k": None, "modes": "8/8"}]), "test")
    'Scored on the test split (10,000 samples for the metrics of samples, mode coverage on the first 2,500).'
    """
    def values(key):
        return sorted({r[key] for r in table.records if r.get(key) is not None})

    sizes, parts = values("n"), []
    if len(sizes) == 1:
        parts.append(f"all its {sizes[0]:,} examples" if n is None or sizes[0] < n else f"{sizes[0]:,} of its examples")
    elif sizes:  # runs of data sets of other sizes
        parts.append("all its examples" if n is None or max(sizes) < n else f"at most {n:,} of its examples")
    if samples := values("n_samples"):
        from .modes import SAMPLES  # mode coverage scores the protocol's first 2,500 of them

        modes = sorted({min(SAMPLES, r["n_samples"]) for r in table.records if r.get("modes") is not None
                        and r.get("n_samples") is not None})
        of = f", mode coverage on the first {' or '.join(f'{v:,}' for v in modes)}" if modes else ""
        parts.append(f"{' or '.join(f'{v:,}' for v in samples)} samples for the metrics of samples{of}")
    if ks := values("iwae_k"):
        parts.append(f"IWAE k = {' or '.join(f'{v:,}' for v in ks)}")
    return f"Scored on the {split} split" + (f" ({'; '.join(parts)})." if parts else ".")


#: :func:`weights_label` of a folder's own final weights
FINAL = "final"


BEST = "lowest validation loss"
CHECKPOINT = "checkpoint step"


def best_label(folder) -> str | None:
    """Where ``folder`` is a run's ``best/`` (its ``best.json``: :class:`~genzoo.train.callbacks.BestWeights`), the
    label of its weights, :data:`BEST` with their step where the record gives it; else None. Its own
    ``model.safetensors`` are not a run's final weights (:func:`weights_label` alone would call them so).

    >>> import json, tempfile
    >>> best = Path(tempfile.mkdtemp()); none = best_label(best)
    >>> _ = (best / "best.json").write_text(json.dumps({"step": 7000, "epoch": 1.5, "valid_loss": 99.1}))
    >>> none, best_label(best)
    (None, 'lowest validation loss, step 7,000')
    """
    from ..errors import CheckpointError
    from ..io import read_json

    record = Path(folder) / "best.json"
    if not record.is_file():
        return None
    try:
        step = read_json(record, "best-weights record").get("step")
    except (CheckpointError, OSError, AttributeError):  # damaged, or not a dict: the weights are still the best's
        step = None
    return BEST + (f", step {step:,}" if isinstance(step, int) and not isinstance(step, bool) else "")


def weights_label(stamp, train: dict | None = None) -> str | None:
    """Which weights an evaluation scored, from their :func:`genzoo.io.weights_stamp` (the file that
    :func:`genzoo.io.weights_file` picks, as :func:`genzoo.io.load` does): :data:`FINAL` for the folder's own
    ``model.safetensors``; for a checkpoint's (a run stopped before its end, or still training, has no final weights)
    ``checkpoint step N``, with the planned length where the run's ``[train]`` recipe ``train`` records it; None
    where ``stamp`` names no weights.

    >>> ckpt = ["checkpoints/step-00000710/model.safetensors", 305104, "aab4"]
    >>> weights_label(ckpt, {"steps": 20000}), weights_label(ckpt, {"epochs": 2.5}), weights_label(ckpt)
    ('checkpoint step 710 of 20,000', 'checkpoint step 710 (of 2.5 epochs)', 'checkpoint step 710')
    >>> weights_label(["model.safetensors", 305104, "aab4"], {"steps": 20000}), weights_label(None)
    ('final', None)
    """
    from ..io import CHECKPOINTS, WEIGHTS

    if not isinstance(stamp, (list, tuple)) or not stamp or not isinstance(stamp[0], str):
        return None
    parts = Path(stamp[0]).parts
    if parts == (WEIGHTS,):
        return FINAL
    if len(parts) != 3 or parts[0] != CHECKPOINTS or not parts[1].startswith("step-") or not parts[1][5:].isdigit():
        return None
    label = f"{CHECKPOINT} {int(parts[1][5:]):,}"
    train = train if isinstance(train, dict) else {}
    steps, epochs = train.get("steps"), train.get("epochs")
    if isinstance(steps, int) and not isinstance(steps, bool) and steps > 0:
        return f"{label} of {steps:,}"
    if isinstance(epochs, (int, float)) and not isinstance(epochs, bool) and epochs > 0:
        return f"{label} (of {epochs:g} epochs)"
    return label


def write_table(table: Table, prefix: str | Path, caption: str = "") -> list[Path]:
    """Write ``PREFIX.md`` (the table, then ``caption`` where given) and ``PREFIX.csv`` (atomically); return the two
    paths."""
    from ..errors import ConfigError
    from ..io import atomic_write_bytes

    prefix = Path(prefix)
    if prefix.parent and not prefix.parent.exists():
        raise ConfigError(f"output folder {prefix.parent} does not exist")
    paths = [prefix.with_name(prefix.name + ".md"), prefix.with_name(prefix.name + ".csv")]
    atomic_write_bytes(paths[0], (table.markdown + "\n" + (f"\n{caption}\n" if caption else "")).encode())
    atomic_write_bytes(paths[1], table.csv.encode())
    return paths
