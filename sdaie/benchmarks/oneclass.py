"""Section ``gmm``: seconds to fit the one-class GMM on synthetic features of the paper's size."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from sdaie.oneclass.gmm import fit_one_class


def synthetic_features(n: int, dim: int, components: int = 5, seed: int = 0) -> np.ndarray:
    """Rows from a mixture of correlated Gaussians (so EM has real structure to fit)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(components, size=n)
    x = rng.normal(0, 1, size=(n, dim))
    for k in range(components):
        rows = labels == k
        mixing = rng.normal(0, 0.25, size=(16, dim))  # a low-rank correlated part per component
        x[rows] += rng.normal(0, 3, size=dim) + rng.normal(size=(int(rows.sum()), 16)) @ mixing
    return x


def bench_gmm(n: int, dim: int, components: int, threads: int) -> dict[str, Any]:
    """Seconds of :func:`sdaie.oneclass.gmm.fit_one_class` (fit + threshold) with BLAS limited."""
    x = synthetic_features(n, dim, components)
    with threadpool_limits(limits=threads):
        start = time.perf_counter()
        model = fit_one_class(x, components=components)
        seconds = time.perf_counter() - start
    return {"rows": n, "dim": dim, "components": components, "threads": threads,
            "seconds": seconds, "iterations": int(model.gmm.n_iter_),
            "converged": bool(model.gmm.converged_)}
