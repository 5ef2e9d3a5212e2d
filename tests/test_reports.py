"""Reports: PNG plots per test set and perturbation, ROC figures, and report.md linking them."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score

from sdaie.atomic import atomic_savez
from sdaie.reports import (
    KINDS,
    SetScores,
    histogram_png,
    load_scores,
    perturbation_label,
    roc_curve_of,
    roc_png,
    write_report,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LINK = re.compile(r"!\[[^\]]*\]\(([^)]+)\)")
TABLE = ("# One-class detector\n\n- a note\n\n## clean\n\n"
         "| Set | Acc |\n|---|---:|\n| ProGAN | 91.0 |\n")


def _scores(rng: np.random.Generator, n: int, far: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Log-likelihood-like scores: real ~ N(1500, 40); fake nearby or orders of magnitude lower."""
    real = rng.normal(1500, 40, n)
    fake = -(10 ** rng.uniform(2, 6, n)) if far else rng.normal(1400, 80, n)
    return np.r_[real, fake], np.r_[np.zeros(n, np.int64), np.ones(n, np.int64)]


def _stage_tree(out: Path, rng: np.random.Generator) -> None:
    """What oc_main leaves behind: scores/<perturbation tag>/<set>.npz (+ the table)."""
    for tag, name, far in (("clean", "progan", False), ("clean", "stable_diffusion_v_1_4", True),
                           ("jpeg95", "progan", True)):
        scores, labels = _scores(rng, 30, far)
        atomic_savez(out / "scores" / tag / f"{name}.npz", scores=scores, labels=labels,
                     paths=np.array([f"{i}.jpg" for i in range(scores.size)]))
    (out / "oc_metrics.md").write_text(TABLE)


def _is_png(path: Path) -> bool:
    with Image.open(path) as im:
        ok = im.format == "PNG" and im.width > 300 and im.height > 200
    return ok and path.read_bytes()[:8] == PNG_MAGIC


def test_report_links_every_plot(tmp_path):
    _stage_tree(tmp_path, np.random.default_rng(0))
    report = write_report(tmp_path, "oc", 1420.0, tmp_path / "oc_metrics.md")
    text = report.read_text()
    links = LINK.findall(text)
    # per perturbation: one ROC figure and one histogram per set
    assert sorted(links) == sorted(["plots/clean/roc.png", "plots/clean/hist_progan.png",
                                    "plots/clean/hist_stable_diffusion_v_1_4.png",
                                    "plots/jpeg95/roc.png", "plots/jpeg95/hist_progan.png"])
    for link in links:
        assert not Path(link).is_absolute() and _is_png(tmp_path / link)
    drawn = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.png"))
    assert drawn == sorted(links)
    # the stage's table is embedded (title dropped, headings one level down), clean before jpeg
    assert "| ProGAN | 91.0 |" in text and "### clean" in text and "\n# One-class" not in text
    assert text.index("### jpeg=95") > text.index("plots/clean/roc.png")
    assert "real iff log-likelihood > 1420" in text


def test_report_without_matplotlib(tmp_path, monkeypatch):
    _stage_tree(tmp_path, np.random.default_rng(1))
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    text = write_report(tmp_path, "oc", 1420.0, tmp_path / "oc_metrics.md").read_text()
    assert "Plots were not drawn" in text and "matplotlib is not installed" in text
    assert "plots" in text and "| ProGAN | 91.0 |" in text
    assert not LINK.findall(text) and not list(tmp_path.rglob("*.png"))


def test_roc_curve_matches_sklearn():
    rng = np.random.default_rng(2)
    scores, labels = _scores(rng, 50)
    s = SetScores("progan", scores, labels)
    threshold = 1450.0
    c = roc_curve_of(s, KINDS["oc"], threshold)
    # one-class: fake is positive, ranked by minus the log-likelihood
    assert c.auc == pytest.approx(roc_auc_score(labels, -scores), abs=1e-12)
    assert np.trapezoid(c.tpr, c.fpr) == pytest.approx(c.auc, abs=1e-12)
    flagged = scores <= threshold  # predicted fake unless log p > threshold
    assert c.at_threshold == pytest.approx((flagged[labels == 0].mean(),
                                            flagged[labels == 1].mean()))
    # binary: p(fake) ranks directly
    p = rng.uniform(0, 1, 40)
    y = (rng.uniform(0, 1, 40) < p).astype(np.int64)
    cb = roc_curve_of(SetScores("x", p, y), KINDS["bc"], 0.5)
    assert cb.auc == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert cb.at_threshold == pytest.approx(((p > 0.5)[y == 0].mean(), (p > 0.5)[y == 1].mean()))
    assert roc_curve_of(SetScores("x", p, np.zeros(40, np.int64)), KINDS["bc"], 0.5) is None


def test_binary_plots_with_unlabelled_and_nonfinite(tmp_path):
    rng = np.random.default_rng(3)
    labelled = SetScores("progan", np.r_[rng.beta(2, 5, 30), rng.beta(5, 2, 30), np.nan],
                         np.r_[np.zeros(30, np.int64), np.ones(31, np.int64)])
    wild = SetScores("wild_x", rng.uniform(0, 1, 20), np.full(20, -1, np.int64))
    assert _is_png(histogram_png(tmp_path / "h.png", labelled, KINDS["bc"], 0.5))
    assert _is_png(histogram_png(tmp_path / "w.png", wild, KINDS["bc"], 0.5))
    assert _is_png(roc_png(tmp_path / "roc.png", [labelled, wild], KINDS["bc"], 0.5))
    assert roc_png(tmp_path / "none.png", [wild], KINDS["bc"], 0.5) is None
    assert not (tmp_path / "none.png").exists()


def test_wide_log_likelihoods_get_an_overview_and_a_zoom(tmp_path):
    rng = np.random.default_rng(4)
    near = histogram_png(tmp_path / "near.png", SetScores("a", *_scores(rng, 40)), KINDS["oc"],
                         1420.0)
    far = histogram_png(tmp_path / "far.png", SetScores("a", *_scores(rng, 40, far=True)),
                        KINDS["oc"], 1420.0)
    with Image.open(near) as a, Image.open(far) as b:
        assert b.width > 1.5 * a.width  # two panels side by side


def test_load_scores_order_and_labels(tmp_path):
    _stage_tree(tmp_path, np.random.default_rng(5))
    loaded = load_scores(tmp_path / "scores")
    assert list(loaded) == ["clean", "jpeg95"]
    # registry order, not alphabetical
    assert [s.name for s in loaded["clean"]] == ["progan", "stable_diffusion_v_1_4"]
    assert loaded["clean"][0].scores.shape == (60,) and set(loaded["clean"][0].labels) == {0, 1}
    assert load_scores(tmp_path / "absent") == {}
    assert [perturbation_label(t) for t in ("clean", "jpeg95", "blur1", "resize0.5", "x")] == \
        ["clean", "jpeg=95", "blur=1", "resize=0.5", "x"]


def test_bc_eval_writes_report(tmp_path):
    """The binary evaluation stage ends with plots and report.md next to its table."""
    import torch

    from sdaie.config import ModelConfig
    from sdaie.models import BinaryDetector, save_checkpoint
    from sdaie.stages.bc_eval import main as bc_eval_main

    torch.manual_seed(0)
    cfg = ModelConfig(width=4, patch_size=16, depths=[1, 1, 1, 1], transformer_depth=1,
                      attn_heads=2, dim_head=4, mlp_dim=8)
    ckpt = save_checkpoint(tmp_path / "bc.pt", "binary", BinaryDetector(cfg), cfg)
    rng = np.random.default_rng(6)
    for label in ("0_real", "1_fake"):
        d = tmp_path / "tests" / "progan" / label
        d.mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(d / f"{i}.png")
    out = tmp_path / "run"
    assert bc_eval_main([f"eval.checkpoint={ckpt}", f"eval.test_root={tmp_path / 'tests'}",
                         f"run.out_dir={out}", "run.device=cpu", "eval.max_patches=16"]) == 0
    text = (out / "report.md").read_text()
    assert "ProGAN" in text and "AP (fake+)" in text
    assert set(LINK.findall(text)) == {"plots/clean/roc.png", "plots/clean/hist_progan.png"}
    assert all(_is_png(out / link) for link in LINK.findall(text))


def test_empty_set_still_plots(tmp_path):
    """A set whose images were all unusable (kept by oc_main as an empty row) still plots."""
    empty = SetScores("progan", np.zeros(0), np.zeros(0, np.int64))
    assert _is_png(histogram_png(tmp_path / "h.png", empty, KINDS["oc"], 3.0))
    assert roc_png(tmp_path / "roc.png", [empty], KINDS["oc"], 3.0) is None
