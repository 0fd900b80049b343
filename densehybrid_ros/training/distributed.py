"""Multi-process training through torchrun: DistributedDataParallel with gloo on CPU and nccl on CUDA GPUs.

torchrun (python -m torch.distributed.run) sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; without
them training runs as one process. Rank 0 alone writes logs and checkpoints; every rank draws its own part of each
global batch (training/datasets.py).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup_distributed() -> DistributedContext:
    """Initialise the process group from torchrun's variables (a no-op for a single process)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return DistributedContext(device=device)
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        backend, device = "nccl", torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        backend, device = "gloo", torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistributedContext(rank, world_size, local_rank, device, backend)


def cleanup_distributed(ctx: DistributedContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(model: torch.nn.Module, ctx: DistributedContext) -> torch.nn.Module:
    if not ctx.enabled:
        return model
    device_ids = [ctx.local_rank] if ctx.device.type == "cuda" else None
    # broadcast_buffers=False: BN running statistics are either frozen (backbone) or updated identically enough on
    # each rank; broadcasting them every step costs a collective per BN layer on a slow CPU link.
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids, broadcast_buffers=False)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def any_rank(flag: bool, ctx: DistributedContext) -> bool:
    """True on every rank if `flag` is true on any (e.g. a stop signal seen by one process)."""
    if not ctx.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def mean_over_ranks(values: dict[str, float], ctx: DistributedContext) -> dict[str, float]:
    if not ctx.enabled or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return {k: float(v) / ctx.world_size for k, v in zip(keys, t.tolist())}


def barrier(ctx: DistributedContext) -> None:
    if ctx.enabled:
        dist.barrier()


def broadcast_from_main(tensors, ctx: DistributedContext) -> None:
    """Copy rank 0's values of `tensors` (in place) to every rank, e.g. state set after the model was wrapped."""
    if ctx.enabled:
        for t in tensors:
            dist.broadcast(t.data, src=0)
