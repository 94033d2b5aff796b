"""Multi-process training (DistributedDataParallel) with one code path for 1..N processes.

    torchrun --nproc_per_node N -m lewm_core train --data ... --out ...

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK (and MASTER_ADDR / MASTER_PORT) in every process.
A process started without them, or with WORLD_SIZE=1, is the world-size-1 case: no process group
is created and every collective below returns its input unchanged (no copy, no communication),
so one process computes exactly what it computed before this module existed.

Global SIGReg. SIGReg is not a mean of per-sample terms: the Epps-Pulley statistic of N samples
is N * |phi_emp - phi|^2, and the empirical characteristic function must see the whole batch.
Computing it per GPU (as the public code does) tests B/W samples instead of B and hurts results.
Here every rank all-gathers the embeddings of the global batch (`all_gather_with_grad`, in rank
order, so the gathered batch is the single-process batch) and computes SIGReg on it with the
same random directions (the trainer seeds one CPU generator identically on every rank).

Gradient factor. Let rank r hold shard z_r of the global batch and minimise
    L_r = L_pred(shard r) + lambda * S(gather(z_1..z_W)),
where S is the same number on every rank. The collectives here have the autograd semantics of
"the objective is the SUM over ranks of the per-rank losses": the backward of an all-gather sums
the incoming gradients of all ranks (all-reduce) and hands each rank its slice. So rank r's
backward yields d(sum_r' L_r')/d(local computation of r), and summed over ranks the parameter
gradient is d(sum_r' L_r')/d theta = W * d(L_pred(global) + lambda * S)/d theta, because
sum_r' L_pred(shard r') = W * L_pred(global) for equal shards (mean of means) and S appears W
times. DDP averages gradients over ranks (divides by W), which gives exactly the gradient of the
single-process loss on the global batch: no extra factor is needed in the per-rank loss.

Global BatchNorm. The projectors hold BatchNorm1d layers; per-rank batch statistics would make
DDP differ from one process on the concatenated batch (and torch's SyncBatchNorm refuses CPU
tensors). `convert_batchnorm` swaps them for `GlobalBatchNorm1d`, which in training computes the
mean and (two-pass) variance over the global batch with differentiable all-reduces; state-dict
keys are unchanged. Code that one rank runs alone (recalibration, evaluation) wraps itself in
`local_batchnorm(model)`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NoReturn

import torch
import torch.distributed as dist
from torch import Tensor, nn

from lewm_core.errors import UserError
from lewm_core.world_model.sigreg import sigreg


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: global rank, number of processes, rank and count on this host."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files and prints."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise UserError(f"environment variable {name}={text!r} is not an integer") from None


def env_info() -> DistInfo:
    """DistInfo from an initialised process group, else from torchrun's environment variables.

    Without RANK / WORLD_SIZE (not launched by torchrun) this is rank 0 of 1.
    """
    if is_distributed():
        rank, world = dist.get_rank(), dist.get_world_size()
    else:
        rank, world = _env_int("RANK", 0), _env_int("WORLD_SIZE", 1)
    local_rank = _env_int("LOCAL_RANK", 0)
    local_world = _env_int("LOCAL_WORLD_SIZE", 1 if world == 1 else world)
    if world < 1 or not 0 <= rank < world or not 0 <= local_rank < max(local_world, 1):
        raise UserError(
            f"inconsistent torchrun environment (RANK={rank}, WORLD_SIZE={world}, "
            f"LOCAL_RANK={local_rank}); launch with `torchrun --nproc_per_node N -m lewm_core`"
        )
    return DistInfo(rank, world, local_rank, local_world)


def is_distributed() -> bool:
    """True when a process group with more than one process is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def setup(device: torch.device, timeout_s: float = 1800.0) -> tuple[DistInfo, torch.device]:
    """Join the process group torchrun described (if WORLD_SIZE > 1) and pick this rank's device.

    device: the device asked for (`cuda` or `cpu`). On CUDA each process takes the GPU of its
    LOCAL_RANK (and the NCCL backend); on the CPU the gloo backend. With WORLD_SIZE 1 nothing
    is initialised and `device` is returned as given. Idempotent: an existing group is reused.
    Returns (DistInfo, this process's device).
    """
    info = env_info()
    if device.type == "cuda" and info.world_size > 1:
        if info.local_rank >= torch.cuda.device_count():
            raise UserError(
                f"LOCAL_RANK {info.local_rank} has no GPU ({torch.cuda.device_count()} visible); "
                "use --nproc_per_node <= the number of GPUs"
            )
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if info.world_size > 1 and not dist.is_initialized():
        if not dist.is_available():
            raise UserError("this torch build has no torch.distributed; run one process")
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(
            backend,
            timeout=timedelta(seconds=timeout_s),
            device_id=device if device.type == "cuda" else None,
        )
        info = env_info()
    return info, device


def shutdown() -> None:
    """Destroy the process group if one was initialised (no-op otherwise)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def exit_worker(code: int = 0) -> NoReturn:
    """End a torchrun worker process now, after its work is written and its group destroyed.

    With torch 2.13 and gloo, about 1 worker run in 30 aborted *after* `destroy_process_group`
    had returned, during interpreter teardown ("terminate called without an active exception",
    SIGABRT or SIGSEGV with no Python frame: a C++ thread still joinable when static objects
    are destroyed), and torchrun then reported the whole run as failed. Everything a run writes
    is already on disk through atomic renames at that point, so the worker flushes its streams
    and leaves with `os._exit`, skipping the teardown that crashes.
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


# --------------------------------------------------------------------------- plain collectives


def barrier() -> None:
    """Wait for every rank (no-op in one process)."""
    if is_distributed():
        dist.barrier()


def all_reduce_sum_(x: Tensor) -> Tensor:
    """In-place sum of `x` (any shape) over ranks, no gradient; returns `x`."""
    if is_distributed():
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x


def all_gather_object(obj: Any) -> list[Any]:
    """[obj of rank 0, obj of rank 1, ...] on every rank ([obj] in one process)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank `src`'s `obj` on every rank (`obj` itself in one process)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def broadcast_buffers(module: nn.Module, src: int = 0) -> None:
    """Copy every buffer of `module` (e.g. BatchNorm statistics) from rank `src` to all ranks."""
    if is_distributed():
        for buf in module.buffers():
            dist.broadcast(buf, src=src)


# --------------------------------------------------------------------------- autograd collectives


class _AllGather(torch.autograd.Function):
    """Forward: concatenate every rank's x along `dim`. Backward: sum the gradients of all ranks
    (all-reduce) and return this rank's slice -- the gradient of the sum of the ranks' losses."""

    @staticmethod
    def forward(ctx, x: Tensor, dim: int) -> Tensor:  # type: ignore[override]
        world, rank = dist.get_world_size(), dist.get_rank()
        x = x.contiguous()
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x)
        ctx.dim, ctx.start, ctx.length = dim, rank * x.shape[dim], x.shape[dim]
        return torch.cat(parts, dim=dim)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad.narrow(ctx.dim, ctx.start, ctx.length), None


class _AllReduceSum(torch.autograd.Function):
    """Forward: sum of x over ranks. Backward: the gradient summed over ranks (same reason)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        y = x.clone()
        dist.all_reduce(y, op=dist.ReduceOp.SUM)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


def all_gather_with_grad(x: Tensor, dim: int = 0) -> Tensor:
    """Every rank's `x` concatenated along `dim` in rank order, differentiably.

    x: this rank's shard, e.g. (N_r, D) or (T, N_r, D); every rank must pass the same shape.
    Returns (..., W * N_r, ...) on every rank; `x` itself (no copy) in one process. The backward
    sums all ranks' gradients of the gathered tensor and keeps this rank's slice.
    """
    if not is_distributed():
        return x
    return _AllGather.apply(x, dim)


def all_reduce_with_grad(x: Tensor) -> Tensor:
    """Sum of `x` (any shape) over ranks, differentiably; `x` itself in one process."""
    if not is_distributed():
        return x
    return _AllReduceSum.apply(x)


def global_sigreg(
    z: Tensor,
    num_projections: int = 1024,
    knots: int = 17,
    t_max: float = 3.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """SIGReg (`lewm_core.world_model.sigreg.sigreg`) of the global batch, from this rank's shard.

    z: this rank's (N_r, D) or (T, N_r, D) embeddings (samples on dim -2; every rank the same
    shape). The shards are all-gathered with gradients into (W * N_r, D) / (T, W * N_r, D) and
    tested together. `generator` must be seeded identically on every rank so that the random
    directions agree. Returns the same scalar on every rank. Every rank backpropagates it, so
    before DDP's averaging a rank's gradient w.r.t. its shard is W * dS/dz_r; after the averaging
    the parameter gradient is that of one process on the concatenated batch (module docstring).
    """
    return sigreg(all_gather_with_grad(z, dim=-2), num_projections, knots, t_max, generator)


# --------------------------------------------------------------------------- global BatchNorm


class GlobalBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d whose training statistics are those of the global batch over all ranks.

    Input (N_r, C) or (N_r, C, L) per rank. While `global_stats` is True, the module trains and a
    multi-process group exists, the mean and the (biased, two-pass) variance per channel are
    all-reduced with gradients; the running statistics get the same update as one process on the
    concatenated batch (unbiased variance with the global count; momentum None = cumulative
    average). Otherwise it is exactly nn.BatchNorm1d. Same parameters, buffers and state-dict keys.
    """

    global_stats: bool = True

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and self.global_stats and is_distributed()):
            return super().forward(x)
        self._check_input_dim(x)
        return _global_batchnorm_eager(self, x)


def _global_batchnorm(bn: GlobalBatchNorm1d, x: Tensor) -> Tensor:
    """Training forward of GlobalBatchNorm1d with statistics over all ranks (see the class)."""
    dims = [0, *range(2, x.dim())]
    shape = [1, x.shape[1]] + [1] * (x.dim() - 2)
    xf = x.float()
    count_local = xf.new_tensor([x.numel() / x.shape[1]])
    total = all_reduce_with_grad(torch.cat([xf.sum(dims), count_local]))
    count = total[-1].detach()
    mean = total[:-1] / count
    xc = xf - mean.view(shape)
    var = all_reduce_with_grad((xc * xc).sum(dims)) / count
    y = xc * torch.rsqrt(var + bn.eps).view(shape)
    if bn.affine:
        y = y * bn.weight.view(shape) + bn.bias.view(shape)
    if bn.track_running_stats and bn.running_mean is not None:
        with torch.no_grad():
            bn.num_batches_tracked.add_(1)
            if bn.momentum is None:
                factor = 1.0 / float(bn.num_batches_tracked)
            else:
                factor = bn.momentum
            unbiased = var * count / (count - 1).clamp_min(1.0)
            bn.running_mean.lerp_(mean.to(bn.running_mean.dtype), factor)
            bn.running_var.lerp_(unbiased.to(bn.running_var.dtype), factor)
    return y.to(x.dtype)


# `_global_batchnorm` excluded from torch.compile graphs (its collectives run eagerly). Wrapped
# in `convert_batchnorm`, not at import: torch.compiler.disable imports torch._dynamo (seconds).
_global_batchnorm_eager = _global_batchnorm


def convert_batchnorm(model: nn.Module) -> int:
    """Replace every nn.BatchNorm1d in `model` by a GlobalBatchNorm1d in place; returns how many.

    The new modules take over the old ones' parameter and buffer objects, so call this before an
    optimiser is built or after (either way the optimiser sees the same tensors).
    """
    global _global_batchnorm_eager
    if _global_batchnorm_eager is _global_batchnorm:
        _global_batchnorm_eager = torch.compiler.disable(_global_batchnorm)
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.BatchNorm1d:
                new = GlobalBatchNorm1d(
                    child.num_features,
                    eps=child.eps,
                    momentum=child.momentum,
                    affine=child.affine,
                    track_running_stats=child.track_running_stats,
                )
                for key, param in child.named_parameters(recurse=False):
                    setattr(new, key, param)
                for key, buf in child.named_buffers(recurse=False):
                    new._buffers[key] = buf
                new.train(child.training)
                setattr(parent, name, new)
                replaced += 1
    return replaced


@contextlib.contextmanager
def local_batchnorm(model: nn.Module) -> Iterator[None]:
    """Context: GlobalBatchNorm1d layers of `model` use this rank's batch only (no collective).

    For code that one rank runs alone (BatchNorm recalibration, validation on rank 0).
    """
    mods = [m for m in model.modules() if isinstance(m, GlobalBatchNorm1d)]
    saved = [m.global_stats for m in mods]
    for m in mods:
        m.global_stats = False
    try:
        yield
    finally:
        for m, s in zip(mods, saved, strict=True):
            m.global_stats = s
