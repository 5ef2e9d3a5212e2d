"""The reader and the index on real camera photos, against exiftool's reading of the same files.

The 16 committed photos (``tests/fixtures/photos``) always run; the 212-photo collection they come
from (``../shared/data/photos-cc0``) joins as a second parameter when it sits beside the clone.
"""

import json
import math
from pathlib import Path

import pytest

from sdaie.config import load_config
from sdaie.exif.index import build_index
from sdaie.exif.reader import CANONICAL_TAGS, read_exif
from sdaie.exif.schema import normalize_text

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "photos"
PHOTOS_CC0 = Path(__file__).resolve().parents[2] / "../shared/data/photos-cc0"

# exiftool's names where the EXIF 2.2 names (ours, exifread's) differ.
EXIFTOOL_NAMES = {"ISO": "ISOSpeedRatings", "ExposureCompensation": "ExposureBiasValue",
                  "FocalLengthIn35mmFormat": "FocalLengthIn35mmFilm"}
ISO_FALLBACK = ("ISOSpeed", "RecommendedExposureIndex", "StandardOutputSensitivity")
TEXT_TAGS = {"Make", "Model", "Software", "LensModel", "LensMake", "DateTimeOriginal"}

# Checked by hand against `exiftool -n` (ExifIFD group).
BY_HAND = {
    "Canon_Canon_EOS_5D_Mark_III_01.jpg": dict(Make="Canon", Model="Canon EOS 5D Mark III",
                                               FNumber=5.6, ExposureTime=0.00625,
                                               ISOSpeedRatings=320, FocalLength=135.0),
    "Apple_iPhone_XR_01.jpg": dict(Make="Apple", Model="iPhone XR", FNumber=1.8,
                                   ExposureTime=1 / 60, ISOSpeedRatings=320, FocalLength=4.25,
                                   Flash=16, MeteringMode=5, FocalLengthIn35mmFilm=26,
                                   ApertureValue=1.79999999993144,
                                   ShutterSpeedValue=0.016656999982536),
    "Canon_Canon_EOS_RP_01.jpg": dict(FNumber=2.8, ExposureTime=0.01, ISOSpeedRatings=100,
                                      FocalLength=35.0, MaxApertureValue=1.83400808640934,
                                      ExposureBiasValue=0.0),
}

# folder -> (photos, photos with ISO in the EXIF IFD (the rest only in MakerNotes or nowhere),
# camera models), as exiftool -n counts them.
COLLECTIONS = [pytest.param(FIXTURES, (16, 11, 16), id="fixtures")]
if PHOTOS_CC0.is_dir():  # the full collection, when it sits beside the clone
    COLLECTIONS.append(pytest.param(PHOTOS_CC0.resolve(), (212, 156, 38), id="photos-cc0"))


def exiftool_reference() -> dict[str, dict]:
    """File name -> canonical tags as exiftool read them (``tests/fixtures/photos/exiftool.json``)."""
    out = {}
    for record in json.loads((FIXTURES / "exiftool.json").read_text()):
        tags, fallback = {}, {}
        for key, value in record.items():
            if ":" not in key:
                continue
            name = key.split(":", 1)[1]
            if name in ISO_FALLBACK:
                fallback[name] = value
                continue
            name = EXIFTOOL_NAMES.get(name, name)
            if name in CANONICAL_TAGS:  # the IFD0 and ExifIFD readings agree where both exist
                tags.setdefault(name, str(value) if name in TEXT_TAGS else float(value))
        if tags.get("ISOSpeedRatings", 65535) >= 65535:  # EXIF 2.3: the newer tags carry it
            newer = [float(fallback[n]) for n in ISO_FALLBACK if n in fallback]
            if newer:
                tags["ISOSpeedRatings"] = newer[0]
        out[record["SourceFile"]] = tags
    return out


def test_reader_equals_exiftool_on_the_committed_photos():
    reference = exiftool_reference()
    assert sorted(reference) == sorted(p.name for p in FIXTURES.glob("*.jpg"))
    for name, expected in reference.items():
        res = read_exif(FIXTURES / name)
        assert res.ok and not res.warnings, (name, res.error, res.warnings)
        assert set(res.tags) == set(expected), (name, set(res.tags) ^ set(expected))
        for tag, value in expected.items():
            if isinstance(value, str):
                assert res.tags[tag] == value, (name, tag)
            else:
                assert math.isclose(res.tags[tag], value, rel_tol=1e-8), (name, tag)


@pytest.mark.parametrize("folder, counts", COLLECTIONS)
def test_reader_on_real_photos(folder, counts, kit):
    paths = sorted(folder.glob("*.jpg"))
    assert len(paths) == counts[0]
    with_iso = 0
    for path in paths:
        res = read_exif(path)
        assert res.ok, (path.name, res.error)
        tags = res.tags
        assert tags.get("Make") and tags.get("Model"), path.name
        for name in ("FNumber", "ExposureTime", "FocalLength"):  # every file has these
            assert tags[name] > 0, (path.name, name)
        with_iso += "ISOSpeedRatings" in tags
        kit.assert_same_tags(tags, kit.pillow_reference(path), rel=1e-9)
        if path.name in BY_HAND:
            kit.assert_same_tags(tags, BY_HAND[path.name], rel=1e-9)
    assert with_iso == counts[1]


@pytest.mark.parametrize("folder, counts", COLLECTIONS)
def test_index_counts_every_camera_model(folder, counts, tmp_path):
    stats = build_index(folder, tmp_path, load_config(), workers=1)
    assert stats.indexed == counts[0] and not stats.skipped and stats.models == counts[2]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["camera_models"] == counts[2] and sum(summary["models"].values()) == counts[0]
    assert summary["tag_coverage"]["Make"] == 1.0 and summary["tag_coverage"]["Model"] == 1.0
    if folder == FIXTURES:
        reference = exiftool_reference().values()
        assert summary["models"] == {normalize_text(t["Model"]): 1 for t in reference}
