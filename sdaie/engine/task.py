"""The contract between the training engine and a training stage.

A stage subclasses :class:`TrainingTask`: it builds its model, optimiser, data and
:class:`~sdaie.engine.schedule.Schedule` from a :class:`RunContext`, and supplies the batch ->
loss function and the rows it logs. The engine (:mod:`sdaie.engine.trainer`) owns everything
else: device, precision, DDP, the step, logging cadence, checkpoints, resume and the summary.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sdaie.config import Config
from sdaie.distributed import DistInfo
from sdaie.engine.precision import Precision
from sdaie.engine.runlog import SkipReporter
from sdaie.engine.schedule import Schedule
from sdaie.models.checkpoint import load_checkpoint, save_checkpoint


@dataclass
class RunContext:
    """Where a run executes and what it reports to; set up by the engine before the task exists."""

    stage: str  # names the log file and the ``stage`` field of summary.json
    cfg: Config
    info: DistInfo
    out: Path
    log: logging.Logger
    precision: Precision
    report_skipped: SkipReporter


@dataclass
class StepOutput:
    """What one training step of a task yields.

    ``terms`` (the loss's named parts) are checked for finiteness and logged as means weighted
    by ``weight`` (1: every step counts the same; the batch size: every image does); ``counts``
    are summed as they are (e.g. correct predictions). All stay on the device until logged.
    """

    loss: torch.Tensor
    terms: dict[str, torch.Tensor]
    counts: dict[str, torch.Tensor] = field(default_factory=dict)
    weight: int = 1


@dataclass
class Interval:
    """One log interval, summed over its steps and all ranks."""

    step: int  # global step at its end
    round: int  # 0-based epoch (0 for step-counted runs)
    step_in_round: int
    steps: int  # steps in the interval, per rank
    world_size: int
    seconds: float  # wall time of the interval
    elapsed: float  # wall time since the run started
    loss: float  # weighted mean
    terms: dict[str, float]  # weighted means
    counts: dict[str, torch.Tensor]
    weight: float  # total weight (e.g. images) over steps and ranks


class TrainingTask(ABC):
    """One training stage as the engine sees it; build everything in ``__init__(run)``."""

    kind: str  # checkpoint kind ("pretext", "binary")
    model: nn.Module  # the bare module that is checkpointed
    optimizer: torch.optim.Optimizer
    schedule: Schedule

    def forward_module(self) -> nn.Module:
        """The module the engine calls in :meth:`forward` (and wraps in DDP)."""
        return self.model

    @abstractmethod
    def batches(self, round_index: int, start_step: int) -> Iterable[Sequence[Any]]:
        """The round's batches from global step ``start_step`` on; each ends with the list of
        unreadable files met while loading it (:func:`sdaie.data.loading.collate_skips`)."""

    @abstractmethod
    def forward(self, net: nn.Module, batch: Sequence[torch.Tensor]) -> Any:
        """Model outputs for a batch already on the device (run under the engine's autocast)."""

    @abstractmethod
    def loss(self, outputs: Any, batch: Sequence[torch.Tensor]) -> StepOutput:
        """The loss and logged figures, in full precision and without reading values to the host."""

    @abstractmethod
    def log_row(self, interval: Interval) -> tuple[dict[str, Any], str]:
        """The train_log.csv row and the log line of an interval (rank 0 only)."""

    @abstractmethod
    def check_resume(self, ckpt: dict, source: str) -> None:
        """Refuse a checkpoint this run cannot continue (raises CheckpointError)."""

    def validate(self, progress: int) -> dict[str, Any] | None:
        """Called on every rank after each checkpoint; the val_log.csv row, or None."""
        return None

    def checkpoint_extra(self, progress: int) -> dict[str, Any]:
        """Stage-specific entries of a checkpoint, beside the engine's."""
        return {}

    def run_facts(self) -> dict[str, Any]:
        """Extra fields of environment.json."""
        return {}

    def announce(self, start: int) -> None:  # noqa: B027 (optional hook, empty by default)
        """Log what is about to run (rank 0 logs INFO)."""

    def summary_facts(self, skipped: list[str], last_validation: dict[str, Any]) -> dict[str, Any]:
        """Stage-specific fields of summary.json, given the unreadable files and last validation."""
        return {}

    def write_checkpoint(self, path: Path, cfg: Config, state: dict[str, Any]) -> None:
        """Save the model with ``state`` (optimiser, progress, RNG, ...) in this project's format."""
        save_checkpoint(path, self.kind, self.model, cfg, **state)

    def read_checkpoint(self, path: Path) -> dict[str, Any]:
        return load_checkpoint(path)
