"""Training data over folders with bad files: every bad file skipped and reported, training goes on.

The zoo sorts its broken files next to each other (``text_*``, ``truncated_*``, ``zero_bytes_*``):
a run of ten or more unreadable files in a row, as a folder of failed downloads would have.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from sdaie.data.imageio import ImageLoadError, load_image


def _usable(path: Path) -> bool:
    try:
        load_image(path)
        return True
    except ImageLoadError:
        return False


@pytest.fixture(scope="module")
def labelled_root(zoo, tmp_path_factory) -> Path:
    """``0_real``: the first copy of the zoo (good and bad files); ``1_fake``: a few good ones."""
    root = tmp_path_factory.mktemp("labelled")
    (root / "0_real").mkdir()
    (root / "1_fake").mkdir()
    for f in zoo:
        if f.path.stem.endswith("_000"):
            shutil.copy(f.path, root / "0_real" / f.path.name)
        elif f.kind in ("camera jpeg", "valid jpeg"):
            shutil.copy(f.path, root / "1_fake" / f.path.name)
    return root


def test_longest_run_of_bad_files_is_long(labelled_root):
    files = sorted((labelled_root / "0_real").iterdir())
    run = best = 0
    for p in files:
        run = 0 if _usable(p) else run + 1
        best = max(best, run)
    assert best >= 10  # more than any fixed retry budget of a few files


def test_labelled_patches_skip_and_report_every_bad_file(labelled_root):
    from sdaie.data.labelled import LabelledPatches
    from sdaie.data.loading import collate_skips

    ds = LabelledPatches(labelled_root, n_patches=2, patch_size=64, seed=0)
    loader = DataLoader(ds, batch_size=8, shuffle=False, collate_fn=collate_skips)
    n_items, skipped = 0, {}
    for x, y, skips in loader:
        assert x.shape[1:] == (2, 3, 64, 64) and torch.isfinite(x).all()
        n_items += len(y)
        skipped.update((s["path"], s["reason"]) for s in skips)
    assert n_items == len(ds)  # every item came back (a usable file stands in for a bad one)
    bad = {str(p) for p in ds.files.paths if not _usable(p)}
    assert set(skipped) == bad and all(skipped.values())


def test_labelled_patches_stand_in_keeps_its_own_label(labelled_root):
    from sdaie.data.labelled import LabelledPatches

    ds = LabelledPatches(labelled_root, n_patches=1, patch_size=64, seed=0)
    usable = [_usable(p) for p in ds.files.paths]
    n = len(ds)
    for i in range(n):
        _, label, _ = ds[i]
        stand_in = next((i + k) % n for k in range(n) if usable[(i + k) % n])  # next usable file
        assert label == ds.files.labels[stand_in]
    assert not all(usable)


def test_pairs_skip_photos_that_became_unreadable(zoo, tmp_path):
    from sdaie.data.loading import collate_skips
    from sdaie.data.pairs import PairBatchSampler, PairDataset
    from sdaie.exif.index import load_index
    from sdaie.exif.index import main as index_main

    photos = tmp_path / "photos"
    photos.mkdir()
    for f in zoo:
        if f.kind.startswith("camera jpeg"):
            shutil.copy(f.path, photos / f.path.name)
    assert index_main([str(photos), "--out", str(tmp_path / "idx"), "--workers", "1",
                       "--no-progress"]) == 0
    index = load_index(tmp_path / "idx")
    broken = [index.image_path(i) for i in range(0, len(index), 2)]  # half of them, after indexing
    for p in broken:
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 3])
    ds = PairDataset(index, np.arange(len(index)), n_patches=2, patch_size=64, source="photo")
    sampler = PairBatchSampler(len(index), batch_size=4, seed=0, total_steps=6)
    reported = set()
    for x1, x2, _, _, skipped in DataLoader(ds, batch_sampler=sampler, collate_fn=collate_skips):
        assert x1.shape == x2.shape == (4, 2, 3, 64, 64)
        assert torch.isfinite(x1).all() and torch.isfinite(x2).all()
        reported |= {s["path"] for s in skipped}
    assert reported and reported <= {str(p) for p in broken}


def test_bc_train_finishes_and_lists_skipped_files(labelled_root, tiny_checkpoints, tmp_path):
    from sdaie.stages.bc_train import main

    out = tmp_path / "bc"
    assert main(["run.device=cpu", f"run.out_dir={out}", "data.workers=0", "data.patches=2",
                 f"binary.pretext_checkpoint={tiny_checkpoints['pretext']}",
                 f"binary.train_root={labelled_root}", "binary.epochs=1", "binary.batch_size=16",
                 "binary.log_every=2"]) == 0
    skipped = [json.loads(line) for line in (out / "skipped.jsonl").read_text().splitlines()]
    bad = {str(p) for p in sorted(labelled_root.rglob("*")) if p.is_file() and not _usable(p)}
    assert {s["path"] for s in skipped} == bad and len(skipped) == len(bad)  # each once
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == 1 and sorted(summary["skipped_images"]) == sorted(bad)
    assert (out / "checkpoints" / "last.pt").is_file()
