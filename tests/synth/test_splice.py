"""Spliced images: the blend re-stated, the mask where the region is at least half, and spliced
sets in a world that leave every other file of the world unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sdaie.synth import GENERATORS, make_world
from sdaie.synth.splice import FRACTIONS, SpliceRegion, draw_region, region_alpha, splice


@pytest.mark.parametrize("shape", ["rectangle", "ellipse"])
def test_alpha_is_one_inside_zero_far_outside(shape):
    region = SpliceRegion(shape, (20, 30, 60, 70), 0.4)
    a = region_alpha(100, region)
    assert a.dtype == np.float32 and 0 <= a.min() and a.max() <= 1
    assert a[50, 40] == pytest.approx(1, abs=1e-6) and a[5, 5] == 0 and a[95, 95] == 0
    area = (a >= 0.5).sum()
    expected = 40 * 40 if shape == "rectangle" else np.pi * 20 * 20
    assert area == pytest.approx(expected, rel=0.05)


def test_splice_is_the_alpha_blend_rounded():
    rng = np.random.default_rng(0)
    photo, gen = (rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(2))
    alpha = rng.random((32, 32)).astype(np.float32)
    out, mask = splice(photo, gen, alpha)
    ref = np.rint(alpha[..., None] * gen + (1 - alpha[..., None]) * photo.astype(np.float64))
    assert np.abs(out.astype(float) - ref).max() <= 1  # float32 arithmetic, then rounding
    assert np.array_equal(mask, alpha >= 0.5)
    with pytest.raises(ValueError, match="shapes differ"):
        splice(photo, gen[:16], alpha)


@pytest.mark.parametrize("fraction", FRACTIONS)
def test_regions_lie_inside_with_the_asked_area(fraction):
    rng = np.random.default_rng(1)
    for _ in range(20):
        r = draw_region(128, fraction, rng)
        x0, y0, x1, y1 = r.box
        assert 0 < x0 < x1 < 128 and 0 < y0 < y1 < 128
        assert (x1 - x0) * (y1 - y0) == pytest.approx((fraction * 128) ** 2, rel=0.06)


def _files(root: Path, folder: str) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted((root / folder).rglob("*")) if p.is_file()}


def test_world_with_spliced_sets(tmp_path):
    tiny = dict(photos=3, size=64, gen_images=1, bc_train=1, bc_val=1, seed=5)
    plain = make_world(tmp_path / "plain", **tiny)
    info = make_world(tmp_path / "w", spliced=3, spliced_size=96, **tiny)
    for folder in ("photos", "testsets", "bc_train", "bc_val"):  # the spliced sets are extra
        assert _files(plain.root, folder) == _files(info.root, folder)
    assert info.counts["spliced"] == 3 and info.counts["spliced_size"] == 96
    records = {r["path"]: r for r in info.records("spliced")}
    assert len(records) == len(GENERATORS) * 6
    for name in GENERATORS:
        for cls in ("0_real", "1_fake"):
            for p in sorted((info.root / "spliced" / "images" / name / cls).glob("*.jpg")):
                assert Image.open(p).size == (96, 96)
        for i in range(3):
            rec = records[f"spliced/images/{name}/1_fake/{i:05d}.jpg"]
            mask = np.asarray(Image.open(info.root / rec["mask"])) > 0
            assert mask.shape == (96, 96) and rec["generator"] == name
            assert rec["region"]["fraction"] == FRACTIONS[i % len(FRACTIONS)]
            assert mask.mean() == pytest.approx(rec["generated_share"])
            x0, y0, x1, y1 = rec["region"]["box"]
            assert mask[(y0 + y1) // 2, (x0 + x1) // 2] and not mask[~_box(96, rec)].any()
    again = make_world(tmp_path / "again", spliced=3, spliced_size=96, **tiny)
    assert _files(again.root, "spliced") == _files(info.root, "spliced")
    assert json.loads((info.root / "world.json").read_text())["counts"]["spliced"] == 3


def _box(size: int, rec: dict) -> np.ndarray:
    x0, y0, x1, y1 = rec["region"]["box"]
    inside = np.zeros((size, size), bool)
    inside[y0:y1, x0:x1] = True
    return inside


def test_bad_spliced_size_is_refused(tmp_path):
    with pytest.raises(ValueError, match="spliced_size"):
        make_world(tmp_path, photos=1, size=64, gen_images=0, spliced=1, spliced_size=63)
