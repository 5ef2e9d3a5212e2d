"""Named seed streams: stable values (a published seed keeps its results) and independent draws."""

import random

import numpy as np
import torch

from sdaie.seeding import Stream, derive_seed, seed_all


def test_derive_seed_is_stable_and_distinct():
    assert derive_seed(1, 2, 3) == derive_seed(1, 2, 3)
    assert len({derive_seed(0, e, i) for e in range(10) for i in range(100)}) == 1000
    assert 0 <= derive_seed(2**40, 7) < 2**63


def test_derive_seed_equals_numpy_seed_sequence():
    # the contract: the first 64-bit word of SeedSequence(parts), top bit cleared
    want = int(np.random.SeedSequence([5, 2, 9]).generate_state(1, np.uint64)[0]) & (2**63 - 1)
    assert derive_seed(5, Stream.PAIR_PATCHES, 9) == want


def test_stream_numbers_are_fixed():
    # changing a number changes every result of every seed: this list only grows
    assert {s.name: int(s) for s in Stream} == {
        "PAIR_ORDER": 0, "PAIR_PARTNER": 1, "PAIR_PATCHES": 2, "PHOTO_SPLIT": 3,
        "VAL_PARTNER": 4, "VAL_PATCHES": 5, "HELDOUT_PATCHES": 7}


def test_seed_all_seeds_python_numpy_and_torch():
    seed_all(123)
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    seed_all(123)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a
