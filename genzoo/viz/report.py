"""Pictures a person would rather look at than read: the training-evolution GIF and one self-contained
``report.html`` per run (samples, evolution, loss curves, metrics, and any interpolation, inpainting or
density pictures the run holds), every image embedded as a data URI, so the file opens in a browser
with no server and links nothing outside itself.

>>> import genzoo, tempfile
>>> from genzoo.data import load_dataset
>>> run = tempfile.mkdtemp()
>>> vae = genzoo.build("vae", data_shape=(1, 8, 8), latent_dim=2, hidden=(16,))
>>> _ = genzoo.fit(vae, load_dataset("digits", binarize=True), steps=40, run_dir=run, sample_every=20, progress=False)
>>> evolution_gif(run).name, write_report(run).name
('evolution.gif', 'report.html')
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import shlex
from pathlib import Path

from ..errors import CheckpointError
from ..io import (WEIGHTS, atomic_write_bytes, cut_short_note, is_run_dir, latest_checkpoint, loads, picture_source,
                  read_json, read_pictures_record, same_weights, sample_grids, weights_file, weights_stamp)

#: pictures other commands leave in a run directory, shown when present: (file, heading, the command that makes
#: it); ``RUN/pictures.json`` records the weights each was made from and the command line that made it, with its
#: flags, which the report gives in place of this one (:func:`~genzoo.io.record_picture`)
EXTRA_PICTURES = [("density.png", "Density (model beside truth)", "train --resume --run-dir RUN"),
                  ("interpolation.png", "Latent interpolation", "interpolate"),
                  ("arithmetic.png", "Latent vector arithmetic", "interpolate --arithmetic A-B+C"),
                  ("inpaint.png", "Inpainting: image, masked, filled, blended", "inpaint"),
                  ("samples.png", "Samples (genzoo sample)", "sample")]


def _own_grids(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of the sample grids ``samples/step-NNNNNNNN.png`` that training wrote, by step
    (:func:`~genzoo.io.sample_grids`), links left out: the report and its GIF show the run's own files only (a link
    there put any image of the user's into a report made to be shared; review r121 F6)."""
    return [(step, p) for step, p in sample_grids(run_dir) if not p.is_symlink()]


def _frames(run_dir: Path) -> list[Path]:
    """The paths of :func:`_own_grids`."""
    return [p for _, p in _own_grids(run_dir)]


def _png(image) -> bytes:
    """A Pillow image as PNG bytes: what the report embeds of a picture, its pixels and nothing else of its file."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


#: the most pixels of one sample grid a GIF takes (a PNG of one colour 9,400 pixels square is 32 KB on disk and 265 MB
#: once decoded; training's grids of 520 x 520 images are 4,169 pixels square, 17 M), and the most its frames may hold
#: in all, each padded to the largest: past that the GIF shows fewer grids, evenly spaced
MAX_FRAME_PIXELS, MAX_GIF_PIXELS = 50_000_000, 100_000_000


def _open_frame(path: Path, size_only: bool = False):
    """The grid at ``path`` in RGB, or only its (width, height), read from the header without decoding the pixels."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.width * im.height > MAX_FRAME_PIXELS:
                raise CheckpointError(f"sample grid {path} is {im.width} x {im.height} pixels, more than the "
                                      f"{MAX_FRAME_PIXELS:,} a GIF takes: remove it or train again")
            return im.size if size_only else im.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise CheckpointError(f"sample grid {path} cannot be read ({type(e).__name__}): remove it or train again") from None


def _extra_picture(path: Path) -> tuple[bytes | None, str | None]:
    """A picture another command left in the run (``samples.png``, ``inpaint.png`` ...) as the PNG bytes of its pixels
    for the report to embed (nothing else of the file: bytes after its image made a report of any size; review r121
    F7), or None and why not: a link (a run folder from elsewhere could point it at any file of the user, which the
    report, made to be shared, would carry in base64: audit a138 F3), a file that is no PNG, or one of more than
    :data:`MAX_FRAME_PIXELS` pixels."""
    from PIL import Image, UnidentifiedImageError

    if path.is_symlink():
        return None, f"it is a symlink (to {os.readlink(path)}), and the report embeds only the run's own files"
    try:
        with Image.open(path) as im:
            if im.format != "PNG":
                return None, f"it is no PNG (a {im.format} image)"
            if im.width * im.height > MAX_FRAME_PIXELS:
                return None, f"it is {im.width} x {im.height} pixels, more than the {MAX_FRAME_PIXELS:,} a report shows"
            return _png(im), None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        return None, f"it cannot be read as an image ({type(e).__name__})"


def evolution_gif(run_dir: str | os.PathLike, out: str | os.PathLike | None = None, ms_per_frame: int = 400) -> Path:
    """``RUN/evolution.gif``: the fixed-noise sample grids of ``RUN/samples/`` in step order, the last one
    held three times as long. Raises CheckpointError when the run has no sample grids."""
    run_dir = Path(run_dir)
    own, out = out is None, Path(out) if out else run_dir / "evolution.gif"
    atomic_write_bytes(out, _gif(run_dir, ms_per_frame), own=own)
    return out


#: the most grids an evolution GIF shows (evenly spaced, the last included): each frame is held in memory
MAX_GIF_FRAMES = 200


def _shown(frames: list[Path]) -> list[Path]:
    """The grids a GIF shows: all, or evenly spaced ones (the first and the last among them) where there are more than
    :data:`MAX_GIF_FRAMES` or their pixels, each padded to the largest, would pass :data:`MAX_GIF_PIXELS`."""
    sizes = [_open_frame(p, size_only=True) for p in frames]  # (headers only: no pixels decoded yet)
    padded = max(w for w, _ in sizes) * max(h for _, h in sizes)
    most = max(2, min(MAX_GIF_FRAMES, MAX_GIF_PIXELS // padded))  # 5,000 grids of a long run would take gigabytes
    if len(frames) <= most:
        return frames
    return [frames[round(i * (len(frames) - 1) / (most - 1))] for i in range(most)]


def _gif(run_dir: Path, ms_per_frame: int = 400, shown: list[Path] | None = None) -> bytes:
    """The bytes of :func:`evolution_gif`'s animation: every grid, or evenly spaced ones (``shown``, else
    :func:`_shown` of the run's grids)."""
    if shown is None:
        frames = _frames(run_dir)
        if not frames:
            raise CheckpointError(f"{run_dir} has no sample grids (samples/step-*.png): train with --sample-every N")
        shown = _shown(frames)
    images = [_open_frame(p) for p in shown]
    images = _padded(images)
    buf = io.BytesIO()
    durations = [ms_per_frame] * (len(images) - 1) + [3 * ms_per_frame]
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=durations, loop=0)
    return buf.getvalue()


def _padded(images: list) -> list:
    """Frames of one size for a GIF: each centred on a white canvas of the largest width and height. A run's
    image grids share a size; its 2-D scatters differ by a few pixels (matplotlib's tight bounding box), and
    resizing them would change their scale from frame to frame."""
    from PIL import Image

    W, H = max(im.width for im in images), max(im.height for im in images)
    out = []
    for im in images:
        if im.size != (W, H):
            canvas = Image.new("RGB", (W, H), "white")
            canvas.paste(im, ((W - im.width) // 2, (H - im.height) // 2))
            im = canvas
        out.append(im)
    return out


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def _img(data: bytes, mime: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="{_data_uri(data, mime)}">'


def _panels(keys: list[str], same_loss: bool = True) -> list[tuple[str, str | None]]:
    """The loss-curve panels for the logged ``keys``: (term, its validation twin or None), every training term
    with ``valid_TERM`` beside it (``valid_loss`` beside ``loss`` only where ``same_loss``), then the validation
    terms that have no twin, on their own.

    >>> _panels(["loss", "unlabelled", "valid_loss", "valid_unlabelled"], same_loss=False)
    [('loss', None), ('unlabelled', 'valid_unlabelled'), ('valid_loss', None)]
    """
    train = [k for k in keys if not k.startswith("valid_")]
    twins = {k: f"valid_{k}" for k in train if f"valid_{k}" in keys and (k != "loss" or same_loss)}
    alone = [k for k in keys if k.startswith("valid_") and k not in twins.values()]
    return [(k, twins.get(k)) for k in train] + [(k, None) for k in alone]


def _points(rows: list[dict], key: str) -> tuple[list, list]:
    """(steps, values) of the rows whose ``key`` is a number (bool aside), as floats: a value edited by hand into a
    string or a dict made matplotlib plot categories, or raise ("a bug in genzoo").

    >>> _points([{"step": 1, "loss": 2.0}, {"step": 2, "loss": "x"}, {"step": 3, "loss": {"a": 1}}, {"step": 4}], "loss")
    ([1.0], [2.0])
    """
    pts = [(_float(r["step"]), _float(r[key])) for r in rows
           if isinstance(r.get(key), (int, float)) and not isinstance(r[key], bool)]
    return [s for s, _ in pts], [v for _, v in pts]


def _float(v: int | float) -> float:
    """``v`` as a float, an integer past the float range as an infinity (matplotlib's float conversion raised on a
    value of 10^400 edited into metrics.jsonl: audit a138 F1).

    >>> _float(3), _float(10 ** 400), _float(-10 ** 400)
    (3.0, inf, -inf)
    """
    try:
        return float(v)
    except OverflowError:
        return math.inf if v > 0 else -math.inf


#: loss panels a row of the report's curves holds
MAX_PANELS_A_ROW = 4


def _curves(run_dir: Path, same_loss: bool = True, step: str = "step") -> bytes | None:
    """A PNG of every logged loss term against the step (training and validation; a validation term beside its
    training twin, ``valid_loss`` beside ``loss`` only where they are one quantity, ``same_loss``), or None;
    ``step`` names the x axis (an EM iteration is a step of the GMM)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        try:  # a line cut short by a killed run, or edited by hand, is left out of the curves
            row = loads(line)
        except ValueError:  # a JSONDecodeError, or an integer past Python's 4,300 digits
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), (int, float)):
            rows.append(row)
    skip = {"step", "epoch", "lr", "examples_per_s"}
    keys = sorted({k for r in rows for k, v in r.items() if k not in skip and isinstance(v, (int, float))})
    if not keys:
        return None
    from .plots import figure

    panels = _panels(keys, same_loss)
    cols = min(len(panels), MAX_PANELS_A_ROW)  # rows of at most 4: M2's 9 terms in one row made a page 29 inches wide
    rows_n = -(-len(panels) // cols)
    fig = figure((3.2 * cols, 2.6 * rows_n))  # a bare figure: the caller's pyplot backend and figures left alone
    axes = fig.subplots(rows_n, cols, squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (k, twin) in zip(axes.flat, panels):
        steps, values = _points(rows, k)
        # a training term's points with no finite neighbour get a marker: a line through one point draws nothing,
        # and a run of up to log_every steps logs one row (its panels were empty)
        lone = [] if k.startswith("valid_") else _lone(values)
        ax.plot(steps, values, *(("o-",) if k.startswith("valid_") else ()), ms=3, lw=1,
                label="valid" if k.startswith("valid_") else "train",
                **({"marker": "o", "markevery": lone} if lone else {}))
        if twin and (valid := _points(rows, twin))[0]:
            ax.plot(*valid, "o-", ms=3, lw=1, label="valid")
            ax.legend(fontsize=7)
        ax.set_title(k, fontsize=9, parse_math=False)  # a term named with two "$" is not mathtext
        ax.set_xlabel(step, fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return buf.getvalue()


def _lone(values: list) -> list[int]:
    """The indices of the finite ``values`` whose neighbours are missing or not finite: a line draws no segment
    through them.

    >>> _lone([2.0]), _lone([1.0, 2.0, float("nan"), 3.0, float("nan")]), _lone([1, 2])
    ([0], [3], [])
    """
    ok = [v == v and abs(v) != float("inf") for v in values]  # not math.isfinite: it raises on an int beyond 1e308
    return [i for i, f in enumerate(ok) if f and not (i > 0 and ok[i - 1]) and not (i + 1 < len(ok) and ok[i + 1])]


def _family(model_name: str):
    """The model family's class, or the base class for an unknown name (its defaults: one validation loss that is
    the training loss, steps of a gradient method)."""
    from ..base import GenerativeModel
    from ..errors import GenZooError
    from ..registry import get

    try:
        return get(model_name)
    except GenZooError:
        return GenerativeModel


#: eval's flags by the name eval.json's ``asked`` records them under (:func:`_eval_again`)
EVAL_FLAGS = {"metrics": "--metrics", "split": "--split", "n": "-n", "n_samples": "--n-samples", "iwae_k": "--iwae-k",
              "seed": "--seed", "batch_size": "--batch-size", "parzen_sigmas": "--parzen-sigmas"}


def _eval_again(asked: dict) -> str:
    """``eval`` with the flags of the evaluation ``asked`` recorded (eval.json's ``asked``) where they are not the
    defaults: the report's advice to evaluate again, which a plain ``genzoo eval`` would answer with the default
    metrics, replacing FID and the rest of an ``--metrics all`` evaluation.

    >>> _eval_again({"metrics": "all", "split": "test", "n": 500, "parzen_sigmas": [0.1, 0.2], "seed": 0})
    'eval --metrics all -n 500 --parzen-sigmas 0.1,0.2'
    """
    from ..cli import EVAL_DEFAULTS  # (the defaults of genzoo eval's flags, once)

    defaults = {"metrics": "auto", "split": "test", "seed": 0, **EVAL_DEFAULTS}
    flags = []
    for key, flag in EVAL_FLAGS.items():
        value = asked.get(key, defaults[key])
        if value is None or value == defaults[key]:
            continue
        if isinstance(value, (list, tuple)):  # (sigmas: numbers; anything else in an edited file as it is)
            value = ",".join(f"{v:g}" if isinstance(v, (int, float)) and not isinstance(v, bool) and
                             abs(v) < 1e300 else str(v) for v in value)
        flags.append(f"{flag} {shlex.quote(str(value))}")
    return " ".join(["eval", *flags])


def _command(command: str | list[str], run_dir: str | os.PathLike) -> str:
    """``genzoo COMMAND RUN`` as HTML code a shell takes back as it is pasted (the run's path quoted: a folder
    named ``my run`` gave ``genzoo eval my run``); ``RUN`` in ``command`` is the run's place, else it comes last.
    A list is a recorded command line (:func:`~genzoo.io.record_picture`), each of its words quoted.

    >>> _command("eval", "runs/my run"), _command("train --resume --run-dir RUN", "r&d")
    ('<code>genzoo eval &#x27;runs/my run&#x27;</code>', '<code>genzoo train --resume --run-dir &#x27;r&amp;d&#x27;</code>')
    >>> _command(["interpolate", "RUN", "--arithmetic", "1-2+3 "], "r")
    '<code>genzoo interpolate r --arithmetic &#x27;1-2+3 &#x27;</code>'
    """
    run = shlex.quote(str(run_dir))
    words = command.split() if isinstance(command, str) else [shlex.quote(w) for w in command]
    text = " ".join(run if w == "RUN" else w for w in words) if "RUN" in words else f"{' '.join(words)} {run}"
    return f"<code>genzoo {html.escape(text)}</code>"


def _metrics_table(result: dict | None, run_dir: str | os.PathLike = "RUN", weights: bool = True) -> str:
    """A run's eval.json as an HTML table (every number it holds), or a hint to run genzoo eval on ``run_dir`` (where
    it has ``weights`` to score: eval refuses a run without them)."""
    if result is None and not weights:
        return f"<p>No metrics: no weights yet ({NO_WEIGHTS}).</p>"
    if result is None:
        return f"<p>No metrics yet: run {_command('eval', run_dir)} (or <code>--metrics all</code>) and report again.</p>"
    from ..eval.likelihood import format_stderr
    from ..eval.metrics import format_result
    if "metrics" not in result:  # an eval.json of an older genzoo: the likelihood report alone
        result = {"likelihood": result, "split": result.get("split", "test")}
    rows = []
    for r in result.get("likelihood", {}).get("rows", []):
        bpd = "" if r["bits_per_dim"] is None else f"{r['bits_per_dim']:.4f}"
        rows.append((r["metric"], r["kind"], f"{r['nats']:.3f} +- {format_stderr(r['stderr'])}", bpd))
    f = result.get("features", {})
    for key in ("fid", "kid", "precision", "recall", "density", "coverage", "is"):
        if key in f:
            spread = f" (sd {f['kid_std']:.4g} over subsets)" if key == "kid" and "kid_std" in f else ""  # not a s.e.
            rows.append((key.upper() if key in ("fid", "kid", "is") else key, "features", f"{f[key]:.4g}{spread}", ""))
    if "modes" in result:
        m = result["modes"]
        rows.append(("modes captured", "modes", f"{m['modes']}/{m['n_modes']}", f"{100 * m['high_quality']:.1f}% high quality"))
        rows.append(("reverse KL of the mode histogram", "modes", f"{m['reverse_kl']:.3f}",
                     "nats; 0 is the mixture's own mode shares"))
    if "error" in result:
        rows.append(("classification error", "error", f"{100 * result['error']['error']:.2f}%", ""))
    cells = "".join(f"<tr><td>{html.escape(a)}</td><td>{html.escape(b)}</td><td>{html.escape(c)}</td><td>{html.escape(d)}</td></tr>"
                    for a, b, c, d in rows)
    table = (f'<table id="metrics"><thead><tr><th>metric</th><th>kind</th><th>value (nats where a likelihood)</th>'
             f"<th>bits/dim or note</th></tr></thead><tbody>{cells}</tbody></table>")
    scored = [f"the {result.get('split', 'test')} split" + (f" of {result['dataset']}" if result.get("dataset") else "")]
    if isinstance(result.get("likelihood"), dict) and "n" in result["likelihood"]:
        scored.append(f"likelihoods on {result['likelihood']['n']:,} examples")
    if f and result.get("n_samples"):
        real = "binarized images" if f.get("real_binarized") else "images"  # (as genzoo eval prints it)
        scored.append(f"features of {result['n_samples']:,} samples against {f.get('n_real', 0):,} {real}")
    table = f'<p class="meta">Scored on {html.escape("; ".join(scored))}.</p>' + table
    return table + f"<details><summary>as printed by genzoo eval</summary><pre>{html.escape(format_result(result))}</pre></details>"


#: why a run has no weights (a model file or a checkpoint), as the report says it
NO_WEIGHTS = "stopped before its first checkpoint, or still training"


def _weights_line(run_dir: Path, newest_grid: int | None) -> str:
    """The report's line on the weights that ``genzoo sample``, ``eval``, ``interpolate`` and ``inpaint`` use
    (:func:`~genzoo.io.weights_file`'s choice): the final ones, or the newest checkpoint's of a run stopped before its
    end or still training, or none; and whether the newest sample grid (of step ``newest_grid``) is of later
    weights than those. The step of final weights is their run's newest checkpoint's (training writes one at its
    last step; a saved model has none)."""
    from ..eval.compare import best_label

    weights = weights_file(run_dir)
    if weights is None:
        if note := cut_short_note(run_dir):  # (the line is HTML: the note names the run's folder)
            return f"weights: none to read ({html.escape(note)})"
        return f"weights: none yet ({NO_WEIGHTS})"
    if (best := best_label(run_dir)) is not None:  # a run's best/ (review 109: it read "final")
        return f"weights: those of the {best}"
    ckpt = latest_checkpoint(run_dir)
    step = int(ckpt.name[5:]) if ckpt is not None else None
    if weights == run_dir / WEIGHTS:
        line = "weights: final" + (f" (step {step:,})" if step is not None else "")
    else:
        line = (f"weights: newest checkpoint, step {step:,} (no final weights: still training, or stopped before its "
                f"end, which {_command('train --resume --run-dir RUN', run_dir)} continues)")
        if note := cut_short_note(run_dir):  # a newer checkpoint, left aside by a save cut short
            line += f"; {html.escape(note)}"
    if newest_grid is not None and step is not None and newest_grid > step:
        line += f"; the newest sample grid, of step {newest_grid:,}, shows later weights than these"
    return line


def _is_best(run_dir: Path) -> bool:
    """Whether ``run_dir`` is a run's ``best/`` (:class:`~genzoo.train.callbacks.BestWeights`)."""
    return (run_dir / "best.json").is_file()


STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
img{image-rendering:pixelated;max-width:100%;border:1px solid #eee}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:.25em .6em;font-size:.9em;text-align:left}code,pre{background:#f6f6f6}
pre{padding:.6em;overflow-x:auto}.meta{color:#555;font-size:.9em}"""


def write_report(run_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Write ``RUN/report.html`` and ``RUN/evolution.gif`` (or only ``out``): one file, images inline, nothing
    linked."""
    run_dir = Path(run_dir)
    if not is_run_dir(run_dir):
        raise CheckpointError(f"not a genzoo run: {run_dir} has no config.json beside weights, checkpoints or a run.json")
    config = read_json(run_dir / "config.json", "model config")  # every file read, and checked, before any is written
    run = read_json(run_dir / "run.json", "run file") if (run_dir / "run.json").is_file() else {}
    result = read_json(run_dir / "eval.json", "evaluation file") if (run_dir / "eval.json").is_file() else None
    from ..eval.metrics import METRICS_VERSION

    asked = (result or {}).get("asked") if isinstance(result, dict) else None  # what eval recorded it scored
    asked = asked if isinstance(asked, dict) else {}
    older = result is not None and asked.get("metrics_version") != METRICS_VERSION  # an older genzoo's metrics
    stamp = weights_stamp(run_dir)
    changed = asked.get("weights") is not None and not same_weights(asked["weights"], stamp)  # trained further since
    made = read_pictures_record(run_dir)
    grids = _own_grids(run_dir)
    weights_line, has_weights = _weights_line(run_dir, grids[-1][0] if grids else None), weights_file(run_dir) is not None
    try:
        table = _metrics_table(result, run_dir, weights=has_weights)
    except (AttributeError, KeyError, TypeError, ValueError, OverflowError) as e:  # (a 400-digit integer)
        raise CheckpointError(f"{run_dir / 'eval.json'} is not a genzoo evaluation file ({type(e).__name__}: {e})") from None
    name = str(config.get("model", "model"))
    recipe = run.get("recipe") if isinstance(run.get("recipe"), dict) else {}
    data = str(recipe.get("data", {}).get("name", "")) if isinstance(recipe.get("data"), dict) else ""
    parts = [f"<h1>genzoo report: {html.escape(name)}{' on ' + html.escape(data) if data else ''}</h1>",
             f'<p class="meta">run <code>{html.escape(str(run_dir))}</code>'
             + (f"; command <code>{html.escape(shlex.join(map(str, run['command'])))}</code>"
                + (f" on {int(run['world_size'])} processes" if isinstance(run.get("world_size"), int)
                   and run["world_size"] > 1 else "")
                if isinstance(run.get("command"), list) else "")
             + (f"; created {html.escape(str(run['created']))}" if run.get("created") else "") + "</p>",
             f'<p class="meta" id="weights">{weights_line}</p>']
    frames = [p for _, p in grids]
    if frames:
        parts += [f"<h2>Samples at step {grids[-1][0]:,}</h2>",
                  _img(_png(_open_frame(frames[-1])), "image/png", "samples")]  # (its pixels, as a PNG)
        shown_frames = _shown(frames)
        gif = _gif(run_dir, shown=shown_frames)
        if out is None:  # the report in the run: the animation beside it too (a report elsewhere writes one file)
            atomic_write_bytes(run_dir / "evolution.gif", gif, own=True)
        n = len(shown_frames)
        shown = f"{n} of {len(frames)} grids" if n < len(frames) else f"{n} grid{'s' * (n != 1)}"
        parts += [f"<h2>Training evolution ({shown} from the same noise)</h2>",
                  _img(gif, "image/gif", "training evolution")]
    elif not (run_dir / "samples.png").is_file() and has_weights and not _is_best(run_dir):  # (samples.png: shown
        # below, as genzoo sample's; a best/ folder, which training rewrites, takes no samples.png of sample's)
        train = recipe.get("train") if isinstance(recipe.get("train"), dict) else {}
        why = " (trained with --sample-every 0)" if train.get("sample_every") == 0 else ""
        parts.append(f"<p>No sample grids{why}: {_command('sample', run_dir)} makes samples.png, which the report "
                     "shows.</p>")
    family = _family(name)
    curves = _curves(run_dir, family.valid_loss_is_training_loss, "EM iteration" if family.full_batch else "step")
    if curves:
        parts += ["<h2>Loss curves</h2>", _img(curves, "image/png", "loss curves")]
    parts += ["<h2>Metrics</h2>"]
    if older or changed:
        why = ("the run's weights have changed since they were computed" if changed else
               "they were computed by an older genzoo, whose metrics have changed since")
        parts.append(f'<p class="stale"><strong>These metrics may be out of date: {why}. Run '
                     f"{_command(_eval_again(asked), run_dir)} again.</strong></p>")
    parts.append(table)
    for file, heading, command in EXTRA_PICTURES:
        if (run_dir / file).is_file():
            parts.append(f"<h2>{html.escape(heading)}</h2>")
            weights, remake = picture_source(made.get(file))  # remake: the command line that made it, its flags too
            if weights is not None and not same_weights(weights, stamp):  # sample/inpaint/...: other weights
                parts.append(f'<p class="stale"><strong>Made from other weights than the run\'s: run '
                             f"{_command(remake or command, run_dir)} again.</strong></p>")
            picture, why_not = _extra_picture(run_dir / file)
            parts.append(_img(picture, "image/png", file) if picture is not None else
                         f'<p class="stale">{html.escape(file)} is not shown: {html.escape(why_not)}.</p>')
    parts.append(f'<h2>Configuration</h2><pre>{html.escape(json.dumps(config, indent=2))}</pre>')
    doc = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>genzoo: {html.escape(name)}</title>'
           f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>\n")
    own, out = out is None, Path(out) if out else run_dir / "report.html"
    try:
        data = doc.encode("utf-8", "surrogateescape")  # a folder name's bytes that are not UTF-8, kept
    except UnicodeEncodeError:  # a lone surrogate no name's bytes give (a run.json edited to hold "\ud800"): escaped
        data = doc.encode("utf-8", "backslashreplace")
    atomic_write_bytes(out, data, own=own)
    return out
