"""The file container around the pixels, read without decoding them: format, EXIF block, size.

Everything here reads headers and markers only, so indexing a folder never pays for pixel
decoding: :func:`sniff_format` names the container, :func:`jpeg_segments` walks a JPEG's marker
chain up to the scan, :func:`jpeg_exif_block` returns the TIFF block of its ``APP1 Exif``
segment, :func:`image_size` reads the pixel size from the header (with the loader's limits) and
:func:`truncation` tells a file cut short from a complete one.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError

from sdaie.data.completeness import MalformedHeader, incomplete_reason, jpeg_segments
from sdaie.data.imageio import ImageLoadError, check_size, register_decoders

__all__ = ["MalformedHeader", "image_size", "jpeg_exif_block", "jpeg_segments", "pillow_format",
           "sniff_format", "truncation"]

# Containers whose EXIF we locate; anything else Pillow can open is an image without EXIF.
_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8", 0, "jpeg"),
    (b"II*\x00", 0, "tiff"),
    (b"MM\x00*", 0, "tiff"),
    (b"\x89PNG\r\n\x1a\n", 0, "png"),
)


# ISO base media major brands of still images that can carry EXIF (HEIF, HEIC, AVIF).
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1",
                          b"msf1", b"avif", b"avis"})


def sniff_format(head: bytes) -> str | None:
    """Container format from the first bytes, if it is one that can hold EXIF."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS:
        return "heif"
    for magic, offset, name in _MAGIC:
        if head[offset:offset + len(magic)] == magic:
            return name
    return None


def pillow_format(fh: BinaryIO) -> str | None:
    """Format name of an image Pillow recognises but we do not sniff (PPM, SGI, ...): such files
    are images without an EXIF container, not errors."""
    fh.seek(0)
    try:
        with Image.open(fh) as img:
            return (img.format or "image").lower()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
        return None


def jpeg_exif_block(fh: BinaryIO) -> bytes | None:
    """TIFF bytes of the first ``APP1 Exif`` segment of a JPEG, or None if it has none.

    A segment cut short by truncation keeps what is there: values past its end are then
    reported as outside the block.
    """
    for code, _, length in jpeg_segments(fh):
        if code == 0xE1 and length > 8:
            payload = fh.read(length - 2)
            if payload[:6] in (b"Exif\x00\x00", b"Exif\x00\xff"):
                return payload[6:]
    return None


def image_size(path: Path) -> tuple[int, int]:
    """Pixel size from the image header only (Pillow opens lazily: no pixel decoding), with the
    same limits as :func:`sdaie.data.imageio.load_image`."""
    register_decoders()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning, module="PIL")  # corrupt EXIF
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                w, h = img.size
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(f"decompression bomb refused: {exc}") from exc
    except Image.UnidentifiedImageError:
        raise ImageLoadError("not a recognised image format") from None
    except (OSError, ValueError, SyntaxError, EOFError, RuntimeError) as exc:  # RuntimeError: libheif
        raise ImageLoadError(f"cannot read image header: {exc}") from exc
    check_size(w, h)
    return w, h


def truncation(path: Path) -> str | None:
    """Why the file looks cut short (None if it looks complete), without decoding pixels: the
    loader's own check (:func:`sdaie.data.completeness.incomplete_reason`, which reads the
    container's magic itself), so the index refuses exactly the files every other command
    refuses, with the same reason text."""
    with open(path, "rb") as fh:
        return incomplete_reason(fh)
