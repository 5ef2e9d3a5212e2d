"""bc_eval: tables per perturbation, wild folders, saved scores against an independent forward."""

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from sdaie.config import load_config
from sdaie.data.patches import grid_patches
from sdaie.models import binary_from_pretext, load_binary_detector, save_checkpoint
from sdaie.stages import bc_eval, bc_train

from .conftest import TINY


def _train_args(world, ckpt, out, *extra):
    return ["--config", str(TINY / "bc_train.yaml"), f"binary.pretext_checkpoint={ckpt}",
            f"binary.train_root={world['bc_train']}", f"binary.val_root={world['bc_val']}",
            f"run.out_dir={out}", *extra]


def test_eval_tables_perturbations_and_wild_folders(tiny_world, pretext_ckpt, tmp_path):
    bc_train.main(_train_args(tiny_world, pretext_ckpt, tmp_path / "bc", "binary.epochs=1"))
    ckpt = tmp_path / "bc" / "checkpoints" / "last.pt"
    out = tmp_path / "eval"
    wild_labelled = tiny_world["bc_val"]
    wild_plain = tiny_world["oc_train"]
    assert bc_eval.main(["--config", str(TINY / "bc_eval.yaml"), f"eval.checkpoint={ckpt}",
                         f"eval.test_root={tiny_world['tests']}", f"run.out_dir={out}",
                         "eval.sets=[stylegan,progan]", "eval.perturbations=[blur=1.0,resize=0.5]",
                         f"eval.wild_dirs=[{wild_labelled},{wild_plain}]"]) == 0
    rows = list(csv.DictReader(open(out / "bc_metrics.csv")))
    sets = ["progan", "stylegan", "wild/bc_val", "average"]
    assert [(r["perturbation"], r["set"]) for r in rows] == [
        (p, s) for p in ("clean", "blur=1", "resize=0.5") for s in sets]
    assert "AP (fake+), official" in (out / "bc_metrics.md").read_text()
    # p(fake) recomputed independently for one image equals the saved score
    z = np.load(out / "scores" / "clean" / "progan.npz")
    det = load_binary_detector(ckpt)
    with torch.no_grad():
        logits = det(grid_patches(Image.open(str(z["paths"][0])).convert("RGB"), size=32, cap=256)[None])
    assert z["scores"][0] == pytest.approx(1 - torch.softmax(logits, 1)[0, 0].item(), abs=1e-5)
    pred = z["scores"] > 0.5
    assert float(rows[0]["acc"]) == pytest.approx(np.mean(pred == (z["labels"] == 1)), abs=1e-6)
    wild = json.loads((out / "wild_unlabelled.json").read_text())
    assert wild["clean"]["wild/oc_real"]["n"] == 12


def test_localisation_tables_beside_the_detection_tables(pretext_ckpt, spliced_root, tmp_path):
    ckpt = tmp_path / "bc.pt"
    save_checkpoint(ckpt, "binary", binary_from_pretext(pretext_ckpt),
                    load_config(TINY / "bc_eval.yaml"))
    out = tmp_path / "eval"
    assert bc_eval.main(["--config", str(TINY / "bc_eval.yaml"), f"eval.checkpoint={ckpt}",
                         f"eval.test_root={spliced_root / 'images'}", f"run.out_dir={out}",
                         f"localisation.root={spliced_root}", "localisation.contexts=[alone]",
                         "localisation.sets=[upconv]"]) == 0
    rows = list(csv.DictReader(open(out / "bc_localisation.csv")))
    assert [(r["context"], r["set"]) for r in rows] == [("alone", "upconv")]
    detection = {r["set"]: r for r in csv.DictReader(open(out / "bc_metrics.csv"))}
    # the image-level figure of the spliced set equals the detection table's on the same images
    assert float(rows[0]["image_auc"]) == pytest.approx(float(detection["upconv"]["roc_auc"]))
    assert "patch thresholds: alone 0.5" in (out / "bc_localisation.md").read_text()


def test_eval_with_no_usable_image_fails_with_the_reason(pretext_ckpt, tmp_path):
    ckpt = tmp_path / "bc.pt"
    detector = binary_from_pretext(pretext_ckpt)
    save_checkpoint(ckpt, "binary", detector, load_config(TINY / "bc_eval.yaml"))
    for kind in ("0_real", "1_fake"):
        (tmp_path / "tests" / "progan" / kind).mkdir(parents=True)
        (tmp_path / "tests" / "progan" / kind / "broken.jpg").write_bytes(b"<html>404</html>")
    with pytest.raises(SystemExit, match="no usable test image"):
        bc_eval.main(["--config", str(TINY / "bc_eval.yaml"), f"eval.checkpoint={ckpt}",
                      f"eval.test_root={tmp_path / 'tests'}", f"run.out_dir={tmp_path / 'eval'}"])
    assert "broken.jpg" in (tmp_path / "eval" / "skipped.jsonl").read_text()
