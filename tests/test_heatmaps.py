"""Patch maps: flagged patches by the detector's rule, connected regions, pixel means, files."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sdaie.data.patchgrid import PatchGrid
from sdaie.heatmaps import PatchMap, connected_components, load_patch_map, pixel_mean


def _grid(rows=3, cols=4, stride=16, size=16, top=2, left=3, w=80, h=60) -> PatchGrid:
    return PatchGrid(w, h, top, left, rows, cols, size, stride, rows * cols)


def test_flagged_follows_the_detector_rule():
    s = np.array([[0.2, 0.7], [np.nan, 0.5]])
    bc = PatchMap(s, _grid(2, 2), "bc", "alone", 3, 0.5, True)
    assert bc.flagged().tolist() == [[False, True], [False, False]]
    oc = PatchMap(s, _grid(2, 2), "oc", "window", 3, 0.5, False)  # low log p = generated; NaN too
    assert oc.flagged().tolist() == [[True, False], [True, True]]
    assert oc.share_flagged() == 0.75


def test_connected_components_use_eight_neighbours():
    m = np.array([[1, 0, 0, 1],
                  [0, 1, 0, 0],
                  [0, 0, 0, 1]], bool)
    assert connected_components(m) == [[(0, 0), (1, 1)], [(0, 3)], [(2, 3)]]


def test_regions_are_boxes_of_connected_patches():
    s = np.zeros((3, 4))
    s[0, 2:] = 0.9  # top right pair
    s[2, 0] = 0.8
    pm = PatchMap(s, _grid(w=67), "bc", "alone", 3, 0.5, True)  # the last column ends at x = 67
    regions = pm.regions()
    assert [r.box for r in regions] == [(35, 2, 67, 18), (3, 34, 19, 50)]
    assert [r.patches for r in regions] == [2, 1]
    assert regions[0].peak == pytest.approx(0.9)
    assert pm.regions(min_patches=2) == regions[:1]
    cut = PatchMap(s, _grid(w=60), "bc", "alone", 3, 0.5, True)  # last column 9 of 16 px inside
    assert [(r.box, r.patches) for r in cut.regions()] == [((35, 2, 51, 18), 1), ((3, 34, 19, 50), 1)]


def test_pixel_mean_against_a_loop_over_patches():
    rng = np.random.default_rng(0)
    grid = PatchGrid(70, 50, -2, 5, 4, 6, 16, 8, 6)  # step 2, box leaves the image at the top
    scores = rng.normal(size=(4, 6))
    total, count = np.zeros((50, 70)), np.zeros((50, 70))
    for k, (x0, y0, x1, y1) in enumerate(grid.boxes()):
        ys, xs = slice(max(y0, 0), min(y1, 50)), slice(max(x0, 0), min(x1, 70))
        total[ys, xs] += scores.reshape(-1)[k]
        count[ys, xs] += 1
    ref = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    assert np.allclose(pixel_mean(scores, grid), ref, equal_nan=True)


def test_resized_image_map_covers_it_all():
    grid = PatchGrid(20, 30, 0, 0, 1, 1, 32, 32, 1, resized=True)
    out = pixel_mean(np.array([[0.3]]), grid)
    assert out.shape == (30, 20) and np.all(out == 0.3)


def test_save_and_load_round_trip(tmp_path):
    s = np.array([[0.1, math.nan], [0.9, 0.4]])
    pm = PatchMap(s, _grid(2, 2, stride=8), "bc", "window", 5, 0.6, True)
    path = pm.save(tmp_path / "m.npz", image="a.jpg")
    back, meta = load_patch_map(path)
    assert np.array_equal(back.scores, s, equal_nan=True) and back.grid == pm.grid
    assert (back.detector, back.context, back.window, back.threshold) == ("bc", "window", 5, 0.6)
    assert meta == {"image": "a.jpg"}
    with np.load(path) as z:
        assert int(z["stride"]) == 8 and z["boxes"].tolist() == pm.grid.boxes().tolist()
        assert str(z["detector"]) == "bc"


def test_padding_cells_are_never_flagged_and_the_mask_is_saved(tmp_path):
    grid = _grid(4, 2, top=-20, left=0, w=32, h=34)  # rows at y = -20, -4, 12, 28 of 16 px
    assert grid.valid_cells()[:, 0].tolist() == [False, False, True, False]  # 0, 12, 16, 6 px in
    oc = PatchMap(np.full((4, 2), np.nan), grid, "oc", "alone", 3, 0.5, False)  # NaN: flagged
    assert oc.flagged()[:, 0].tolist() == [False, False, True, False]
    assert oc.share_flagged() == 1.0
    assert [(r.box, r.patches) for r in oc.regions()] == [((0, 12, 32, 28), 2)]
    back, _ = load_patch_map(oc.save(tmp_path / "m.npz"))
    assert np.array_equal(back.valid, oc.valid)
    with np.load(tmp_path / "m.npz") as z:  # a file written before the mask: all valid
        np.savez(tmp_path / "old.npz", **{k: z[k] for k in z.files if k != "valid"})
    assert load_patch_map(tmp_path / "old.npz")[0].valid.all()
