"""Tiny synthetic trees for the stage tests: EXIF photos (for an index) and labelled test sets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "tiny"


CAMERAS = [("Canon", "EOS 5D"), ("NIKON CORPORATION", "D750"), ("SONY", "ILCE-7M3")]


def _exif(make: str, model: str, iso: int, fnumber: float, exposure: float, focal: float) -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = make
    exif[0x0110] = model
    sub = exif.get_ifd(0x8769)
    sub[0x8827] = iso
    sub[0x829D] = fnumber
    sub[0x829A] = exposure
    sub[0x920A] = focal
    sub[0x9209] = 16  # Flash: off
    sub[0x9207] = 5  # MeteringMode: pattern
    sub[0xA402] = 0  # ExposureMode: auto
    sub[0xA403] = 0  # WhiteBalance: auto
    return exif


def write_photos(root: Path, n: int, seed: int = 0, size: int = 96) -> Path:
    """``n`` small JPEG 'photos': noise whose strength follows ISO, with consistent EXIF."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        make, model = CAMERAS[i % len(CAMERAS)]
        iso = int(rng.choice([100, 200, 400, 800, 1600, 3200]))
        base = rng.uniform(40, 200, size=3)
        noise = rng.normal(0, 2 + iso / 200, size=(size, size, 3))
        arr = np.clip(base + noise, 0, 255).astype(np.uint8)
        exif = _exif(make, model, iso, float(rng.choice([1.8, 2.8, 4.0, 8.0])),
                     float(rng.choice([1 / 1000, 1 / 250, 1 / 60, 1 / 15])),
                     float(rng.choice([24.0, 35.0, 50.0, 85.0])))
        Image.fromarray(arr).save(root / f"img_{i:03d}.jpg", quality=90, exif=exif)
    return root


def _image(rng: np.random.Generator, fake: bool, size: int) -> Image.Image:
    """Real: sensor-like noise; fake: the same scene smoothed (no noise), so a detector can tell."""
    base = rng.uniform(40, 200, size=3)
    if fake:
        ramp = np.linspace(-20, 20, size)[None, :, None]
        arr = base + ramp + rng.normal(0, 0.5, size=(size, size, 3))
    else:
        arr = base + rng.normal(0, 12, size=(size, size, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def write_labelled(root: Path, n_per_class: int, seed: int = 0, size: int = 80,
                   categories: tuple[str, ...] = ("",)) -> Path:
    rng = np.random.default_rng(seed)
    for cat in categories:
        for label, fake in (("0_real", False), ("1_fake", True)):
            d = root / cat / label if cat else root / label
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n_per_class):
                _image(rng, fake, size).save(d / f"{i:03d}.jpg", quality=95)
    return root


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory) -> dict[str, Path]:
    """Photos + index, bc train/val sets and a test root with two registry sets and one extra."""
    from sdaie.exif.index import main as index_main

    base = tmp_path_factory.mktemp("world")
    photos = write_photos(base / "photos", 12)
    assert index_main([str(photos), "--out", str(base / "index"), "--workers", "1",
                       "--no-progress"]) == 0
    write_labelled(base / "bc_train", 6, seed=1)
    write_labelled(base / "bc_val", 3, seed=2)
    oc_train = base / "oc_real"
    rng = np.random.default_rng(4)
    oc_train.mkdir()
    for i in range(12):
        _image(rng, False, 80).save(oc_train / f"{i:03d}.jpg", quality=95)
    tests = base / "tests"
    write_labelled(tests / "progan", 3, seed=5, categories=("car", "cat"))
    write_labelled(tests / "stylegan", 3, seed=6)
    write_labelled(tests / "mygen", 3, seed=7)
    return {"base": base, "photos": photos, "index": base / "index", "bc_train": base / "bc_train",
            "bc_val": base / "bc_val", "oc_train": oc_train, "tests": tests}


@pytest.fixture(scope="session")
def pretext_ckpt(tiny_world, tmp_path_factory) -> Path:
    """A pretext checkpoint of a few tiny steps, shared by the one-class and binary stage tests."""
    from sdaie.stages import backbone_train

    out = tmp_path_factory.mktemp("bb")
    backbone_train.main(["--config", str(TINY / "backbone.yaml"), f"data.index={tiny_world['index']}",
                         f"run.out_dir={out}", "pretext.steps=3"])
    return out / "checkpoints" / "last.pt"


@pytest.fixture(scope="session")
def spliced_root(tmp_path_factory) -> Path:
    """A localisation root: per simulated generator 2 camera photos and 2 spliced ones, masks."""
    from sdaie.synth import make_world

    base = tmp_path_factory.mktemp("spliced")
    make_world(base, photos=0, size=64, gen_images=0, bc_train=0, bc_val=0, spliced=2,
               spliced_size=96, seed=1)
    return base / "spliced"
