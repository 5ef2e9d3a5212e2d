"""Run controls of the engine, in process with the toy task: a run folder that holds a run is
refused (and left as it was) unless ``--resume`` / ``--overwrite``; a torchrun restart of the same
launch resumes by itself; SIGTERM checkpoints at the next step boundary (within an epoch too)
and ``--resume`` then ends with the uninterrupted weights; a checkpoint write that fails (full
disk) leaves ``last.pt`` as it was. The same behaviour through the real stage processes, under
torchrun and on a real full file system: ``tests/reliability/test_preemption.py``.
"""

from __future__ import annotations

import errno
import os
import signal

import pytest
import torch

from sdaie.distributed import DistInfo
from sdaie.engine import trainer
from sdaie.engine.checkpointing import CheckpointWriteError
from sdaie.engine.preemption import Preempted
from sdaie.engine.runfolder import LAUNCH_FILE, RunFolderError, Start, decide_start, mark_launch
from sdaie.engine.schedule import Schedule
from sdaie.engine.trainer import agree_resume
from support.toy_training import rows, toy_state, train_toy

STEPS = Schedule.by_steps(8, log_every=2, ckpt_every=3)
EPOCHS = Schedule.by_epochs(3, 3, log_every=2)  # 12 toy items in batches of 5: 3 steps per epoch


def _snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _same_weights(a, b) -> bool:
    x, y = toy_state(a / "checkpoints" / "last.pt"), toy_state(b / "checkpoints" / "last.pt")
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def test_a_folder_holding_a_run_is_refused_and_nothing_in_it_changes(tmp_path):
    train_toy(tmp_path, STEPS)
    before = _snapshot(tmp_path)
    with pytest.raises(RunFolderError) as caught:
        train_toy(tmp_path, Schedule.by_steps(2, 1, 1))
    message = str(caught.value)
    assert "\n" not in message and "already holds a run (checkpoints/last.pt)" in message
    assert "--resume" in message and "--overwrite" in message
    assert _snapshot(tmp_path) == before


def test_overwrite_starts_afresh_and_keeps_files_that_are_not_the_run(tmp_path):
    train_toy(tmp_path, STEPS)
    (tmp_path / "notes.txt").write_text("mine")
    train_toy(tmp_path, Schedule.by_steps(2, 1, 1), overwrite=True)
    ckpts = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert ckpts == ["last.pt", "step_00000001.pt", "step_00000002.pt"]  # no step_3/6/8 left
    assert [r["step"] for r in rows(tmp_path / "train_log.csv")] == ["1", "2"]
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)["step"] == 2


def test_a_torchrun_restart_of_the_same_launch_resumes_by_itself(tmp_path, monkeypatch):
    full, part = tmp_path / "full", tmp_path / "part"
    train_toy(full, STEPS)
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job-a")
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "0")
    train_toy(part, Schedule.by_steps(3, 2, 3))  # the first attempt, "killed" after step 3
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    summary, task = train_toy(part, STEPS)  # same command line: no --resume
    assert task.steps_done == 5 and summary["steps"] == 8 and _same_weights(full, part)
    log = (part / "toy_train.log").read_text()
    assert "torchrun restart 1 of this launch" in log and "resumed from" in log

    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job-b")  # another launch into that folder
    with pytest.raises(RunFolderError, match="--resume"):
        train_toy(part, STEPS)


@pytest.mark.parametrize("schedule, signal_at, name", [
    (STEPS, 4, "step_00000004.pt"),
    (EPOCHS, 5, "epoch_001_step_00000005.pt"),  # within the second epoch
])
def test_sigterm_checkpoints_at_the_next_step_and_resume_ends_with_the_same_weights(
        tmp_path, schedule, signal_at, name):
    full, part = tmp_path / "full", tmp_path / "part"
    train_toy(full, schedule)
    handler = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Preempted, match=f"stopped by SIGTERM after step {signal_at} of"):
        train_toy(part, schedule, signal_at=signal_at)
    assert signal.getsignal(signal.SIGTERM) is handler  # the stage's handler is gone again
    saved = torch.load(part / "checkpoints" / "last.pt", weights_only=True)
    assert os.path.samefile(part / "checkpoints" / "last.pt", part / "checkpoints" / name)
    assert saved["global_step"] == signal_at and "summary.json" not in os.listdir(part)
    assert rows(part / "train_log.csv")[-1]["step"] == str(signal_at)  # the partial interval

    summary, task = train_toy(part, schedule, resume="auto")
    assert task.steps_done == schedule.total_steps - signal_at and _same_weights(full, part)
    assert f"resumed from {part / 'checkpoints' / name} at step {signal_at}" in (
        part / "toy_train.log").read_text()


def test_fp16_with_a_gradient_scaler_resumes_exactly(tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    train_toy(full, STEPS, amp="fp16")
    train_toy(part, Schedule.by_steps(3, 2, 3), amp="fp16")
    train_toy(part, STEPS, resume="auto", amp="fp16")
    scale = torch.load(part / "checkpoints" / "last.pt", weights_only=True)["precision"]
    assert scale["mode"] == "fp16" and "scale" in scale["scaler"]
    assert _same_weights(full, part)


def test_a_full_disk_while_checkpointing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    real_save, calls = torch.save, []

    def save(obj, fh, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the second checkpoint: half written, then the disk is full
            fh.write(b"\0" * 1000)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, fh, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(CheckpointWriteError) as caught:
        train_toy(tmp_path, STEPS)
    message = str(caught.value)
    assert "No space left on device" in message and "--resume" in message
    assert "last.pt -> step_00000003.pt is intact" in message
    ckpts = sorted(os.listdir(tmp_path / "checkpoints"))
    assert ckpts == ["last.pt", "step_00000003.pt"]  # no partial file, no temporary left behind
    assert torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)["step"] == 3
    assert (tmp_path / LAUNCH_FILE).is_file()


CKPT3, CKPT6, CKPT8 = "step_00000003.pt", "step_00000006.pt", "step_00000008.pt"


def test_resume_continues_from_last_pt_not_from_an_abandoned_later_checkpoint(tmp_path):
    """``--resume-from step_3`` to step 6 abandons step 8; ``--resume`` then continues at 6."""
    ckpts = tmp_path / "checkpoints"
    train_toy(tmp_path, STEPS)
    train_toy(tmp_path, Schedule.by_steps(6, 2, 3), resume=str(ckpts / CKPT3))
    assert (ckpts / CKPT8).is_file()  # still there, newer by number than the run's step 6
    summary, task = train_toy(tmp_path, STEPS, resume="auto")
    assert task.steps_done == 2 and summary["steps"] == 8
    assert f"resumed from {ckpts / CKPT6} at step 6" in (tmp_path / "toy_train.log").read_text()


def test_a_torchrun_restart_of_a_resume_from_launch_keeps_what_it_saved_since(tmp_path, monkeypatch):
    source, run = tmp_path / "source", tmp_path / "run"
    train_toy(source, STEPS)
    x = str(source / "checkpoints" / CKPT3)
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job-a")
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "0")
    train_toy(run, Schedule.by_steps(6, 2, 3), resume=x)  # first attempt, "killed" after step 6
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    summary, task = train_toy(run, STEPS, resume=x)  # same command line
    assert task.steps_done == 2 and summary["steps"] == 8  # from its own step 6, not from x
    assert f"resumed from {run / 'checkpoints' / CKPT6}" in (run / "toy_train.log").read_text()


def test_a_restart_before_the_launch_saved_goes_back_to_its_resume_from(tmp_path):
    """Not to the folder's newest checkpoint, which belongs to the run the launch abandoned."""
    train_toy(tmp_path, STEPS)
    env = {"TORCHELASTIC_RUN_ID": "job-a", "TORCHELASTIC_RESTART_COUNT": "0"}
    x = str(tmp_path / "checkpoints" / CKPT3)
    mark_launch(tmp_path, env)  # what the launch wrote before it was killed
    restart = decide_start(tmp_path, "toy_train", x, False, {**env, "TORCHELASTIC_RESTART_COUNT": "1"})
    assert restart == Start(x, restarted=True)


def test_every_rank_resumes_from_the_checkpoint_rank_0_found(tmp_path, monkeypatch):
    """Another node may list an older newest checkpoint: ranks take rank 0's concrete path."""
    train_toy(tmp_path, STEPS)
    ckpts = tmp_path / "checkpoints"
    assert agree_resume("auto", ckpts, "step", DistInfo()) == ckpts / CKPT8
    assert agree_resume(None, ckpts, "step", DistInfo()) is None
    monkeypatch.setattr(trainer, "all_gather_objects", lambda mine: [(str(ckpts / CKPT8), None), mine])
    rank1 = DistInfo(rank=1, world_size=2)
    assert agree_resume("auto", tmp_path / "sees_nothing", "step", rank1) == ckpts / CKPT8
    monkeypatch.setattr(trainer, "all_gather_objects", lambda mine: [(None, "--resume: no x"), mine])
    with pytest.raises(SystemExit, match="no x"):
        agree_resume(str(ckpts / CKPT8), ckpts, "step", rank1)


def test_a_resumed_run_reports_each_unreadable_file_once(tmp_path):
    """Item 7 is met at steps 2, 4 and 7: before and after a stop at step 4."""
    full, part = tmp_path / "full", tmp_path / "part"
    train_toy(full, STEPS)
    with pytest.raises(Preempted):
        train_toy(part, STEPS, signal_at=4)
    summary, _ = train_toy(part, STEPS, resume="auto")
    assert summary["skipped_items"] == ["item7"]
    assert (part / "skipped.jsonl").read_text() == (full / "skipped.jsonl").read_text()
    assert len((part / "skipped.jsonl").read_text().splitlines()) == 1


def test_a_resume_in_another_precision_is_warned_about(tmp_path):
    train_toy(tmp_path, Schedule.by_steps(3, 2, 3))
    train_toy(tmp_path, STEPS, resume="auto", amp="fp16")
    log = (tmp_path / "toy_train.log").read_text()
    assert "WARNING" in log and "was trained in fp32; this run continues in fp16" in log
    train_toy(tmp_path, Schedule.by_steps(10, 2, 3), resume="auto", amp="fp16")
    assert (tmp_path / "toy_train.log").read_text().count("was trained in") == 1  # same mode: quiet
