"""Writing an index folder: rows of (path, labels, tags) in, a versioned, memory-mapped folder out.

Every index is written here: by ``sdaie index``, by importers of other collections, by the
benchmarks. A row is a dict with ``path`` (relative to ``root``, POSIX separators) and ``labels``
(one number or None per head of ``vocab``), optionally ``tags`` (the canonical EXIF tags, kept for
inspection), ``crop`` (``{"shard", "row"}`` of a stored centre crop, or None) and any other JSON
fields, all kept in ``index.jsonl``.

Rows stream through: each column is appended to a temporary file as it comes, so memory stays flat
at any number of photos. The build goes into a data folder of its own, named after a hash of its
rows; ``manifest.json``, written last and atomically, commits it, and older data folders are
deleted after. A run killed before the commit leaves the previous index as it was (or, if it was
killed between the last renames, an index that :func:`~sdaie.exif.store.load_index` refuses with
one line asking for a re-run; nothing is ever read inconsistently).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from sdaie.atomic import atomic_write_text
from sdaie.exif.store import ARRAYS, FORMAT_NAME, FORMAT_VERSION, MANIFEST, ROWS_JSONL

_CHUNK = 4096  # rows converted to arrays at a time
_CORE_KEYS = ("format", "version", "build", "rows", "root", "crop_size", "data", "jsonl_bytes",
              "vocab")


@dataclass
class Written:
    """What :func:`write_index` wrote."""

    directory: Path
    rows: int
    build: str


class _Column:
    """One array column appended as raw bytes to a temporary file, then saved as ``.npy``."""

    def __init__(self, path: Path, dtype: str, width: tuple[int, ...] = ()):
        self.path, self.dtype, self.width = path, np.dtype(dtype), width
        self.raw = path.with_suffix(".raw")
        self.fh: IO[bytes] = open(self.raw, "wb")
        self.n = 0

    def add(self, values: Any) -> None:
        arr = np.asarray(values, dtype=self.dtype)
        self.fh.write(arr.tobytes())
        self.n += len(arr)

    def finish(self) -> None:
        """Header + the spooled bytes, streamed (never the whole column in memory)."""
        self.fh.close()
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
                  "shape": (self.n, *self.width)}
        with open(self.path, "wb") as out, open(self.raw, "rb") as raw:
            np.lib.format.write_array_header_1_0(out, header)
            shutil.copyfileobj(raw, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        self.raw.unlink()


class _Table:
    """The columns of one build, filled chunk by chunk."""

    def __init__(self, folder: Path, heads: int):
        self.heads = heads
        self.labels = _Column(folder / ARRAYS["labels"], "<f4", (heads,))
        self.paths = _Column(folder / ARRAYS["paths"], "u1")
        self.path_offsets = _Column(folder / ARRAYS["path_offsets"], "<i8")
        self.crops = _Column(folder / ARRAYS["crops"], "<i4", (2,))
        self.line_offsets = _Column(folder / ARRAYS["line_offsets"], "<i8")
        self.path_end = 0
        self.path_offsets.add([0])
        self.line_offsets.add([0])

    def add(self, chunk: list[tuple[bytes, list[Any], tuple[int, int], int]]) -> None:
        """``(path bytes, labels, (shard, row), line end)`` per row."""
        ends = np.cumsum([len(p) for p, _, _, _ in chunk]) + self.path_end
        self.path_end = int(ends[-1])
        self.paths.add(np.frombuffer(b"".join(p for p, _, _, _ in chunk), dtype=np.uint8))
        self.path_offsets.add(ends)
        flat = [math.nan if v is None else v for _, labels, _, _ in chunk for v in labels]
        values = np.fromiter(flat, dtype=np.float64, count=len(flat))  # float64 -> float32 below
        self.labels.add(values.reshape(len(chunk), self.heads))
        self.crops.add([crop for _, _, crop, _ in chunk])
        self.line_offsets.add([end for _, _, _, end in chunk])

    def finish(self) -> None:
        for column in (self.labels, self.paths, self.path_offsets, self.crops, self.line_offsets):
            column.finish()


def _checked(row: Mapping[str, Any], heads: int, crop_size: int | None) -> tuple[bytes, tuple]:
    """The row's path as bytes and its crop reference; ValueError names what is wrong with it.

    The bytes are UTF-8 with ``surrogateescape``: a file name that is not UTF-8 (``os.walk``
    gives it lone surrogates) is stored as its own bytes, and :mod:`~sdaie.exif.store` decodes it
    back to a name that opens the file."""
    path = row.get("path")
    if not isinstance(path, str) or not path or path.startswith("/") or "\0" in path:
        raise ValueError(f"index row: path must be a non-empty relative path, got {path!r}")
    labels = row.get("labels")
    if not isinstance(labels, (list, tuple)) or len(labels) != heads:
        raise ValueError(f"index row {path}: {heads} labels expected, got {labels!r}")
    crop = row.get("crop")
    if not crop:
        return path.encode("utf-8", "surrogateescape"), (-1, -1)
    if crop_size is None:
        raise ValueError(f"index row {path}: a crop reference in an index without crop_size")
    return path.encode("utf-8", "surrogateescape"), (int(crop["shard"]), int(crop["row"]))


def _write_rows(rows: Iterable[Mapping[str, Any]], jsonl: IO[bytes], table: _Table,
                crop_size: int | None) -> tuple[int, str]:
    """Stream the rows into ``index.jsonl`` and the columns; returns (rows, build hash)."""
    digest = hashlib.blake2b(digest_size=8)
    chunk: list[tuple[bytes, list[Any], tuple[int, int], int]] = []
    n = end = 0
    for row in rows:
        path, crop = _checked(row, table.heads, crop_size)
        line = (json.dumps(row) + "\n").encode("utf-8")  # ASCII: surrogates come out escaped
        jsonl.write(line)
        digest.update(line)
        end += len(line)
        chunk.append((path, list(row["labels"]), crop, end))
        n += 1
        if len(chunk) == _CHUNK:
            table.add(chunk)
            chunk = []
    if chunk:
        table.add(chunk)
    return n, digest.hexdigest()


def dump_json(doc: Mapping[str, Any], fh: IO[str]) -> None:
    """``json.dump(doc, fh, indent=1)`` where top-level values may be iterators (e.g. a spooled
    list of skipped files), written item by item; the text is what ``json.dumps`` would give."""
    if not doc:
        fh.write("{}")
        return
    fh.write("{")
    for k, (key, value) in enumerate(doc.items()):
        fh.write(("," if k else "") + "\n " + json.dumps(key) + ": ")
        if not isinstance(value, Iterator):
            fh.write(json.dumps(value, indent=1).replace("\n", "\n "))
            continue
        first = True
        for item in value:
            fh.write(("[" if first else ",") + "\n  "
                     + json.dumps(item, indent=1).replace("\n", "\n  "))
            first = False
        fh.write("[]" if first else "\n ]")
    fh.write("\n}")


def _write_summary(path: Path, doc: Mapping[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        dump_json(doc, fh)
        fh.write("\n")
    os.replace(tmp, path)


# Temporaries ``.<name>.<pid>.tmp`` that `sdaie index` writes next to the index (the journal's
# compaction, the spooled list of skipped files): removed once their process is gone.
_PID_TEMPS = (".exif_cache.jsonl.", ".skipped.")


def _dead_pid_temp(name: str) -> bool:
    """Whether ``name`` is one of :data:`_PID_TEMPS` whose writing process no longer runs."""
    pid = name.removesuffix(".tmp").rsplit(".", 1)[-1]
    if not name.startswith(_PID_TEMPS) or not name.endswith(".tmp") or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # it exists, owned by someone else
        return False
    return False


def _clean(out: Path, keep: str) -> None:
    """Data folders of older builds and temporaries of killed runs."""
    for path in out.iterdir():
        stale_tmp = (path.name.startswith((".data-tmp-", f".{ROWS_JSONL}.", ".summary.json."))
                     or _dead_pid_temp(path.name))
        if (path.name.startswith("data-") and path.name != keep) or stale_tmp:
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)


def write_index(out: str | Path, rows: Iterable[Mapping[str, Any]], *, vocab: dict[str, Any],
                root: str | Path, crop_size: int | None = None,
                summary: Callable[[int], Mapping[str, Any]] | None = None,
                extra: Mapping[str, Any] | None = None) -> Written:
    """Write an index folder (module docstring); ``summary(rows)`` gives ``summary.json``'s
    document once the rows are consumed (top-level iterators are streamed); ``extra`` adds
    fields to the manifest (e.g. what kind of pixels the paths point to)."""
    out = Path(out)
    clash = sorted(set(extra or {}) & set(_CORE_KEYS))
    if clash:
        raise ValueError(f"extra manifest fields {clash} are reserved")
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".data-tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    jsonl_tmp = out / f".{ROWS_JSONL}.{os.getpid()}.tmp"
    try:
        table = _Table(tmp, len(vocab["heads"]))
        with open(jsonl_tmp, "wb") as jsonl:
            n, build = _write_rows(rows, jsonl, table, crop_size)
            jsonl.flush()
            os.fsync(jsonl.fileno())
        table.finish()
        data = f"data-{build}"
        if (out / data).is_dir():  # the same rows again: that build is already there
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, out / data)
        jsonl_bytes = jsonl_tmp.stat().st_size
        os.replace(jsonl_tmp, out / ROWS_JSONL)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        jsonl_tmp.unlink(missing_ok=True)
    atomic_write_text(out / "vocab.json", json.dumps(vocab, indent=1) + "\n")
    if summary is not None:
        _write_summary(out / "summary.json",
                       {"format_version": FORMAT_VERSION, "build": build, **summary(n)})
    manifest = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "build": build, "rows": n,
                "root": str(root), "crop_size": crop_size, "data": data,
                "jsonl_bytes": jsonl_bytes, **(extra or {}), "vocab": vocab}
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    _clean(out, keep=data)
    return Written(out, n, build)
