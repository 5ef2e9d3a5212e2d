"""Section ``data``: EXIF indexing images/s and pair-loader images/s per data source (crop shards;
whole JPEGs, "raw", decoded by Pillow or by torchvision), on a synthetic camera world (plus a few
camera-sized JPEGs) in a temporary folder."""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from sdaie.config import Config
from sdaie.data.imageio import load_image
from sdaie.data.pairs import PairBatchSampler, PairDataset
from sdaie.exif.container import jpeg_exif_block
from sdaie.exif.index import build_index
from sdaie.exif.store import PhotoIndex, load_index
from sdaie.synth import make_world


def make_large_jpegs(sources: Sequence[Path], out: Path, size: tuple[int, int]) -> list[Path]:
    """Camera-sized JPEGs: each source photo resized to ``size``, saved with its own EXIF block."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, src in enumerate(sources):
        with open(src, "rb") as fh:
            block = jpeg_exif_block(fh)  # the TIFF structure after "Exif\0\0", or None
        big = load_image(src).resize(size, Image.BILINEAR)
        path = out / f"large_{i:03d}.jpg"
        big.save(path, quality=92, exif=b"Exif\0\0" + block if block else b"")
        paths.append(path)
    return paths


def loader_rate(index: PhotoIndex, source: str, items: int, patches: int, patch_size: int,
                rounds: int, decoder: str = "pil") -> float:
    """Images/s of the pair dataset from data source ``source`` in this process (one DataLoader
    worker's worth)."""
    n = len(index.records)
    dataset = PairDataset(index, list(range(n)), n_patches=patches, patch_size=patch_size,
                          source=source, decoder=decoder)
    sampler = PairBatchSampler(n, items, seed=0)
    batches = [sampler.batch(step) for step in range(rounds + 1)]
    for item in batches[0]:  # warm-up: file cache, memory maps
        dataset[item]
    start = time.perf_counter()
    for batch in batches[1:]:
        for item in batch:
            dataset[item]
    return 2 * items * rounds / (time.perf_counter() - start)


def _timed_index(photo_dir: Path, out: Path, cfg: Config, crop: int | None) -> float:
    """Seconds of one single-process ``build_index``."""
    start = time.perf_counter()
    build_index(photo_dir, out, cfg, workers=1, crop_size=crop)
    return time.perf_counter() - start


def _large_photos(work: Path, photo_dir: Path, cfg: Config, crop: int, large: int,
                  size: tuple[int, int], patches: int, patch_size: int) -> dict[str, Any]:
    """The same measurements on ``large`` camera-sized JPEGs (decoding dominates raw loading)."""
    sources = sorted(photo_dir.rglob("*.jpg"))[:large]
    make_large_jpegs(sources, work / "large" / "photos", size)
    seconds = _timed_index(work / "large" / "photos", work / "large" / "index", cfg, crop)
    big = load_index(work / "large" / "index")
    items = max(2, len(big.records) // 2)
    return {"index_with_crops_large_images_per_s": len(sources) / seconds,
            "large_size": list(size),
            "pairs_raw_large_images_per_s": loader_rate(big, "photo", items, patches,
                                                        patch_size, 1),
            "pairs_raw_torchvision_large_images_per_s": loader_rate(
                big, "photo", items, patches, patch_size, 1, decoder="torchvision"),
            "pairs_shards_large_images_per_s": loader_rate(big, "shards", items, patches,
                                                           patch_size, 1)}


def bench_data(work: Path, photos: int, size: int, crop: int, large: int,
               large_size: tuple[int, int], patches: int, patch_size: int,
               rounds: int) -> dict[str, Any]:
    """EXIF indexing and pair loading on a synthetic world (and ``large`` camera-sized JPEGs)."""
    world = work / "world"
    make_world(world, photos=photos, seed=0, size=size, gen_images=0, bc_train=0, bc_val=0)
    photo_dir = world / "photos"
    cfg = Config()
    out: dict[str, Any] = {"photos": photos, "photo_size": size, "crop_size": crop,
                           "patches_per_image": patches}

    warm = work / "warm"  # one photo first, so the timed runs pay no first-use costs
    warm.mkdir()
    shutil.copy(next(iter(sorted(photo_dir.rglob("*.jpg")))), warm)
    build_index(warm, work / "index_warm", cfg, workers=1, crop_size=crop)
    out["index_exif_images_per_s"] = photos / _timed_index(photo_dir, work / "index_exif", cfg,
                                                            None)
    out["index_with_crops_images_per_s"] = photos / _timed_index(photo_dir, work / "index_crops",
                                                                 cfg, crop)
    index = load_index(work / "index_crops")
    items = max(2, min(8, len(index.records) // 2))
    out["pairs_shards_images_per_s"] = loader_rate(index, "shards", items, patches, patch_size,
                                                   rounds)
    out["pairs_raw_images_per_s"] = loader_rate(index, "photo", items, patches, patch_size, rounds)
    out["pairs_raw_torchvision_images_per_s"] = loader_rate(index, "photo", items, patches,
                                                            patch_size, rounds, "torchvision")
    if large:
        out.update(_large_photos(work, photo_dir, cfg, crop, large, large_size, patches,
                                 patch_size))
    return out
