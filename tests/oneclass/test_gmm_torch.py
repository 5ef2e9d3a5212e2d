"""The torch log-likelihood equals scikit-learn's ``score_samples`` for every covariance type."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.mixture import GaussianMixture

from sdaie.oneclass import gmm_torch


@pytest.mark.parametrize("kind", ["full", "tied", "diag", "spherical"])
def test_equals_sklearn(kind, monkeypatch):
    rng = np.random.default_rng(0)
    train = np.concatenate([rng.normal(0, 1, (150, 6)), rng.normal(3, 0.5, (150, 6))])
    g = GaussianMixture(3, covariance_type=kind, random_state=0).fit(train)
    x = np.concatenate([rng.normal(1, 2, (50, 6)), [[40.0] * 6]])  # one far outlier
    monkeypatch.setattr(gmm_torch, "ROWS", 16)  # several chunks
    got = gmm_torch.score_samples(g, torch.from_numpy(x).float()).numpy()
    ref = g.score_samples(x.astype(np.float32).astype(np.float64))
    assert got.dtype == np.float64
    assert np.allclose(got, ref, rtol=1e-10, atol=1e-8)


def test_no_rows():
    g = GaussianMixture(1).fit(np.random.default_rng(0).normal(size=(10, 2)))
    assert gmm_torch.score_samples(g, torch.zeros(0, 2)).shape == (0,)
