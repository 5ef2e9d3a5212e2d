"""What an index run writes: the index folder (:func:`sdaie.exif.writer.write_index`: the rows of
the usable photos, the vocabularies) and ``summary.json`` (counts, coverage, warnings, skipped
files with reasons).

Everything is recomputed from all journal entries every run, in sorted path order, so the same
folder gives the same files whatever was cached. The entries stream through once: the counters
are bounded by the number of distinct cameras and tags, and the skipped files are spooled to a
temporary file, not held.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from sdaie.exif.journal import has_crop
from sdaie.exif.parse import usable_reason
from sdaie.exif.reader import READER_VERSION, warning_kind
from sdaie.exif.schema import Schema, normalize_text
from sdaie.exif.writer import write_index

_WARNING_EXAMPLES = 200
SKIPPED_EXAMPLES = 100  # skipped files kept in memory for the command's report


@dataclass
class Tally:
    """What the summary counts over the entries; the skipped files go to a spool file."""

    spool: IO[str]
    indexed: int = 0
    skipped: int = 0
    skipped_examples: list[dict[str, str]] = field(default_factory=list)
    tag_counts: Counter = field(default_factory=Counter)
    head_counts: Counter = field(default_factory=Counter)
    makes: Counter = field(default_factory=Counter)
    models: Counter = field(default_factory=Counter)
    cameras: set[tuple[str, str]] = field(default_factory=set)
    warn_counts: Counter = field(default_factory=Counter)
    warn_examples: list[list[str]] = field(default_factory=list)
    crops: int = 0

    def add_warnings(self, rel: str, warnings: list[str]) -> None:
        for w in warnings:
            self.warn_counts[warning_kind(w)] += 1
            if len(self.warn_examples) < _WARNING_EXAMPLES:
                self.warn_examples.append([rel, w])

    def add_skip(self, rel: str, reason: str) -> None:
        item = {"path": rel, "reason": reason}
        self.spool.write(json.dumps(item) + "\n")
        self.skipped += 1
        if len(self.skipped_examples) < SKIPPED_EXAMPLES:
            self.skipped_examples.append(item)

    def skipped_files(self) -> Iterator[dict[str, str]]:
        """Every skipped file, read back from the spool."""
        self.spool.flush()
        with open(self.spool.name, encoding="utf-8") as fh:
            for line in fh:
                yield json.loads(line)

    def add_photo(self, tags: dict[str, Any], labels: list[Any], schema: Schema) -> None:
        self.indexed += 1
        self.tag_counts.update(tags.keys())
        self.head_counts.update(h.tag for h, lab in zip(schema.heads, labels) if lab is not None)
        make = normalize_text(tags["Make"]) if "Make" in tags else None
        model = normalize_text(tags["Model"]) if "Model" in tags else None
        if make:
            self.makes[make] += 1
        if model:
            self.models[model] += 1
            self.cameras.add((make or "", model))

    def rows(self, entries: Iterable[dict[str, Any]], schema: Schema,
             crop_size: int | None) -> Iterator[dict[str, Any]]:
        """Index rows of the usable photos; the others are counted as skipped with a reason."""
        for entry in entries:
            rel = entry["path"]
            self.add_warnings(rel, entry.get("warnings", []))
            tags = entry.get("tags", {})
            labels = schema.encode(tags) if not entry.get("error") else []
            reason = usable_reason(entry, labels)
            if reason:
                self.add_skip(rel, reason)
                continue
            crop = None
            if crop_size and has_crop(entry, crop_size) and entry["crop"]["shard"] is not None:
                crop = {"shard": entry["crop"]["shard"], "row": entry["crop"]["row"]}
                self.crops += 1
            self.add_photo(tags, labels, schema)
            yield {"path": rel, "size": entry["size"], "tags": tags, "labels": labels,
                   "crop": crop}


def summary(root: Path, files: int, parsed: int, crop_size: int | None, schema: Schema,
            t: Tally, ignored: dict[str, int] | None = None) -> dict[str, Any]:
    """The ``summary.json`` document (key order is part of the file format); its skipped files
    are an iterator over the spool."""
    n = t.indexed
    return {
        "root": str(root),
        "files": files,
        "ignored": dict(ignored or {}),  # files under root that are not images, by kind
        "indexed": n,
        "skipped": t.skipped,
        "parsed_this_run": parsed,
        "reader_version": READER_VERSION,
        "crop_size": crop_size,
        "crops": t.crops,
        "camera_models": len(t.cameras),
        "makes": dict(t.makes.most_common()),
        "models": dict(t.models.most_common()),
        "tag_counts": dict(t.tag_counts.most_common()),
        "tag_coverage": {tag: round(c / n, 6) for tag, c in t.tag_counts.most_common()} if n else {},
        "head_coverage": {h.tag: round(t.head_counts[h.tag] / n, 6) if n else 0.0
                          for h in schema.heads},
        "warnings": dict(t.warn_counts.most_common()),
        "warning_examples": t.warn_examples,
        "skipped_files": t.skipped_files(),
    }


def write_outputs(root: Path, out: Path, entries: Iterable[dict[str, Any]], schema: Schema,
                  crop_size: int | None, files: int, parsed: int,
                  ignored: dict[str, int] | None = None) -> Tally:
    """Write the index folder and ``summary.json`` from the entries (sorted by path)."""
    spool_path = out / f".skipped.{os.getpid()}.tmp"
    try:
        with open(spool_path, "w", encoding="utf-8") as spool:
            t = Tally(spool)
            write_index(out, t.rows(entries, schema, crop_size), vocab=schema.to_vocab(),
                        root=root, crop_size=crop_size,
                        summary=lambda n: summary(root, files, parsed, crop_size, schema, t,
                                                  ignored))
    finally:
        spool_path.unlink(missing_ok=True)
    return t
