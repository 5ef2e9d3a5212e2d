"""Content hashes: the identity of a checkpoint (feature caches, GMM files, tables)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_hash(path: str | Path, length: int = 16) -> str:
    """SHA-256 of a file's bytes (first ``length`` hex digits)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:length]
