"""Which files of a photo folder need work, and the worker processes that do it.

A file whose journal entry is fresh is reused; one that also lacks a crop at the asked size gets
a crop-only task; every other file is parsed (and cropped). :func:`survey` keeps, per file, its
relative path, stat and journal offset in flat arrays (no entry dicts), and :func:`plan_tasks`
yields the tasks lazily, so a million files cost tens of bytes each. Workers are started with
``spawn`` on every OS: ``fork`` is unsafe once the parent has threads (numpy's BLAS pool, torch),
and Python 3.14 no longer defaults to it. They import this module, so it stays free of torch.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from itertools import chain, islice
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from sdaie.config import HeadConfig
from sdaie.data.imageio import ImageLoadError
from sdaie.data.walk import FolderListing, iter_images
from sdaie.exif.crops import centre_crop
from sdaie.exif.journal import has_crop, is_fresh, latest_lines
from sdaie.exif.parse import parse_file
from sdaie.exif.schema import Schema

# A worker's result: (relative path, entry or None when not re-parsed, crop, crop status); the
# status is "skip" (not attempted), "ok", "small" (image under the crop size) or an error.
Result = tuple[str, dict[str, Any] | None, np.ndarray | None, str]


@dataclass
class Task:
    path: str  # absolute
    rel: str
    parse: bool
    crop_size: int | None
    pos: int = 0  # the file's position in :class:`Files`


@dataclass
class Files:
    """The image files of a run, sorted by relative path (the index's row order), with per file
    its stat and the byte offset of its latest journal entry (``NO_LINE``: none yet)."""

    root: Path
    rels: list[str]
    size: np.ndarray
    mtime_ns: np.ndarray
    offsets: np.ndarray
    fresh: np.ndarray  # the journal entry still describes the file
    crop_todo: np.ndarray  # fresh, but lacks the asked crop
    errors: dict[int, str] = field(default_factory=dict)  # position -> why it cannot be stat'ed

    def __len__(self) -> int:
        return len(self.rels)

    def parse_count(self) -> int:
        return int((~self.fresh).sum()) - len(self.errors)


def relative_paths(root: Path, files: Iterable[Path]) -> list[str]:
    """POSIX paths relative to ``root``, sorted as strings (the order of the index's rows)."""
    return sorted(p.relative_to(root).as_posix() for p in files)


def list_photos(root: Path) -> tuple[list[str], FolderListing]:
    """The photo files of the folder ``root`` as sorted relative paths, and what else it holds:
    the walker every command uses (symbolic links followed, loops guarded, other files counted
    by kind), one ``Path`` at a time, so only the strings are ever held."""
    listing = FolderListing()
    return relative_paths(root, iter_images(root, listing)), listing


def wants_crop(entry: dict[str, Any], schema: Schema | None) -> bool:
    """Only photos with at least one schema label are cropped: no shard rows for skipped files."""
    return (schema is not None and not entry.get("error")
            and any(label is not None for label in schema.encode(entry.get("tags", {}))))


def survey(root: Path, rels: list[str], journal: Path, schema: Schema,
           crop_size: int | None) -> Files:
    """Stat every file and find its journal entry; decides what is fresh and what lacks a crop."""
    n = len(rels)
    size = np.full(n, -1, dtype=np.int64)
    mtime = np.full(n, -1, dtype=np.int64)
    errors: dict[int, str] = {}
    for k, rel in enumerate(rels):
        try:
            st = os.stat(os.path.join(root, rel))
        except OSError as exc:
            errors[k] = f"cannot stat: {exc.strerror or exc}"
            continue
        size[k], mtime[k] = st.st_size, st.st_mtime_ns
    fresh = np.zeros(n, dtype=bool)
    crop_todo = np.zeros(n, dtype=bool)

    def visit(k: int, entry: dict[str, Any]) -> None:  # the last visit of k is its latest entry
        fresh[k] = k not in errors and is_fresh(entry, int(size[k]), int(mtime[k]))
        crop_todo[k] = bool(fresh[k] and crop_size and not has_crop(entry, crop_size)
                            and wants_crop(entry, schema))

    offsets = latest_lines(journal, rels, visit)
    return Files(root, rels, size, mtime, offsets, fresh, crop_todo, errors)


def plan_tasks(files: Files, crop_size: int | None) -> tuple[int, Iterator[Task]]:
    """(number of tasks, the tasks in row order, made as they are consumed)."""
    todo = ~files.fresh | files.crop_todo
    for k in files.errors:
        todo[k] = False

    def tasks() -> Iterator[Task]:
        for k in np.flatnonzero(todo):
            rel = files.rels[k]
            yield Task(os.path.join(files.root, rel), rel, not bool(files.fresh[k]), crop_size,
                       int(k))

    return int(todo.sum()), tasks()


_WORKER_SCHEMA: Schema | None = None  # set per process by _init_worker


def _init_worker(heads: list[HeadConfig]) -> None:
    global _WORKER_SCHEMA
    _WORKER_SCHEMA = Schema(heads)


def _work(task: Task) -> Result:
    """One task in a worker (see :data:`Result`)."""
    path = Path(task.path)
    entry = parse_file(path) if task.parse else None
    if not task.crop_size or (entry is not None and not wants_crop(entry, _WORKER_SCHEMA)):
        return task.rel, entry, None, "skip"
    try:
        crop = centre_crop(path, task.crop_size)
    except ImageLoadError as exc:
        return task.rel, entry, None, str(exc)
    return task.rel, entry, crop, "ok" if crop is not None else "small"


def _work_many(tasks: list[Task]) -> list[Result]:
    return [_work(t) for t in tasks]


def run_tasks(tasks: Iterable[Task], total: int, heads: list[HeadConfig], workers: int,
              progress: bool) -> Iterator[tuple[Task, Result]]:
    """Each task with its result, in task order, with a progress bar on stderr.

    If worker processes cannot start (``spawn`` from a script without an ``if __name__ ==
    "__main__"`` guard), the run goes on in this process with a warning instead of failing or
    hanging.
    """
    bar = tqdm(total=total, desc="sdaie index", unit="img", file=sys.stderr,
               disable=not progress or not total, dynamic_ncols=True)
    tasks = iter(tasks)
    try:
        if workers > 1 and total > 1:
            left: list[Task] = []  # tasks the pool took but did not finish (it broke)
            for pair in _in_pool(tasks, total, heads, workers, left):
                bar.update(1)
                yield pair
            tasks = chain(left, tasks)
        _init_worker(heads)
        for task in tasks:
            yield task, _work(task)
            bar.update(1)
    finally:
        bar.close()


def _in_pool(tasks: Iterator[Task], total: int, heads: list[HeadConfig], workers: int,
             left: list[Task]) -> Iterator[tuple[Task, Result]]:
    """Results from a pool of spawned workers, a bounded window of chunks in flight (memory stays
    flat however many tasks follow); if the pool breaks, the unfinished tasks go to ``left``."""
    first = list(islice(tasks, 1))
    cropping = bool(first and first[0].crop_size)
    chunk = 2 if cropping else max(1, min(64, total // (workers * 8)))
    tasks = chain(first, tasks)
    pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"),
                               initializer=_init_worker, initargs=(heads,))
    window: deque[tuple[list[Task], Future]] = deque()

    def submit() -> None:
        batch = list(islice(tasks, chunk))
        if batch:
            window.append((batch, pool.submit(_work_many, batch)))

    finished = False
    try:
        for _ in range(workers * 4):
            submit()
        while window:
            batch, future = window[0]
            results = future.result()
            window.popleft()
            submit()
            yield from zip(batch, results)
        finished = True
    except BrokenProcessPool as exc:
        print(f"sdaie index: worker processes failed ({exc}); continuing in this process",
              file=sys.stderr)
        left.extend(t for batch, _ in window for t in batch)
    finally:  # stopped early (--strict, Ctrl-C): drop the queued work, don't wait for it
        pool.shutdown(wait=finished, cancel_futures=not finished)
