import csv
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from sdaie.engine.validation import validate_heldout
from sdaie.models import load_checkpoint
from sdaie.stages import backbone_train

from .conftest import REPO, TINY


def _args(world, out, *extra):
    return ["--config", str(TINY / "backbone.yaml"), f"data.index={world['index']}",
            f"run.out_dir={out}", *extra]


def _weights(path):
    return load_checkpoint(path)["state_dict"]


def test_writes_checkpoints_logs_and_validation(tiny_world, tmp_path):
    out = tmp_path / "bb"
    assert backbone_train.main(_args(tiny_world, out, "pretext.steps=6", "pretext.ckpt_every=4",
                                     "pretext.log_every=2", "data.val_fraction=0.25")) == 0
    ckpts = sorted(p.name for p in (out / "checkpoints").glob("step_*.pt"))
    assert ckpts == ["step_00000004.pt", "step_00000006.pt"]  # every 4 steps and the end
    last = load_checkpoint(out / "checkpoints" / "last.pt")
    assert last["kind"] == "pretext" and last["step"] == 6
    assert {"optimizer", "sampler", "rng"} <= set(last) and last["sampler"]["step"] == 6
    rows = list(csv.DictReader(open(out / "train_log.csv")))
    assert [int(r["step"]) for r in rows] == [2, 4, 6]
    assert "Make_loss" in rows[0] and "ISOSpeedRatings_acc" in rows[0]
    assert all(float(r["loss"]) > 0 for r in rows)
    val = json.loads((out / "val_metrics.json").read_text())
    # each of the 3 held-out photos is scored once; a rank head sees its differently-labelled pairs
    make, iso = val["heads"]["Make"], val["heads"]["ISOSpeedRatings"]
    assert val["step"] == 6 and val["photos"] == 3 and make["count"] == 3
    assert make["baseline"] >= 1 / 3 and 1 <= iso["count"] <= 3 and iso["baseline"] == 0.5
    vrows = list(csv.DictReader(open(out / "val_log.csv")))
    assert [int(r["step"]) for r in vrows] == [4, 6] and "Make_baseline" in vrows[0]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 6 and summary["val_photos"] == 3
    assert (out / "config.yaml").exists() and (out / "environment.json").exists()


@pytest.mark.parametrize("workers", [0, 2])
def test_interrupted_and_resumed_run_ends_with_the_same_weights(tiny_world, tmp_path, workers):
    common = ["pretext.log_every=2", f"data.workers={workers}"]
    full, part = tmp_path / "full", tmp_path / "part"
    backbone_train.main(_args(tiny_world, full, "pretext.steps=6", "pretext.ckpt_every=3", *common))
    backbone_train.main(_args(tiny_world, part, "pretext.steps=3", "pretext.ckpt_every=3", *common))
    backbone_train.main(_args(tiny_world, part, "pretext.steps=6", "pretext.ckpt_every=3",
                              "--resume", *common))
    a, b = _weights(full / "checkpoints" / "last.pt"), _weights(part / "checkpoints" / "last.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # and the interruption mattered: the weights after 3 steps are different
    mid = _weights(part / "checkpoints" / "step_00000003.pt")
    assert not all(torch.equal(a[k], mid[k]) for k in a)


def test_unreadable_photo_is_skipped_and_reported(tiny_world, tmp_path):
    from sdaie.exif.index import main as index_main

    photos = tmp_path / "photos"
    shutil.copytree(tiny_world["photos"], photos)
    assert index_main([str(photos), "--out", str(tmp_path / "idx"), "--workers", "1", "--no-progress"]) == 0
    victim = sorted(photos.glob("*.jpg"))[0]
    victim.write_bytes(victim.read_bytes()[:40])  # truncated after indexing
    out = tmp_path / "bb"
    backbone_train.main(["--config", str(TINY / "backbone.yaml"), f"data.index={tmp_path / 'idx'}",
                         f"run.out_dir={out}", "pretext.steps=4", "pretext.log_every=2"])
    skipped = [json.loads(line) for line in open(out / "skipped.jsonl")]
    assert [s["path"] for s in skipped] == [str(victim)] and skipped[0]["reason"]
    assert json.loads((out / "summary.json").read_text())["skipped_photos"] == [str(victim)]
    # validation leaves the unreadable photo out of every figure and reports it
    from contextlib import nullcontext

    from sdaie.config import load_config
    from sdaie.data.pairs import PairDataset
    from sdaie.distributed import DistInfo
    from sdaie.exif.index import load_index
    from sdaie.models import load_pretext_model

    cfg = load_config(out / "config.yaml")
    data = PairDataset(load_index(tmp_path / "idx"), range(12), n_patches=cfg.data.patches,
                       patch_size=cfg.model.patch_size)
    figures, bad = validate_heldout(load_pretext_model(out / "checkpoints" / "last.pt"), data,
                                           cfg, DistInfo(), nullcontext)
    assert [b["path"] for b in bad] == [str(victim)] and figures["Make"]["count"] == 11


def test_a_training_step_reads_nothing_back_to_the_host(tiny_world, tmp_path, host_reads):
    """Forward and loss of a pretext step keep every figure on the device (the engine reads them
    once per log interval)."""
    import logging

    from sdaie.config import load_config
    from sdaie.distributed import DistInfo
    from sdaie.engine.precision import Precision
    from sdaie.engine.runlog import SkipReporter
    from sdaie.engine.task import RunContext

    cfg = load_config(TINY / "backbone.yaml", [f"data.index={tiny_world['index']}", "data.workers=0"])
    log = logging.getLogger("test")
    task = backbone_train.PretextTask(RunContext("t", cfg, DistInfo(), tmp_path, log,
                                                 Precision(torch.device("cpu")),
                                                 SkipReporter(tmp_path / "s.jsonl", True, log)))
    *batch, _ = next(iter(task.batches(0, 0)))
    host_reads.clear()  # loading the batch may read CPU tensors; the step must not
    out = task.loss(task.forward(task.model, batch), batch)
    out.loss.backward()
    assert host_reads == [] and set(out.terms) == {h.tag for h in cfg.schema.heads}
    assert out.counts["heads"].shape == (len(cfg.schema.heads), 2)


def test_missing_index_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="data.index is not set"):
        backbone_train.main(["--config", str(TINY / "backbone.yaml"), f"run.out_dir={tmp_path}"])


@pytest.mark.slow
def test_two_process_torchrun_on_cpu(tiny_world, tmp_path):
    """``torchrun --nproc_per_node=2 backbone_train.py`` with gloo, a handful of steps."""
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
           str(REPO / "backbone_train.py"),
           *_args(tiny_world, out, "pretext.steps=4", "pretext.ckpt_every=2", "pretext.log_every=2",
                  "data.val_fraction=0.25", "run.dist_timeout_s=60")]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 4
    assert load_checkpoint(out / "checkpoints" / "last.pt")["sampler"]["world_size"] == 2
    rows = list(csv.DictReader(open(out / "train_log.csv")))
    assert [int(r["step"]) for r in rows] == [2, 4]  # rank 0 alone writes the log
    assert "rank 1" not in (out / "backbone_train.log").read_text()
    # sharded validation + gather == the same checkpoint scored by one process
    from contextlib import nullcontext

    from sdaie.config import load_config
    from sdaie.data.pairs import PairDataset, split_by_photo
    from sdaie.distributed import DistInfo
    from sdaie.exif.index import load_index
    from sdaie.models import load_pretext_model

    cfg = load_config(out / "config.yaml")
    index = load_index(tiny_world["index"])
    _, val_ids = split_by_photo(len(index.records), 0.25, cfg.run.seed)
    data = PairDataset(index, val_ids, n_patches=cfg.data.patches, patch_size=cfg.model.patch_size)
    alone, _ = validate_heldout(load_pretext_model(out / "checkpoints" / "last.pt"), data, cfg,
                                       DistInfo(), nullcontext)
    ddp = json.loads((out / "val_metrics.json").read_text())["heads"]
    for name, figures in alone.items():
        assert ddp[name]["count"] == figures["count"]
        assert ddp[name]["accuracy"] == pytest.approx(figures["accuracy"], nan_ok=True)
