import math
import random

import numpy as np
import pytest
from PIL import Image

from sdaie.data.transforms import (
    AugmentConfig,
    augment,
    gaussian_blur_array,
    gaussian_kernel1d,
    jpeg_compress,
    parse_perturbation,
    perturbation_list,
    reflect_indices,
    resize_by,
)


def test_kernel_radius_and_weights_by_hand():
    # sigma 0.5, truncate 4: radius int(4*0.5 + 0.5) = 2; weights exp(-2 k^2) normalised.
    k = gaussian_kernel1d(0.5)
    raw = np.array([math.exp(-8), math.exp(-2), 1.0, math.exp(-2), math.exp(-8)])
    np.testing.assert_allclose(k, raw / raw.sum(), rtol=1e-15)
    assert len(gaussian_kernel1d(1.0)) == 9 and len(gaussian_kernel1d(0.1)) == 1


def test_reflect_is_half_sample_symmetric():
    # d c b a | a b c d | d c b a, and it keeps folding for radii beyond the line
    assert reflect_indices(4, 2).tolist() == [1, 0, 0, 1, 2, 3, 3, 2]
    # [a b]: positions -5..-1 fold to a a b b a, 2..6 to b a a b b
    assert reflect_indices(2, 5).tolist() == [0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1]


def test_blur_hand_computed_row():
    # A 1x4 image [10, 20, 30, 40], sigma 0.5: the column pass is the identity (height 1 reflects
    # onto itself); the row pass at x=0 sees the reflected neighbourhood [20, 10, (10), 20, 30].
    w0, w1, w2 = 1.0, math.exp(-2), math.exp(-8)
    s = w0 + 2 * w1 + 2 * w2
    expected0 = (w2 * 20 + w1 * 10 + w0 * 10 + w1 * 20 + w2 * 30) / s
    expected3 = (w2 * 20 + w1 * 30 + w0 * 40 + w1 * 40 + w2 * 30) / s
    out = gaussian_blur_array(np.array([[10.0, 20.0, 30.0, 40.0]]), 0.5, quantize="none")
    assert out[0, 0] == pytest.approx(expected0, rel=1e-14)
    assert out[0, 3] == pytest.approx(expected3, rel=1e-14)


def test_blur_is_per_channel_and_separable():
    img = np.zeros((21, 21, 3))
    img[10, 10, 1] = 1000.0  # an impulse in the green channel only
    out = gaussian_blur_array(img, 1.0, quantize="none")
    k = gaussian_kernel1d(1.0)
    np.testing.assert_allclose(out[6:15, 6:15, 1], 1000.0 * np.outer(k, k), rtol=1e-12)
    assert not out[..., 0].any() and not out[..., 2].any()
    assert gaussian_blur_array(img.astype(np.uint8), 0.0).tolist() == img.astype(np.uint8).tolist()


def test_uint8_truncates_after_each_pass_like_scipy():
    ndimage = pytest.importorskip("scipy.ndimage")  # scikit-learn's dependency; not ours
    rng = np.random.default_rng(0)
    for shape, sigma in (((37, 23, 3), 1.0), ((16, 40, 3), 0.37), ((5, 6, 3), 3.0)):
        img = rng.integers(0, 256, size=shape, dtype=np.uint8)
        ref = img.copy()
        for c in range(3):  # the official / CNNSpot call: in place into the uint8 channel
            ndimage.gaussian_filter(ref[:, :, c], output=ref[:, :, c], sigma=sigma)
        assert np.array_equal(gaussian_blur_array(img, sigma), ref)


def test_jpeg_and_resize():
    img = Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 48, 3), dtype=np.uint8))
    out = jpeg_compress(img, 50)
    assert out.size == img.size and out.mode == "RGB" and out.tobytes() != img.tobytes()
    assert resize_by(img, 0.5).size == (24, 32)
    with pytest.raises(ValueError):
        jpeg_compress(img, 0)


@pytest.mark.parametrize("spec, tag, canon", [("jpeg=95", "jpeg95", "jpeg=95"),
                                              ("blur=1.0", "blur1", "blur=1"),
                                              ("resize=0.5", "resize0.5", "resize=0.5"),
                                              ("", "clean", "clean")])
def test_perturbation_parsing(spec, tag, canon):
    p = parse_perturbation(spec)
    assert p.tag == tag and p.spec == canon


@pytest.mark.parametrize("bad", ["jpeg=95.5", "jpeg=0", "blur=-1", "resize=0", "crop=3", "jpeg"])
def test_bad_perturbations_are_refused(bad):
    with pytest.raises(ValueError):
        parse_perturbation(bad)


def test_perturbation_list_starts_clean_without_duplicates():
    assert [p.spec for p in perturbation_list(["jpeg=95", "jpeg=95", "blur=1"])] == [
        "clean", "jpeg=95", "blur=1"]


def test_augment_follows_its_probabilities_and_seed():
    img = Image.fromarray(np.random.default_rng(2).integers(0, 256, (70, 90, 3), dtype=np.uint8))
    never = AugmentConfig(p_resize=0.0, p_blur=0.0, p_jpeg=0.0)
    assert augment(img, never, random.Random(0)).tobytes() == img.tobytes()
    always = AugmentConfig(p_resize=1.0, p_blur=1.0, p_jpeg=1.0)
    a = augment(img, always, random.Random(5))
    b = augment(img, always, random.Random(5))
    assert a.tobytes() == b.tobytes() and a.size[0] == a.size[1] and 64 <= a.size[0] <= 128
    small = Image.new("RGB", (30, 100))
    assert augment(small, never, random.Random(0)).size == (64, 64)
    # the resize side covers the whole range, both ends included
    sides = {augment(img, AugmentConfig(p_resize=1.0, p_blur=0, p_jpeg=0, resize_range=(64, 66)),
                     random.Random(i)).size[0] for i in range(60)}
    assert sides == {64, 65, 66}



@pytest.mark.parametrize("size", [(333, 251), (517, 271), (97, 131), (65, 3), (3, 1)])
def test_official_resize_floors_like_their_torchvision_call(size):
    """Their step: torchvision Resize((int(height * 0.5), int(width * 0.5))) on the PIL image."""
    import torchvision

    w, h = size
    img = Image.fromarray(np.random.default_rng(w * h).integers(0, 256, (h, w, 3), dtype=np.uint8))
    pert = parse_perturbation("resize=0.5")
    if int(h * 0.5) >= 1 and int(w * 0.5) >= 1:
        theirs = torchvision.transforms.Resize((int(img.height * 0.5), int(img.width * 0.5)))(img)
        assert np.array_equal(np.asarray(pert(img, "official")), np.asarray(theirs))
    else:  # a side that floors to 0 stops their code; here it stays one pixel
        assert min(pert(img, "official").size) == 1
    spec = pert(img)
    assert spec.size == (max(1, round(w / 2)), max(1, round(h / 2)))
    if (w % 2 and round(w / 2) != w // 2) or (h % 2 and round(h / 2) != h // 2):
        assert spec.size != pert(img, "official").size  # 333 x 251 -> 166 x 126 vs 166 x 125


def test_jpeg_and_blur_do_not_depend_on_the_protocol():
    img = Image.fromarray(np.random.default_rng(3).integers(0, 256, (37, 53, 3), dtype=np.uint8))
    for spec in ("jpeg=95", "blur=1.0", "none"):
        p = parse_perturbation(spec)
        assert p(img, "official").tobytes() == p(img, "spec").tobytes()
    with pytest.raises(ValueError, match="protocol"):
        resize_by(img, 0.5, "paper")
