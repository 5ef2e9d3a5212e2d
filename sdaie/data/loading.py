"""Items to batches: the DataLoader every training set goes through.

Items end with the list of unreadable files met while loading them; :func:`collate_skips` keeps
those lists out of tensor collation so the training loop can report each file. Workers get their
global RNGs seeded from (run seed, start step or epoch, worker), and pinned memory is used only
where it helps (CUDA).
"""

from __future__ import annotations

import functools
import random
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from sdaie.config import DataConfig
from sdaie.seeding import derive_seed


def collate_skips(batch: list[tuple[Any, ...]]) -> tuple[Any, ...]:
    """Default collation of all fields but the last, which (lists of skipped files) is concatenated."""
    fields = list(zip(*batch))
    skipped = [s for item in fields[-1] for s in item]
    return (*[default_collate(list(f)) for f in fields[:-1]], skipped)


def _seed_worker(seed: int, step: int, worker_id: int) -> None:
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
                **batching: Any) -> DataLoader:
    """A DataLoader with seeded workers and :func:`collate_skips` batches.

    ``seed_step`` (start step or epoch) makes worker seeds differ between the loaders of one run;
    ``batching``: ``batch_size`` and ``sampler``, or ``batch_sampler``.
    """
    workers = data.workers
    return DataLoader(dataset, num_workers=workers, collate_fn=collate_skips,
                      pin_memory=data.pin_memory and device.type == "cuda",
                      worker_init_fn=worker_init(seed, seed_step) if workers else None, **batching)
