from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from sdaie.data.loading import collate_skips, worker_init
from sdaie.data.pairs import (
    PairBatchSampler,
    PairDataset,
    check_index_schema,
    partner,
    split_by_photo,
)


def test_partner_is_uniform_over_the_others():
    rng = np.random.default_rng(0)
    draws = np.array([partner(2, 5, rng) for _ in range(5000)])
    assert set(draws.tolist()) == {0, 1, 3, 4}
    assert np.abs(np.bincount(draws, minlength=5)[[0, 1, 3, 4]] / 5000 - 0.25).max() < 0.03


def test_sampler_is_a_function_of_the_step_and_shards_disjointly():
    n, b = 10, 3
    s = PairBatchSampler(n, b, seed=7, total_steps=8)
    batches = list(s)
    assert len(batches) == 8 and all(len(x) == b for x in batches)
    assert all(q1 != q2 for batch in batches for q1, q2, _ in batch)
    # resuming at step 5 yields exactly the remaining batches
    assert list(PairBatchSampler(n, b, seed=7, start_step=5, total_steps=8)) == batches[5:]
    # each epoch visits every photo once as the first of a pair
    firsts = [q for batch in batches for q, _, _ in batch][:n]
    assert sorted(firsts) == list(range(n))
    # two ranks of batch 3 == one rank of batch 6, split in halves (data independent of W for W*B fixed)
    one = PairBatchSampler(n, 6, seed=7).batch(4)
    r0 = PairBatchSampler(n, 3, seed=7, rank=0, world_size=2).batch(4)
    r1 = PairBatchSampler(n, 3, seed=7, rank=1, world_size=2).batch(4)
    assert r0 + r1 == one
    assert PairBatchSampler(n, 3, seed=8).batch(0) != PairBatchSampler(n, 3, seed=7).batch(0)


def test_split_by_photo_is_disjoint_and_seeded():
    tr, va = split_by_photo(50, 0.2, seed=3)
    assert len(va) == 10 and not set(tr) & set(va) and len(tr) + len(va) == 50
    assert np.array_equal(split_by_photo(50, 0.2, seed=3)[1], va)
    assert len(split_by_photo(50, 0.0, seed=3)[1]) == 0


class FakeIndex:
    """What PairDataset uses from PhotoIndex."""

    def __init__(self, root: Path, n: int, broken: set[int], crops: bool):
        rng = np.random.default_rng(0)
        self.records = [{} for _ in range(n)]
        self.paths = []
        self.arrays = []
        for i in range(n):
            arr = rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)
            p = root / f"{i}.png"
            if i in broken:
                p.write_bytes(b"broken")
            else:
                Image.fromarray(arr).save(p)
            self.paths.append(p)
            self.arrays.append(arr)
        self.crops = crops
        self.crop_size = 48 if crops else None
        self.labels = torch.arange(n * 2, dtype=torch.float32).view(n, 2)

    def labels_tensor(self):
        return self.labels

    def image_path(self, i):
        return self.paths[i]

    def crop(self, i):
        return self.arrays[i] if self.crops else None


def test_dataset_items_are_deterministic_and_skip_broken_files(tmp_path):
    index = FakeIndex(tmp_path, 6, broken={2}, crops=False)
    ds = PairDataset(index, ids=[0, 1, 2, 3, 4], n_patches=5, patch_size=16)
    p1, p2, y1, y2, skipped = ds[(2, 0, 123)]  # position 2 = photo 2, broken -> falls to photo 3
    assert p1.shape == (5, 3, 16, 16)
    assert torch.equal(y1, index.labels[3]) and torch.equal(y2, index.labels[0])
    assert skipped == [{"path": str(index.paths[2]), "reason": skipped[0]["reason"]}]
    again = ds[(2, 0, 123)]
    assert torch.equal(again[0], p1) and torch.equal(again[1], p2)
    assert not torch.equal(ds[(2, 0, 124)][0], p1)


def test_crops_and_decoded_files_give_identical_patches(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    decoded = PairDataset(FakeIndex(tmp_path / "a", 3, set(), crops=False), [0, 1, 2], 4, 16)
    cropped = PairDataset(FakeIndex(tmp_path / "b", 3, set(), crops=True), [0, 1, 2], 4, 16,
                          source="shards")
    a, b = decoded[(0, 1, 9)], cropped[(0, 1, 9)]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_loader_batches_do_not_depend_on_worker_count(tmp_path):
    index = FakeIndex(tmp_path, 6, broken=set(), crops=False)
    ds = PairDataset(index, ids=range(6), n_patches=2, patch_size=16)

    def run(workers):
        sampler = PairBatchSampler(6, 3, seed=0, total_steps=3)
        loader = DataLoader(ds, batch_sampler=sampler, num_workers=workers, collate_fn=collate_skips,
                            worker_init_fn=worker_init(0, 0) if workers else None)
        return [x1 for x1, *_ in loader]

    for a, b in zip(run(0), run(2)):
        assert torch.equal(a, b)


def test_index_built_with_another_schema_is_refused():
    """The index's label columns must be the configured heads, in order, with the same classes."""
    from sdaie.config import ConfigError, HeadConfig

    heads = [HeadConfig("ISOSpeedRatings", "rank"), HeadConfig("Make", "class", classes=3)]
    same = {"heads": [{"tag": "ISOSpeedRatings", "kind": "rank"},
                      {"tag": "Make", "kind": "class", "classes": 3}]}
    check_index_schema(same, heads)
    check_index_schema({}, heads)  # an index without recorded heads cannot be checked
    swapped = {"heads": same["heads"][::-1]}
    with pytest.raises(ConfigError, match="differ from schema.heads"):
        check_index_schema(swapped, heads)
    fewer = {"heads": [same["heads"][0], {"tag": "Make", "kind": "class", "classes": 5}]}
    with pytest.raises(ConfigError, match="head Make: index has 5 classes, schema 3"):
        check_index_schema(fewer, heads)
