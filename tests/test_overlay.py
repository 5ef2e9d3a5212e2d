"""Overlays drawn with Pillow: warm where flagged, cool where not, for either score direction;
the legend's scale runs end to end with the threshold marked; both files written."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sdaie.data.patchgrid import PatchGrid
from sdaie.heatmaps import PatchMap, load_patch_map
from sdaie.overlay import (
    FAKE_END,
    LEGEND_H,
    REAL_END,
    colours,
    figure,
    render_overlay,
    score_range,
    write_heatmap,
)

GRID = PatchGrid(64, 32, 0, 0, 2, 4, 16, 16, 8)


def _bc() -> PatchMap:
    s = np.array([[0.1, 0.2, 0.95, 0.9], [0.0, 0.3, 0.6, 0.2]])
    return PatchMap(s, GRID, "bc", "alone", 3, 0.5, True)


def _oc() -> PatchMap:
    s = np.array([[40.0, 35.0, -20.0, -30.0], [50.0, 30.0, 5.0, 45.0]])
    return PatchMap(s, GRID, "oc", "window", 3, 10.0, False)


@pytest.mark.parametrize("make", [_bc, _oc])
def test_flagged_patches_are_warm_and_the_others_cool(make):
    pm = make()
    lo, hi = score_range(pm)
    rgb = colours(pm.scores, pm, lo, hi)
    warm = rgb[..., 0] > rgb[..., 2]
    assert np.array_equal(warm, pm.flagged())


def test_scale_ends_and_direction():
    bc = _bc()
    assert np.allclose(colours(np.array([1.0, 0.0]), bc, 0, 1), [FAKE_END, REAL_END])
    oc = _oc()
    lo, hi = score_range(oc)
    assert lo < -20 and hi > 45 and lo < oc.threshold < hi
    assert np.allclose(colours(np.array([lo, hi]), oc, lo, hi), [FAKE_END, REAL_END])


def test_overlay_size_tint_and_threshold_mark():
    img = Image.new("RGB", (64, 32), (128, 128, 128))
    out = render_overlay(img, _bc(), regions=[])
    assert out.size == (240, 32 + LEGEND_H)  # legend strip at least 240 px wide
    px = np.asarray(out).astype(int)
    assert px[8, 40, 0] > px[8, 40, 2] and px[8, 8, 2] > px[8, 8, 0]  # flagged vs not
    bar_row = px[32 + 23]  # inside the colour bar
    black = np.nonzero((bar_row < 40).all(axis=1))[0]
    assert abs(black.mean() - (6 + 0.5 * (240 - 12))) <= 2  # the threshold mark at 0.5


def test_large_images_are_scaled_down():
    img = Image.new("RGB", (2000, 1000))
    grid = PatchGrid(2000, 1000, 4, 8, 15, 31, 64, 64, 465)
    pm = PatchMap(np.zeros((15, 31)), grid, "bc", "alone", 3, 0.5, True)
    assert render_overlay(img, pm, max_side=500).size == (500, 250 + LEGEND_H)


def test_write_heatmap_writes_png_and_npz(tmp_path):
    pm = _bc()
    write_heatmap(Image.new("RGB", (64, 32)), pm, pm.regions(), tmp_path / "a" / "x.png",
                  tmp_path / "a" / "x.npz", image="x.jpg")
    assert Image.open(tmp_path / "a" / "x.png").format == "PNG"
    back, meta = load_patch_map(tmp_path / "a" / "x.npz")
    assert np.array_equal(back.scores, pm.scores) and meta["image"] == "x.jpg"
    assert meta["regions"][0]["box"] == [32, 0, 64, 32]


def test_figure_grid():
    cells = [[Image.new("RGB", (64, 32)), Image.new("RGB", (128, 128))]] * 2
    out = figure(cells, ["a", "b"], ["left", "right"], cell=100)
    assert out.width == 2 * 108 + 8 and out.height == 24 + 2 * (100 + 20)
