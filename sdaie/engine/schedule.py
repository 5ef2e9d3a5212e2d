"""When a training run logs and checkpoints, for runs counted in steps and runs counted in epochs.

A run is a sequence of optimiser steps numbered 1, 2, ... across the whole run, grouped into
rounds: a step-counted run (pretext) is one round of ``total`` steps, an epoch-counted run
(binary) one round per epoch. The same rules then serve both: a log line every ``log_every``
steps of a round and at its end; a checkpoint every ``ckpt_every`` steps of a round (if set) and
at its end. A checkpoint records progress in the run's unit, which also names its file
(``step_00000400.pt``, ``epoch_003.pt``), so a resumed run knows where to continue; a stop
request may add a checkpoint after any step (``epoch_003_step_00001234.pt`` within an epoch),
which records the global step too.
"""

from __future__ import annotations

from dataclasses import dataclass

# unit -> (digits in checkpoint names, how the resume log line states the progress)
UNITS = {"step": (8, "at step"), "epoch": (3, "after epoch")}


@dataclass(frozen=True)
class Schedule:
    unit: str  # "step" or "epoch": the checkpoint's progress key and file prefix
    rounds: int
    round_steps: int  # optimiser steps per round
    log_every: int
    ckpt_every: int = 0  # steps within a round; 0 = at the end of each round only

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise ValueError(f"unit={self.unit!r}; valid: {sorted(UNITS)}")
        if self.log_every < 1 or self.ckpt_every < 0:
            raise ValueError(f"log_every must be >= 1 and ckpt_every >= 0, got {self.log_every}, "
                             f"{self.ckpt_every}")

    @classmethod
    def by_steps(cls, total: int, log_every: int, ckpt_every: int) -> Schedule:
        """One round of ``total`` steps, checkpointed every ``ckpt_every`` steps and at the end."""
        return cls("step", 1, total, log_every, ckpt_every)

    @classmethod
    def by_epochs(cls, epochs: int, steps_per_epoch: int, log_every: int) -> Schedule:
        """One round per epoch, checkpointed at the end of each."""
        return cls("epoch", epochs, steps_per_epoch, log_every)

    def start_step(self, progress: int) -> int:
        """The last step done by a run whose checkpoint recorded ``progress`` (0: a fresh run)."""
        return progress if self.unit == "step" else progress * self.round_steps

    def round_end(self, round_index: int) -> int:
        return (round_index + 1) * self.round_steps

    def round_of(self, step: int) -> int:
        """The round that step ``step`` (1-based) belongs to."""
        return (step - 1) // self.round_steps

    def step_in_round(self, step: int) -> int:
        return step - self.round_of(step) * self.round_steps

    def log_due(self, step: int) -> bool:
        return (self.step_in_round(step) % self.log_every == 0
                or step == self.round_end(self.round_of(step)))

    def checkpoint_due(self, step: int) -> bool:
        every = self.ckpt_every and self.step_in_round(step) % self.ckpt_every == 0
        return bool(every) or step == self.round_end(self.round_of(step))

    def progress(self, step: int) -> int:
        """What a checkpoint after step ``step`` records: steps, or epochs completed."""
        return step if self.unit == "step" else step // self.round_steps

    def checkpoint_name(self, progress: int) -> str:
        return f"{self.unit}_{progress:0{UNITS[self.unit][0]}d}.pt"

    def stop_checkpoint_name(self, step: int) -> str:
        """A checkpoint taken after any step (a stop request): the usual name for a step-counted
        run; ``epoch_<done>_step_<step>.pt`` within an epoch."""
        progress = self.progress(step)
        if self.unit == "step" or step == self.start_step(progress):
            return self.checkpoint_name(progress)
        return f"{self.checkpoint_name(progress)[:-3]}_step_{step:08d}.pt"

    @property
    def total_steps(self) -> int:
        return self.rounds * self.round_steps

    @property
    def resumed_phrase(self) -> str:
        return UNITS[self.unit][1]
