"""One policy for cut files, and HEIC/AVIF decoding, checked on files generated here.

Cut files: the same file gets the same decision and the same reason text from the loader (used by
training, both evaluations and detect) and from the index's header pass.
"""

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, features

from sdaie.data.completeness import incomplete_reason
from sdaie.data.imageio import ImageLoadError, load_image, register_decoders
from sdaie.exif.parse import parse_file


def _pixels(seed: int = 0, h: int = 48, w: int = 64) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), np.uint8))


def _encoded(fmt: str, **kw) -> bytes:
    register_decoders()
    buf = io.BytesIO()
    _pixels().save(buf, format=fmt, **kw)
    return buf.getvalue()


FORMATS = {"JPEG": dict(quality=90), "PNG": {}, "WEBP": dict(quality=90),
           "HEIF": dict(quality=90), "AVIF": dict(quality=90)}


def test_the_locked_pillow_decodes_avif_and_pillow_heif_heif():
    assert features.check("avif")  # AVIF comes from Pillow's own wheels
    assert register_decoders()  # HEIF/HEIC from pillow-heif


@pytest.mark.parametrize("fmt", FORMATS)
def test_complete_files_decode_and_pass_the_check(fmt, tmp_path):
    data = _encoded(fmt, **FORMATS[fmt])
    assert incomplete_reason(io.BytesIO(data)) is None
    path = tmp_path / f"x.{fmt.lower()}"
    path.write_bytes(data)
    img = load_image(path)
    assert img.mode == "RGB" and img.size == (64, 48)
    if fmt in ("PNG",):  # lossless: the very pixels
        assert np.array_equal(np.asarray(img), np.asarray(_pixels()))


@pytest.mark.parametrize("fmt, cut, reason", [
    ("JPEG", 2, "truncated: no JPEG end-of-image marker after the image data"),
    ("JPEG", 300, "truncated: no JPEG end-of-image marker after the image data"),
    ("PNG", 12, "truncated: no PNG IEND chunk"),
    ("WEBP", 40, "truncated: WebP file has"),
    ("HEIF", 50, "truncated: HEIF box 'mdat' runs past the end of the file"),
    ("AVIF", 50, "truncated: HEIF box 'mdat' runs past the end of the file"),
])
def test_a_cut_file_gets_one_decision_everywhere(fmt, cut, reason, tmp_path):
    data = _encoded(fmt, **FORMATS[fmt])
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[:-cut])
    with pytest.raises(ImageLoadError) as info:
        load_image(path)  # training loaders, oc/bc evaluation, detect
    assert str(info.value).startswith(reason)
    assert parse_file(path)["error"] == str(info.value)  # the index: same text


def test_jpeg_missing_only_its_end_marker_decodes_in_pillow_but_is_refused(tmp_path):
    """The case the policy is for: libjpeg fills the missing end and Pillow returns an image."""
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (100, 100, 100)).save(buf, format="JPEG", quality=90)
    data = buf.getvalue()[:-2]
    Image.open(io.BytesIO(data)).load()  # Pillow alone accepts it (a flat image: no data lost)
    path = tmp_path / "cut.jpg"
    path.write_bytes(data)
    with pytest.raises(ImageLoadError, match="no JPEG end-of-image marker"):
        load_image(path)


def test_heic_and_avif_exif_is_read(tmp_path):
    from sdaie.exif.reader import read_exif

    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Apple", "iPhone 13"
    sub = exif.get_ifd(0x8769)
    sub[0x8827], sub[0x829D], sub[0x920A] = 400, 1.5, 5.7
    register_decoders()
    for fmt in ("HEIF", "AVIF"):
        path = tmp_path / f"p.{fmt.lower()}"
        _pixels().save(path, format=fmt, exif=exif.tobytes(), quality=90)
        result = read_exif(path)
        assert result.error is None and result.format == "heif"
        assert result.tags == {"Make": "Apple", "Model": "iPhone 13", "ISOSpeedRatings": 400,
                               "FNumber": 1.5, "FocalLength": 5.7}


def test_heif_item_reader_follows_the_base_offset(tmp_path):
    """libheif writes iloc base offsets, which exifread's own HEIF walker ignores."""
    from sdaie.exif.heif import heif_exif_block

    exif = Image.Exif()
    exif[0x010F] = "Make"
    register_decoders()
    path = tmp_path / "p.heic"
    _pixels().save(path, format="HEIF", exif=exif.tobytes())
    with open(path, "rb") as fh:
        block = heif_exif_block(fh)
    assert block[:4] in (b"MM\x00*", b"II*\x00")
    assert Path(path).read_bytes().find(block) > 0


def test_a_corrupt_heif_header_is_an_unreadable_file_not_a_crash(tmp_path):
    """libheif's errors (pillow-heif raises RuntimeError) follow the one policy: ImageLoadError.

    1,500 seeded mutations of 1-4 header bytes of a small HEIC; with the locked pillow-heif about
    a dozen of them make libheif fail with RuntimeError (e.g. a corrupt 'meta' box).
    """
    import random

    data = _encoded("HEIF", **FORMATS["HEIF"])
    rnd, path, refused = random.Random(0), tmp_path / "m.heic", 0
    for _ in range(1500):
        mutated = bytearray(data)
        for _ in range(rnd.randint(1, 4)):
            mutated[rnd.randrange(0, 600)] = rnd.randrange(256)
        path.write_bytes(bytes(mutated))
        try:
            load_image(path)
        except ImageLoadError:
            refused += 1
    assert refused > 100  # the mutations do break files; none of them escaped as another error


@pytest.mark.parametrize("chunk", [1 << 20, 7])  # 7: the end marker split across two reads
def test_a_jpeg_with_a_large_trailer_is_complete_and_a_cut_one_is_not(chunk, tmp_path,
                                                                      monkeypatch):
    """Motion photos append an MP4 after the end marker, further than the tail searched first."""
    from sdaie.data import completeness

    monkeypatch.setattr(completeness, "_EOI_CHUNK", chunk)
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Google", "Pixel 8"
    buf = io.BytesIO()
    _pixels().save(buf, format="JPEG", quality=90, exif=exif)
    jpeg = buf.getvalue()
    trailer = np.random.default_rng(1).integers(0, 256, 200_000, np.uint8).tobytes()
    trailer = trailer.replace(b"\xff\xd9", b"\xff\x00")
    assert b"\xff\xd9" not in trailer and len(trailer) > completeness.EOI_TAIL
    motion = tmp_path / "PXL_MP.jpg"
    motion.write_bytes(jpeg + trailer)
    assert load_image(motion).size == (64, 48)
    entry = parse_file(motion)
    assert entry["error"] is None and entry["size"] == [64, 48] and entry["tags"]["Make"] == "Google"

    cut = tmp_path / "cut.jpg"
    cut.write_bytes(jpeg[:-2] + trailer)  # cut before its end marker: the same refusal as ever
    with pytest.raises(ImageLoadError) as info:
        load_image(cut)
    assert str(info.value) == "truncated: no JPEG end-of-image marker after the image data"
    assert parse_file(cut)["error"] == str(info.value)
