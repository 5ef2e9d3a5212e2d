"""Writing an index folder: builds committed by the manifest, streamed JSON, bad rows refused."""

import io
import json

import numpy as np
import pytest

from sdaie.exif.store import MANIFEST, load_index
from sdaie.exif.writer import dump_json, write_index

VOCAB = {"version": 1, "heads": [{"tag": "FNumber", "kind": "rank"}]}


def photo_rows(n, start=0):
    return [{"path": f"p/{i:05d}.jpg", "labels": [float(i) / 8], "tags": {"FNumber": i}}
            for i in range(start, start + n)]


def test_files_of_a_build_and_what_a_rebuild_leaves(tmp_path):
    out = tmp_path / "idx"
    a = write_index(out, photo_rows(5), vocab=VOCAB, root="/photos",
                    summary=lambda n: {"indexed": n}, extra={"pixels": "images"})
    assert a.rows == 5
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["data"] == f"data-{a.build}" and manifest["pixels"] == "images"
    assert json.loads((out / "summary.json").read_text()) == {"format_version": 2,
                                                               "build": a.build, "indexed": 5}
    again = write_index(out, photo_rows(5), vocab=VOCAB, root="/photos")
    assert again.build == a.build  # the same rows: the same build, byte for byte
    b = write_index(out, photo_rows(6), vocab=VOCAB, root="/photos")
    assert b.build != a.build
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"data-{b.build}", "index.jsonl", MANIFEST, "summary.json", "vocab.json"])
    assert len(load_index(out)) == 6


def test_a_write_that_fails_midway_leaves_the_previous_index(tmp_path):
    out = tmp_path / "idx"
    write_index(out, photo_rows(3), vocab=VOCAB, root="/photos")
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}

    def failing():
        yield from photo_rows(10_000)
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_index(out, failing(), vocab=VOCAB, root="/photos")
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    index = load_index(out)
    assert len(index) == 3 and index.rel_path(2) == "p/00002.jpg"


def test_many_rows_cross_chunk_boundaries(tmp_path):
    n = 9000  # > 2 chunks of 4096
    write_index(tmp_path / "idx", photo_rows(n), vocab=VOCAB, root="/photos")
    index = load_index(tmp_path / "idx")
    np.testing.assert_array_equal(index.labels[:, 0],
                                  (np.arange(n, dtype=np.float64) / 8).astype(np.float32))
    assert [index.rel_path(i) for i in (0, 4095, 4096, 8999)] == [
        "p/00000.jpg", "p/04095.jpg", "p/04096.jpg", "p/08999.jpg"]
    assert index.tags(8191) == {"FNumber": 8191}


def test_an_empty_index(tmp_path):
    write_index(tmp_path / "idx", [], vocab=VOCAB, root="/photos")
    index = load_index(tmp_path / "idx")
    assert len(index) == 0 and index.labels.shape == (0, 1) and list(index.records) == []


@pytest.mark.parametrize("row, message", [
    ({"path": "/abs.jpg", "labels": [1.0]}, "relative path"),
    ({"path": "", "labels": [1.0]}, "relative path"),
    ({"path": "a.jpg", "labels": [1.0, 2.0]}, "1 labels expected"),
    ({"path": "a.jpg"}, "1 labels expected"),
    ({"path": "a.jpg", "labels": [1.0], "crop": {"shard": 0, "row": 1}}, "without crop_size"),
])
def test_bad_rows_are_refused(tmp_path, row, message):
    with pytest.raises(ValueError, match=message):
        write_index(tmp_path / "idx", [row], vocab=VOCAB, root="/photos")
    assert not (tmp_path / "idx" / MANIFEST).exists()
    with pytest.raises(ValueError, match="reserved"):
        write_index(tmp_path / "idx", [], vocab=VOCAB, root="/", extra={"rows": 3})


@pytest.mark.parametrize("doc", [
    {},
    {"a": 1, "list": [{"path": "x", "reason": "y"}, {"path": "z", "reason": "\u00e9"}],
     "empty": [], "nested": {"k": [1, 2, {"d": None}]}, "s": "t"},
    {"only": []},
])
def test_dump_json_streams_iterators_as_json_dumps_writes_lists(doc):
    streamed = {k: iter(v) if isinstance(v, list) else v for k, v in doc.items()}
    fh = io.StringIO()
    dump_json(streamed, fh)
    assert fh.getvalue() == json.dumps(doc, indent=1)
