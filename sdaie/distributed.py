"""Process-group set-up for torchrun, and the same code path as a single plain process.

torchrun exports RANK / WORLD_SIZE / LOCAL_RANK (and MASTER_ADDR / MASTER_PORT); when they are
absent the run is one ordinary process and no process group is created, so every stage runs the
same on a laptop, under pytest, and on GPU nodes. NCCL is used on CUDA, gloo on CPU. Only rank 0
logs, draws progress bars and writes files; :attr:`DistInfo.is_main` is the one test for that.

The process group's keys in torchrun's store are scoped to the restart attempt
(``TORCHELASTIC_RESTART_COUNT``): the store outlives a worker group that ``--max-restarts``
replaces, and without the scope a restarted group reads its predecessor's addresses (gloo's
peer addresses, NCCL's unique id) and never connects (seen with torch 2.15: the restarted
ranks wait in ``init_process_group`` until the timeout).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from sdaie.device import resolve_device


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None  # None: single process, no process group

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.backend is not None


def env_ranks(environ: dict[str, str] | None = None) -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's variables; (0, 1, 0) when not launched by it."""
    env = os.environ if environ is None else environ
    try:
        rank = int(env.get("RANK", "0"))
        world = int(env.get("WORLD_SIZE", "1"))
        local = int(env.get("LOCAL_RANK", str(rank)))
    except ValueError as exc:
        raise RuntimeError(f"malformed torchrun environment: {exc}") from exc
    if world < 1 or not 0 <= rank < world:
        raise RuntimeError(f"inconsistent torchrun environment: RANK={rank} WORLD_SIZE={world}")
    return rank, world, local


def init_distributed(device: str = "auto", timeout_s: int = 1800) -> DistInfo:
    """Join the torchrun job if there is one (NCCL on CUDA, gloo on CPU); pick this rank's device."""
    rank, world, local = env_ranks()
    dev = resolve_device(device, local_rank=local)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world == 1:
        return DistInfo(0, 1, local, dev, None)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if not dist.is_initialized():
        timeout = timedelta(seconds=timeout_s)
        dist.init_process_group(backend=backend, store=attempt_store(rank, world, timeout),
                                rank=rank, world_size=world, timeout=timeout)
    return DistInfo(rank, world, local, dev, backend)


def attempt_store(rank: int, world: int, timeout: timedelta) -> dist.Store:
    """The ``env://`` rendezvous store (torchrun's, or one hosted by rank 0), with its keys
    prefixed by the restart attempt."""
    from torch.distributed.rendezvous import rendezvous  # here: only a multi-rank job needs it

    store, _, _ = next(rendezvous("env://", rank, world, timeout=timeout))
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    return dist.PrefixStore(f"sdaie/attempt_{attempt}/", store)


def cleanup() -> None:
    """Leave the process group (a no-op for a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def distributed(device: str = "auto", timeout_s: int = 1800) -> Iterator[DistInfo]:
    """``with distributed(cfg.run.device, cfg.run.dist_timeout_s) as info: ...``; always cleans up."""
    info = init_distributed(device, timeout_s)
    try:
        yield info
    finally:
        cleanup()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    out = values.detach().clone()
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable, small: e.g. lists of skipped files), in rank order."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out
