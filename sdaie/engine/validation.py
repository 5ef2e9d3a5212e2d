"""Validation during training: each rank scores its share of a fixed set, the results are gathered.

Pretext runs score held-out photos once each (:func:`validate_heldout`); binary runs take a
quick look at random patches of the validation images (:func:`quick_validation`, not the
full-image protocol of ``bc_eval``). Both get the bare module, not its DDP wrapper: ranks may
hold different numbers of batches, and a DDP forward would wait for the others.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Subset

from sdaie.config import Config
from sdaie.data.heldout import HeldOutPhotos
from sdaie.data.labelled import LabelledPatches
from sdaie.data.loading import seeded_loader
from sdaie.data.pairs import PairDataset
from sdaie.distributed import DistInfo, all_gather_objects
from sdaie.metrics import detection_metrics, heldout_metrics
from sdaie.models.binary import fake_probability

Autocast = Callable[[], Any]


def _score_heldout(model: nn.Module, photos: HeldOutPhotos, cfg: Config, info: DistInfo,
                   autocast: Autocast) -> tuple[tuple[list, torch.Tensor, torch.Tensor], list[dict]]:
    """This rank's (per-head outputs, labels, positions) of readable photos, and unreadable files."""
    mine = list(range(info.rank, len(photos), info.world_size))
    size = 2 * cfg.pretext.batch_size  # photos per forward, as in training
    batches = [mine[i:i + size] for i in range(0, len(mine), size)]
    loader = seeded_loader(photos, cfg.data, info.device, cfg.run.seed, 0, batch_sampler=batches)
    n_heads = len(cfg.schema.heads)
    outs: list[list[torch.Tensor]] = [[] for _ in range(n_heads)]
    labels, positions, skipped = [], [], []
    was_training = model.training
    model.eval()
    for x, y, pos, ok, bad in loader:
        with autocast():
            batch_out = model(x.to(info.device))
        for h, o in enumerate(batch_out):
            outs[h].append(o.float().cpu()[ok])
        labels.append(y[ok])
        positions.append(pos[ok])
        skipped += bad
    model.train(was_training)
    local = ([torch.cat(o) if o else torch.empty(0, 1) for o in outs],
             torch.cat(labels) if labels else torch.empty(0, n_heads),
             torch.cat(positions) if positions else torch.empty(0, dtype=torch.long))
    return local, skipped


@torch.no_grad()
def validate_heldout(model: nn.Module, dataset: PairDataset, cfg: Config, info: DistInfo,
                     autocast: Autocast) -> tuple[dict[str, dict[str, Any]], list[dict]]:
    """(:func:`~sdaie.metrics.heldout_metrics` of the photos of ``dataset``, unreadable files met
    on this rank).

    Each rank scores every ``world_size``-th photo with seeded patches; the per-photo outputs (a
    few floats each) are gathered so every rank computes the same all-pairs figures.
    """
    local, skipped = _score_heldout(model, HeldOutPhotos(dataset, cfg.run.seed), cfg, info, autocast)
    heads = cfg.schema.heads
    parts = [p for p in all_gather_objects(local) if len(p[2])]
    if not parts:
        return heldout_metrics([torch.empty(0, h.classes) for h in heads],
                               torch.empty(0, len(heads)), heads), skipped
    order = torch.argsort(torch.cat([p[2] for p in parts]))  # photo order, whatever the ranks
    merged = [torch.cat([p[0][h] for p in parts])[order] for h in range(len(heads))]
    return heldout_metrics(merged, torch.cat([p[1] for p in parts])[order], heads), skipped


def validation_ids(n: int, limit: int) -> list[int]:
    """All of ``n`` images (``limit`` <= 0 or >= n), else ``limit`` evenly spaced over them: the
    listing is sorted by folder, so its first images would all be real (``0_real`` first)."""
    if limit <= 0 or limit >= n:
        return list(range(n))
    return [i * n // limit for i in range(limit)]


@torch.no_grad()
def quick_validation(detector: nn.Module, dataset: LabelledPatches, cfg: Config, info: DistInfo,
                     autocast: Autocast) -> dict[str, float]:
    """p(fake) on ``data.patches`` random patches per image (fixed seeds), gathered over ranks."""
    ids = validation_ids(len(dataset), cfg.binary.val_batches * cfg.binary.batch_size)
    ids = ids[info.rank::info.world_size]
    detector.eval()
    scores, labels = [], []
    loader = seeded_loader(Subset(dataset, ids), cfg.data, info.device, cfg.run.seed, 0,
                           batch_size=cfg.binary.batch_size, sampler=None)
    for x, y, _ in loader:
        with autocast():
            logits = detector(x.to(info.device)).float()
        scores.append(fake_probability(logits).cpu().numpy())
        labels.append(y.numpy())
    detector.train()
    parts = all_gather_objects((np.concatenate(scores) if scores else np.zeros(0),
                                np.concatenate(labels) if labels else np.zeros(0, np.int64)))
    p = np.concatenate([s for s, _ in parts])
    y = np.concatenate([lab for _, lab in parts]).astype(np.int64)
    m = detection_metrics(y, p, p > cfg.eval.threshold)
    return {f"val_random_patches_{k}": v for k, v in m.items()}
