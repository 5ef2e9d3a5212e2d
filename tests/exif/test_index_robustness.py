"""``sdaie index`` on awkward folders: non-UTF-8 file names, files unreadable for a while,
``--strict`` over a cache, leftovers of killed builds."""

import json
import os
import shutil

from sdaie.config import load_config
from sdaie.data.imageio import load_image
from sdaie.exif.index import build_index, load_index


def test_a_file_name_that_is_not_utf8_is_indexed_and_opens(tmp_path, kit):
    photos, out = tmp_path / "photos", tmp_path / "index"
    kit.make_good(photos, 2)
    bad_name = os.path.join(os.fsencode(photos), b"cam0", b"bad\xff.jpg")
    shutil.copyfile(photos / "cam0/img_000.jpg", bad_name)

    stats = build_index(photos, out, load_config(), workers=1)
    assert stats.indexed == 3
    index = load_index(out)
    rels = [index.rel_path(i) for i in range(len(index))]
    i = rels.index(os.fsdecode(b"cam0/bad\xff.jpg"))
    assert os.fsencode(index.image_path(i)) == os.path.join(os.fsencode(photos.resolve()),
                                                            b"cam0", b"bad\xff.jpg")
    assert load_image(index.image_path(i)).size == (80, 64)
    assert index.record(i)["path"] == rels[i] and index.tags(i)["Make"]
    for line in (out / "index.jsonl").read_bytes().splitlines():  # valid JSON, ASCII lines
        line.decode("ascii")
        json.loads(line)
    assert build_index(photos, out, load_config(), workers=1).parsed == 0  # the cache reads back


def test_a_file_unreadable_for_a_while_is_parsed_again(tmp_path, kit, monkeypatch):
    """A read error (permissions, a share gone for a moment) leaves size and mtime unchanged:
    the next run parses the file again instead of trusting the cached error."""
    from sdaie.exif import parse
    from sdaie.exif.reader import ExifResult

    photos, out = tmp_path / "photos", tmp_path / "index"
    kit.make_good(photos, 3)
    real = parse.read_exif

    def denied(path):
        if str(path).endswith("img_001.jpg"):
            return ExifResult(error="cannot read: Permission denied")
        return real(path)

    monkeypatch.setattr(parse, "read_exif", denied)
    first = build_index(photos, out, load_config(), workers=1)
    assert first.indexed == 2 and first.skipped[0]["reason"] == "cannot read: Permission denied"
    monkeypatch.setattr(parse, "read_exif", real)  # chmod 644
    again = build_index(photos, out, load_config(), workers=1)
    assert (again.parsed, again.indexed, again.skipped_count) == (1, 3, 0)
    assert build_index(photos, out, load_config(), workers=1).parsed == 0


def test_strict_fails_on_a_file_skipped_by_an_earlier_run(tmp_path, kit, capsys):
    from PIL import Image

    from sdaie.exif.index import main

    photos, out = tmp_path / "photos", tmp_path / "index"
    kit.make_good(photos, 2)
    Image.new("RGB", (40, 40), (1, 2, 3)).save(photos / "plain.png")
    args = [str(photos), "--out", str(out), "--workers", "1", "--no-progress"]
    assert main(args) == 0 and "skipped 1 files" in capsys.readouterr().out
    manifest = (out / "manifest.json").read_bytes()

    for strict in (["--strict"], ["run.strict=true"]):
        assert main(args + strict) == 1  # the PNG is in the cache, not parsed again
        err = capsys.readouterr().err
        assert "--strict: unusable file plain.png: no EXIF tags" in err
    assert (out / "manifest.json").read_bytes() == manifest  # nothing rewritten


def test_temporaries_of_killed_builds_are_removed(tmp_path, kit):
    import subprocess
    import sys

    photos, out = tmp_path / "photos", tmp_path / "index"
    kit.make_good(photos, 2)
    build_index(photos, out, load_config(), workers=1)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # a pid that no longer runs: a killed build's
    dead = [out / f".exif_cache.jsonl.{child.pid}.tmp", out / f".skipped.{child.pid}.tmp"]
    alive = [out / f".exif_cache.jsonl.{os.getppid()}.tmp", out / f".skipped.{os.getppid()}.tmp"]
    for path in dead + alive:
        path.write_text("half written")
    build_index(photos, out, load_config(), workers=1)
    assert not any(p.exists() for p in dead)
    assert all(p.exists() for p in alive)  # a build still running there keeps its files
