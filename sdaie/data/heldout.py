"""Held-out photos of a pretext run, each scored once with patches fixed by its position.

Training sees pairs with fresh patches at every step; validation needs the opposite: the same
input at every checkpoint, so two checkpoints' figures differ only through the weights.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

from sdaie.data.imageio import ImageLoadError
from sdaie.data.pairs import PairDataset
from sdaie.seeding import Stream, derive_seed


class HeldOutPhotos(Dataset):
    """``(patches, labels, position, readable, skipped)`` per held-out position: seeded patches.

    The photos are those of a :class:`PairDataset` (one split of the index). An unreadable photo
    yields zero patches and ``readable = False`` (to be left out of the metrics) and is reported.
    """

    def __init__(self, pairs: PairDataset, seed: int):
        self.pairs = pairs
        self.index, self.ids, self.labels = pairs.index, pairs.ids, pairs.labels
        self.n_patches, self.patch_size = pairs.n_patches, pairs.patch_size
        self.seed = seed

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, q: int) -> tuple[Any, ...]:
        i = int(self.ids[q])
        try:
            px = self.pairs.pixels(i)
        except ImageLoadError as exc:
            blank = torch.zeros(self.n_patches, 3, self.patch_size, self.patch_size)
            return blank, self.labels[i], q, False, [{"path": str(self.index.image_path(i)),
                                                      "reason": str(exc)}]
        gen = torch.Generator().manual_seed(derive_seed(self.seed, Stream.HELDOUT_PATCHES, q))
        patches = self.pairs.draw(px, gen)
        return patches, self.labels[i], q, True, []
