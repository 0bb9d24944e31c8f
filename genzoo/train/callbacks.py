"""Callbacks of :func:`genzoo.fit`: each does one thing at ``on_start`` / ``on_step_end`` / ``on_end``.

Order matters and is fixed by ``default_callbacks``: the divergence guard runs first, so a step
whose loss is NaN raises before anything is written; checkpoints run last among the writers.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import sys
import time
import warnings
from collections import deque
from pathlib import Path

import torch

from ..base import evaluating, forked_rng
from ..errors import GenZooError, GenZooWarning, TrainingDiverged, WriteError
from ..io import (CHECKPOINTS, CONFIG, DIVERGED, WEIGHTS, atomic_write_bytes, atomic_write_json, checkpoint_dirs, dumps,
                  prune_checkpoints, read_json, refuse_link, remove, replace_folder, restore_folder, sample_grids,
                  save_checkpoint, set_aside, write_model)
from . import distributed


class Callback:
    """A hook of :func:`genzoo.fit`: ``on_start(state)`` before the first step, ``on_step_end(state, logs)`` after
    each step (``state.step`` already counts it; ``logs`` holds the model's loss terms as floats) and
    ``on_end(state)`` once training stops. ``state`` is the :class:`~genzoo.train.loop.TrainState`. Each hook does
    nothing by default; callbacks given to ``fit`` run after its own (guard, logger, grids, checkpoints, bar).

    >>> import genzoo
    >>> from genzoo.data import load_dataset
    >>> class Losses(Callback):
    ...     def on_start(self, state): self.seen = []
    ...     def on_step_end(self, state, logs): self.seen.append((state.step, logs["loss"], logs["log_likelihood"]))
    >>> cb = Losses()
    >>> gmm = genzoo.build("gmm", data_shape=(2,), n_components=4)
    >>> _ = genzoo.fit(gmm, load_dataset("ring", n=500), steps=3, callbacks=[cb], progress=False)
    >>> [s for s, _, _ in cb.seen], all(loss == -ll for _, loss, ll in cb.seen)
    ([1, 2, 3], True)
    """

    def on_start(self, state) -> None: ...

    def on_step_end(self, state, logs: dict[str, float]) -> None: ...

    def on_end(self, state) -> None: ...


class DivergenceGuard(Callback):
    """Stop with :class:`TrainingDiverged` when the loss is NaN/inf, or explodes for ``patience`` steps in a
    row: larger than ``factor`` times the median absolute loss of the last ``window`` ordinary steps (plus
    one). One outlying batch (a flow meeting a point far in a sharp density's tail) is let through, and
    left out of the median. Before ``window`` steps are in, from the second step on, the bar is ``early``
    times the median instead: a loss that explodes at once (a GAN at lr 1e3 runs to 1e34) is measured against
    the steps before it rather than taken for the typical one, while early training's own spikes pass (the
    32-coupling RealNVP on the ring spikes to 4e4-8e5 times its first losses between steps 30 and 45 in four
    seeds, and to about 1e7 times in a run through the CLI, then recovers). Its
    history is checkpointed (``state.guard``), so a resumed run is watched as the uninterrupted one is; while it
    counts a spike (``state.guard["run"] > 0``) :class:`Checkpoint` holds its writes back. At the last step it
    also checks the weights (:func:`nonfinite_weight`): an update can break them with a finite loss, and a run
    with no ``run_dir`` has no checkpoint to check them before ``fit`` returns them.

    The loss logged at step k is that of the weights before update k, the checkpoint of step k - 1's: where the
    loss first breaks at step s (NaN, or the first of the exploding steps; a NaN that ends a spike the guard was
    counting, the spike's first step), the checkpoints from step s - 1 on hold the weights that broke it. The
    error names the newest checkpoint before them as the last good one, and sets them aside (:func:`kept`).

    >>> from types import SimpleNamespace
    >>> guard, state = DivergenceGuard(window=5), SimpleNamespace(step=2, run_dir=None, optimizers=[])
    >>> guard.on_step_end(state, {"loss": float("nan")})
    Traceback (most recent call last):
    ...
    genzoo.errors.TrainingDiverged: training diverged at step 2: loss is nan
    >>> for state.step in range(1, 6): guard.on_step_end(state, {"loss": 1.0})
    >>> for state.step in range(6, 8): guard.on_step_end(state, {"loss": 1e6})  # 2 of patience 3: let through
    >>> state.step = 8; guard.on_step_end(state, {"loss": 1e6})
    Traceback (most recent call last):
    ...
    genzoo.errors.TrainingDiverged: training diverged at step 8: loss 1e+06 exploded for 3 steps (typical 1)
    """

    def __init__(self, factor: float = 1e4, window: int = 50, patience: int = 3, early: float = 1e10):
        self.factor, self.early, self.patience, self.recent, self.run = factor, early, patience, deque(maxlen=window), 0

    def on_start(self, state):
        saved = getattr(state, "guard", None) or {}  # resumed: the history the checkpoint kept
        self.recent.extend(float(v) for v in saved.get("recent", []))
        self.run = int(saved.get("run", 0))
        # buffers non-finite before any step are so by design (an attention mask's -inf): the weight checks (this
        # one at the last step, Checkpoint's) look at the others
        model = getattr(state, "model", None)
        buffers = set() if model is None else {n for n, _ in model.named_buffers()}  # (a NaN parameter is no design)
        state.nonfinite_at_start = frozenset(n for n in (_nonfinite(model) if model is not None else ()) if n in buffers)

    def on_step_end(self, state, logs):
        loss = logs.get("loss", 0.0)
        if not math.isfinite(loss):  # (first broken: this step's loss, or the first of the spike it ends)
            raise TrainingDiverged(f"training diverged at step {state.step}: loss is {loss}"
                                   f"{kept(state.run_dir, state.step - self.run)}"
                                   + (_start_hint(state) if state.step == 1 else _lr_hint(state)))
        state.guard = {"recent": self.recent, "run": 0}
        spike = False
        if self.recent:
            typical = sorted(abs(v) for v in self.recent)[len(self.recent) // 2]
            bar = self.factor if len(self.recent) == self.recent.maxlen else self.early
            if abs(loss) > bar * (typical + 1.0):
                self.run += 1
                state.guard["run"] = self.run
                if self.run >= self.patience:  # (the loss broke at the first of the run's steps)
                    raise TrainingDiverged(f"training diverged at step {state.step}: loss {loss:.3g} exploded for "
                                           f"{self.run} steps (typical {typical:.3g})"
                                           f"{kept(state.run_dir, state.step - self.run + 1)}{_lr_hint(state)}")
                spike = True
        if not spike:
            self.run = 0
            self.recent.append(loss)
        # once a run, first among the callbacks, so nothing is written of broken weights (loop: step == total_steps);
        # after this step's spike test, so that self.run counts it: the loss broke at the next step (their loss), or
        # at the first step of the spike counted (as Checkpoint.write has it)
        model, last = getattr(state, "model", None), state.step == getattr(state, "total_steps", None)
        if last and model is not None and (name := nonfinite_weight(model, getattr(state, "nonfinite_at_start", ()))):
            raise _broken_weights(state.step, name, state.run_dir, state.step + 1 - self.run)


def run_plan(state) -> dict:
    """What a resumed run must keep to go on as it was (the seed and batch size fix the data order from the
    checkpoint on, the set its examples): recorded in each checkpoint's state.json, compared by :func:`~genzoo.fit`."""
    data = state.data
    transform = "binarize" if getattr(data, "binarize", False) else "dequantize" if getattr(data, "dequantize", False) else None
    return {"seed": state.seed, "batch_size": state.batch_size, "examples": len(data),
            "dataset": getattr(data, "name", None), "shape": list(getattr(data, "shape", ()) or ()), "transform": transform,
            # the optimizers' lr is checkpointed as scheduled: another schedule would freeze it at that value
            "lr_schedule": state.lr_schedule, "warmup_steps": state.warmup_steps}


def _lr_hint(state) -> str:
    """The advice at the end of a divergence message: an lr, where the model has one (EM has none). A resumed run
    takes its lr from the checkpoint (and ``genzoo train --resume`` refuses ``--set``): a new run can change it."""
    if not getattr(state, "optimizers", None):
        return ""
    if getattr(state, "resumed_from", None):
        return " (a resumed run keeps the lr its checkpoint holds: start a new run with a smaller lr)"
    return " (try a smaller lr)"


def _start_hint(state) -> str:
    """The advice for a loss that is not finite at step 1, on the starting weights, where no lr helps: the data's
    scale, where it is far from the unit scale the networks start at (a Gaussian VAE on a ring of radius 1,000);
    else an option of the model far out of scale as well (a GMM's reg_covar 1e300, a GAN's instance_noise 1e300)."""
    x = getattr(getattr(state, "data", None), "x", None)
    far = float(x.abs().max()) if isinstance(x, torch.Tensor) and x.numel() else None
    if far is not None and not 1e-3 <= far <= 1e3:
        return (f" (at step 1, on the starting weights, so no lr helps; data far from unit scale (the data reach "
                f"{far:.3g}) can cause it: standardise them)")
    return (" (at step 1, on the starting weights, so no lr helps; an option of the model far out of scale, or data "
            "far from unit scale, can cause it)")


def nonfinite_weight(model, exempt=()) -> str | None:
    """The name of the first floating-point weight or buffer of ``model`` that holds NaN or inf, else None; the names
    in ``exempt`` (those non-finite by design, before training) are not looked at.

    >>> import genzoo
    >>> m = genzoo.build("nice", data_shape=(2,), hidden=(4,))
    >>> nonfinite_weight(m) is None
    True
    >>> with torch.no_grad():
    ...     _ = next(m.parameters()).fill_(float("nan"))
    >>> nonfinite_weight(m)
    'transform.transforms.1.net.0.weight'
    """
    return next(_nonfinite(model, exempt), None)


def _nonfinite(model, exempt=()):
    """The names of ``model``'s floating-point weights and buffers that hold NaN or inf, but for ``exempt``."""
    return (name for name, t in model.state_dict().items()
            if name not in exempt and t.is_floating_point() and not bool(torch.isfinite(t).all()))


def _broken_weights(step: int, name: str, run_dir, first_bad: int | None = None) -> TrainingDiverged:
    """The error for weights an update left holding NaN or inf (``name``: :func:`nonfinite_weight`'s); ``first_bad``
    as :func:`kept` takes it (the next step's, where no spike was counted: every checkpoint written is good)."""
    return TrainingDiverged(f"training diverged at step {step}: '{name}' holds NaN/inf{kept(run_dir, first_bad)}")


def nothing_to_resume(run_dir) -> str | None:
    """Why a run with no checkpoint but set-aside ones (:func:`set_aside`) is not to be started again, else None:
    every checkpoint it wrote held weights whose loss broke, so a resume has nothing to go on from, and starting
    it again from step 0 would replay the same divergence."""
    if not (gone := set_aside(run_dir)):
        return None
    names = gone[0].name if len(gone) == 1 else f"{gone[0].name} to {gone[-1].name}"
    return (f"nothing to resume: {run_dir} has no checkpoint left: its training diverged, and the checkpoints it "
            f"wrote were set aside as holding the weights that broke its loss ({CHECKPOINTS}/{names}), which going on "
            "from would diverge again: start a new run (another run folder) with a smaller lr or other settings")


def kept(run_dir, first_bad: int | None = None) -> str:
    """The tail of a divergence message: the last good checkpoint, the newest whose weights gave an ordinary loss.

    The loss logged at step k is that of the weights before update k, the checkpoint of step k - 1's: where the
    loss broke first at step ``first_bad`` (None: no loss broke, every checkpoint is good), the checkpoints of
    step ``first_bad - 1`` on hold the weights that broke it. Rank 0 sets those aside as
    ``checkpoints/.diverged-step-N``, so ``resume`` (which goes on from the newest checkpoint), ``eval`` and
    ``sample`` take the good one, and the tail names both. :class:`Checkpoint` keeps one checkpoint beyond its
    ``keep`` until the step after the newest has passed the guard, so a good one survives ``keep=1``.

    >>> import tempfile
    >>> run = Path(tempfile.mkdtemp())
    >>> for step in (4, 5, 6):
    ...     (run / CHECKPOINTS / f"step-{step:08d}").mkdir(parents=True)
    >>> kept(run, first_bad=7).split("kept: ")[1].replace(str(run), "RUN")     # NaN at step 7: step 6's weights gave it
    'RUN/checkpoints/step-00000005 (step-00000006 holds the weights whose loss broke at step 7: set aside as .diverged-step-00000006, so --resume goes on from step-00000005)'
    >>> [ck.name for ck in checkpoint_dirs(run)]
    ['step-00000004', 'step-00000005']
    """
    if run_dir is None:
        return ""
    dirs = checkpoint_dirs(run_dir)
    if not dirs:
        return "; no checkpoint was written yet"
    cut = math.inf if first_bad is None else first_bad - 2  # the checkpoints up to it gave ordinary losses
    good = next((ck for ck in reversed(dirs) if int(ck.name[5:]) <= cut), None)
    bad = [ck for ck in dirs if int(ck.name[5:]) > cut]
    if not bad:
        return f"; the last good checkpoint is kept: {good}"
    names = ", ".join(ck.name for ck in bad)
    one = len(bad) == 1
    held = (f"{names} holds the weights whose loss broke at step {first_bad}" if one and int(bad[0].name[5:]) == cut + 1
            else f"{names} {'holds' if one else 'hold'} weights of step {first_bad - 1} on, whose loss broke at step "
                 f"{first_bad}")
    moved = True
    if distributed.is_main():  # (rank 0 alone writes; the other ranks say what it does)
        for ck in bad:
            try:
                remove(ck.with_name(DIVERGED + ck.name))  # an earlier try's, of this step
                os.rename(ck, ck.with_name(DIVERGED + ck.name))
            except OSError:  # (a read-only folder): said, and left where a resume finds it
                moved = False
                break
    if not moved:  # (those not moved, of a try cut short)
        left = ", ".join(ck.name for ck in bad if ck.is_dir())
        return (f"; the last good checkpoint is kept: {good} ({held}; --resume goes on from the newest: move "
                f"{left} aside to go on from {good.name})" if good is not None else
                f"; no checkpoint from before the loss broke is kept ({held})")
    where = f"{DIVERGED}{bad[0].name}" if len(bad) == 1 else f"{DIVERGED}step-*"
    if good is None:
        return f"; no checkpoint from before the loss broke is kept ({held}: set aside as {where})"
    return (f"; the last good checkpoint is kept: {good} ({held}: set aside as {where}, so --resume goes on from "
            f"{good.name})")


class MetricsLogger(Callback):
    """Append the mean of each logged term over ``every`` steps to ``metrics.jsonl`` (and to
    TensorBoard when it is installed). Validation losses join the rows every ``valid_every`` steps (a multiple
    of ``every``; default ``10 * every``) and at the end, when a ``valid`` set is given.
    :func:`genzoo.fit` adds it (``log_every``, ``valid_every``) when it has a ``run_dir``.

    >>> import os, tempfile, genzoo
    >>> from genzoo.data import load_dataset
    >>> run, gmm = tempfile.mkdtemp(), genzoo.build("gmm", data_shape=(2,), n_components=4)
    >>> _ = genzoo.fit(gmm, load_dataset("ring", n=500), steps=5, run_dir=run, log_every=2, progress=False)
    >>> rows = [json.loads(line) for line in open(os.path.join(run, "metrics.jsonl"))]
    >>> [r["step"] for r in rows], all(r["loss"] == -r["log_likelihood"] for r in rows)   # and the last step
    ([2, 4, 5], True)
    """

    def __init__(self, run_dir: Path, every: int = 10, valid_every: int | None = None, valid_size: int = 2000):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.every, self.valid_every, self.valid_size = max(1, every), valid_every, valid_size
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.tb = None

    def on_start(self, state):
        refuse_link(self.path)  # (its rows are appended: open() would follow a link out of the run)
        self._truncate(state.step)
        self.valid_every = self.valid_every or 10 * self.every
        self.t0, self.step0 = time.time(), state.step
        partial = getattr(state, "partial_logs", None) or {}  # resumed between two rows: the sums kept
        self.sums = {k: float(v) for k, v in partial.get("sums", {}).items()}
        self.counts = {k: int(v) for k, v in partial.get("counts", {}).items()}
        self.tb = None
        try:  # optional: only when tensorboard is installed
            from torch.utils.tensorboard import SummaryWriter
        except Exception:
            return
        if not _tensorboard_raises():
            warnings.warn("TensorBoard logging is off: it needs tensorboard 2.12 or later (an older one's writer thread "
                          "dies on a write error and a later flush waits for it for ever); metrics.jsonl holds every row",
                          GenZooWarning, stacklevel=2)
            return
        _quiet_tensorboard_threads()
        # purge_step: a resumed run's TensorBoard drops the events after its checkpoint, as metrics.jsonl its lines
        self.tb = self._tensorboard(lambda: SummaryWriter(str(self.path.parent / "tensorboard"),
                                                          purge_step=state.step + 1 if state.step else None))

    def _tensorboard(self, call):
        """``call()`` (a TensorBoard write), or, where it fails (a full disk, an events file that cannot be written:
        its writer thread's error surfaces here), one warning and no TensorBoard from then on: it mirrors
        metrics.jsonl, which is the run's record, and stops no run."""
        try:
            return call()
        except Exception as e:
            self.tb = None
            warnings.warn(f"TensorBoard logging stopped: cannot write {self.path.parent / 'tensorboard'}: "
                          f"{getattr(e, 'strerror', None) or e} (metrics.jsonl holds every row)", GenZooWarning,
                          stacklevel=3)

    def _truncate(self, step: int) -> None:
        """On resume, drop the rows written after the checkpoint we restart from, and a last line cut by a kill
        (rows are appended, so only the last can be). Another line that is no row (damaged outside genzoo) is kept
        as it is, with a warning: the rows after it are the run's history."""
        if not self.path.exists():
            return
        try:
            data = self.path.read_bytes()  # bytes: a damaged line need not be UTF-8, and is kept byte for byte
        except OSError as e:  # a folder in its place, no permission: one line (exit 2), as the appends say it
            raise WriteError(f"cannot read {self.path}: {e.strerror or e}") from None
        lines = data.splitlines()
        keep = []
        for i, line in enumerate(lines):
            try:
                row = json.loads(line)
            except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError, an integer past Python's
                row = None                         # 4,300 digits, brackets nested past the recursion limit
            if isinstance(row, dict):
                if not isinstance(row.get("step", 0), (int, float)) or row.get("step", 0) <= step:
                    keep.append(line)
            elif i == len(lines) - 1 and not data.endswith(b"\n"):
                break  # cut by a kill
            else:
                warnings.warn(f"{self.path}: line {i + 1} is not a metrics row (damaged?): kept as it is", GenZooWarning,
                              stacklevel=2)
                keep.append(line)
        atomic_write_bytes(self.path, b"\n".join(keep) + b"\n" if keep else b"", own=True)

    def on_step_end(self, state, logs):
        for k, v in logs.items():  # a term logged on some steps only (a GAN's g_loss) is averaged over those
            self.sums[k] = self.sums.get(k, 0.0) + v
            self.counts[k] = self.counts.get(k, 0) + 1
        state.partial_logs = {"sums": self.sums, "counts": self.counts}
        if state.step % self.every and state.step != state.total_steps:
            return
        row = {"step": state.step, "epoch": round(state.epoch, 4)}
        row.update({k: v / self.counts[k] for k, v in self.sums.items()})
        if state.optimizers:
            row["lr"] = state.optimizers[0].param_groups[0]["lr"]
        dt = time.time() - self.t0
        per_step = len(state.data) if getattr(getattr(state, "model", None), "full_batch", False) else state.batch_size
        row["examples_per_s"] = round((state.step - self.step0) * per_step / max(dt, 1e-9), 1)  # EM: the whole set a step
        if state.valid is not None and (state.step % self.valid_every == 0 or state.step == state.total_steps):
            valid = validation_losses(state.model, state.valid, self.valid_size)
            state.valid_logs = {"step": state.step, **valid}  # for BestWeights, which runs after this
            row.update(valid)
        try:
            with open(self.path, "a") as f:
                f.write(dumps(row) + "\n")
        except OSError as e:  # a full disk, a folder gone read-only: one line, the checkpoints so far intact
            raise WriteError(f"cannot write {self.path}: {e.strerror or e}") from None
        if self.tb is not None:
            def add(tb=self.tb):
                for k, v in row.items():
                    if k != "step" and isinstance(v, (int, float)):
                        tb.add_scalar(k, v, state.step)
                tb.flush()  # now: its writer thread's failure is seen here, at this row

            self._tensorboard(add)  # (self.tb None once it failed)
        self.sums, self.counts = {}, {}
        state.partial_logs = None
        self.t0, self.step0 = time.time(), state.step

    def on_end(self, state):
        if self.tb is not None:
            tb, self.tb = self.tb, None
            self._tensorboard(tb.close)


def _run_subfolder(folder: Path) -> None:
    """Make ``folder`` (samples/, checkpoints/) inside a run folder, but not its parents: a run folder removed
    mid-run is not made anew, partly, here (fit says it is gone). A file in its place, no inodes left: one line."""
    try:
        folder.mkdir(exist_ok=True)
    except OSError as e:
        raise WriteError(f"cannot create the folder {folder}: {e.strerror or e}") from None


def _tensorboard_raises() -> bool:
    """Whether the installed tensorboard's writer thread hands its errors to the next write (2.12 and later,
    tensorboard#6168), which :class:`MetricsLogger` turns into a warning; before, the thread died and a flush hung.

    >>> isinstance(_tensorboard_raises(), bool)
    True
    """
    try:
        from importlib.metadata import version

        major, minor = (int(part) for part in re.findall(r"\d+", version("tensorboard"))[:2])
    except Exception:  # not installed, or a version that does not read as numbers: not known to raise
        return False
    return (major, minor) >= (2, 12)


def _quiet_tensorboard_threads() -> None:
    """Keep Python from printing the traceback of TensorBoard's writer thread when its write fails: the thread
    keeps the error, which the next write raises in training's thread, where :class:`MetricsLogger` warns of it."""
    import threading

    hook = threading.excepthook
    if getattr(hook, "genzoo", False):
        return

    def quiet(args):
        if type(args.thread).__name__ != "_AsyncWriterThread" or not issubclass(args.exc_type, Exception):
            hook(args)

    quiet.genzoo = True
    threading.excepthook = quiet


@torch.no_grad()
def validation_losses(model, valid, size: int) -> dict[str, float]:
    """Mean loss terms on the first ``size`` validation examples, without touching the RNG streams (rank 0
    computes them by itself under torchrun, as a single process would)."""
    with forked_rng(model.device), distributed.alone():  # the device's too: manual_seed reseeds it
        torch.manual_seed(0)
        x = valid.batch(torch.arange(min(size, len(valid))), torch.Generator().manual_seed(0)).to(model.device)
        with evaluating(model):
            terms = model.loss(x)
    return {f"valid_{k}": float(v) for k, v in terms.items()}


class BestWeights(Callback):
    """``RUN/best/``: the weights at the lowest validation loss so far (``valid_loss``, as
    :class:`MetricsLogger` logs it), rewritten each time it improves: early stopping's choice of model
    without stopping (Prechelt 1998, "Early stopping - but when?"), as the NICE authors' MNIST recipe keeps
    the parameters of the best validation score (BENCHMARKS.md). The folder holds ``config.json``,
    ``model.safetensors``, ``best.json`` (step and loss) and a copy of the run's ``run.json``, so it is a
    run of its own for ``genzoo eval``, ``sample``, ``interpolate`` and ``compare``. It is filled under a
    temporary name and swapped in by renames: an interrupted write leaves the previous best.

    The best so far (``state.best``: step and loss) is recorded in each checkpoint, so a resumed run goes on from
    the best its checkpoint knew. A ``best/`` written after that checkpoint holds weights of steps the resumed run
    drops: it is removed, and where it had replaced the checkpoint's best, whose weights are then gone, a warning
    says so; a later validation must still beat that loss to be written (a resumed run that takes another path,
    shorter or on another device, does not crown a worse step)."""

    KEY = "valid_loss"

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.path, self.tmp = self.run_dir / "best", self.run_dir / ".tmp-best"
        self.best = math.inf

    def on_start(self, state):
        shutil.rmtree(self.tmp, ignore_errors=True)
        restore_folder(self.path)  # killed between the two renames of a swap: the old best is the complete one
        self.best, state.best = math.inf, None
        if state.step == 0:  # a new run starts afresh (and replaces an older best/)
            return
        known = self._record(_checkpoint_state(self.run_dir, state.step).get("best"))  # what its checkpoint knew
        record = None
        if (self.path / "best.json").is_file():
            try:
                record = self._record(read_json(self.path / "best.json", "best-weights record"))
            except GenZooError:
                pass
            if record is None:  # an unreadable record: the next validation writes a fresh best
                return
        if record is not None and record[0] <= state.step:  # (then the checkpoint's own record)
            known = record
        elif record is not None:  # written after the checkpoint: weights of steps it drops (as their metrics, grids)
            remove(self.path, ignore_errors=False)  # (a best/ that is a link: the link, not its folder)
            if known is not None:  # that best/ had replaced the checkpoint's: its weights are gone
                warnings.warn(f"the best weights of step {known[0]} ({self.KEY} {known[1]:.6g}) are gone: {self.path} "
                              f"held those of step {record[0]}, after the checkpoint of step {state.step} this run "
                              f"goes on from, and is removed; it is written again when a validation beats "
                              f"{known[1]:.6g}", GenZooWarning, stacklevel=2)
        if known is not None:
            self.best, state.best = known[1], {"step": known[0], self.KEY: known[1]}

    def _record(self, record) -> tuple[int, float] | None:
        """(step, loss) of a record ``{"step": ..., KEY: ...}`` (best.json's, a checkpoint's), or None for another."""
        try:
            step, loss = int(record["step"]), float(record[self.KEY])
        except (KeyError, TypeError, ValueError):
            return None
        return (step, loss) if math.isfinite(loss) else None

    def on_step_end(self, state, logs):
        valid = state.valid_logs
        if not valid or valid["step"] != state.step:
            return
        loss = valid.get(self.KEY)
        if loss is not None and math.isfinite(loss) and loss < self.best:
            self.best = loss
            self.write(state, loss)
            state.best = {"step": state.step, self.KEY: loss}  # for the checkpoints (written after this)

    def write(self, state, loss: float) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
        try:
            write_model(state.model, self.tmp)
            if (self.run_dir / "run.json").is_file():
                shutil.copyfile(self.run_dir / "run.json", self.tmp / "run.json")
            atomic_write_json(self.tmp / "best.json", {"step": state.step, "epoch": round(state.epoch, 4), self.KEY: loss})
            replace_folder(self.tmp, self.path)
        except BaseException as e:  # Ctrl-C or a full disk mid-write: the previous best stays, nothing half-written
            shutil.rmtree(self.tmp, ignore_errors=True)
            restore_folder(self.path)
            if isinstance(e, (WriteError, OSError)):  # named as best/, not as the temporary folder, gone by now
                why = e.strerror if isinstance(e, OSError) and e.strerror else str(e).rpartition(": ")[2]
                raise WriteError(f"cannot write the best weights {self.path}: {why}") from None
            raise


def _checkpoint_state(run_dir: Path, step: int) -> dict:
    """The state.json of the run's checkpoint of ``step`` (on resume, the one it goes on from), or {}."""
    try:
        saved = read_json(Path(run_dir) / CHECKPOINTS / f"step-{step:08d}" / "state.json", "checkpoint state")
    except GenZooError:
        return {}
    return saved if isinstance(saved, dict) else {}


class SampleGrid(Callback):
    """Every ``every`` steps, ``samples/step-NNNNNNNN.png`` from the same fixed noise: the
    training-evolution picture.

    >>> import os, tempfile, genzoo
    >>> from types import SimpleNamespace
    >>> cb, gmm = SampleGrid(tempfile.mkdtemp(), every=2, n=9), genzoo.build("gmm", data_shape=(1, 4, 4))
    >>> for step in (1, 2, 3, 4):
    ...     cb.on_step_end(SimpleNamespace(step=step, total_steps=10, seed=0, model=gmm, data=None), {})
    >>> names = sorted(os.listdir(cb.dir)); names
    ['step-00000002.png', 'step-00000004.png']
    >>> a, b = ((cb.dir / name).read_bytes() for name in names)
    >>> a == b                                              # the same weights, the same noise: the same picture
    True
    """

    def __init__(self, run_dir: Path, every: int, n: int = 64):
        self.dir, self.every, self.n = Path(run_dir) / "samples", every, n
        self.warned = False

    def on_step_end(self, state, logs):
        if state.step % self.every == 0 or state.step == state.total_steps:
            if nonfinite_weight(state.model):  # an update that broke the weights (its loss was finite): no picture
                return                          # of them; the checkpoint or the next step's loss stops the run
            _run_subfolder(self.dir)
            path = self.dir / f"step-{state.step:08d}.png"
            x = write_samples(state.model, path, self.n, seed=state.seed, title=f"step {state.step}",
                              density=getattr(state.data, "density", None),
                              levels=getattr(state.data, "dequantized_levels", None))
            bad = int((~torch.isfinite(x.reshape(len(x), -1))).any(1).sum())
            if bad and not self.warned and x.dim() == 4:  # (a scatter counts them in its picture)
                self.warned = True
                warnings.warn(f"{path}: {bad} of {len(x)} samples have NaN or infinite pixels, drawn red (finite "
                              "weights decode them: did a step overflow?)", GenZooWarning, stacklevel=2)


@torch.no_grad()
def write_samples(model, path: Path, n: int, seed: int = 0, title: str = "", density=None,
                  levels: int | None = None) -> torch.Tensor:
    """Sample ``n`` from fixed noise (``seed``) and save a picture; global RNG untouched. The samples of a model of
    dequantized data, ``(v + u) / levels``, are drawn on the data's levels (:func:`~genzoo.data.transforms.requantize`),
    as ``genzoo eval`` and ``interpolate`` show them; returned as drawn.

    >>> import tempfile, genzoo
    >>> gmm, path = genzoo.build("gmm", data_shape=(1, 4, 4)), Path(tempfile.mkdtemp()) / "g.png"
    >>> x = write_samples(gmm, path, 4, levels=17)
    >>> from PIL import Image; import numpy as np
    >>> bool(np.isin(np.asarray(Image.open(path)), [round(255 * v / 16) for v in range(17)]).all())
    True
    """
    from ..data.transforms import requantize
    from ..viz import save_samples

    with forked_rng(model.device):
        with evaluating(model):
            x = model.sample(n, generator=torch.Generator(device=model.device).manual_seed(seed))
    save_samples(requantize(x, levels) if levels else x, path, title=title, density=density)
    return x


class Checkpoint(Callback):
    """Atomic checkpoints every ``every`` steps and at the end; keeps the newest ``keep`` (and one more while the
    newest awaits the next step's loss, below). :func:`genzoo.fit` adds it (``checkpoint_every``, ``keep``) when it
    has a ``run_dir``.

    A run asked to stop (:func:`~genzoo.train.loop.request_stop`: ``state.stopping``) writes one of the step it
    stops after. A checkpoint due while the divergence guard counts a loss spike (``state.guard["run"] > 0``: it
    lets ``patience - 1`` exploding steps through before it stops the run) is written at the next ordinary step
    instead, so a run that diverges keeps its last good checkpoint. A run that ends inside a spike (its last
    step, ``max_minutes`` or a stop request) still writes its final checkpoint, the weights ``fit`` returns, with
    the spike recorded for a resumed run's guard, and prunes none: the good ones before it stay.

    A checkpoint's weights are proven good only by the next step's loss (the loss logged at step k is that of
    the weights before update k): until a step after the newest checkpoint has passed the divergence guard
    outside a spike, one checkpoint more than ``keep`` stays, so a run that diverges at the next step still has
    a good one (:func:`kept`), even with ``keep=1``. A run that ends (its last step, ``max_minutes``, a stop
    request) keeps the newest ``keep``.

    >>> import os, tempfile, genzoo
    >>> from genzoo.data import load_dataset
    >>> run, gmm = tempfile.mkdtemp(), genzoo.build("gmm", data_shape=(2,), n_components=4)
    >>> _ = genzoo.fit(gmm, load_dataset("ring", n=500), steps=5, run_dir=run, checkpoint_every=2, keep=2,
    ...                progress=False)
    >>> sorted(os.listdir(os.path.join(run, "checkpoints")))   # steps 2, 4 and 5 (the end); the newest 2 kept
    ['step-00000004', 'step-00000005']
    """

    def __init__(self, run_dir: Path, every: int, keep: int = 3):
        self.run_dir, self.every, self.keep = Path(run_dir), max(1, every), keep
        self.last, self.held = -1, False
        self.unproven = False  # the newest checkpoint waits for the next step's loss: one more than keep is kept
        self.spike_final = False  # the final checkpoint was written inside a spike: nothing pruned for it

    def on_start(self, state):
        """Remove what writes cut short by a kill left: the temporary folders of checkpoints being written or
        pruned, and the temporary files of the run's own files and of the grids :class:`SampleGrid` writes
        (``.NAME.XXXX.tmp``); another process's temporary file (of a picture written into the run) stays. And the
        grids of steps after the checkpoint the run restarts from (as :class:`MetricsLogger` drops their log
        lines), with or without ``sample_every`` now: a run killed between checkpoints left them, and a resumed
        run that ends earlier would show, in its report and GIF, samples of weights it does not have. And, on a
        resume, the density picture (``genzoo train`` draws it when a session ends): a resumed session stopped
        by Ctrl-C, SIGTERM or divergence left the previous one's, shown beside the newer samples."""
        root = self.run_dir / "checkpoints"
        if root.is_dir():
            for p in root.glob(".tmp-step-*"):
                shutil.rmtree(p, ignore_errors=True)
        own = (WEIGHTS, CONFIG, "run.json", "metrics.jsonl", "density.png")  # training's, not eval's
        leftovers = [p for name in own for p in self.run_dir.glob(f".{name}.*.tmp")]
        leftovers += list((self.run_dir / "samples").glob(".step-*.png.*.tmp"))  # SampleGrid's grids only
        leftovers += [p for step, p in sample_grids(self.run_dir) if step > state.step]
        if state.step > 0:
            leftovers.append(self.run_dir / "density.png")
        for p in leftovers:
            p.unlink(missing_ok=True)
        self.unproven = state.step > 0  # a resumed run's checkpoint (and the one before it) as its session left them

    def on_step_end(self, state, logs):
        guard = getattr(state, "guard", None)
        spike = bool(guard and guard["run"])
        if self.unproven and not spike:  # this step's ordinary loss proves the newest checkpoint's weights (or later
            prune_checkpoints(self.run_dir, self.keep)  # ones, after a spike that passed): the spare before it can go
            self.unproven = False
        final = state.step == state.total_steps or getattr(state, "stopping", False)  # (request_stop: the last one)
        if not (state.step % self.every == 0 or final or self.held):
            return
        self.held = spike and not final  # a spike's weights: the next ordinary step's instead
        if not self.held:
            self.write(state)

    def on_end(self, state):
        # a run that ended (not one stopped by an error) keeps the newest keep: its final checkpoint has no next step
        # to prove it here, and one written inside a spike prunes none
        ended = state.step == state.total_steps or getattr(state, "stopping", False)
        # or a resumed session with no steps left: the newest is the final checkpoint of the session that wrote it,
        # stopped before this prune (a kill in its last callbacks), whose keep + 1 would otherwise stay for good
        guard = getattr(state, "guard", None)
        idle = self.last == -1 and state.step == state.total_steps and not (guard and guard["run"])
        if self.unproven and ended and (self.last == state.step or idle) and not self.spike_final:
            prune_checkpoints(self.run_dir, self.keep)
            self.unproven = False

    def write(self, state):
        if state.step == self.last:
            return
        guard = getattr(state, "guard", None)
        if name := nonfinite_weight(state.model, getattr(state, "nonfinite_at_start", ())):  # (their loss: the next
            raise _broken_weights(state.step, name, self.run_dir, state.step + 1 - (guard["run"] if guard else 0))
        extra = {"partial_logs": state.partial_logs} if state.partial_logs else {}  # so a resumed run logs the same
        if guard:  # ... and is watched the same
            extra["guard"] = {"recent": list(guard["recent"]), "run": guard["run"]}
        if best := getattr(state, "best", None):  # BestWeights': a resumed run goes on from it
            extra["best"] = dict(best)
        spike = bool(guard and guard["run"])  # (the final one only): pruning would drop good ones for it
        if spike:  # the run's last weights are a spike's: said, not left to a resume that diverges at once
            before = [ck.name for ck in checkpoint_dirs(self.run_dir)]
            weights = "checkpoint" if getattr(state, "stopping", False) else "final weights and checkpoint"
            warnings.warn(f"the run ends inside a loss spike ({guard['run']} step(s) far above the typical loss): its "
                          f"{weights} step-{state.step:08d} are the spike's; "
                          + (f"the checkpoints before it are kept ({before[-1]} the newest)" if before else
                             "no checkpoint before it was written"), GenZooWarning, stacklevel=2)
        _run_subfolder(self.run_dir / CHECKPOINTS)  # (before save_checkpoint, which would make the run folder too)
        save_checkpoint(self.run_dir, state.step, state.model, state.optimizers,
                        {"epoch": state.epoch, **run_plan(state), **extra}, state.rng_state(),
                        keep=sys.maxsize if spike else self.keep + 1)  # (+1: the one before it, until it is proven)
        self.last, self.unproven, self.spike_final = state.step, True, spike


class ProgressBar(Callback):
    """A tqdm bar over steps (quiet when stderr is not a terminal) showing, every 10 steps, the mean over those
    steps of the loss and of the next two terms the model logs: a term that only repeats the loss (a GAN's
    d_loss) is left out, and the generator's ``g_loss`` comes first (a term logged on some steps only, as g_loss
    with ``d_steps`` > 1, is averaged over those).

    >>> from types import SimpleNamespace
    >>> bar, state = ProgressBar(), SimpleNamespace(total_steps=10, step=4, model=SimpleNamespace(name="gmm"))
    >>> bar.on_start(state)                                 # a resumed run's bar starts at its step
    >>> bar.bar.total, bar.bar.n
    (10, 4)
    >>> for state.step in range(5, 11):                     # a GAN's terms; g_loss on every other step
    ...     bar.on_step_end(state, {"loss": 1.0, "d_loss": 1.0, "d_real": 0.5, **({"g_loss": 2.0} if state.step % 2
    ...                                                                         else {})})
    >>> bar.shown
    {'loss': '1', 'g_loss': '2', 'd_real': '0.5'}
    >>> bar.on_end(state)
    """

    EVERY = 10

    def on_start(self, state):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=state.total_steps, initial=state.step, desc=state.model.name, unit="step",
                        dynamic_ncols=True, disable=None)
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.news: set[str] = set()  # the terms that ever differed from the loss (not a copy of it)
        self.shown: dict[str, str] = {}

    def on_step_end(self, state, logs):
        self.bar.update(1)
        for k, v in logs.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
            self.counts[k] = self.counts.get(k, 0) + 1
            if k != "loss" and v != logs.get("loss"):
                self.news.add(k)
        if state.step % self.EVERY == 0:
            # the loss, then g_loss, then the model's order (sorted is stable)
            keys = sorted((k for k in self.sums if k == "loss" or k in self.news),
                          key=lambda k: (k != "loss", k != "g_loss"))
            self.shown = {k: f"{self.sums[k] / self.counts[k]:.4g}" for k in keys[:3]}
            self.bar.set_postfix(self.shown, refresh=False)
            self.sums, self.counts = {}, {}

    def on_end(self, state):
        self.bar.close()
