"""The authors' backbone training tensors (``pkl_256/<name>.pkl``), read and cropped as their code does.

Each file is a torch-saved uint8 tensor ``3 x H x W``. Their loader divides it by 255, normalises it
with the CLIP mean and std, then cuts 16 crops with torchvision's ``RandomCrop(64)``: per crop a
top position, then a left position, each one ``torch.randint`` over the valid range; a tensor of
exactly 64 x 64 is returned whole without drawing; a smaller one raises (their loader then draws
another photo at random; here the photo is skipped and reported, as an unreadable photo is).
Cropping and normalising commute element by element, so cropping first gives the same floats.

Differences that remain (docs/reproducing.md): their crops come from the process-global torch RNG
of each DataLoader worker, ours from a generator seeded per item (reproducible, resumable); their
files are unpickled in full, ours with ``weights_only=True`` (a file holding anything but tensors
is refused instead of executed).

An index folder built by ``sdaie import-authors`` (:mod:`sdaie.exif.authors`) says so in its
``summary.json``; the training stage then passes this reader to its pair dataset.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from sdaie.data.imageio import ImageLoadError
from sdaie.pixels import normalize


class AuthorsTensors:
    """Reads one training tensor and draws its patches; picklable (DataLoader workers)."""

    def __init__(self, patch_size: int = 64):
        self.patch_size = patch_size

    def load(self, path: str | Path) -> torch.Tensor:
        """The uint8 ``3 x H x W`` tensor of ``path``; :class:`ImageLoadError` if unusable."""
        try:
            t = torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as exc:
            raise ImageLoadError(f"cannot read the tensor with weights_only=True: {exc}", path) from exc
        if not (isinstance(t, torch.Tensor) and t.dtype == torch.uint8 and t.dim() == 3
                and t.shape[0] == 3):
            what = (f"{t.dtype} {list(t.shape)}" if isinstance(t, torch.Tensor)
                    else type(t).__name__)
            raise ImageLoadError(f"expected a uint8 3 x H x W tensor, found {what}", path)
        if min(t.shape[1:]) < self.patch_size:
            raise ImageLoadError(f"tensor of {t.shape[1]} x {t.shape[2]} pixels is smaller than "
                                 f"one {self.patch_size} x {self.patch_size} patch", path)
        return t

    def crops(self, t: torch.Tensor, n: int, size: int,
              generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` normalised crops ``[n, 3, size, size]`` drawn as ``RandomCrop(size)`` draws them."""
        _, h, w = t.shape
        out = []
        for _ in range(n):
            top = left = 0
            if (h, w) != (size, size):
                top = int(torch.randint(0, h - size + 1, (1,), generator=generator).item())
                left = int(torch.randint(0, w - size + 1, (1,), generator=generator).item())
            out.append(t[:, top:top + size, left:left + size])
        return normalize(torch.stack(out))
