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


def data_label(spec: dict, split: str = "test") -> str:
    """A run's data as the table names it: the data set and the options of its recipe, other than their defaults,
    that change which points are scored (not its folder or fingerprints, nor its size but where the training split
    is scored, nor binarization or dequantization, which the likelihood's space names and the sample metrics do
    not see), so that runs scored on different data are told apart.

    >>> data_label({"name": "ring", "std": 0.05, "n": 50000}), data_label({"name": "mnist", "binarize": True, "root": "d"})
    ('ring (std=0.05)', 'mnist')
    >>> data_label({"name": "ring", "std": 0.01})                  # the default, written out
    'ring'
    """
    from ..data import dataset_options
    from ..errors import GenZooError

    try:
        defaults = dataset_options(str(spec.get("name", "")))
    except GenZooError:  # a data set no longer known here: every option shown
        defaults = {}
    skip = {"name", "root", "split_fingerprint", "content_fingerprint", "binarize", "dequantize"}
    skip |= {"n"} if split != "train" else set()
    opts = [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in sorted(spec.items())
            if k not in skip and not (k in defaults and _same(defaults[k], v))]
    return f"{spec.get('name', '')} ({', '.join(opts)})" if opts else str(spec.get("name", ""))


def _same(default, value) -> bool:
    """Whether a recipe's ``value`` is the option's ``default`` (a list as stored in JSON against a tuple)."""
    norm = lambda v: list(v) if isinstance(v, (list, tuple)) else v  # noqa: E731
    return norm(default) == norm(value)


def compare_table(results: list[tuple[str, dict]], data: list[str] | None = None) -> Table:
    """A :class:`Table` from ``(run name, evaluate() result)`` pairs; ``data``: each run's data label
    (:func:`data_label`; the result's data set name without it)."""
    summaries = [summary_row(r) for _, r in results]
    data = data or [res.get("dataset", "") for _, res in results]
    keep = [(k, h, f) for k, h, f in COLUMNS if any(s.get(k) is not None for s in summaries)]
    header = ["run", "model", "data"] + [h for _, h, _ in keep]
    rows, records = [], []
    for (name, res), s, d in zip(results, summaries, data):
        rows.append([str(name), res.get("model", ""), d] + [_cell(k, f, s) for k, _, f in keep])
        records.append({"run": str(name), "model": res.get("model", ""), "data": d, **s})
    return Table(header, rows, records)


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
