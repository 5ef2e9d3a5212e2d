"""The scale section: generated rows, the index-only loader, and the memory readings."""

import math
import os

import numpy as np
import pytest

from sdaie.benchmarks.cli import main
from sdaie.benchmarks.scale import IndexOnlyPairs, measure_index, memory, synthetic_rows
from sdaie.config import Config
from sdaie.exif.schema import Schema
from sdaie.exif.store import load_index
from sdaie.exif.writer import write_index

VOCAB = Schema(Config().schema.heads).to_vocab()


def test_generated_rows_look_like_index_rows():
    heads = VOCAB["heads"]
    rows = list(synthetic_rows(5000, heads))
    assert len({r["path"] for r in rows}) == 5000
    assert all(len(r["labels"]) == 14 and len(r["tags"]) >= 20 for r in rows)
    missing = np.mean([v is None for r in rows for v in r["labels"]])
    assert 0.05 < missing < 0.15
    for j, head in enumerate(heads):  # labels the heads accept
        values = [r["labels"][j] for r in rows if r["labels"][j] is not None]
        if head["kind"] == "class":
            assert set(values) == set(range(head["classes"]))
        else:
            assert all(isinstance(v, float) for v in values) and np.std(values) > 0.5
    assert list(synthetic_rows(3, heads)) == list(synthetic_rows(3, heads))  # seeded


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps_rollup"), reason="Linux /proc only")
def test_memory_reads_this_process():
    with open("/proc/self/status") as fh:
        vm_rss = next(int(line.split()[1]) for line in fh if line.startswith("VmRSS")) / 1024
    m = memory()
    assert abs(m["rss"] - vm_rss) < 0.05 * vm_rss + 5
    assert 0 < m["private"] <= m["pss"] <= m["rss"]
    assert memory(2**22 + 12345) == {}  # no such process


def test_the_index_only_loader_reads_the_index_labels_and_a_whole_epoch(tmp_path):
    write_index(tmp_path / "idx", synthetic_rows(300, VOCAB["heads"]), vocab=VOCAB, root="/photos")
    index = load_index(tmp_path / "idx")
    ds = IndexOnlyPairs(index, np.arange(300))
    a, b = ds[(5, 7, 0)]
    assert np.array_equal(a.numpy(), index.labels[5], equal_nan=True)
    assert np.array_equal(b.numpy(), index.labels[7], equal_nan=True)
    row = measure_index(str(tmp_path / "idx"), batch=16)
    assert row["photos"] == 300 and row["batches"] == math.ceil(300 / 16)
    assert row["pairs_per_s"] > 0 and row["load_s"] < 5
    if "worker_private_growth_mb" in row:
        assert 0 < row["worker_private_start_mb"] < 200  # forked: the parent's pages are shared


def test_scale_sizes_are_checked_before_any_work():
    with pytest.raises(SystemExit, match="at least 2 photos"):
        main(["--tiny", "--sections", "scale", "--scale-sizes", "1000,1"])
    with pytest.raises(SystemExit, match="comma-separated photo counts"):
        main(["--tiny", "--sections", "scale", "--scale-sizes", "10k"])
