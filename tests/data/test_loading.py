"""The DataLoader every training set goes through: epoch batches for a persistent loader, and
workers that survive a scheduler's SIGTERM to the whole job (the main process stops cleanly)."""

from __future__ import annotations

import os
import signal

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from sdaie.config import DataConfig
from sdaie.data.loading import EpochBatches, collate_skips, seeded_loader


class Items(Dataset):
    """Item ``(epoch, i)`` -> tensor [epoch, i, pid]; ``sigterm``: the worker signals itself."""

    def __init__(self, n: int = 10, sigterm: bool = False):
        self.n, self.sigterm = n, sigterm

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, item):
        epoch, i = item
        if self.sigterm:
            os.kill(os.getpid(), signal.SIGTERM)
        return torch.tensor([epoch, i, os.getpid()]), []


def test_epoch_batches_are_the_distributed_samplers_batches_from_a_given_one():
    for rank in (0, 1):
        sampler = DistributedSampler(range(11), num_replicas=2, rank=rank, shuffle=True, seed=4)
        batches = EpochBatches(sampler, 2)
        for epoch in (0, 1):
            batches.set_epoch(epoch)
            plain = [b.tolist() for b in DataLoader(range(11), batch_size=2, sampler=sampler)]
            got = [[i for _, i in b] for b in batches]
            assert got == plain and len(batches) == len(plain) == 3
            assert all(e == epoch for b in batches for e, _ in b)
            batches.set_epoch(epoch, start=2)
            assert [[i for _, i in b] for b in batches] == plain[2:]
    batches.set_epoch(0)
    first = [b for b in batches]
    batches.set_epoch(1)
    assert [b for b in batches] != [[(1, i) for _, i in b] for b in first]  # re-seeded per epoch


def test_a_persistent_loader_brings_each_epoch_to_its_worker():
    batches = EpochBatches(DistributedSampler(range(6), num_replicas=1, rank=0, seed=0), 3)
    loader = seeded_loader(Items(6), DataConfig(workers=1, pin_memory=False),
                           torch.device("cpu"), seed=0, seed_step=0, persistent=True,
                           batch_sampler=batches)
    seen = []
    for epoch in range(3):
        batches.set_epoch(epoch)
        seen += [x for x, _ in loader]
    epochs = torch.cat(seen)[:, 0].tolist()
    assert epochs == [0] * 6 + [1] * 6 + [2] * 6
    assert len(set(torch.cat(seen)[:, 2].tolist())) == 1  # one worker process served all three


def test_loader_workers_ignore_sigterm_so_the_main_process_can_stop_cleanly():
    loader = seeded_loader(Items(4, sigterm=True), DataConfig(workers=1, pin_memory=False),
                           torch.device("cpu"), seed=0, seed_step=0,
                           batch_sampler=[[(0, 0), (0, 1)], [(0, 2), (0, 3)]],
                           )
    out = [x for x, skipped in loader]  # a worker killed by the signal would raise here
    assert torch.cat(out)[:, 1].tolist() == [0, 1, 2, 3]
    assert collate_skips([(torch.zeros(1), [{"path": "a"}])])[-1] == [{"path": "a"}]
