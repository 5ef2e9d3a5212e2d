"""Localisation: a binary detector trained on two kinds of patches finds a pasted region of the
second kind in an image of the first; the per-set figures re-stated with scikit-learn; masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score

from sdaie.config import ConfigError, LocalisationConfig, ModelConfig
from sdaie.data.testsets import TestSet
from sdaie.heatmaps import PatchMap
from sdaie.labels import Decision
from sdaie.localisation import (
    Localiser,
    Tally,
    localisation_spec,
    read_mask,
    write_localisation_tables,
)
from sdaie.metrics import patch_labels
from sdaie.models import BinaryDetector
from sdaie.patch_scoring import LatticeTiling, MapSpec, score_with_maps
from sdaie.pixels import normalize
from sdaie.scoring import BinaryScorer

PATCH = 16
CFG = ModelConfig(width=4, patch_size=PATCH, depths=[1, 1, 1, 1], transformer_depth=1,
                  attn_heads=2, dim_head=4, mlp_dim=8)


def _kind(rng: np.random.Generator, fake: bool, h: int, w: int) -> np.ndarray:
    """Real kind: flat colour plus strong pixel noise; the other kind: a smooth ramp."""
    base = rng.uniform(60, 190, size=3)
    if fake:
        ramp = np.linspace(-15, 15, w)[None, :, None] + np.linspace(-10, 10, h)[:, None, None]
        arr = base + ramp + rng.normal(0, 1.0, (h, w, 3))
    else:
        arr = base + rng.normal(0, 14.0, (h, w, 3))
    return np.clip(arr, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def trained() -> BinaryDetector:
    """Trained on images of 4 patches of one kind each: real 0, the other kind 1 (one thread:
    module fixtures run before the suite's one-thread fixture)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    det = BinaryDetector(CFG)
    opt = torch.optim.Adam(det.trainable_parameters(), lr=3e-3)
    for _ in range(40):
        y = torch.tensor([0, 1] * 8)
        x = torch.stack([torch.from_numpy(_kind(rng, bool(k), PATCH, 4 * PATCH)).permute(2, 0, 1)
                         .reshape(3, PATCH, 4, PATCH).permute(2, 0, 1, 3) for k in y])
        loss = torch.nn.functional.cross_entropy(det(normalize(x)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.set_num_threads(threads)
    return det.eval()


def _pasted(seed: int) -> tuple[Image.Image, np.ndarray]:
    """A real-kind image with a region of the other kind pasted in, and its mask."""
    rng = np.random.default_rng(seed)
    arr = _kind(rng, False, 96, 128)
    y0, x0 = int(rng.integers(0, 40)), int(rng.integers(0, 60))
    arr[y0:y0 + 44, x0:x0 + 52] = _kind(rng, True, 44, 52)
    mask = np.zeros((96, 128), bool)
    mask[y0:y0 + 44, x0:x0 + 52] = True
    return Image.fromarray(arr), mask


@pytest.mark.parametrize("stride", [PATCH, PATCH // 2])
def test_trained_binary_detector_localises_a_pasted_region(trained, stride):
    scorer = BinaryScorer(trained, 64)
    scores, labels = [], []
    for seed in range(4):
        img, mask = _pasted(seed)
        patches, grid = LatticeTiling(PATCH, 1000, stride)(img)
        _, maps = score_with_maps(scorer, patches, grid, Decision(0.5, True),
                                  MapSpec(stride, ("alone",)))
        scores.append(maps["alone"].scores.ravel())
        labels.append(patch_labels(mask, grid.boxes()))
    auc = roc_auc_score(np.concatenate(labels), np.concatenate(scores))
    assert auc > 0.9, auc  # chance is 0.5


def test_localiser_on_a_set_with_masks(trained, tmp_path):
    root = tmp_path / "loc"
    for i in range(3):
        img, mask = _pasted(10 + i)
        for sub in ("images/pasted/1_fake", "masks/pasted/1_fake", "images/pasted/0_real"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        img.save(root / "images/pasted/1_fake" / f"{i}.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(root / "masks/pasted/1_fake" / f"{i}.png")
        Image.fromarray(_kind(np.random.default_rng(20 + i), False, 96, 128)).save(
            root / "images/pasted/0_real" / f"{i}.png")
    Image.new("L", (10, 10)).save(root / "masks/pasted/1_fake/3.png")  # wrong size: left out
    _pasted(13)[0].save(root / "images/pasted/1_fake/3.png")
    loc = Localiser(BinaryScorer(trained, 64), Decision(0.5, True), MapSpec(None, ("alone",)),
                    1000)
    tallies, skipped = loc.score_set(TestSet("pasted", root / "images" / "pasted"), root)
    assert len(skipped) == 1 and "image is 128x96" in skipped[0]["reason"]
    m = tallies["alone"].figures()
    assert (m["n_real"], m["n_spliced"]) == (3, 3) and m["patch_auc"] > 0.9
    csv_path, md_path = write_localisation_tables(tmp_path, "bc", {"alone": {"pasted": m}}, "T",
                                                  ["a note"])
    assert "| pasted |" in md_path.read_text() and "alone,pasted" in csv_path.read_text()


def test_read_mask_rules(tmp_path):
    assert not read_mask(tmp_path / "none.png", 0, (4, 3)).any()  # real: nothing generated
    assert read_mask(tmp_path / "none.png", 1, (4, 3)).all()  # no mask: wholly generated
    Image.fromarray(np.array([[0, 255], [7, 0]], np.uint8)).save(tmp_path / "m.png")
    assert read_mask(tmp_path / "m.png", 1, (2, 2)).tolist() == [[False, True], [True, False]]
    with pytest.raises(ValueError, match="image is 3x3"):
        read_mask(tmp_path / "m.png", 1, (3, 3))


def test_tally_figures_against_sklearn():
    from sdaie.data.patchgrid import PatchGrid

    grid = PatchGrid(32, 16, 0, 0, 1, 2, 16, 16, 2)  # two patches side by side
    t = Tally()
    rng = np.random.default_rng(0)
    truth_right = np.zeros((16, 32), bool)
    truth_right[:, 16:] = True
    for label, image_score in [(1, 0.9), (1, 0.4), (0, 0.3), (0, 0.6)]:
        s = rng.random((1, 2))
        mask = truth_right if label else np.zeros((16, 32), bool)
        t.add(label, image_score, PatchMap(s, grid, "bc", "alone", 3, 0.5, True), mask, 0.5)
    m = t.figures()
    scores = np.concatenate(t.patch_scores)
    truth = np.concatenate(t.patch_truth)
    assert m["image_auc"] == pytest.approx(roc_auc_score([1, 1, 0, 0], [0.9, 0.4, 0.3, 0.6]))
    assert m["patch_auc"] == pytest.approx(roc_auc_score(truth[:4], scores[:4]))
    assert m["patch_auc_all"] == pytest.approx(roc_auc_score(truth, scores))
    assert m["max_patch_auc"] == pytest.approx(roc_auc_score(
        [1, 1, 0, 0], [s.max() for s in t.patch_scores]))
    assert m["real_flagged"] == pytest.approx(np.mean([np.mean(s > 0.5)
                                                       for s in t.patch_scores[2:]]))


def test_localisation_options_fail_with_the_key(tmp_path):
    assert localisation_spec(LocalisationConfig(), "bc", 16) is None
    root = str(tmp_path)
    with pytest.raises(ConfigError, match="stride must divide"):
        localisation_spec(LocalisationConfig(root=root, stride=5), "bc", 16)
    with pytest.raises(ConfigError, match="patch context"):
        localisation_spec(LocalisationConfig(root=root, contexts=["all"]), "bc", 16)
    spec = localisation_spec(LocalisationConfig(root=root, stride=8), "oc", 16)
    assert spec.contexts == ("window", "alone", "image") and spec.stride == 8
