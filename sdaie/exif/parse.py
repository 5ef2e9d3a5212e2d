"""One file's header as an index entry: canonical tags, container format, size, and whether it
can be used (the first reason it cannot)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sdaie.data.imageio import ImageLoadError
from sdaie.exif.container import image_size, truncation
from sdaie.exif.reader import READER_VERSION, read_exif


def parse_file(path: Path) -> dict[str, Any]:
    """Everything the index needs from one file's header, as a JSON-ready cache entry."""
    entry: dict[str, Any] = {"reader": READER_VERSION, "format": None, "size": None,
                             "tags": {}, "warnings": [], "error": None}
    result = read_exif(path)
    entry.update(format=result.format, tags=result.tags, warnings=result.warnings)
    if result.error:
        entry["error"] = result.error
        return entry
    try:  # completeness first: the loader's check, so every command gives the same reason
        entry["error"] = truncation(path)
        if entry["error"] is None:
            entry["size"] = list(image_size(path))
    except ImageLoadError as exc:
        entry["error"] = str(exc)
    except OSError as exc:
        entry["error"] = f"cannot read: {exc.strerror or exc}"
    return entry


def usable_reason(entry: dict[str, Any], labels: Sequence[Any]) -> str | None:
    """Why a parsed file cannot be used (None if it can): an error, or no schema label at all."""
    if entry.get("error"):
        return entry["error"]
    if all(label is None for label in labels):
        if not entry.get("tags"):
            return "no EXIF tags"
        return "no usable schema tag (has: " + ", ".join(sorted(entry["tags"])) + ")"
    return None
