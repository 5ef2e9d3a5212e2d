"""The file container around the pixels, read without decoding them: format, EXIF block, size.

Everything here reads headers and markers only, so indexing a folder never pays for pixel
decoding: :func:`sniff_format` names the container, :func:`jpeg_segments` walks a JPEG's marker
chain up to the scan, :func:`jpeg_exif_block` returns the TIFF block of its ``APP1 Exif``
segment, :func:`image_size` reads the pixel size from the header (with the loader's limits) and
:func:`truncation` tells a file cut short from a complete one.
"""

from __future__ import annotations

import io
import struct
import warnings
from pathlib import Path
from typing import BinaryIO, Iterator

from PIL import Image, UnidentifiedImageError

from sdaie.data.imageio import ImageLoadError, check_size

_EOI_TAIL = 1 << 16  # bytes searched for the JPEG end-of-image marker (trailers after EOI exist)

# Containers whose EXIF we locate; anything else Pillow can open is an image without EXIF.
_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8", 0, "jpeg"),
    (b"II*\x00", 0, "tiff"),
    (b"MM\x00*", 0, "tiff"),
    (b"\x89PNG\r\n\x1a\n", 0, "png"),
)


class MalformedHeader(ValueError):
    """The container structure is broken before the EXIF block could be found."""


def sniff_format(head: bytes) -> str | None:
    """Container format from the first bytes, if it is one that can hold EXIF."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftypavif"):
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


def jpeg_segments(fh: BinaryIO) -> Iterator[tuple[int, int, int]]:
    """Yield ``(marker, offset, length)`` of each JPEG header segment, ending with SOS or EOI.

    ``length`` counts the segment payload plus its 2-byte length field (0 for SOS/EOI); the file
    position is left at the start of the payload. Raises :class:`MalformedHeader` on a broken chain.
    """
    fh.seek(0)
    if fh.read(2) != b"\xff\xd8":
        raise MalformedHeader("not a JPEG (no SOI marker)")
    while True:
        pos = fh.tell()
        byte = fh.read(1)
        if not byte:
            raise MalformedHeader(f"file ends inside the JPEG header (offset {pos})")
        if byte != b"\xff":
            raise MalformedHeader(f"JPEG marker expected at offset {pos}, found 0x{byte[0]:02x}")
        marker = fh.read(1)
        while marker == b"\xff":  # fill bytes
            marker = fh.read(1)
        if not marker:
            raise MalformedHeader(f"file ends inside the JPEG header (offset {pos})")
        code = marker[0]
        if code == 0x01 or 0xD0 <= code <= 0xD7:  # TEM, RSTn: no length field
            continue
        if code in (0xD9, 0xDA):  # EOI or start of scan: the header ends here
            yield code, pos, 0
            return
        raw_len = fh.read(2)
        if len(raw_len) < 2:
            raise MalformedHeader(f"file ends inside a JPEG segment header (offset {pos})")
        length = struct.unpack(">H", raw_len)[0]
        if length < 2:
            raise MalformedHeader(f"JPEG segment 0x{code:02x} has an invalid length {length}")
        start = fh.tell()
        yield code, pos, length
        fh.seek(start + length - 2)


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
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageLoadError(f"cannot read image header: {exc}") from exc
    check_size(w, h)
    return w, h


def truncation(path: Path, fmt: str | None) -> str | None:
    """Why the file looks cut short (None if it looks complete), without decoding pixels.

    JPEG: no end-of-image marker after the start of scan (in the entropy-coded data a 0xFF is
    always followed by 0x00 or a restart code, so FF D9 there can only be EOI; only the last
    64 KiB are searched, allowing for trailers that some cameras append). PNG: no IEND chunk.
    """
    with open(path, "rb") as fh:
        size = fh.seek(0, io.SEEK_END)
        if fmt == "jpeg":
            try:
                sos = [pos for code, pos, _ in jpeg_segments(fh)][-1]
            except MalformedHeader as exc:
                return str(exc)
            start = max(sos + 2, size - _EOI_TAIL)
            fh.seek(start)
            if b"\xff\xd9" not in fh.read():
                return "truncated: no JPEG end-of-image marker after the image data"
        elif fmt == "png":
            fh.seek(max(0, size - 12))
            if b"IEND" not in fh.read():
                return "truncated: no PNG IEND chunk"
    return None
