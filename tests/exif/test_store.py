"""Reading an index folder back: the mapped arrays against the rows written, refusals in one line."""

import json
import os
import pickle

import numpy as np
import pytest
import torch

from sdaie.exif.store import (
    ARRAYS,
    FORMAT_VERSION,
    MANIFEST,
    IndexFormatError,
    load_index,
    read_manifest,
)
from sdaie.exif.writer import write_index

VOCAB = {"version": 1, "heads": [{"tag": "ISOSpeedRatings", "kind": "rank"},
                                 {"tag": "Make", "kind": "class", "classes": 3,
                                  "binning": "topk", "names": ["Canon", "NIKON", "other"]}]}


def rows(n=7, crops=True):
    out = []
    for i in range(n):
        out.append({"path": f"cam{i % 3}/ph\u00f6to_{i:03d}.jpg", "size": [64, 48],
                    "tags": {"Make": ["Canon", "NIKON", "Apple"][i % 3], "ISOSpeedRatings": 100 * i},
                    "labels": [None if i == 2 else 4.5 + i, i % 3 if i != 4 else None],
                    "crop": {"shard": i // 4, "row": i % 4} if crops and i != 5 else None})
    return out


def test_arrays_hold_what_the_rows_say(tmp_path):
    written = rows()
    write_index(tmp_path / "idx", iter(written), vocab=VOCAB, root=tmp_path / "photos", crop_size=8)
    index = load_index(tmp_path / "idx")
    assert len(index) == 7 and index.root == tmp_path / "photos" and index.crop_size == 8
    want = np.array([[np.nan if v is None else v for v in r["labels"]] for r in written],
                    dtype=np.float32)
    assert index.labels.dtype == np.float32 and isinstance(index.labels, np.memmap)
    np.testing.assert_array_equal(index.labels, want)  # NaN where the row had None
    for i, r in enumerate(written):
        assert index.rel_path(i) == r["path"]
        assert index.image_path(i) == tmp_path / "photos" / r["path"]
        ref = r["crop"] and (r["crop"]["shard"], r["crop"]["row"])
        assert index.crop_ref(i) == (ref or None)
        assert index.tags(i) == r["tags"] and index.record(i) == r
    assert list(index.records) == written and index.records[-1] == written[-1]
    assert index.records[1:3] == written[1:3] and len(index.records) == 7
    lines = (tmp_path / "idx" / "index.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(x) for x in lines] == written  # the people's copy
    assert json.loads((tmp_path / "idx" / "vocab.json").read_text()) == VOCAB == index.vocab


def test_crops_are_read_from_their_shards(tmp_path):
    out = tmp_path / "idx"
    shard = np.arange(4 * 8 * 8 * 3, dtype=np.uint8).reshape(4, 8, 8, 3)
    (out / "crops").mkdir(parents=True)
    np.save(out / "crops" / "shard_00000.npy", shard)
    write_index(out, [{"path": "a.jpg", "labels": [1, 0], "crop": {"shard": 0, "row": 2}},
                      {"path": "b.jpg", "labels": [2, 1], "crop": None}],
                vocab=VOCAB, root=tmp_path, crop_size=8)
    index = load_index(out)
    assert np.array_equal(index.crop(0), shard[2]) and index.crop(1) is None


def test_labels_tensor_maps_the_file_and_pickles_carry_no_arrays(tmp_path):
    write_index(tmp_path / "idx", rows(50), vocab=VOCAB, root=tmp_path, crop_size=8)
    index = load_index(tmp_path / "idx")
    t = index.labels_tensor()
    assert t.dtype == torch.float32 and t is index.labels_tensor()  # made once per process
    np.testing.assert_array_equal(t.numpy(), index.labels)
    assert not t.numpy().flags.owndata  # a view of the mapped file, not a copy
    blob = pickle.dumps(index)
    assert len(blob) < 2000  # folder and manifest only, whatever N is
    clone = pickle.loads(blob)
    np.testing.assert_array_equal(clone.labels, index.labels)
    assert clone.rel_path(49) == index.rel_path(49) and clone.tags(3) == index.tags(3)


def test_a_forked_child_reads_its_own_jsonl_handle(tmp_path):
    write_index(tmp_path / "idx", rows(), vocab=VOCAB, root=tmp_path, crop_size=8)
    index = load_index(tmp_path / "idx")
    assert index.tags(0)  # the parent opened index.jsonl
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: answers with the tags of photo 6
        os.write(w, json.dumps(index.tags(6)).encode())
        os._exit(0)
    os.waitpid(pid, 0)
    assert json.loads(os.read(r, 4096)) == rows()[6]["tags"] == index.tags(6)


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_an_index_of_the_previous_format_is_refused_with_the_command_to_rebuild(tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    (old / "index.jsonl").write_text('{"path": "a.jpg", "labels": [1, 2]}\n')
    (old / "summary.json").write_text(json.dumps({"root": "/data/photos", "indexed": 1}))
    with pytest.raises(IndexFormatError) as exc:
        load_index(old)
    text = _one_line(exc)
    assert "format 1" in text and f"format {FORMAT_VERSION}" in text
    assert f"sdaie index /data/photos --out {old}" in text and "EXIF cache" in text


def test_other_refusals(tmp_path):
    with pytest.raises(FileNotFoundError, match="index folder not found"):
        load_index(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(IndexFormatError, match="not an index folder"):
        load_index(tmp_path / "empty")
    out = tmp_path / "idx"
    write_index(out, rows(crops=False), vocab=VOCAB, root=tmp_path)
    manifest = json.loads((out / MANIFEST).read_text())

    def refused(**change):
        (out / MANIFEST).write_text(json.dumps({**manifest, **change}))
        with pytest.raises(IndexFormatError) as exc:
            read_manifest(out)
        return _one_line(exc)

    assert "upgrade sdaie" in refused(version=FORMAT_VERSION + 1)
    assert "not an sdaie photo index" in refused(format="something-else")
    assert "incomplete" in refused(jsonl_bytes=manifest["jsonl_bytes"] + 1)
    assert "incomplete" in refused(data="data-gone")
    (out / MANIFEST).write_text("{not json")
    with pytest.raises(IndexFormatError, match="unreadable"):
        read_manifest(out)
    (out / MANIFEST).write_text(json.dumps({**manifest, "rows": 8}))
    with pytest.raises(IndexFormatError, match="arrays do not match"):
        load_index(out)
    (out / MANIFEST).write_text(json.dumps(manifest))
    (out / manifest["data"] / ARRAYS["labels"]).write_bytes(b"broken")
    with pytest.raises(IndexFormatError, match="arrays cannot be read"):
        load_index(out)


def test_tags_refuse_a_jsonl_that_does_not_match_the_arrays(tmp_path):
    out = tmp_path / "idx"
    write_index(out, rows(crops=False), vocab=VOCAB, root=tmp_path)
    index = load_index(out)
    swapped = rows(crops=False)
    swapped[0]["path"], swapped[1]["path"] = swapped[1]["path"], swapped[0]["path"]
    text = "".join(json.dumps(r) + "\n" for r in swapped)  # same length, other order
    (out / "index.jsonl").write_text(text, encoding="utf-8")
    with pytest.raises(IndexFormatError, match="does not match its arrays"):
        index.tags(0)
    with pytest.raises(IndexError):
        index.record(7)
