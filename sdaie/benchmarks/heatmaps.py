"""Section ``heatmap``: seconds per image of detection alone and of detection with a heatmap.

Per detector (binary; one-class with a 5-component full-covariance GMM over the features) and
image size, in one process with the variants alternating within every round (so load changes hit
them alike): ``detect`` (what ``sdaie detect`` does without ``--heatmap``), ``heatmap`` at the
evaluation grid (same patches, one pass, the detector's default context) and at half the patch
size (4x the patches). Each ratio is the median over rounds of (variant / detect) in that round,
in wall-clock and in process CPU time (steadier on a shared machine: waiting for a core is not
counted).
Random weights: speed does not depend on them.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from PIL import Image
from sklearn.mixture import GaussianMixture

from sdaie.benchmarks.measuring import interleaved
from sdaie.config import ModelConfig
from sdaie.data.patches import GRID_CAP
from sdaie.labels import Decision
from sdaie.models import BinaryDetector
from sdaie.oneclass.gmm import OneClassGMM
from sdaie.patch_scoring import LatticeTiling, MapSpec, score_with_maps
from sdaie.scoring import BinaryScorer, FeatureScorer, Tiling


def random_gmm(dim: int, components: int = 5, seed: int = 0) -> OneClassGMM:
    """A full-covariance mixture with set parameters (no fit: its cost is not what is timed)."""
    rng = np.random.default_rng(seed)
    g = GaussianMixture(components, covariance_type="full")
    g.weights_ = np.full(components, 1 / components)
    g.means_ = rng.normal(size=(components, dim))
    g.covariances_ = np.stack([np.eye(dim)] * components)
    g.precisions_cholesky_ = g.covariances_.copy()
    g.precisions_ = g.covariances_.copy()
    g.n_features_in_ = dim
    return OneClassGMM(g, 0.0, np.zeros(1), 0.02)


def _variants(cfg: ModelConfig, side: int) -> dict[str, Callable[[], Any]]:
    torch.manual_seed(0)
    det = BinaryDetector(replace(cfg, backbone="sdaie")).eval()
    img = Image.fromarray(np.random.default_rng(side).integers(0, 256, (side, side, 3),
                                                               dtype=np.uint8))
    p = cfg.patch_size
    scorers = {"bc": (BinaryScorer(det), Decision(0.5, True), 40_000),
               "oc": (FeatureScorer(det.trainable, gmm=random_gmm(det.trainable.feature_dim)),
                      Decision(0.0, False), GRID_CAP)}
    out: dict[str, Callable[[], Any]] = {}
    for kind, (scorer, decision, cap) in scorers.items():
        def detect(s=scorer, c=cap) -> Any:
            with torch.inference_mode():
                return s(Tiling(p, c)(img))
        out[f"{kind} detect"] = detect
        for stride in (p, p // 2):
            def heatmap(s=scorer, d=decision, c=cap, st=stride, k=kind) -> Any:
                with torch.inference_mode():
                    return score_with_maps(s, *LatticeTiling(p, c, st)(img), d,
                                           MapSpec.default(k, st))
            out[f"{kind} heatmap stride {stride}"] = heatmap
    return out


def bench_heatmaps(cfg: ModelConfig, sizes: Sequence[int], rounds: int,
                   threads: int) -> list[dict[str, Any]]:
    """Rows: detector, image size, variant, patches, seconds, images/s, ratio to detect."""
    torch.set_num_threads(threads)
    rows = []
    for side in sizes:
        fns = _variants(cfg, side)
        times = interleaved(fns, rounds)
        for name, t in times.items():
            kind, variant = name.split(" ", 1)
            base = times[f"{kind} detect"]
            stride = int(variant.rsplit(" ", 1)[1]) if "stride" in variant else cfg.patch_size
            n = (max(1, (side // cfg.patch_size - 1) * cfg.patch_size // stride + 1)) ** 2
            med = statistics.median(t.wall)
            rows.append({"detector": kind, "size": side, "variant": variant, "patches": n,
                         "threads": threads, "seconds": med, "images_per_s": 1 / med,
                         "over_detect": statistics.median(a / b for a, b in zip(t.wall, base.wall)),
                         "cpu_seconds": statistics.median(t.cpu),
                         "over_detect_cpu": statistics.median(a / b for a, b in zip(t.cpu,
                                                                                    base.cpu))})
    return rows
