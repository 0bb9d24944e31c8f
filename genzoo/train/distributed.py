"""Data-parallel training with PyTorch's own engine: ``torchrun --nproc_per_node=N -m genzoo train ...``.

torchrun starts N processes and sets RANK / WORLD_SIZE / MASTER_ADDR; :func:`init` joins them in a
``torch.distributed`` process group (gloo on the CPU, NCCL on GPUs). Then :func:`genzoo.train.fit`:

* gives every rank its contiguous share of each global batch: all ranks draw the global batch's indices
  and its binarization or dequantization noise from the same generator and keep their slice, so the
  data are exactly those of a single process with the same ``batch_size`` (which must divide by N);
* averages gradients before every optimizer step (:func:`average_gradients_before_step`: a pre-step hook
  on each optimizer all-reduces the gradients it is about to apply, one flat buffer per optimizer; a step
  that clips the gradient norm averages first, :func:`average_gradients`, so it clips the global batch's).
  Because every loss is a mean over the examples, the average of the shards' gradients is the gradient
  of the global batch. The GMMN's MMD, a statistic over all pairs, is not: each rank gathers the global batch
  (:func:`global_batch`) and computes its MMD, and :func:`global_loss` scales the gradient through its own
  slice so that the average is again the global batch's;
* averages the logged terms of each step over the ranks (:func:`mean_logs`), so the metrics and the
  divergence guard see the global batch's, and stops at a time budget on every rank at once
  (:func:`any_rank`);
* lets rank 0 alone write files (checkpoints, metrics, pictures, the final weights); its validation
  losses are computed as a single process would (:func:`alone`).

Models draw their own noise (the VAE's eps, the GAN's z) through :func:`randn`, which draws for the
global batch and keeps the rank's slice, so a run on N processes equals the single-process run with the
same global batch up to floating-point summation order (tested on the CPU with gloo). EM-fitted models
all-reduce their sufficient statistics with :func:`all_reduce_sum`.

Why not ``DistributedDataParallel``: genzoo's models run their own steps (a GAN updates two networks,
calls its discriminator on real and fake batches and differentiates twice for the gradient penalty;
EM has no gradients), which DDP's "one forward, one backward" contract does not fit without wrappers
per network and per step. Averaging at the optimizer is exact for all of them; what it gives up is
DDP's overlap of communication with the backward pass, which matters little for models of this size.
Batch norm: on CUDA, ``fit`` converts every batch-norm layer to ``SyncBatchNorm``, so the statistics are
the global batch's. On CPU (gloo) ``SyncBatchNorm`` is not available and each rank normalises by its
shard's statistics; the mean of the shards' gradients is then not the single-process gradient, so
models with batch norm (DCGAN, RealNVP with ``norm="batch"``) match a single process only in
distribution there.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading

import torch
import torch.distributed as dist
from torch import Tensor

from ..errors import ConfigError


_ALONE = [0]  # > 0 within alone(): this process computes on its own


def world() -> tuple[int, int]:
    """(rank, world size): (0, 1) outside a process group, or within :func:`alone`."""
    if dist.is_available() and dist.is_initialized() and not _ALONE[0]:
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@contextlib.contextmanager
def alone():
    """Within the block, this process draws and computes as a single process would (world() is (0, 1)): for
    work one rank does by itself, such as rank 0's validation losses, whose noise must not be a slice of a
    draw for the other ranks' batches too."""
    _ALONE[0] += 1
    try:
        yield
    finally:
        _ALONE[0] -= 1


def any_rank(flag: bool) -> bool:
    """Whether ``flag`` is true on any rank (one all-reduce; ``flag`` itself alone): a decision every rank must
    take together, such as stopping at a time budget, where one rank stopping alone would leave the others
    waiting in their next all-reduce for ever."""
    if world()[1] == 1:
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def mean_logs(logs: dict[str, float]) -> dict[str, float]:
    """A step's logged terms averaged over the ranks (each computed them on its shard of the global batch), so
    the metrics, and the divergence guard's decision, are the global batch's on every rank; ``logs`` itself alone."""
    if world()[1] == 1 or not logs:
        return logs
    keys = sorted(logs)  # one order on every rank for the reduction ...
    t = torch.tensor([float(logs[k]) for k in keys], dtype=torch.float64)  # (K,)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    t /= world()[1]
    mean = dict(zip(keys, t.tolist()))
    return {k: mean[k] for k in logs}  # ... and the model's order back, as one process logs them


def rank0_value(value):
    """Rank 0's ``value`` on every rank (one broadcast; ``value`` itself alone): a choice that each process
    would otherwise make by itself, such as a run folder named after the clock."""
    if world()[1] == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def check_same_everywhere(what: str, **settings) -> None:
    """A ConfigError on every rank, naming the first of ``settings`` that differs between the ranks (one
    all-gather; nothing alone): :func:`~genzoo.train.fit` assumes every process was given the same run.

    >>> check_same_everywhere("fit", seed=0, examples=100)  # one process: nothing to compare
    """
    if world()[1] == 1:
        return
    every: list = [None] * world()[1]
    dist.all_gather_object(every, settings)
    for key in settings:
        values = [s[key] for s in every]
        if all(isinstance(v, dict) for v in values):  # a model's config: named by the first option that differs
            differs = [k for k in dict.fromkeys(k for v in values for k in v) if any(v.get(k) != values[0].get(k)
                                                                                    for v in values)]
            if differs:
                key, values = f"{key} option {differs[0]}", [v.get(differs[0]) for v in values]
        if any(v != values[0] for v in values):
            raise ConfigError(f"under torchrun every process must be given the same {what}, and its {key} differs: "
                              f"{', '.join(f'rank {r}: {v}' for r, v in enumerate(values))}")


def broadcast_from_rank0(tensors) -> None:
    """Every rank's ``tensors`` set in place to rank 0's (as DistributedDataParallel does to a model's weights at
    its start), so ranks that started from other weights (a script seeding each process apart) train one model."""
    if world()[1] == 1:
        return
    for t in tensors:
        buf = t.detach().contiguous()  # (a channels-last weight: sent in a contiguous copy)
        dist.broadcast(buf.view(torch.uint8) if buf.dtype == torch.bool else buf, src=0)
        if buf.data_ptr() != t.data_ptr():
            t.detach().copy_(buf)


def check_joined() -> None:
    """A ConfigError where torchrun started this process among others and it has not joined their process group:
    :func:`~genzoo.train.fit` would train the whole run once in every process."""
    if launched_by_torchrun() and not (dist.is_available() and dist.is_initialized()):
        raise ConfigError(f"under torchrun (WORLD_SIZE={os.environ['WORLD_SIZE']}) fit trains data-parallel once this "
                          "process has joined the others: call genzoo.train.distributed.init(device) before fit "
                          "(genzoo train does), or unset WORLD_SIZE to train in one process")


def close() -> None:
    """Leave the process group, if this process joined one (local for gloo: no wait on a peer that died)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_main() -> bool:
    """True on rank 0 (or without a process group): the process that writes files."""
    return world()[0] == 0


def launched_by_torchrun() -> bool:
    """Whether torchrun's WORLD_SIZE asks for more than one process (empty: unset; a ConfigError if it is not a
    whole number >= 1)."""
    value = os.environ.get("WORLD_SIZE", "").strip()
    if not value:
        return False
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise ConfigError(f"WORLD_SIZE={value!r} is not a number of processes: torchrun sets it; unset it to "
                          "train in one process")
    return n > 1


@contextlib.contextmanager
def _default_signals():
    """SIGTERM and SIGINT kill the process within the block, as they do a plain one: a rendezvous waits in C++,
    where Python's handlers (genzoo's SIGTERM one, KeyboardInterrupt) would never run, so a process waiting
    for peers that never come (a stale WORLD_SIZE in the environment) could not be stopped but by SIGKILL."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {s: signal.signal(s, signal.SIG_DFL) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, handler in saved.items():
            if handler is not None:  # None: set outside Python, not restorable
                signal.signal(s, handler)


def _env_int(name: str, low: int, high: int | None, what: str, default: int | None = None) -> int:
    """The whole number in the environment variable ``name`` (torchrun's; empty: unset, ``default``), or a one-line
    ConfigError naming it and its value where it is not one in ``low .. high`` (``what`` says which).

    >>> os.environ["GENZOO_TEST_PORT"] = "http"
    >>> _env_int("GENZOO_TEST_PORT", 1, 65535, "a port number, 1 to 65535")
    Traceback (most recent call last):
    genzoo.errors.ConfigError: GENZOO_TEST_PORT='http' is not a port number, 1 to 65535: start a distributed run with torchrun, which sets it (README), or unset WORLD_SIZE to train in one process
    >>> del os.environ["GENZOO_TEST_PORT"]
    """
    value = os.environ.get(name, "").strip()
    if not value and default is not None:
        return default
    try:
        n = int(value)
    except ValueError:
        n = None
    if n is None or n < low or (high is not None and n > high):
        raise ConfigError(f"{name}={os.environ.get(name, '')!r} is not {what}: start a distributed run with torchrun, "
                          "which sets it (README), or unset WORLD_SIZE to train in one process")
    return n


def init(device: torch.device) -> tuple[int, int]:
    """Join torchrun's process group (once): NCCL for CUDA tensors (gloo beside it for CPU ones) on GPUs, gloo
    otherwise. Returns (rank, world)."""
    if launched_by_torchrun() and not dist.is_initialized():
        if not dist.is_available():
            raise ConfigError("this torch build has no torch.distributed: cannot run under torchrun")
        size = int(os.environ["WORLD_SIZE"])
        missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if not os.environ.get(k, "").strip()]  # empty: unset
        if missing:
            raise ConfigError(f"WORLD_SIZE={os.environ['WORLD_SIZE']} but {', '.join(missing)} not set: start a "
                              "distributed run with torchrun (README), or unset WORLD_SIZE")
        rank = _env_int("RANK", 0, size - 1, f"a process number of WORLD_SIZE={size}, 0 to {size - 1}")
        _env_int("MASTER_PORT", 1, 65535, "a port number, 1 to 65535")
        if device.type == "mps":
            raise ConfigError("--device mps does not run under torchrun (gloo cannot all-reduce MPS tensors): use "
                              "--device cpu, or one process")
        # on GPUs NCCL for the tensors on them, gloo for the small CPU ones (the logged terms, stop decisions)
        backend = "cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            local = _env_int("LOCAL_RANK", 0, None, "a process number on this machine, 0 or more", default=0)
            n_gpus = torch.cuda.device_count()
            if device.index is not None:
                raise ConfigError(f"--device {device}: under torchrun each process takes the GPU of its LOCAL_RANK; "
                                  "give --device cuda")
            if local >= n_gpus:
                raise ConfigError(f"torchrun started process {local} of this machine, and torch sees {n_gpus} CUDA "
                                  f"device(s): one GPU per process (--nproc_per_node={n_gpus}, or --device cpu)")
            torch.cuda.set_device(local)
        if "TORCHELASTIC_RUN_ID" not in os.environ:  # set by hand, or stale: every rank says why it waits
            print(f"genzoo: WORLD_SIZE={os.environ['WORLD_SIZE']} in the environment: waiting for the other "
                  f"processes at {os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']} as RANK={rank} (unset "
                  "WORLD_SIZE to train in one process)", file=sys.stderr, flush=True)
        with _default_signals():
            dist.init_process_group(backend)
    return world()


def local_slice(n_global: int) -> slice:
    """This rank's contiguous part of a global batch of ``n_global`` (which the world size divides)."""
    rank, size = world()
    n = n_global // size
    return slice(rank * n, (rank + 1) * n)


def _global_draw(draw, shape: tuple[int, ...], dim: int, **kw) -> Tensor:
    rank, size = world()
    if size == 1:
        return draw(*shape, **kw)
    full = list(shape)
    full[dim] *= size
    return draw(*full, **kw).narrow(dim, rank * shape[dim], shape[dim])


def randn(*shape: int, dim: int = 0, device=None, dtype=None, generator: torch.Generator | None = None) -> Tensor:
    """``torch.randn(*shape)`` for this rank's part of a global batch along ``dim``: every rank draws the
    global tensor (``shape[dim] x world``) from the same stream and keeps its slice, so the noise is the
    single-process noise. Without a process group, plain ``torch.randn``."""
    return _global_draw(torch.randn, shape, dim, device=device, dtype=dtype, generator=generator)


def rand(*shape: int, dim: int = 0, device=None, dtype=None, generator: torch.Generator | None = None) -> Tensor:
    """:func:`randn`'s uniform twin."""
    return _global_draw(torch.rand, shape, dim, device=device, dtype=dtype, generator=generator)


def dropout(t: Tensor, p: float, dim: int = 0) -> Tensor:
    """``F.dropout(t, p)`` (training) for this rank's part of a global batch along ``dim``: the global batch's
    mask, drawn from the same stream as F.dropout draws it on the CPU (``bernoulli(1 - p) / (1 - p)``), and this
    rank's slice of it, so the masks are a single process's rather than one copy per rank. Alone: F.dropout. For
    0 <= p < 1.

    >>> _ = torch.manual_seed(0); a = dropout(torch.ones(3, 4), 0.5)
    >>> _ = torch.manual_seed(0); b = torch.nn.functional.dropout(torch.ones(3, 4), 0.5)
    >>> torch.equal(a, b)
    True
    """
    if p == 0 or world()[1] == 1:
        return torch.nn.functional.dropout(t, p)  # (alone: F.dropout itself, its fused kernel on CUDA included)
    noise = _global_draw(lambda *shape, **kw: torch.empty(*shape, **kw).bernoulli_(1 - p), tuple(t.shape), dim,
                         device=t.device, dtype=t.dtype)
    return t * noise.div_(1 - p)


def randn_like(t: Tensor, dim: int = 0) -> Tensor:
    return randn(*t.shape, dim=dim, device=t.device, dtype=t.dtype)


def global_batch(t: Tensor) -> Tensor:
    """The global batch (B, ...) of which ``t`` (B / N, ...) is this rank's slice, in rank order, on every rank: for a
    loss that is not a mean over examples, such as the GMMN's MMD over all pairs. Only this rank's slice carries its
    graph; :func:`global_loss` makes up for the others. Alone: ``t``.

    >>> global_batch(torch.ones(2, 3)).shape  # one process: the batch itself
    torch.Size([2, 3])
    """
    rank, size = world()
    if size == 1:
        return t
    parts = [torch.empty_like(t) for _ in range(size)]
    dist.all_gather(parts, t.detach().contiguous())
    parts[rank] = t  # (B / N, ...) this rank's own, with its graph
    return torch.cat(parts)  # (B, ...)


def global_loss(loss: Tensor) -> Tensor:
    """``loss``, computed by every rank on the same :func:`global_batch`, with N times its gradient: each rank's
    gradient flows through its own slice only, so the mean over the ranks that the optimizer hook takes is the
    global batch's gradient. The value is unchanged. Alone: ``loss``."""
    size = world()[1]
    return loss if size == 1 else loss + (size - 1) * (loss - loss.detach())


def all_reduce_sum(t: Tensor) -> Tensor:
    """Sum ``t`` over the ranks in place (no-op alone); returns ``t``."""
    if world()[1] > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def average_gradients(opt: torch.optim.Optimizer) -> None:
    """Replace each gradient ``opt`` holds by its mean over the ranks now (one all-reduce of one flat buffer), and
    mark them so that the pre-step hook of :func:`average_gradients_before_step` does not average them again: for
    what must see the global batch's gradient before the step, such as clipping its norm. No-op alone."""
    size = world()[1]
    if size == 1:
        return
    grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
    if grads:
        flat = torch.cat([g.reshape(-1) for g in grads])  # (P,)
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= size
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()
    opt._genzoo_averaged = True


def average_gradients_before_step(optimizer: torch.optim.Optimizer):
    """Register a pre-step hook that replaces each gradient the optimizer holds by its mean over the ranks
    (:func:`average_gradients`, unless the step already did). Returns the hook handle (``.remove()`` to undo)."""

    def hook(opt, args, kwargs):
        if not getattr(opt, "_genzoo_averaged", False):
            average_gradients(opt)
        opt._genzoo_averaged = False
        return None

    return optimizer.register_step_pre_hook(hook)


def sync_batch_norm(model: torch.nn.Module) -> torch.nn.Module:
    """Every ``nn.BatchNorm*`` layer of ``model`` made a ``SyncBatchNorm``, in place (same parameters and
    state-dict keys): batch statistics over the global batch instead of each rank's slice (Ioffe & Szegedy
    2015 statistics, as one process would see them). PyTorch runs it on GPUs only; ``fit`` applies it
    under torchrun on CUDA. Returns ``model``."""
    for name, child in list(model.named_children()):
        setattr(model, name, torch.nn.SyncBatchNorm.convert_sync_batchnorm(child))
    return model
