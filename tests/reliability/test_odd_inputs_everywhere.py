"""Every stage over the odd-input zoo: no traceback, every file accounted for, the same verdicts.

The zoo (``tests/support/odd_inputs.py``, a few hundred files) says per file whether its pixels must
be usable (``ok``), must be refused with a reason (``error``) or may go either way (``any``:
byte-corrupted data). Each stage is checked against that, and against the other stages: a file
one stage can read, every pixel stage can read.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from sdaie.data.imageio import ImageLoadError, list_images, load_image

MAX_PATCHES = 4  # grid patches per image: a cap keeps the test fast (the cap is part of the API)


def _strict_json(line: str):
    """``json.loads`` that refuses NaN / Infinity (a non-finite value must never be written)."""
    def refuse(token: str):
        raise AssertionError(f"non-finite number {token} in {line[:120]}")
    return json.loads(line, parse_constant=refuse)


def _zoo_dir(zoo) -> Path:
    return zoo[0].path.parent


def _verdicts(zoo) -> dict[str, bool]:
    """path -> usable pixels, from ``load_image`` (the shared loader): the reference verdicts."""
    out = {}
    for f in zoo:
        try:
            load_image(f.path)
            out[str(f.path)] = True
        except ImageLoadError:
            out[str(f.path)] = False
    return out


@pytest.fixture(scope="module")
def verdicts(zoo) -> dict[str, bool]:
    v = _verdicts(zoo)
    for f in zoo:  # the loader itself honours the zoo's expectations
        if f.expect != "any":
            assert v[str(f.path)] == (f.expect == "ok"), f.kind
    return v


def test_zoo_is_a_few_hundred_files_of_every_kind(zoo):
    kinds = {f.kind for f in zoo}
    assert len(zoo) >= 250 and len({f.path for f in zoo}) == len(zoo)
    assert sorted(p.name for p in list_images(_zoo_dir(zoo))) == sorted(f.path.name for f in zoo)
    for needle in ("truncated jpeg", "byte-corrupted", "zero-byte", "HTML", "1x1 png", "63x63",
                   "65x65", "1x500", "grayscale", "palette", "RGBA", "LA png", "CMYK", "1-bit",
                   "16-bit png", "16-bit tiff", "float tiff", "claiming", "flat black",
                   "flat white", "saturated", "zero denominator", "wrong types", "ifd loop",
                   "offsets out of range", "camera jpeg"):
        assert any(needle in k for k in kinds), needle


# ---------------------------------------------------------------------------------------------
# sdaie exif
# ---------------------------------------------------------------------------------------------


def test_exif_cli_one_row_per_file(zoo, capsys):
    from sdaie.exif.cli import main

    assert main([str(_zoo_dir(zoo)), "--quiet"]) == 0
    out, err = capsys.readouterr()
    rows = [_strict_json(line) for line in out.splitlines()]
    by_path = {r["path"]: r for r in rows}
    assert len(rows) == len(by_path) == len(zoo)
    for f in zoo:
        row = by_path[str(f.path)]
        assert set(row) in ({"path", "tags"}, {"path", "error"}), row
        if "error" in row:
            assert row["error"]
        if f.kind == "camera jpeg":  # valid camera EXIF is read completely
            assert {"Make", "Model", "FNumber", "ExposureTime", "ISOSpeedRatings",
                    "FocalLength"} <= set(row["tags"]), row
        if f.kind.startswith(("zero-byte", "text file", "HTML")):
            assert "error" in row, row
    bad = {r["path"]: r for r in rows if Path(r["path"]).name.startswith("exif_zero_denominator")}
    for row in bad.values():  # 28/0 and 0/0 are dropped, never turned into 0 or inf
        assert "FNumber" not in row["tags"] and "FocalLength" not in row["tags"]


# ---------------------------------------------------------------------------------------------
# sdaie index
# ---------------------------------------------------------------------------------------------


def test_index_accounts_for_every_file(zoo, verdicts, tmp_path, capsys):
    from sdaie.exif.index import load_index, main

    out = tmp_path / "index"
    assert main([str(_zoo_dir(zoo)), "--out", str(out), "--workers", "1", "--crops", "64",
                 "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    indexed = [_strict_json(line) for line in (out / "index.jsonl").read_text().splitlines()]
    skipped = {s["path"]: s["reason"] for s in summary["skipped_files"]}
    names = {r["path"] for r in indexed}
    assert summary["files"] == len(zoo) and summary["indexed"] == len(indexed)
    assert len(names) + len(skipped) == len(zoo) and not names & set(skipped)
    assert all(reason for reason in skipped.values())
    for f in zoo:
        if f.kind.startswith("camera jpeg"):
            assert f.path.name in names, (f.kind, skipped.get(f.path.name))
        if not verdicts[str(f.path)]:  # unusable pixels are never indexed
            assert f.path.name in skipped, f.kind
    index = load_index(out)
    labels = index.labels_tensor()
    assert labels.shape[0] == len(indexed) and not labels.isinf().any()
    for i, r in enumerate(index.records):
        crop = index.crop(i)
        w, h = r["size"]
        assert (crop is not None) == (min(w, h) >= 64)
        if crop is not None:  # the crop is the stored pixels, orientation not applied
            img = np.asarray(load_image(index.image_path(i)))
            top, left = (h - 64) // 2, (w - 64) // 2
            np.testing.assert_array_equal(crop, img[top:top + 64, left:left + 64])


def test_index_strict_stops_at_the_first_bad_file(zoo, tmp_path, capsys):
    from sdaie.exif.index import main

    out = tmp_path / "index"
    assert main([str(_zoo_dir(zoo)), "--out", str(out), "--workers", "1", "--strict",
                 "--no-progress"]) == 1
    err = capsys.readouterr().err
    first = sorted(f.path.name for f in zoo)[0]  # bomb_claim_000.jpg: refused
    assert f"--strict: unusable file {first}:" in err and "Traceback" not in err
    journal = (out / "exif_cache.jsonl").read_text().splitlines()
    assert len(journal) == 1  # nothing after the first bad file was parsed


# ---------------------------------------------------------------------------------------------
# One-class features (oc_main's feature step) and the GMM
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def extractor(tiny_checkpoints):
    from sdaie.models import load_extractor

    return load_extractor(tiny_checkpoints["pretext"])


def _patcher(img):
    from sdaie.data.patches import grid_patches

    return grid_patches(img, size=64, cap=MAX_PATCHES)


def test_oneclass_features_skip_and_report(zoo, verdicts, extractor):
    from sdaie.oneclass.gmm import fit_one_class
    from sdaie.scoring import extract_features

    paths = [f.path for f in zoo]
    fs = extract_features(extractor, paths, [0] * len(paths), _patcher, batch_patches=3)
    skipped = {s["path"]: s["reason"] for s in fs.skipped}
    assert len(fs.paths) + len(skipped) == len(zoo) and not set(fs.paths) & set(skipped)
    assert all(skipped.values())
    assert {str(p) for p in paths if verdicts[str(p)]} == set(fs.paths)
    assert fs.features.shape == (len(fs.paths), extractor.feature_dim)
    assert np.isfinite(fs.features).all()
    assert ((1 <= fs.n_patches) & (fs.n_patches <= MAX_PATCHES)).all()
    model = fit_one_class(fs.features, components=1)
    assert np.isfinite(model.score(fs.features)).all()


def test_oneclass_features_strict_raises_at_first_bad_file(zoo, extractor):
    from sdaie.scoring import extract_features

    paths = sorted(f.path for f in zoo)
    with pytest.raises(ImageLoadError, match="decompression bomb") as info:
        extract_features(extractor, paths, [0] * len(paths), _patcher, strict=True)
    assert info.value.path == str(paths[0])  # the error names the file


# ---------------------------------------------------------------------------------------------
# sdaie detect (bc and oc)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gmm_file(zoo, extractor, tiny_checkpoints, tmp_path_factory) -> Path:
    from sdaie.hashing import file_hash
    from sdaie.oneclass.gmm import fit_one_class, save_gmm
    from sdaie.scoring import extract_features

    good = [f.path for f in zoo if f.kind in ("valid jpeg", "camera jpeg")]
    fs = extract_features(extractor, good, [0] * len(good), _patcher)
    pre = tiny_checkpoints["pretext"]
    return save_gmm(tmp_path_factory.mktemp("gmm") / "gmm.npz", fit_one_class(fs.features, 1),
                    checkpoint=str(pre), checkpoint_hash=file_hash(pre))


@pytest.mark.parametrize("mode", ["bc", "oc"])
def test_detect_one_row_per_file(mode, zoo, verdicts, tiny_checkpoints, gmm_file, tmp_path, capsys):
    from sdaie.detect import main

    out = tmp_path / "rows.jsonl"
    args = [str(_zoo_dir(zoo)), "--out", str(out), "--max-patches", str(MAX_PATCHES),
            "--no-progress"]
    args += (["--checkpoint", str(tiny_checkpoints["bc"])] if mode == "bc" else
             ["--checkpoint", str(tiny_checkpoints["pretext"]), "--gmm", str(gmm_file)])
    assert main(args) == 0
    rows = [_strict_json(line) for line in out.read_text().splitlines()]
    by_path = {r["path"]: r for r in rows}
    assert len(rows) == len(by_path) == len(zoo)
    score = "p_fake" if mode == "bc" else "log_likelihood"
    for f in zoo:
        row = by_path[str(f.path)]
        if verdicts[str(f.path)]:
            assert "error" not in row and math.isfinite(row[score]), (f.kind, row)
        else:
            assert set(row) == {"path", "error"} and row["error"], (f.kind, row)
    err = capsys.readouterr().err
    n_err = sum(not v for v in verdicts.values())
    assert f"{len(zoo)} image files, {len(zoo) - n_err} ok" in err and f"{n_err} errors" in err
    assert "Traceback" not in err


def test_detect_strict_stops_at_the_first_bad_file(zoo, tiny_checkpoints, tmp_path, capsys):
    from sdaie.detect import main

    out = tmp_path / "rows.jsonl"
    good = next(f.path for f in zoo if f.kind == "camera jpeg")
    bad = next(f.path for f in zoo if f.kind == "HTML saved as .jpg")
    assert main([str(good), str(bad), str(_zoo_dir(zoo)), "--strict", "--out", str(out),
                 "--checkpoint", str(tiny_checkpoints["bc"]), "--no-progress"]) == 1
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 2 and "error" not in rows[0] and rows[1]["path"] == str(bad)
    err = capsys.readouterr().err
    assert f"--strict: stopped at {bad}: not a recognised image format" in err


# ---------------------------------------------------------------------------------------------
# The evaluation stages (oc_main, bc_eval) with odd files inside the test folders
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def odd_test_root(zoo, tmp_path_factory) -> Path:
    """Set ``odd``: ``0_real`` one copy of the zoo, ``1_fake`` its valid camera photos.
    Set ``garbage``: only unusable files (a whole test set of failed downloads)."""
    import shutil

    root = tmp_path_factory.mktemp("tests")
    for d in ("odd/0_real", "odd/1_fake", "garbage/0_real", "garbage/1_fake"):
        (root / d).mkdir(parents=True)
    for f in zoo:
        if f.path.stem.endswith("_000"):
            shutil.copy(f.path, root / "odd" / "0_real" / f.path.name)
        if f.kind.startswith("camera jpeg") or f.kind == "valid jpeg":
            shutil.copy(f.path, root / "odd" / "1_fake" / f.path.name)
        if f.expect == "error" and f.path.stem.endswith("_001"):
            for label in ("0_real", "1_fake"):
                shutil.copy(f.path, root / "garbage" / label / f.path.name)
    return root


def _expected_skips(zoo, verdicts, root: Path) -> set[str]:
    """Unusable files of ``odd/0_real`` and every file of ``garbage``."""
    odd = {str(root / "odd" / "0_real" / f.path.name) for f in zoo
           if f.path.stem.endswith("_000") and not verdicts[str(f.path)]}
    return odd | {str(p) for p in list_images(root / "garbage")}


def _metrics_rows(path: Path) -> dict[str, dict]:
    import csv

    with open(path, newline="") as fh:
        return {r["set"]: r for r in csv.DictReader(fh)}


def test_bc_eval_skips_and_reports(zoo, verdicts, tiny_checkpoints, odd_test_root, tmp_path):
    from sdaie.stages.bc_eval import main

    out = tmp_path / "bc_eval"
    assert main(["run.device=cpu", f"run.out_dir={out}", f"eval.checkpoint={tiny_checkpoints['bc']}",
                 f"eval.test_root={odd_test_root}", f"eval.max_patches={MAX_PATCHES}"]) == 0
    skipped = [json.loads(line) for line in (out / "skipped.jsonl").read_text().splitlines()]
    assert {s["path"] for s in skipped} == _expected_skips(zoo, verdicts, odd_test_root)
    assert all(s["reason"] for s in skipped)
    with np.load(out / "scores" / "clean" / "odd.npz", allow_pickle=False) as z:
        n_usable = len(list_images(odd_test_root / "odd")) - sum(s["set"] == "odd" for s in skipped)
        assert len(z["scores"]) == n_usable and np.isfinite(z["scores"]).all()
    rows = _metrics_rows(out / "bc_metrics.csv")  # the unusable set: a row of NaN, not a crash
    assert rows["garbage"]["n_real"] == "0" and rows["garbage"]["acc"] == ""
    assert float(rows["odd"]["n_real"]) > 0


def test_bc_eval_strict_fails_with_a_message(zoo, tiny_checkpoints, odd_test_root, tmp_path):
    from sdaie.stages.bc_eval import main

    with pytest.raises(SystemExit) as info:
        main(["run.device=cpu", "run.strict=true", f"run.out_dir={tmp_path / 'bc'}",
              f"eval.checkpoint={tiny_checkpoints['bc']}", f"eval.test_root={odd_test_root}",
              f"eval.max_patches={MAX_PATCHES}"])
    msg = str(info.value.code)
    assert re.match(r"run\.strict: stopped at unusable file \S+/bomb_claim_00\d\.jpg: "
                    r"decompression bomb refused", msg), msg


def test_oc_main_skips_and_reports(zoo, verdicts, tiny_checkpoints, odd_test_root, tmp_path):
    from sdaie.stages.oc_main import main

    out = tmp_path / "oc"
    train_dir = odd_test_root / "odd" / "0_real"  # odd files among the GMM's training images too
    assert main(["run.device=cpu", f"run.out_dir={out}",
                 f"oneclass.checkpoint={tiny_checkpoints['pretext']}",
                 f"oneclass.train_dirs=[{train_dir}]", f"oneclass.test_root={odd_test_root}",
                 "oneclass.components=1", f"oneclass.max_patches={MAX_PATCHES}"]) == 0
    skipped = [json.loads(line) for line in (out / "skipped.jsonl").read_text().splitlines()]
    expected = _expected_skips(zoo, verdicts, odd_test_root)
    assert {s["path"] for s in skipped if s["set"] == "_train"} == {
        p for p in expected if p.startswith(str(train_dir))}
    assert {s["path"] for s in skipped if s["set"] != "_train"} == expected
    with np.load(out / "scores" / "clean" / "odd.npz", allow_pickle=False) as z:
        assert np.isfinite(z["scores"]).all()
    rows = _metrics_rows(out / "oc_metrics.csv")
    assert rows["garbage"]["n_real"] == "0" and float(rows["odd"]["n_real"]) > 0


def test_oc_main_without_any_usable_training_image_says_so(odd_test_root, tiny_checkpoints,
                                                           tmp_path):
    from sdaie.stages.oc_main import main

    with pytest.raises(SystemExit) as info:
        main(["run.device=cpu", f"run.out_dir={tmp_path / 'oc'}",
              f"oneclass.checkpoint={tiny_checkpoints['pretext']}",
              f"oneclass.train_dirs=[{odd_test_root / 'garbage' / '0_real'}]",
              f"oneclass.test_root={odd_test_root}", "oneclass.components=1"])
    assert "only 0 of" in str(info.value.code) and "usable" in str(info.value.code)


def test_exif_cli_strict_stops_at_the_first_unreadable_file(zoo, capsys):
    from sdaie.exif.cli import main

    good = next(f.path for f in zoo if f.kind == "camera jpeg")
    bad = next(f.path for f in zoo if f.kind == "HTML saved as .jpg")
    assert main([str(good), str(bad), str(_zoo_dir(zoo)), "--strict", "--quiet"]) == 1
    out, err = capsys.readouterr()
    assert [json.loads(line)["path"] for line in out.splitlines()] == [str(good), str(bad)]
    assert f"--strict: stopped at {bad}: not a recognised image format" in err


def test_pixels_are_decoded_only_by_load_image():
    """One loader, one behaviour: no other module decodes files or applies EXIF orientation."""
    root = Path(__file__).resolve().parents[2] / "sdaie"
    allowed = {"data/imageio.py",  # the loader
               "exif/container.py",  # headers only (format, size), no pixels used
               "data/transforms.py",  # re-opens its own in-memory JPEG (the perturbation)
               # data.decoder=torchvision: the header through Pillow, the pixels through
               # torchvision; anything else through load_image (tests/data/test_sources.py
               # checks it gives load_image's pixels, decisions and reasons)
               "data/sources.py"}
    for path in root.rglob("*.py"):
        rel = path.relative_to(root).as_posix()
        text = path.read_text(encoding="utf-8")
        assert "exif_transpose" not in text, rel
        if rel not in allowed and not rel.startswith("synth/"):
            assert "Image.open(" not in text and "imread(" not in text, rel
