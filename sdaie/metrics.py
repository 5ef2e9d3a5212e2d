"""Detection metrics for one test set, with the positive class always stated.

Label convention everywhere: ``1`` = AI-generated (fake), ``0`` = real. Scores are "how fake":
higher means more likely generated (the one-class detector passes minus its log-likelihood).

Average precision depends on which class is positive. The official one-class evaluation ranks by
log-likelihood with REAL as positive (``ap_real_pos``); the official binary evaluation uses FAKE as
positive (``ap_fake_pos``). Both are always computed and named by their positive class; tables
mark which one is the official figure of the stage. ROC-AUC is symmetric in that choice.

AP and ROC-AUC are implemented here (NumPy) with scikit-learn's definitions, ties included:
AP = sum_n (R_n - R_{n-1}) P_n over distinct thresholds; ROC-AUC = trapezoidal area, equal to the
Mann-Whitney probability with ties counted one half. The tests compare them with scikit-learn.

Pretext metrics (the EXIF heads) are kept as (correct, count) sums, so batches and ranks add up
exactly. Class heads: top-1 accuracy over photos whose label is present (both photos of each pair
count). Rank heads: pairwise ranking accuracy over pairs whose labels are both present and differ
(ties in the labels carry no order and are excluded); a pair is correct when the score difference
has the sign of the label difference, and an exact score tie counts one half.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from sdaie.config import HeadConfig, head_names
from sdaie.labels import FAKE, REAL

METRIC_KEYS = ("acc", "real_acc", "fake_acc", "ap_real_pos", "ap_fake_pos", "roc_auc",
               "n_real", "n_fake")


def _binary_clf_curve(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative true and false positives at each distinct score, highest score first."""
    order = np.argsort(-score, kind="mergesort")
    score, y = score[order], y[order]
    distinct = np.flatnonzero(score[1:] != score[:-1])  # not np.diff: inf - inf is NaN, "distinct"
    ends = np.r_[distinct, y.size - 1]
    tps = np.cumsum(y)[ends]
    fps = (1 + ends) - tps
    return tps.astype(np.float64), fps.astype(np.float64)


def average_precision(y_true: Sequence[int], score: Sequence[float]) -> float:
    """AP with ``y_true == 1`` positive; NaN when there is no positive."""
    y = np.asarray(y_true, dtype=np.int64)
    s = np.asarray(score, dtype=np.float64)
    if y.sum() == 0:
        return math.nan
    tps, fps = _binary_clf_curve(y, s)
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    recall_prev = np.r_[0.0, recall[:-1]]
    return float(np.sum((recall - recall_prev) * precision))


def roc_auc(y_true: Sequence[int], score: Sequence[float]) -> float:
    """Area under the ROC curve with ``y_true == 1`` positive; NaN unless both classes occur."""
    y = np.asarray(y_true, dtype=np.int64)
    s = np.asarray(score, dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int(y.size - y.sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    tps, fps = _binary_clf_curve(y, s)
    tpr = np.r_[0.0, tps / n_pos]
    fpr = np.r_[0.0, fps / n_neg]
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))  # trapezoid rule


def detection_metrics(labels: Sequence[int], fake_score: Sequence[float],
                      predicted_fake: Sequence[bool]) -> dict[str, float]:
    """All per-set figures.

    ``predicted_fake`` is the detector's decision (its threshold rule stays with the detector:
    one-class says real iff log p > t, binary says fake iff p > 0.5). Accuracies are fractions in
    [0, 1]; a class absent from the set gives NaN for the figures that need it.
    """
    y = np.asarray(labels, dtype=np.int64)
    s = np.asarray(fake_score, dtype=np.float64)
    pred = np.asarray(predicted_fake, dtype=bool)
    if not (y.shape == s.shape == pred.shape) or y.ndim != 1:
        raise ValueError(f"labels, scores and predictions differ in shape: {y.shape} {s.shape} {pred.shape}")
    if y.size and not np.isin(y, (REAL, FAKE)).all():
        raise ValueError("labels must be 0 (real) or 1 (fake)")
    real, fake = y == REAL, y == FAKE
    correct = pred == fake
    nan = math.nan
    return {
        "acc": float(correct.mean()) if y.size else nan,
        "real_acc": float(correct[real].mean()) if real.any() else nan,
        "fake_acc": float(correct[fake].mean()) if fake.any() else nan,
        "ap_real_pos": average_precision(FAKE - y, -s),
        "ap_fake_pos": average_precision(y, s),
        "roc_auc": roc_auc(y, s),
        "n_real": int(real.sum()),
        "n_fake": int(fake.sum()),
    }


# --------------------------------------------------------------------------------------------
# Pretext heads
# --------------------------------------------------------------------------------------------


def _rank_counts(d: torch.Tensor, dy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Correct (ties in score = 1/2) and count over pairs with a finite, non-zero label difference."""
    valid = ~torch.isnan(dy) & (dy != 0)
    agree = torch.where(d == 0, torch.full_like(d, 0.5), ((d > 0) == (dy > 0)).to(d.dtype))
    return (agree * valid).sum(), valid.sum()


def _class_counts(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    valid = ~torch.isnan(y)
    hit = (logits.argmax(dim=1).to(y.dtype) == y) & valid
    return hit.sum(), valid.sum()


def pretext_counts(out1: Sequence[torch.Tensor], out2: Sequence[torch.Tensor], y1: torch.Tensor,
                   y2: torch.Tensor, heads: Sequence[HeadConfig]) -> torch.Tensor:
    """``[H, 2]`` float64 tensor of (correct, count) per head, on the outputs' device."""
    rows = []
    for i, head in enumerate(heads):
        o1, o2 = out1[i].detach(), out2[i].detach()
        if head.kind == "rank":
            c, n = _rank_counts((o1[:, 0] - o2[:, 0]).double(), (y1[:, i] - y2[:, i]).double())
        else:
            c1, n1 = _class_counts(o1, y1[:, i])
            c2, n2 = _class_counts(o2, y2[:, i])
            c, n = c1 + c2, n1 + n2
        rows.append(torch.stack([c.double(), n.double()]))
    return torch.stack(rows)


class PretextMetrics:
    """Accumulates :func:`pretext_counts` over batches; ``counts`` can be all-reduced as is."""

    def __init__(self, heads: Sequence[HeadConfig]) -> None:
        self.heads = list(heads)
        self.names = head_names(self.heads)
        self.counts = torch.zeros(len(self.heads), 2, dtype=torch.float64)

    def update(self, out1: Sequence[torch.Tensor], out2: Sequence[torch.Tensor], y1: torch.Tensor,
               y2: torch.Tensor) -> None:
        self.counts += pretext_counts(out1, out2, y1, y2, self.heads).cpu()

    def accuracy(self) -> dict[str, float]:
        """Per-head accuracy (NaN for a head that saw nothing)."""
        return {name: (float(c / n) if n > 0 else math.nan)
                for name, (c, n) in zip(self.names, self.counts.tolist())}

    def summary(self) -> dict[str, dict[str, float]]:
        """``{head: {"kind", "accuracy", "count"}}`` for JSON logs."""
        acc = self.accuracy()
        return {name: {"kind": h.kind, "accuracy": acc[name], "count": int(n)}
                for name, h, (_, n) in zip(self.names, self.heads, self.counts.tolist())}


def pairwise_ranking_accuracy(scores: torch.Tensor, labels: torch.Tensor,
                              block: int = 1024) -> tuple[float, int]:
    """Over ALL pairs of a set (held-out evaluation): (accuracy, number of ordered-label pairs).

    Pairs with a missing or tied label are excluded; a score tie counts one half. For binary
    labels this equals the ROC AUC of the scores. Memory is ``block x n`` at a time.
    """
    s = scores.detach().double().flatten()
    y = labels.detach().double().flatten()
    keep = ~torch.isnan(y)
    s, y = s[keep], y[keep]
    correct = torch.zeros((), dtype=torch.float64)
    count = torch.zeros((), dtype=torch.int64)
    cols = torch.arange(len(s))
    for start in range(0, len(s), block):
        rows = torch.arange(start, min(start + block, len(s)))
        upper = cols[None, :] > rows[:, None]  # each unordered pair once
        dy = torch.where(upper, y[rows, None] - y[None, :], torch.zeros((), dtype=torch.float64))
        c, n = _rank_counts(s[rows, None] - s[None, :], dy)
        correct += c
        count += n
    n = int(count)
    return (float(correct) / n if n else math.nan), n


def heldout_metrics(outputs: Sequence[torch.Tensor], labels: torch.Tensor,
                    heads: Sequence[HeadConfig]) -> dict[str, dict[str, float | int | str | None]]:
    """Per-head figures over a set of photos scored once each (pretext validation).

    Rank heads: pairwise ranking accuracy over ALL pairs of photos with different labels (chance
    0.5); ``count`` = such pairs, ``photos`` = labelled photos. Class heads: top-1 accuracy over
    labelled photos, with the majority-class baseline (the best any constant guess scores on
    this very set) so a head that learnt only the class frequencies is seen as such.
    """
    summary: dict[str, dict[str, float | int | str | None]] = {}
    for name, head, out, y in zip(head_names(heads), heads, outputs, labels.T):
        known = ~torch.isnan(y)
        if head.kind == "rank":
            acc, pairs = pairwise_ranking_accuracy(out[:, 0], y)
            summary[name] = {"kind": "rank", "accuracy": acc, "count": pairs,
                             "photos": int(known.sum()), "baseline": 0.5}
            continue
        y_known = y[known].long()
        n = int(known.sum())
        hits = int((out[known].argmax(dim=1) == y_known).sum()) if n else 0
        freq = torch.bincount(y_known, minlength=out.shape[1]) if n else torch.zeros(1, dtype=torch.long)
        summary[name] = {"kind": "class", "accuracy": hits / n if n else math.nan, "count": n,
                         "baseline": int(freq.max()) / n if n else math.nan,
                         "majority_class": int(freq.argmax()) if n else None}
    return summary


# --------------------------------------------------------------------------------------------
# Localisation (heatmaps against ground-truth masks)
# --------------------------------------------------------------------------------------------


def mask_coverage(mask: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Share of each box ``(x0, y0, x1, y1)`` whose pixels are set in ``mask`` ``[H, W]``.

    A box's pixels outside the image (padding) count as not set, so the share is always over
    the full box area. Summed-area table: exact, one pass over the mask.
    """
    m = np.asarray(mask, dtype=bool)
    h, w = m.shape
    table = np.zeros((h + 1, w + 1), np.int64)
    table[1:, 1:] = m.cumsum(0).cumsum(1)
    b = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    x0, y0 = np.clip(b[:, 0], 0, w), np.clip(b[:, 1], 0, h)
    x1, y1 = np.clip(b[:, 2], 0, w), np.clip(b[:, 3], 0, h)
    inside = table[y1, x1] - table[y0, x1] - table[y1, x0] + table[y0, x0]
    area = np.maximum((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), 1)
    return inside / area


def patch_labels(mask: np.ndarray, boxes: np.ndarray, min_cover: float = 0.5) -> np.ndarray:
    """1 for a patch at least ``min_cover`` generated (by the mask), else 0."""
    return (mask_coverage(mask, boxes) >= min_cover).astype(np.int64)


def overlap_scores(predicted: np.ndarray, truth: np.ndarray,
                   valid: np.ndarray | None = None) -> tuple[float, float]:
    """(F1, IoU) of a predicted pixel mask against the true one, over the ``valid`` pixels.

    Both empty: (1, 1), nothing to find and nothing claimed; one empty: (0, 0).
    """
    p, t = np.asarray(predicted, dtype=bool), np.asarray(truth, dtype=bool)
    if valid is not None:
        v = np.asarray(valid, dtype=bool)
        p, t = p[v], t[v]
    tp = int(np.sum(p & t))
    fp, fn = int(np.sum(p & ~t)), int(np.sum(~p & t))
    if tp + fp + fn == 0:
        return 1.0, 1.0
    return 2 * tp / (2 * tp + fp + fn), tp / (tp + fp + fn)
