"""``sdaie detect`` on a mixed folder: good images, synthetic generators' images and broken files.

References are computed independently of the detect code path: the whole image's patches in one
forward (no chunking), softmax by hand, the GMM's percentile as a plain mean over its training
scores.
"""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest
import torch

from sdaie.api import expand_inputs
from sdaie.config import HeadConfig, ModelConfig
from sdaie.data.imageio import load_image
from sdaie.data.patches import grid_patches
from sdaie.detect import FAKE, REAL, main
from sdaie.hashing import file_hash
from sdaie.models import (
    BinaryDetector,
    PretextModel,
    load_binary_detector,
    load_extractor,
    save_checkpoint,
)
from sdaie.oneclass.gmm import fit_one_class, load_gmm, save_gmm
from sdaie.synth import make_world
from support.odd_inputs import make_odd_inputs

PATCH = 16
SUMMARY = re.compile(r"(\d+) image files, (\d+) ok \((\d+) ai-generated, (\d+) real\), (\d+) errors")


def _tiny_cfg() -> ModelConfig:
    return ModelConfig(width=4, patch_size=PATCH, depths=[1, 1, 1, 1], transformer_depth=1,
                       attn_heads=2, dim_head=4, mlp_dim=8)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """Tiny random-weight checkpoints, a GMM fitted on camera photos, and a mixed folder."""
    base = tmp_path_factory.mktemp("detect")
    torch.manual_seed(0)
    cfg = _tiny_cfg()
    bc = save_checkpoint(base / "bc.pt", "binary", BinaryDetector(cfg), cfg)
    heads = [HeadConfig("ISOSpeedRatings", "rank", transform="log")]
    pre = save_checkpoint(base / "pretext.pt", "pretext", PretextModel(cfg, heads), cfg)

    mixed = base / "mixed"
    odd = make_odd_inputs(mixed / "odd")
    make_world(mixed / "world", photos=6, gen_images=2, size=96, bc_train=1, bc_val=1)
    world_files = sorted((mixed / "world").rglob("*.jpg"))

    extractor = load_extractor(pre)
    photos = sorted((mixed / "world" / "photos").rglob("*.jpg"))
    with torch.no_grad():
        feats = np.stack([extractor(grid_patches(load_image(p), size=PATCH)[None])[0].numpy()
                          for p in photos])
    gmm = save_gmm(base / "gmm.npz", fit_one_class(feats, components=2, covariance_type="diag"),
                   checkpoint=str(pre), checkpoint_hash=file_hash(pre))
    return {"base": base, "bc": bc, "pretext": pre, "gmm": gmm, "mixed": mixed, "odd": odd,
            "world_files": world_files,
            "expected": {str(f.path) for f in odd} | {str(p) for p in world_files}}


def _summary(stderr: str) -> tuple[int, ...]:
    found = SUMMARY.findall(stderr)
    assert found, stderr
    return tuple(int(x) for x in found[-1])


def _check_rows_against_zoo(rows: list[dict], w: dict) -> None:
    by_path = {r["path"]: r for r in rows}
    assert len(by_path) == len(rows) == len(w["expected"])  # one row per file, none twice
    assert set(by_path) == w["expected"]
    for f in w["odd"]:
        row = by_path[str(f.path)]
        if f.expect == "ok":
            assert "error" not in row, (f.kind, row)
        elif f.expect == "error":
            assert set(row) == {"path", "error"} and row["error"], (f.kind, row)
    for p in w["world_files"]:
        assert "error" not in by_path[str(p)]


def test_bc_mixed_folder(world, tmp_path, capsys):
    out = tmp_path / "rows.jsonl"
    code = main([str(world["mixed"]), "--checkpoint", str(world["bc"]), "--out", str(out),
                 "--batch-patches", "7", "--no-progress"])
    assert code == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    _check_rows_against_zoo(rows, world)
    ok = [r for r in rows if "error" not in r]
    files, n_ok, n_fake, n_real, errors = _summary(capsys.readouterr().err)
    assert (files, n_ok, errors) == (len(rows), len(ok), len(rows) - len(ok))
    assert n_ok + errors == files and n_fake + n_real == n_ok
    assert n_fake == sum(r["label"] == FAKE for r in ok)
    for r in ok:
        assert set(r) == {"path", "p_fake", "label", "patches", "seconds"}
        assert 0.0 <= r["p_fake"] <= 1.0 and r["seconds"] >= 0
        assert r["label"] == (FAKE if r["p_fake"] > 0.5 else REAL)

    # Independent reference: one unchunked forward, softmax of the logits.
    detector = load_binary_detector(world["bc"])
    for path in world["world_files"][:3]:
        patches = grid_patches(load_image(path), size=PATCH, cap=40_000)
        with torch.no_grad():
            ref = torch.softmax(detector(patches[None]), dim=1)[0, 1].item()
        row = next(r for r in rows if r["path"] == str(path))
        assert row["p_fake"] == pytest.approx(ref, abs=1e-5)
        assert row["patches"] == patches.shape[0] == (96 // PATCH) ** 2


def test_oc_mixed_folder_csv(world, tmp_path, capsys):
    out = tmp_path / "rows.csv"
    code = main([str(world["mixed"]), "--mode", "oc", "--checkpoint", str(world["pretext"]),
                 "--gmm", str(world["gmm"]), "--out", str(out), "--no-progress"])
    assert code == 0
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["path", "log_likelihood", "percentile", "label", "patches",
                             "seconds", "error"]
    rows = [{k: v for k, v in r.items() if v != ""} for r in rows]
    _check_rows_against_zoo(rows, world)
    files, n_ok, _, _, errors = _summary(capsys.readouterr().err)
    assert files == len(rows) == n_ok + errors
    assert n_ok == sum("error" not in r for r in rows)

    model, _ = load_gmm(world["gmm"])
    extractor = load_extractor(world["pretext"])
    for path in world["world_files"][:4]:
        with torch.no_grad():
            feat = extractor(grid_patches(load_image(path), size=PATCH)[None])[0].numpy()
        ll = float(model.gmm.score_samples(feat[None].astype(np.float64))[0])
        row = next(r for r in rows if r["path"] == str(path))
        assert float(row["log_likelihood"]) == pytest.approx(ll, rel=1e-5, abs=1e-4)
        assert float(row["percentile"]) == pytest.approx(100 * np.mean(model.train_scores <= ll),
                                                         abs=0.01)
        assert row["label"] == (REAL if ll > model.threshold else FAKE)


def test_oc_threshold_override_and_stdout(world, capsys):
    files = [str(p) for p in world["world_files"][:3]]
    # a threshold below every score: every image is real; above every score: every one is fake
    for thr, label in (("-1e300", REAL), ("1e300", FAKE)):
        code = main([*files, "--checkpoint", str(world["pretext"]), "--gmm", str(world["gmm"]),
                     f"--threshold={thr}", "--no-progress"])
        assert code == 0
        rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [r["path"] for r in rows] == files
        assert {r["label"] for r in rows} == {label}


def test_inputs_files_folders_globs(world, tmp_path):
    odd = world["mixed"] / "odd"
    (tmp_path / "empty").mkdir()
    good = odd / "good_000.jpg"
    targets = expand_inputs([str(good), str(odd / "size_*.png"), str(good),
                             str(tmp_path / "nope.jpg"), str(tmp_path / "empty"),
                             str(tmp_path / "*.webp")])
    paths = [t.path for t in targets]
    sizes = sorted(str(p) for p in odd.glob("size_*.png"))
    assert paths[0] == str(good) and paths[1:1 + len(sizes)] == sizes  # good_000.jpg only once
    errors = {t.path: t.error for t in targets if t.error}
    assert set(errors) == {str(tmp_path / "nope.jpg"), str(tmp_path / "empty"),
                           str(tmp_path / "*.webp")}
    assert len(targets) == 1 + len(sizes) + 3
    # recursive '**' globs reach nested folders
    nested = expand_inputs([str(world["mixed"] / "world" / "**" / "1_fake" / "*.jpg")])
    assert len(nested) == len([p for p in world["world_files"] if p.parent.name == "1_fake"]) > 0


def test_strict_stops_at_first_error(world, tmp_path, capsys):
    odd = world["mixed"] / "odd"
    out = tmp_path / "rows.jsonl"
    args = [str(odd / "good_000.jpg"), str(odd / "text_000.jpg"), str(odd / "mode_L_000.jpg"),
            "--checkpoint", str(world["bc"]), "--out", str(out), "--no-progress"]
    assert main(args + ["--strict"]) == 1
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 2 and "error" in rows[1]
    assert "--strict" in capsys.readouterr().err
    assert main(args) == 0  # without --strict the run goes on and exits 0
    assert len(out.read_text().splitlines()) == 3


def test_nothing_usable_exits_1(world, tmp_path, capsys):
    code = main([str(world["mixed"] / "odd" / "truncated_*"), str(tmp_path / "missing.png"),
                 "--checkpoint", str(world["bc"]), "--no-progress"])
    assert code == 1
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 6 and all(set(r) == {"path", "error"} for r in rows)


def test_unusable_setup_exits_2(world, tmp_path, capsys):
    img = str(world["world_files"][0])
    # a pretext checkpoint is not a binary detector: the message points at --mode oc
    assert main([img, "--checkpoint", str(world["pretext"]), "--no-progress"]) == 2
    assert "--mode oc" in capsys.readouterr().err
    assert main([img, "--mode", "oc", "--checkpoint", str(world["pretext"])]) == 2
    assert "--gmm" in capsys.readouterr().err
    assert main([img, "--no-progress"]) == 2  # the binary detector has no default checkpoint
    assert "--mode bc needs --checkpoint" in capsys.readouterr().err
    # a GMM fitted on another checkpoint's features is refused by name
    torch.manual_seed(1)
    other = save_checkpoint(tmp_path / "other.pt", "pretext",
                            PretextModel(_tiny_cfg(), [HeadConfig("ISOSpeedRatings", "rank")]),
                            _tiny_cfg())
    assert main([img, "--checkpoint", str(other), "--gmm", str(world["gmm"])]) == 2
    assert "fitted on features of" in capsys.readouterr().err
    assert main([img, "--checkpoint", str(tmp_path / "absent.pt"), "--no-progress"]) == 2


def test_oc_uses_the_gmm_patch_cap(world, tmp_path, capsys):
    """A GMM that records the patch cap of its training features gets images tiled the same way."""
    model, meta = load_gmm(world["gmm"])
    capped = save_gmm(tmp_path / "gmm_cap.npz", model, **{**meta, "max_patches": 4})
    img = str(world["world_files"][0])
    base = [img, "--checkpoint", str(world["pretext"]), "--gmm", str(capped), "--no-progress"]
    assert main(base) == 0
    assert json.loads(capsys.readouterr().out)["patches"] == 4
    assert main(base + ["--max-patches", "9"]) == 0  # an explicit cap wins
    assert json.loads(capsys.readouterr().out)["patches"] == 9


# ---------------------------------------------------------------------------------------------
# A newcomer's folder: every format, other files, links; mistakes as one line, status 2
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def formats_folder(tmp_path_factory) -> dict:
    """HEIC, AVIF, JPEG and PNG images beside text and video files, and a link to the folder."""
    from PIL import Image

    from sdaie.data.imageio import register_decoders

    register_decoders()
    base = tmp_path_factory.mktemp("formats")
    folder = base / "phone"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for i, (fmt, ext) in enumerate([("HEIF", "heic"), ("AVIF", "avif"), ("JPEG", "jpg"),
                                    ("PNG", "png"), ("HEIF", "HEIC")]):
        img = Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8))
        img.save(folder / f"img_{i}.{ext}", format=fmt)
    for name in ("notes.txt", "list.txt", "clip.mov"):
        (folder / name).write_text("not an image")
    (base / "link").symlink_to(folder, target_is_directory=True)
    (base / "empty").mkdir()
    return {"folder": folder, "link": base / "link", "empty": base / "empty", "images": 5}


def _detect_summary(capsys, argv) -> tuple[int, list[dict], str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, [json.loads(x) for x in captured.out.splitlines()], captured.err


def test_one_row_per_image_file_and_the_rest_counted(world, formats_folder, capsys):
    code, rows, err = _detect_summary(capsys, [str(formats_folder["folder"]), "--checkpoint",
                                               str(world["bc"]), "--no-progress"])
    assert code == 0 and len(rows) == formats_folder["images"]
    assert all("error" not in r and 0 <= r["p_fake"] <= 1 for r in rows), rows
    assert {r["path"].rsplit(".", 1)[1] for r in rows} == {"heic", "HEIC", "avif", "jpg", "png"}
    assert _summary(err)[0] == 5
    assert "| not images, ignored: 2 .txt, 1 .mov | 3 |" in err
    # the same folder through a symbolic link: the same counts and scores
    code, linked, err_link = _detect_summary(capsys, [str(formats_folder["link"]), "--checkpoint",
                                                      str(world["bc"]), "--no-progress"])
    assert _summary(err_link) == _summary(err)
    assert [r["p_fake"] for r in linked] == [r["p_fake"] for r in rows]


@pytest.mark.parametrize("extra, message", [
    (["--out", "rows.txt"], "--out rows.txt: the extension chooses the format"),
    (["--threshold", "2"], "--threshold 2 is not a probability"),
    (["--max-patches", "0"], "--max-patches must be >= 1"),
    (["--gmm", "/no/gmm.npz"], "--gmm /no/gmm.npz: no such file"),
])
def test_option_mistakes_are_one_line_and_status_2(world, formats_folder, extra, message, capsys):
    code, rows, err = _detect_summary(capsys, [str(formats_folder["folder"]), "--checkpoint",
                                               str(world["bc"]), *extra])
    lines = err.strip().splitlines()
    assert code == 2 and rows == [] and len(lines) == 1
    assert lines[0].startswith("sdaie detect: error: ") and message in lines[0]


def test_a_folder_without_images_is_one_line(world, formats_folder, capsys):
    code, rows, err = _detect_summary(capsys, [str(formats_folder["empty"]), "--checkpoint",
                                               str(world["bc"])])
    assert code == 2 and rows == [] and len(err.strip().splitlines()) == 1
    assert "no image file in the inputs" in err


def test_a_binary_checkpoint_is_refused_in_one_class_mode(world, formats_folder, capsys):
    code, _, err = _detect_summary(capsys, [str(formats_folder["folder"]), "--gmm",
                                            str(world["gmm"]), "--checkpoint", str(world["bc"])])
    assert code == 2 and "is a binary detector; --mode oc needs the pretext" in err


def test_one_class_mode_takes_the_backbone_the_gmm_records(world, formats_folder, capsys):
    code, rows, _ = _detect_summary(capsys, [str(formats_folder["folder"]), "--gmm",
                                             str(world["gmm"]), "--no-progress"])
    explicit = main([str(formats_folder["folder"]), "--gmm", str(world["gmm"]), "--checkpoint",
                     str(world["pretext"]), "--no-progress"])
    again = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert code == explicit == 0
    assert [r["log_likelihood"] for r in rows] == [r["log_likelihood"] for r in again]


def test_detect_mistakes_are_found_before_torch(world, formats_folder, tmp_path):
    import subprocess
    import sys

    argv = [sys.executable, "-X", "importtime", "-m", "sdaie", "detect",
            str(formats_folder["folder"]), "--checkpoint", str(world["pretext"])]
    proc = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:")}
    assert proc.returncode == 2 and "torch" not in imported and "sdaie.data.inputs" in imported
    lines = [x for x in proc.stderr.splitlines() if not x.startswith("import time:")]
    assert len(lines) == 1 and "is a pretext checkpoint, not a binary detector" in lines[0]
