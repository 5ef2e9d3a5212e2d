"""What an index run writes: ``index.jsonl`` (one line per usable photo), ``vocab.json`` and
``summary.json`` (counts, coverage, warnings, skipped files with reasons).

Everything is recomputed from all journal entries every run, in sorted path order, so the same
folder gives the same files whatever was cached.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdaie.atomic import atomic_write_text
from sdaie.exif.journal import has_crop
from sdaie.exif.parse import usable_reason
from sdaie.exif.reader import READER_VERSION, warning_kind
from sdaie.exif.schema import Schema, normalize_text

_WARNING_EXAMPLES = 200


@dataclass
class Tally:
    """The index lines and what the summary counts over the usable photos."""

    lines: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
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

    def add_photo(self, tags: dict[str, Any], labels: list[Any], schema: Schema) -> None:
        self.tag_counts.update(tags.keys())
        self.head_counts.update(h.tag for h, lab in zip(schema.heads, labels) if lab is not None)
        make = normalize_text(tags["Make"]) if "Make" in tags else None
        model = normalize_text(tags["Model"]) if "Model" in tags else None
        if make:
            self.makes[make] += 1
        if model:
            self.models[model] += 1
            self.cameras.add((make or "", model))


def tally(entries: dict[str, dict[str, Any]], schema: Schema, crop_size: int | None) -> Tally:
    """Index lines (usable photos) and skip reasons (the others), in sorted path order."""
    out = Tally()
    for rel in sorted(entries):
        entry = entries[rel]
        out.add_warnings(rel, entry.get("warnings", []))
        tags = entry.get("tags", {})
        labels = schema.encode(tags) if not entry.get("error") else []
        reason = usable_reason(entry, labels)
        if reason:
            out.skipped.append({"path": rel, "reason": reason})
            continue
        crop = None
        if crop_size and has_crop(entry, crop_size) and entry["crop"]["shard"] is not None:
            crop = {"shard": entry["crop"]["shard"], "row": entry["crop"]["row"]}
            out.crops += 1
        out.lines.append(json.dumps({"path": rel, "size": entry["size"], "tags": tags,
                                     "labels": labels, "crop": crop}))
        out.add_photo(tags, labels, schema)
    return out


def summary(root: Path, files: int, parsed: int, crop_size: int | None, schema: Schema,
            t: Tally, ignored: dict[str, int] | None = None) -> dict[str, Any]:
    """The ``summary.json`` document (key order is part of the file format)."""
    n = len(t.lines)
    return {
        "root": str(root),
        "files": files,
        "ignored": dict(ignored or {}),  # files under root that are not images, by kind
        "indexed": n,
        "skipped": len(t.skipped),
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
        "skipped_files": t.skipped,
    }


def write_outputs(root: Path, out: Path, entries: dict[str, dict[str, Any]], schema: Schema,
                  crop_size: int | None, files: int, parsed: int,
                  ignored: dict[str, int] | None = None) -> Tally:
    """Write ``index.jsonl``, ``vocab.json`` and ``summary.json`` atomically; returns the tally."""
    t = tally(entries, schema, crop_size)
    atomic_write_text(out / "index.jsonl", "".join(line + "\n" for line in t.lines))
    atomic_write_text(out / "vocab.json", json.dumps(schema.to_vocab(), indent=1) + "\n")
    document = summary(root, files, parsed, crop_size, schema, t, ignored)
    atomic_write_text(out / "summary.json", json.dumps(document, indent=1) + "\n")
    return t
