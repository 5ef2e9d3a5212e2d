"""Section ``loader``: pair-loader images/s per data source and decoder with k workers, against
what a training step consumes; the workers per GPU it takes; whether the decoders agree.

The photos are the user's index (``--index``) or camera-sized JPEGs made here: a synthetic
camera photo scaled to ``plan.photo_size`` with per-pixel noise of sigma 8 (grain), saved at
quality 92 with its EXIF; the noise gives them the size of real photos (3.5 MB at 12 MP; the
CC0 camera crops of the test fixtures scale to 1.4-5.5 MB), and JPEG decoding time grows with
the size of the entropy-coded data. The rate of k workers is
timed through a real ``DataLoader`` after its first batch (worker start-up excluded).
"""

from __future__ import annotations

import math
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.io import ImageReadMode, decode_jpeg

from sdaie.config import Config
from sdaie.data.imageio import load_image
from sdaie.data.loading import collate_skips
from sdaie.data.pairs import PairBatchSampler, PairDataset
from sdaie.data.sources import decode_torchvision
from sdaie.exif.container import jpeg_exif_block
from sdaie.exif.index import build_index
from sdaie.exif.store import PhotoIndex, load_index
from sdaie.gpucheck.plan import Plan
from sdaie.gpucheck.report import Section
from sdaie.synth import make_world

SOURCES = (("photo", "pil"), ("photo", "torchvision"), ("shards", "pil"))
LOADER_PAIRS = 4  # pairs per timed batch: a small batch, so that a slow source still gives a rate


def camera_jpegs(work: Path, plan: Plan) -> Path:
    """``plan.photos`` camera-sized JPEGs with EXIF (see the module docstring); returns the folder."""
    make_world(work / "world", photos=plan.photos, size=192, gen_images=0, bc_train=0, bc_val=0)
    out = work / "photos"
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i, src in enumerate(sorted((work / "world" / "photos").rglob("*.jpg"))[:plan.photos]):
        with open(src, "rb") as fh:
            block = jpeg_exif_block(fh)
        big = np.asarray(load_image(src).resize(plan.photo_size, Image.BILINEAR), dtype=np.float32)
        grain = rng.normal(0.0, 8.0, size=big.shape).astype(np.float32)
        pixels = np.clip(big + grain, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(out / f"camera_{i:03d}.jpg", quality=92,
                                     exif=b"Exif\0\0" + block if block else b"")
    return out


def prepare_index(work: Path, plan: Plan, index_dir: str | None) -> tuple[PhotoIndex, str]:
    """The user's index, or one built here with centre crops; and a description of the photos."""
    if index_dir:
        index = load_index(index_dir)
        return index, f"the index {index_dir} ({len(index)} photos)"
    photos = camera_jpegs(work, plan)
    build_index(photos, work / "index", Config(), workers=1, crop_size=plan.crop)
    index = load_index(work / "index")
    mb = np.mean([p.stat().st_size for p in photos.glob("*.jpg")]) / 2**20
    w, h = plan.photo_size
    return index, (f"{len(index)} synthetic camera JPEGs of {w}x{h} ({mb:.1f} MB each), indexed "
                   f"with --crops {plan.crop}")


def loader_rate(index: PhotoIndex, source: str, decoder: str, workers: int, plan: Plan,
                budget_s: float) -> float:
    """Images/s of ``DataLoader(PairDataset)`` with ``workers`` workers, after its first batch."""
    n = len(index)
    dataset = PairDataset(index, np.arange(n), n_patches=16, patch_size=64, source=source,
                          decoder=decoder)
    sampler = PairBatchSampler(n, LOADER_PAIRS, seed=0)  # endless: a fast node outruns any cap
    loader = iter(DataLoader(dataset, batch_sampler=sampler, num_workers=workers,
                             collate_fn=collate_skips, prefetch_factor=2 if workers else None))
    next(loader)
    images, start = 0, time.perf_counter()
    while time.perf_counter() - start < budget_s or images < 2 * LOADER_PAIRS * max(1, workers):
        next(loader)
        images += 2 * LOADER_PAIRS
    rate = images / (time.perf_counter() - start)
    del loader  # stops the workers
    return rate


def disk_per_photo(index: PhotoIndex, source: str, plan: Plan) -> str:
    if source == "shards":
        side = index.crop_size or plan.crop
        return f"{side * side * 3 / 2**10:,.0f} KB extra (uint8 {side}x{side} crop)"
    sizes = [Path(index.image_path(i)).stat().st_size for i in range(min(len(index), 50))]
    return f"0 extra (the JPEG itself: {np.mean(sizes) / 2**20:.1f} MB here)"


def workers_needed(rates: dict[int, float], needed: float) -> int | None:
    """Workers per GPU for ``needed`` images/s, from the best per-worker rate measured (None
    when either is unknown)."""
    per_worker = max([r / max(k, 1) for k, r in rates.items()], default=0.0)
    return math.ceil(needed / per_worker) if per_worker > 0 and math.isfinite(needed) else None


def source_rows(index: PhotoIndex, plan: Plan, needed: float, cores: int) -> list[dict[str, Any]]:
    rows = []
    budget = 1.0 if plan.cpu_mode else 5.0
    for source, decoder in SOURCES:
        if source == "shards" and not index.crop_size:
            rows.append({"source": source, "decoder": decoder,
                         "verdict": "skipped: the index holds no crops (sdaie index --crops 512)"})
            continue
        rates = {k: loader_rate(index, source, decoder, k, plan, budget) for k in plan.workers}
        need = workers_needed(rates, needed)
        verdict = ("unknown: no step time (run the throughput section too)" if need is None
                   else f"keeps up with {need} worker{'s' if need > 1 else ''}" if need <= cores
                   else f"cannot keep up: {need} workers needed, {cores} cores per GPU")
        rows.append({"source": source, "decoder": decoder,
                     **{f"images/s, {k} workers": r for k, r in rates.items()},
                     "workers per GPU needed": need, "disk per photo": disk_per_photo(index, source, plan),
                     "verdict": verdict})
    return rows


def decoder_rows(index: PhotoIndex, device: Any) -> list[dict[str, Any]]:
    """Pixels of the same JPEGs through each decoder, against Pillow (the reference)."""
    paths = [Path(index.image_path(i)) for i in range(min(len(index), 16))]
    diffs: dict[str, list[np.ndarray]] = {"torchvision (CPU)": [], "torchvision nvjpeg (GPU)": []}
    for p in paths:
        ref = np.asarray(load_image(p), dtype=np.int16)
        diffs["torchvision (CPU)"].append(np.abs(np.asarray(decode_torchvision(p), np.int16) - ref))
        if device.type == "cuda":
            data = torch.frombuffer(bytearray(p.read_bytes()), dtype=torch.uint8)
            with warnings.catch_warnings():  # torchvision 0.29 deprecates its image decoders
                warnings.simplefilter("ignore", DeprecationWarning)
                gpu = decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
            gpu = gpu.permute(1, 2, 0).cpu()
            diffs["torchvision nvjpeg (GPU)"].append(np.abs(gpu.numpy().astype(np.int16) - ref))
    rows = []
    for name, parts in diffs.items():
        if not parts:
            rows.append({"decoder": name, "vs Pillow": "skipped: no CUDA"})
            continue
        flat = np.concatenate([d.reshape(-1) for d in parts])
        rows.append({"decoder": name, "photos": len(parts), "identical photos":
                     sum(int(d.max() == 0) for d in parts), "max |diff|": int(flat.max()),
                     "mean |diff|": float(flat.mean()), "pixels differing": float((flat > 0).mean())})
    return rows


def check_loader(plan: Plan, work: Path, step_s: float | None, cores: int,
                 index_dir: str | None = None) -> Section:
    index, photos = prepare_index(work, plan, index_dir)
    needed = plan.images_per_step / step_s if step_s else float("nan")
    rows = source_rows(index, plan, needed, cores)
    decoders = decoder_rows(index, plan.device)
    best = [r for r in rows if str(r.get("verdict", "")).startswith("keeps up")]
    pace = f"{needed:,.0f} images/s at the fastest correct variant" if math.isfinite(needed) \
        else "the step time is unknown"
    summary = (f"one step consumes {plan.images_per_step} images ({pace}); " + ("; ".join(
                   f"{r['source']}/{r['decoder']}: {r['verdict']}" for r in rows)))
    notes = [f"photos: {photos}; 16 random 64x64 patches per image, {LOADER_PAIRS} pairs per "
             "timed batch, timed after the first batch",
             "workers per GPU needed = ceil(images/s a step consumes / best images/s per worker); "
             f"{cores} CPU cores per GPU here (data.workers sets the workers)",
             "configs/backbone.yaml uses data.source=photo data.decoder=torchvision"]
    notes += [f"decoder {r['decoder']}: " + ", ".join(f"{k} {v}" for k, v in r.items() if k != "decoder")
              for r in decoders]
    if not best and math.isfinite(needed):
        notes.append("no source keeps up with the step on this node: the GPU will wait for data "
                     "(data.source=shards reads memory-mapped crops, see docs/gpu-nodes.md)")
    return Section("loader", "Data loader", "ok", summary, rows, notes,
                   facts={"needed_images_per_s": needed, "decoders": decoders})
