"""The scoring path: one image -> patches -> extractor -> ImageScore, and whole file lists.

References are computed apart from the code under test: one unchunked forward over all patches,
softmax and GMM log-likelihoods by hand or through scikit-learn directly.
"""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from sdaie.config import ModelConfig
from sdaie.data.imageio import ImageLoadError
from sdaie.data.patches import grid_patches
from sdaie.data.transforms import CLEAN, parse_perturbation
from sdaie.hashing import file_hash
from sdaie.models import BinaryDetector, build_extractor
from sdaie.oneclass.gmm import fit_one_class
from sdaie.scoring import (
    BinaryScorer,
    FeatureCache,
    FeatureScorer,
    ImageScore,
    Tiling,
    extract_features,
    image_feature,
    score_files,
)

TINY = ModelConfig(width=4, depths=[1, 1, 1, 1], transformer_depth=1, attn_heads=2, dim_head=4,
                   mlp_dim=8, patch_size=16)


@pytest.fixture(scope="module")
def extractor():
    torch.manual_seed(0)
    return build_extractor(TINY).eval()


def test_chunked_feature_equals_one_forward_over_all_patches(extractor):
    patches = torch.randn(21, 3, 16, 16)
    with torch.no_grad():
        whole = extractor(patches.unsqueeze(0))[0]
    for chunk in (4, 64):
        torch.testing.assert_close(image_feature(extractor, patches, chunk), whole, rtol=1e-5, atol=1e-5)


def test_extract_skips_bad_files_and_cache_round_trip(tmp_path, extractor):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(3):
        p = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    files = paths[:2] + [bad] + paths[2:]
    fs = extract_features(extractor, files, [0, 1, 1, 0], lambda im: grid_patches(im, size=16))
    assert fs.features.shape == (3, extractor.feature_dim) and fs.labels.tolist() == [0, 1, 0]
    assert fs.n_patches.tolist() == [6, 6, 6]  # 48x32 crop of 50x40 -> 3x2 tiles
    assert [s["path"] for s in fs.skipped] == [str(bad)]

    key = file_hash(bad)
    cache = FeatureCache(tmp_path / "cache", key)
    cache.save("set", CLEAN, 100, files, fs)
    back = cache.load("set", CLEAN, 100, files)
    np.testing.assert_array_equal(back.features, fs.features)
    assert back.paths == fs.paths and back.skipped == fs.skipped
    assert cache.load("set", CLEAN, 100, files[:2]) is None  # different file list: recompute
    assert cache.load("set", parse_perturbation("jpeg=95"), 100, files) is None
    assert cache.load("set", CLEAN, 200, files) is None
    assert cache.path("set", CLEAN, 100).parent.name == key


def _noise(seed: int, h: int = 40, w: int = 50) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_binary_scorer_is_one_minus_softmax_real_of_one_forward():
    torch.manual_seed(1)
    detector = BinaryDetector(TINY).eval()
    patches = grid_patches(_noise(3, 64, 80), size=16, normalized=False)
    result = BinaryScorer(detector, batch_patches=5)(patches)
    with torch.no_grad():
        logits = detector(grid_patches(_noise(3, 64, 80), size=16)[None])[0]
    ref = math.exp(logits[1]) / (math.exp(logits[0]) + math.exp(logits[1]))
    assert result.p_fake == pytest.approx(ref, abs=1e-6)
    assert result.n_patches == 20 and result.feature is None and result.problem() is None


def test_feature_scorer_with_gmm_gives_log_likelihood_and_percentile(extractor):
    train = np.random.default_rng(0).normal(size=(30, extractor.feature_dim))
    model = fit_one_class(train, components=1, covariance_type="diag")
    patches = grid_patches(_noise(4), size=16, normalized=False)
    result = FeatureScorer(extractor, batch_patches=4, gmm=model)(patches)
    with torch.no_grad():
        feature = extractor(grid_patches(_noise(4), size=16)[None])[0].numpy()
    np.testing.assert_allclose(result.feature, feature, rtol=1e-5, atol=1e-6)
    ll = model.gmm.score_samples(feature[None].astype(np.float64))[0]
    assert result.log_likelihood == pytest.approx(ll, rel=1e-5)
    assert result.percentile == pytest.approx(100 * np.mean(model.train_scores <= ll))
    bare = FeatureScorer(extractor)(patches)  # without a GMM: the feature only
    assert bare.log_likelihood is None and bare.percentile is None


def test_problem_names_the_non_finite_value():
    assert ImageScore(1, p_fake=0.3).problem() is None
    assert ImageScore(1, p_fake=float("nan")).problem() == "p_fake is not finite"
    feature = np.array([0.0, np.inf], np.float32)
    assert ImageScore(1, feature=feature).problem() == "the image's feature is not finite"
    assert ImageScore(1, feature=np.zeros(2), log_likelihood=float("nan")).problem() == \
        "log-likelihood is NaN"
    assert ImageScore(1, feature=np.zeros(2), log_likelihood=-float("inf")).problem() is None


def test_tiling_perturbs_before_the_grid_and_keeps_uint8():
    img = _noise(5, 64, 96)
    clean = Tiling(16, 100)(img)
    assert clean.dtype == torch.uint8 and tuple(clean.shape) == (24, 3, 16, 16)
    torch.testing.assert_close(clean[0], torch.from_numpy(np.asarray(img)[:16, :16].copy())
                               .permute(2, 0, 1))
    assert Tiling(16, 100, parse_perturbation("resize=0.5"))(img).shape[0] == 6  # 32x48 -> 2x3
    assert Tiling(16, 5)(img).shape[0] == 5


def test_score_files_keeps_positions_and_reports_or_raises(tmp_path, extractor):
    good = []
    for i in range(2):
        good.append(tmp_path / f"{i}.png")
        _noise(i).save(good[-1])
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"")
    files = [good[0], bad, good[1]]
    done = score_files(FeatureScorer(extractor), files, Tiling(16, 100), progress=False)
    assert done.kept == [0, 2] and len(done.results) == 2
    assert done.skipped == [{"path": str(bad), "reason": "empty file (0 bytes)"}]
    with pytest.raises(ImageLoadError) as info:
        score_files(FeatureScorer(extractor), files, Tiling(16, 100), strict=True, progress=False)
    assert info.value.path == str(bad)


# ---------------------------------------------------------------------------------------------
# Small images scored together; shared files extracted once
# ---------------------------------------------------------------------------------------------


def _files(folder, sizes, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = []
    for i, (w, h) in enumerate(sizes):
        p = folder / f"{i:02d}.png"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(p)
        out.append(p)
    return out


def test_batched_scores_equal_one_image_per_forward(tmp_path, extractor):
    """Runs of equal patch counts share a forward; each result is still its own image's."""
    sizes = [(16, 16)] * 5 + [(48, 32)] * 3 + [(16, 16)] * 2  # 1, then 6, then 1 patch(es)
    paths = _files(tmp_path, sizes)
    tiling = Tiling(16, 100)
    calls = []
    scorer = FeatureScorer(extractor)
    batch = scorer.batch
    scorer.batch = lambda patch_list: calls.append(len(patch_list)) or batch(patch_list)
    done = score_files(scorer, paths, tiling, progress=False, batch_patches=4)
    assert calls == [4, 2]  # 5 one-patch images under a cap of 4 patches: 4 + 1 alone; 6-patch
    #                         images alone (6 > 4); the last two one-patch images together
    assert done.kept == list(range(10))
    with torch.no_grad():
        for path, result in zip(paths, done.results):
            ref = extractor(grid_patches(Image.open(path).convert("RGB"), size=16)[None])[0]
            np.testing.assert_allclose(result.feature, ref.numpy(), rtol=1e-5, atol=1e-5)


def test_binary_batch_equals_the_official_expression(tmp_path):
    torch.manual_seed(1)
    det = BinaryDetector(TINY).eval()
    paths = _files(tmp_path, [(32, 32)] * 4)
    done = score_files(BinaryScorer(det), paths, Tiling(16, 100), progress=False)
    with torch.no_grad():
        for path, result in zip(paths, done.results):
            logits = det(grid_patches(Image.open(path).convert("RGB"), size=16)[None])
            assert result.p_fake == pytest.approx(1 - torch.softmax(logits, 1)[0, 0].item(),
                                                  abs=1e-6)


def test_a_folder_shared_by_two_sets_is_extracted_once(tmp_path, extractor, monkeypatch):
    import logging

    import sdaie.evaluation as evaluation

    real = _files(tmp_path / "real", [(32, 32)] * 3, seed=1)
    fake_a = _files(tmp_path / "a", [(32, 32)] * 2, seed=2)
    fake_b = _files(tmp_path / "b", [(32, 32)] * 2, seed=3)
    extracted = []
    original = evaluation.extract_features

    def counting(ex, paths, *args, **kwargs):
        extracted.extend(map(str, paths))
        return original(ex, paths, *args, **kwargs)

    monkeypatch.setattr(evaluation, "extract_features", counting)
    features = evaluation.CachedFeatures(extractor, FeatureCache(tmp_path / "cache", "k"), 100,
                                         64, "cpu", False, logging.getLogger("t"))
    a = features("a", real + fake_a, [0, 0, 0, 1, 1], CLEAN)
    b = features("b", real + fake_b, [0, 0, 0, 1, 1], CLEAN)
    assert extracted == [str(p) for p in real + fake_a + fake_b]  # the real files once
    np.testing.assert_array_equal(a.features[:3], b.features[:3])
    assert b.labels.tolist() == [0, 0, 0, 1, 1] and b.paths == [str(p) for p in real + fake_b]
    # a later run (new process state) finds them on disk by content, even under another name
    extracted.clear()
    copy = tmp_path / "copy"
    copy.mkdir()
    for p in fake_b:
        (copy / p.name).write_bytes(p.read_bytes())
    features.cache = FeatureCache(tmp_path / "cache", "k")
    c = features("c", sorted(copy.iterdir()), [1, 1], CLEAN)
    assert extracted == [] and np.array_equal(c.features, b.features[3:])


def _their_patches(img: Image.Image, size: int, cap: int) -> torch.Tensor:
    """The authors' _adaptivepatch, re-stated with torchvision as their code calls it."""
    import torchvision.transforms as T

    w, h = img.size
    if min(w, h) < size:
        img = T.Resize((size, size))(img)
    else:
        img = T.CenterCrop((w // size * size, h // size * size))(img)  # (w, h) read as (h, w)
    x = T.Normalize(mean=[0.48145466, 0.4578275, 0.40821073],
                    std=[0.26862954, 0.26130258, 0.27577711])(T.ToTensor()(img))
    p = x.unfold(1, size, size).unfold(2, size, size)
    n = p.shape[1] * p.shape[2]
    return p.contiguous().view(3, n, size, size).permute(1, 0, 2, 3)[:cap]


@pytest.mark.parametrize("wh", [(333, 250), (517, 271), (97, 131), (131, 97), (40, 30),
                                (63, 200), (64, 64), (129, 65), (130, 127), (127, 130),
                                (261, 255)])
@pytest.mark.parametrize("pert", ["none", "resize=0.5"])
def test_official_tiling_is_their_crop_and_resize(wh, pert):
    import torchvision.transforms as T

    from sdaie.pixels import normalize

    img = _noise(sum(wh), wh[1], wh[0])
    src = img
    if pert != "none":  # their resize perturbation, sizes floored
        src = T.Resize((int(img.height * 0.5), int(img.width * 0.5)))(img)
    ref = _their_patches(src, 64, 40000)
    got = normalize(Tiling(64, 40000, parse_perturbation(pert), "official")(img))
    assert got.shape == ref.shape
    torch.testing.assert_close(got, ref, rtol=0, atol=0)  # the same float32 steps
    spec = normalize(Tiling(64, 40000, parse_perturbation(pert))(img))
    if wh[0] != wh[1] and min(src.size) >= 64 and src.size[0] // 64 != src.size[1] // 64:
        assert spec.shape != ref.shape or not torch.allclose(spec, ref)


def test_official_protocol_is_checked_and_keys_its_own_cache(tmp_path):
    with pytest.raises(ValueError, match="protocol"):
        Tiling(16, 10, CLEAN, "paper")
    spec, off = FeatureCache(tmp_path, "h"), FeatureCache(tmp_path, "h", "official")
    assert spec.path("progan", CLEAN, 20000).name == "progan__clean__cap20000.npz"
    assert off.path("progan", CLEAN, 20000).name == "progan__clean__cap20000__official.npz"


def test_each_file_is_hashed_once_per_run_and_one_perturbation_is_held(tmp_path, extractor,
                                                                        monkeypatch):
    import logging

    import sdaie.evaluation as evaluation

    files = _files(tmp_path / "a", [(32, 32)] * 3, seed=4)
    hashed = []
    monkeypatch.setattr(evaluation, "file_hash",
                        lambda p, length: hashed.append(str(p)) or file_hash(p, length=length))
    perts = [CLEAN, parse_perturbation("blur=1")]
    first = {}
    for run in range(2):  # the first run fills the cache, the second finds everything in it
        hashed.clear()
        cache = FeatureCache(tmp_path / "cache", "k")
        features = evaluation.CachedFeatures(extractor, cache, 100, 64, "cpu", False,
                                             logging.getLogger("t"))
        for pert in perts:
            for name in ("a", "again"):  # two sets of the same files
                fs = features(name, files, [0, 1, 0], pert)
                np.testing.assert_array_equal(fs.features, first.setdefault((name, pert.tag),
                                                                            fs.features))
            assert list(cache._known) in ([], [(pert.tag, 100)])  # the earlier one let go
        assert sorted(hashed) == sorted(map(str, files)), run


def test_extract_features_takes_the_perturbation_only_through_the_patcher(tmp_path, extractor):
    """A perturbation applied outside the tiling would ignore the protocol's resize rounding."""
    files = _files(tmp_path, [(32, 32)])
    with pytest.raises(TypeError):
        extract_features(extractor, files, [0], Tiling(16, 100), perturbation=CLEAN)
    blur = parse_perturbation("blur=1")
    fs = extract_features(extractor, files, [0], Tiling(16, 100, blur))
    ref = FeatureScorer(extractor)(Tiling(16, 100, blur)(Image.open(files[0]).convert("RGB")))
    np.testing.assert_array_equal(fs.features[0], ref.feature)
