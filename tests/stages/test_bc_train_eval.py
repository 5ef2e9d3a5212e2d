import csv
import json

import numpy as np
import pytest
import torch

from sdaie.config import load_config
from sdaie.models import load_binary_detector, load_checkpoint
from sdaie.stages import bc_eval, bc_train

from .conftest import TINY


def _train_args(world, ckpt, out, *extra):
    return ["--config", str(TINY / "bc_train.yaml"), f"binary.pretext_checkpoint={ckpt}",
            f"binary.train_root={world['bc_train']}", f"binary.val_root={world['bc_val']}",
            f"run.out_dir={out}", *extra]


def test_train_checkpoints_each_epoch_and_resumes_exactly(tiny_world, pretext_ckpt, tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    assert bc_train.main(_train_args(tiny_world, pretext_ckpt, full, "binary.epochs=2")) == 0
    assert sorted(p.name for p in (full / "checkpoints").glob("epoch_*.pt")) == ["epoch_001.pt", "epoch_002.pt"]
    ckpt = load_checkpoint(full / "checkpoints" / "last.pt")
    assert ckpt["kind"] == "binary" and ckpt["epoch"] == 2 and "optimizer" in ckpt
    # the frozen copy still holds the pretext weights; the trainable copy moved
    pre = load_checkpoint(pretext_ckpt)["state_dict"]
    sd = ckpt["state_dict"]
    key = next(k for k in pre if k.startswith("backbone.") and k.endswith("weight"))
    rest = key[len("backbone."):]
    assert torch.equal(sd[f"frozen.{rest}"], pre[key])
    assert not torch.equal(sd[f"trainable.{rest}"], pre[key])

    rows = list(csv.DictReader(open(full / "train_log.csv")))
    assert {"loss", "ce", "mse_f1", "mse_f5", "train_acc"} <= set(rows[0])
    val = list(csv.DictReader(open(full / "val_log.csv")))
    assert [r["epoch"] for r in val] == ["1", "2"]
    assert "val_random_patches_acc" in val[0] and "val_random_patches_ap_fake_pos" in val[0]

    bc_train.main(_train_args(tiny_world, pretext_ckpt, part, "binary.epochs=1"))
    bc_train.main(_train_args(tiny_world, pretext_ckpt, part, "binary.epochs=2", "run.resume=auto"))
    a = load_checkpoint(part / "checkpoints" / "last.pt")["state_dict"]
    assert all(torch.equal(a[k], sd[k]) for k in sd)


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
    from PIL import Image

    from sdaie.data.patches import grid_patches

    det = load_binary_detector(ckpt)
    with torch.no_grad():
        logits = det(grid_patches(Image.open(str(z["paths"][0])).convert("RGB"), size=32, cap=256)[None])
    assert z["scores"][0] == pytest.approx(1 - torch.softmax(logits, 1)[0, 0].item(), abs=1e-5)
    pred = z["scores"] > 0.5
    assert float(rows[0]["acc"]) == pytest.approx(np.mean(pred == (z["labels"] == 1)), abs=1e-6)
    wild = json.loads((out / "wild_unlabelled.json").read_text())
    assert wild["clean"]["wild/oc_real"]["n"] == 12


def test_resume_from_a_pretext_checkpoint_is_refused(tiny_world, pretext_ckpt, tmp_path):
    with pytest.raises(SystemExit, match="checkpoint error: .*pretext checkpoint; this run continues binary"):
        bc_train.main(_train_args(tiny_world, pretext_ckpt, tmp_path / "bc",
                                  f"--resume-from={pretext_ckpt}"))


def test_eval_with_no_usable_image_fails_with_the_reason(pretext_ckpt, tmp_path):
    from sdaie.models import binary_from_pretext, save_checkpoint

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
