"""Shared helpers for the synthetic-world tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import exifread
import pytest

# exifread key -> canonical name (the names world.json and the EXIF reader use).
_KEYS = {
    "Image Make": "Make", "Image Model": "Model", "EXIF DateTimeOriginal": "DateTimeOriginal",
    "EXIF ExposureTime": "ExposureTime", "EXIF FNumber": "FNumber",
    "EXIF ISOSpeedRatings": "ISOSpeedRatings", "EXIF FocalLength": "FocalLength",
    "EXIF FocalLengthIn35mmFilm": "FocalLengthIn35mmFilm", "EXIF MaxApertureValue": "MaxApertureValue",
    "EXIF ApertureValue": "ApertureValue", "EXIF ShutterSpeedValue": "ShutterSpeedValue",
    "EXIF ExposureBiasValue": "ExposureBiasValue", "EXIF Flash": "Flash",
    "EXIF MeteringMode": "MeteringMode", "EXIF ExposureMode": "ExposureMode",
    "EXIF ExposureProgram": "ExposureProgram", "EXIF WhiteBalance": "WhiteBalance",
    "EXIF SceneCaptureType": "SceneCaptureType", "EXIF LensModel": "LensModel",
}


def read_back(path: Path) -> dict[str, object]:
    """Canonical tags of a JPEG as exifread sees them (independent of the project's reader)."""
    with open(path, "rb") as fh:
        tags = exifread.process_file(fh, details=False)
    out: dict[str, object] = {}
    for key, name in _KEYS.items():
        if key not in tags:
            continue
        values = tags[key].values
        if isinstance(values, str):
            out[name] = values.strip("\x00 ")
        elif tags[key].field_type in (5, 10):  # RATIONAL, SRATIONAL
            out[name] = float(values[0].numerator) / float(values[0].denominator)
        else:
            out[name] = int(values[0])
    return out


@pytest.fixture
def exif_of() -> Callable[[Path], dict[str, object]]:
    return read_back
