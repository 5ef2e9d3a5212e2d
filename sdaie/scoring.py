"""Images in, per-image results out: the one scoring path of the evaluation stages, ``sdaie detect``
and :class:`sdaie.api.Detector`.

file -> RGB image (:func:`~sdaie.data.imageio.load_image`) -> :class:`Tiling` (perturbation, then
every non-overlapping grid patch, capped; spec section 3) -> a scorer -> :class:`ImageScore`.
A large image has thousands of patches: the extractor's per-patch part (SRM residual, CNN,
covariance pooling) runs ``batch_patches`` patches at a time, then the transformer runs once over
all tokens of the image (``PatchExtractor.image_feature``), which equals one forward over all
patches with memory bounded by ``batch_patches``. Small images are the opposite case: one forward
per image costs a fixed ~16 ms of per-call overhead on a CPU (about 25 ms for one 64-px patch
against 9 ms per image in a batch of 16, ``docs/first-hour.md``), so :func:`score_files` gives
consecutive images with the same patch count to the scorer together, up to ``batch_patches``
patches per forward (the transformer still sees each image's tokens alone; results equal the
one-at-a-time ones to float rounding, about 1e-6).

Features of whole test sets are cached on disk for the one-class stage (:class:`FeatureCache`):
one ``.npz`` per (checkpoint hash, test set, perturbation, patch cap, protocol) holding, per
file, the SHA-256 of its bytes, so a file met again (the same real folder in several test sets, or
a later run) is looked up by content instead of extracted again.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm import tqdm

from sdaie.atomic import atomic_savez
from sdaie.config import PROTOCOLS
from sdaie.data.imageio import ImageLoadError, load_image
from sdaie.data.patches import grid_patches
from sdaie.data.transforms import CLEAN, Perturbation
from sdaie.models.binary import fake_probability
from sdaie.oneclass.gmm import OneClassGMM
from sdaie.pixels import normalize

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
    return float(fake_probability(logits))


class Scorer(Protocol):
    """Patches of one image -> its :class:`ImageScore`."""

    @property
    def patch_size(self) -> int: ...

    def __call__(self, patches: torch.Tensor) -> ImageScore: ...


def _stacked(patch_list: Sequence[torch.Tensor], device: torch.device | str) -> torch.Tensor:
    """Images with the same patch count as one normalised ``[B, N, 3, P, P]`` batch."""
    x = torch.stack(list(patch_list)).to(device)
    return normalize(x) if x.dtype == torch.uint8 else x


def score_batch(scorer: Scorer, patch_list: Sequence[torch.Tensor]) -> list[ImageScore]:
    """Several images' results from one forward where the scorer can (``batch``), else one by one."""
    batch = getattr(scorer, "batch", None)
    if len(patch_list) > 1 and callable(batch):
        return batch(patch_list)
    return [scorer(p) for p in patch_list]


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

    @torch.no_grad()
    def batch(self, patch_list: Sequence[torch.Tensor]) -> list[ImageScore]:
        """Images with equal patch counts in one forward."""
        logits = self.detector(_stacked(patch_list, self.device)).float()
        p = fake_probability(logits).cpu().tolist()
        return [ImageScore(int(x.shape[0]), p_fake=float(v)) for x, v in zip(patch_list, p)]


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
        return self.result_of(int(patches.shape[0]), feature)

    @torch.no_grad()
    def batch(self, patch_list: Sequence[torch.Tensor]) -> list[ImageScore]:
        """Images with equal patch counts in one forward."""
        feats = self.extractor(_stacked(patch_list, self.device)).float().cpu().numpy()
        return [self.result_of(int(x.shape[0]), f) for x, f in zip(patch_list, feats)]

    def result_of(self, n_patches: int, feature: np.ndarray) -> ImageScore:
        """The image's score from its feature (heatmaps reuse it for the image they map)."""
        out = ImageScore(n_patches, feature=feature)
        if self.gmm is not None and np.isfinite(feature).all():
            ll = float(self.gmm.score(feature[None])[0])
            out.log_likelihood = ll
            out.percentile = float(self.gmm.percentile(np.array([ll]))[0])
        return out


# ---------------------------------------------------------------------------------------------
# Many files
# ---------------------------------------------------------------------------------------------


NOT_CACHED = "not_cached"  # key of a skipped entry whose reason may not hold on a re-run


@dataclass
class ScoredFiles:
    """Results of the readable files among those asked for; the others listed with the reason."""

    results: list[ImageScore]
    kept: list[int]  # position in the requested list of each result
    skipped: list[dict]


def score_files(scorer: Scorer, paths: Sequence[Path | str], patcher: Patcher,
                strict: bool = False, progress: bool = True, desc: str = "",
                batch_patches: int = 1024) -> ScoredFiles:
    """Load, tile and score each file; an undecodable one is skipped and reported (``strict``
    raises :class:`ImageLoadError` instead), and so is one whose result has a
    :meth:`ImageScore.problem` (marked ``NOT_CACHED``: a non-finite number must neither enter
    the metrics nor be remembered as the file's result). Consecutive images with the same patch
    count are scored together, at most ``batch_patches`` patches per forward (module docstring)."""
    results, kept, skipped = [], [], []
    pending: list[tuple[int, torch.Tensor]] = []

    def flush() -> None:
        for (i, _), r in zip(pending, score_batch(scorer, [p for _, p in pending])):
            if (problem := r.problem()) is not None:
                skipped.append({"path": str(paths[i]), "reason": problem, NOT_CACHED: True})
                continue
            results.append(r)
            kept.append(i)
        pending.clear()

    paths = list(paths)
    for i, path in enumerate(tqdm(paths, desc=desc, disable=not progress, leave=False)):
        try:
            img = load_image(path)
        except ImageLoadError as exc:
            if strict:
                raise
            skipped.append({"path": str(path), "reason": str(exc)})
            continue
        patches = patcher(img)
        n = int(patches.shape[0])
        if pending and (n != pending[0][1].shape[0] or n * (len(pending) + 1) > batch_patches):
            flush()
        pending.append((i, patches))
    if pending:
        flush()
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
                     patcher: Patcher, batch_patches: int = 1024,
                     device: torch.device | str = "cpu", strict: bool = False,
                     progress: bool = False, desc: str = "") -> FeatureSet:
    """Tile each readable file with ``patcher(img) -> [N,3,P,P]`` and embed it (a perturbation
    belongs in the patcher, e.g. :class:`Tiling`, which applies it as the protocol says)."""
    paths = list(paths)
    scorer = FeatureScorer(extractor, batch_patches, device)
    done = score_files(scorer, paths, patcher, strict, progress, desc, batch_patches)
    feats = [r.feature for r in done.results]
    dim = feats[0].shape[0] if feats else 0
    return FeatureSet(np.stack(feats) if feats else np.zeros((0, dim), np.float32),
                      np.asarray([int(labels[i]) for i in done.kept], np.int64),
                      [str(paths[i]) for i in done.kept],
                      np.asarray([r.n_patches for r in done.results], np.int64), done.skipped)


# What the cache knows of one file's content: (feature or None, patch count, skip reason or None).
Known = tuple[np.ndarray | None, int, str | None]


class FeatureCache:
    """``<dir>/<ckpt hash>/<set>__<perturbation>__cap<N>[__official].npz``; no pickle (string
    arrays only). The spec protocol's names carry no suffix (caches written before the protocol
    existed stay valid).

    Each file also records the content hash of every requested file (``hashes``), so
    :meth:`known` can serve a file met in another set, or in an earlier run, by its bytes.
    """

    def __init__(self, root: str | Path, checkpoint_hash: str, protocol: str = "spec"):
        self.dir = Path(root) / checkpoint_hash
        self.suffix = "" if protocol == "spec" else f"__{protocol}"
        self._known: dict[tuple[str, int], dict[str, Known]] = {}

    def path(self, set_name: str, perturbation: Perturbation, cap: int) -> Path:
        safe = set_name.replace("/", "_")
        return self.dir / f"{safe}__{perturbation.tag}__cap{cap}{self.suffix}.npz"

    def load(self, set_name: str, perturbation: Perturbation, cap: int,
             expected_paths: Sequence[Path],
             hashes: Sequence[str] | None = None) -> FeatureSet | None:
        """The cached set if present and computed from exactly ``expected_paths`` (and, when
        ``hashes`` are given, from files with exactly that content), else None."""
        path = self.path(set_name, perturbation, cap)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                requested = [str(p) for p in z["requested"]]
                if requested != [str(p) for p in expected_paths]:
                    return None
                if hashes is not None and ("hashes" not in z.files
                                           or [str(h) for h in z["hashes"]] != list(hashes)):
                    return None
                return FeatureSet(z["features"], z["labels"], [str(p) for p in z["paths"]],
                                  z["n_patches"], json.loads(str(z["skipped"])))
        except (OSError, ValueError, KeyError) as exc:
            log.warning("ignoring unreadable feature cache %s: %s", path, exc)
            return None

    def save(self, set_name: str, perturbation: Perturbation, cap: int,
             requested: Sequence[Path], fs: FeatureSet,
             hashes: Sequence[str] | None = None) -> Path:
        """Write one set; ``hashes`` (content hash per requested file) make its files known."""
        extra = {} if hashes is None else {"hashes": np.array(list(hashes), dtype=str)}
        if hashes is not None:
            self._remember(self.known(perturbation, cap), requested, hashes, fs)
        return atomic_savez(self.path(set_name, perturbation, cap), features=fs.features,
                            labels=fs.labels, paths=np.array(fs.paths, dtype=str),
                            n_patches=fs.n_patches,
                            requested=np.array([str(p) for p in requested], dtype=str),
                            skipped=np.array(json.dumps(fs.skipped)), **extra)

    def known(self, perturbation: Perturbation, cap: int) -> dict[str, Known]:
        """Content hash -> what is known of that content under (perturbation, cap), from every
        cached set file and what this process saved since. Only the latest (perturbation, cap)
        is held: evaluation never returns to an earlier one, and each holds every set's features."""
        key = (perturbation.tag, cap)
        if key not in self._known:
            self._known = {key: {}}
            for path in sorted(self.dir.glob(f"*__{perturbation.tag}__cap{cap}{self.suffix}.npz")):
                try:
                    with np.load(path, allow_pickle=False) as z:
                        if "hashes" not in z.files:
                            continue
                        fs = FeatureSet(z["features"], z["labels"], [str(p) for p in z["paths"]],
                                        z["n_patches"], json.loads(str(z["skipped"])))
                        requested, hashes = [str(p) for p in z["requested"]], z["hashes"]
                except (OSError, ValueError, KeyError) as exc:
                    log.warning("ignoring unreadable feature cache %s: %s", path, exc)
                    continue
                self._remember(self._known[key], requested, [str(h) for h in hashes], fs)
        return self._known[key]

    @staticmethod
    def _remember(table: dict[str, Known], requested: Sequence[Path | str],
                  hashes: Sequence[str], fs: FeatureSet) -> None:
        by_path = known_by_path(requested, fs)
        for path, h in zip(map(str, requested), hashes):
            if h:
                table[h] = by_path[path]


def known_by_path(requested: Sequence[Path | str], fs: FeatureSet) -> dict[str, Known]:
    """What a :class:`FeatureSet` says of each requested file: its feature, or why it has none."""
    row = {p: i for i, p in enumerate(fs.paths)}
    reason = {s["path"]: s["reason"] for s in fs.skipped}
    return {p: ((fs.features[row[p]], int(fs.n_patches[row[p]]), None) if p in row
                else (None, 0, reason.get(p, "not scored")))
            for p in map(str, requested)}
