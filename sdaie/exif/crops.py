"""The crop store: native-resolution centre crops in ``crops/shard_XXXXX.npy`` files.

Training reads a photo's crop instead of decoding the whole JPEG. A shard is assembled in memory
and written atomically once full, so a killed run leaves whole shards only; shards no journal
entry references any more are deleted at the end of a run.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from sdaie.atomic import atomic_write_bytes
from sdaie.data.imageio import load_image

CROP_DIR = "crops"
SHARD_MAX_ROWS = 1024
SHARD_MAX_BYTES = 256 * 2**20  # a shard is assembled in memory before its atomic write


def shard_path(out: Path, shard: int) -> Path:
    return out / CROP_DIR / f"shard_{shard:05d}.npy"


def _shard_number(path: Path) -> int | None:
    stem = path.stem.split("_")[1]
    return int(stem) if stem.isdigit() else None


def centre_crop(path: Path, size: int) -> np.ndarray | None:
    """The central ``size``x``size`` RGB pixels at native resolution (None if the image is smaller).

    Decoded without EXIF orientation (sdaie.data.imageio): the sensor grid stays where it was.
    """
    img = load_image(path)
    w, h = img.size
    if w < size or h < size:
        return None
    left, top = (w - size) // 2, (h - size) // 2
    return np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.uint8)


class ShardWriter:
    """Collects crops into shard files, each written atomically when full; numbering continues
    after the shards already in the folder."""

    def __init__(self, out: Path, crop_size: int):
        self.dir = out / CROP_DIR
        self.dir.mkdir(parents=True, exist_ok=True)
        existing = [_shard_number(p) for p in self.dir.glob("shard_*.npy")]
        self.shard = max((n for n in existing if n is not None), default=-1) + 1
        self.rows = max(1, min(SHARD_MAX_ROWS, SHARD_MAX_BYTES // (crop_size * crop_size * 3)))
        self.buffer = np.empty((self.rows, crop_size, crop_size, 3), dtype=np.uint8)
        self.n = 0

    def add(self, crop: np.ndarray) -> dict[str, int]:
        """Store one crop; returns its ``{"shard", "row"}`` (valid once :meth:`flush` ran)."""
        self.buffer[self.n] = crop
        ref = {"shard": self.shard, "row": self.n}
        self.n += 1
        return ref

    @property
    def full(self) -> bool:
        return self.n == self.rows

    def flush(self) -> None:
        if self.n == 0:
            return
        buf = io.BytesIO()
        np.save(buf, self.buffer[: self.n], allow_pickle=False)
        atomic_write_bytes(shard_path(self.dir.parent, self.shard), buf.getbuffer())
        self.shard += 1
        self.n = 0


def collect_garbage(out: Path, used: set[int]) -> None:
    """Delete crop shards whose number is not in ``used`` (changed or removed photos)."""
    for path in (out / CROP_DIR).glob("shard_*.npy") if (out / CROP_DIR).is_dir() else []:
        number = _shard_number(path)
        if number is not None and number not in used:
            path.unlink()
