"""Which files of a photo folder need work, and the worker processes that do it.

A file whose journal entry is fresh is reused; one that also lacks a crop at the asked size gets
a crop-only task; every other file is parsed (and cropped). Workers are started with ``spawn`` on
every OS: ``fork`` is unsafe once the parent has threads (numpy's BLAS pool, torch), and Python
3.14 no longer defaults to it. They import this module, so it stays free of torch.
"""

from __future__ import annotations

import multiprocessing as mp
import sys
from contextlib import closing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from tqdm import tqdm

from sdaie.config import HeadConfig
from sdaie.data.imageio import ImageLoadError
from sdaie.data.walk import FolderListing, scan_folder
from sdaie.exif.crops import centre_crop
from sdaie.exif.journal import has_crop, is_fresh
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


def list_photos(root: Path) -> FolderListing:
    """The photo files of ``root`` and the non-image files it holds: the walker every command
    uses (symbolic links followed, loops guarded, other files counted by kind)."""
    return scan_folder(root)


def wants_crop(entry: dict[str, Any], schema: Schema | None) -> bool:
    """Only photos with at least one schema label are cropped: no shard rows for skipped files."""
    return (schema is not None and not entry.get("error")
            and any(label is not None for label in schema.encode(entry.get("tags", {}))))


def plan_tasks(root: Path, files: Sequence[Path], cache: dict[str, dict[str, Any]],
               schema: Schema, crop_size: int | None
               ) -> tuple[dict[str, dict[str, Any]], list[Task]]:
    """Entries of every file (cached, or a stub to be parsed) and the work still to do."""
    entries: dict[str, dict[str, Any]] = {}
    tasks: list[Task] = []
    for path in files:
        rel = path.relative_to(root).as_posix()
        try:
            stat = path.stat()
        except OSError as exc:
            entries[rel] = {"path": rel, "error": f"cannot stat: {exc.strerror or exc}"}
            continue
        old = cache.get(rel)
        if is_fresh(old, stat):
            entries[rel] = old
            if crop_size and not has_crop(old, crop_size) and wants_crop(old, schema):
                tasks.append(Task(str(path), rel, False, crop_size))
        else:
            entries[rel] = {"path": rel, "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}
            tasks.append(Task(str(path), rel, True, crop_size))
    return entries, tasks


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


def run_tasks(tasks: list[Task], heads: list[HeadConfig], workers: int,
              progress: bool) -> Iterator[Result]:
    """Results of the tasks in order, with a progress bar on stderr.

    If worker processes cannot start (``spawn`` from a script without an ``if __name__ ==
    "__main__"`` guard), the run goes on in this process with a warning instead of failing or
    hanging.
    """
    bar = tqdm(total=len(tasks), desc="sdaie index", unit="img", file=sys.stderr,
               disable=not progress or not tasks, dynamic_ncols=True)
    done = 0
    try:
        if workers > 1 and len(tasks) > 1:
            with closing(_in_pool(tasks, heads, workers)) as results:
                for result in results:
                    done += 1
                    bar.update(1)
                    yield result
        _init_worker(heads)
        for task in tasks[done:]:
            yield _work(task)
            bar.update(1)
    finally:
        bar.close()


def _in_pool(tasks: list[Task], heads: list[HeadConfig], workers: int) -> Iterator[Result]:
    """Results from a pool of spawned workers; stops early (quietly) if the pool breaks."""
    cropping = any(t.crop_size for t in tasks)
    chunk = 2 if cropping else max(1, min(64, len(tasks) // (workers * 8)))
    pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"),
                               initializer=_init_worker, initargs=(heads,))
    finished = False
    try:
        yield from pool.map(_work, tasks, chunksize=chunk)
        finished = True
    except BrokenProcessPool as exc:
        print(f"sdaie index: worker processes failed ({exc}); continuing in this process",
              file=sys.stderr)
    finally:  # stopped early (--strict, Ctrl-C): drop the queued work, don't wait for it
        pool.shutdown(wait=finished, cancel_futures=not finished)
