"""``fit()``: the one training loop. It knows nothing about model families.

The model does its own update in ``training_step`` (see :mod:`genzoo.base`); the loop feeds it
batches in a fixed, seed-determined order, and callbacks do everything else: checkpoints, sample
grids, metrics, the progress bar and the divergence guard.

Exact resume: the batch order of epoch ``e`` is ``randperm(N)`` from a generator seeded with
``(seed, e)``, so it depends on the step alone; the random streams that do change (torch's global
generator, used by the model, and the data generator, used by dynamic binarization) are saved in
every checkpoint. A run killed at any point and resumed ends bitwise equal to an uninterrupted one.

Under torchrun (a ``torch.distributed`` process group, :mod:`genzoo.train.distributed`) each rank
trains on its slice of every global batch, gradients are averaged before each optimizer step, and
rank 0 alone writes the run directory.

>>> import genzoo
>>> from genzoo.data import load_dataset
>>> data = load_dataset("ring", n=512)
>>> model = genzoo.build("gmm", data_shape=data.shape, n_components=8)
>>> state = genzoo.fit(model, data, steps=5, progress=False)
>>> state.step
5
"""

from __future__ import annotations

import contextlib
import inspect
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..base import Batch, GenerativeModel, forked_rng
from ..errors import CheckpointError, ConfigError, DataError, GenZooError, TrainingDiverged, WriteError
from ..io import (CONFIG, WEIGHTS, atomic_write_json, blocked_by_file, dumps, holds_checkpoint, latest_checkpoint,
                  load_newest_checkpoint, loads, model_config, prune_checkpoints, read_json, refuse_link, run_files_in,
                  run_lock, set_aside_damaged, write_model)
from . import acceleration, distributed
from .callbacks import (BestWeights, Callback, Checkpoint, DivergenceGuard, MetricsLogger, ProgressBar, SampleGrid,
                        _lr_hint, kept, nothing_to_resume)


LR_SCHEDULES = ("constant", "cosine")
#: the most steps a run may take: more is a typo, not a plan (it would run for years)
MAX_STEPS = 10**9


@dataclass
class TrainState:
    """What callbacks see: the model, its optimizers, the step counter and the data stream.

    :func:`genzoo.fit` makes it and returns it. An epoch is ``len(data) // batch_size`` steps (one for a model
    that trains on the whole set each step, ``full_batch``: the GMM's EM), and its example order a permutation
    fixed by ``seed`` and the epoch.

    >>> import genzoo
    >>> from genzoo.data import load_dataset
    >>> state = TrainState(model=genzoo.build("nice", data_shape=(2,)), optimizers=[], data=load_dataset("ring", n=256),
    ...                    total_steps=6, batch_size=64, seed=0, step=6)
    >>> state.steps_per_epoch, state.epoch
    (4, 1.5)
    >>> order = state.epoch_order(1)
    >>> torch.equal(order.sort().values, torch.arange(256)), torch.equal(order, state.epoch_order(2))
    (True, False)
    """

    model: GenerativeModel
    optimizers: list
    data: object
    total_steps: int
    batch_size: int
    seed: int
    run_dir: Path | None = None
    step: int = 0
    data_generator: torch.Generator = field(default_factory=torch.Generator)
    start_time: float = field(default_factory=time.time)
    valid: object | None = None
    valid_logs: dict | None = None  # the newest validation losses, {"step": ..., "valid_loss": ...}
    partial_logs: dict | None = None  # the log terms summed since the last metrics row (checkpointed)
    lr_schedule: str = "constant"  # fit's, recorded in each checkpoint: a resume must keep them
    warmup_steps: int = 0
    planned_steps: int | None = None  # the steps asked for (total_steps ends sooner where max_minutes stops the run)
    guard: dict | None = None  # the divergence guard's recent losses (checkpointed: a resumed run is not blind)
    resumed_from: int | None = None  # the checkpoint's step, on resume
    stopping: bool = False  # asked to stop (request_stop) after this step: its checkpoint, no final weights
    best: dict | None = None  # the best validation so far, {"step", "valid_loss"} (BestWeights; checkpointed)
    nonfinite_at_start: frozenset = frozenset()  # tensors NaN/inf by design before any step (the weight checks skip)
    _order: tuple[int, torch.Tensor] | None = field(default=None, repr=False)

    @property
    def steps_per_epoch(self) -> int:
        if self.model.full_batch:
            return 1
        return max(1, len(self.data) // self.batch_size)

    @property
    def epoch(self) -> float:
        return self.step / self.steps_per_epoch

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """The example order of ``epoch``: a permutation fixed by (seed, epoch) alone."""
        if self._order is None or self._order[0] != epoch:
            g = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) % 2**64)  # a uint64, for any seed < 2^63
            self._order = (epoch, torch.randperm(len(self.data), generator=g))
        return self._order[1]

    def _cuda(self) -> torch.device:
        """The CUDA device whose generator the model draws from (``--device cuda:1``: not the current one)."""
        device = self.model.device
        return device if device.type == "cuda" else torch.device("cuda")

    def rng_state(self) -> dict[str, torch.Tensor]:
        rng = {"torch": torch.get_rng_state(), "data": self.data_generator.get_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            rng["cuda"] = torch.cuda.get_rng_state(self._cuda())
        if self.model.device.type == "mps":  # the models draw their noise on their own device
            rng["mps"] = torch.mps.get_rng_state()
        return rng

    def set_rng_state(self, rng: dict[str, torch.Tensor]) -> None:
        torch.set_rng_state(rng["torch"])
        self.data_generator.set_state(rng["data"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state(rng["cuda"], self._cuda())
        if "mps" in rng and torch.backends.mps.is_available():
            torch.mps.set_rng_state(rng["mps"])


#: what a run writes before its first checkpoint: ``resume=True`` starts a run in a folder holding no more
BEFORE_FIRST_CHECKPOINT = ("config.json", "metrics.jsonl", "samples", "checkpoints", "best", "tensorboard")


def default_callbacks(run_dir: Path | None, *, checkpoint_every: int, sample_every: int, log_every: int,
                      progress: bool, keep: int = 3, keep_best: bool = False,
                      valid_every: int | None = None) -> list[Callback]:
    """The guard first (so nothing is written for a diverged step), then logs (and the best weights by the
    validation loss they log), pictures, checkpoints."""
    cbs: list[Callback] = [DivergenceGuard()]
    if run_dir is not None:
        cbs.append(MetricsLogger(run_dir, every=log_every, valid_every=valid_every))
        if keep_best:
            cbs.append(BestWeights(run_dir))
        if sample_every > 0:
            cbs.append(SampleGrid(run_dir, every=sample_every))
        cbs.append(Checkpoint(run_dir, every=checkpoint_every, keep=keep))
    if progress:
        cbs.append(ProgressBar())
    return cbs


def check_train_options(*, steps: int | None = None, epochs: float | None = None, batch_size: int | None = None,
                        seed: int | None = None, checkpoint_every: int | None = None, sample_every: int | None = None,
                        log_every: int | None = None, keep: int | None = None, warmup_steps: int | None = None,
                        max_minutes: float | None = None, valid_every: int | None = None) -> None:
    """Raise :class:`ConfigError` naming the first of :func:`fit`'s numbers out of range (None: not given).

    >>> check_train_options(steps=100, batch_size=64)
    >>> check_train_options(steps=0)
    Traceback (most recent call last):
    genzoo.errors.ConfigError: steps must be >= 1, got 0
    >>> check_train_options(log_every=10, valid_every=25)
    Traceback (most recent call last):
    genzoo.errors.ConfigError: valid_every must be a multiple of log_every (10), got 25: validation losses are written in the metrics rows
    """
    if steps is not None and epochs is not None:
        raise ConfigError("give exactly one of steps and epochs")
    whole = {"steps": steps, "batch_size": batch_size, "checkpoint_every": checkpoint_every, "log_every": log_every,
             "keep": keep, "sample_every": sample_every, "warmup_steps": warmup_steps, "seed": seed,
             "valid_every": valid_every}
    for name, value in whole.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))):
            raise ConfigError(f"{name} must be a whole number, got {value!r}")
    for name, value in (("epochs", epochs), ("max_minutes", max_minutes)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float, np.number))):
            raise ConfigError(f"{name} must be a number, got {value!r}")
    at_least = {"steps": (steps, 1), "batch_size": (batch_size, 1), "checkpoint_every": (checkpoint_every, 1),
                "log_every": (log_every, 1), "keep": (keep, 1), "sample_every": (sample_every, 0),
                "warmup_steps": (warmup_steps, 0), "seed": (seed, 0), "valid_every": (valid_every, 1)}
    for name, (value, low) in at_least.items():
        if value is not None and value < low:
            raise ConfigError(f"{name} must be >= {low}, got {value}" + (" (0: no sample grids)" * (name == "sample_every")))
    # validation losses join a metrics row: a validation step between two rows would be skipped
    if valid_every is not None and log_every is not None and valid_every % log_every:
        raise ConfigError(f"valid_every must be a multiple of log_every ({log_every}), got {valid_every}: "
                          "validation losses are written in the metrics rows")
    if seed is not None and seed >= 2**63:
        raise ConfigError(f"seed must be below 2^63, got {seed}")
    if steps is not None and steps > MAX_STEPS:
        raise ConfigError(f"steps must be at most 10^9, got {steps}")
    for name, value in (("epochs", epochs), ("max_minutes", max_minutes)):
        if value is not None and not (value > 0 and math.isfinite(value)):
            raise ConfigError(f"{name} must be a positive, finite number, got {value}")
    if epochs is not None and epochs > 10**6:
        raise ConfigError(f"epochs must be at most 10^6, got {epochs}")


def _checksum(x: torch.Tensor) -> int:
    """An integer sum of the bits of ``x`` (float32, (N, ...)) that tells one data set from another: exact, so the
    same on every machine whatever its summation order, and weighted by position (a shuffled copy differs)."""
    bits = x.contiguous().view(torch.int32).reshape(len(x), -1)                    # (N, D)
    rows = torch.cat([b.sum(1, dtype=torch.int64) for b in bits.split(4096)])      # (N,), in blocks: no int64 copy
    return int((rows * torch.arange(1, len(x) + 1, device=x.device)).sum())


def check_data(model: GenerativeModel, data, what: str = "data") -> None:
    """A DataError unless ``data`` is a genzoo Dataset of finite examples of the model's shape.

    >>> import genzoo
    >>> from genzoo.data import load_dataset
    >>> check_data(genzoo.build("gmm", data_shape=(3,)), load_dataset("ring", n=10))
    Traceback (most recent call last):
    genzoo.errors.DataError: gmm models examples of shape (3,); data 'ring' has examples of shape (2,)
    """
    from ..data import Dataset

    if not isinstance(data, Dataset):
        raise DataError(f"{what} must be a genzoo Dataset (genzoo.data.load_dataset(...), or Dataset(name, 'train', "
                        f"x, None) around a tensor x of shape (N, ...)), got {type(data).__name__}")
    shape = tuple(getattr(model, "data_shape", None) or model.config.get("data_shape", ()))
    if tuple(data.shape) != shape:
        raise DataError(f"{model.name} models examples of shape {shape}; {what} '{data.name}' has examples of shape "
                        f"{tuple(data.shape)}")
    if data.x.is_floating_point() and not torch.isfinite(data.x).all():
        raise DataError(f"{what} '{data.name}' holds NaN or infinite values")


def fit(model: GenerativeModel, data, *, steps: int | None = None, epochs: float | None = None,
        batch_size: int = 128, seed: int = 0, run_dir: str | Path | None = None, resume: bool = False,
        checkpoint_every: int = 1000, sample_every: int = 0, log_every: int = 10, valid=None,
        callbacks: tuple[Callback, ...] | list[Callback] = (), progress: bool = True, keep: int = 3,
        lr_schedule: str = "constant", warmup_steps: int = 0, max_minutes: float | None = None,
        precision: str = "fp32", channels_last: bool | None = None, compile: bool = False,
        keep_best: bool = False, valid_every: int | None = None) -> TrainState:
    """Train ``model`` on ``data`` (a :class:`genzoo.data.Dataset`) for ``steps`` or ``epochs``.

    With ``run_dir``, writes ``config.json``, ``metrics.jsonl``, ``checkpoints/`` (every
    ``checkpoint_every`` steps and at the end), ``samples/`` (every ``sample_every`` steps, from
    fixed noise) and the final ``model.safetensors``. ``resume=True`` continues from the newest
    checkpoint in ``run_dir`` (and where it has none yet, a first launch or a run killed before its first, starts
    the run there: a mistyped ``run_dir`` trains from step 0), with the run's own model (the options of its ``config.json``), seed, batch size, data,
    lr schedule and warm-up (another is a ConfigError); the length, intervals and speed options may change.
    ``valid`` (a Dataset) adds validation losses to the metrics rows every ``valid_every`` steps (default
    ``10 * log_every``; a multiple of ``log_every``) and at the end (so it needs a ``run_dir``: a ConfigError
    without one); ``keep_best=True`` then also keeps the weights of
    the lowest validation loss in ``run_dir/best/``, a run folder of its own
    (:class:`~genzoo.train.callbacks.BestWeights`), for models whose validation loss measures them (a ConfigError for
    the GANs, whose is the discriminator's).
    ``lr_schedule="cosine"`` anneals every optimizer's lr to 0 over the planned steps; ``warmup_steps``
    multiplies it by a linear ramp from 1 / warmup_steps to 1 (Goyal et al. 2017, Section 2.2): with the cosine,
    which runs from step 0, the lr peaks at the warm-up's end below lr, at lr (1 + cos(pi W / T)) / 2 (W / T = 1%:
    0.9998 lr; 1/3: 0.75 lr);
    ``max_minutes`` ends training (with a final checkpoint) once that much wall time has passed.
    :func:`request_stop` (``genzoo train`` calls it on SIGTERM) ends it after the current step, with a checkpoint
    of that step and no final weights (``state.stopping``); ``fit`` itself sets no signal handler.
    ``precision`` ("fp32" or "bf16" autocast), ``channels_last`` (None: on for convolutional models)
    and ``compile`` are the speed options of :mod:`genzoo.train.acceleration`; the model comes back in the layout
    it trained in (channels-last: :func:`genzoo.save` stores it as any other, ``safetensors.torch.save_file`` wants
    ``.contiguous()`` tensors) and compiled or not as ``compile`` says.

    A new run needs a ``run_dir`` free of a run's files (:data:`genzoo.io.RUN_FILES`, but ``run.json``, which
    ``genzoo train`` writes first); ``resume=True`` continues from its newest checkpoint or, where it has none
    yet (a first launch, or a run killed before its first checkpoint), starts the run when the folder holds
    no more than a run writes before its first checkpoint (:data:`BEFORE_FIRST_CHECKPOINT`).

    Training draws from torch's global RNG, seeded by ``seed``; the caller's RNG state is restored
    afterwards (``torch.random.fork_rng``, over the model's device too). The model comes back in eval mode, as
    :func:`genzoo.load` gives it, with no gradients (``.grad`` None). The model's data-dependent :meth:`~genzoo.base.GenerativeModel.setup` runs on a new model only: one
    loaded (:func:`genzoo.load`) or trained by an earlier ``fit`` trains on from its weights
    (:attr:`~genzoo.base.GenerativeModel.initialised`); its data check,
    :meth:`~genzoo.base.GenerativeModel.check_training_data`, runs on every new run. Returns the
    :class:`TrainState` (``.step``, ``.optimizers``, ...).

    A second ``fit`` of a model (without ``resume``) is a new run from its weights: its steps count from 0 again,
    with fresh optimizers, so with the same ``seed`` it takes the same batches in the same order and draws the same
    noise as the first (ten ``fit(steps=100)`` in a row train on the first 100 batches ten times). Pass another
    ``seed`` to each, or train in a ``run_dir`` and go on with ``resume=True``, which keeps the order, the noise
    and the optimizers' state. (The streams are seeded alike from ``seed``: torch's global generator, which the
    model's noise comes from, and the data generator of binarization and dequantization start in one state, and for
    seed 0 so does epoch 0's order, seeded ``seed * 1000003 + epoch``: they are not independent draws.)

    >>> import genzoo
    >>> from genzoo.data import load_dataset
    >>> data, nice = load_dataset("ring", n=256), genzoo.build("nice", data_shape=(2,), hidden=(8,))
    >>> firsts = []
    >>> class FirstBatch(Callback):                # the examples of the run's first batch
    ...     def on_start(self, state): firsts.append(state.epoch_order(0)[:4].tolist())
    >>> for seed in (0, 0, 1):             # a second fit with seed 0 starts seed 0's order again; seed 1 another
    ...     _ = fit(nice, data, steps=2, batch_size=64, seed=seed, callbacks=[FirstBatch()], progress=False)
    >>> firsts[0] == firsts[1], firsts[0] == firsts[2]
    (True, False)
    """
    # NumPy's numbers and bools (a sweep's np.arange, a mask's entry) as Python's: torch's seeding and the epoch
    # order take no np.int64, and np.True_ is no bool
    (steps, epochs, batch_size, seed, checkpoint_every, sample_every, log_every, keep, warmup_steps, max_minutes, resume,
     progress, compile, keep_best, channels_last, valid_every) = (
        v.item() if isinstance(v, np.generic) else v
        for v in (steps, epochs, batch_size, seed, checkpoint_every, sample_every, log_every, keep, warmup_steps,
                  max_minutes, resume, progress, compile, keep_best, channels_last, valid_every))
    callbacks = _checked_arguments(model, callbacks, batch_size=batch_size, seed=seed, checkpoint_every=checkpoint_every,
                                   sample_every=sample_every, log_every=log_every, keep=keep, warmup_steps=warmup_steps,
                                   resume=resume, progress=progress, compile=compile, keep_best=keep_best,
                                   channels_last=channels_last)
    check_train_options(steps=steps, epochs=epochs, batch_size=batch_size, seed=seed, checkpoint_every=checkpoint_every,
                        sample_every=sample_every, log_every=log_every, keep=keep, warmup_steps=warmup_steps,
                        max_minutes=max_minutes, valid_every=valid_every)
    if steps is None and epochs is None:
        raise ConfigError("give exactly one of steps and epochs")
    check_data(model, data, "data")
    if valid is not None:
        check_data(model, valid, "valid")
        if len(valid) == 0:
            raise DataError(f"the validation set '{valid.name}' is empty: give valid=None for no validation")
        if len(valid) < model.min_loss_examples:  # found at the first validation, mid-run, before this check
            raise DataError(f"the validation set '{valid.name}' holds {len(valid)} example{'s' * (len(valid) != 1)}, "
                            f"and a {model.name}'s loss takes at least {model.min_loss_examples}: give valid=None for "
                            "no validation")
    if model.needs_labels and data.y is None:
        raise DataError(f"{model.name} needs a training set with labels (e.g. digits or mnist); '{data.name}' has none")
    if len(data) == 0:
        raise DataError(f"the training split of '{data.name}' is empty")
    if keep_best and not model.best_by_valid_loss:
        raise ConfigError(f"keep_best keeps the weights of the lowest validation loss, and a {model.name}'s is its "
                          "discriminator's loss, which does not measure its samples: leave keep_best off (`genzoo "
                          "eval` scores the final weights)")
    if lr_schedule not in LR_SCHEDULES:
        raise ConfigError(f"unknown lr_schedule '{lr_schedule}': use {' or '.join(LR_SCHEDULES)}")
    # a user's model that keeps the base class's training_step defines what it calls (loss; one optimizer, below),
    # and sample grids need sample: refused here, not by a bare error at step 1 or at the first grid, after
    # config.json was written (over which a retry is refused)
    base_step = type(model).training_step is GenerativeModel.training_step
    if base_step and type(model).loss is GenerativeModel.loss:
        raise ConfigError(f"{type(model).__name__} defines neither loss(x) nor training_step(batch, optimizers): the "
                          "default training step minimises loss(x)['loss']")
    if valid is not None and type(model).loss is GenerativeModel.loss:  # (its own training_step needs no loss)
        raise ConfigError(f"valid= logs validation losses from loss(x), which {type(model).__name__} does not define: "
                          "give valid=None, or define loss(x)")
    if sample_every > 0 and run_dir is not None and type(model).sample is GenerativeModel.sample:
        raise ConfigError(f"sample_every={sample_every} draws sample grids, and {type(model).__name__} defines no "
                          "sample(n, generator=None): give sample_every=0")
    # its config.json, written once the run folder is made: options JSON cannot hold (a user's callable) refused now
    config = model_config(model) if run_dir is not None else None
    acceleration.check_precision(model, precision)
    # an EM model has no networks: compiling nothing asked for a C++ compiler and imported inductor (5 s)
    compile = compile and bool(acceleration.networks(model))
    if compile:  # before anything is written: inductor finds no C++ compiler only at the first compiled step
        acceleration.check_compile(model.device)
    if run_dir is not None and not str(run_dir).strip():
        raise ConfigError("run_dir needs a folder name (None: no run directory)")
    run_dir = Path(run_dir).expanduser() if run_dir is not None else None
    if run_dir is not None and blocked_by_file(run_dir):
        raise ConfigError(f"run_dir {run_dir}: that path, or a part of it, is a file, not a folder")
    distributed.check_joined()
    rank, world_size = distributed.world()
    # every rank reads the checkpoint it goes on from: decided together, so that all stop alike (one that raised
    # alone left the others waiting in their next collective call)
    if distributed.any_rank(resume and run_dir is None):
        raise CheckpointError("nothing to resume: resume=True needs a run_dir" + (
            " on every process (each reads the checkpoint it goes on from)" if world_size > 1 else ""))
    # A new run goes into a folder free of a run's files (but genzoo train's run.json, written just before);
    # resume=True with no checkpoint yet (a first launch, or a run killed before its first) starts the run where
    # there is nothing but what a run writes before its first checkpoint. Rank 0 looks, before it writes
    # anything, and every rank (with a run_dir or not) stops alike. Validation and the best weights are rank 0's
    # too (it alone validates and writes: the other ranks may have no run_dir), so their needs are checked there.
    problem = None
    if rank == 0:
        if keep_best and (valid is None or run_dir is None):
            problem = ConfigError("keep_best needs a validation set (valid=) and a run directory (run_dir=) to keep "
                                  "the best weights in")
        elif valid is not None and run_dir is None:  # (MetricsLogger computes them, with a run_dir alone)
            problem = ConfigError("valid= needs a run_dir: the validation losses go into its metrics rows "
                                  "(metrics.jsonl); give run_dir=, or leave valid out")
        elif run_dir is not None and (why := _new_run_problem(run_dir, resume)) is not None:
            problem = (CheckpointError if resume else ConfigError)(why)
    if (problem := distributed.rank0_value(problem)) is not None:
        raise problem
    if world_size > 1 and model.full_batch and len(data) < world_size:
        raise ConfigError(f"{model.name} trains on the whole set, and {len(data)} examples cannot be split over "
                          f"{world_size} processes")
    global_batch = min(batch_size, len(data))  # a set smaller than the batch is the batch
    if world_size > 1 and not model.full_batch and global_batch % world_size:
        small = f" (the whole set of {len(data)} examples, as it is smaller)" if len(data) < batch_size else ""
        fixed = ": a resume keeps the run's batch size, so run on a number of processes that divides it"
        raise ConfigError(f"batch_size {global_batch}{small} must be a multiple of the {world_size} processes"
                          f"{fixed if resume else ''}")
    state = TrainState(model=model, optimizers=[], data=data, total_steps=0, batch_size=global_batch, seed=seed,
                       run_dir=run_dir, valid=valid, lr_schedule=lr_schedule, warmup_steps=warmup_steps)
    try:
        model.check_batch_size(math.ceil(len(data) / world_size) if model.full_batch else state.batch_size // world_size)
    except ConfigError as e:
        if world_size > 1 and not model.full_batch:  # the batch the user gave, beside the part each process takes
            raise ConfigError(f"{e} (batch_size {state.batch_size} over {world_size} processes)") from None
        if model.full_batch or batch_size <= len(data):
            raise
        raise ConfigError(f"{e}: the batch is the whole set of {len(data)} examples, which is smaller than batch_size "
                          f"{batch_size}") from None
    # (rounded first: 1.1 epochs of 100 steps are 110.00000000000001 in floats, which ceil made 111 steps)
    state.total_steps = int(steps) if steps is not None else max(1, math.ceil(round(epochs * state.steps_per_epoch, 6)))
    # under torchrun: the same run everywhere (a rank given its own shard, seed or length trained another model,
    # or waited for ever in an all-reduce the others never made)
    if world_size > 1:
        # (max_minutes and resume decide collective calls of their own: the deadline's all-reduce each step, the
        # resume's broadcasts; a mismatch aborted in gloo)
        distributed.check_same_everywhere("model, data and settings", model=model.config, examples=len(data),
                                          data_checksum=_checksum(data.x), seed=seed, batch_size=global_batch,
                                          steps=state.total_steps, lr_schedule=lr_schedule, warmup_steps=warmup_steps,
                                          max_minutes=max_minutes, resume=resume)
    device = model.device
    full_x = all_x = None
    if model.full_batch:  # the whole set, transformed once with a seed-fixed draw, every step
        all_x = data.transformed(torch.Generator().manual_seed(seed + 1))
        full_x = all_x[rank::world_size].to(device)  # under torchrun: this rank's shard

    if world_size > 1 and device.type == "cuda":  # batch statistics over the global batch (GPU only in PyTorch)
        distributed.sync_batch_norm(model)
    channels_last = acceleration.use_channels_last(model, channels_last)
    if channels_last:
        acceleration.to_channels_last(model)
    state.optimizers = opts = model.configure_optimizers()
    if base_step and not (isinstance(opts, (list, tuple)) and len(opts) == 1):
        got = f"{len(opts)} optimizers" if isinstance(opts, (list, tuple)) else f"a {type(opts).__name__}"
        raise ConfigError(f"{type(model).__name__}: the default training_step takes one optimizer, and "
                          f"configure_optimizers() returned {got}: return [one optimizer] (or write a training_step)")
    if run_dir is not None:  # a checkpoint's state.json holds the param groups: what JSON cannot hold refused now, not
        _check_param_groups(opts)  # by a bare TypeError at the first checkpoint, after config.json was written
    for opt in state.optimizers if world_size > 1 else ():
        distributed.average_gradients_before_step(opt)
    hold = contextlib.ExitStack()  # the run's lock (rank 0), from before its checkpoints are read to the end
    # training seeds and draws from torch's global RNG: the caller's stream is put back afterwards, and the model
    # is handed back in eval mode, as load() gives it (a query in train mode uses batch statistics, dropout, ...)
    hold.callback(model.eval)
    hold.enter_context(forked_rng(device))
    # a refused resume hands the caller's model back as it came, not holding the run's weights
    before = ({k: v.detach().clone() for k, v in model.state_dict().items()}, model.initialised) if resume else None
    try:
        if resume:  # rank 0 locks the run and compares the model with the run's; every rank stops alike
            problem = None
            if rank == 0:
                try:
                    if run_dir.is_dir():
                        hold.enter_context(run_lock(run_dir))
                        for own in ("config.json", "metrics.jsonl"):  # a link among the run's files: refused before
                            refuse_link(run_dir / own)             # anything of the run is read or touched
                    problem = _model_change(run_dir, config)
                except GenZooError as e:  # RunLocked: another process trains the run; a lock file it cannot make
                    problem = e
            if (problem := distributed.rank0_value(problem)) is not None:
                raise problem if isinstance(problem, GenZooError) else ConfigError(problem)
        loaded = load_newest_checkpoint(run_dir, model, state.optimizers) if (resume and run_dir is not None) else None
        ckpt, saved, rng, damaged = loaded if loaded else (None, None, None, [])
        if resume and run_dir is not None and world_size > 1:  # each rank read the folder itself: the same point?
            mine = ckpt.name if ckpt is not None else "no checkpoint"
            first = distributed.rank0_value(mine)
            if distributed.any_rank(mine != first):
                raise ConfigError(f"under torchrun the processes found different checkpoints in {run_dir} (rank 0: "
                                  f"{first}; rank {rank}: {mine}): --run-dir must be on a file system every process "
                                  "sees, the same for all")
        if ckpt is not None:
            from .callbacks import run_plan

            changed = [f"{k} {saved[k]!r}, now {v!r}" for k, v in run_plan(state).items() if k in saved and saved[k] != v]
            if changed:  # (checkpoints from before a key was recorded are not checked for it)
                raise ConfigError(f"resume=True continues the run in {run_dir} as it was trained: its {'; '.join(changed)} "
                                  "(give the run's own, or another run_dir for a new run)")
            state.step = state.resumed_from = int(saved["step"])
            state.partial_logs, state.guard = saved.get("partial_logs"), saved.get("guard")
            # stopped between its last checkpoint and its final weights: resuming it writes them
            unfinished = state.step == state.total_steps and not (run_dir / WEIGHTS).is_file()
            if state.step >= state.total_steps and not unfinished:
                raise ConfigError(f"the run in {run_dir} has done {state.step} steps already: ask for more than "
                                  f"{state.step} steps (or epochs) to train it longer")
            if rank == 0:  # going on from ckpt: the newer, damaged ones out of the run's way
                set_aside_damaged(damaged, ckpt)
            state.set_rng_state(rng)
        else:
            torch.manual_seed(seed)
            state.data_generator.manual_seed(seed)
            # setup sees the data as training batches will (binarized or dequantized), from its own seed
            setup_x = (all_x if all_x is not None else data.transformed(torch.Generator().manual_seed(seed + 2))).to(device)
            # every new run: a loaded or trained model skips setup and its checks (a Bernoulli VAE's [0, 1])
            model.check_training_data(setup_x)
            if not model.initialised:  # a loaded or trained model keeps its weights (a flow's setup re-initialises)
                model.setup(setup_x, state.data_generator)
                model.initialised = True
            del setup_x  # (not held on the device through training)
            if data.y is not None:  # models that learn from labels keep what they need (M2: its labelled subset)
                # the batches' space to models that take it (a family written to the 3-argument contract still works)
                params = inspect.signature(model.setup_labels).parameters
                takes = "space" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
                space = {"space": data.space} if takes else {}
                model.setup_labels(data.x.to(device), data.y.to(device), state.data_generator, **space)
        distributed.broadcast_from_rank0(model.state_dict().values())  # one model, whatever each rank was seeded
        if compile:  # after setup, whose one-off data-dependent pass (ActNorm's initialisation) would break the graph
            acceleration.compile_networks(model)
        else:  # compiled by an earlier fit(compile=True): eager again
            acceleration.eager_networks(model)
    except BaseException:
        hold.close()
        if before is not None:
            with torch.no_grad():
                for k, v in model.state_dict().items():
                    v.copy_(before[0][k])
            model.initialised = before[1]
        raise
    writes = run_dir if rank == 0 else None  # rank 0 alone writes files
    with hold:
        if writes is not None:
            try:
                writes.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise WriteError(f"cannot create the run folder {writes}: {e.strerror or e}") from None
            hold.enter_context(run_lock(writes))  # one process at a time trains a run (re-entrant: held on resume)
            folder = _identity(writes)  # checked after each step's writes: a folder removed or moved away is said
            if ckpt is not None and state.step < state.total_steps:
                # a run trained further than it was: its old final weights are not its weights any more, so
                # load() and eval take the newest checkpoint until this one ends and writes its own
                (writes / WEIGHTS).unlink(missing_ok=True)
            atomic_write_json(writes / "config.json", config, own=True)

        cbs = default_callbacks(writes, checkpoint_every=checkpoint_every, sample_every=sample_every,
                                log_every=log_every, progress=progress and rank == 0, keep=keep,
                                keep_best=keep_best, valid_every=valid_every) + list(callbacks)
        for cb in cbs:
            cb.on_start(state)
        model.train()
        try:
            state.planned_steps, deadline = state.total_steps, time.time() + 60 * max_minutes if max_minutes else math.inf
            _stop.update(listening=True, asked=False)
            while state.step < state.total_steps:
                if lr_schedule != "constant" or warmup_steps:
                    set_lr(state.optimizers, state.step, state.planned_steps, cosine=lr_schedule == "cosine", warmup=warmup_steps)
                batch = full_batch(full_x, data) if full_x is not None else next_batch(state, device)
                try:
                    logs = acceleration.training_step(model, batch, state.optimizers, device, precision, channels_last)
                except TrainingDiverged as e:  # raised by the step itself (EM's M-step failed): the newest
                    # checkpoint's weights gave a finite loss (its E-step), so it is kept as the last good one, and the
                    # spare beside it pruned; but a resume from it takes the failing step again (EM is deterministic)
                    if writes is not None:
                        prune_checkpoints(writes, keep)
                    again = (f" (a resume from it takes step {state.step + 1} again: fit anew with other settings)"
                             if state.run_dir is not None and latest_checkpoint(state.run_dir) is not None else "")
                    raise TrainingDiverged(f"training diverged at step {state.step + 1}: {e}{kept(state.run_dir)}"
                                           f"{again}{_lr_hint(state)}") from None
                # under torchrun: the global batch's terms, the same on every rank; and a stop request rides on
                # that all-reduce (no other per step), so every rank stops after the same step
                if world_size > 1:
                    logs = distributed.mean_logs({**logs, _STOP: float(_stop["asked"])})
                asked = logs.pop(_STOP) > 0 if world_size > 1 else _stop["asked"]
                state.step += 1
                # the time budget is spent: this step is the last one (decided together under torchrun)
                if max_minutes and distributed.any_rank(time.time() > deadline):
                    state.total_steps = state.step
                state.stopping = asked and state.step < state.total_steps  # (Checkpoint writes this step's)
                try:
                    for cb in cbs:
                        cb.on_step_end(state, logs)
                except WriteError:  # a write that failed because the run folder is gone: that said, not the write
                    if writes is not None:
                        _check_folder(writes, folder)
                    raise
                if writes is not None:
                    _check_folder(writes, folder)
                if state.stopping:
                    break
        finally:
            _stop.update(listening=False, asked=False)
            for cb in cbs:
                cb.on_end(state)
            for opt in state.optimizers:  # the model comes back without the last step's gradients (a copy of it)
                opt.zero_grad(set_to_none=True)
        if writes is not None and not state.stopping:  # (stopped: an unfinished run, whose newest checkpoint it is)
            _check_folder(writes, folder)  # (write_model would make a folder gone anew)
            write_model(model, writes)  # the run's own weights: save() refuses a run folder
    return state


class RunFolderGone(WriteError):
    """The run folder was removed, moved away or replaced while :func:`fit` trained in it."""


def _identity(folder: Path) -> tuple[int, int] | None:
    """The (device, inode) of ``folder``, or None where it is gone."""
    try:
        st = os.stat(folder)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _check_folder(folder: Path, identity: tuple[int, int] | None) -> None:
    """A :class:`RunFolderGone` unless ``folder`` is still the folder of ``identity`` (:func:`_identity` at the
    start): a run folder removed (``rm -rf``) or moved away mid-run was made anew, partly, by the next write (a
    checkpoint's ``mkdir``), and the run ended "successfully" in a folder without its run.json and history."""
    if _identity(folder) != identity:
        raise RunFolderGone(f"the run folder {folder} was removed, moved away or replaced during training: training "
                            "stopped rather than write a partial run there (the checkpoints written before went "
                            "with the folder)") from None


#: a stop request (:func:`request_stop`): ``listening`` while :func:`fit` runs its steps
_stop = {"listening": False, "asked": False}
_STOP = "_stop_requested"  # its key in the logs all-reduced under torchrun


def request_stop() -> bool:
    """Ask the :func:`fit` running its steps to stop after the current one, with a checkpoint of that step (a
    consistent state: a resume goes on as the uninterrupted run) and without final weights, the run being
    unfinished: ``genzoo train``'s SIGTERM handler calls it, as a scheduler's grace period is for this. Safe
    in a signal handler. False where no ``fit`` runs its steps, or one was asked already: the caller then stops
    at once (a second SIGTERM).

    >>> request_stop()  # no fit running
    False
    """
    if not _stop["listening"] or _stop["asked"]:
        return False
    _stop["asked"] = True
    return True


def stop_pending() -> bool:
    """Whether a :func:`request_stop` waits for the running step to end."""
    return _stop["listening"] and _stop["asked"]


def _checked_arguments(model, callbacks, *, resume, progress, compile, keep_best, channels_last, **numbers) -> list:
    """``callbacks`` as a list, after a ConfigError for what :func:`check_train_options` does not see: a model
    genzoo did not build, a number given as None, a switch that is not a bool (``"off"`` would be True), callbacks
    that are not a list of callbacks."""
    if not isinstance(model, GenerativeModel):
        raise ConfigError(f"fit trains genzoo models (built by genzoo.build), not a {type(model).__name__}")
    if none := [k for k, v in numbers.items() if v is None]:
        raise ConfigError(f"{', '.join(none)} must be given (leave it out for its default), not None")
    flags = {"resume": resume, "progress": progress, "compile": compile, "keep_best": keep_best,
             "channels_last": True if channels_last is None else channels_last}  # None: the model decides
    if bad := [f"{k}={v!r}" for k, v in flags.items() if not isinstance(v, bool)]:
        raise ConfigError(f"{', '.join(bad)}: give True or False (channels_last may also be None)")
    if callbacks is None or hasattr(callbacks, "on_step_end"):
        raise ConfigError(f"callbacks must be a list of callbacks (genzoo.train.Callback), got {callbacks!r}")
    callbacks = list(callbacks)  # once: an iterator checked here would be empty when training starts
    if bad := [type(cb).__name__ for cb in callbacks
               if not all(callable(getattr(cb, m, None)) for m in ("on_start", "on_step_end", "on_end"))]:
        raise ConfigError(f"callbacks must have on_start, on_step_end and on_end (genzoo.train.Callback); "
                          f"{', '.join(bad)} has not")
    return callbacks


def _check_param_groups(optimizers) -> None:
    """A ConfigError naming the first value of an optimizer's param groups that a checkpoint's state.json cannot
    hold (torch takes ``lr=torch.tensor(1e-3)``), checked before the first step.

    >>> p = [torch.nn.Parameter(torch.zeros(2))]
    >>> _check_param_groups([torch.optim.Adam(p, lr=1e-3)])
    >>> _check_param_groups([torch.optim.Adam(p, lr=torch.tensor(1e-3))])
    Traceback (most recent call last):
    genzoo.errors.ConfigError: optimizer 0's param group holds lr as a Tensor, which a checkpoint (state.json) cannot hold: give a float
    """
    for i, opt in enumerate(optimizers):
        for group in opt.state_dict()["param_groups"]:
            for key, value in group.items():
                try:
                    dumps(value)
                except (TypeError, ValueError):
                    tensor = isinstance(value, torch.Tensor) or (isinstance(value, (list, tuple)) and any(
                        isinstance(v, torch.Tensor) for v in value))
                    raise ConfigError(f"optimizer {i}'s param group holds {key} as {'a Tensor' if tensor else repr(value)}, "
                                      "which a checkpoint (state.json) cannot hold: give "
                                      f"{'a float' if tensor else 'numbers'}") from None


def _new_run_problem(run_dir: Path, resume: bool) -> str | None:
    """Why :func:`fit` may not train in ``run_dir`` (rank 0's look, before anything is written), or None."""
    if resume and holds_checkpoint(run_dir):
        return None  # a run to continue (from a checkpoint a save cut short left as .old-step-N too)
    if resume and (why := nothing_to_resume(run_dir)):  # every checkpoint set aside: not a run killed before its first
        return why
    allowed = {"run.json", *(BEFORE_FIRST_CHECKPOINT if resume else ())}
    held = [f for f in run_files_in(run_dir) if f not in allowed]
    if not held:
        return None
    if holds_checkpoint(run_dir):
        return (f"{run_dir} already holds checkpoints of a run: resume=True continues it; give another run_dir for "
                "a new run")
    if resume:
        return (f"nothing to resume: {run_dir} has no checkpoint, and holds {', '.join(held)}, which a run does not "
                "write before its first")
    return f"{run_dir} already holds {', '.join(held)} (files a run writes): give an empty or new run_dir"


def _model_change(run_dir: Path, config: dict) -> str | None:
    """Why ``resume=True`` may not train the run in ``run_dir`` on with the model whose config.json is ``config``
    (:func:`~genzoo.io.model_config`): the first option in which it differs from the run's config.json, the model
    its checkpoints' weights were trained as (another activation, objective or lr would train them on as another
    model, and config.json, written again, would rebuild every checkpoint so); None where they agree, where the run
    has no checkpoint yet (it starts again, as the model given), or where its config.json is gone or unreadable
    (written again from the model). Options the run's config.json lacks (added by a later genzoo) are not compared.

    >>> import tempfile, genzoo
    >>> d = Path(tempfile.mkdtemp())
    >>> (d / "checkpoints" / "step-00000004").mkdir(parents=True)
    >>> atomic_write_json(d / "config.json", model_config(genzoo.build("nice", data_shape=(2,))))
    >>> _model_change(d, model_config(genzoo.build("nice", data_shape=[2])))  # tuples and lists alike
    >>> _model_change(d, model_config(genzoo.build("nice", data_shape=(2,), lr=0.01))).split("trained: ")[1][:52]
    "its lr is 0.001 (its config.json), this model's 0.01"
    """
    path = run_dir / CONFIG
    if not holds_checkpoint(run_dir) or not path.is_file():
        return None
    try:
        ran = read_json(path, "model config")
    except (CheckpointError, OSError):
        return None
    now = loads(dumps(config))  # as config.json holds it: lists for tuples, NaN and infinities as floats

    def same(a, b) -> bool:
        return a == b or dumps(a) == dumps(b)  # (a NaN option is the same NaN)

    was = ran.get("config") if isinstance(ran.get("config"), dict) else {}
    changed = [("model", ran.get("model"), now["model"])] if ran.get("model") != now["model"] else []
    changed += [(k, v, now["config"][k]) for k, v in was.items() if k in now["config"] and not same(v, now["config"][k])]
    dtypes = [c.get("parameter_dtype") or str((c.get("config") or {}).get("dtype", "float32")) for c in (ran, now)]
    if dtypes[0] != dtypes[1]:  # a model.double() against the run's float32 (review 108; a GMM's own dtype option too)
        changed.append(("parameter dtype", *dtypes))
    if not changed:
        return None
    key, old, new = changed[0]
    return (f"resume=True continues the run in {run_dir} as it was trained: its {key} is {old!r} (its config.json), "
            f"this model's {new!r}: resume with the run's model (genzoo.load(run_dir) gives it; `genzoo train --resume` "
            "builds it from run.json's [model] table, which must keep the run's options), or use another run_dir for a "
            "new run")


def set_lr(optimizers, step: int, total: int, cosine: bool = True, warmup: int = 0) -> None:
    """Set every group's lr from its ``initial_lr`` and the step alone (so resume is exact):
    the cosine schedule lr_0 * (1 + cos(pi * step / total)) / 2 (Loshchilov & Hutter 2017, no restarts),
    times the linear warm-up min(1, (step + 1) / warmup) (Goyal et al. 2017) where ``warmup`` > 0. The two factors
    multiply from step 0 (the cosine does not wait for the warm-up's end), so with both the lr peaks below lr_0, at
    lr_0 (1 + cos(pi warmup / total)) / 2; kept so, as a resumed run's lr must be the one it was trained with.
    """
    factor = 0.5 * (1 + math.cos(math.pi * min(step, total) / max(total, 1))) if cosine else 1.0
    if warmup > 0:
        factor *= min(1.0, (step + 1) / warmup)
    for opt in optimizers:
        for group in opt.param_groups:
            group.setdefault("initial_lr", group["lr"])
            group["lr"] = group["initial_lr"] * factor


def full_batch(full_x: torch.Tensor, data) -> Batch:
    rank, size = distributed.world()
    return Batch(full_x, data.y[rank::size].to(full_x.device) if data.y is not None else None)


def next_batch(state: TrainState, device: torch.device) -> Batch:
    """The batch of ``state.step``: a deterministic function of (seed, step) and the data generator."""
    epoch, pos = divmod(state.step, state.steps_per_epoch)
    idx = state.epoch_order(epoch)[pos * state.batch_size:(pos + 1) * state.batch_size]
    x = state.data.batch(idx, state.data_generator)  # every rank draws the global batch's noise ...
    part = distributed.local_slice(len(idx))  # ... and keeps its own slice of it
    x = x[part].to(device, non_blocking=True)
    y = state.data.y[idx][part].to(device) if state.data.y is not None else None
    return Batch(x, y)
