"""Canonical EXIF tags of one photo: exifread on the header bytes only, validated and typed.

Why our own front end to exifread: for a JPEG we walk the marker segments ourselves and hand
exifread only the TIFF block of the first ``APP1 Exif`` segment (at most 64 KiB), so a read never
touches pixel data, and every value can be checked to lie inside that block (exifread silently
reads zeros past the end of its input). MakerNotes and thumbnails are never parsed.

Values follow ``exiftool -n``: rationals become floats, integer codes ints, strings are stripped
of NULs and padding; the APEX tags (ApertureValue, MaxApertureValue, ShutterSpeedValue) are
converted like exiftool's value conversion (f-number, seconds). A value that cannot be right
(zero denominator, a non-positive exposure, a string where a number belongs, NaN, a pointer
outside the block) is dropped and reported in :attr:`ExifResult.warnings`, never turned into 0.
Serial numbers, GPS and owner names are never read (privacy).
"""

from __future__ import annotations

import io
import logging
import math
import re
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO

import exifread
from exifread.core.exceptions import ExifError

from sdaie.exif.container import MalformedHeader, jpeg_exif_block, pillow_format, sniff_format
from sdaie.exif.heif import heif_exif_block

# Bump when the meaning of a parsed value changes: index caches written by older readers are redone.
READER_VERSION = 1


@dataclass(frozen=True)
class TagSpec:
    """One canonical tag: where it lives and what kind of value it must be."""

    name: str
    exifread: tuple[str, ...]  # exifread keys, in order of preference ("IFD TagName")
    kind: str  # text | date | code | pos | posint | real | apex_av | apex_tv


def _spec(name: str, kind: str, ifd: str = "EXIF", *aliases: str) -> TagSpec:
    other = "Image" if ifd == "EXIF" else "EXIF"
    # Some writers (TIFF/DNG, old firmware) put EXIF tags in IFD0 or vice versa: accept both.
    keys = tuple(f"{i} {n}" for n in (name, *aliases) for i in (ifd, other))
    return TagSpec(name, keys, kind)


# The canonical names first (the schema's vocabulary), then a few more that are useful
# and privacy-neutral. Names are the EXIF 2.2 names exifread uses; exiftool's differ for
# ISOSpeedRatings (ISO), ExposureBiasValue (ExposureCompensation), FocalLengthIn35mmFilm
# (FocalLengthIn35mmFormat) and ExifImageHeight (exifread: ExifImageLength).
TAG_SPECS: tuple[TagSpec, ...] = (
    _spec("Make", "text", "Image"),
    _spec("Model", "text", "Image"),
    _spec("FNumber", "pos"),
    _spec("ExposureTime", "pos"),
    _spec("ISOSpeedRatings", "posint"),  # resolved specially, see _iso()
    _spec("FocalLength", "pos"),
    _spec("Flash", "code"),
    _spec("MeteringMode", "code"),
    _spec("ExposureMode", "code"),
    _spec("WhiteBalance", "code"),
    _spec("SceneCaptureType", "code"),
    _spec("ExposureBiasValue", "real"),
    _spec("MaxApertureValue", "apex_av"),
    _spec("FocalLengthIn35mmFilm", "posint"),
    _spec("ApertureValue", "apex_av"),
    _spec("ShutterSpeedValue", "apex_tv"),
    _spec("ExposureProgram", "code"),
    _spec("DateTimeOriginal", "date"),
    _spec("LensModel", "text"),
    # extras
    _spec("LensMake", "text"),
    _spec("Software", "text", "Image"),
    _spec("Orientation", "code", "Image"),
    _spec("ExifImageWidth", "posint"),
    _spec("ExifImageHeight", "posint", "EXIF", "ExifImageLength"),
    _spec("LightSource", "code"),
    _spec("SensingMethod", "code"),
    _spec("CustomRendered", "code"),
    _spec("Contrast", "code"),
    _spec("Saturation", "code"),
    _spec("Sharpness", "code"),
    _spec("SensitivityType", "code"),
)
CANONICAL_TAGS: tuple[str, ...] = tuple(s.name for s in TAG_SPECS)
_SPECS = {s.name: s for s in TAG_SPECS}

# ISO: 0x8827 (ISOSpeedRatings, renamed PhotographicSensitivity in EXIF 2.3) holds at most
# 65535; at that value, or when it is absent, the EXIF 2.3 tags carry the real sensitivity.
# (0x8831 StandardOutputSensitivity has no name in exifread's table.)
_ISO_FALLBACK = ("EXIF ISOSpeed", "EXIF RecommendedExposureIndex", "EXIF Tag 0x8831",
                 "Image ISOSpeed", "Image RecommendedExposureIndex")
_ISO_SATURATED = 65535

# exifread field types (exifread.tags.fields.FieldType values), kept numeric to stay version-proof.
_ASCII = 2


class _BadValue(ValueError):
    """A tag value that is present but unusable; the message is the reason."""


@dataclass
class ExifResult:
    """Outcome of reading one file.

    ``error`` is set when the file cannot be read as an image container at all (then ``tags`` is
    empty). ``warnings`` lists every value that was dropped, as ``"Tag: reason (raw)"``.
    """

    tags: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    format: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def warning_kind(warning: str) -> str:
    """``"FNumber: zero denominator (28/0)"`` -> ``"FNumber: zero denominator"`` (for counting)."""
    return re.sub(r"\s*\(.*\)$", "", warning)


# --------------------------------------------------------------------------------------------
# exifread, quietly
# --------------------------------------------------------------------------------------------


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def _exifread_log() -> Iterator[list[str]]:
    """Collect exifread's warnings (reported per file) instead of letting them reach stderr."""
    log = logging.getLogger("exifread")
    handler = _Collect()
    saved = (log.propagate, log.level)
    log.addHandler(handler)
    log.propagate = False
    log.setLevel(logging.WARNING)
    try:
        yield handler.messages
    finally:
        log.removeHandler(handler)
        log.propagate, level = saved
        log.setLevel(level)


def _run_exifread(fh: BinaryIO) -> tuple[dict[str, Any], list[str]]:
    with _exifread_log() as messages:
        try:
            raw = exifread.process_file(fh, details=False, extract_thumbnail=False,
                                        strict=False, builtin_types=False)
        except (ExifError, ValueError, struct.error, IndexError, KeyError, TypeError,
                AttributeError, OverflowError, RecursionError, EOFError, UnicodeError,
                NotImplementedError) as exc:  # what exifread raises on broken input
            raise MalformedHeader(f"EXIF block unreadable: {type(exc).__name__}: {exc}") from exc
    notes = [f"exifread: {m}" for m in messages if "does not have exif" not in m.lower()
             and "not recognized" not in m.lower()]
    return raw, notes


# --------------------------------------------------------------------------------------------
# Value conversion
# --------------------------------------------------------------------------------------------


def _number(tag: Any) -> float | int:
    """First value of a numeric field as int or float; _BadValue if it is not a usable number."""
    ftype = int(tag.field_type)
    values = tag.values
    if ftype == _ASCII or isinstance(values, (str, bytes)):
        raise _BadValue(f"string where a number belongs ({str(values)[:32]!r})")
    if not values:
        raise _BadValue("no value")
    v = values[0]
    if isinstance(v, tuple):  # exifread returns 1-tuples for FLOAT/DOUBLE fields
        v = v[0] if v else None
    if isinstance(v, Fraction):
        if v.denominator == 0:
            raise _BadValue(f"zero denominator ({getattr(v, '_numerator', '?')}/0)")
        return float(v)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _BadValue(f"wrong type ({type(v).__name__})")
    if isinstance(v, float) and not math.isfinite(v):
        raise _BadValue(f"not a finite number ({v})")
    return v


def _integer(tag: Any) -> int:
    v = _number(tag)
    if isinstance(v, float):
        if not v.is_integer():
            raise _BadValue(f"not an integer ({v})")
        v = int(v)
    return v


def _text(tag: Any) -> str:
    values = tag.values
    if int(tag.field_type) != _ASCII and isinstance(values, list):
        byte_type = int(tag.field_type) in (1, 7)  # BYTE/UNDEFINED text (some writers)
        if byte_type and all(isinstance(b, int) and 0 <= b < 256 for b in values):
            values = bytes(values)
        else:
            raise _BadValue("number where a string belongs")
    if isinstance(values, bytes):
        values = values.split(b"\x00", 1)[0]
        try:
            values = values.decode("utf-8")
        except UnicodeDecodeError:
            values = values.decode("latin-1")
    text = str(values).split("\x00", 1)[0].strip()
    if not text:
        raise _BadValue("empty string")
    return text


def _convert(kind: str, tag: Any) -> Any:
    if kind == "text":
        return _text(tag)
    if kind == "date":
        text = _text(tag)
        if not re.search(r"[1-9]", text):
            raise _BadValue(f"unset date ({text!r})")
        return text
    if kind == "code":
        v = _integer(tag)
        if v < 0:
            raise _BadValue(f"negative code ({v})")
        return v
    if kind == "posint":
        v = _integer(tag)
        if v <= 0:
            raise _BadValue(f"non-positive ({v})")
        return v
    v = float(_number(tag))
    if kind == "pos":
        if v <= 0:
            raise _BadValue(f"non-positive ({v:g})")
        return v
    if kind == "real":
        return v
    if kind not in ("apex_av", "apex_tv"):
        raise ValueError(f"unknown tag kind {kind!r}")
    if abs(v) >= 100:  # |Av| or |Tv| of 100 is f/2^50 or 2^100 s: garbage (and 2 ** v overflows)
        raise _BadValue(f"APEX value out of range ({v:g})")
    # exiftool: Av -> 2 ** (Av / 2) = f-number; Tv -> 2 ** -Tv seconds
    out = 2.0 ** (v / 2.0) if kind == "apex_av" else 2.0 ** (-v)
    if not math.isfinite(out) or out <= 0:
        raise _BadValue(f"APEX value out of range ({v:g})")
    return out


def _inside(tag: Any, block_size: int) -> bool:
    """Whether the value's bytes lie inside the block exifread read (it returns zeros past it)."""
    try:
        return int(tag.field_offset) + int(tag.field_length) <= block_size
    except (TypeError, ValueError):
        return True


def canonical_tags(raw: dict[str, Any], block_size: int) -> tuple[dict[str, Any], list[str]]:
    """exifread's tag dict -> ``{canonical: value}`` plus the warnings of dropped values."""
    tags: dict[str, Any] = {}
    warnings: list[str] = []

    def take(name: str, kind: str, keys: tuple[str, ...]) -> Any:
        reasons = []
        for key in keys:
            tag = raw.get(key)
            if tag is None or not hasattr(tag, "field_type"):
                continue
            if not _inside(tag, block_size):
                reasons.append(f"value outside the EXIF block (offset {tag.field_offset})")
                continue
            try:
                return _convert(kind, tag)
            except _BadValue as exc:
                reasons.append(str(exc))
        if reasons:
            warnings.append(f"{name}: {reasons[0]}")
        return None

    for spec in TAG_SPECS:
        if spec.name == "ISOSpeedRatings":
            value = _iso(raw, block_size, take)
        else:
            value = take(spec.name, spec.kind, spec.exifread)
        if value is not None:
            tags[spec.name] = value
    return tags, warnings


def _iso(raw: dict[str, Any], block_size: int, take: Callable[..., Any]) -> int | None:
    iso = take("ISOSpeedRatings", "posint", _SPECS["ISOSpeedRatings"].exifread)
    if iso is None or iso >= _ISO_SATURATED:
        newer = None
        for key in _ISO_FALLBACK:
            if key in raw:
                newer = take("ISOSpeedRatings", "posint", (key,))
                if newer is not None:
                    break
        if newer is not None:
            return newer
    return iso


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------


def read_exif_fileobj(fh: BinaryIO, file_size: int) -> ExifResult:
    """Read the canonical tags from an open binary file of ``file_size`` bytes."""
    if file_size == 0:
        return ExifResult(error="empty file (0 bytes)")
    fh.seek(0)
    head = fh.read(16)
    fmt = sniff_format(head) or pillow_format(fh)
    if fmt is None:
        return ExifResult(error=f"not a recognised image format (starts with {head[:8]!r})")
    result = ExifResult(format=fmt)
    try:
        raw_block = _raw_tags(fh, fmt, file_size)
        if raw_block is None:
            return result
        raw, notes, size = raw_block
        result.tags, result.warnings = canonical_tags(raw, size)
    except MalformedHeader as exc:
        result.error = str(exc)
        return result
    except OSError:
        raise  # the file, not its header: read_exif reports "cannot read"
    except Exception as exc:  # noqa: BLE001 - a long indexing run must outlive any one file
        # Our checks and exifread's cover the malformed headers seen so far (tests/exif fuzz);
        # a file that still trips them is reported like any other unreadable one, not raised.
        result.error = f"EXIF header unreadable ({type(exc).__name__}: {str(exc)[:80]})"
        return result
    result.warnings.extend(notes)
    return result


def _raw_tags(fh: BinaryIO, fmt: str, file_size: int) -> tuple[dict, list[str], int] | None:
    """exifread's tags, its notes and the size of the block they come from; None: no EXIF."""
    if fmt in ("jpeg", "heif"):  # HEIF: our own item lookup (exifread misses iloc base offsets)
        block = jpeg_exif_block(fh) if fmt == "jpeg" else heif_exif_block(fh)
        if block is None:
            return None
        raw, notes = _run_exifread(io.BytesIO(block))
        return raw, notes, len(block)
    if fmt not in ("tiff", "png", "webp"):
        return None  # GIF, BMP, PPM, ... (recognised by Pillow): no EXIF container
    fh.seek(0)  # TIFF (the EXIF block is the file), PNG eXIf, WebP: exifread locates it
    raw, notes = _run_exifread(fh)
    return raw, notes, file_size


def read_exif(path: str | Path) -> ExifResult:
    """Canonical EXIF tags of the file at ``path``; never raises for a bad file (see ``error``)."""
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, io.SEEK_END)
            return read_exif_fileobj(fh, size)
    except IsADirectoryError:
        return ExifResult(error="is a directory")
    except OSError as exc:
        return ExifResult(error=f"cannot read: {exc.strerror or exc}")


def read_exif_bytes(data: bytes) -> ExifResult:
    """Same as :func:`read_exif` for bytes in memory."""
    return read_exif_fileobj(io.BytesIO(data), len(data))

