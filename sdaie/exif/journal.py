"""The parse cache: an append-only journal of parsed files, compacted at the end of a run.

Key of an entry: relative path, byte size, mtime and reader version; a re-run parses only new or
changed files. Entries are appended as they are parsed (crop rows once their shard is written),
so a killed run keeps what it journalled; a torn last line is ignored on reading.

Nothing holds all entries: a run keeps, per file, the byte offset of its latest journal line
(:func:`latest_lines`) and reads an entry back when it needs it (:class:`EntryReader`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from sdaie.exif.reader import READER_VERSION

CACHE_NAME = "exif_cache.jsonl"
NO_LINE = -1
_key = hash  # str -> int64 lookup key (this process's string hash; equal keys are compared)
# The error of a file the OS would not read (permissions, I/O error, a share gone for a moment):
# about the moment, not the bytes, so such an entry is parsed again next run.
READ_FAILED = "cannot read: "


def is_fresh(entry: dict[str, Any] | None, size: int, mtime_ns: int) -> bool:
    """Whether a cached entry still describes the file (same bytes, mtime and reader); an entry
    whose file could not be read never does (``chmod`` changes neither size nor mtime)."""
    return (entry is not None and entry.get("bytes") == size
            and entry.get("mtime_ns") == mtime_ns and entry.get("reader") == READER_VERSION
            and not str(entry.get("error") or "").startswith(READ_FAILED))


def has_crop(entry: dict[str, Any], crop_size: int) -> bool:
    """Whether the entry records a crop attempt at ``crop_size`` (stored, or the image was
    smaller)."""
    crop = entry.get("crop")
    return isinstance(crop, dict) and crop.get("size") == crop_size


def _entries(path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    """``(byte offset, entry)`` of every readable line; torn or foreign lines are passed over."""
    if not path.exists():
        return
    offset = 0
    with open(path, "rb") as fh:
        for line in fh:
            try:
                entry = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                entry = None
            if isinstance(entry, dict) and isinstance(entry.get("path"), str):
                yield offset, entry
            offset += len(line)


def latest_lines(path: Path, rels: Sequence[str],
                 visit: Callable[[int, dict[str, Any]], None] | None = None) -> np.ndarray:
    """Byte offset of the latest journal line of each of ``rels`` (:data:`NO_LINE` if none).

    The journal is read once, line by line; the lookup costs two 8-byte arrays per file (Python
    string hashes, sorted, with a string comparison on a match), not a dict of entries.
    ``visit(position, entry)`` sees each line that belongs to a file, in journal order, so the
    last call for a position is its latest entry.
    """
    keys = np.fromiter((_key(r) for r in rels), dtype=np.int64, count=len(rels))
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    offsets = np.full(len(rels), NO_LINE, dtype=np.int64)
    for offset, entry in _entries(path):
        rel = entry["path"]
        key = _key(rel)
        j = int(np.searchsorted(keys, key))
        while j < len(keys) and keys[j] == key:  # equal keys: compare the strings
            k = int(order[j])
            if rels[k] == rel:
                offsets[k] = offset
                if visit is not None:
                    visit(k, entry)
                break
            j += 1
    return offsets


class EntryReader:
    """Reads journal entries back by byte offset (one open file, positioned reads)."""

    def __init__(self, path: Path):
        self._fh = open(path, "rb")

    def raw(self, offset: int) -> bytes:
        self._fh.seek(offset)
        return self._fh.readline()

    def __call__(self, offset: int) -> dict[str, Any]:
        return json.loads(self.raw(offset))

    def close(self) -> None:
        self._fh.close()


class Journal:
    """Appends entries to the journal, one JSON line each, flushed after every batch."""

    def __init__(self, path: Path) -> None:
        self._fh = open(path, "ab")
        if self._fh.tell() > 0:  # end a torn last line, so the next entry gets a line of its own
            with open(path, "rb") as fh:
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    self._fh.write(b"\n")

    def log(self, items: Iterable[dict[str, Any]]) -> list[int]:
        """Append the entries; returns the byte offset of each line."""
        offsets = []
        for item in items:
            offsets.append(self._fh.tell())
            self._fh.write((json.dumps(item) + "\n").encode("utf-8"))
        self._fh.flush()
        return offsets

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._fh.close()


def compact(path: Path, offsets: np.ndarray) -> None:
    """Rewrite the journal with the latest line of each current file, in the given (sorted path)
    order, streamed; files gone from the folder drop out. Replaced atomically."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    reader = EntryReader(path)
    try:
        with open(tmp, "wb") as out:
            for offset in offsets:
                if offset != NO_LINE:
                    out.write(reader.raw(int(offset)))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    finally:
        reader.close()
        tmp.unlink(missing_ok=True)
