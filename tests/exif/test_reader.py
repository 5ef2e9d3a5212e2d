import io
import logging
import math
import struct

import numpy as np
import pytest
from PIL import Image

from sdaie.exif.reader import CANONICAL_TAGS, read_exif, read_exif_bytes, warning_kind

# TIFF field types
ASCII, SHORT, LONG, RATIONAL, SRATIONAL, DOUBLE = 2, 3, 4, 5, 10, 12

KNOWN = dict(
    Make="Canon\x00\x00 ", Model="  Canon EOS 5D Mark III ", FNumber=(28, 10),
    ExposureTime=(1, 250),
    ISOSpeedRatings=400, FocalLength=(50, 1), Flash=16, MeteringMode=5, ExposureMode=1,
    WhiteBalance=1, SceneCaptureType=2, ExposureBiasValue=(-2, 3), MaxApertureValue=(3, 1),
    FocalLengthIn35mmFilm=75, ApertureValue=(5, 1), ShutterSpeedValue=(8, 1), ExposureProgram=3,
    DateTimeOriginal="2021:09:27 07:13:34", LensModel="EF50mm f/1.8 STM", BodySerialNumber="0123",
)


def test_known_exif_written_by_pillow(tmp_path, kit):
    path = kit.write_jpeg(tmp_path / "a.jpg", kit.pillow_exif(**KNOWN))
    res = read_exif(path)
    assert res.ok and res.format == "jpeg" and res.warnings == []
    expected = {
        "Make": "Canon", "Model": "Canon EOS 5D Mark III", "FNumber": 2.8, "ExposureTime": 0.004,
        "ISOSpeedRatings": 400, "FocalLength": 50.0, "Flash": 16, "MeteringMode": 5,
        "ExposureMode": 1, "WhiteBalance": 1, "SceneCaptureType": 2, "ExposureBiasValue": -2 / 3,
        "MaxApertureValue": 2 ** 1.5,  # APEX Av 3 -> f/2.83 (exiftool -n)
        "FocalLengthIn35mmFilm": 75, "ApertureValue": 2 ** 2.5, "ShutterSpeedValue": 1 / 256,
        "ExposureProgram": 3, "DateTimeOriginal": "2021:09:27 07:13:34",
        "LensModel": "EF50mm f/1.8 STM",
    }
    assert set(res.tags) == set(expected)
    for name, value in expected.items():
        assert res.tags[name] == (value if isinstance(value, str) else pytest.approx(value)), name
    assert "BodySerialNumber" not in res.tags  # never read (privacy)
    # integer codes stay ints, rationals become floats
    assert isinstance(res.tags["Flash"], int) and isinstance(res.tags["ISOSpeedRatings"], int)
    assert isinstance(res.tags["FocalLength"], float)
    assert set(res.tags) <= set(CANONICAL_TAGS)


def test_agrees_with_pillow_reading_of_the_same_ifd(tmp_path, kit):
    path = kit.write_jpeg(tmp_path / "a.jpg", kit.pillow_exif(**KNOWN))
    ours = read_exif(path).tags
    ref = kit.pillow_reference(path)
    assert len(ref) >= 15
    kit.assert_same_tags(ours, ref)


def test_big_endian_block_and_tiff_container(kit):
    block = kit.tiff_block([kit.entry(0x010F, ASCII, "NIKON CORPORATION\x00"),
                        kit.entry(0x0110, ASCII, "NIKON D90\x00")],
                       [kit.entry(0x829D, RATIONAL, (18, 10)), kit.entry(0x8827, SHORT, 200)],
                       big_endian=True)
    for data in (kit.jpeg_with_block(block), block):  # a bare TIFF block is a TIFF file
        res = read_exif_bytes(data)
        assert res.tags == {"Make": "NIKON CORPORATION", "Model": "NIKON D90", "FNumber": 1.8,
                            "ISOSpeedRatings": 200}
    assert read_exif_bytes(block).format == "tiff"


def test_iso_from_newer_tags(kit):
    saturated = kit.tiff_block([], [kit.entry(0x8827, SHORT, 65535),
                                    kit.entry(0x8833, LONG, 102400)])
    assert read_exif_bytes(kit.jpeg_with_block(saturated)).tags["ISOSpeedRatings"] == 102400
    rei_only = kit.tiff_block([], [kit.entry(0x8830, SHORT, 2), kit.entry(0x8832, LONG, 3200)])
    assert read_exif_bytes(kit.jpeg_with_block(rei_only)).tags["ISOSpeedRatings"] == 3200
    sos_only = kit.tiff_block([], [kit.entry(0x8831, LONG, 500)])  # StandardOutputSensitivity
    assert read_exif_bytes(kit.jpeg_with_block(sos_only)).tags["ISOSpeedRatings"] == 500
    plain = kit.tiff_block([], [kit.entry(0x8827, SHORT, [100, 100])])  # count 2 (some cameras)
    assert read_exif_bytes(kit.jpeg_with_block(plain)).tags["ISOSpeedRatings"] == 100


@pytest.mark.parametrize("tag_id, ftype, value, offset, tag, reason", [
    (0x829D, RATIONAL, (28, 0), None, "FNumber", "zero denominator"),
    (0x829A, RATIONAL, (0, 1), None, "ExposureTime", "non-positive"),
    (0x920A, SRATIONAL, (-50, 1), None, "FocalLength", "non-positive"),
    (0x8827, SHORT, 0, None, "ISOSpeedRatings", "non-positive"),
    (0x829D, ASCII, "f/2.8\x00", None, "FNumber", "string where a number belongs"),
    (0x9209, ASCII, "on\x00", None, "Flash", "string where a number belongs"),
    (0x829D, DOUBLE, float("nan"), None, "FNumber", "not a finite number"),
    (0x8827, RATIONAL, (801, 2), None, "ISOSpeedRatings", "not an integer"),
    (0xA434, SHORT, 1, None, "LensModel", "number where a string belongs"),
    (0xA434, ASCII, "  \x00\x00", None, "LensModel", "empty string"),
    (0x9003, ASCII, "0000:00:00 00:00:00\x00", None, "DateTimeOriginal", "unset date"),
    (0x829D, RATIONAL, (28, 10), 60000, "FNumber", "value outside the EXIF block"),
    (0x9201, SRATIONAL, (200, 1), None, "ShutterSpeedValue", "APEX value out of range"),
    (0x9202, RATIONAL, (5000, 1), None, "ApertureValue", "APEX value out of range"),  # 2**2500
    (0x9205, RATIONAL, (100, 1), None, "MaxApertureValue", "APEX value out of range"),
])
def test_invalid_values_are_dropped_with_a_counted_warning(tag_id, ftype, value, offset, tag,
                                                            reason, kit):
    good = kit.entry(0x920A, RATIONAL, (35, 1))
    if tag_id == 0x920A:
        good = kit.entry(0x829A, RATIONAL, (1, 100))
    bad = kit.entry(tag_id, ftype, value, offset=offset)
    block = kit.tiff_block([kit.entry(0x010F, ASCII, "Make\x00")], [bad, good])
    res = read_exif_bytes(kit.jpeg_with_block(block))
    assert res.ok
    assert tag not in res.tags  # dropped, never a silent zero
    assert [warning_kind(w) for w in res.warnings] == [f"{tag}: {reason}"]
    assert res.tags["Make"] == "Make" and len(res.tags) == 2  # the rest still read


def test_exposure_bias_may_be_zero_or_negative(kit):
    block = kit.tiff_block([], [kit.entry(0x9204, SRATIONAL, (0, 3))])
    assert read_exif_bytes(kit.jpeg_with_block(block)).tags == {"ExposureBiasValue": 0.0}


def test_broken_ifd_offsets_never_raise(kit):
    exif = [kit.entry(0x829D, RATIONAL, (28, 10))]
    make = [kit.entry(0x010F, ASCII, "Sony\x00")]

    def read(**offsets):
        return read_exif_bytes(kit.jpeg_with_block(kit.tiff_block(make, exif, **offsets)))

    # EXIF pointer beyond the block: IFD0 survives, the EXIF tags are simply absent
    res = read(exif_offset=0x7FFF0000)
    assert res.ok and res.tags == {"Make": "Sony"}
    # IFD0 pointer beyond the block: no tags, but the file is a readable JPEG
    res = read(ifd0_offset=1 << 20)
    assert res.ok and res.tags == {}
    # EXIF IFD pointing back at IFD0 (a loop) terminates
    res = read(exif_offset=8)
    assert res.ok and res.tags["Make"] == "Sony" and "FNumber" not in res.tags


def test_fuzzed_blocks_never_raise_nor_log(caplog, kit):
    block = kit.tiff_block([kit.entry(0x010F, ASCII, "Canon\x00"),
                            kit.entry(0x0110, ASCII, "Canon EOS\x00")],
                       [kit.entry(0x829D, RATIONAL, (28, 10)), kit.entry(0x829A, RATIONAL, (1, 60)),
                        kit.entry(0x8827, SHORT, 400), kit.entry(0x9209, SHORT, 16),
                        kit.entry(0xA434, ASCII, "Lens\x00")])
    rng = np.random.default_rng(0)
    caplog.set_level(logging.DEBUG)
    n_tags = 0
    for _ in range(300):
        data = bytearray(block)
        for pos in rng.integers(0, len(data), size=rng.integers(1, 8)):
            data[pos] = int(rng.integers(0, 256))
        cut = int(rng.integers(8, len(data) + 1))
        res = read_exif_bytes(kit.jpeg_with_block(bytes(data[:cut])))
        assert res.error is None or isinstance(res.error, str)
        for name, value in res.tags.items():
            if isinstance(value, float):
                assert math.isfinite(value), name
        n_tags += len(res.tags)
    assert n_tags > 0
    assert not [r for r in caplog.records if r.name.startswith("exifread")
                and r.levelno >= logging.WARNING]


def test_files_that_are_not_usable(tmp_path, kit):
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert read_exif(tmp_path / "empty.jpg").error == "empty file (0 bytes)"
    (tmp_path / "text.jpg").write_text("hello, not a photo\n")
    assert "not a recognised image format" in read_exif(tmp_path / "text.jpg").error
    assert "cannot read" in read_exif(tmp_path / "missing.jpg").error
    good = kit.jpeg_with_block(kit.tiff_block([kit.entry(0x010F, ASCII, "Canon\x00")]))
    assert "ends inside" in read_exif_bytes(good[:3]).error  # cut inside the first marker
    # cut inside the APP1 segment: what survives is read, nothing is invented
    res = read_exif_bytes(good[:40])
    assert res.ok and res.tags.get("Make") in (None, "Canon")


def test_truncated_pixel_data_still_has_its_header(tmp_path, kit):
    path = kit.write_jpeg(tmp_path / "a.jpg", kit.pillow_exif(Make="Canon", FNumber=(4, 1)),
                          size=(64, 64))
    data = path.read_bytes()
    assert read_exif_bytes(data[: len(data) // 2]).tags == {"Make": "Canon", "FNumber": 4.0}


def test_no_exif_jpeg_png_and_png_with_exif(tmp_path, kit):
    assert read_exif_bytes(kit.plain_jpeg()).tags == {} and read_exif_bytes(kit.plain_jpeg()).ok
    img = Image.new("RGB", (8, 8))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    res = read_exif_bytes(buf.getvalue())
    assert res.ok and res.format == "png" and res.tags == {}
    buf = io.BytesIO()
    img.save(buf, "PNG", exif=kit.pillow_exif(Make="Apple", ISOSpeedRatings=64))
    assert read_exif_bytes(buf.getvalue()).tags == {"Make": "Apple", "ISOSpeedRatings": 64}
    buf = io.BytesIO()
    img.save(buf, "PPM")  # an image format without an EXIF container: no tags, not an error
    res = read_exif_bytes(buf.getvalue())
    assert res.ok and res.format == "ppm" and res.tags == {}


def test_jpeg_with_other_app_segments_first(kit):
    block = kit.tiff_block([kit.entry(0x0110, ASCII, "X100\x00")])
    jpeg = kit.jpeg_with_block(block)
    icc = b"\xff\xe2" + struct.pack(">H", 2 + 300) + b"ICC_PROFILE\x00" + bytes(288)
    res = read_exif_bytes(jpeg[:2] + icc + b"\xff\xff" + jpeg[2:])  # + a fill byte
    assert res.tags == {"Model": "X100"}


def test_a_reader_failure_on_one_header_is_an_error_result_not_an_exception(kit, monkeypatch):
    """Whatever exifread or our checks raise on a header, the file gets an error, the run goes on."""
    import sdaie.exif.reader as reader

    def boom(fh):
        raise IndexError("list index out of range")

    monkeypatch.setattr(reader, "_run_exifread", boom)
    block = kit.tiff_block([kit.entry(0x010F, ASCII, "Make\x00")])
    res = read_exif_bytes(kit.jpeg_with_block(block))
    assert not res.ok and res.format == "jpeg"
    assert res.error == "EXIF header unreadable (IndexError: list index out of range)"
