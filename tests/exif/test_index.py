import json
import os
import pickle
from pathlib import Path

import numpy as np

from sdaie.config import load_config
from sdaie.data.imageio import load_image
from sdaie.exif.index import CACHE_NAME, build_index, load_index, main
from sdaie.exif.schema import Schema

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "schema"

def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_end_to_end_with_bad_files_crops_and_incremental_rerun(tmp_path, kit):
    photos, out = tmp_path / "photos", tmp_path / "index"
    good = kit.make_good(photos, 5)
    kit.write_jpeg(photos / "small/tiny.jpg", kit.pillow_exif(**kit.CAMERAS[1]), size=(40, 30),
                   seed=99)
    good.append("small/tiny.jpg")
    bad = kit.make_bad(photos)

    stats = build_index(photos, out, load_config(), workers=2, crop_size=48)  # worker processes
    assert (stats.files, stats.indexed, stats.parsed, stats.cropped) == (11, 6, 11, 5)

    records = read_jsonl(out / "index.jsonl")
    assert [r["path"] for r in records] == sorted(good)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["root"] == str(photos.resolve()) and summary["crop_size"] == 48
    reasons = {s["path"]: s["reason"] for s in summary["skipped_files"]}
    assert set(reasons) == set(bad)
    for rel, why in bad.items():
        assert why in reasons[rel], (rel, reasons[rel])
    assert summary["camera_models"] == 3 and summary["makes"]["Canon"] == 2
    assert summary["tag_counts"]["FNumber"] == 6

    # labels are the schema's encoding of the tags; the vocab lists top-k + other
    vocab = json.loads((out / "vocab.json").read_text())
    schema = Schema.from_vocab(vocab)
    for r in records:
        assert r["labels"] == schema.encode(r["tags"])
    make_head = [h for h in vocab["heads"] if h["tag"] == "Make"][0]
    assert make_head["names"] == ["NIKON CORPORATION", "Canon", "Apple", "other"]

    index = load_index(out)
    labels = index.labels_tensor()
    assert labels.shape == (6, 14)
    assert np.array_equal(np.isnan(labels.numpy()),
                          np.array([[lab is None for lab in r["labels"]] for r in records]))
    for i, r in enumerate(records):
        crop = index.crop(i)
        if r["path"] == "small/tiny.jpg":
            assert r["crop"] is None and crop is None  # smaller than 48: read raw by training
            continue
        full = np.asarray(load_image(index.image_path(i)))
        assert crop.shape == (48, 48, 3) and crop.dtype == np.uint8
        assert np.array_equal(crop, full[8:56, 16:64])  # native-resolution centre crop
    rows_before = {r["path"]: r["crop"] for r in records}
    clone = pickle.loads(pickle.dumps(index))  # as DataLoader workers get it: no memmaps inside
    assert index._shards and not clone._shards
    assert np.array_equal(clone.crop(0), index.crop(0))

    # incremental: only the new and the changed files are parsed again
    new = kit.make_good(photos, 2, start=10)
    kit.write_jpeg(photos / good[0], kit.pillow_exif(**kit.CAMERAS[2]), size=(80, 64), seed=0)
    os.utime(photos / good[0], ns=(1, 1))
    cfg = load_config()
    stats = build_index(photos, out, cfg, workers=1, crop_size=48)
    assert stats.parsed == 3 and stats.indexed == 8
    records = read_jsonl(out / "index.jsonl")
    by_path = {r["path"]: r for r in records}
    assert by_path[good[0]]["tags"]["Make"] == "Apple"
    for rel in good[1:]:
        assert by_path[rel]["crop"] == rows_before[rel]  # crop rows reused, not rewritten
    index = load_index(out)
    for i, r in enumerate(index.records):
        if r["path"] in new:
            full = np.asarray(load_image(index.image_path(i)))
            assert np.array_equal(index.crop(i), full[8:56, 16:64])
    # a third run with nothing new parses nothing; removed files leave the index
    (photos / good[1]).unlink()
    stats = build_index(photos, out, cfg, workers=1, crop_size=48)
    assert stats.parsed == 0 and stats.indexed == 7
    cache = read_jsonl(out / CACHE_NAME)
    assert len(cache) == 12 and good[1] not in {c["path"] for c in cache}


def test_config_override_and_strict(tmp_path, capsys, kit):
    photos, out = tmp_path / "photos", tmp_path / "index"
    kit.make_good(photos, 3)
    kit.make_bad(photos)
    assert main([str(photos), "--out", str(out), "--workers", "1", "--no-progress",
                 "--config", str(CONFIGS / "face_predecessor.yaml")]) == 0
    stdout = capsys.readouterr().out
    assert "indexed 3 of 8 image files" in stdout and "skipped 5 files" in stdout
    vocab = json.loads((out / "vocab.json").read_text())
    assert [h["tag"] for h in vocab["heads"]] == ["ISOSpeedRatings", "FNumber", "ExposureTime",
                                                  "FocalLength"]
    assert all(len(r["labels"]) == 4 for r in read_jsonl(out / "index.jsonl"))
    assert (out / "config.yaml").exists() and (out / "environment.json").exists()

    # an override in key=value form after the positional; a schema without any tag these
    # photos have makes every photo unusable
    rc = main([str(photos), "--out", str(tmp_path / "i2"), "--workers", "1", "--no-progress",
               "schema.heads=[{tag: LensModel, kind: class, classes: 2, binning: topk}]"])
    assert rc == 1 and "no usable photo" in capsys.readouterr().err

    rc = main([str(photos), "--out", str(tmp_path / "i3"), "--workers", "1", "--no-progress",
               "run.strict=true"])
    assert rc == 1 and "--strict" in capsys.readouterr().err


def test_bad_arguments(tmp_path, capsys):
    assert main([str(tmp_path / "nope"), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    assert "not found" in capsys.readouterr().err
    (tmp_path / "p").mkdir()
    assert main([str(tmp_path / "p"), "--out", str(tmp_path / "o"), "--no-progress",
                 "schema.heads=[{tag: ISO, kind: rank}]"]) == 2
    assert "unknown tag" in capsys.readouterr().err


def test_killed_run_journal_is_reused(tmp_path, kit):
    photos, out = tmp_path / "photos", tmp_path / "index"
    kit.make_good(photos, 4)
    cfg = load_config()
    build_index(photos, out, cfg, workers=1)
    with open(out / CACHE_NAME, "a") as fh:
        fh.write('{"path": "cam0/img_000.jpg", "by')  # torn line from a killed run
    stats = build_index(photos, out, cfg, workers=1)
    assert stats.parsed == 0 and stats.indexed == 4


def test_a_symlinked_folder_indexes_like_the_folder(tmp_path, kit, capsys):
    photos = tmp_path / "store" / "photos"
    kit.make_good(photos, 4)
    (tmp_path / "link").symlink_to(photos, target_is_directory=True)
    tree = tmp_path / "tree"  # a folder whose sub-folder is a link into the store
    tree.mkdir()
    (tree / "cam").symlink_to(photos, target_is_directory=True)
    assert main([str(photos), "--out", str(tmp_path / "a"), "--no-progress"]) == 0
    assert main([str(tmp_path / "link"), "--out", str(tmp_path / "b"), "--no-progress"]) == 0
    assert main([str(tree), "--out", str(tmp_path / "c"), "--no-progress"]) == 0
    counts = [{k: json.loads((tmp_path / x / "summary.json").read_text())[k]
               for k in ("files", "indexed", "camera_models")} for x in "abc"]
    assert counts[0] == counts[1] == counts[2] and counts[0]["indexed"] == 4
    assert [r["path"] for r in read_jsonl(tmp_path / "c" / "index.jsonl")] == \
        ["cam/" + r["path"] for r in read_jsonl(tmp_path / "a" / "index.jsonl")]


def test_heic_photos_are_indexed_with_their_exif_and_other_files_counted(tmp_path, kit, capsys):
    from PIL import Image

    from sdaie.data.imageio import register_decoders

    register_decoders()
    photos = tmp_path / "phone"
    kit.make_good(photos, 2)
    rng = np.random.default_rng(0)
    exif = kit.pillow_exif(Make="Apple", Model="iPhone 15", ISOSpeedRatings=64, FNumber=1.8)
    for i, fmt in enumerate(("HEIF", "AVIF")):
        Image.fromarray(rng.integers(0, 256, (64, 80, 3), np.uint8)).save(
            photos / f"IMG_{i}.{'heic' if fmt == 'HEIF' else 'avif'}", format=fmt,
            exif=exif.tobytes())
    (photos / "notes.txt").write_text("x")
    (photos / "clip.mov").write_bytes(b"x")
    assert main([str(photos), "--out", str(tmp_path / "idx"), "--no-progress"]) == 0
    records = {r["path"]: r for r in read_jsonl(tmp_path / "idx" / "index.jsonl")}
    assert records["IMG_0.heic"]["tags"]["Model"] == "iPhone 15"
    assert records["IMG_1.avif"]["tags"]["ISOSpeedRatings"] == 64
    summary = json.loads((tmp_path / "idx" / "summary.json").read_text())
    assert summary["files"] == 4 and summary["ignored"] == {".txt": 1, ".mov": 1}
    assert "ignored: 1 .mov, 1 .txt (not images)" in capsys.readouterr().out


def test_a_folder_without_images_is_one_line_and_status_2(tmp_path, capsys):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.txt").write_text("x")
    assert main([str(tmp_path / "photos"), "--out", str(tmp_path / "idx")]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [f"sdaie index: error: no image files under "
                                        f"{tmp_path / 'photos'} (ignored: 1 .txt)"]
