"""Heatmaps against ground-truth masks: spliced sets scored patch by patch, per-set figures.

Layout of a localisation root (``localisation.root``; ``sdaie synth --spliced`` writes one)::

    <root>/images/<set>/[...]/{0_real,1_fake}/NAME.jpg   labelled as any test set
    <root>/masks/<set>/[...]/1_fake/NAME.png             non-zero where the pixel is generated

A real image needs no mask (nothing generated); a generated image without a mask counts as
generated everywhere; a mask of another size than its image is reported and the image left out.

Figures per set and patch context (``metrics`` keys, :data:`COLUMNS`): image-level ROC-AUC and AP
(generated positive) of the detector's image score, spliced vs real; the same ROC-AUC when an
image is ranked by its most suspicious patch; patch-level ROC-AUC against the mask (a patch is
generated when at least ``min_cover`` of it is), over the spliced images' patches and over all
patches of the set; pixel-level F1 and IoU of the flagged area (pixels whose covering patches'
mean score is past the threshold) within the patched area, averaged over spliced images; and the
mean share of flagged patches in real images (the false-alarm rate a user sees on a map).
"""

from __future__ import annotations

import csv
import io
import logging
import math
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sdaie.atomic import atomic_savez, atomic_write_text
from sdaie.config import ConfigError, LocalisationConfig
from sdaie.data.imageio import ImageLoadError, load_image
from sdaie.data.testsets import TestSet, discover_sets, list_labelled
from sdaie.data.transforms import CLEAN
from sdaie.heatmaps import PatchMap
from sdaie.labels import FAKE, Decision
from sdaie.metrics import average_precision, overlap_scores, patch_labels, roc_auc
from sdaie.patch_scoring import (
    LatticeTiling,
    MapSpec,
    calibrate_patch_thresholds,
    contexts_list,
    score_with_maps,
)
from sdaie.scoring import BinaryScorer, FeatureScorer
from sdaie.tables import AVERAGE, ordered_rows, pct

IMAGES, MASKS = "images", "masks"
Blocks = dict[str, dict[str, dict[str, float]]]  # {context: {set: figures}}
COLUMNS = ("image_auc", "image_ap", "max_patch_auc", "patch_auc", "patch_auc_all", "f1", "iou",
           "real_flagged", "n_real", "n_spliced")
HEADERS = {"image_auc": "Image AUC", "image_ap": "Image AP", "max_patch_auc": "Max-patch AUC",
           "patch_auc": "Patch AUC", "patch_auc_all": "Patch AUC (+real)", "f1": "F1",
           "iou": "IoU", "real_flagged": "Real flagged", "n_real": "#real",
           "n_spliced": "#spliced"}


def localisation_sets(root: str | Path, names: list[str] | tuple[str, ...] = ()) -> list[TestSet]:
    """The sets under ``<root>/images``, in table order."""
    images = Path(root) / IMAGES
    if not images.is_dir():
        raise FileNotFoundError(f"localisation root {root} has no '{IMAGES}' folder "
                                f"(expected {IMAGES}/<set>/... and {MASKS}/<set>/...)")
    return discover_sets(images, names)


def read_mask(mask_file: Path, label: int, size: tuple[int, int]) -> np.ndarray:
    """Boolean ``[H, W]`` mask of an image of ``size`` (W, H); see the module docstring for
    missing masks. Raises ``ValueError`` for a mask of another size or that cannot be read."""
    w, h = size
    if not mask_file.is_file():
        return np.full((h, w), label == FAKE)
    try:
        arr = np.asarray(load_image(mask_file)).any(axis=2)  # the one loader, as for images
    except ImageLoadError as exc:
        raise ValueError(f"mask {mask_file} cannot be read: {exc}") from exc
    if arr.shape != (h, w):
        raise ValueError(f"mask {mask_file} is {arr.shape[1]}x{arr.shape[0]}, image is {w}x{h}")
    return arr


@dataclass
class Tally:
    """Per-image results of one context over one set."""

    labels: list[int] = field(default_factory=list)
    image_scores: list[float] = field(default_factory=list)  # higher = more likely generated
    max_patch: list[float] = field(default_factory=list)
    share: list[float] = field(default_factory=list)
    f1: list[float] = field(default_factory=list)
    iou: list[float] = field(default_factory=list)
    patch_scores: list[np.ndarray] = field(default_factory=list)
    patch_truth: list[np.ndarray] = field(default_factory=list)

    def add(self, label: int, image_score: float, pm: PatchMap, mask: np.ndarray,
            min_cover: float) -> None:
        keep = pm.valid.reshape(-1)  # padding cells (official layout) are no image patches
        fake = pm.fake_scores().reshape(-1)[keep]
        self.labels.append(label)
        self.image_scores.append(image_score)
        self.max_patch.append(float(np.nanmax(fake)) if np.isfinite(fake).any() else math.nan)
        self.share.append(pm.share_flagged())
        self.patch_scores.append(fake)
        self.patch_truth.append(patch_labels(mask, pm.grid.boxes(), min_cover)[keep])
        pix = pm.pixel_scores()
        flagged = pm.decision.predict_fake(pix)
        f1, iou = overlap_scores(flagged, mask, np.isfinite(pix)) if label == FAKE else (math.nan,
                                                                                        math.nan)
        self.f1.append(f1)
        self.iou.append(iou)

    def figures(self) -> dict[str, float]:
        y = np.asarray(self.labels, np.int64)
        fake = y == FAKE
        s, truth = _pooled(self.patch_scores, self.patch_truth, fake)
        s_all, truth_all = _pooled(self.patch_scores, self.patch_truth, np.ones_like(fake))
        return {"image_auc": roc_auc(y, _finite(self.image_scores)),
                "image_ap": average_precision(y, _finite(self.image_scores)),
                "max_patch_auc": roc_auc(y, _finite(self.max_patch)),
                "patch_auc": roc_auc(truth, s), "patch_auc_all": roc_auc(truth_all, s_all),
                "f1": _mean(np.asarray(self.f1)[fake]), "iou": _mean(np.asarray(self.iou)[fake]),
                "real_flagged": _mean(np.asarray(self.share)[~fake]),
                "n_real": int((~fake).sum()), "n_spliced": int(fake.sum())}


def _pooled(scores: list[np.ndarray], truth: list[np.ndarray],
            keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    chosen = [i for i in range(len(scores)) if keep[i]]
    if not chosen:
        return np.zeros(0), np.zeros(0, np.int64)
    return (_finite(np.concatenate([scores[i] for i in chosen])),
            np.concatenate([truth[i] for i in chosen]))


def _finite(x: Any) -> np.ndarray:
    """NaN scores (a patch or image the detector could not score) rank as most generated, the
    way the one-class rule treats them."""
    return np.nan_to_num(np.asarray(x, np.float64), nan=np.inf)


def _mean(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else math.nan


@dataclass
class Localiser:
    """Scores the images of a localisation set with heatmaps in every context of ``spec``."""

    scorer: BinaryScorer | FeatureScorer
    decision: Decision  # the image rule
    spec: MapSpec
    max_patches: int
    min_cover: float = 0.5
    patch_thresholds: Mapping[str, float] = field(default_factory=dict)
    protocol: str = "spec"  # the stage's evaluation protocol (crop layout)

    def score_set(self, ts: TestSet, root: Path) -> tuple[dict[str, Tally], list[dict]]:
        """Per context a :class:`Tally` of the set; the files left out with the reason."""
        tiling = LatticeTiling(self.scorer.patch_size, self.max_patches,
                               self.spec.stride or self.scorer.patch_size, protocol=self.protocol)
        tallies = {c: Tally() for c in self.spec.contexts}
        skipped = []
        files = list_labelled(ts.path)
        for path, label in zip(files.paths, files.labels):
            rel = path.relative_to(ts.path).with_suffix(".png")
            try:
                img = load_image(path)
                mask = read_mask(root / MASKS / ts.name / rel, label, img.size)
            except (ImageLoadError, ValueError) as exc:
                skipped.append({"path": str(path), "reason": str(exc)})
                continue
            result, maps = score_with_maps(self.scorer, *tiling(img), self.decision, self.spec,
                                           self.patch_thresholds)
            score = result.p_fake if result.p_fake is not None else result.log_likelihood
            image_score = float(self.decision.fake_score(np.float64(
                math.nan if score is None else score)))
            for c, pm in maps.items():
                tallies[c].add(label, image_score, pm, mask, self.min_cover)
        return tallies, skipped


def save_tally(out: Path, context: str, set_name: str, t: Tally) -> Path:
    """``localisation/<context>/<set>.npz``: per-image figures (patch scores pooled with an
    image index, so any figure can be recomputed)."""
    sizes = np.array([len(s) for s in t.patch_scores], np.int64)
    return atomic_savez(out / "localisation" / context / f"{set_name.replace('/', '_')}.npz",
                        labels=np.asarray(t.labels, np.int64),
                        image_scores=np.asarray(t.image_scores), max_patch=np.asarray(t.max_patch),
                        share=np.asarray(t.share), f1=np.asarray(t.f1), iou=np.asarray(t.iou),
                        patch_image=np.repeat(np.arange(len(sizes)), sizes),
                        patch_scores=(np.concatenate(t.patch_scores) if t.patch_scores
                                      else np.zeros(0)),
                        patch_truth=(np.concatenate(t.patch_truth) if t.patch_truth
                                     else np.zeros(0, np.int64)))


def localisation_spec(loc: LocalisationConfig, kind: str, patch_size: int) -> MapSpec | None:
    """The heatmaps the stage's localisation evaluation computes (None: no ``localisation.root``).

    The keys are checked before torch loads (``sdaie.stages.checks.localisation``); what needs
    the model (the stride must divide its patch size) raises ``ConfigError`` here, before any
    image is scored."""
    if not loc.root:
        return None
    try:
        contexts = contexts_list(loc.contexts) or MapSpec.all_contexts(kind)
        return MapSpec(loc.stride or None, contexts, loc.window).checked(patch_size)
    except ValueError as exc:
        raise ConfigError(f"localisation: {exc}") from None


def one_class_patch_thresholds(scorer: FeatureScorer, paths: list[str], loc: LocalisationConfig,
                               max_patches: int, quantile: float, log: logging.Logger,
                               protocol: str = "spec") -> dict[str, float]:
    """One-class heatmaps: per-context patch thresholds from up to
    ``localisation.calibration_images`` real training images spread over ``paths`` (empty when
    that is 0: maps then use the image threshold)."""
    n = loc.calibration_images
    if n <= 0 or not paths:
        return {}
    chosen = paths[::max(1, len(paths) // n)][:n]
    spec = MapSpec(None, MapSpec.all_contexts("oc"), loc.window)
    tiling = LatticeTiling(scorer.patch_size, max_patches, scorer.patch_size, protocol=protocol)
    thresholds, used = calibrate_patch_thresholds(scorer, chosen, tiling, spec, quantile)
    log.info("patch thresholds (log-likelihood at the %.3f quantile of the patches of %d real "
             "images): %s", quantile, used,
             ", ".join(f"{c} {t:.4f}" for c, t in thresholds.items()))
    return thresholds


def run_localisation(scorer: BinaryScorer | FeatureScorer, decision: Decision, kind: str,
                     title: str, loc: LocalisationConfig, spec: MapSpec | None, max_patches: int,
                     output: Any, patch_thresholds: Mapping[str, float] | None = None,
                     protocol: str = "spec") -> dict[str, Any]:
    """The localisation evaluation of a stage (``output``: its :class:`EvalOutput`): tables and
    the summary entries; nothing without ``localisation.root``."""
    if spec is None:
        return {}
    localiser = Localiser(scorer, decision, spec, max_patches, loc.min_cover,
                          dict(patch_thresholds or {}), protocol)
    blocks = evaluate_localisation(
        localiser, loc.root, list(loc.sets), output.out, output.log,
        lambda name, skipped: output.report_skipped(name, CLEAN, skipped))
    thresholds = {c: localiser.patch_thresholds.get(c, decision.threshold) for c in spec.contexts}
    notes = [f"sets: {loc.root}/{IMAGES}; masks: {loc.root}/{MASKS}",
             f"patches of {scorer.patch_size} px every {spec.stride or scorer.patch_size} px; "
             f"a patch is generated when >= {loc.min_cover:g} of it is (mask); window "
             f"{spec.window}",
             "patch thresholds: " + ", ".join(f"{c} {t:.4g}" for c, t in thresholds.items()),
             "Image AUC/AP: the image score, spliced positive; Max-patch AUC: images ranked by "
             "their most suspicious patch; Patch AUC over the spliced images' patches (+real: "
             "and the real images'); F1/IoU: pixels flagged vs mask, mean over spliced images; "
             "Real flagged: mean share of flagged patches in real images"]
    tables = write_localisation_tables(output.out, kind, blocks, title, notes)
    return {"localisation": blocks, "localisation_tables": [str(p) for p in tables],
            "patch_thresholds": thresholds}


def evaluate_localisation(localiser: Localiser, root: str | Path, names: list[str],
                          out: Path, log: logging.Logger,
                          report_skipped: Any = None) -> Blocks:
    """Every localisation set under ``root``: figures per context, ``localisation/`` arrays."""
    shutil.rmtree(out / "localisation", ignore_errors=True)  # the previous run's
    blocks: Blocks = {c: {} for c in localiser.spec.contexts}
    for ts in localisation_sets(root, names):
        tallies, skipped = localiser.score_set(ts, Path(root))
        for s in skipped:
            log.warning("localisation: skipped %s: %s", s["path"], s["reason"])
        if report_skipped is not None:
            report_skipped(f"localisation/{ts.name}", skipped)
        for context, t in tallies.items():
            if not t.labels:
                continue
            m = blocks[context][ts.name] = t.figures()
            save_tally(out, context, ts.name, t)
            log.info("localisation %-10s %-7s image AUC %.3f  patch AUC %.3f  F1 %.3f  IoU %.3f",
                     ts.display, context, m["image_auc"], m["patch_auc"], m["f1"], m["iou"])
    return blocks


COUNTS = ("n_real", "n_spliced")
RATES = tuple(c for c in COLUMNS if c not in COUNTS)


def _rows(results: Mapping[str, Mapping[str, float]]) -> list[dict]:
    """Table order; an average row only over two or more sets."""
    return ordered_rows(results, RATES, COUNTS, min_sets=2)


def write_localisation_tables(out: Path, kind: str, blocks: Blocks, title: str,
                              notes: list[str]) -> tuple[Path, Path]:
    """``<kind>_localisation.csv`` (fractions) and ``.md`` (percent), one block per context."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["context", "set", "display", *COLUMNS])
    lines = [f"# {title}: localisation", "", *[f"- {n}" for n in notes], ""]
    for context, results in blocks.items():
        lines += [f"## context: {context}", "",
                  "| Set | " + " | ".join(HEADERS[c] for c in COLUMNS) + " |",
                  "|---|" + "---:|" * len(COLUMNS)]
        for r in _rows(results):
            cells = [str(int(r[c])) if c in COUNTS else pct(r[c]) for c in COLUMNS]
            name = f"**{r['display']}**" if r["set"] == AVERAGE else r["display"]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
            if r["set"] != AVERAGE:
                writer.writerow([context, r["set"], r["display"],
                                 *[int(r[c]) if c in COUNTS else
                                   ("" if math.isnan(r[c]) else f"{r[c]:.6f}") for c in COLUMNS]])
        lines.append("")
    return (atomic_write_text(out / f"{kind}_localisation.csv", buf.getvalue()),
            atomic_write_text(out / f"{kind}_localisation.md", "\n".join(lines)))
