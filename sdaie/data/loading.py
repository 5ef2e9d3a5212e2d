"""Items to batches: the DataLoader every training set goes through.

Items end with the list of unreadable files met while loading them; :func:`collate_skips` keeps
those lists out of tensor collation so the training loop can report each file. Workers get their
global RNGs seeded from (run seed, start step or epoch, worker) and ignore SIGTERM (the main
process turns it into a checkpoint and then shuts them down; a scheduler signals every process
of a job, and a worker dying first would crash the loader instead). Pinned memory is used only
where it helps (CUDA); ``data.prefetch`` batches per worker are loaded ahead.

A loader that serves several epochs (the binary detector's) keeps its workers
(``persistent=True``) and takes its batches from :class:`EpochBatches`, whose items carry their
epoch: a persistent worker holds its own copy of the dataset, which an epoch set on the main
process's copy would not reach.
"""

from __future__ import annotations

import functools
import random
import signal
from collections.abc import Callable, Iterator, Sized
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from sdaie.config import DataConfig
from sdaie.seeding import derive_seed


def collate_skips(batch: list[tuple[Any, ...]]) -> tuple[Any, ...]:
    """Default collation of all fields but the last, which (lists of skipped files) is concatenated."""
    fields = list(zip(*batch))
    skipped = [s for item in fields[-1] for s in item]
    return (*[default_collate(list(f)) for f in fields[:-1]], skipped)


def _seed_worker(seed: int, step: int, worker_id: int) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    s = derive_seed(seed, step, worker_id)
    random.seed(s)
    np.random.seed(s % 2**32)
    torch.manual_seed(s)


def worker_init(seed: int, step: int) -> Callable[[int], None]:
    """A ``worker_init_fn`` seeding each worker's global RNGs from (run seed, start step, worker).

    Items draw from their own seeded generators, so this only makes any stray use of the global
    RNGs (e.g. in a user's transform) reproducible too. A partial (not a closure) so it pickles
    under the ``spawn`` start method.
    """
    return functools.partial(_seed_worker, seed, step)


def seeded_loader(dataset: Dataset, data: DataConfig, device: torch.device, seed: int, seed_step: int,
                  persistent: bool = False, **batching: Any) -> DataLoader:
    """A DataLoader with seeded workers and :func:`collate_skips` batches.

    ``seed_step`` (start step or epoch) makes worker seeds differ between the loaders of one run;
    ``persistent``: keep the workers between epochs; ``batching``: ``batch_size`` and
    ``sampler``, or ``batch_sampler``.
    """
    workers = data.workers
    extra: dict[str, Any] = ({"persistent_workers": persistent, "prefetch_factor": data.prefetch,
                              "worker_init_fn": worker_init(seed, seed_step)} if workers else {})
    return DataLoader(dataset, num_workers=workers, collate_fn=collate_skips,
                      pin_memory=data.pin_memory and device.type == "cuda", **extra, **batching)


class EpochBatches(Sampler[list[tuple[int, int]]]):
    """One epoch of ``sampler`` (e.g. a ``DistributedSampler``) in batches of ``(epoch, index)``.

    :meth:`set_epoch` re-seeds the sampler on this rank and says from which batch the epoch
    starts (a run resumed within an epoch skips the batches it has done); the batches are those
    of ``DataLoader(batch_size=batch_size, sampler=sampler)``.
    """

    def __init__(self, sampler: Sampler[int], batch_size: int) -> None:
        self.sampler, self.batch_size = sampler, batch_size
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start
        set_sampler_epoch = getattr(self.sampler, "set_epoch", None)
        if set_sampler_epoch is not None:
            set_sampler_epoch(epoch)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = list(self.sampler)
        for b in range(self.start, len(self)):
            yield [(self.epoch, i) for i in order[b * self.batch_size:(b + 1) * self.batch_size]]

    def __len__(self) -> int:
        n = len(self.sampler) if isinstance(self.sampler, Sized) else 0
        return -(-n // self.batch_size)
