"""An index folder read back: the photo table that every rank and loader worker maps, not copies.

The API other modules code against (the folder format is ``docs/index-format.md``, a contract)::

    index = load_index(IDX)           # maps the arrays, reads nothing else: milliseconds at 900k
    len(index)                        # photos (rows)
    index.labels                      # float32 [N, heads], read-only memmap; NaN = missing
    index.labels_array()              # the same array; index.labels_tensor(): a torch view of it
    index.rel_path(i) -> str          # path relative to index.root
    index.image_path(i) -> Path       # index.root / rel_path(i)
    index.crop(i) -> ndarray | None   # stored centre crop (HxWx3 uint8 memmap row); index.crop_size
    index.crop_ref(i) -> (shard, row) | None
    index.tags(i) -> dict             # the photo's tags, read from index.jsonl (inspection only)
    index.record(i) -> dict           # its whole index.jsonl row; index.records: a lazy sequence
    index.vocab, index.schema()       # heads and class names; index.meta: the manifest
    write_index(...)                  # sdaie.exif.writer: rows (path, labels, tags) -> a folder

Why numpy memory maps (not Python objects, not Arrow): every field training reads per photo is a
fixed-width number, or a string, which is an offsets array plus one bytes buffer (Arrow's own
layout for strings). ``.npy`` files of those map with ``numpy.load(mmap_mode="r")`` into every
process at no cost, are shared through the page cache by all ranks and workers, and contain no
Python objects whose reference counts a reader would write (copy-on-read of forked pages).
numpy is already a dependency; pyarrow would add a large wheel and its import time for nothing
these columns need.

Pickling (DataLoader workers under ``spawn``) sends the folder and manifest only; each process
maps the files itself. Tags stay out of memory: :meth:`PhotoIndex.tags` reads one line of
``index.jsonl`` at its stored byte offset.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

import numpy as np

from sdaie.config import ConfigError
from sdaie.exif.crops import shard_path
from sdaie.exif.schema import Schema

if TYPE_CHECKING:  # annotations only: reading an index must not import torch
    import torch

FORMAT_NAME = "sdaie-photo-index"
FORMAT_VERSION = 2  # 1: index.jsonl + vocab.json + summary.json read into a list of dicts
MANIFEST = "manifest.json"
ROWS_JSONL = "index.jsonl"
# array name -> file in the build's data folder (shapes and dtypes: docs/index-format.md)
ARRAYS = {"labels": "labels.npy", "paths": "paths.npy", "path_offsets": "path_offsets.npy",
          "crops": "crops.npy", "line_offsets": "line_offsets.npy"}
REBUILD = ("re-run `sdaie index {photos} --out {dir}` (it reuses the EXIF cache in {dir}: no photo "
           "is parsed again), or the command that wrote it")


class IndexFormatError(ConfigError):
    """The folder is not an index this release reads; the message says what to do, in one line."""


def _photo_folder(directory: Path) -> str:
    """The photo folder an index was built from, as its summary.json records it (for the hint)."""
    try:
        root = json.loads((directory / "summary.json").read_text(encoding="utf-8"))["root"]
        return str(root) if isinstance(root, str) and root else "PHOTOS"
    except (OSError, ValueError, KeyError, TypeError):
        return "PHOTOS"


def _fail(directory: Path, what: str) -> IndexFormatError:
    hint = REBUILD.format(photos=_photo_folder(directory), dir=directory)
    return IndexFormatError(f"index {directory}: {what}; {hint}")


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """The manifest of an index folder of this format version, checked against the folder
    (no torch, no arrays mapped: usable by pre-flight checks). Raises :class:`IndexFormatError`."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not directory.is_dir():
        raise FileNotFoundError(f"index folder not found: {directory}")
    if not path.is_file():
        if (directory / ROWS_JSONL).is_file():
            raise _fail(directory, f"written in index format 1 (no {MANIFEST}); this release "
                                   f"reads format {FORMAT_VERSION}")
        raise IndexFormatError(f"{directory} is not an index folder (no {MANIFEST}); build one "
                               f"with `sdaie index PHOTOS --out {directory}`")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        version, name = meta.get("version"), meta.get("format")
    except (OSError, ValueError, AttributeError) as exc:
        raise _fail(directory, f"{MANIFEST} is unreadable ({exc})") from None
    if name != FORMAT_NAME:
        raise IndexFormatError(f"{path} is not an sdaie photo index (format {name!r})")
    if version != FORMAT_VERSION:
        newer = isinstance(version, int) and version > FORMAT_VERSION
        upgrade = " (upgrade sdaie to read it)" if newer else ""
        raise _fail(directory, f"index format {version}, this release reads format "
                               f"{FORMAT_VERSION}{upgrade}")
    rows = directory / ROWS_JSONL
    try:
        complete = ((directory / meta["data"]).is_dir() and rows.is_file()
                    and rows.stat().st_size == meta["jsonl_bytes"])
    except (KeyError, TypeError) as exc:
        raise _fail(directory, f"{MANIFEST} lacks {exc}") from None
    if not complete:
        raise _fail(directory, "incomplete (an interrupted `sdaie index`?)")
    return meta


def _map(path: Path) -> np.ndarray:
    return np.load(path, mmap_mode="r", allow_pickle=False)


class PhotoIndex:
    """An index folder, memory-mapped (see the module docstring for the API)."""

    def __init__(self, directory: Path, root: Path, meta: dict[str, Any]):
        self.directory, self.root, self.meta = directory, root, meta
        self.vocab: dict[str, Any] = meta["vocab"]
        self.crop_size: int | None = meta["crop_size"]
        self._open()

    def _open(self) -> None:
        data = self.directory / self.meta["data"]
        try:
            arrays = {name: _map(data / file) for name, file in ARRAYS.items()}
        except (OSError, ValueError) as exc:
            raise _fail(self.directory, f"its arrays cannot be read ({exc})") from None
        n, heads = self.meta["rows"], len(self.vocab["heads"])
        want = {"labels": (n, heads), "path_offsets": (n + 1,), "crops": (n, 2),
                "line_offsets": (n + 1,)}
        if any(arrays[k].shape != shape for k, shape in want.items()):
            raise _fail(self.directory, "its arrays do not match its manifest")
        self.labels: np.ndarray = arrays["labels"]
        self._paths, self._path_offsets = arrays["paths"], arrays["path_offsets"]
        self._crops, self._lines = arrays["crops"], arrays["line_offsets"]
        self._shards: dict[int, np.ndarray] = {}
        self._tensor: Any = None
        self._jsonl: tuple[int, int] | None = None  # (pid, fd) of index.jsonl, opened on use

    def __len__(self) -> int:
        return self.meta["rows"]

    def __getstate__(self) -> dict[str, Any]:
        # DataLoader workers under spawn get a pickled copy: no array travels by value, each
        # process maps the files itself.
        return {"directory": self.directory, "root": self.root, "meta": self.meta}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["directory"], state["root"], state["meta"])

    def __repr__(self) -> str:
        return f"PhotoIndex({str(self.directory)!r}, rows={len(self)}, root={str(self.root)!r})"

    # --- what training reads: arrays only -------------------------------------------------------

    def labels_array(self) -> np.ndarray:
        """``float32 [N, H]`` (read-only memmap): class index or value per head, NaN = missing."""
        return self.labels

    def labels_tensor(self) -> torch.Tensor:
        """The labels as a ``torch.FloatTensor[N, H]`` sharing the mapped file (made once per
        process; a private copy-on-write map, so torch sees a writable buffer)."""
        if self._tensor is None:
            import torch  # here: `sdaie index` and the EXIF tools import this module without torch

            data = self.directory / self.meta["data"] / ARRAYS["labels"]
            self._tensor = torch.from_numpy(np.load(data, mmap_mode="c", allow_pickle=False))
        return self._tensor

    def rel_path(self, i: int) -> str:
        start, end = int(self._path_offsets[i]), int(self._path_offsets[i + 1])
        # surrogateescape: a non-UTF-8 file name comes back as os.walk gave it (it opens)
        return self._paths[start:end].tobytes().decode("utf-8", "surrogateescape")

    def image_path(self, i: int) -> Path:
        return self.root / self.rel_path(i)

    def crop_ref(self, i: int) -> tuple[int, int] | None:
        if self.crop_size is None:  # no crops: leave the array's pages unread
            return None
        shard, row = (int(v) for v in self._crops[i])
        return None if shard < 0 else (shard, row)

    def crop(self, i: int) -> np.ndarray | None:
        """The stored centre crop of photo ``i`` (HxWx3 uint8, read-only memmap) or None."""
        ref = self.crop_ref(i)
        if ref is None:
            return None
        shard, row = ref
        if shard not in self._shards:
            self._shards[shard] = _map(shard_path(self.directory, shard))
        return self._shards[shard][row]

    def schema(self) -> Schema:
        """The encoder the labels were made with (for decoding predictions)."""
        return Schema.from_vocab(self.vocab)

    # --- inspection: one line of index.jsonl ----------------------------------------------------

    def record(self, i: int) -> dict[str, Any]:
        """Row ``i`` of ``index.jsonl`` (path, size, tags, labels, crop, ...): one read."""
        if not 0 <= i < len(self):
            raise IndexError(f"photo {i} of an index of {len(self)}")
        start, end = int(self._lines[i]), int(self._lines[i + 1])
        row = json.loads(os.pread(self._jsonl_fd(), end - start, start))
        if row.get("path") != self.rel_path(i):
            raise _fail(self.directory, f"{ROWS_JSONL} does not match its arrays")
        return row

    def tags(self, i: int) -> dict[str, Any]:
        """The canonical EXIF tags of photo ``i`` (for people and tools, not per-step loops)."""
        return self.record(i).get("tags", {})

    @property
    def records(self) -> Rows:
        """All rows as a lazy sequence (each item read from ``index.jsonl`` when asked for)."""
        return Rows(self)

    def _jsonl_fd(self) -> int:
        if self._jsonl is None or self._jsonl[0] != os.getpid():  # a forked child opens its own
            self._jsonl = (os.getpid(), os.open(self.directory / ROWS_JSONL, os.O_RDONLY))
        return self._jsonl[1]


class Rows(Sequence):
    """``index.records``: the rows of ``index.jsonl`` read on demand, never all held."""

    def __init__(self, index: PhotoIndex):
        self.index = index

    def __len__(self) -> int:
        return len(self.index)

    @overload
    def __getitem__(self, i: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, i: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, slice):
            return [self.index.record(k) for k in range(*i.indices(len(self)))]
        return self.index.record(i + len(self) if i < 0 else i)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        with open(self.index.directory / ROWS_JSONL, encoding="utf-8") as fh:
            for _ in range(len(self)):
                yield json.loads(fh.readline())


def load_index(directory: str | Path, root: str | Path | None = None) -> PhotoIndex:
    """Map an index folder (``sdaie index``, or any :func:`~sdaie.exif.writer.write_index`).

    ``root`` overrides the photo folder the manifest records (for a moved collection). An index
    of another format version is refused with one line saying how to rebuild it.
    """
    directory = Path(directory)
    meta = read_manifest(directory)
    return PhotoIndex(directory, Path(root or meta["root"]), meta)
