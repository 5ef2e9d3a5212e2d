import math

import pytest
import torch
from sklearn.metrics import roc_auc_score

from sdaie.config import HeadConfig
from sdaie.metrics import PretextMetrics, pairwise_ranking_accuracy, pretext_counts

NAN = float("nan")
HEADS = [HeadConfig("ISO", "rank"), HeadConfig("Make", "class", classes=3)]


def test_counts_exclude_ties_and_missing():
    out1 = [torch.tensor([[1.0], [0.0], [2.0], [1.0], [0.0]]),
            torch.tensor([[5.0, 0, 0], [0, 5.0, 0], [0, 0, 5.0], [5.0, 0, 0], [0, 5.0, 0]])]
    out2 = [torch.tensor([[0.0], [1.0], [1.0], [1.0], [3.0]]),
            torch.tensor([[0, 5.0, 0], [0, 5.0, 0], [0, 5.0, 0], [0, 5.0, 0], [0, 5.0, 0]])]
    # ISO pairs: correct, wrong (s1<s2 but y1>y2), tie in label (excluded), score tie (1/2), NaN (excluded)
    y1 = torch.tensor([[3.0, 0], [5.0, 1], [2.0, 0], [4.0, NAN], [NAN, 1]])
    y2 = torch.tensor([[1.0, 1], [1.0, 1], [2.0, 1], [1.0, 2], [1.0, 1]])
    counts = pretext_counts(out1, out2, y1, y2, HEADS)
    assert counts[0].tolist() == [1.5, 3.0]
    # class: image 1 labels 0,1,0,-,1 vs argmax 0,1,2,0,1 -> 3/4; image 2 labels 1,1,1,2,1 vs 1 -> 4/5
    assert counts[1].tolist() == [7.0, 9.0]


def test_accumulator_adds_batches_and_reports_nan_for_empty():
    m = PretextMetrics(HEADS)
    out = [torch.tensor([[1.0]]), torch.tensor([[1.0, 0, 0]])]
    for _ in range(3):
        m.update(out, [torch.tensor([[0.0]]), torch.tensor([[1.0, 0, 0]])],
                 torch.tensor([[2.0, NAN]]), torch.tensor([[1.0, NAN]]))
    acc = m.accuracy()
    assert acc["ISO"] == 1.0 and math.isnan(acc["Make"])
    assert m.summary()["ISO"] == {"kind": "rank", "accuracy": 1.0, "count": 3}


def test_all_pairs_ranking_accuracy_equals_auc_for_binary_labels():
    g = torch.Generator().manual_seed(1)
    labels = (torch.rand(300, generator=g) > 0.4).double()
    scores = labels + torch.randn(300, generator=g)
    acc, n = pairwise_ranking_accuracy(scores, labels, block=64)
    assert n == int(labels.sum() * (300 - labels.sum()))
    assert acc == pytest.approx(roc_auc_score(labels.numpy(), scores.numpy()), abs=1e-12)


def test_all_pairs_ranking_accuracy_brute_force_with_nan():
    scores = torch.tensor([0.1, 0.5, 0.3, 0.9, 0.2])
    labels = torch.tensor([1.0, 3.0, NAN, 2.0, 1.0])
    acc, n = pairwise_ranking_accuracy(scores, labels, block=2)
    keep = [0, 1, 3, 4]
    good = tot = 0
    for a in keep:
        for b in keep:
            if a < b and labels[a] != labels[b]:
                tot += 1
                good += (scores[a] - scores[b]) * (labels[a] - labels[b]) > 0
    assert n == tot == 5 and acc == pytest.approx(float(good) / tot)


def test_heldout_metrics_against_brute_force_and_sklearn():
    """All pairs of photos for rank heads, photo-level top-1 and majority share for class heads."""
    from itertools import combinations

    from sklearn.metrics import accuracy_score

    from sdaie.metrics import heldout_metrics

    g = torch.Generator().manual_seed(0)
    heads = [HeadConfig(tag="ISOSpeedRatings", kind="rank"), HeadConfig(tag="Make", kind="class", classes=3)]
    n = 40
    rank_y = torch.randint(0, 5, (n,), generator=g).double()
    rank_y[::7] = float("nan")
    class_y = torch.randint(0, 3, (n,), generator=g).double()
    class_y[::9] = float("nan")
    scores = rank_y.nan_to_num(2.0) + torch.randn(n, generator=g, dtype=torch.float64) * 2
    logits = torch.randn(n, 3, generator=g)
    got = heldout_metrics([scores[:, None], logits],
                          torch.stack([rank_y, class_y], dim=1), heads)
    good = total = 0
    for i, j in combinations(range(n), 2):
        if not (torch.isnan(rank_y[i]) or torch.isnan(rank_y[j]) or rank_y[i] == rank_y[j]):
            total += 1
            good += bool((scores[i] > scores[j]) == (rank_y[i] > rank_y[j]))
    assert got["ISOSpeedRatings"]["count"] == total and got["ISOSpeedRatings"]["photos"] == 34
    assert got["ISOSpeedRatings"]["accuracy"] == pytest.approx(good / total)
    known = ~torch.isnan(class_y)
    y = class_y[known].long().numpy()
    assert got["Make"]["count"] == len(y)
    assert got["Make"]["accuracy"] == pytest.approx(accuracy_score(y, logits[known].argmax(1).numpy()))
    counts = [(y == c).sum() for c in range(3)]
    assert got["Make"]["baseline"] == pytest.approx(max(counts) / len(y))
    assert got["Make"]["majority_class"] == int(max(range(3), key=lambda c: counts[c]))
