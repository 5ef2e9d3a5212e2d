"""Images in, per-image results out: the one scoring path of the evaluation stages, ``sdaie detect``
and :class:`sdaie.api.Detector`.

file -> RGB image (:func:`~sdaie.data.imageio.load_image`) -> :class:`Tiling` (perturbation, then
every non-overlapping grid patch, capped; spec section 3) -> a scorer -> :class:`ImageScore`.
One image per forward, but a large image has thousands of patches: the extractor's per-patch part
(SRM residual, CNN, covariance pooling) runs ``batch_patches`` patches at a time, then the
transformer runs once over all tokens of the image (``PatchExtractor.image_feature``), which
equals one forward over all patches with memory bounded by ``batch_patches``.

Features of whole test sets are cached on disk for the one-class stage (:class:`FeatureCache`):
one ``.npz`` per (checkpoint hash, test set, perturbation, patch cap, protocol), reused only for
exactly the same file list.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm import tqdm

from sdaie.atomic import atomic_savez
from sdaie.config import PROTOCOLS
from sdaie.data.imageio import ImageLoadError, load_image
from sdaie.data.patches import grid_patches
from sdaie.pixels import normalize
from sdaie.data.transforms import CLEAN, Perturbation
from sdaie.oneclass.gmm import OneClassGMM

log = logging.getLogger(__name__)

Patcher = Callable[[Image.Image], torch.Tensor]


# ---------------------------------------------------------------------------------------------
# One image
# ---------------------------------------------------------------------------------------------


@dataclass
class ImageScore:
    """Everything one pass over one image's patches gives; fields its scorer does not compute
    stay None.

    One record per image so that a caller never re-runs the extractor for another number: a
    per-patch result (a heatmap) would be one more field filled by the same pass.
    """

    n_patches: int
    feature: np.ndarray | None = None  # [D] float32, the extractor's image feature
    p_fake: float | None = None  # binary detector: 1 - softmax(logits)[0]
    log_likelihood: float | None = None  # one-class: log p(feature) under the real-image GMM
    percentile: float | None = None  # one-class: share of GMM training images at or below, 0..100

    def problem(self) -> str | None:
        """Why these numbers cannot be reported (non-finite values), or None."""
        if self.p_fake is not None and not math.isfinite(self.p_fake):
            return "p_fake is not finite"
        if self.feature is not None and not np.isfinite(self.feature).all():
            return "the image's feature is not finite"
        if self.log_likelihood is not None and math.isnan(self.log_likelihood):
            return "log-likelihood is NaN"
        return None


@dataclass(frozen=True)
class Decision:
    """A detector's threshold rule: binary fake iff p(fake) > t; one-class real iff log p > t.

    The one-class side is "fake unless score > t", so a NaN log-likelihood counts as fake (the
    rule of :meth:`OneClassGMM.predict_fake`) and a NaN p(fake) as real.
    """

    threshold: float
    fake_when_higher: bool

    def predict_fake(self, scores: np.ndarray | float) -> np.ndarray:
        above = np.asarray(scores) > self.threshold
        return above if self.fake_when_higher else ~above

    def fake_score(self, scores: np.ndarray) -> np.ndarray:
        """Scores turned so that higher means more likely AI-generated (for AP and ROC-AUC)."""
        return scores if self.fake_when_higher else -scores


@dataclass(frozen=True)
class Tiling:
    """How an image becomes the patches a scorer sees: perturbation, then the evaluation grid.

    Everything that decides which pixels reach the extractor lives here. ``protocol`` "spec"
    crops to multiples of the patch as the paper states and rounds resize sizes; "official" does
    what the authors' code does (transposed, zero-padded centre crop; floored resize sizes; see
    :func:`~sdaie.data.patches.grid_crop_box`). uint8 patches, a quarter of the memory of floats;
    the extractor normalises them chunk by chunk.
    """

    patch_size: int
    max_patches: int
    perturbation: Perturbation = CLEAN
    protocol: str = "spec"

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol={self.protocol!r}; valid: {list(PROTOCOLS)}")

    def __call__(self, img: Image.Image) -> torch.Tensor:
        return grid_patches(self.perturbation(img, self.protocol), size=self.patch_size,
                            cap=self.max_patches, layout=self.protocol, normalized=False)


@torch.no_grad()
def image_feature(extractor: nn.Module, patches: torch.Tensor, batch_patches: int = 1024,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """Feature ``[D]`` of one image from its patches ``[N, 3, P, P]``, ``batch_patches`` at a time.

    An extractor without ``image_feature(patches, chunk)`` gets all patches in one forward.
    """
    patches = patches.to(device)
    chunked = getattr(extractor, "image_feature", None)
    if callable(chunked):
        return chunked(patches, chunk=batch_patches).float().cpu()
    if patches.dtype == torch.uint8:
        patches = normalize(patches)
    return extractor(patches.unsqueeze(0)).squeeze(0).float().cpu()


@torch.no_grad()
def p_fake(detector: nn.Module, patches: torch.Tensor, batch_patches: int,
           device: torch.device | str) -> float:
    """1 - softmax(logits)[0] of one image (the official expression)."""
    logits = detector.image_logits(patches.to(device), chunk=batch_patches).float()
    return float(1.0 - torch.softmax(logits, dim=0)[0])


class Scorer(Protocol):
    """Patches of one image -> its :class:`ImageScore`."""

    @property
    def patch_size(self) -> int: ...

    def __call__(self, patches: torch.Tensor) -> ImageScore: ...


@dataclass
class BinaryScorer:
    """p(fake) of a :class:`~sdaie.models.BinaryDetector`."""

    detector: nn.Module
    batch_patches: int = 1024
    device: torch.device | str = "cpu"

    @property
    def patch_size(self) -> int:
        return self.detector.patch_size

    def __call__(self, patches: torch.Tensor) -> ImageScore:
        p = p_fake(self.detector, patches, self.batch_patches, self.device)
        return ImageScore(int(patches.shape[0]), p_fake=p)


@dataclass
class FeatureScorer:
    """The extractor's image feature; with a GMM also its log-likelihood and percentile.

    A non-finite feature gets no log-likelihood (the mixture refuses NaN input); the caller sees
    it through :meth:`ImageScore.problem`.
    """

    extractor: nn.Module
    batch_patches: int = 1024
    device: torch.device | str = "cpu"
    gmm: OneClassGMM | None = None

    @property
    def patch_size(self) -> int:
        return self.extractor.patch_size

    def __call__(self, patches: torch.Tensor) -> ImageScore:
        feature = image_feature(self.extractor, patches, self.batch_patches, self.device).numpy()
        out = ImageScore(int(patches.shape[0]), feature=feature)
        if self.gmm is not None and np.isfinite(feature).all():
            ll = float(self.gmm.score(feature[None])[0])
            out.log_likelihood = ll
            out.percentile = float(self.gmm.percentile(np.array([ll]))[0])
        return out


# ---------------------------------------------------------------------------------------------
# Many files
# ---------------------------------------------------------------------------------------------


@dataclass
class ScoredFiles:
    """Results of the readable files among those asked for; the others listed with the reason."""

    results: list[ImageScore]
    kept: list[int]  # position in the requested list of each result
    skipped: list[dict]


def score_files(scorer: Scorer, paths: Sequence[Path | str], patcher: Patcher,
                strict: bool = False, progress: bool = True, desc: str = "") -> ScoredFiles:
    """Load, tile and score each file; an undecodable one is skipped and reported (``strict``
    raises :class:`ImageLoadError` instead)."""
    results, kept, skipped = [], [], []
    for i, path in enumerate(tqdm(list(paths), desc=desc, disable=not progress, leave=False)):
        try:
            img = load_image(path)
        except ImageLoadError as exc:
            if strict:
                raise
            skipped.append({"path": str(path), "reason": str(exc)})
            continue
        results.append(scorer(patcher(img)))
        kept.append(i)
    return ScoredFiles(results, kept, skipped)


@dataclass
class FeatureSet:
    """Features of a list of files (rows aligned with ``paths``); failed files are listed apart."""

    features: np.ndarray
    labels: np.ndarray
    paths: list[str]
    n_patches: np.ndarray
    skipped: list[dict] = field(default_factory=list)


def extract_features(extractor: nn.Module, paths: Sequence[Path], labels: Sequence[int],
                     patcher: Patcher, perturbation: Perturbation = CLEAN,
                     batch_patches: int = 1024, device: torch.device | str = "cpu",
                     strict: bool = False, progress: bool = False, desc: str = "") -> FeatureSet:
    """Perturb each readable file, tile it with ``patcher(img) -> [N,3,P,P]`` and embed it."""
    paths = list(paths)
    scorer = FeatureScorer(extractor, batch_patches, device)
    done = score_files(scorer, paths, lambda img: patcher(perturbation(img)), strict, progress,
                       desc)
    feats = [r.feature for r in done.results]
    dim = feats[0].shape[0] if feats else 0
    return FeatureSet(np.stack(feats) if feats else np.zeros((0, dim), np.float32),
                      np.asarray([int(labels[i]) for i in done.kept], np.int64),
                      [str(paths[i]) for i in done.kept],
                      np.asarray([r.n_patches for r in done.results], np.int64), done.skipped)


class FeatureCache:
    """``<dir>/<ckpt hash>/<set>__<perturbation>__cap<N>[__official].npz``; no pickle (string
    arrays only). The spec protocol's names carry no suffix (caches written before the protocol
    existed stay valid)."""

    def __init__(self, root: str | Path, checkpoint_hash: str, protocol: str = "spec"):
        self.dir = Path(root) / checkpoint_hash
        self.suffix = "" if protocol == "spec" else f"__{protocol}"

    def path(self, set_name: str, perturbation: Perturbation, cap: int) -> Path:
        safe = set_name.replace("/", "_")
        return self.dir / f"{safe}__{perturbation.tag}__cap{cap}{self.suffix}.npz"

    def load(self, set_name: str, perturbation: Perturbation, cap: int,
             expected_paths: Sequence[Path]) -> FeatureSet | None:
        """The cached set if present and computed from exactly ``expected_paths``, else None."""
        path = self.path(set_name, perturbation, cap)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                requested = [str(p) for p in z["requested"]]
                if requested != [str(p) for p in expected_paths]:
                    return None
                return FeatureSet(z["features"], z["labels"], [str(p) for p in z["paths"]],
                                  z["n_patches"], json.loads(str(z["skipped"])))
        except (OSError, ValueError, KeyError) as exc:
            log.warning("ignoring unreadable feature cache %s: %s", path, exc)
            return None

    def save(self, set_name: str, perturbation: Perturbation, cap: int,
             requested: Sequence[Path], fs: FeatureSet) -> Path:
        return atomic_savez(self.path(set_name, perturbation, cap), features=fs.features,
                            labels=fs.labels, paths=np.array(fs.paths, dtype=str),
                            n_patches=fs.n_patches,
                            requested=np.array([str(p) for p in requested], dtype=str),
                            skipped=np.array(json.dumps(fs.skipped)))
