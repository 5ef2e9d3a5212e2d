"""The EXIF block of a HEIF / HEIC / AVIF file, located through its ``meta`` box.

Phones store EXIF as an item of type ``Exif``: ``iinf`` names the item, ``iloc`` says where its
bytes are (a base offset plus extent offsets, in the file or in the ``idat`` box), and the
payload is a 4-byte offset to the TIFF header followed by the block. exifread's own HEIF walker
ignores ``iloc``'s base offset, which libheif-written files use, and then asserts; this reader
follows ISO/IEC 14496-12 / 23008-12 and hands exifread the TIFF block alone, as for JPEG.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import BinaryIO

from sdaie.data.completeness import MalformedHeader

Box = tuple[bytes, int, int]  # (type, payload start, payload end)
_MAX_EXIF = 1 << 20  # an EXIF item larger than this is not an EXIF block


def _boxes(data: bytes, start: int, end: int) -> Iterator[Box]:
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            if pos + 16 > end:
                raise MalformedHeader("HEIF box header cut short")
            size, header = struct.unpack_from(">Q", data, pos + 8)[0], 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            raise MalformedHeader(f"HEIF box '{kind.decode('latin-1')}' has a bad size {size}")
        yield kind, pos + header, pos + size
        pos += size


def _uint(data: bytes, pos: int, n: int) -> int:
    if n == 0:
        return 0
    if pos + n > len(data):
        raise MalformedHeader("HEIF item table cut short")
    return int.from_bytes(data[pos:pos + n], "big")


def _exif_item_id(data: bytes, start: int, end: int) -> int | None:
    """The item id of the first ``infe`` (version 2 or 3) of type ``Exif`` in an ``iinf`` box."""
    version = data[start]
    first = start + 4 + (2 if version == 0 else 4)
    for kind, s, _ in _boxes(data, first, end):
        if kind != b"infe" or data[s] < 2:
            continue
        id_size = 2 if data[s] == 2 else 4
        item_id = _uint(data, s + 4, id_size)
        if data[s + 4 + id_size + 2:s + 4 + id_size + 6] == b"Exif":
            return item_id
    return None


def _item_extents(data: bytes, start: int, item: int) -> tuple[int, int, list[tuple[int, int]]]:
    """(construction method, base offset, [(offset, length)]) of ``item`` in an ``iloc`` box."""
    version, pos = data[start], start + 4
    off_size, len_size = data[pos] >> 4, data[pos] & 15
    base_size, index_size = data[pos + 1] >> 4, (data[pos + 1] & 15) if version else 0
    pos += 2
    id_size = 4 if version == 2 else 2
    count = _uint(data, pos, id_size)
    pos += id_size
    for _ in range(count):
        item_id = _uint(data, pos, id_size)
        pos += id_size
        method = _uint(data, pos, 2) & 15 if version else 0
        pos += 2 if version else 0
        pos += 2  # data_reference_index
        base = _uint(data, pos, base_size)
        pos += base_size
        n = _uint(data, pos, 2)
        pos += 2
        extents = []
        for _ in range(n):
            pos += index_size
            extents.append((_uint(data, pos, off_size), _uint(data, pos + off_size, len_size)))
            pos += off_size + len_size
        if item_id == item:
            return method, base, extents
    raise MalformedHeader(f"HEIF item {item} (Exif) has no location")


def heif_exif_block(fh: BinaryIO) -> bytes | None:
    """TIFF bytes of the ``Exif`` item, or None if the file has none."""
    fh.seek(0)
    data = fh.read()
    meta = next(((s, e) for k, s, e in _boxes(data, 0, len(data)) if k == b"meta"), None)
    if meta is None:
        return None
    children = {k: (s, e) for k, s, e in _boxes(data, meta[0] + 4, meta[1])}  # meta: full box
    if b"iinf" not in children or b"iloc" not in children:
        return None
    item = _exif_item_id(data, *children[b"iinf"])
    if item is None:
        return None
    method, base, extents = _item_extents(data, children[b"iloc"][0], item)
    origin = children[b"idat"][0] if method == 1 and b"idat" in children else 0
    payload = b"".join(data[origin + base + o:origin + base + o + n] for o, n in extents)
    if len(payload) < 4 or len(payload) > _MAX_EXIF:
        raise MalformedHeader(f"HEIF Exif item has an implausible size ({len(payload)} bytes)")
    block = payload[4 + struct.unpack_from(">I", payload)[0]:]
    for magic in (b"MM\x00*", b"II*\x00"):  # some writers keep an APP1 marker before the block
        at = block.find(magic, 0, 16)
        if at >= 0:
            return block[at:]
    raise MalformedHeader("HEIF Exif item holds no TIFF header")
