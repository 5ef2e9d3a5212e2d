"""Helpers and fixtures for the EXIF tests: photos with known EXIF (Pillow), raw TIFF blocks
built byte by byte (for malformed values Pillow refuses to write), an independent Pillow reading
of the EXIF IFD, and the issue's zoo of bad files. Tests reach the helpers through the ``kit``
fixture (the suite runs with ``--import-mode=importlib``: test modules cannot import each other)."""

from __future__ import annotations

import io
import math
import struct
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from PIL import Image
from PIL.TiffImagePlugin import IFDRational

# TIFF field types
BYTE, ASCII, SHORT, LONG, RATIONAL, UNDEFINED, SSHORT, SLONG, SRATIONAL, FLOAT, DOUBLE = (
    1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12)
_SIZES = {BYTE: 1, ASCII: 1, SHORT: 2, LONG: 4, RATIONAL: 8, UNDEFINED: 1, SSHORT: 2, SLONG: 4,
          SRATIONAL: 8, FLOAT: 4, DOUBLE: 8}


def entry(tag: int, ftype: int, value: Any, offset: int | None = None, count: int | None = None):
    """One IFD entry. ``value``: str (ASCII), int, (num, den), float, or list of those.
    ``offset`` forces the value pointer (for broken offsets); ``count`` forces the count."""
    return {"tag": tag, "type": ftype, "value": value, "offset": offset, "count": count}


def _pack(e: dict, bo: str) -> tuple[bytes, int]:
    ftype, value = e["type"], e["value"]
    if ftype == ASCII:
        data = value.encode("latin-1") if isinstance(value, str) else value
        return data, len(data)
    values = value if isinstance(value, list) else [value]
    fmt = {BYTE: "B", UNDEFINED: "B", SHORT: "H", LONG: "I", SSHORT: "h", SLONG: "i",
           FLOAT: "f", DOUBLE: "d"}
    out = b""
    for v in values:
        if ftype in (RATIONAL, SRATIONAL):
            out += struct.pack(bo + ("II" if ftype == RATIONAL else "ii"), *v)
        else:
            out += struct.pack(bo + fmt[ftype], v)
    return out, len(values)


def tiff_block(ifd0: list[dict], exif: list[dict] | None = None, *, big_endian: bool = False,
               exif_offset: int | None = None, ifd0_offset: int | None = None) -> bytes:
    """A TIFF/EXIF block: header, IFD0 (+ ExifOffset pointer), EXIF IFD, then the data area."""
    bo = ">" if big_endian else "<"
    ifd0 = list(ifd0)
    if exif is not None:
        ifd0.append(entry(0x8769, LONG, 0))  # patched below
    ifd0.sort(key=lambda e: e["tag"])
    exif = sorted(exif or [], key=lambda e: e["tag"])
    ifd0_at = 8
    exif_at = ifd0_at + 2 + 12 * len(ifd0) + 4
    data_at = exif_at + (2 + 12 * len(exif) + 4 if exif else 0)
    data = b""

    def ifd_bytes(entries: list[dict]) -> bytes:
        nonlocal data
        out = struct.pack(bo + "H", len(entries))
        for e in entries:
            if e["tag"] == 0x8769:
                e = dict(e, value=exif_at if exif_offset is None else exif_offset)
            payload, count = _pack(e, bo)
            count = e["count"] if e["count"] is not None else count
            if len(payload) <= 4:
                field = payload.ljust(4, b"\x00")
                if e["offset"] is not None:
                    field = struct.pack(bo + "I", e["offset"])
            else:
                ptr = data_at + len(data) if e["offset"] is None else e["offset"]
                data += payload + (b"\x00" if len(payload) % 2 else b"")
                field = struct.pack(bo + "I", ptr)
            out += struct.pack(bo + "HHI", e["tag"], e["type"], count) + field
        return out + struct.pack(bo + "I", 0)

    body0 = ifd_bytes(ifd0)
    body1 = ifd_bytes(exif) if exif else b""
    header = (b"MM\x00\x2a" if big_endian else b"II\x2a\x00") + struct.pack(
        bo + "I", ifd0_at if ifd0_offset is None else ifd0_offset)
    return header + body0 + body1 + data


def plain_jpeg(size: tuple[int, int] = (32, 24), seed: int = 0, quality: int = 90) -> bytes:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def jpeg_with_block(block: bytes, size: tuple[int, int] = (32, 24), seed: int = 0) -> bytes:
    """A valid JPEG with ``block`` as its APP1 Exif segment, right after SOI."""
    jpeg = plain_jpeg(size, seed)
    payload = b"Exif\x00\x00" + block
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return jpeg[:2] + app1 + jpeg[2:]


def pillow_exif(**tags: Any) -> Image.Exif:
    """An ``Image.Exif`` from canonical-ish keyword names (IFD0 and EXIF sub-IFD)."""
    ifd0_ids = {"Make": 0x010F, "Model": 0x0110, "Software": 0x0131, "Orientation": 0x0112}
    exif_ids = {"ExposureTime": 0x829A, "FNumber": 0x829D, "ExposureProgram": 0x8822,
                "ISOSpeedRatings": 0x8827, "DateTimeOriginal": 0x9003,
                "ShutterSpeedValue": 0x9201, "ApertureValue": 0x9202,
                "ExposureBiasValue": 0x9204, "MaxApertureValue": 0x9205,
                "MeteringMode": 0x9207, "Flash": 0x9209, "FocalLength": 0x920A,
                "ExposureMode": 0xA402, "WhiteBalance": 0xA403, "FocalLengthIn35mmFilm": 0xA405,
                "SceneCaptureType": 0xA406, "LensMake": 0xA433, "LensModel": 0xA434,
                "BodySerialNumber": 0xA431}
    exif = Image.Exif()
    sub = exif.get_ifd(0x8769)
    for name, value in tags.items():
        if isinstance(value, tuple):
            value = IFDRational(*value)
        if name in ifd0_ids:
            exif[ifd0_ids[name]] = value
        else:
            sub[exif_ids[name]] = value
    return exif


def write_jpeg(path: Path, exif: Image.Exif | None = None, size: tuple[int, int] = (32, 24),
               seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    kwargs = {"exif": exif} if exif is not None else {}
    Image.fromarray(arr, "RGB").save(path, "JPEG", quality=90, **kwargs)
    return path


# An independent reading of the same tags: Pillow's EXIF parser, with exiftool's conversions of
# the APEX tags written out here rather than imported from the code under test.
_PIL_IFD0 = {0x010F: "Make", 0x0110: "Model"}
_PIL_EXIF = {0x829D: "FNumber", 0x829A: "ExposureTime", 0x8827: "ISOSpeedRatings",
             0x920A: "FocalLength", 0x9209: "Flash", 0x9207: "MeteringMode",
             0xA402: "ExposureMode", 0xA403: "WhiteBalance", 0xA406: "SceneCaptureType",
             0x9204: "ExposureBiasValue", 0x9205: "MaxApertureValue",
             0xA405: "FocalLengthIn35mmFilm", 0x9202: "ApertureValue",
             0x9201: "ShutterSpeedValue", 0x8822: "ExposureProgram"}


def pillow_reference(path: Path) -> dict[str, Any]:
    """Canonical tags as Pillow's ``getexif()`` reads them (values Pillow cannot make sense of
    -- zero denominators, non-numbers, non-positive exposure settings -- left out)."""
    with Image.open(path) as img:
        exif = img.getexif()
        sub = exif.get_ifd(0x8769)
    out: dict[str, Any] = {}
    for tag, name in _PIL_IFD0.items():
        if isinstance(exif.get(tag), str) and exif[tag].strip("\x00 "):
            out[name] = exif[tag].strip("\x00 ")
    for tag, name in _PIL_EXIF.items():
        value = sub.get(tag)
        if isinstance(value, tuple):
            value = value[0] if value else None
        if value is None or isinstance(value, (str, bytes)):
            continue
        value = float(value)
        if math.isnan(value):
            continue
        if name == "ApertureValue" or name == "MaxApertureValue":
            value = 2 ** (value / 2)
        elif name == "ShutterSpeedValue":
            value = 2 ** (-value)
        elif name in ("FNumber", "ExposureTime", "ISOSpeedRatings", "FocalLength",
                      "FocalLengthIn35mmFilm") and value <= 0:
            continue
        out[name] = value
    return out


def assert_same_tags(ours: dict[str, Any], reference: dict[str, Any], rel: float = 1e-9) -> None:
    """Every reference tag is in ``ours`` with the same value (numbers to ``rel``)."""
    for name, value in reference.items():
        assert name in ours, f"{name} missing (reference: {value!r})"
        if isinstance(value, str):
            assert ours[name] == value, name
        else:
            assert math.isclose(ours[name], value, rel_tol=rel), (name, ours[name], value)


CAMERAS = [
    dict(Make="Canon", Model="Canon EOS RP", FNumber=(28, 10), ExposureTime=(1, 100),
         ISOSpeedRatings=100, FocalLength=(35, 1), Flash=16, MeteringMode=5),
    dict(Make="NIKON CORPORATION", Model="NIKON D90", FNumber=(18, 10), ExposureTime=(1, 8),
         ISOSpeedRatings=800, FocalLength=(50, 1), Flash=25, MeteringMode=2),
    dict(Make="Apple", Model="iPhone XR", FNumber=(18, 10), ExposureTime=(1, 60),
         ISOSpeedRatings=320, FocalLength=(425, 100), MeteringMode=0),
]


def make_good(folder: Path, n: int, start: int = 0, size=(80, 64)) -> list[str]:
    names = []
    for k in range(start, start + n):
        rel = f"cam{k % 3}/img_{k:03d}.jpg"
        write_jpeg(folder / rel, pillow_exif(**CAMERAS[k % 3]), size=size, seed=k)
        names.append(rel)
    return names


def make_bad(folder: Path) -> dict[str, str]:
    """The issue's must-show zoo: file -> expected reason substring."""
    good = write_jpeg(folder / "tmp.jpg", pillow_exif(**CAMERAS[0]), size=(96, 96)).read_bytes()
    (folder / "tmp.jpg").unlink()
    (folder / "bad").mkdir(parents=True, exist_ok=True)
    (folder / "bad/truncated.jpg").write_bytes(good[: len(good) * 2 // 3])
    (folder / "bad/zero.jpg").write_bytes(b"")
    (folder / "bad/notes.jpg").write_text("this is text, not a JPEG\n")
    Image.new("RGB", (70, 70), (1, 2, 3)).save(folder / "bad/plain.png")
    write_jpeg(folder / "bad/noexif.jpg", None, size=(70, 70))
    (folder / "bad/README.txt").write_text("not an image extension: never listed\n")
    return {"bad/truncated.jpg": "truncated", "bad/zero.jpg": "empty file",
            "bad/notes.jpg": "not a recognised image format", "bad/plain.png": "no EXIF",
            "bad/noexif.jpg": "no EXIF"}


@pytest.fixture
def kit() -> SimpleNamespace:
    """The helpers above, as one namespace."""
    names = ["entry", "tiff_block", "plain_jpeg", "jpeg_with_block", "pillow_exif", "write_jpeg",
             "pillow_reference", "assert_same_tags", "make_good", "make_bad", "CAMERAS"]
    return SimpleNamespace(**{n: globals()[n] for n in names})
