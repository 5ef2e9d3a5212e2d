"""An index folder read back: records, vocabularies and memory-mapped crops for training."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sdaie.exif.crops import shard_path
from sdaie.exif.schema import Schema

if TYPE_CHECKING:  # annotations only: reading an index must not import torch
    import torch


@dataclass
class PhotoIndex:
    """An index folder in memory; crops are memory-mapped shard rows."""

    directory: Path
    root: Path
    records: list[dict[str, Any]]
    vocab: dict[str, Any]
    crop_size: int | None
    _shards: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.records)

    def __getstate__(self) -> dict[str, Any]:
        # DataLoader workers receive a pickled copy: send no open memmaps (they would be
        # pickled by value); each worker maps the shards it reads itself.
        return {**self.__dict__, "_shards": {}}

    def schema(self) -> Schema:
        """The encoder the labels were made with (for decoding predictions)."""
        return Schema.from_vocab(self.vocab)

    def labels_array(self) -> np.ndarray:
        """``float32 [N, H]``: class heads hold the class index, NaN = missing/masked."""
        heads = len(self.vocab["heads"])
        arr = np.full((len(self.records), heads), np.nan, dtype=np.float32)
        for i, record in enumerate(self.records):
            for j, label in enumerate(record["labels"]):
                if label is not None:
                    arr[i, j] = label
        return arr

    def labels_tensor(self) -> torch.Tensor:
        """:meth:`labels_array` as a ``torch.FloatTensor[N, H]``."""
        import torch  # here: `sdaie index` and the EXIF tools import this module without torch

        return torch.from_numpy(self.labels_array())

    def image_path(self, i: int) -> Path:
        return self.root / self.records[i]["path"]

    def crop(self, i: int) -> np.ndarray | None:
        """The stored centre crop of photo ``i`` (HxWx3 uint8, read-only memmap) or None."""
        ref = self.records[i].get("crop")
        if not ref:
            return None
        shard = ref["shard"]
        if shard not in self._shards:
            self._shards[shard] = np.load(shard_path(self.directory, shard), mmap_mode="r",
                                          allow_pickle=False)
        return self._shards[shard][ref["row"]]


def load_index(directory: str | Path, root: str | Path | None = None) -> PhotoIndex:
    """Read an index folder written by ``sdaie index``.

    ``root`` overrides the photo folder recorded in ``summary.json`` (for a moved collection).
    """
    directory = Path(directory)
    with open(directory / "summary.json", encoding="utf-8") as fh:
        summary = json.load(fh)
    with open(directory / "vocab.json", encoding="utf-8") as fh:
        vocab = json.load(fh)
    records = []
    with open(directory / "index.jsonl", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                records.append(json.loads(line))
    return PhotoIndex(directory=directory, root=Path(root or summary["root"]), records=records,
                      vocab=vocab, crop_size=summary.get("crop_size"))
