"""The GMM of the one-class detector, its threshold, and a pickle-free file format.

scikit-learn's :class:`~sklearn.mixture.GaussianMixture` is fitted with the configured components,
covariance type, initialisation and seed (spec: 5, full, k-means++, 42). It is saved as an ``.npz``
of its fitted parameters (weights, means, covariances, precision Cholesky factors) plus the
threshold and the training scores, and rebuilt from them into a ``GaussianMixture`` without
pickle, so ``score_samples`` of the reloaded model equals the original's.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.mixture import GaussianMixture

from sdaie.atomic import atomic_savez

FORMAT = "sdaie-gmm"
VERSION = 1


def quantile_threshold(train_scores: np.ndarray, q: float) -> float:
    """Sorted training log-likelihood at index ``floor(q * N)`` (spec: q = 0.02)."""
    scores = np.sort(np.asarray(train_scores, dtype=np.float64))
    if scores.size == 0:
        raise ValueError("no training scores to set a threshold from")
    if not 0.0 <= q < 1.0:
        raise ValueError(f"quantile must be in [0, 1), got {q}")
    return float(scores[min(int(math.floor(q * scores.size)), scores.size - 1)])


@dataclass
class OneClassGMM:
    """A fitted mixture with its decision rule: real iff log p(x) > threshold."""

    gmm: GaussianMixture
    threshold: float
    train_scores: np.ndarray
    quantile: float
    # Heatmaps: per patch context, the same quantile over the patches of real training images
    # (sdaie.patch_scoring.calibrate_patch_thresholds); empty if not calibrated.
    patch_thresholds: dict[str, float] = field(default_factory=dict)

    def score(self, features: np.ndarray) -> np.ndarray:
        """Log-likelihood per row (higher = more like the real training images)."""
        return self.gmm.score_samples(np.asarray(features, dtype=np.float64))

    def percentile(self, scores: np.ndarray) -> np.ndarray:
        """Share of training scores at or below each score (0..100), for reports."""
        ref = np.sort(self.train_scores)
        return 100.0 * np.searchsorted(ref, np.asarray(scores), side="right") / max(ref.size, 1)


def small_training_set(n: int, dim: int, components: int, covariance_type: str) -> str | None:
    """Why ``n`` training images are too few for this mixture (None if they are enough).

    A component's sample covariance is singular unless it sees more images than the features
    have dimensions (full: per component; tied: in all; diag and spherical: two per component).
    Fitted on fewer, the mixture hugs its training images (only ``reg_covar`` keeps it
    invertible): their log-likelihoods come out far above those of other real images, so the
    threshold set on them rejects most held-out real photos.
    """
    if covariance_type == "tied":
        have, needed, unit = float(n), dim + 1, "in all"
    else:
        have, unit = n / max(components, 1), "per component"
        needed = dim + 1 if covariance_type == "full" else 2
    if have >= needed:
        return None
    return (f"GMM fitted on {n} images for {components} {covariance_type}-covariance "
            f"component(s) of {dim}-d features: about {have:.0f} images {unit}, "
            f"under the {needed} that a non-singular covariance needs. Training "
            "log-likelihoods are inflated and the threshold will reject most held-out real "
            "images: use more images, fewer components, covariance_type=diag or a larger "
            "reg_covar (configs/oc_small_cpu.yaml)")


def fit_one_class(features: np.ndarray, components: int = 5, covariance_type: str = "full",
                  init_params: str = "k-means++", random_state: int = 42,
                  quantile: float = 0.02, reg_covar: float = 1e-6) -> OneClassGMM:
    """Fit the mixture on real-only features and set the threshold on the same images."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < components:
        raise ValueError(f"need a 2-D feature matrix with at least {components} rows, got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("features contain NaN or inf")
    gmm = GaussianMixture(n_components=components, covariance_type=covariance_type,
                          init_params=init_params, random_state=random_state,
                          reg_covar=reg_covar)
    gmm.fit(x)
    scores = gmm.score_samples(x)
    return OneClassGMM(gmm, quantile_threshold(scores, quantile), scores, quantile)


def save_gmm(path: str | Path, model: OneClassGMM, **meta: object) -> Path:
    """Write the fitted parameters as ``.npz`` (no pickle); ``meta`` goes in as JSON text."""
    g = model.gmm
    params = {"n_components": int(g.n_components), "covariance_type": g.covariance_type,
              "init_params": g.init_params, "random_state": g.random_state,
              "reg_covar": float(g.reg_covar), "tol": float(g.tol), "max_iter": int(g.max_iter),
              "n_init": int(g.n_init), "converged": bool(g.converged_), "n_iter": int(g.n_iter_),
              "lower_bound": float(g.lower_bound_)}
    header = {"format": FORMAT, "version": VERSION, "params": params, "quantile": model.quantile,
              "meta": meta}
    if model.patch_thresholds:
        header["patch_thresholds"] = {k: float(v) for k, v in model.patch_thresholds.items()}
    return atomic_savez(path, header=np.array(json.dumps(header, default=str)),
                        weights=g.weights_, means=g.means_, covariances=g.covariances_,
                        precisions_cholesky=g.precisions_cholesky_,
                        threshold=np.float64(model.threshold),
                        train_scores=np.asarray(model.train_scores, dtype=np.float64))


def _precisions(prec_chol: np.ndarray, covariance_type: str) -> np.ndarray:
    """Precision matrices from their Cholesky factors, as scikit-learn stores them."""
    if covariance_type == "full":
        return np.einsum("kij,klj->kil", prec_chol, prec_chol)
    if covariance_type == "tied":
        return prec_chol @ prec_chol.T
    return prec_chol**2  # "diag" and "spherical"


def load_gmm(path: str | Path) -> tuple[OneClassGMM, dict]:
    """Rebuild the model saved by :func:`save_gmm`; returns it and the saved metadata."""
    with np.load(path, allow_pickle=False) as z:
        header = json.loads(str(z["header"]))
        if header.get("format") != FORMAT:
            raise ValueError(f"{path}: not an sdaie GMM file (format {header.get('format')!r})")
        arrays = {k: z[k] for k in z.files if k != "header"}
    p = header["params"]
    g = GaussianMixture(n_components=p["n_components"], covariance_type=p["covariance_type"],
                        init_params=p["init_params"], random_state=p["random_state"],
                        reg_covar=p["reg_covar"], tol=p["tol"], max_iter=p["max_iter"],
                        n_init=p["n_init"])
    g.weights_ = arrays["weights"]
    g.means_ = arrays["means"]
    g.covariances_ = arrays["covariances"]
    g.precisions_cholesky_ = arrays["precisions_cholesky"]
    g.precisions_ = _precisions(g.precisions_cholesky_, g.covariance_type)
    g.converged_ = p["converged"]
    g.n_iter_ = p["n_iter"]
    g.lower_bound_ = p["lower_bound"]
    g.n_features_in_ = int(g.means_.shape[1])
    model = OneClassGMM(g, float(arrays["threshold"]), arrays["train_scores"], header["quantile"],
                        dict(header.get("patch_thresholds", {})))
    return model, header.get("meta", {})
