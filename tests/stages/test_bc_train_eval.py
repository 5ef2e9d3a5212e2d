import csv
import json

import pytest
import torch

from sdaie.models import load_checkpoint
from sdaie.stages import bc_train, common

from .conftest import TINY


def _train_args(world, ckpt, out, *extra):
    return ["--config", str(TINY / "bc_train.yaml"), f"binary.pretext_checkpoint={ckpt}",
            f"binary.train_root={world['bc_train']}", f"binary.val_root={world['bc_val']}",
            f"run.out_dir={out}", *extra]


def test_a_training_step_reads_nothing_back_to_the_host(tiny_world, pretext_ckpt, tmp_path, host_reads):
    import logging

    from sdaie.config import load_config
    from sdaie.distributed import DistInfo
    from sdaie.engine.precision import Precision
    from sdaie.engine.runlog import SkipReporter
    from sdaie.engine.task import RunContext

    cfg = load_config(TINY / "bc_train.yaml", _train_args(tiny_world, pretext_ckpt, tmp_path)[2:])
    log = logging.getLogger("test")
    task = bc_train.BinaryTask(RunContext("t", cfg, DistInfo(), tmp_path, log,
                                          Precision(torch.device("cpu")),
                                          SkipReporter(tmp_path / "s.jsonl", True, log)))
    *batch, _ = next(iter(task.batches(0, 0)))
    host_reads.clear()  # loading the batch may read CPU tensors; the step must not
    out = task.loss(task.forward(task.forward_module(), batch), batch)
    out.loss.backward()
    assert host_reads == [] and {"ce", "mse_f1", "mse_f5"} <= set(out.terms)
    assert out.weight == len(batch[1]) and out.counts["correct"].shape == ()


def test_train_checkpoints_each_epoch_and_resumes_exactly(tiny_world, pretext_ckpt, tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    assert bc_train.main(_train_args(tiny_world, pretext_ckpt, full, "binary.epochs=2")) == 0
    epochs = sorted(p.name for p in (full / "checkpoints").glob("epoch_*.pt"))
    assert epochs == ["epoch_001.pt", "epoch_002.pt"]
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


def test_resume_from_a_pretext_checkpoint_is_refused(tiny_world, pretext_ckpt, tmp_path):
    with pytest.raises(SystemExit, match="checkpoint error: .*pretext checkpoint; this run continues binary"):
        bc_train.main(_train_args(tiny_world, pretext_ckpt, tmp_path / "bc",
                                  f"--resume-from={pretext_ckpt}"))


def test_resume_with_another_batch_size_is_refused_by_name(tiny_world, pretext_ckpt, tmp_path):
    """The global step of the checkpoint would fall elsewhere in epochs of another length."""
    out = tmp_path / "bc"
    assert bc_train.main(_train_args(tiny_world, pretext_ckpt, out, "binary.epochs=1")) == 0
    with pytest.raises(SystemExit) as caught:
        bc_train.main(_train_args(tiny_world, pretext_ckpt, out, "binary.epochs=2",
                                  "binary.batch_size=4", "--resume"))
    message = str(caught.value)
    assert message.startswith("checkpoint error: ") and "\n" not in message
    assert "batch_size: checkpoint 8, now 4" in message and "steps_per_epoch" in message
    assert load_checkpoint(out / "checkpoints" / "last.pt")["epoch"] == 1  # nothing trained


def test_a_restart_on_another_node_is_not_refused_before_the_engine(tiny_world, pretext_ckpt,
                                                                      tmp_path, monkeypatch):
    """Without SLURM a launch is recognised by rank 0's torchrun agent, which other nodes are not:
    only rank 0 pre-checks the folder; the other ranks follow the engine's rank-0 decision."""
    out = tmp_path / "bc"
    (out / "checkpoints").mkdir(parents=True)
    (out / "train_log.csv").write_text("step\n1\n")  # the folder holds the run
    (out / "launch.json").write_text(json.dumps({"slurm_job": None, "rdzv_id": "job-a",
                                                 "agent": "node-0:4242"}))
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job-a")
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    ran = []
    monkeypatch.setattr(common, "run_stage", lambda prog, cfg, args, run: ran.append(prog) or 0)
    monkeypatch.setenv("RANK", "1")
    assert bc_train.main(_train_args(tiny_world, pretext_ckpt, out)) == 0 and len(ran) == 1
    monkeypatch.setenv("RANK", "0")  # rank 0 still checks (here: not its launch, so refused)
    with pytest.raises(SystemExit, match="already holds a run"):
        bc_train.main(_train_args(tiny_world, pretext_ckpt, out))
