"""The heatmap lattice: its grid cells are exactly the evaluation grid's patches, in detection's
order and with detection's cap; every cell holds the pixels of its box."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from sdaie.data.patches import grid_patches
from sdaie.data.patchgrid import check_stride, lattice_patches


def _img(w: int, h: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


@pytest.mark.parametrize("w,h", [(200, 150), (96, 96), (50, 90), (333, 250), (100, 95)])
@pytest.mark.parametrize("layout", ["spec", "official"])
@pytest.mark.parametrize("cap", [1000, 3, 7])
@pytest.mark.parametrize("stride", [32, 16, 8])
def test_grid_cells_are_the_evaluation_grid(w, h, layout, cap, stride):
    img = _img(w, h)
    patches, grid = lattice_patches(img, 32, stride, cap, layout)
    assert patches.dtype == torch.uint8 and len(patches) == grid.rows * grid.cols
    assert torch.equal(patches[grid.grid_cells()], grid_patches(img, 32, cap, layout,
                                                                normalized=False))


@pytest.mark.parametrize("layout", ["spec", "official"])
@pytest.mark.parametrize("w,h", [(150, 110), (100, 95)])  # (100, 95): official pads 1 px
def test_every_cell_holds_the_pixels_of_its_box(layout, w, h):
    img = _img(w, h, seed=1)
    arr = np.asarray(img)
    patches, grid = lattice_patches(img, 32, 8, 1000, layout)
    for k, (x0, y0, x1, y1) in enumerate(grid.boxes()):
        ref = np.zeros((32, 32, 3), np.uint8)  # zero padding where the box leaves the image
        ys, xs = slice(max(y0, 0), min(y1, h)), slice(max(x0, 0), min(x1, w))
        ref[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0] = arr[ys, xs]
        assert np.array_equal(patches[k].permute(1, 2, 0).numpy(), ref), k


def test_stride_lattice_spacing_and_extent():
    _, grid = lattice_patches(_img(200, 150), 32, 16, 1000)  # crop 192 x 128 centred
    assert (grid.left, grid.top) == (4, 11) and (grid.rows, grid.cols) == (7, 11)
    boxes = grid.boxes()
    assert boxes[0].tolist() == [4, 11, 36, 43] and boxes[-1].tolist() == [164, 107, 196, 139]
    assert grid.step == 2 and grid.grid_cells()[:3].tolist() == [0, 2, 4]


def test_cap_limits_the_map_to_the_grid_rows_it_reaches():
    _, grid = lattice_patches(_img(200, 150), 32, 16, 8)  # 6 grid columns: 2 rows reached
    assert grid.n_grid == 8 and grid.rows == 3 and len(grid.grid_cells()) == 8


def test_small_image_is_one_patch_covering_it():
    img = _img(20, 40)
    patches, grid = lattice_patches(img, 32, 16, 100)
    assert torch.equal(patches, grid_patches(img, 32, normalized=False))
    assert grid.resized and grid.boxes().tolist() == [[0, 0, 20, 40]]


@pytest.mark.parametrize("stride", [0, 5, 48, -16])
def test_stride_must_divide_the_patch_size(stride):
    with pytest.raises(ValueError, match="stride must divide"):
        check_stride(32, stride)
