"""``sdaie index``: turn a folder of photographs into EXIF supervision for the pretext task.

Writes into ``--out`` an index folder (``docs/index-format.md``): ``manifest.json`` (format
version, rows, vocabularies), the memory-mapped arrays training reads (``data-<build>/``),
``index.jsonl`` (one line per usable photo, with its tags: for people and tools),
``vocab.json`` (heads and class names), ``summary.json`` (counts, coverage, skipped files with
reasons), optional ``crops/shard_XXXXX.npy`` (native-resolution centre crops, never resized), the
parse journal ``exif_cache.jsonl``, plus ``config.yaml``/``environment.json``.

A photo is *usable* when its image header opens, the file is complete (JPEG: an end-of-image
marker after the scan; PNG: an IEND chunk) and at least one schema head gets a label. Everything
else is skipped and listed with its reason; nothing stops a long run unless ``--strict``.

A run streams: per file it keeps the relative path, its stat and the offset of its journal line
(tens of bytes), reads entries back from the journal when it needs them, and writes the outputs
row by row, so memory stays flat as the folder grows. A killed run resumes from its journal.

The jobs live in their own modules: :mod:`~sdaie.exif.scan` (what needs work, worker processes),
:mod:`~sdaie.exif.parse` (one file's header), :mod:`~sdaie.exif.crops` (the shard store),
:mod:`~sdaie.exif.journal` (the incremental cache), :mod:`~sdaie.exif.summary` (the output
files), :mod:`~sdaie.exif.writer` (the folder format) and :mod:`~sdaie.exif.store` (reading an
index back: :func:`load_index`). This module runs them in order and is the command line.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sdaie.config import Config, ConfigError, load_config
from sdaie.data.walk import ignored_text
from sdaie.exif.crops import ShardWriter, collect_garbage
from sdaie.exif.journal import CACHE_NAME, EntryReader, Journal, compact
from sdaie.exif.parse import usable_reason
from sdaie.exif.scan import Files, Result, Task, list_photos, plan_tasks, run_tasks, survey
from sdaie.exif.schema import Schema
from sdaie.exif.store import PhotoIndex, load_index
from sdaie.exif.summary import write_outputs
from sdaie.runinfo import write_run_info

__all__ = ["CACHE_NAME", "IndexStats", "PhotoIndex", "StrictError", "build_index", "load_index",
           "main"]


class StrictError(RuntimeError):
    """``--strict``: the first unusable file stops the run, whether parsed now or cached."""


@dataclass
class IndexStats:
    """What a run did (the CLI prints it; tests check it). ``skipped`` holds the first skipped
    files (all of them are in summary.json), ``skipped_count`` their number."""

    files: int = 0
    ignored: dict[str, int] = field(default_factory=dict)  # non-image files by kind
    indexed: int = 0
    parsed: int = 0
    cropped: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)
    skipped_count: int = 0
    models: int = 0
    makes: int = 0


def build_index(photo_dir: str | Path, out_dir: str | Path, cfg: Config, *, workers: int = 1,
                crop_size: int | None = None, strict: bool = False,
                progress: bool = False) -> IndexStats:
    """Index ``photo_dir`` into ``out_dir`` (see the module docstring); returns the run's counts."""
    root = Path(photo_dir).resolve()
    out = Path(out_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"photo folder not found: {photo_dir}")
    if crop_size is not None and crop_size < 1:
        raise ConfigError(f"--crops must be a positive size, got {crop_size}")
    schema = Schema(cfg.schema.heads)  # validates the heads before any work
    out.mkdir(parents=True, exist_ok=True)
    rels, listing = list_photos(root)
    if not rels:
        extra = f" ({listing.ignored_text()})" if listing.ignored else ""
        raise FileNotFoundError(f"no image files under {photo_dir}{extra}")
    cache_path = out / CACHE_NAME
    stats = IndexStats(files=len(rels), ignored=dict(listing.ignored))
    files = survey(root, rels, cache_path, schema, crop_size)
    stats.parsed = files.parse_count()
    _process(files, out, schema, crop_size, workers, strict, progress, stats)

    # Labels, vocabularies and outputs are recomputed from all entries every run.
    reader = EntryReader(cache_path)
    try:
        if strict:
            _check_all_usable(files, reader, schema)
        used_shards: set[int] = set()
        schema = Schema.fit(cfg.schema.heads,
                            (e.get("tags", {}) for e in _entries(files, reader, used_shards)
                             if not e.get("error")))
        tally = write_outputs(root, out, _entries(files, reader), schema, crop_size, stats.files,
                              stats.parsed, stats.ignored)
    finally:
        reader.close()
    stats.skipped, stats.skipped_count = tally.skipped_examples, tally.skipped
    stats.indexed, stats.models, stats.makes = tally.indexed, len(tally.cameras), len(tally.makes)
    compact(cache_path, np.where(_stat_failed(files), -1, files.offsets))
    collect_garbage(out, used_shards)
    return stats


def _check_all_usable(files: Files, reader: EntryReader, schema: Schema) -> None:
    """``--strict`` over the whole folder: a file skipped by an earlier run (its entry is in the
    cache) or not stat'able stops the run like one parsed now, before any output is written."""
    for entry in _entries(files, reader):
        reason = usable_reason(entry, schema.encode(entry.get("tags", {})))
        if reason:
            raise StrictError(f"{entry['path']}: {reason}")


def _stat_failed(files: Files) -> np.ndarray:
    failed = np.zeros(len(files), dtype=bool)
    failed[list(files.errors)] = True
    return failed


def _entries(files: Files, reader: EntryReader,
             shards: set[int] | None = None) -> Iterator[dict[str, Any]]:
    """Every file's current entry, in row order, read back from the journal (``shards``
    collects the crop shards they use)."""
    for k, rel in enumerate(files.rels):
        if k in files.errors:
            yield {"path": rel, "error": files.errors[k]}
            continue
        entry = reader(int(files.offsets[k]))
        crop = entry.get("crop")
        if shards is not None and isinstance(crop, dict) and crop.get("shard") is not None:
            shards.add(crop["shard"])
        yield entry


def _process(files: Files, out: Path, schema: Schema, crop_size: int | None, workers: int,
             strict: bool, progress: bool, stats: IndexStats) -> None:
    """Run the tasks, journal their entries, and store crops into shards as they arrive.

    An entry whose crop sits in a shard not yet written is journalled only once that shard is;
    a run stopped by an exception (Ctrl-C, ``--strict``) still writes the shard it has begun.
    """
    total, tasks = plan_tasks(files, crop_size)
    shards = ShardWriter(out, crop_size) if crop_size and total else None
    pending: list[tuple[int, dict[str, Any]]] = []
    old = EntryReader(out / CACHE_NAME) if (out / CACHE_NAME).exists() else None
    with Journal(out / CACHE_NAME) as journal:

        def log(items: list[tuple[int, dict[str, Any]]]) -> None:
            for (k, _), offset in zip(items, journal.log([e for _, e in items])):
                files.offsets[k] = offset

        try:
            for task, result in run_tasks(tasks, total, schema.heads, workers, progress):
                entry = _entry(task, result, files, old, crop_size)
                if strict:
                    reason = usable_reason(entry, schema.encode(entry.get("tags", {})))
                    if reason:
                        log([(task.pos, entry)])
                        raise StrictError(f"{task.rel}: {reason}")
                if result[3] != "ok":
                    log([(task.pos, entry)])
                    continue
                entry["crop"] = {"size": crop_size, **shards.add(result[2])}
                stats.cropped += 1
                pending.append((task.pos, entry))
                if shards.full:
                    shards.flush()
                    log(pending)
                    pending.clear()
        finally:
            if shards is not None:
                shards.flush()
                log(pending)
            if old is not None:
                old.close()


def _entry(task: Task, result: Result, files: Files, old: EntryReader | None,
           crop_size: int | None) -> dict[str, Any]:
    """The journal entry of a finished task (its crop, if one was cut, is added by the caller)."""
    rel, parsed, _, status = result
    k = task.pos
    if parsed is not None:
        entry = {"path": rel, "bytes": int(files.size[k]), "mtime_ns": int(files.mtime_ns[k]),
                 **parsed}
    else:  # a crop-only task: the cached entry gains its crop
        entry = old(int(files.offsets[k]))
    if status not in ("skip", "ok", "small"):
        entry["error"] = status  # the header was fine, the pixels are not
    if status == "small":
        entry["crop"] = {"size": crop_size, "shard": None, "row": None}
    return entry


def _default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sdaie index",
        description="Build the EXIF training index (labels, vocabularies, summary, optional "
                    "native-resolution centre crops) of a photo folder.")
    parser.add_argument("photo_dir", help="folder of photographs (walked recursively)")
    parser.add_argument("--out", required=True,
                        help="output folder (created; re-runs are incremental)")
    parser.add_argument("--workers", type=int, default=_default_workers(),
                        help="parallel processes (default: the usable CPU cores)")
    parser.add_argument("--crops", type=int, default=None, metavar="SIZE",
                        help="also store SIZExSIZE centre crops at native resolution in shards")
    parser.add_argument("--config", default=None, help="YAML config (its schema.heads are used)")
    parser.add_argument("--strict", action="store_true",
                        help="stop at the first unusable file (default: skip and report it)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value",
                        help="config overrides, e.g. run.strict=true")
    return parser


def _print_report(stats: IndexStats, args: argparse.Namespace) -> None:
    print(f"indexed {stats.indexed} of {stats.files} image files "
          f"({stats.parsed} parsed this run, {stats.files - stats.parsed} from the cache"
          + (f", {stats.cropped} new crops" if args.crops else "") + f") -> {args.out}")
    print(f"{stats.models} camera models, {stats.makes} makes; "
          f"skipped {stats.skipped_count} files (reasons in summary.json)")
    if stats.ignored:
        print(f"{ignored_text(stats.ignored)} (not images)")
    for item in stats.skipped[:10]:
        print(f"  skipped {item['path']}: {item['reason']}")
    if stats.skipped_count > 10:
        print(f"  ... and {stats.skipped_count - 10} more")


def main(argv: Sequence[str] | None = None) -> int:
    args = get_args_parser().parse_intermixed_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
        strict = args.strict or cfg.run.strict
        stats = build_index(args.photo_dir, args.out, cfg, workers=args.workers,
                            crop_size=args.crops, strict=strict,
                            progress=not args.no_progress)
    except (ConfigError, FileNotFoundError) as exc:
        print(f"sdaie index: error: {exc}", file=sys.stderr)
        return 2
    except StrictError as exc:
        print(f"sdaie index: --strict: unusable file {exc}", file=sys.stderr)
        return 1
    write_run_info(args.out, cfg, photo_dir=str(Path(args.photo_dir).resolve()),
                   crop_size=args.crops, workers=args.workers)
    _print_report(stats, args)
    if stats.indexed == 0:
        print("sdaie index: error: no usable photo", file=sys.stderr)
        return 1
    return 0
