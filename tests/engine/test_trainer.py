"""The training engine on its own, with a toy task: cadence, resume, host reads, non-finite losses.

The toy model has dropout, so the global torch RNG feeds every step: a resumed run equals an
uninterrupted one only if the engine restores that RNG and nothing else draws from it between
steps (data-loader iterators, validation).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from sdaie.atomic import atomic_torch_save
from sdaie.config import Config, RunConfig
from sdaie.data.loading import collate_skips
from sdaie.engine.schedule import Schedule
from sdaie.engine.task import StepOutput, TrainingTask
from sdaie.engine.trainer import run_training

N_ITEMS, BATCH = 12, 5


class ToyData(Dataset):
    """Item i: a fixed input and target; item 7 is 'unreadable' (reported, stood in for by 8)."""

    def __init__(self) -> None:
        gen = torch.Generator().manual_seed(0)
        self.x = torch.randn(N_ITEMS, 4, generator=gen)
        self.y = self.x.sum(1, keepdim=True)

    def __len__(self) -> int:
        return N_ITEMS

    def __getitem__(self, i: int):
        if i == 7:
            return self.x[8], self.y[8], [{"path": "item7", "reason": "broken"}]
        return self.x[i], self.y[i], []


class ToyTask(TrainingTask):
    kind = "toy"

    def __init__(self, run, schedule: Schedule, log: list | None = None, nan_at: int | None = None):
        self.run, self.schedule, self.events, self.nan_at = run, schedule, log, nan_at
        self.model = nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.5), nn.Linear(16, 1))
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=0.01)
        self.data, self.steps_done = ToyData(), 0
        self.per_step: list[tuple[float, int]] = []  # (loss, batch size) read back by the test only

    def batches(self, round_index: int, start_step: int):
        if self.schedule.unit == "step":  # a pure function of the step, like the pair sampler
            order = [[(s * BATCH + k) % N_ITEMS for k in range(BATCH)]
                     for s in range(start_step, self.schedule.round_steps)]
        else:  # a seeded permutation per epoch, like DistributedSampler
            perm = torch.randperm(N_ITEMS, generator=torch.Generator().manual_seed(round_index)).tolist()
            order = [perm[i:i + BATCH] for i in range(0, N_ITEMS, BATCH)]
        return DataLoader(self.data, batch_sampler=order, collate_fn=collate_skips)

    def forward(self, net, batch):
        self.steps_done += 1
        if self.events is not None:
            self.events.append("step")
        return net(batch[0])

    def loss(self, outputs, batch):
        mse = F.mse_loss(outputs, batch[1])
        if self.steps_done == self.nan_at:
            mse = mse * float("nan")
        if self.events is None:
            self.per_step.append((mse.item(), batch[1].shape[0]))
        return StepOutput(mse, {"mse": mse}, {"big": (outputs.detach() > 0).sum()},
                          weight=batch[1].shape[0])

    def log_row(self, iv):
        return ({"step": iv.step, "round": iv.round, "loss": iv.loss, "mse": iv.terms["mse"],
                 "big": float(iv.counts["big"]), "weight": iv.weight},
                f"toy step {iv.step} loss {iv.loss:.4f}")

    def check_resume(self, ckpt, source):
        pass

    def checkpoint_extra(self, progress):
        return {"toy": progress}

    def validate(self, progress):
        if self.events is not None:
            return None
        path = self.run.out / "checkpoints" / self.schedule.checkpoint_name(progress)
        assert path.is_file()  # saved before validating
        torch.rand(3)  # e.g. random patches drawn from the global RNG
        for _ in DataLoader(self.data, batch_size=4, collate_fn=collate_skips):
            pass  # an iterator draws its base seed from the global RNG too
        return {"saved": path.name}

    def summary_facts(self, skipped, last_validation):
        return {"skipped_items": skipped, "last_validation": last_validation}

    def write_checkpoint(self, path, cfg, state):
        atomic_torch_save({"state_dict": self.model.state_dict(), **state}, path)

    def read_checkpoint(self, path):
        return torch.load(path, weights_only=True)


def _train(out: Path, schedule: Schedule, resume: str | None = None, **kw):
    cfg = Config(run=RunConfig(out_dir=str(out), device="cpu", seed=3))
    tasks = []

    def build(run):
        tasks.append(ToyTask(run, schedule, **kw))
        return tasks[0]
    return run_training("toy_train", cfg, resume, build), tasks[0]


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


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


def _state(path: Path) -> dict[str, torch.Tensor]:
    ckpt = torch.load(path, weights_only=True)
    flat = {f"model.{k}": v for k, v in ckpt["state_dict"].items()}
    for pid, st in ckpt["optimizer"]["state"].items():
        flat.update({f"adam.{pid}.{k}": torch.as_tensor(v) for k, v in st.items()})
    flat["rng.torch"] = ckpt["rng"]["torch"]
    return flat


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
