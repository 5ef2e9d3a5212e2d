"""The evaluation loop with a stand-in scorer whose scores are known in advance.

The figures are checked against scikit-learn and against counts done here, so the loop's own
bookkeeping (label discovery, orientation of the decision rule, wild folders, skipped files, score
files) is what is under test, not a model.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import average_precision_score, roc_auc_score

import sdaie.evaluation as evaluation
from sdaie.config import Config
from sdaie.data.official import binary_set_files
from sdaie.data.testsets import LabelledFiles, TestSet, discover_sets, list_labelled
from sdaie.data.transforms import CLEAN, parse_perturbation
from sdaie.evaluation import (
    BinarySets,
    CachedFeatures,
    EvalOutput,
    OneClassSets,
    SetScores,
    evaluate,
    write_results,
)
from sdaie.labels import Decision
from sdaie.oneclass.gmm import fit_one_class
from sdaie.scoring import FeatureCache, ImageScore

# file stem -> score; a stem starting with "bad" is an unreadable file
SCORES = {"r0": 0.1, "r1": 0.6, "r2": 0.3, "f0": 0.9, "f1": 0.4, "f2": 0.8, "w0": 0.7, "w1": 0.2}


@dataclass
class StubSets:
    """Scores from the file name; under a perturbation every score moves up by 0.05."""

    threshold: float
    fake_when_higher: bool
    kind: ClassVar[str] = "bc"
    title: ClassVar[str] = "Stub detector"
    official_ap: ClassVar[str] = "ap_fake_pos"
    score_name: ClassVar[str] = "p_fake"
    calls: list = field(default_factory=list)
    protocol: str = "spec"

    @property
    def decision(self) -> Decision:
        return Decision(self.threshold, self.fake_when_higher)

    def list_files(self, root: Path) -> LabelledFiles:
        return binary_set_files(root) if self.protocol == "official" else list_labelled(root)

    def extras(self) -> dict[str, Any]:
        return {"threshold": np.float64(self.threshold)}

    def score_set(self, name, paths, labels, pert) -> SetScores:
        self.calls.append((name, pert.spec))
        kept = [i for i, p in enumerate(paths) if not Path(p).stem.startswith("bad")]
        shift = 0.0 if pert == CLEAN else 0.05
        return SetScores(np.array([SCORES[Path(paths[i]).stem] + shift for i in kept]),
                         np.asarray(labels, np.int64)[kept], [str(paths[i]) for i in kept],
                         np.ones(len(kept), np.int64),
                         [{"path": str(p), "reason": "broken"} for p in paths
                          if Path(p).stem.startswith("bad")])


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


@pytest.fixture
def tree(tmp_path) -> dict[str, Path]:
    root = tmp_path / "tests"
    for stem in ("r0", "r1", "r2", "bad0"):
        _touch(root / "progan" / "0_real" / f"{stem}.png")
    for stem in ("f0", "f1", "f2"):
        _touch(root / "progan" / "1_fake" / f"{stem}.png")
    _touch(root / "mygen" / "0_real" / "r0.png")  # labelled set; plus an unlabelled stray file
    _touch(root / "mygen" / "1_fake" / "f0.png")
    _touch(root / "mygen" / "stray" / "w0.png")
    _touch(root / "onlyone" / "0_real" / "r1.png")
    wild = tmp_path / "phone"
    for stem in ("w0", "w1", "bad1"):
        _touch(wild / f"{stem}.png")
    empty = tmp_path / "empty"
    empty.mkdir()
    return {"root": root, "wild": wild, "empty": empty, "out": tmp_path / "run"}


def _run(tree, stub, perts=("blur=1.0",)):
    output = EvalOutput(tree["out"], "stub")
    output.begin(Config())
    sets = discover_sets(tree["root"])
    wild = [TestSet("wild/phone", tree["wild"]), TestSet("wild/empty", tree["empty"])]
    results = evaluate(stub, sets, [CLEAN, *map(parse_perturbation, perts)], output, wild)
    return output, results


def test_binary_rule_metrics_match_sklearn_and_counts(tree):
    stub = StubSets(0.5, fake_when_higher=True)
    output, results = _run(tree, stub)
    assert list(results.blocks) == ["clean", "blur=1"]
    assert list(results.blocks["clean"]) == ["progan", "mygen", "onlyone"]
    m = results.blocks["clean"]["progan"]
    y = np.array([0, 0, 0, 1, 1, 1])
    s = np.array([0.1, 0.6, 0.3, 0.9, 0.4, 0.8])
    assert (m["n_real"], m["n_fake"]) == (3, 3)
    assert m["acc"] == pytest.approx(np.mean((s > 0.5) == y))  # 4 of 6
    assert m["ap_fake_pos"] == pytest.approx(average_precision_score(y, s))
    assert m["ap_real_pos"] == pytest.approx(average_precision_score(1 - y, -s))
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, s))
    assert np.isnan(results.blocks["clean"]["onlyone"]["roc_auc"])  # one class only
    # the folder without labels is summarised, the empty one left out
    wild = results.unlabelled["clean"]["wild/phone"]
    assert wild == {"n": 2, "flagged_fake": 0.5, "mean_p_fake": pytest.approx(0.45)}
    assert "wild/empty" not in results.unlabelled["clean"]
    assert results.n_scored == 2 * (6 + 2 + 1 + 2)
    assert ("wild/empty", "clean") not in stub.calls


def test_one_class_rule_turns_the_ranking_around(tree):
    stub = StubSets(0.5, fake_when_higher=False)  # here a high score means real
    _, results = _run(tree, stub, perts=())
    m = results.blocks["clean"]["progan"]
    y = np.array([0, 0, 0, 1, 1, 1])
    s = np.array([0.1, 0.6, 0.3, 0.9, 0.4, 0.8])
    assert m["acc"] == pytest.approx(np.mean((s <= 0.5) == y))  # 2 of 6
    assert m["ap_real_pos"] == pytest.approx(average_precision_score(1 - y, s))
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, -s))


def test_score_files_skips_and_tables(tree):
    stub = StubSets(0.5, fake_when_higher=True)
    output, results = _run(tree, stub)
    with np.load(tree["out"] / "scores" / "blur1" / "progan.npz") as z:
        np.testing.assert_allclose(z["scores"], [0.15, 0.65, 0.35, 0.95, 0.45, 0.85])
        assert z["labels"].tolist() == [0, 0, 0, 1, 1, 1] and float(z["threshold"]) == 0.5
        assert not any("bad0" in p for p in z["paths"])
    with np.load(tree["out"] / "scores" / "clean" / "wild_phone.npz") as z:
        assert z["labels"].tolist() == [-1, -1]
    skipped = [json.loads(line) for line in output.skipped_log.read_text().splitlines()]
    assert sorted((s["set"], s["perturbation"], Path(s["path"]).name) for s in skipped) == sorted(
        (name, p, f) for p in ("clean", "blur=1")
        for name, f in (("progan", "bad0.png"), ("wild/phone", "bad1.png")))

    summary = write_results(output, stub, results, ["a note"],
                            {"results": results.blocks, "time_s": 0.0})
    rows = list(csv.DictReader(open(tree["out"] / "bc_metrics.csv")))
    assert [(r["perturbation"], r["set"]) for r in rows] == [
        (p, s) for p in ("clean", "blur=1") for s in ("progan", "mygen", "onlyone", "average")]
    assert json.loads((tree["out"] / "wild_unlabelled.json").read_text())["blur=1"]["wild/phone"][
        "n"] == 2
    assert Path(summary["report"]).is_file()
    assert json.loads((tree["out"] / "summary.json").read_text())["tables"] == summary["tables"]


def test_begin_clears_the_previous_run(tree):
    stub = StubSets(0.5, fake_when_higher=True)
    _run(tree, stub)
    assert (tree["out"] / "scores" / "blur1").is_dir()
    _run(tree, stub, perts=())
    assert not (tree["out"] / "scores" / "blur1").exists()  # a stale perturbation is not plotted
    lines = (tree["out"] / "skipped.jsonl").read_text().splitlines()
    assert len(lines) == 2  # this run's skips only


def _images(root: Path) -> tuple[list[Path], list[int]]:
    """progan/{0_real,1_fake}: noise images of distinct brightness, and one flat (constant) real
    image, for which the stubs below give a non-finite number."""
    rng = np.random.default_rng(0)
    paths = []
    for kind, base in (("0_real", 40), ("1_fake", 140)):
        for i in range(3):
            p = root / "progan" / kind / f"{i}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(base + 20 * i, base + 20 * i + 60, (32, 32, 3),
                                         np.uint8)).save(p)
            paths.append(p)
    flat = root / "progan" / "0_real" / "flat.png"
    Image.new("RGB", (32, 32), (90, 90, 90)).save(flat)
    return paths, flat


class _StubExtractor(torch.nn.Module):
    """Feature (mean, mean / range) of the normalised patches' red channel: not finite on a flat
    image."""

    patch_size, feature_dim = 16, 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, 0].flatten(1)  # one channel (normalisation differs between channels)
        return torch.stack([x.mean(1), x.mean(1) / (x.amax(1) - x.amin(1))], 1)


@dataclass
class _StubBinary:
    """p(fake) = mean pixel / 255, NaN on a flat image."""

    patch_size: int = 16
    batch_patches: int = 64

    def __call__(self, patches: torch.Tensor) -> ImageScore:
        x = patches.double()
        return ImageScore(len(patches), p_fake=float(x.mean() / 255 if x.std() > 0 else math.nan))


def test_a_non_finite_result_is_skipped_with_its_reason_not_scored(tmp_path):
    paths, flat = _images(tmp_path / "tests")
    output = EvalOutput(tmp_path / "run", "stub")
    output.begin(Config())
    sets = BinarySets(_StubBinary(), 100, 0.5)
    m = evaluate(sets, discover_sets(tmp_path / "tests"), [CLEAN], output).blocks["clean"]["progan"]
    s = [float(np.asarray(Image.open(p)).mean() / 255) for p in paths]
    assert (m["n_real"], m["n_fake"]) == (3, 3)
    assert m["ap_fake_pos"] == pytest.approx(average_precision_score([0] * 3 + [1] * 3, s))
    skipped = [json.loads(line) for line in output.skipped_log.read_text().splitlines()]
    assert [(s["path"], s["reason"]) for s in skipped] == [(str(flat), "p_fake is not finite")]


def test_one_class_skips_a_non_finite_feature_and_does_not_cache_it(tmp_path, monkeypatch):
    paths, flat = _images(tmp_path / "tests")
    gmm = fit_one_class(np.random.default_rng(1).normal(size=(40, 2)), components=1)
    extracted = []
    original = evaluation.extract_features
    monkeypatch.setattr(evaluation, "extract_features", lambda ex, todo, *a, **k: (
        extracted.extend(map(str, todo)) or original(ex, todo, *a, **k)))
    for _ in range(2):  # the second run (a new process's cache) must complete too
        output = EvalOutput(tmp_path / "run", "stub")
        output.begin(Config())
        features = CachedFeatures(_StubExtractor(), FeatureCache(tmp_path / "cache", "k"), 100,
                                  64, "cpu", False, output.log)
        res = evaluate(OneClassSets(features, gmm), discover_sets(tmp_path / "tests"), [CLEAN],
                       output)
        m = res.blocks["clean"]["progan"]
        assert (m["n_real"], m["n_fake"]) == (3, 3) and np.isfinite(m["roc_auc"])
        skipped = [json.loads(line) for line in output.skipped_log.read_text().splitlines()]
        assert [(s["path"], s["reason"]) for s in skipped] == [
            (str(flat), "the image's feature is not finite")]
    assert extracted == sorted(map(str, [*paths, flat])) + [str(flat)]  # only it is redone
