import numpy as np
import pytest
import torch
from PIL import Image

from sdaie.data import grid_patches, random_patches
from sdaie.data.patches import grid_crop_box


def _image(w: int, h: int, seed: int = 0) -> tuple[Image.Image, np.ndarray]:
    arr = np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    return Image.fromarray(arr), arr


# CLIP's published normalisation constants, written out (the reference for the package's).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _norm_np(a: np.ndarray) -> np.ndarray:
    """Independent reference: HxWx3 uint8 -> 3xHxW normalised float."""
    x = a.astype(np.float64) / 255.0
    return ((x - np.array(CLIP_MEAN)) / np.array(CLIP_STD)).transpose(2, 0, 1)


def test_grid_centre_crop_raster_order():
    img, arr = _image(200, 130)  # crop 192 x 128 -> 3 columns x 2 rows
    patches = grid_patches(img)
    assert patches.shape == (6, 3, 64, 64)
    top, left = 1, 4  # (130-128)/2 and (200-192)/2
    for r in range(2):
        for c in range(3):
            ref = _norm_np(arr[top + 64 * r: top + 64 * (r + 1), left + 64 * c: left + 64 * (c + 1)])
            np.testing.assert_allclose(patches[r * 3 + c].numpy(), ref, atol=1e-5)


def test_grid_odd_margin_rounds_like_torchvision_center_crop():
    from torchvision.transforms import functional as TF

    for w, h in [(129, 64), (131, 67), (64, 193), (450, 301)]:
        img, _ = _image(w, h)
        top, left, ch, cw = grid_crop_box(w, h)
        ref = TF.center_crop(img, [h // 64 * 64, w // 64 * 64])
        np.testing.assert_array_equal(np.asarray(img)[top:top + ch, left:left + cw], np.asarray(ref))


def test_grid_small_image_is_resized_to_one_patch():
    img, _ = _image(300, 50)
    patches = grid_patches(img)
    assert patches.shape == (1, 3, 64, 64)
    ref = _norm_np(np.asarray(img.resize((64, 64), Image.BILINEAR)))
    np.testing.assert_allclose(patches[0].numpy(), ref, atol=1e-5)


def test_grid_exact_multiple_and_cap():
    img, arr = _image(128, 192)
    full = grid_patches(img)
    assert full.shape[0] == 6
    np.testing.assert_allclose(full[5].numpy(), _norm_np(arr[128:192, 64:128]), atol=1e-5)
    capped = grid_patches(img, cap=4)
    assert capped.shape[0] == 4
    torch.testing.assert_close(capped, full[:4])


def test_grid_official_layout_reproduces_swapped_center_crop():
    from torchvision.transforms import functional as TF

    img, _ = _image(256, 130)  # the authors' CenterCrop((w', h')) reads (height, width)
    ref_img = np.asarray(TF.center_crop(img, [256, 128]))  # pads rows with zeros, crops columns
    got = grid_patches(img, layout="official")
    rows, cols = 4, 2
    assert got.shape[0] == rows * cols
    ref = np.stack([_norm_np(ref_img[64 * r:64 * (r + 1), 64 * c:64 * (c + 1)])
                    for r in range(rows) for c in range(cols)])
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-5)
    square, _ = _image(192, 192)
    torch.testing.assert_close(grid_patches(square, layout="official"), grid_patches(square))


def test_random_patches_are_crops_of_the_image():
    img, arr = _image(150, 100)
    g = torch.Generator().manual_seed(3)
    patches = random_patches(img, n=16, size=64, generator=g)
    assert patches.shape == (16, 3, 64, 64)
    windows = {tuple(_norm_np(arr[t:t + 64, x:x + 64]).round(4).ravel()[:50])
               for t in range(0, 100 - 63) for x in range(0, 150 - 63)}
    for p in patches:
        assert tuple(p.numpy().astype(np.float64).round(4).ravel()[:50]) in windows
    again = random_patches(img, n=16, size=64, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(again, patches)


def test_random_patches_numpy_generator_array_input_and_small_image():
    _, arr = _image(80, 70)
    a = random_patches(arr, n=4, size=64, generator=np.random.default_rng(0))
    b = random_patches(arr, n=4, size=64, generator=np.random.default_rng(0))
    torch.testing.assert_close(a, b)
    small, _ = _image(40, 90)
    out = random_patches(small, n=3, size=64, generator=torch.Generator().manual_seed(0))
    ref = _norm_np(np.asarray(small.resize((64, 64), Image.BILINEAR)))
    for p in out:  # resized to exactly 64 x 64: every crop is the whole image
        np.testing.assert_allclose(p.numpy(), ref, atol=1e-5)


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="RGB"):
        grid_patches(Image.new("L", (64, 64)))
    with pytest.raises(ValueError):
        random_patches(np.zeros((64, 64), dtype=np.uint8))
