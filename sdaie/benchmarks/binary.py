"""Section ``bc_eval``: binary-detector images/s over every grid patch of one image.

What ``bc_eval`` does per decoded file (uint8 grid patches, normalised chunk by chunk inside the
extractor, p(fake) from the logits), for the reference and fast implementations in alternating
fresh processes.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch
from PIL import Image

from sdaie.benchmarks.measuring import Timings, compared, interleaved, merged, pair_ratio
from sdaie.config import ModelConfig
from sdaie.data.patches import grid_patches
from sdaie.models import BinaryDetector
from sdaie.models.binary import fake_probability


def bc_eval_timings(impl: str, cfg: ModelConfig, side: int, rounds: int, threads: int,
                    device: str) -> Timings:
    """One implementation of the binary detector over every grid patch of one image."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    det = BinaryDetector(replace(cfg, backbone="sdaie", implementation=impl)).eval().to(device)
    pixels = np.random.default_rng(side).integers(0, 256, (side, side, 3), dtype=np.uint8)
    img = Image.fromarray(pixels)

    def run() -> float:  # what bc_eval does per decoded file
        with torch.inference_mode():
            patches = grid_patches(img, size=cfg.patch_size, cap=40_000,
                                   normalized=False).to(device)
            return float(fake_probability(det.image_logits(patches)))

    return interleaved({impl: run}, rounds, device=device)[impl]


def bench_bc_eval(cfg: ModelConfig, sizes: Sequence[int], rounds: int, threads: int,
                  device: str = "cpu", isolate: bool = True,
                  policies: Sequence[str] = ("default",), reps: int = 1) -> list[dict]:
    """Images/s of the binary detector per image size and wait policy, and fast/reference."""
    rows = []
    for policy in policies:
        for side in sizes:
            times = compared(isolate, reps, policy, bc_eval_timings, cfg, side, rounds, threads,
                             device)
            n_patches = max(1, side // cfg.patch_size) ** 2
            keys = {"size": side, "patches": n_patches, "threads": threads, "omp_wait": policy}
            for name, parts in times.items():
                ts = merged(parts)
                med = statistics.median(ts.wall)
                rows.append({**keys, "implementation": name, "seconds": med,
                             "images_per_s": 1 / med, "cpu_seconds": statistics.median(ts.cpu),
                             "system_seconds": statistics.median(ts.system)})
            slow, quick = times["reference"], times["fast"]
            rows.append({**keys, "implementation": "fast/reference",
                         "ratio": pair_ratio(slow, quick),
                         "ratio_cpu": pair_ratio(slow, quick, "cpu")})
    return rows
