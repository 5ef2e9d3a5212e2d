"""Section ``evaluation``: images/s of one-class and binary evaluation through the real scoring
path, against the extractor's own inference rate on the same patches.

For each image size, PNG files of random pixels are written to a temporary folder and scored by
:func:`sdaie.scoring.score_files` exactly as ``oc_main`` / ``bc_eval`` do (decode, completeness
check, grid tiling, small images batched, the extractor or binary detector). The reference is the
extractor alone on those images' patches, already decoded and tiled, in forwards of the paper's
training batch (``--batch`` x ``--patches`` patches, whole images per forward): the rate no
evaluation loop can beat. ``ratio`` = reference images/s / evaluation images/s (the issue's goal:
within 2x). Both are timed alternately, ``rounds`` times, in this process, at ``threads``.
"""

from __future__ import annotations

import statistics
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sdaie.benchmarks.measuring import interleaved
from sdaie.config import ModelConfig
from sdaie.data.imageio import load_image
from sdaie.models import BinaryDetector, build_extractor
from sdaie.pixels import normalize
from sdaie.scoring import BinaryScorer, FeatureScorer, Tiling, score_files


def _images(folder: Path, side: int, n: int) -> list[Path]:
    rng = np.random.default_rng(side)
    paths = []
    for i in range(n):
        path = folder / f"{side}_{i:03d}.png"
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def _reference(extractor: torch.nn.Module, tiles: list[torch.Tensor], per_forward: int):
    """The extractor over the same images' patches, whole images per forward of about
    ``per_forward`` patches."""
    n = tiles[0].shape[0]
    step = max(1, per_forward // n)
    batches = [normalize(torch.stack(tiles[i:i + step])) for i in range(0, len(tiles), step)]

    def run() -> None:
        with torch.inference_mode():
            for x in batches:
                extractor(x)
    return run


def bench_evaluation(cfg: ModelConfig, sizes: Sequence[tuple[int, int]], rounds: int,
                     threads: int, per_forward: int = 64) -> list[dict]:
    """Rows per (image side, detector): evaluation and reference images/s and their ratio.

    ``sizes``: (side, number of images) pairs.
    """
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = replace(cfg, backbone="sdaie", implementation="fast")
    extractor, detector = build_extractor(cfg).eval(), BinaryDetector(cfg).eval()
    scorers = {"oc": FeatureScorer(extractor, 1024), "bc": BinaryScorer(detector, 1024)}
    rows = []
    with tempfile.TemporaryDirectory(prefix="sdaie-bench-eval-") as tmp:
        for side, n in sizes:
            paths = _images(Path(tmp), side, n)
            tiling = Tiling(cfg.patch_size, 40_000)
            tiles = [tiling(load_image(p)) for p in paths]
            fns = {kind: (lambda s=s, paths=paths, tiling=tiling:
                           score_files(s, paths, tiling, progress=False))
                   for kind, s in scorers.items()}
            fns["reference"] = _reference(extractor, tiles, per_forward)
            times = interleaved(fns, rounds)
            ref = n / statistics.median(times["reference"].wall)
            for kind in scorers:
                rate = n / statistics.median(times[kind].wall)
                rows.append({"size": side, "images": n, "patches": int(tiles[0].shape[0]),
                             "detector": kind, "threads": threads, "images_per_s": rate,
                             "reference_images_per_s": ref, "ratio": ref / rate})
    return rows
