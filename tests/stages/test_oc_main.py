import csv
import json

import numpy as np
import pytest

from sdaie.oneclass.gmm import load_gmm
from sdaie.stages import oc_main

from .conftest import TINY


def _args(world, ckpt, out, *extra):
    return ["--config", str(TINY / "oc.yaml"), f"oneclass.checkpoint={ckpt}",
            f"oneclass.train_dirs=[{world['oc_train']}]", f"oneclass.test_root={world['tests']}",
            f"run.out_dir={out}", *extra]


def test_tables_gmm_scores_and_cache(tiny_world, pretext_ckpt, tmp_path):
    out = tmp_path / "oc"
    assert oc_main.main(_args(tiny_world, pretext_ckpt, out, "oneclass.perturbations=[jpeg=90]")) == 0
    rows = list(csv.DictReader(open(out / "oc_metrics.csv")))
    # registry sets in the official order, then the extra folder, then the average; per perturbation
    assert [(r["perturbation"], r["set"]) for r in rows] == [
        (p, s) for p in ("clean", "jpeg=90") for s in ("progan", "stylegan", "mygen", "average")]
    assert rows[0]["display"] == "ProGAN" and (rows[0]["n_real"], rows[0]["n_fake"]) == ("6", "6")
    md = (out / "oc_metrics.md").read_text()
    assert "AP (real+), official" in md and "| ProGAN |" in md

    model, meta = load_gmm(out / "gmm.npz")
    assert meta["n_train"] == 12 and model.gmm.n_components == 1
    z = np.load(out / "scores" / "clean" / "progan.npz")
    assert len(z["scores"]) == 12 and sorted(set(z["labels"].tolist())) == [0, 1]
    # the table's accuracy is the threshold rule applied to the saved scores
    acc = np.mean((z["scores"] <= model.threshold) == (z["labels"] == 1))
    assert float(rows[0]["acc"]) == pytest.approx(acc, abs=1e-6)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["threshold"] == model.threshold and summary["train_images"] == 12
    assert summary["config"]["oneclass"]["components"] == 1 and summary["environment"]["torch"]

    # a second run reuses the cached features (same checkpoint, sets, perturbations)
    cache = sorted((out / "cache").rglob("*.npz"))
    stamps = [p.stat().st_mtime_ns for p in cache]
    first = (out / "oc_metrics.csv").read_text()
    oc_main.main(_args(tiny_world, pretext_ckpt, out, "oneclass.perturbations=[jpeg=90]"))
    assert len(cache) == 7  # train + 3 sets x 2 perturbations
    assert [p.stat().st_mtime_ns for p in sorted((out / "cache").rglob("*.npz"))] == stamps
    assert (out / "oc_metrics.csv").read_text() == first


def test_required_keys_are_named(tiny_world, tmp_path):
    with pytest.raises(SystemExit, match="oneclass.checkpoint"):
        oc_main.main(["--config", str(TINY / "oc.yaml"), f"run.out_dir={tmp_path}"])


def test_localisation_is_extra_and_calibrates_patch_thresholds(tiny_world, pretext_ckpt,
                                                                spliced_root, tmp_path):
    plain, loc = tmp_path / "plain", tmp_path / "loc"
    assert oc_main.main(_args(tiny_world, pretext_ckpt, plain)) == 0
    assert oc_main.main(_args(tiny_world, pretext_ckpt, loc, f"localisation.root={spliced_root}",
                              "localisation.stride=16")) == 0
    assert (plain / "oc_metrics.csv").read_text() == (loc / "oc_metrics.csv").read_text()
    model, _ = load_gmm(loc / "gmm.npz")
    assert sorted(model.patch_thresholds) == ["alone", "image", "window"]
    rows = list(csv.DictReader(open(loc / "oc_localisation.csv")))
    assert [(r["context"], r["set"]) for r in rows] == [
        (c, s) for c in ("window", "alone", "image") for s in ("smooth", "spectral", "upconv")]
    assert all((r["n_real"], r["n_spliced"]) == ("2", "2") for r in rows)
    z = np.load(loc / "localisation" / "window" / "smooth.npz")
    assert len(z["labels"]) == 4 and len(z["patch_scores"]) == len(z["patch_truth"])
    assert z["patch_truth"].max() == 1  # the masks reached the patch labels
    summary = json.loads((loc / "summary.json").read_text())
    assert summary["patch_thresholds"] == model.patch_thresholds
    assert "context: window" in (loc / "oc_localisation.md").read_text()
