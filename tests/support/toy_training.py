"""A toy training task for the engine's tests: a dropout MLP, so the global RNG feeds every step.

A resumed run equals an uninterrupted one only if the engine restores that RNG and nothing else
draws from it between steps (data-loader iterators, validation). ``signal_at`` sends this
process SIGTERM during that step, as a scheduler would.
"""

from __future__ import annotations

import csv
import os
import signal
from pathlib import Path

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

    def __init__(self, run, schedule: Schedule, log: list | None = None, nan_at: int | None = None,
                 signal_at: int | None = None):
        self.run, self.schedule, self.events, self.nan_at = run, schedule, log, nan_at
        self.signal_at = signal_at
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
            order = order[start_step - round_index * self.schedule.round_steps:]  # within an epoch
        return DataLoader(self.data, batch_sampler=order, collate_fn=collate_skips)

    def forward(self, net, batch):
        self.steps_done += 1
        if self.steps_done == self.signal_at:
            os.kill(os.getpid(), signal.SIGTERM)
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


def train_toy(out: Path, schedule: Schedule, resume: str | None = None, overwrite: bool = False,
              amp: str | bool = False, compile: bool = False, **kw):
    """(summary, task) of a toy run into ``out``; ``kw`` go to :class:`ToyTask`."""
    cfg = Config(run=RunConfig(out_dir=str(out), device="cpu", seed=3, compile=compile))
    tasks = []

    def build(run):
        tasks.append(ToyTask(run, schedule, **kw))
        return tasks[0]
    return run_training("toy_train", cfg, resume, build, amp=amp, overwrite=overwrite), tasks[0]


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def toy_state(path: Path) -> dict[str, torch.Tensor]:
    ckpt = torch.load(path, weights_only=True)
    flat = {f"model.{k}": v for k, v in ckpt["state_dict"].items()}
    for pid, st in ckpt["optimizer"]["state"].items():
        flat.update({f"adam.{pid}.{k}": torch.as_tensor(v) for k, v in st.items()})
    flat["rng.torch"] = ckpt["rng"]["torch"]
    return flat


