"""Every random decision of a run derives from ``run.seed`` through a named stream.

A draw is a function of (run seed, stream, position), never of which rank, loader worker or
resumed process makes it: that is what lets an interrupted run end with the weights of an
uninterrupted one, and two worker counts load the same data. The streams are numbered once, here;
their values are part of the reproducibility contract (changing one changes every result of a
seed), so new streams take new numbers.
"""

from __future__ import annotations

import random
from enum import IntEnum

import numpy as np


class Stream(IntEnum):
    """What a derived seed is for; the first key after the run seed."""

    PAIR_ORDER = 0  # per-epoch permutation of the training photos (pair sampler)
    PAIR_PARTNER = 1  # the second photo of each pair
    PAIR_PATCHES = 2  # patch positions of both photos of a pair
    PHOTO_SPLIT = 3  # train / held-out split of the photo index
    VAL_PARTNER = 4  # fixed pairs of held-out photos
    VAL_PATCHES = 5  # fixed patches of held-out pairs
    HELDOUT_PATCHES = 7  # held-out photos scored one by one during pretext validation


def derive_seed(*parts: int) -> int:
    """A 63-bit seed mixed from non-negative integers (run seed, stream, epoch, index, ...).

    Seeding a per-item generator this way makes every draw a function of the item's position.
    """
    state = np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0]
    return int(state) & (2**63 - 1)


def seed_all(seed: int) -> None:
    """Seed the global Python, NumPy and torch generators (torch seeds every CUDA device too).

    Items draw from their own derived generators; this covers initial weights (identical on every
    rank) and any stray use of a global generator.
    """
    import torch  # here: derive_seed and the streams serve light commands that never need torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
