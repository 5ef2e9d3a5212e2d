"""Section ``scale``: the photo index at paper scale (rows generated here, no photos needed).

For each N (default 10k, 100k and 900k photos; the paper trains on about 900k), rows shaped like a
real ``sdaie index`` row (about 25 tags, 14 labels) are written with
:func:`~sdaie.exif.writer.write_index`, then measured in a fresh process:

- ``load_s``: :func:`~sdaie.exif.store.load_index`;
- ``rss_added_mb``: resident memory that loading the index and building the training pair dataset
  (split, sampler) added to the process;
- one DataLoader worker (forked, as on Linux) runs a full epoch of pair batches (N pairs of the
  training sampler, 64 per batch) through the pair dataset with the decoding taken out: per pair
  it reads the ids, labels, path and crop (a memmap row, when the index has crops) of both
  photos. ``worker_private_*_mb`` is the worker's private memory (``Private_Clean +
  Private_Dirty`` of ``/proc/<pid>/smaps_rollup``) at start and after the epoch, and
  ``worker_dirty_growth_mb`` the growth of its dirty part: what the worker copied or allocated
  (copy-on-read of a parent's Python objects shows there). The clean rest is the index's file
  pages this lone worker read (page cache, shared as soon as another worker or rank reads them);
  ``pairs_per_s`` is the epoch's rate (the sampler runs in the parent, as in training).

Linux only (``/proc``); elsewhere the memory columns are empty.
"""

from __future__ import annotations

import gc
import math
import multiprocessing as mp
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, default_collate

from sdaie.benchmarks.measuring import isolated
from sdaie.config import Config
from sdaie.data.pairs import PairBatchSampler, PairDataset, split_by_photo
from sdaie.exif.schema import Schema
from sdaie.exif.store import load_index
from sdaie.exif.writer import write_index

MB = 2**20
_MAKES = ["Canon", "NIKON CORPORATION", "SONY", "Apple", "FUJIFILM", "OLYMPUS", "Panasonic",
          "samsung", "Google", "PENTAX"]


def memory(pid: int | str = "self") -> dict[str, float]:
    """MB of ``Rss``, ``Pss``, private (clean + dirty) memory and its dirty part of a process
    ({} without /proc). Private dirty pages are copies (of a parent's heap, or new allocations);
    private clean pages are file pages that only this process maps (page cache: the index's
    arrays read by this worker alone are counted there until another process maps them too)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as fh:
            kb = {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in fh)
                  if v.strip().endswith("kB")}
    except OSError:
        return {}
    return {"rss": kb["Rss"] / 1024, "pss": kb["Pss"] / 1024,
            "private": (kb["Private_Clean"] + kb["Private_Dirty"]) / 1024,
            "private_dirty": kb["Private_Dirty"] / 1024}


def synthetic_rows(n: int, heads: Sequence[dict[str, Any]],
                   seed: int = 0) -> Iterator[dict[str, Any]]:
    """``n`` index rows shaped like real ones: 300 cameras, ~25 tags, and for the vocabulary's
    ``heads`` valid labels (class ids, real numbers for rank heads), 10 % of them missing."""
    rng = np.random.default_rng(seed)
    classes = np.array([h["classes"] if h["kind"] == "class" else 0 for h in heads])
    for start in range(0, n, 4096):
        m = min(4096, n - start)
        cam = rng.integers(0, 300, m)
        iso = 50 * 2 ** rng.integers(0, 7, m)
        expo = 1 / 2 ** rng.integers(1, 13, m)
        fnum = np.round(rng.uniform(1.4, 16, m), 1)
        labels = np.where(classes > 0, rng.integers(0, np.maximum(classes, 1), (m, len(heads))),
                          rng.normal(size=(m, len(heads))))
        missing = rng.random((m, len(heads))) < 0.1
        for k in range(m):
            i, c = start + k, int(cam[k])
            tags = {"Make": _MAKES[c % len(_MAKES)], "Model": f"Model {c:03d}",
                    "FNumber": float(fnum[k]), "ExposureTime": float(expo[k]),
                    "ISOSpeedRatings": int(iso[k]), "FocalLength": 4.2 + c % 50, "Flash": 16,
                    "MeteringMode": 5, "ExposureMode": 0, "WhiteBalance": 0,
                    "SceneCaptureType": 0, "ExposureBiasValue": 0.0,
                    "FocalLengthIn35mmFilm": 26 + c % 80, "ApertureValue": float(fnum[k]),
                    "ShutterSpeedValue": float(expo[k]), "ExposureProgram": 2,
                    "DateTimeOriginal": f"2021:09:{1 + i % 28:02d} 07:13:{i % 60:02d}",
                    "LensModel": f"Lens {c:03d} 5.7mm f/1.5", "LensMake": _MAKES[c % 10],
                    "Software": "15.0", "Orientation": 1, "ExifImageWidth": 4032,
                    "ExifImageHeight": 3024, "SensingMethod": 2}
            row = [None if missing[k, j] else int(labels[k, j]) if classes[j]
                   else float(labels[k, j]) for j in range(len(heads))]
            yield {"path": f"cam_{c:03d}/IMG_{i:07d}.jpg", "size": [4032, 3024], "tags": tags,
                   "labels": row, "crop": None}


class IndexOnlyPairs(PairDataset):
    """The pair dataset with the decoding taken out: an item reads what training reads from the
    index (ids, labels, path, crop of both photos) and returns the two label rows."""

    def pixels(self, i: int) -> Any:
        return self.index.image_path(i), self.index.crop(i)  # a stored crop: a memmap row

    def __getitem__(self, item: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        q1, q2, _ = item
        skipped: list[dict] = []
        i1, _ = self._load(q1, -1, skipped)
        i2, _ = self._load(q2, i1, skipped)
        return self.labels[i1], self.labels[i2]


_WORKER_START: dict[str, float] = {}


def _worker_init(_: int) -> None:
    _WORKER_START.update(memory())


def _collate(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[Any, ...]:
    """Runs in the worker: the batch, the worker's pid and its memory at start."""
    return (*default_collate(batch), os.getpid(), dict(_WORKER_START))


def measure_index(directory: str, batch: int) -> dict[str, Any]:
    """Load, then one epoch of index-only pair batches in one forked worker (in this process)."""
    gc.collect()
    before = memory()
    start = time.perf_counter()
    index = load_index(directory)
    load_s = time.perf_counter() - start
    train, _ = split_by_photo(len(index), 0.0, 0)
    dataset = IndexOnlyPairs(index, train)
    steps = math.ceil(len(train) / batch)
    sampler = PairBatchSampler(len(train), batch, seed=0, total_steps=steps)
    added = memory()
    # fork, as a torchrun-launched process on Linux (Python < 3.14) starts its workers; this
    # process was itself spawned and would otherwise spawn them
    context = "fork" if "fork" in mp.get_all_start_methods() else None
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=1, collate_fn=_collate,
                        worker_init_fn=_worker_init, persistent_workers=True,
                        multiprocessing_context=context)
    pairs, first, pid, start_mem = 0, 0.0, 0, {}
    # the worker's pid and its memory at start come with every batch; the last ones are kept
    for k, (_, _, pid, start_mem) in enumerate(loader):  # noqa: B007
        if k == 0:
            first = time.perf_counter()
        else:
            pairs += batch
    seconds = time.perf_counter() - first
    worker = memory(pid)
    out = {"photos": len(index), "load_s": load_s, "pairs_per_s": pairs / max(seconds, 1e-9),
           "epoch_s": seconds, "batches": steps}
    if before and worker and start_mem:
        out.update(rss_added_mb=added["rss"] - before["rss"], rss_after_epoch_mb=memory()["rss"],
                   worker_private_start_mb=start_mem["private"],
                   worker_private_end_mb=worker["private"],
                   worker_private_growth_mb=worker["private"] - start_mem["private"],
                   worker_dirty_growth_mb=worker["private_dirty"] - start_mem["private_dirty"],
                   worker_pss_end_mb=worker["pss"])
    del loader
    return out


def _folder_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / MB


def bench_scale(work: Path, sizes: Sequence[int], batch: int = 64,
                isolate: bool = True) -> list[dict[str, Any]]:
    """One row per N: write, load, memory and loader rate (module docstring)."""
    vocab = Schema(Config().schema.heads).to_vocab()
    rows = []
    for n in sizes:
        out = work / f"index_{n}"
        start = time.perf_counter()
        write_index(out, synthetic_rows(n, vocab["heads"]), vocab=vocab, root="/photos")
        write_s = time.perf_counter() - start
        row = isolated(isolate, measure_index, str(out), batch)
        row.update(write_s=write_s, disk_mb=_folder_mb(out),
                   jsonl_mb=(out / "index.jsonl").stat().st_size / MB)
        rows.append(row)
    return rows
