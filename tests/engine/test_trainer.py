"""The training engine on its own, with a toy task (tests/support/toy_training.py): cadence,
resume, host reads, non-finite losses.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from sdaie.engine.schedule import Schedule
from support.toy_training import rows as _rows
from support.toy_training import toy_state as _state
from support.toy_training import train_toy as _train


def test_step_schedule_logs_checkpoints_and_validates_on_cadence(tmp_path):
    summary, task = _train(tmp_path, Schedule.by_steps(7, log_every=2, ckpt_every=3))
    rows = _rows(tmp_path / "train_log.csv")
    assert [int(r["step"]) for r in rows] == [2, 4, 6, 7]  # every 2 steps and the end
    ckpts = sorted(p.name for p in (tmp_path / "checkpoints").glob("step_*.pt"))
    assert ckpts == ["step_00000003.pt", "step_00000006.pt", "step_00000007.pt"]
    last = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert last["step"] == 7 and last["toy"] == 7 and {"optimizer", "rng"} <= set(last)
    assert [(int(r["step"]), r["saved"]) for r in _rows(tmp_path / "val_log.csv")] == [
        (3, "step_00000003.pt"), (6, "step_00000006.pt"), (7, "step_00000007.pt")]
    assert summary["steps"] == 7 and summary["last_validation"] == {"saved": "step_00000007.pt"}
    # interval means weighted by batch size, against the losses the task saw one by one
    seen = task.per_step
    for row, (a, b) in zip(rows, [(0, 2), (2, 4), (4, 6), (6, 7)]):
        part = seen[a:b]
        mean = sum(v * n for v, n in part) / sum(n for _, n in part)
        assert float(row["mse"]) == pytest.approx(mean, rel=1e-5)
        assert float(row["weight"]) == sum(n for _, n in part)
    # item 7 is in the batches of steps 2 and 5: reported once, listed in the summary
    assert [json.loads(line)["path"] for line in open(tmp_path / "skipped.jsonl")] == ["item7"]
    assert summary["skipped_items"] == ["item7"]
    assert json.loads((tmp_path / "summary.json").read_text())["stage"] == "toy_train"


def test_epoch_schedule_logs_within_each_epoch_and_checkpoints_after_it(tmp_path):
    summary, _ = _train(tmp_path, Schedule.by_epochs(3, steps_per_epoch=3, log_every=2))
    rows = _rows(tmp_path / "train_log.csv")
    # 12 items in batches of 5: 3 steps per epoch, logged at its 2nd and last step
    assert [(int(r["round"]), int(r["step"])) for r in rows] == [
        (0, 2), (0, 3), (1, 5), (1, 6), (2, 8), (2, 9)]
    assert [float(r["weight"]) for r in rows] == [10, 2] * 3
    ckpts = sorted(p.name for p in (tmp_path / "checkpoints").glob("epoch_*.pt"))
    assert ckpts == ["epoch_001.pt", "epoch_002.pt", "epoch_003.pt"]
    assert torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 3
    assert [int(r["epoch"]) for r in _rows(tmp_path / "val_log.csv")] == [1, 2, 3]
    assert summary["epochs"] == 3


@pytest.mark.parametrize("full, first, unit", [
    (Schedule.by_steps(8, log_every=2, ckpt_every=3), Schedule.by_steps(3, 2, 3), "step"),
    (Schedule.by_epochs(3, 3, log_every=2), Schedule.by_epochs(1, 3, 2), "epoch"),
])
def test_resumed_run_ends_with_the_uninterrupted_weights_optimiser_and_rng(tmp_path, full, first, unit):
    a, b = tmp_path / "full", tmp_path / "part"
    _train(a, full)
    _train(b, first)
    _, resumed = _train(b, full, resume="auto")
    x, y = _state(a / "checkpoints" / "last.pt"), _state(b / "checkpoints" / "last.pt")
    assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)
    # the first part mattered, and the resumed log goes on with the uninterrupted figures
    at = 3 if unit == "step" else 1
    mid = _state(b / "checkpoints" / first.checkpoint_name(at))
    assert not torch.equal(mid["model.0.weight"], x["model.0.weight"])
    steps = [int(r["step"]) for r in _rows(b / "train_log.csv")]
    assert steps == sorted(set(steps))  # each step once
    later = [r for r in _rows(a / "train_log.csv") if int(r["step"]) > 4]  # whole intervals after it
    assert later and [r for r in _rows(b / "train_log.csv") if int(r["step"]) > 4] == later
    assert f"resumed from {b / 'checkpoints' / first.checkpoint_name(at)} {full.resumed_phrase} {at}" \
        in (b / "toy_train.log").read_text()


def test_resume_is_exact_only_because_loaders_and_validation_leave_the_rng_alone(tmp_path, monkeypatch):
    """Without the engine's guard the same resume drifts: the test above can fail."""
    import contextlib

    from sdaie.engine import trainer

    monkeypatch.setattr(trainer, "global_rng_untouched", contextlib.nullcontext)
    full, first = Schedule.by_steps(8, 2, 3), Schedule.by_steps(3, 2, 3)
    _train(tmp_path / "full", full)
    _train(tmp_path / "part", first)
    _train(tmp_path / "part", full, resume="auto")
    x, y = (_state(tmp_path / d / "checkpoints" / "last.pt") for d in ("full", "part"))
    assert not torch.equal(x["model.0.weight"], y["model.0.weight"])


def test_no_host_read_between_log_intervals(tmp_path, host_reads):
    _train(tmp_path, Schedule.by_steps(8, log_every=4, ckpt_every=8), log=host_reads)
    per_step, current = [], None
    for event in host_reads:
        if event == "step":
            current = []
            per_step.append(current)
        elif current is not None:
            current.append(event)
    assert len(per_step) == 8
    assert [i + 1 for i, reads in enumerate(per_step) if reads] == [4, 8]  # log steps only
    assert all(per_step[3]) and "cpu" in per_step[3]  # and the counter does see the log reads


def test_non_finite_loss_stops_the_run_at_the_log_interval(tmp_path):
    with pytest.raises(FloatingPointError, match=r"non-finite toy loss in steps 5\.\.6 .*'mse': nan"):
        _train(tmp_path, Schedule.by_steps(8, log_every=2, ckpt_every=2), nan_at=5)
    saved = sorted(p.name for p in (tmp_path / "checkpoints").glob("step_*.pt"))
    assert saved == ["step_00000002.pt", "step_00000004.pt"]  # nothing trained through the NaN
    assert [r["step"] for r in _rows(tmp_path / "train_log.csv")] == ["2", "4"]


def test_non_finite_loss_is_caught_before_a_checkpoint_between_log_lines(tmp_path):
    with pytest.raises(FloatingPointError, match=r"steps 5\.\.6 "):
        _train(tmp_path, Schedule.by_steps(8, log_every=4, ckpt_every=3), nan_at=5)
    saved = sorted(p.name for p in (tmp_path / "checkpoints").glob("step_*.pt"))
    assert saved == ["step_00000003.pt"]


def test_data_shorter_than_the_schedule_is_an_error(tmp_path):
    with pytest.raises(RuntimeError, match="data and the schedule disagree"):
        _train(tmp_path, Schedule.by_epochs(2, steps_per_epoch=4, log_every=2))


def test_resuming_a_finished_run_trains_nothing(tmp_path):
    schedule = Schedule.by_steps(4, 2, 2)
    _train(tmp_path, schedule)
    before = (tmp_path / "checkpoints" / "last.pt").read_bytes()
    summary, task = _train(tmp_path, schedule, resume="auto")
    assert task.steps_done == 0 and summary["steps"] == 4
    assert (tmp_path / "checkpoints" / "last.pt").read_bytes() == before
    assert math.isclose(len(_rows(tmp_path / "train_log.csv")), 2)
