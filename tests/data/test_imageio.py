import numpy as np
import pytest
from PIL import Image

from sdaie.data.imageio import ImageLoadError, check_size, list_images, load_image, to_rgb
from support.odd_inputs import make_odd_inputs


@pytest.fixture(scope="module")
def odd_files(tmp_path_factory):
    return make_odd_inputs(tmp_path_factory.mktemp("odd"))


def test_every_odd_file_is_an_image_or_a_reasoned_error(odd_files):
    for f in odd_files:
        try:
            img = load_image(f.path)
        except ImageLoadError as exc:
            assert f.expect in ("error", "any"), f"{f.kind}: unexpected error {exc}"
            assert str(exc), f"{f.kind}: error without a reason"
        else:
            assert f.expect in ("ok", "any"), f"{f.kind}: should have failed"
            assert img.mode == "RGB" and min(img.size) >= 1


def test_bomb_and_empty_reasons_are_specific(odd_files):
    by_kind = {f.kind: f.path for f in odd_files}
    with pytest.raises(ImageLoadError, match="decompression bomb|over the limit"):
        load_image(by_kind["PNG claiming 1e10 px"])
    with pytest.raises(ImageLoadError, match="empty file"):
        load_image(by_kind["zero-byte .jpg"])
    with pytest.raises(ImageLoadError, match="truncated|Truncated"):
        load_image(by_kind["truncated jpeg 70%"])


def test_sixteen_bit_and_float_are_scaled_not_clipped():
    ramp = np.arange(0, 65536, 257, dtype=np.uint16).reshape(16, 16)  # 0..65535 in 256 steps
    rgb = np.asarray(to_rgb(Image.fromarray(ramp)))
    assert rgb.shape == (16, 16, 3)
    np.testing.assert_array_equal(rgb[..., 0], (ramp // 257).astype(np.uint8))
    flt = np.linspace(-0.5, 1.5, 64, dtype=np.float32).reshape(8, 8)
    out = np.asarray(to_rgb(Image.fromarray(flt)))[..., 1]
    np.testing.assert_array_equal(out, np.rint(np.clip(flt.astype(np.float64), 0, 1) * 255).astype(np.uint8))


def test_orientation_is_not_applied(tmp_path):
    arr = np.zeros((40, 80, 3), np.uint8)
    arr[:, :40] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "rotated.jpg"
    Image.fromarray(arr).save(path, quality=95, exif=exif)
    img = load_image(path)
    assert img.size == (80, 40)  # stored geometry, not the display geometry


def test_list_images_is_sorted_recursive_and_skips_hidden(tmp_path):
    for rel in ["b/x.JPG", "a.png", ".hidden/c.jpg", "notes.txt", "a/.d.jpg"]:
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)] == ["a.png", "b/x.JPG"]


def test_error_carries_the_path_but_the_reason_alone_is_the_message(tmp_path):
    path = tmp_path / "page.jpg"
    path.write_bytes(b"<html>not found</html>")
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    assert str(info.value) == "not a recognised image format"
    assert info.value.path == str(path)


def test_one_bomb_limit_with_one_message(tmp_path, monkeypatch):
    """Our MAX_PIXELS decides, before decoding; Pillow's softer warning does not refuse files."""
    import sdaie.data.imageio as imageio

    check_size(12_000, 8_000)  # a 96-Mpx medium-format photo is a camera image, not a bomb
    with pytest.raises(ImageLoadError, match=r"decompression bomb refused: image claims 20000x9000"):
        check_size(20_000, 9_000)
    with pytest.raises(ImageLoadError, match="no pixels"):
        check_size(0, 10)
    assert imageio.MAX_PIXELS == 2 * Image.MAX_IMAGE_PIXELS  # the same figure as Pillow's hard limit

    img = Image.fromarray(np.zeros((40, 40, 3), np.uint8))
    img.save(tmp_path / "a.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 1600 px: over Pillow's warning level
    assert load_image(tmp_path / "a.png").size == (40, 40)
    monkeypatch.setattr(imageio, "MAX_PIXELS", 1500)
    with pytest.raises(ImageLoadError, match="claims 40x40 = 1600 pixels, over the limit of 1500"):
        load_image(tmp_path / "a.png")


def test_mode_conversions_are_the_documented_ones():
    cmyk = Image.new("CMYK", (2, 2), (10, 20, 30, 40))
    expected = [round((255 - c) * (255 - 40) / 255) for c in (10, 20, 30)]  # K = 40
    assert np.asarray(to_rgb(cmyk))[0, 0].tolist() == expected
    la = Image.new("LA", (2, 2), (77, 0))  # fully transparent: alpha dropped, not composited
    assert np.asarray(to_rgb(la))[0, 0].tolist() == [77, 77, 77]
    one = Image.fromarray(np.array([[0, 255]], np.uint8)).convert("1")
    assert np.asarray(to_rgb(one))[0].tolist() == [[0, 0, 0], [255, 255, 255]]
    pal = Image.new("P", (1, 1))
    pal.putpalette([0, 0, 0, 200, 100, 50])
    pal.putpixel((0, 0), 1)
    assert np.asarray(to_rgb(pal))[0, 0].tolist() == [200, 100, 50]


def test_a_mode_without_rgb_conversion_is_a_reasoned_error(tmp_path, monkeypatch):
    img = Image.new("La", (4, 4))
    with pytest.raises(ValueError):
        to_rgb(img)
    path = tmp_path / "x.png"
    Image.new("RGB", (4, 4)).save(path)
    import sdaie.data.imageio as imageio

    monkeypatch.setattr(imageio, "to_rgb", lambda im: Image.new("La", (1, 1)).convert("RGB"))
    with pytest.raises(ImageLoadError, match="cannot convert mode RGB to RGB"):
        load_image(path)


def test_zoo_expectations_hold_over_several_seeds(tmp_path):
    """The zoo's recipes (corruptions, EXIF fuzz) are random: the verdicts must not depend on it."""
    for f in make_odd_inputs(tmp_path, seed=3, copies=3):
        try:
            load_image(f.path)
            ok = True
        except ImageLoadError as exc:
            ok = False
            assert str(exc) and exc.path == str(f.path)
        if f.expect != "any":
            assert ok == (f.expect == "ok"), f.kind
