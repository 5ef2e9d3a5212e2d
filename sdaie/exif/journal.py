"""The parse cache: an append-only journal of parsed files, compacted at the end of a run.

Key of an entry: relative path, byte size, mtime and reader version; a re-run parses only new or
changed files. Entries are appended as they are parsed (crop rows once their shard is written),
so a killed run keeps what it journalled; a torn last line is ignored on reading.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import TracebackType
from typing import Any, Iterable

from sdaie.atomic import atomic_write_text
from sdaie.exif.reader import READER_VERSION

CACHE_NAME = "exif_cache.jsonl"


def read_cache(path: Path) -> dict[str, dict[str, Any]]:
    """Latest journal entry per relative path; a torn last line (killed run) is ignored."""
    entries: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return entries
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(entry, dict) and "path" in entry:
                entries[entry["path"]] = entry
    return entries


def is_fresh(entry: dict[str, Any] | None, stat: os.stat_result) -> bool:
    """Whether a cached entry still describes the file (same bytes, mtime and reader)."""
    return (entry is not None and entry.get("bytes") == stat.st_size
            and entry.get("mtime_ns") == stat.st_mtime_ns
            and entry.get("reader") == READER_VERSION)


def has_crop(entry: dict[str, Any], crop_size: int) -> bool:
    """Whether the entry records a crop attempt at ``crop_size`` (stored, or the image was
    smaller)."""
    crop = entry.get("crop")
    return isinstance(crop, dict) and crop.get("size") == crop_size


class Journal:
    """Appends entries to the journal, one JSON line each, flushed after every batch."""

    def __init__(self, path: Path) -> None:
        self._fh = open(path, "a", encoding="utf-8")

    def log(self, items: Iterable[dict[str, Any]]) -> None:
        for item in items:
            self._fh.write(json.dumps(item) + "\n")
        self._fh.flush()

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._fh.close()


def compact(path: Path, entries: dict[str, dict[str, Any]]) -> None:
    """Rewrite the journal with one line per current file (files gone from the folder drop out)."""
    text = "".join(json.dumps(entries[rel]) + "\n" for rel in sorted(entries)
                   if "bytes" in entries[rel])
    atomic_write_text(path, text)
