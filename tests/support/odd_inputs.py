"""A zoo of odd and malformed image files, for proving that every stage skips and reports them.

Real collections contain truncated downloads, HTML saved as .jpg, 16-bit TIFFs, CMYK JPEGs,
1-pixel images, decompression bombs and EXIF with broken offsets. :func:`make_odd_inputs` writes
such files deterministically and says, per file, what a careful reader should conclude:

- ``"ok"``: a valid image that must be used (possibly after an explicit mode conversion);
- ``"error"``: not usable, must come back as an error row with a reason;
- ``"any"``: byte-corrupted data that a decoder may or may not accept; either outcome is fine,
  but it must be one of the two, never a traceback.

``expect`` is about the pixels. EXIF is judged separately: files whose kind starts with
``"jpeg with EXIF"`` carry broken metadata in a valid image (the pixels must stay usable, the
EXIF reader must drop or report the bad values), and ``"camera jpeg"`` files carry complete,
valid camera EXIF, so an index built from the zoo always has usable photos.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class OddFile:
    path: Path
    kind: str  # short description, e.g. "truncated jpeg 50%"
    expect: str  # "ok" | "error" | "any"


def _scene(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A textured RGB image (so JPEG has real scan data to corrupt)."""
    yy, xx = np.mgrid[0:h, 0:w]
    base = (np.sin(xx / 5.0)[..., None] * 60 + np.cos(yy / 7.0)[..., None] * 60 + 128)
    noise = rng.normal(0, 20, size=(h, w, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def _jpeg_bytes(arr: np.ndarray, quality: int = 90, exif: bytes | None = None) -> bytes:
    buf = io.BytesIO()
    kwargs = {"quality": quality}
    if exif is not None:
        kwargs["exif"] = exif
    Image.fromarray(arr).save(buf, "JPEG", **kwargs)
    return buf.getvalue()


# ----------------------------------------------------------------------------------------------
# Raw TIFF/EXIF structures (little-endian), for EXIF that Pillow would refuse to write
# ----------------------------------------------------------------------------------------------

_SHORT, _LONG, _RATIONAL, _ASCII = 3, 4, 5, 2


def _ifd(entries: list[tuple[int, int, int, bytes]], next_ifd: int) -> bytes:
    """An IFD: entries are (tag, type, count, 4-byte value-or-offset field)."""
    out = struct.pack("<H", len(entries))
    for tag, typ, count, field in sorted(entries):
        out += struct.pack("<HHI", tag, typ, count) + field.ljust(4, b"\0")[:4]
    return out + struct.pack("<I", next_ifd)


def _tiff(build) -> bytes:
    """``build(ifd0_offset) -> body``; returns the TIFF header + body (IFD0 at offset 8)."""
    return b"II*\x00" + struct.pack("<I", 8) + build(8)


def _exif_zero_denominator() -> bytes:
    # IFD0 (1 entry) at 8: 2 + 12 + 4 = 18 bytes -> Exif IFD at 26 with 2 entries (2+24+4 = 30)
    # -> rationals at 56 and 64.
    ifd0 = _ifd([(0x8769, _LONG, 1, struct.pack("<I", 26))], 0)
    exif = _ifd([(0x829D, _RATIONAL, 1, struct.pack("<I", 56)),  # FNumber = 28/0
                 (0x920A, _RATIONAL, 1, struct.pack("<I", 64))], 0)  # FocalLength = 0/0
    return _tiff(lambda _o: ifd0 + exif + struct.pack("<II", 28, 0) + struct.pack("<II", 0, 0))


def _exif_wrong_types() -> bytes:
    # ISO and ExposureTime written as ASCII strings; Make as a LONG.
    ifd0 = _ifd([(0x010F, _LONG, 1, struct.pack("<I", 12345)),
                 (0x8769, _LONG, 1, struct.pack("<I", 38))], 0)  # 2+24+4 = 30 -> 38
    exif = _ifd([(0x8827, _ASCII, 4, b"abc\0"),
                 (0x829A, _ASCII, 4, b"1/0\0")], 0)
    return _tiff(lambda _o: ifd0 + exif)


def _exif_loop() -> bytes:
    # IFD0 points to itself as its next IFD and as its Exif IFD.
    ifd0 = _ifd([(0x010F, _ASCII, 4, b"Foo\0"), (0x8769, _LONG, 1, struct.pack("<I", 8))], 8)
    return _tiff(lambda _o: ifd0)


def _exif_out_of_range() -> bytes:
    ifd0 = _ifd([(0x010F, _ASCII, 40, struct.pack("<I", 0x7FFFFF00)),  # Make string far away
                 (0x8769, _LONG, 1, struct.pack("<I", 0xFFFFFF00))], 0xFFFF0000)
    return _tiff(lambda _o: ifd0)


def _exif_huge_count() -> bytes:
    return b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 0xFFFF) + b"\0" * 24


def _exif_bad_header() -> bytes:
    return b"XX*\x00" + b"\0" * 20


def _exif_sub_ifd_loop() -> bytes:
    # IFD0 -> Exif IFD at 26, whose ExifOffset entry points back at itself (and next IFD at IFD0).
    ifd0 = _ifd([(0x8769, _LONG, 1, struct.pack("<I", 26))], 0)
    exif = _ifd([(0x8769, _LONG, 1, struct.pack("<I", 26)),
                 (0x8827, _SHORT, 1, struct.pack("<H", 400))], 8)
    return _tiff(lambda _o: ifd0 + exif)


def _exif_extreme_values() -> bytes:
    # FNumber 2^32-1 / 1, ExposureTime 0/1 (non-positive), FocalLength 1/2^32-1, ISO 0 and a
    # zero-length Make string. IFD0 (2 entries) at 8 -> Exif IFD at 38 (4 entries: 2+48+4 = 54)
    # -> rationals at 92, 100, 108.
    ifd0 = _ifd([(0x010F, _ASCII, 0, b""), (0x8769, _LONG, 1, struct.pack("<I", 38))], 0)
    exif = _ifd([(0x829D, _RATIONAL, 1, struct.pack("<I", 92)),
                 (0x829A, _RATIONAL, 1, struct.pack("<I", 100)),
                 (0x920A, _RATIONAL, 1, struct.pack("<I", 108)),
                 (0x8827, _SHORT, 1, struct.pack("<H", 0))], 0)
    values = struct.pack("<II", 0xFFFFFFFF, 1) + struct.pack("<II", 0, 1) + struct.pack("<II", 1, 0xFFFFFFFF)
    return _tiff(lambda _o: ifd0 + exif + values)


def _exif_count_overflow() -> bytes:
    # A RATIONAL entry claiming 2^30 values (count x 8 bytes overflows 32 bits) at offset 26.
    ifd0 = _ifd([(0x8769, _LONG, 1, struct.pack("<I", 26))], 0)
    exif = _ifd([(0x829D, _RATIONAL, 0x40000000, struct.pack("<I", 56))], 0)
    return _tiff(lambda _o: ifd0 + exif + b"\0" * 16)


def _camera_exif(rng: np.random.Generator, orientation: int | None = None) -> Image.Exif:
    """Complete, valid camera EXIF (the tags the paper's schema reads)."""
    exif = Image.Exif()
    exif[0x010F] = "OddCam"
    exif[0x0110] = f"Model {int(rng.integers(1, 4))}"
    if orientation is not None:
        exif[0x0112] = orientation
    sub = exif.get_ifd(0x8769)
    sub[0x8827] = int(rng.choice([100, 400, 1600]))  # ISO
    sub[0x829D] = float(rng.choice([1.8, 4.0, 8.0]))  # FNumber
    sub[0x829A] = float(rng.choice([1 / 500, 1 / 60, 1 / 8]))  # ExposureTime
    sub[0x920A] = float(rng.choice([24.0, 50.0]))  # FocalLength
    sub[0x9209] = 16  # Flash: off
    sub[0x9207] = 5  # MeteringMode: pattern
    sub[0xA402] = 0  # ExposureMode: auto
    sub[0xA403] = 0  # WhiteBalance: auto
    return exif


def _corrupt_exif_payload(jpeg: bytes, rng: np.random.Generator, n: int) -> bytes:
    """Overwrite ``n`` random bytes inside the first APP1 Exif payload (its length field and the
    TIFF header are kept, so the JPEG structure and the pixels stay intact)."""
    start = jpeg.index(b"Exif\0\0") + 6
    length = int.from_bytes(jpeg[start - 8:start - 6], "big")  # APP1 length (incl. its 2 bytes)
    end = start - 8 + length
    data = np.frombuffer(jpeg, dtype=np.uint8).copy()
    idx = rng.integers(start + 8, end, size=n)
    data[idx] = rng.integers(0, 256, size=n, dtype=np.uint8)
    return data.tobytes()


def _jpeg_claiming(jpeg: bytes, w: int, h: int) -> bytes:
    """``jpeg`` with its frame header (SOF0) patched to claim ``w x h`` pixels."""
    sof = jpeg.index(b"\xff\xc0")
    return jpeg[:sof + 5] + struct.pack(">HH", h, w) + jpeg[sof + 9:]


def _tiff_claiming(w: int, h: int) -> bytes:
    """An uncompressed 8-bit grey TIFF whose IFD claims ``w x h`` pixels (strip: 16 bytes)."""
    entries = [(0x0100, _LONG, 1, struct.pack("<I", w)), (0x0101, _LONG, 1, struct.pack("<I", h)),
               (0x0102, _SHORT, 1, struct.pack("<H", 8)), (0x0103, _SHORT, 1, struct.pack("<H", 1)),
               (0x0106, _SHORT, 1, struct.pack("<H", 1)),
               (0x0111, _LONG, 1, struct.pack("<I", 8 + 2 + 8 * 12 + 4)),
               (0x0115, _SHORT, 1, struct.pack("<H", 1)), (0x0117, _LONG, 1, struct.pack("<I", 16))]
    return _tiff(lambda _o: _ifd(entries, 0) + b"\x80" * 16)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def _png(w: int, h: int, depth: int, colour: int, rows: bytes) -> bytes:
    """A PNG from raw filtered rows (each starting with its filter byte)."""
    ihdr = struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
            + _png_chunk(b"IDAT", zlib.compress(rows)) + _png_chunk(b"IEND", b""))


def _png_claiming(w: int, h: int) -> bytes:
    """A PNG whose IHDR claims ``w x h`` pixels but carries one tiny IDAT chunk."""
    return _png(w, h, 8, 2, b"\0" * 64)


def _png16(arr: np.ndarray) -> bytes:
    """16-bit RGB (3 channels) or RGBA (4) PNG, which Pillow cannot write itself."""
    h, w, c = arr.shape
    rows = b"".join(b"\0" + arr[y].astype(">u2").tobytes() for y in range(h))
    return _png(w, h, 16, {3: 2, 4: 6}[c], rows)


def _save(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


Put = Callable[[str, bytes, str, str], None]  # (file name, bytes, kind, expect)


def _broken(put: Put, rng: np.random.Generator, tag: str, good: bytes) -> None:
    """Truncated and corrupted JPEG data, empty files, text and HTML under image names."""
    for frac in (0.0, 0.02, 0.3, 0.7, 0.98):
        cut = max(1, int(len(good) * frac)) if frac else 2
        # Pillow fills a truncated scan with grey only when LOAD_TRUNCATED_IMAGES is set; we
        # never set it, so any cut inside the data is an error.
        put(f"truncated_{int(frac * 100):02d}_{tag}.jpg", good[:cut], f"truncated jpeg {frac:.0%}",
            "error")
    for k in range(3):
        data = np.frombuffer(good, dtype=np.uint8).copy()
        idx = rng.integers(len(data) // 3, len(data) - 4, size=20)
        data[idx] = rng.integers(0, 256, size=20, dtype=np.uint8)
        put(f"corrupted_{k}_{tag}.jpg", data.tobytes(), "byte-corrupted jpeg", "any")
    put(f"zero_bytes_{tag}.jpg", b"", "zero-byte .jpg", "error")
    put(f"zero_bytes_{tag}.png", b"", "zero-byte .png", "error")
    put(f"text_{tag}.jpg", b"hello, this is not an image\n" * 3, "text file named .jpg", "error")
    put(f"html_{tag}.jpg", b"<!DOCTYPE html><html><body>404 Not Found</body></html>",
        "HTML saved as .jpg", "error")
    put(f"text_{tag}.tif", b"II*\x00garbage", "broken TIFF header", "error")


def _sizes(put: Put, rng: np.random.Generator, tag: str) -> None:
    """Tiny, around the 64-px patch, very thin."""
    for w, h in [(1, 1), (2, 2), (7, 5), (63, 63), (64, 64), (65, 65), (63, 200), (200, 63),
                 (1, 500), (500, 1), (640, 3)]:
        arr = _scene(rng, w, h)
        put(f"size_{w}x{h}_{tag}.png", _save(Image.fromarray(arr), "PNG"), f"{w}x{h} png", "ok")


def _modes(put: Put, tag: str, rgb: Image.Image) -> None:
    """Every Pillow mode a photo folder may hold."""
    put(f"mode_L_{tag}.jpg", _save(rgb.convert("L"), "JPEG"), "grayscale jpeg", "ok")
    put(f"mode_P_{tag}.png", _save(rgb.convert("P"), "PNG"), "palette png", "ok")
    put(f"mode_RGBA_{tag}.png", _save(rgb.convert("RGBA"), "PNG"), "RGBA png", "ok")
    put(f"mode_LA_{tag}.png", _save(rgb.convert("LA"), "PNG"), "LA png", "ok")
    put(f"mode_CMYK_{tag}.jpg", _save(rgb.convert("CMYK"), "JPEG"), "CMYK jpeg", "ok")
    put(f"mode_1_{tag}.png", _save(rgb.convert("1"), "PNG"), "1-bit png", "ok")
    put(f"mode_1_{tag}.tif", _save(rgb.convert("1"), "TIFF"), "1-bit tiff", "ok")
    gray16 = (np.asarray(rgb.convert("L"), dtype=np.uint16) * 257)
    put(f"mode_I16_{tag}.png", _save(Image.fromarray(gray16), "PNG"), "16-bit png", "ok")
    put(f"mode_I16_{tag}.tif", _save(Image.fromarray(gray16), "TIFF"), "16-bit tiff", "ok")
    flt = np.asarray(rgb.convert("L"), dtype=np.float32) / 255.0
    put(f"mode_F_{tag}.tif", _save(Image.fromarray(flt), "TIFF"), "float tiff", "ok")
    put(f"mode_RGB_{tag}.tif", _save(rgb, "TIFF"), "RGB tiff", "ok")


def _flat_and_saturated(put: Put, rng: np.random.Generator, tag: str) -> None:
    """Flat images (zero-trace covariance downstream), PNGs claiming enormous sizes, and
    saturated ones (every pixel at 0 or 255)."""
    for name, value in (("black", 0), ("white", 255), ("grey", 128)):
        flat = np.full((128, 128, 3), value, np.uint8)
        put(f"flat_{name}_{tag}.jpg", _jpeg_bytes(flat), f"flat {name} jpeg", "ok")
        put(f"flat_{name}_{tag}.png", _save(Image.fromarray(flat), "PNG"), f"flat {name} png",
            "ok")
    put(f"bomb_claim_{tag}.png", _png_claiming(100_000, 100_000), "PNG claiming 1e10 px", "error")
    put(f"bomb_claim_{tag}.jpg", _png_claiming(30_000, 30_000), "PNG bytes named .jpg, 9e8 px",
        "error")
    red = np.zeros((96, 96, 3), np.uint8)
    red[..., 0] = 255
    put(f"saturated_red_{tag}.png", _save(Image.fromarray(red), "PNG"), "saturated red png", "ok")
    checker = ((np.indices((96, 96)).sum(0) % 2) * 255).astype(np.uint8)
    put(f"saturated_checker_{tag}.png", _save(Image.fromarray(checker).convert("RGB"), "PNG"),
        "0/255 pixel checkerboard png", "ok")
    clipped = np.where(rng.random((96, 96, 3)) < 0.5, 0, 255).astype(np.uint8)
    put(f"saturated_noise_{tag}.jpg", _jpeg_bytes(clipped), "0/255 noise jpeg", "ok")


def _containers(put: Put, rng: np.random.Generator, tag: str, rgb: Image.Image,
                good: bytes) -> None:
    """More containers and depths, and headers claiming enormous sizes in each container."""
    deep = rng.integers(0, 65536, size=(40, 48, 3), dtype=np.uint16)
    put(f"mode_RGB16_{tag}.png", _png16(deep), "16-bit RGB png", "ok")
    put(f"mode_RGBA16_{tag}.png", _png16(np.concatenate([deep, deep[..., :1]], axis=2)),
        "16-bit RGBA png", "ok")
    put(f"mode_1_g4_{tag}.tif", _save(rgb.convert("1"), "TIFF", compression="group4"),
        "1-bit CCITT G4 tiff", "ok")
    put(f"mode_RGB_lzw_{tag}.tif", _save(rgb, "TIFF", compression="tiff_lzw"), "LZW RGB tiff",
        "ok")
    put(f"mode_RGB_{tag}.bmp", _save(rgb, "BMP"), "RGB bmp", "ok")
    put(f"mode_RGB_{tag}.webp", _save(rgb, "WEBP", lossless=True), "lossless webp", "ok")
    put(f"jpeg_named_png_{tag}.png", _jpeg_bytes(_scene(rng, 80, 64)), "JPEG bytes named .png",
        "ok")
    put(f"text_{tag}.bmp", b"BM" + b"\xff" * 40, "broken BMP header", "error")
    put(f"bomb_claim_sof_{tag}.jpg", _jpeg_claiming(good, 65500, 65500),
        "JPEG frame header claiming 65500x65500", "error")
    put(f"bomb_claim_{tag}.tif", _tiff_claiming(200_000, 200_000), "TIFF claiming 4e10 px",
        "error")
    put(f"zero_size_{tag}.png", _png(0, 10, 8, 2, b""), "PNG claiming 0x10 px", "error")


def _exif(put: Put, rng: np.random.Generator, tag: str) -> None:
    """Malformed EXIF inside otherwise valid JPEGs (the pixels stay usable), then valid camera
    photos (so an index of the zoo is not empty), one with orientation 6 ("rotate 90 degrees to
    display"), which must not be applied to the pixels."""
    pix = _scene(rng, 128, 96)
    for name, blob in (("zero_denominator", _exif_zero_denominator()),
                       ("wrong_types", _exif_wrong_types()),
                       ("ifd_loop", _exif_loop()),
                       ("sub_ifd_loop", _exif_sub_ifd_loop()),
                       ("offsets_out_of_range", _exif_out_of_range()),
                       ("huge_entry_count", _exif_huge_count()),
                       ("count_overflow", _exif_count_overflow()),
                       ("extreme_values", _exif_extreme_values()),
                       ("bad_tiff_header", _exif_bad_header())):
        put(f"exif_{name}_{tag}.jpg", _jpeg_bytes(pix, exif=b"Exif\0\0" + blob),
            f"jpeg with EXIF: {name.replace('_', ' ')}", "ok")
    camera = _jpeg_bytes(pix, exif=_camera_exif(rng).tobytes())
    for k in range(3):
        put(f"exif_fuzz_{k}_{tag}.jpg", _corrupt_exif_payload(camera, rng, 12),
            "jpeg with EXIF: random bytes in the EXIF block", "ok")
    put(f"camera_{tag}.jpg", camera, "camera jpeg", "ok")
    put(f"camera_rotated_{tag}.jpg", _jpeg_bytes(pix, exif=_camera_exif(rng, 6).tobytes()),
        "camera jpeg, EXIF orientation 6", "ok")


def make_odd_inputs(out_dir: str | Path, seed: int = 0, copies: int = 1) -> list[OddFile]:
    """Write the zoo into ``out_dir`` (flat); ``copies`` > 1 repeats each recipe with new seeds."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: list[OddFile] = []

    def put(name: str, data: bytes, kind: str, expect: str) -> None:
        path = out / name
        path.write_bytes(data)
        files.append(OddFile(path, kind, expect))

    for c in range(copies):
        rng = np.random.default_rng(seed * 1000 + c)
        tag = f"{c:03d}"
        good = _jpeg_bytes(_scene(rng, 160, 120))
        put(f"good_{tag}.jpg", good, "valid jpeg", "ok")
        _broken(put, rng, tag, good)
        _sizes(put, rng, tag)
        rgb = Image.fromarray(_scene(rng, 96, 80))
        _modes(put, tag, rgb)
        _flat_and_saturated(put, rng, tag)
        _containers(put, rng, tag, rgb, good)
        _exif(put, rng, tag)
    return files
