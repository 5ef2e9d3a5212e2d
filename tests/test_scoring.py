import numpy as np
import pytest
import torch
from PIL import Image

from sdaie.config import ModelConfig
from sdaie.data.patches import grid_patches
from sdaie.data.transforms import CLEAN, parse_perturbation
from sdaie.models import build_extractor
from sdaie.hashing import file_hash
from sdaie.scoring import FeatureCache, extract_features, image_feature

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
