"""Labelled real/fake images for the binary detector: ``0_real``/``1_fake`` or GenImage ``nature``/``ai``.

Each item is the spec's training input (section 4): the augmented image cut into ``n`` random
64x64 patches, with its label (1 = generated). Every random draw of an item comes from a generator
seeded by (run seed, epoch, index), so an item is identical whichever worker or rank loads it and
a resumed run sees the same data as an uninterrupted one.

Labels come from exact folder names (see :mod:`sdaie.data.testsets`). The official loader labels
anything not under ``0_real`` as fake; here a file under neither kind of folder is left out and
reported, which is the same on the standard layouts and safer on others.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from sdaie.data.imageio import ImageLoadError, load_image
from sdaie.data.patches import random_patches
from sdaie.data.testsets import LabelledFiles, list_labelled
from sdaie.data.transforms import AugmentConfig, augment, ensure_min_side
from sdaie.labels import FAKE, REAL
from sdaie.seeding import derive_seed


class PathTable(Sequence):
    """Paths as one bytes buffer plus int64 offsets (the photo index's layout): a worker forked
    from the loader touches no per-file Python object, so 720k paths are not copied into every
    worker by reference counting (copy-on-read). Items come back as ``Path``."""

    def __init__(self, paths: Sequence[Path]):
        raw = [os.fsencode(p) for p in paths]  # fsencode: any file name, UTF-8 or not
        self.offsets = np.zeros(len(raw) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in raw], out=self.offsets[1:])
        self.buffer = np.frombuffer(b"".join(raw), dtype=np.uint8)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> Path:  # type: ignore[override]
        if not -len(self) <= i < len(self):
            raise IndexError(f"path {i} of {len(self)}")
        i %= len(self)
        start, end = int(self.offsets[i]), int(self.offsets[i + 1])
        return Path(os.fsdecode(self.buffer[start:end].tobytes()))

    def __iter__(self) -> Iterator[Path]:
        return (self[i] for i in range(len(self)))


@dataclass
class PackedFiles:
    """:class:`~sdaie.data.testsets.LabelledFiles` held compactly for training: paths in a
    :class:`PathTable`, labels an ``int8`` array; what was left out stays as listed (few)."""

    paths: PathTable
    labels: np.ndarray
    unlabelled: list[Path] = field(default_factory=list)
    ambiguous: list[Path] = field(default_factory=list)
    ignored: Counter = field(default_factory=Counter)

    @classmethod
    def pack(cls, files: LabelledFiles) -> PackedFiles:
        return cls(PathTable(files.paths), np.asarray(files.labels, dtype=np.int8),
                   files.unlabelled, files.ambiguous, files.ignored)

    @property
    def n_real(self) -> int:
        return int((self.labels == REAL).sum())

    @property
    def n_fake(self) -> int:
        return int((self.labels == FAKE).sum())


class LabelledPatches(Dataset):
    """``(patches [n,3,P,P], label, skipped)`` per image of a labelled folder.

    ``skipped`` lists ``{"path", "reason"}`` of unreadable files met while loading this item
    (the item then falls forward to the next file, deterministically); collate with
    :func:`sdaie.data.loading.collate_skips` and report them.
    """

    def __init__(self, root: str | Path, n_patches: int = 16, patch_size: int = 64,
                 augment_cfg: AugmentConfig | None = None, seed: int = 0,
                 genimage_split: str = "train", files: LabelledFiles | None = None):
        self.root = Path(root)
        listed = files if files is not None else list_labelled(self.root, genimage_split)
        self.files = PackedFiles.pack(listed)  # the list of Paths is not kept
        if not len(self.files.paths):
            raise FileNotFoundError(
                f"no labelled images under {self.root} (expected 0_real/1_fake or nature/ai folders)")
        self.n_patches = n_patches
        self.patch_size = patch_size
        self.augment_cfg = augment_cfg
        self.seed = seed
        self.epoch = 0
        self._bad: set[int] = set()  # unreadable in this process: reported once, not re-decoded

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.files.paths)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, int, list[dict[str, str]]]:
        """Item ``index`` of the epoch set by :meth:`set_epoch`, or ``(epoch, index)``."""
        epoch, index = item if isinstance(item, tuple) else (self.epoch, item)
        skipped: list[dict[str, str]] = []
        for attempt in range(len(self)):  # past any run of bad files, however long
            i = (index + attempt) % len(self)
            if i in self._bad:
                continue
            path = self.files.paths[i]
            try:
                img = load_image(path)
            except ImageLoadError as exc:
                self._bad.add(i)
                skipped.append({"path": str(path), "reason": str(exc)})
                continue
            seed = derive_seed(self.seed, epoch, index)
            img = ensure_min_side(img, self.patch_size)
            if self.augment_cfg is not None:
                img = augment(img, self.augment_cfg, random.Random(seed))
            gen = torch.Generator().manual_seed(derive_seed(seed, 1))
            patches = random_patches(img, n=self.n_patches, size=self.patch_size, generator=gen)
            return patches, int(self.files.labels[i]), skipped
        raise RuntimeError(f"none of the {len(self)} labelled files under {self.root} is a readable image")

