"""Pretext-task data: pairs of different photos, each cut into random patches (spec section 1).

The sampler is a pure function of the training step. For global step ``s`` the job consumes
positions ``s*W*B .. (s+1)*W*B - 1`` of an endless stream made of seeded per-epoch permutations of
the training photos; rank ``r`` of ``W`` takes its own ``B`` consecutive positions (disjoint shards,
like ``DistributedSampler``). The partner photo of position ``p`` is drawn uniformly among the
other photos, and the patch positions from a seed, both derived from (run seed, ``p``). So the
sampler's whole state is the step, resuming from a checkpoint is exact, and the data of a step
does not depend on the number of DataLoader workers (nor, for a fixed ``W*B``, on ``W``).

Unreadable photos never stop training: the item falls forward to the next usable photo of the
split (deterministically) and reports the bad file, which the training loop writes to
``skipped.jsonl``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from sdaie.config import ConfigError, HeadConfig
from sdaie.data.imageio import ImageLoadError
from sdaie.data.sources import make_source
from sdaie.seeding import Stream, derive_seed


class PhotoIndexLike(Protocol):
    """What this module needs from :class:`sdaie.exif.store.PhotoIndex`."""

    crop_size: int | None

    def __len__(self) -> int: ...
    def labels_tensor(self) -> torch.Tensor: ...
    def image_path(self, i: int) -> Any: ...
    def crop(self, i: int) -> np.ndarray | None: ...


def split_by_photo(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train ids, val ids): a seeded random split of photo indices (no photo in both)."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    perm = np.random.default_rng(derive_seed(seed, Stream.PHOTO_SPLIT)).permutation(n)
    n_val = int(round(n * val_fraction))
    if val_fraction > 0 and n_val < 2:
        n_val = min(2, n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def check_index_schema(vocab: dict, heads: Sequence[HeadConfig]) -> None:
    """The index's label columns must be the heads the model trains, in the same order: labels
    of another schema would train each head on some other tag without any error."""
    index_heads = vocab.get("heads")
    if index_heads is None:
        return
    want = [(h.tag, h.kind) for h in heads]
    have = [(h.get("tag"), h.get("kind")) for h in index_heads]
    if want != have:
        raise ConfigError(f"the index's heads {have} differ from schema.heads {want}; rebuild the "
                          "index with the same schema config")
    for h, v in zip(heads, index_heads):
        if h.kind == "class" and v.get("classes") not in (None, h.classes):
            raise ConfigError(f"head {h.tag}: index has {v.get('classes')} classes, schema {h.classes}")


def partner(q: int, n: int, rng: np.random.Generator) -> int:
    """Uniform position in ``0..n-1`` other than ``q``."""
    r = int(rng.integers(n - 1))
    return r + 1 if r >= q else r


class PairBatchSampler(Sampler[list[tuple[int, int, int]]]):
    """Per-rank batches of ``(first position, second position, patch seed)``; a pure function of
    the step, so a resumed run passes its checkpoint's step as ``start_step``."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 start_step: int = 0, total_steps: int | None = None):
        if n < 2:
            raise ValueError(f"pairs need at least 2 photos, got {n}")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.step = start_step
        self.total_steps = total_steps
        self._perm_epoch = -1
        self._perm = np.empty(0, dtype=np.int64)

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._perm_epoch:
            gen = torch.Generator().manual_seed(derive_seed(self.seed, Stream.PAIR_ORDER, epoch))
            self._perm = torch.randperm(self.n, generator=gen).numpy()
            self._perm_epoch = epoch
        return self._perm

    def batch(self, step: int) -> list[tuple[int, int, int]]:
        """This rank's items for global step ``step``."""
        start = (step * self.world_size + self.rank) * self.batch_size
        items = []
        for p in range(start, start + self.batch_size):
            q = int(self._permutation(p // self.n)[p % self.n])
            rng = np.random.default_rng(derive_seed(self.seed, Stream.PAIR_PARTNER, p))
            items.append((q, partner(q, self.n, rng), derive_seed(self.seed, Stream.PAIR_PATCHES, p)))
        return items

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        while self.total_steps is None or self.step < self.total_steps:
            items = self.batch(self.step)
            self.step += 1
            yield items

    def __len__(self) -> int:
        if self.total_steps is None:
            raise TypeError("endless sampler has no length")
        return max(0, self.total_steps - self.step)


def photos_with_all_tags(labels: np.ndarray) -> np.ndarray:
    """Indices of the photos whose label row has no missing value (``data.require_all_tags``)."""
    return np.flatnonzero(~np.isnan(labels).any(axis=1))


class PairDataset(Dataset):
    """``(patches1, patches2, labels1, labels2, skipped)`` for an item ``(q1, q2, seed)``.

    Positions index ``ids`` (the photos of one split). The pixels come from the data source
    ``source`` (``data.source``: the whole photo, the index's crops or the authors' tensors)
    decoded by ``decoder`` (``data.decoder``), and the source cuts the patches; see
    :mod:`sdaie.data.sources`.
    """

    def __init__(self, index: PhotoIndexLike, ids: Sequence[int], n_patches: int = 16,
                 patch_size: int = 64, source: str = "photo", decoder: str = "pil"):
        self.index = index
        self.ids = np.asarray(ids, dtype=np.int64)
        self.n_patches, self.patch_size = n_patches, patch_size
        self.source = make_source(source, index, decoder, patch_size)
        self._bad: set[int] = set()  # unreadable in this process: reported once, not re-decoded

    @property
    def labels(self) -> torch.Tensor:
        """``[N, heads]`` labels of the whole index: a view of its memory-mapped file, never a
        copy held here (a dataset pickled for a spawned worker carries no labels)."""
        return self.index.labels_tensor()

    def __len__(self) -> int:
        return len(self.ids)

    def draw(self, pixels: Any, generator: torch.Generator) -> torch.Tensor:
        """The ``n_patches`` random patches of one photo's pixels (from :meth:`pixels`)."""
        return self.source.draw(pixels, self.n_patches, self.patch_size, generator)

    def pixels(self, i: int) -> Any:
        """Photo ``i``'s pixels from the data source (ImageLoadError if unusable)."""
        return self.source.pixels(i)

    def _load(self, q: int, avoid: int, skipped: list[dict]) -> tuple[int, Any]:
        """First usable photo from position ``q`` onwards (wrapping), other than ``avoid``."""
        for attempt in range(len(self.ids)):  # past any run of bad photos, however long
            i = int(self.ids[(q + attempt) % len(self.ids)])
            if i == avoid or i in self._bad:
                continue
            try:
                return i, self.pixels(i)
            except ImageLoadError as exc:
                self._bad.add(i)
                skipped.append({"path": str(self.index.image_path(i)), "reason": str(exc)})
        raise RuntimeError(f"fewer than 2 of the {len(self.ids)} photos of this split are readable")

    def __getitem__(self, item: tuple[int, int, int]) -> tuple[Any, ...]:
        q1, q2, seed = item
        skipped: list[dict] = []
        i1, px1 = self._load(q1, -1, skipped)
        i2, px2 = self._load(q2, i1, skipped)
        gen = torch.Generator().manual_seed(seed)
        p1, p2 = self.draw(px1, gen), self.draw(px2, gen)
        return p1, p2, self.labels[i1], self.labels[i2], skipped

