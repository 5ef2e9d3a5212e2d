"""The patches of a heatmap: the evaluation grid, optionally sampled more finely (a stride).

A heatmap scores the very patches detection scores (spec section 3: the centred crop to
multiples of ``S``, tiled in raster order, the first ``cap`` kept) and, with a ``stride`` below
``S``, the overlapping patches between them. The lattice starts at the crop's corner and steps
``stride`` pixels, so every evaluation-grid patch is one of its cells (``stride`` must divide
``S``): one pass over the lattice gives both the heatmap and the image's score.

The cap is applied as detection applies it (first ``cap`` grid patches in raster order); the
lattice covers the grid rows those patches reach, so a larger image's map covers a band at its top.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from sdaie.data.patches import crop_padded, grid_crop_box


@dataclass(frozen=True)
class PatchGrid:
    """A ``rows x cols`` lattice of ``size``-pixel patches, ``stride`` apart, on one image.

    Coordinates are those of the image as given (``width x height``); a box may leave it where
    the "official" layout pads. An image below ``size`` on a side was resized to one patch, whose
    box is then the whole image (``resized``).
    """

    width: int
    height: int
    top: int
    left: int
    rows: int
    cols: int
    size: int
    stride: int
    n_grid: int  # evaluation-grid patches kept (the cap applied), the ones detection scores
    resized: bool = False

    @property
    def step(self) -> int:
        """Lattice cells between two neighbouring evaluation-grid patches."""
        return self.size // self.stride

    def boxes(self) -> np.ndarray:
        """``[rows * cols, 4]`` int64 (x0, y0, x1, y1) per cell, raster order."""
        if self.resized:
            return np.array([[0, 0, self.width, self.height]], np.int64)
        ys = self.top + self.stride * np.arange(self.rows)
        xs = self.left + self.stride * np.arange(self.cols)
        y0, x0 = np.meshgrid(ys, xs, indexing="ij")
        return np.stack([x0, y0, x0 + self.size, y0 + self.size], -1).reshape(-1, 4).astype(np.int64)

    def valid_cells(self) -> np.ndarray:
        """``[rows, cols]`` bool: cells whose patch lies wholly in the image. A patch that is
        partly the "official" layout's zero padding carries the padding's statistics, not the
        camera's, so it is never read as image content."""
        if self.resized:
            return np.ones((1, 1), bool)
        b = self.boxes()
        w = np.clip(b[:, 2], 0, self.width) - np.clip(b[:, 0], 0, self.width)
        h = np.clip(b[:, 3], 0, self.height) - np.clip(b[:, 1], 0, self.height)
        return (w * h == self.size * self.size).reshape(self.rows, self.cols)

    def grid_cells(self) -> np.ndarray:
        """Raster indices (in this lattice) of the evaluation-grid patches detection scores,
        in detection's order."""
        r, c = np.meshgrid(np.arange(0, self.rows, self.step), np.arange(0, self.cols, self.step),
                           indexing="ij")
        return (r * self.cols + c).reshape(-1)[:self.n_grid]


def check_stride(size: int, stride: int) -> None:
    """A stride must divide the patch size so that the evaluation grid lies on the lattice."""
    if stride < 1 or size % stride:
        raise ValueError(f"stride must divide the patch size {size} (e.g. {size} or {size // 2}), "
                         f"got {stride}")


def lattice_patches(img: Image.Image, size: int, stride: int, cap: int,
                    layout: str = "spec") -> tuple[torch.Tensor, PatchGrid]:
    """uint8 patches ``[rows * cols, 3, size, size]`` of the lattice (raster order) and its grid.

    With ``stride == size`` the patches are exactly ``grid_patches(img, size, cap, layout,
    normalized=False)``, plus the rest of the last grid row when the cap cuts it.
    """
    check_stride(size, stride)
    if cap < 1:
        raise ValueError(f"cap must be >= 1, got {cap}")
    if img.mode != "RGB":
        raise ValueError(f"expected an RGB image, got mode {img.mode}")
    w, h = img.size
    if min(w, h) < size:
        arr = np.array(img.resize((size, size), Image.BILINEAR))
        grid = PatchGrid(w, h, 0, 0, 1, 1, size, stride, 1, resized=True)
        return torch.from_numpy(arr).permute(2, 0, 1)[None], grid
    top, left, ch, cw = grid_crop_box(w, h, size, layout)
    gcols = cw // size
    n_grid = min((ch // size) * gcols, cap)
    grid_rows = -(-n_grid // gcols)  # grid rows the kept patches reach
    crop = crop_padded(np.asarray(img), top, left, ch, cw)[:grid_rows * size]  # as grid_patches crops
    step = size // stride
    rows, cols = (grid_rows - 1) * step + 1, (gcols - 1) * step + 1
    windows = np.lib.stride_tricks.sliding_window_view(crop, (size, size), axis=(0, 1))
    tiles = windows[::stride, ::stride][:rows, :cols]  # [rows, cols, 3, size, size]
    flat = np.ascontiguousarray(tiles.reshape(rows * cols, 3, size, size))
    patches = torch.from_numpy(flat if flat.flags.writeable else flat.copy())
    return patches, PatchGrid(w, h, top, left, rows, cols, size, stride, n_grid)

