"""Is an image file complete? One answer, from the container alone, used by every command.

The policy (``docs/first-hour.md``, "Files"): a file cut short is refused everywhere, by the index,
the training loaders, both evaluations and ``sdaie detect``, with the same reason text, because
decoders disagree on it: libjpeg decodes a JPEG that lost its last bytes and fills the missing
rows with grey (a camera never wrote those pixels), while a file cut inside its header fails in
every decoder. Checked without decoding pixels:

- JPEG: an end-of-image marker after the start of scan (in entropy-coded data a 0xFF is always
  followed by 0x00 or a restart code, so FF D9 there can only be EOI; the last 64 KiB are
  searched first, then, if the marker is not there, the file from the scan on, in chunks: motion
  photos append a whole video after the end marker);
- PNG: an IEND chunk at the end;
- WebP: the file is as long as its RIFF header says;
- HEIF / HEIC / AVIF (ISO base media boxes): no top-level box runs past the end of the file.

Other formats (TIFF, BMP, ...) are judged by their decoder alone.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from typing import BinaryIO

EOI_TAIL = 1 << 16  # bytes searched first for the JPEG end-of-image marker
_EOI_CHUNK = 1 << 20  # then the scan is read this much at a time


class MalformedHeader(ValueError):
    """The container structure is broken before the image data."""


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


def _jpeg(fh: BinaryIO, size: int) -> str | None:
    try:
        sos = [pos for _, pos, _ in jpeg_segments(fh)][-1]
    except MalformedHeader as exc:
        return str(exc)
    fh.seek(max(sos + 2, size - EOI_TAIL))
    if b"\xff\xd9" not in fh.read() and not _eoi_after(fh, sos + 2):
        return "truncated: no JPEG end-of-image marker after the image data"
    return None


def _eoi_after(fh: BinaryIO, start: int) -> bool:
    """Whether FF D9 occurs from ``start`` on, read in chunks (for a large trailer, e.g. the MP4
    of a Google or Samsung motion photo, beyond the tail the cheap check reads)."""
    fh.seek(start)
    last = b""
    while chunk := fh.read(_EOI_CHUNK):
        if b"\xff\xd9" in last + chunk:  # the last byte of the previous chunk: a split marker
            return True
        last = chunk[-1:]
    return False


def _png(fh: BinaryIO, size: int) -> str | None:
    fh.seek(max(0, size - 12))
    return None if b"IEND" in fh.read() else "truncated: no PNG IEND chunk"


def _webp(fh: BinaryIO, size: int) -> str | None:
    fh.seek(4)
    declared = struct.unpack("<I", fh.read(4))[0] + 8
    if size < declared:
        return f"truncated: WebP file has {size} of the {declared} bytes its RIFF header declares"
    return None


def _isobmff(fh: BinaryIO, size: int) -> str | None:
    """HEIF / AVIF: walk the top-level boxes; one running past the end means a cut file."""
    pos = 0
    while pos + 8 <= size:
        fh.seek(pos)
        length, kind = struct.unpack(">I4s", fh.read(8))
        header = 8
        if length == 1:  # 64-bit size follows
            raw = fh.read(8)
            if len(raw) < 8:
                break
            length, header = struct.unpack(">Q", raw)[0], 16
        elif length == 0:  # extends to the end of the file
            return None
        if length < header:
            return f"broken HEIF box '{kind.decode('latin-1')}' (size {length})"
        if pos + length > size:
            return (f"truncated: HEIF box '{kind.decode('latin-1')}' runs past the end of the "
                    f"file ({pos + length - size} bytes missing)")
        pos += length
    return None if pos == size else "truncated: HEIF file ends inside a box header"


def container_kind(head: bytes) -> str | None:
    """``jpeg`` / ``png`` / ``webp`` / ``isobmff`` from the first 12 bytes, else None."""
    if head[:2] == b"\xff\xd8":
        return "jpeg"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[4:8] == b"ftyp":
        return "isobmff"
    return None


_CHECKS = {"jpeg": _jpeg, "png": _png, "webp": _webp, "isobmff": _isobmff}


def incomplete_reason(fh: BinaryIO) -> str | None:
    """Why the file looks cut short (None if it looks complete or is of another format)."""
    size = fh.seek(0, io.SEEK_END)
    fh.seek(0)
    check = _CHECKS.get(container_kind(fh.read(12)) or "")
    return check(fh, size) if check is not None else None
