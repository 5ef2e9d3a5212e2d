"""Heatmaps in the same pass as detection: the image's score and a score per patch, CNN run once.

image -> :class:`LatticeTiling` (perturbation, then the evaluation grid at a ``stride``,
:func:`~sdaie.data.patchgrid.lattice_patches`) -> tokens of every lattice patch (the grid patches
first, chunked exactly as detection chunks them, so the image's score is bit for bit the one
:mod:`sdaie.scoring` gives) -> the image feature from the grid tokens, and a feature per patch in
each asked-for context (:mod:`sdaie.models.patchwise`) -> p(fake) (binary: the detector's ``fc``
on the patch feature) or GMM log-likelihood (one-class) per patch -> :class:`PatchMap` per context.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sdaie.data.imageio import ImageLoadError, load_image
from sdaie.data.patchgrid import PatchGrid, check_stride, lattice_patches
from sdaie.data.transforms import CLEAN, Perturbation
from sdaie.heatmaps import PatchMap
from sdaie.labels import Decision
from sdaie.models.base import PatchExtractor
from sdaie.models.binary import fake_probability
from sdaie.models.patchwise import CONTEXTS, check_context, chunked_tokens, patch_features
from sdaie.oneclass.gmm import quantile_threshold
from sdaie.oneclass.gmm_torch import score_samples as gmm_score_samples
from sdaie.scoring import BinaryScorer, FeatureScorer, ImageScore

# How each detector scores a patch on its own unless told otherwise: the context that localised
# best on the synthetic world's spliced sets (docs/heatmaps.md, "Which context").
DEFAULT_CONTEXT = {"bc": "alone", "oc": "window"}


@dataclass(frozen=True)
class MapSpec:
    """What heatmaps to compute: lattice stride (None: the patch size, i.e. the evaluation grid
    itself), the contexts a patch is scored in, and the window side for ``window``."""

    stride: int | None = None
    contexts: tuple[str, ...] = ("window",)
    window: int = 3

    @classmethod
    def default(cls, kind: str, stride: int | None = None, contexts: Sequence[str] = (),
                window: int = 3) -> MapSpec:
        """``contexts`` empty: the detector's own default context only."""
        return cls(stride, tuple(contexts) or (DEFAULT_CONTEXT[kind],), window)

    @staticmethod
    def all_contexts(kind: str) -> tuple[str, ...]:
        """Every context, the detector's default first (for evaluations that compare them)."""
        return (DEFAULT_CONTEXT[kind], *(c for c in CONTEXTS if c != DEFAULT_CONTEXT[kind]))

    def checked(self, patch_size: int) -> MapSpec:
        if not self.contexts:
            raise ValueError("give at least one patch context")
        for c in self.contexts:
            check_context(c, self.window)
        check_stride(patch_size, self.stride or patch_size)
        return self


@dataclass(frozen=True)
class LatticeTiling:
    """Like :class:`sdaie.scoring.Tiling`, for a heatmap: perturbation, then the lattice."""

    patch_size: int
    max_patches: int
    stride: int
    perturbation: Perturbation = CLEAN
    protocol: str = "spec"  # as Tiling's: the crop layout and the resize rounding

    def __call__(self, img: Image.Image) -> tuple[torch.Tensor, PatchGrid]:
        return lattice_patches(self.perturbation(img, self.protocol), self.patch_size,
                               self.stride, self.max_patches, self.protocol)


def _extractor(scorer: BinaryScorer | FeatureScorer) -> PatchExtractor:
    if isinstance(scorer, BinaryScorer):
        return scorer.detector.trainable_extractor
    return scorer.extractor


@torch.no_grad()
def lattice_tokens(extractor: PatchExtractor, patches: torch.Tensor, grid: PatchGrid,
                   chunk: int, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens of every lattice patch ``[cells, D]``, tokens of the grid patches in detection's
    order); the grid patches go through the CNN first in detection's chunks, the rest after."""
    cells = torch.from_numpy(grid.grid_cells())
    grid_tokens = chunked_tokens(extractor, patches[cells].to(device), chunk)
    if len(cells) == len(patches) and torch.equal(cells, torch.arange(len(patches))):
        return grid_tokens, grid_tokens
    tokens = grid_tokens.new_empty((len(patches), grid_tokens.shape[1]))
    tokens[cells.to(tokens.device)] = grid_tokens
    rest = torch.ones(len(patches), dtype=torch.bool)
    rest[cells] = False
    if rest.any():
        tokens[rest.to(tokens.device)] = chunked_tokens(extractor, patches[rest].to(device), chunk)
    return tokens, grid_tokens


def _patch_scores(scorer: BinaryScorer | FeatureScorer, features: torch.Tensor) -> np.ndarray:
    """Per-patch p(fake) (binary) or GMM log-likelihood (one-class, computed in torch on the
    features' device, :mod:`sdaie.oneclass.gmm_torch`; NaN for a non-finite feature)."""
    if isinstance(scorer, BinaryScorer):
        logits = scorer.detector.fc(features).float()
        return fake_probability(logits).cpu().double().numpy()
    f = features.float()
    out = torch.full((len(f),), float("nan"), dtype=torch.float64, device=f.device)
    ok = torch.isfinite(f).all(dim=1)
    if scorer.gmm is not None and bool(ok.any()):
        out[ok] = gmm_score_samples(scorer.gmm.gmm, f[ok])
    return out.cpu().numpy()


def _image_score(scorer: BinaryScorer | FeatureScorer, extractor: PatchExtractor,
                 grid_tokens: torch.Tensor) -> ImageScore:
    """The image's result from its grid tokens, by the same operations as the scorer's."""
    feature = extractor.aggregate(grid_tokens.unsqueeze(0))[0]
    n = int(grid_tokens.shape[0])
    if isinstance(scorer, BinaryScorer):
        logits = scorer.detector.fc(feature).float()
        return ImageScore(n, p_fake=float(fake_probability(logits)))
    return scorer.result_of(n, feature.float().cpu().numpy())


@torch.no_grad()
def score_with_maps(scorer: BinaryScorer | FeatureScorer, patches: torch.Tensor,
                    grid: PatchGrid, decision: Decision, spec: MapSpec,
                    patch_thresholds: Mapping[str, float] | None = None,
                    ) -> tuple[ImageScore, dict[str, PatchMap]]:
    """The image's :class:`ImageScore` (equal to ``scorer(grid patches)``) and one
    :class:`PatchMap` per context of ``spec``, from one CNN pass over the lattice patches.

    A map's threshold is ``patch_thresholds[context]`` if given, else the image's."""
    extractor = _extractor(scorer)
    tokens, grid_tokens = lattice_tokens(extractor, patches, grid, scorer.batch_patches,
                                         scorer.device)
    result = _image_score(scorer, extractor, grid_tokens)
    kind = "bc" if isinstance(scorer, BinaryScorer) else "oc"
    maps = {}
    for context in spec.contexts:
        feats = patch_features(extractor, tokens, context, grid.rows, grid.cols, grid.step,
                               spec.window)
        scores = _patch_scores(scorer, feats).reshape(grid.rows, grid.cols)
        threshold = (patch_thresholds or {}).get(context, decision.threshold)
        maps[context] = PatchMap(scores, grid, kind, context, spec.window, float(threshold),
                                 decision.fake_when_higher)
    return result, maps


def contexts_list(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"window,alone"`` or a list -> a checked tuple of contexts."""
    items = [t.strip() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    for c in items:
        check_context(c)
    return tuple(dict.fromkeys(items))


def calibrate_patch_thresholds(scorer: FeatureScorer, paths: Sequence[Path | str],
                               tiling: LatticeTiling, spec: MapSpec,
                               quantile: float) -> tuple[dict[str, float], int]:
    """One-class patch thresholds: per context, the log-likelihood at ``quantile`` of all patches
    of the real images ``paths`` (the image threshold's rule, applied to patches); and the number
    of images used (unreadable ones are passed over).

    Patch features are not image features (fewer tokens meet in the transformer), so the image
    threshold does not carry over: on the synthetic world it flags 13 to 37 % of real patches.
    """
    scores: dict[str, list[np.ndarray]] = {c: [] for c in spec.contexts}
    used = 0
    for path in paths:
        try:
            img = load_image(path)
        except ImageLoadError:
            continue
        _, maps = score_with_maps(scorer, *tiling(img), Decision(0.0, False), spec)
        for c, m in maps.items():
            scores[c].append(m.scores[np.isfinite(m.scores)])
        used += 1
    if not used:
        return {}, 0
    return {c: quantile_threshold(np.concatenate(v), quantile) for c, v in scores.items()}, used
