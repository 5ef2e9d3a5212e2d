"""The GMM's log-likelihood in torch, on the device of the features: for heatmaps, which score
tens of thousands of patch features per image.

Same formula as scikit-learn's ``GaussianMixture.score_samples`` (log-sum-exp over components of
log weight + log N(x; mean, covariance) through the precision Cholesky factors), in float64, so
results agree to rounding. Two reasons not to call scikit-learn here: on a GPU the features stay
on the device, and on a CPU the matrix products run in torch's thread pool rather than in a
second BLAS pool, which, on a busy machine, spun 50x slower in our measurement (docs/heatmaps.md).
Image-level scores keep using scikit-learn, so the evaluation tables do not move.
"""

from __future__ import annotations

import math

import torch
from sklearn.mixture import GaussianMixture

ROWS = 16384  # features per chunk (bounds memory: rows x dim float64 per component)


def _log_det(pc: torch.Tensor, kind: str, dim: int) -> torch.Tensor:
    """Log-determinant of each component's precision Cholesky factor, ``[K]`` (or scalar)."""
    if kind == "full":
        return torch.log(torch.diagonal(pc, dim1=-2, dim2=-1)).sum(-1)
    if kind == "tied":
        return torch.log(torch.diagonal(pc)).sum()
    if kind == "diag":
        return torch.log(pc).sum(-1)
    return dim * torch.log(pc)  # spherical


def _squared_distances(x: torch.Tensor, mu: torch.Tensor, pc: torch.Tensor,
                       kind: str) -> torch.Tensor:
    """``[N, K]`` squared Mahalanobis distances of ``x`` to every component mean."""
    if kind == "full":
        return torch.stack([((x @ pc[k] - mu[k] @ pc[k]) ** 2).sum(1) for k in range(len(mu))], 1)
    if kind == "tied":
        return torch.stack([((x @ pc - mu[k] @ pc) ** 2).sum(1) for k in range(len(mu))], 1)
    prec = pc ** 2
    if kind == "diag":
        return (mu ** 2 * prec).sum(1) - 2 * x @ (mu * prec).T + (x ** 2) @ prec.T
    return ((mu ** 2).sum(1) * prec - 2 * (x @ mu.T) * prec
            + (x ** 2).sum(1, keepdim=True) * prec[None])  # spherical


@torch.no_grad()
def score_samples(gmm: GaussianMixture, features: torch.Tensor) -> torch.Tensor:
    """``[N]`` float64 log-likelihood of each row of ``features`` under ``gmm``."""
    device = features.device
    f64 = dict(dtype=torch.float64, device=device)
    mu = torch.as_tensor(gmm.means_, **f64)
    pc = torch.as_tensor(gmm.precisions_cholesky_, **f64)
    kind, dim = gmm.covariance_type, mu.shape[1]
    base = (_log_det(pc, kind, dim) - 0.5 * dim * math.log(2 * math.pi)
            + torch.log(torch.as_tensor(gmm.weights_, **f64)))
    parts = [torch.logsumexp(base - 0.5 * _squared_distances(x, mu, pc, kind), dim=1)
             for x in features.to(torch.float64).split(ROWS)]
    return torch.cat(parts) if parts else torch.zeros(0, **f64)
