"""``from sdaie import Detector``: the rows equal ``sdaie detect``'s on the same files, every input
kind scores like the file it came from, and loading refuses what detect refuses.

The detect rows are produced by the command itself (its ``main``); the in-memory inputs are
checked against the file's row and against one unchunked forward computed here.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from sdaie import Detector
from sdaie.api import SetupError, to_image
from sdaie.config import HeadConfig, ModelConfig
from sdaie.data.imageio import load_image
from sdaie.data.patches import grid_patches
from sdaie.detect import main as detect
from sdaie.hashing import file_hash
from sdaie.models import BinaryDetector, PretextModel, load_binary_detector, save_checkpoint
from sdaie.oneclass.gmm import fit_one_class, load_gmm, save_gmm

PATCH = 16


def _cfg() -> ModelConfig:
    return ModelConfig(width=4, patch_size=PATCH, depths=[1, 1, 1, 1], transformer_depth=1,
                       attn_heads=2, dim_head=4, mlp_dim=8)


@pytest.fixture(scope="module")
def kit(tmp_path_factory) -> dict:
    """Random-weight binary and pretext checkpoints, a GMM on the pretext features, a folder."""
    base = tmp_path_factory.mktemp("api")
    torch.manual_seed(0)
    bc = save_checkpoint(base / "bc.pt", "binary", BinaryDetector(_cfg()), _cfg())
    pre = save_checkpoint(base / "pretext.pt", "pretext",
                          PretextModel(_cfg(), [HeadConfig("ISOSpeedRatings", "rank")]), _cfg())
    rng = np.random.default_rng(0)
    folder = base / "images"
    (folder / "sub").mkdir(parents=True)
    for i in range(5):
        arr = rng.integers(0, 256, (48 + 8 * i, 64, 3), dtype=np.uint8)
        Image.fromarray(arr).save(folder / ("sub" if i % 2 else ".") / f"img_{i}.png")
    (folder / "broken.jpg").write_bytes(b"<html>not an image</html>")
    train = rng.normal(size=(20, 10))
    gmm = save_gmm(base / "gmm.npz", fit_one_class(train, components=2, covariance_type="diag"),
                   checkpoint=str(pre), checkpoint_hash=file_hash(pre), max_patches=6)
    return {"base": base, "bc": bc, "pretext": pre, "gmm": gmm, "folder": folder,
            "files": sorted(p for p in folder.rglob("*.png"))}


def _detect_rows(args: list[str], out) -> list[dict]:
    assert detect([*args, "--out", str(out), "--no-progress"]) == 0
    return [json.loads(line) for line in out.read_text().splitlines()]


def _without_seconds(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


@pytest.mark.parametrize("mode", ["bc", "oc"])
def test_rows_equal_sdaie_detect_rows_on_the_same_files(mode, kit, tmp_path):
    inputs = [str(kit["folder"]), str(kit["files"][0])]  # a folder and a file it holds (once)
    if mode == "bc":
        det = Detector.load(kit["bc"], batch_patches=3, device="cpu")
        rows = _detect_rows([*inputs, "--checkpoint", str(kit["bc"]), "--batch-patches", "3"],
                            tmp_path / "rows.jsonl")
    else:  # no --checkpoint: the backbone recorded in gmm.npz, in the command as in the API
        det = Detector.load(gmm=kit["gmm"], device="cpu")
        rows = _detect_rows([*inputs, "--gmm", str(kit["gmm"])], tmp_path / "rows.jsonl")
    mine = det.score(inputs)
    assert len(rows) == 6 and sum("error" in r for r in rows) == 1
    assert _without_seconds(mine) == _without_seconds(rows)
    assert all(set(r) <= set(det.columns) for r in mine)
    assert [list(r) for r in mine] == [list(r) for r in rows]  # same keys in the same order
    if mode == "oc":
        assert {r["patches"] for r in mine if "error" not in r} == {6}  # the GMM's own cap


def test_single_inputs_give_one_row_and_collections_a_list(kit, tmp_path):
    det = Detector.load(kit["bc"], device="cpu")
    one = det.score(kit["files"][0])
    assert isinstance(one, dict) and one["path"] == str(kit["files"][0])
    assert isinstance(det.score(kit["folder"]), list) and len(det.score(kit["folder"])) == 6
    assert len(det.score(str(kit["folder"] / "sub" / "*.png"))) == 2
    assert det.score(tmp_path / "absent.png") == {"path": str(tmp_path / "absent.png"),
                                                   "error": "no such file or folder"}
    assert det.score(kit["folder"] / "broken.jpg")["error"] == "not a recognised image format"


def test_in_memory_images_score_like_their_file(kit):
    det = Detector.load(kit["bc"], device="cpu")
    path = kit["files"][1]
    ref = det.score(path)
    img = Image.open(path)
    arr = np.asarray(load_image(path))
    chw = torch.from_numpy(arr.copy()).permute(2, 0, 1)
    for x in (img, arr, chw, chw.float() / 255, torch.from_numpy(arr.copy())):
        row = det.score(x)
        assert row["path"] is None
        assert {k: row[k] for k in ("p_fake", "label", "patches")} == \
            {k: ref[k] for k in ("p_fake", "label", "patches")}
    # and that number is one unchunked forward of the whole image
    with torch.no_grad():
        logits = load_binary_detector(kit["bc"])(grid_patches(Image.fromarray(arr), PATCH)[None])
    assert ref["p_fake"] == pytest.approx(torch.softmax(logits, 1)[0, 1].item(), abs=1e-6)
    batch = det.score([arr, path])
    assert [r["p_fake"] for r in batch] == [ref["p_fake"]] * 2


def test_tensors_that_are_not_images_are_refused():
    for bad in (torch.rand(2, 16, 16), torch.rand(16, 16), torch.rand(3, 8, 8) * 2 - 1,
                torch.zeros(3, 8, 8, dtype=torch.int32)):
        with pytest.raises(ValueError):
            to_image(bad)


def test_threshold_and_patch_options(kit):
    files = kit["files"][:3]
    low = Detector.load(kit["bc"], threshold=-1.0, max_patches=2, device="cpu").score(files)
    assert {r["label"] for r in low} == {"ai-generated"} and {r["patches"] for r in low} == {2}
    high = Detector.load(gmm=kit["gmm"], threshold=1e300, device="cpu").score(files)
    assert {r["label"] for r in high} == {"ai-generated"}
    assert Detector.load(gmm=kit["gmm"], device="cpu").threshold == \
        load_gmm(kit["gmm"])[0].threshold


def test_loading_refuses_what_detect_refuses(kit, tmp_path):
    with pytest.raises(SetupError, match="pretext checkpoint.*gmm="):
        Detector.load(kit["pretext"])
    torch.manual_seed(1)
    other = save_checkpoint(tmp_path / "other.pt", "pretext",
                            PretextModel(_cfg(), [HeadConfig("ISOSpeedRatings", "rank")]), _cfg())
    with pytest.raises(SetupError, match="fitted on features of"):
        Detector.load(other, gmm=kit["gmm"])
    model, meta = load_gmm(kit["gmm"])
    moved = save_gmm(tmp_path / "moved.npz", model,
                     **{**meta, "checkpoint": str(tmp_path / "gone.pt")})
    with pytest.raises(SetupError, match="gone.pt.*not there"):
        Detector.load(gmm=moved)
    assert Detector.load(kit["pretext"], gmm=moved).mode == "oc"  # named explicitly: fine
    with pytest.raises(SetupError, match="batch_patches"):
        Detector.load(kit["bc"], batch_patches=0)
    with pytest.raises(SetupError):
        Detector.load()


def test_import_sdaie_does_not_import_torch():
    code = "import sys, sdaie; assert 'torch' not in sys.modules, 'torch imported'; sdaie.Detector"
    subprocess.run([sys.executable, "-c", code], check=True)
    with pytest.raises(AttributeError):
        import sdaie

        sdaie.NoSuchThing  # noqa: B018


def test_protocol_and_perturbation_choices(kit, tmp_path):
    from sdaie.data.official import BINARY_PATCH_CAP, ONE_CLASS_PATCH_CAP
    from sdaie.data.transforms import parse_perturbation
    from sdaie.scoring import Tiling

    det = Detector.load(kit["bc"], device="cpu", protocol="official", perturbation="resize=0.5")
    assert (det.protocol, det.perturbation.spec, det.max_patches) == (
        "official", "resize=0.5", BINARY_PATCH_CAP)
    img = Image.fromarray(np.random.default_rng(2).integers(0, 256, (37, 53, 3), dtype=np.uint8))
    scorer = det.scorer  # the row is the scorer on the official tiling of the perturbed image
    ref = scorer(Tiling(PATCH, BINARY_PATCH_CAP, parse_perturbation("resize=0.5"), "official")(img))
    assert det.score(img)["p_fake"] == pytest.approx(ref.p_fake, abs=1e-7)
    assert Detector.load(kit["bc"], device="cpu").protocol == "spec"
    # a one-class detector takes the protocol its GMM was fitted under, unless told otherwise
    g = save_gmm(tmp_path / "g.npz", load_gmm(kit["gmm"])[0], checkpoint=str(kit["pretext"]),
                 checkpoint_hash=file_hash(kit["pretext"]), protocol="official")
    oc = Detector.load(gmm=g, device="cpu")
    assert (oc.protocol, oc.max_patches) == ("official", ONE_CLASS_PATCH_CAP)
    assert Detector.load(gmm=g, device="cpu", protocol="spec", max_patches=6).protocol == "spec"
    for bad, match in (({"protocol": "paper"}, "protocol='paper'"),
                       ({"perturbation": "jpeg=0"}, "JPEG quality"),
                       ({"protocol": "official", "max_patches": 6}, "max_patches=6")):
        with pytest.raises(SetupError, match=match):
            Detector.load(kit["bc"], device="cpu", **bad)


# --------------------------------------------------------------------------------------------
# Heatmaps: score(patches=True) and sdaie detect --heatmap
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["bc", "oc"])
def test_patch_rows_keep_the_image_fields_and_add_the_map(mode, kit):
    det = (Detector.load(kit["bc"], device="cpu") if mode == "bc"
           else Detector.load(gmm=kit["gmm"], device="cpu"))
    f = kit["files"][2]
    plain = det.score(f)
    row = det.score(f, patches=True, stride=PATCH // 2)
    same = {k: v for k, v in row.items() if k in plain and k != "seconds"}
    assert same == {k: v for k, v in plain.items() if k != "seconds"}
    pm = row["heatmap"]
    assert pm.detector == mode and pm.grid.stride == PATCH // 2
    assert pm.context == ("alone" if mode == "bc" else "window")
    assert row["patch_share"] == pytest.approx(pm.share_flagged(), abs=1e-4)
    assert row["regions"] == [r.as_dict() for r in pm.regions()]
    assert row["partly_generated"] == (bool(row["regions"]) and pm.share_flagged() < 0.5)
    mem = det.score(load_image(f), patches=True, stride=PATCH // 2)
    assert np.array_equal(mem["heatmap"].scores, pm.scores, equal_nan=True)
    with pytest.raises(ValueError, match="stride must divide"):
        det.score(f, patches=True, stride=5)


@pytest.mark.parametrize("mode", ["bc", "oc"])
def test_detect_heatmap_writes_one_overlay_and_grid_per_image_equal_to_the_api(mode, kit,
                                                                               tmp_path, capsys):
    from sdaie.heatmaps import load_patch_map

    args = (["--checkpoint", str(kit["bc"])] if mode == "bc" else ["--gmm", str(kit["gmm"])])
    out = tmp_path / "maps"
    rows = _detect_rows([str(kit["folder"]), *args, "--heatmap", str(out), "--stride", "8",
                         "--context", "image"], tmp_path / "rows.jsonl")
    err = capsys.readouterr().err
    assert "5 heatmaps (image, stride 8 px" in err
    assert ("no calibrated patch threshold" in err) == (mode == "oc")
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == [
        "img_0.png.heatmap.png", "img_2.png.heatmap.png", "img_4.png.heatmap.png",
        "sub/img_1.png.heatmap.png", "sub/img_3.png.heatmap.png"]
    det = (Detector.load(kit["bc"], device="cpu") if mode == "bc"
           else Detector.load(gmm=kit["gmm"], device="cpu"))
    for row in rows:
        if "error" in row:
            continue
        pm, meta = load_patch_map(row["heatmap_npz"])
        api = det.score(row["path"], patches=True, stride=8, context="image")
        assert np.array_equal(pm.scores, api["heatmap"].scores, equal_nan=True)
        assert meta["image"] == row["path"] and row["regions"] == api["regions"]
        assert Image.open(row["heatmap_png"]).format == "PNG"


def test_detect_heatmap_csv_and_option_errors(kit, tmp_path, capsys):
    base = [str(kit["files"][0]), "--checkpoint", str(kit["bc"]), "--no-progress"]
    assert detect([*base, "--heatmap", str(tmp_path / "m"), "--out", str(tmp_path / "r.csv")]) == 0
    header = (tmp_path / "r.csv").read_text().splitlines()[0].split(",")
    assert header == ["path", "p_fake", "label", "patches", "patch_share", "regions",
                      "partly_generated", "heatmap_png", "heatmap_npz", "seconds", "error"]
    assert detect([*base, "--heatmap", str(tmp_path / "m"), "--stride", "5"]) == 2
    assert "stride must divide the patch size 16" in capsys.readouterr().err
    assert detect([*base, "--stride", "8"]) == 2
    assert "add --heatmap DIR" in capsys.readouterr().err


def test_heatmap_of_a_perturbed_image_refers_to_the_image_as_scored(kit, tmp_path):
    from sdaie.heatmaps import load_patch_map

    det = Detector.load(kit["bc"], device="cpu", perturbation="resize=0.5")
    f = kit["files"][4]
    w, h = Image.open(f).size
    row = det.score(f, patches=True)
    assert row["p_fake"] == det.score(f)["p_fake"]
    assert (row["heatmap"].grid.width, row["heatmap"].grid.height) == (w // 2, h // 2)
    rows = _detect_rows([str(f), "--checkpoint", str(kit["bc"]), "--perturbation", "resize=0.5",
                         "--heatmap", str(tmp_path / "m")], tmp_path / "r.jsonl")
    pm, _ = load_patch_map(rows[0]["heatmap_npz"])
    assert np.array_equal(pm.scores, row["heatmap"].scores)
    assert Image.open(rows[0]["heatmap_png"]).size[0] == 240  # 32 px image, legend width


def test_detect_heatmap_finds_each_image_regions_once(kit, tmp_path, monkeypatch):
    from sdaie.heatmaps import PatchMap, load_patch_map

    calls = []
    regions = PatchMap.regions
    monkeypatch.setattr(PatchMap, "regions", lambda pm, *a: calls.append(1) or regions(pm, *a))
    rows = _detect_rows([str(kit["folder"]), "--checkpoint", str(kit["bc"]), "--heatmap",
                         str(tmp_path / "m"), "--stride", "8", "--min-region", "2"],
                        tmp_path / "rows.jsonl")
    ok = [r for r in rows if "error" not in r]
    assert ok and len(calls) == len(ok)
    for row in ok:  # the file's regions are the row's (min_region 2 kept)
        assert load_patch_map(row["heatmap_npz"])[1]["regions"] == row["regions"]
