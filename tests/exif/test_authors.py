"""``sdaie import-authors`` on a generated miniature of the authors' training data.

The reference is their loader's reading, re-stated: ``list(tags.values())[3:]`` by position for
the ordinal slots, the named fields for the categorical ones, tensors at
``pkl_256/ + name.replace('jpg', 'pkl')``, the JSON's first names only.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from sdaie.cli import main as cli_main
from sdaie.config import Config, HeadConfig
from sdaie.exif.authors import CLASS_FIELDS, float32_merges, import_authors, is_tensor_index
from sdaie.exif.index import load_index
from support.authors_miniature import write_miniature

NAMED = ["Make", "Model", "Flash", "Metering Mode", "Exposure Mode", "White Balance Mode",
         "Scene Capture Type"]


def _their_values(tags: dict) -> list[float]:
    values = list(tags.values())[3:]
    for slot, name in zip((1, 5, 6, 9, 10, 11, 13), NAMED):
        values[slot] = tags[name]
    return [float(v) for v in values]


def test_labels_are_the_json_values_and_bad_rows_are_listed(tmp_path):
    tags = write_miniature(tmp_path / "data")
    assert cli_main(["import-authors", str(tmp_path / "data" / "exif_tags.json"),
                     str(tmp_path / "data" / "pkl_256"), "--out", str(tmp_path / "idx")]) == 0
    index = load_index(tmp_path / "idx")
    assert is_tensor_index(tmp_path / "idx")
    good = [n for n in tags if n not in ("BADFLASH.jpg", "MISSING.jpg")]
    assert [r["name"] for r in index.records] == good  # JSON order kept
    expected = np.array([_their_values(tags[n]) for n in good], dtype=np.float32)
    assert np.array_equal(index.labels_array(), expected)
    assert index.image_path(3) == (tmp_path / "data" / "pkl_256" / "pkl_series" / "IMG_0003.pkl")
    assert all(index.image_path(i).is_file() for i in range(len(index)))
    summary = json.loads((tmp_path / "idx" / "summary.json").read_text())
    reasons = {s["path"]: s["reason"] for s in summary["skipped_files"]}
    assert set(reasons) == {"BADFLASH.pkl", "MISSING.pkl"} and summary["indexed"] == len(good)
    assert "'Flash': 9" in reasons["BADFLASH.pkl"] and "no tensor file" in reasons["MISSING.pkl"]
    heads = index.vocab["heads"]
    assert [(h["tag"], h["kind"], h["classes"]) for h in heads] == [
        (h.tag, h.kind, h.classes) for h in Config().schema.heads]
    assert all(h["transform"] == "identity" for h in heads)  # no log, no re-binning


def test_limit_takes_the_first_names_like_train_size(tmp_path):
    tags = write_miniature(tmp_path / "data")
    summary = import_authors(tmp_path / "data" / "exif_tags.json", tmp_path / "data" / "pkl_256",
                             tmp_path / "idx", Config(), limit=3)
    assert summary["indexed"] == 3
    assert [r["name"] for r in load_index(tmp_path / "idx").records] == list(tags)[:3]


def test_wrong_schema_and_unreadable_input_are_one_line_errors(tmp_path, capsys):
    write_miniature(tmp_path / "data")
    cfg = Config()
    cfg.schema.heads = [HeadConfig("ISO", "rank")]
    with pytest.raises(ValueError, match="14 official heads"):
        import_authors(tmp_path / "data" / "exif_tags.json", tmp_path / "data" / "pkl_256",
                       tmp_path / "idx", cfg)
    assert cli_main(["import-authors", str(tmp_path / "none.json"), str(tmp_path),
                     "--out", str(tmp_path / "idx")]) == 2
    assert "none.json" in capsys.readouterr().err
    assert set(CLASS_FIELDS.values()) == set(NAMED)


def test_values_that_only_float32_ties_are_counted():
    assert float32_merges({"ISO": {100.0, 200.0}, "FNumber": {0.1, 0.1 + 1e-12}}) == {"FNumber": 1}
