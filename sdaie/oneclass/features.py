"""Whole-image features from grid patches, with bounded memory and an on-disk cache.

One image per forward (spec section 3), but a large image can have thousands of patches. The
extractor's per-patch part (SRM residual, CNN, covariance pooling: each patch on its own) runs
``batch_patches`` patches at a time; the transformer, where all N patch tokens of the image attend
to each other, then runs once over all tokens (``PatchExtractor.image_feature``). The result
equals one forward over all patches, with memory bounded by ``batch_patches``.

Cache: one ``.npz`` per (checkpoint hash, test set, perturbation, patch cap) holding the features,
labels and file paths; it is reused only if the file list matches exactly.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from sdaie.atomic import atomic_savez
from sdaie.data.imageio import ImageLoadError, load_image
from sdaie.data.transforms import CLEAN, Perturbation

log = logging.getLogger(__name__)


@torch.no_grad()
def image_feature(extractor: nn.Module, patches: torch.Tensor, batch_patches: int = 1024,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """Feature ``[D]`` of one image from its patches ``[N, 3, P, P]``, ``batch_patches`` at a time.

    Uses the extractor's ``image_feature(patches, chunk)`` (per-patch CNN chunked, one transformer
    pass over all tokens); an extractor without it gets all patches in one forward.
    """
    patches = patches.to(device)
    chunked = getattr(extractor, "image_feature", None)
    if callable(chunked):
        return chunked(patches, chunk=batch_patches).float().cpu()
    if patches.dtype == torch.uint8:
        from sdaie.data.patches import normalize

        patches = normalize(patches)
    return extractor(patches.unsqueeze(0)).squeeze(0).float().cpu()


@dataclass
class FeatureSet:
    """Features of a list of files (rows aligned with ``paths``); failed files are listed apart."""

    features: np.ndarray
    labels: np.ndarray
    paths: list[str]
    n_patches: np.ndarray
    skipped: list[dict] = field(default_factory=list)


def extract_features(extractor: nn.Module, paths: Sequence[Path], labels: Sequence[int],
                     patcher: Callable, perturbation: Perturbation = CLEAN,
                     batch_patches: int = 1024, device: torch.device | str = "cpu",
                     strict: bool = False, progress: bool = False, desc: str = "") -> FeatureSet:
    """Load each file, perturb it, tile it with ``patcher(img) -> [N,3,P,P]`` and embed it.

    A file that cannot be decoded is skipped and reported (``strict`` raises instead).
    """
    from tqdm import tqdm

    feats, ys, kept, counts, skipped = [], [], [], [], []
    for path, y in tqdm(list(zip(paths, labels)), desc=desc, disable=not progress, leave=False):
        try:
            img = perturbation(load_image(path))
        except ImageLoadError as exc:
            if strict:
                raise
            skipped.append({"path": str(path), "reason": str(exc)})
            continue
        patches = patcher(img)
        feats.append(image_feature(extractor, patches, batch_patches, device).numpy())
        ys.append(int(y))
        kept.append(str(path))
        counts.append(int(patches.shape[0]))
    dim = feats[0].shape[0] if feats else 0
    return FeatureSet(np.stack(feats) if feats else np.zeros((0, dim), np.float32),
                      np.asarray(ys, np.int64), kept, np.asarray(counts, np.int64), skipped)


class FeatureCache:
    """``<dir>/<ckpt hash>/<set>__<perturbation>__cap<N>.npz``; no pickle (string arrays only)."""

    def __init__(self, root: str | Path, checkpoint_hash: str):
        self.dir = Path(root) / checkpoint_hash

    def path(self, set_name: str, perturbation: Perturbation, cap: int) -> Path:
        safe = set_name.replace("/", "_")
        return self.dir / f"{safe}__{perturbation.tag}__cap{cap}.npz"

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
