"""Heatmaps in the detection pass: the image's result is bit for bit the scorer's, and each patch
score is the detector's score of that patch (re-stated from the model's own forward)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from sdaie.config import ModelConfig
from sdaie.data.transforms import parse_perturbation
from sdaie.labels import Decision
from sdaie.models import BinaryDetector
from sdaie.oneclass.gmm import fit_one_class, quantile_threshold
from sdaie.patch_scoring import (
    LatticeTiling,
    MapSpec,
    calibrate_patch_thresholds,
    contexts_list,
    score_with_maps,
)
from sdaie.pixels import normalize
from sdaie.scoring import BinaryScorer, FeatureScorer, Tiling

PATCH = 16
CFG = ModelConfig(width=4, patch_size=PATCH, depths=[1, 1, 1, 1], transformer_depth=1,
                  attn_heads=2, dim_head=4, mlp_dim=8)


@pytest.fixture(scope="module")
def detector() -> BinaryDetector:
    torch.manual_seed(0)
    return BinaryDetector(CFG).eval()


@pytest.fixture(scope="module")
def image() -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (70, 90, 3), np.uint8))


@pytest.mark.parametrize("stride", [16, 8, 4])
@pytest.mark.parametrize("cap", [1000, 7])
@pytest.mark.parametrize("protocol", ["spec", "official"])
def test_binary_image_score_is_detections(detector, image, stride, cap, protocol):
    scorer = BinaryScorer(detector, batch_patches=5)
    pert = parse_perturbation("resize=0.7")
    ref = scorer(Tiling(PATCH, cap, pert, protocol)(image))
    result, maps = score_with_maps(scorer, *LatticeTiling(PATCH, cap, stride, pert,
                                                          protocol)(image),
                                   Decision(0.5, True), MapSpec(stride, ("alone", "window")))
    assert result.p_fake == ref.p_fake and result.n_patches == ref.n_patches
    assert set(maps) == {"alone", "window"}


@pytest.mark.parametrize("stride", [16, 8])
def test_one_class_image_score_is_detections(detector, image, stride):
    gmm = fit_one_class(np.random.default_rng(1).normal(size=(40, 10)), components=1)
    scorer = FeatureScorer(detector.trainable, 5, "cpu", gmm)
    ref = scorer(Tiling(PATCH, 1000)(image))
    result, _ = score_with_maps(scorer, *LatticeTiling(PATCH, 1000, stride)(image),
                                Decision(gmm.threshold, False), MapSpec(stride))
    assert np.array_equal(result.feature, ref.feature)
    assert result.log_likelihood == ref.log_likelihood and result.percentile == ref.percentile


def test_binary_patch_score_is_p_fake_of_the_patch_alone(detector, image):
    patches, grid = LatticeTiling(PATCH, 1000, 8)(image)
    _, maps = score_with_maps(BinaryScorer(detector, 7), patches, grid, Decision(0.5, True),
                              MapSpec(8, ("alone",)))
    with torch.no_grad():
        logits = detector(normalize(patches)[:, None])  # every patch as a one-patch image
    ref = (1 - torch.softmax(logits, dim=1)[:, 0]).double().numpy()
    assert maps["alone"].scores.shape == (grid.rows, grid.cols)
    assert np.allclose(maps["alone"].scores.reshape(-1), ref, atol=1e-6)


def test_one_class_patch_score_is_the_gmm_log_likelihood_of_the_patch(detector, image):
    gmm = fit_one_class(np.random.default_rng(1).normal(size=(40, 10)), components=1)
    scorer = FeatureScorer(detector.trainable, 5, "cpu", gmm)
    patches, grid = LatticeTiling(PATCH, 1000, PATCH)(image)
    _, maps = score_with_maps(scorer, patches, grid, Decision(gmm.threshold, False),
                              MapSpec(None, ("image",)), {"image": -3.0})
    with torch.no_grad():
        feats = detector.trainable.transformer(
            detector.trainable.patch_tokens(normalize(patches))[0][None])[0]
    ref = gmm.gmm.score_samples(feats.double().numpy())
    assert np.allclose(maps["image"].scores.reshape(-1), ref, rtol=1e-6)
    assert maps["image"].threshold == -3.0 and not maps["image"].fake_when_higher


def test_calibration_is_the_quantile_over_real_patches(detector, tmp_path):
    gmm = fit_one_class(np.random.default_rng(1).normal(size=(40, 10)), components=1)
    scorer = FeatureScorer(detector.trainable, 5, "cpu", gmm)
    rng = np.random.default_rng(2)
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(rng.integers(0, 256, (40, 50, 3), np.uint8)).save(paths[-1])
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    tiling = LatticeTiling(PATCH, 1000, PATCH)
    spec = MapSpec(None, ("alone", "window"))
    got, used = calibrate_patch_thresholds(scorer, [*paths, tmp_path / "bad.jpg"], tiling, spec,
                                           0.1)
    assert used == 3
    for c in ("alone", "window"):
        all_scores = np.concatenate([score_with_maps(scorer, *tiling(Image.open(p).convert("RGB")),
                                                     Decision(0, False), spec)[1][c].scores.ravel()
                                     for p in paths])
        assert got[c] == quantile_threshold(all_scores, 0.1)


def test_options_are_checked():
    assert contexts_list("window, alone,window") == ("window", "alone")
    with pytest.raises(ValueError, match="patch context"):
        contexts_list("everything")
    with pytest.raises(ValueError, match="stride must divide"):
        MapSpec(12).checked(PATCH)
    assert MapSpec.default("bc").contexts == ("alone",)
    assert MapSpec.default("oc").contexts == ("window",)
    assert MapSpec.all_contexts("oc") == ("window", "alone", "image")


@pytest.mark.parametrize(("size", "box", "patches"), [((128, 40), (48, 4, 80, 36), 4),
                                                      ((200, 70), (68, 3, 132, 67), 16)])
def test_official_padding_is_never_a_region(detector, size, box, patches):
    """Every patch flagged (threshold below any p_fake): the only region is the image's patches;
    the padding rows of the transposed crop (wholly or mostly outside) stay out of it."""
    img = Image.fromarray(np.random.default_rng(2).integers(0, 256, (*size[::-1], 3), np.uint8))
    scorer = BinaryScorer(detector, batch_patches=64)
    tiling = LatticeTiling(PATCH, 1000, PATCH, protocol="official")
    _, maps = score_with_maps(scorer, *tiling(img), Decision(-1.0, True), MapSpec(PATCH, ("alone",)))
    pm = maps["alone"]
    assert not pm.valid.all() and np.array_equal(pm.flagged(), pm.valid)
    assert [(r.box, r.patches) for r in pm.regions()] == [(box, patches)]
    assert pm.share_flagged() == 1.0
    spec = LatticeTiling(PATCH, 1000, PATCH)(img)[1]
    assert spec.valid_cells().all()  # the spec crop never pads
