"""The one training loop, for every training stage, in one process or under torchrun/DDP.

:func:`run_training` joins the process group, sets up logging, seeds, precision, and hands a
:class:`~sdaie.engine.task.RunContext` to the stage's :class:`~sdaie.engine.task.TrainingTask`,
which builds its model, optimiser and data. :class:`Trainer` then resumes if asked, wraps the
model in DDP, and runs the schedule: per step, batch to device -> forward (autocast) -> loss ->
backward -> optimiser step, with the step's figures summed on the device; per log interval,
one host read of those sums (over all ranks), the finiteness check and a ``train_log.csv`` row;
per checkpoint, an atomic ``<unit>_<n>.pt`` plus ``last.pt`` (rank 0), then the task's
validation into ``val_log.csv``; at the end ``summary.json``.

Resumed runs end with the weights of uninterrupted ones: the checkpoint holds the optimiser and
every RNG state, the tasks' data are functions of (seed, step or epoch), and neither validation
nor the creation of data-loader iterators draws from torch's global generator
(:func:`global_rng_untouched`), so the model is its only consumer.

Run controls (:mod:`sdaie.engine.runfolder`, :mod:`sdaie.engine.preemption`): before anything is
written, rank 0 decides whether the run starts, resumes (``--resume``, or by itself after a
torchrun restart of the same launch), clears the folder (``--overwrite``) or refuses a folder
that holds a run; every rank follows that decision. SIGTERM is checked at each step boundary:
the ranks agree on a step, save a checkpoint there (within an epoch too) and raise
:class:`~sdaie.engine.preemption.Preempted`. A checkpoint that cannot be written (full disk)
stops the run with :class:`~sdaie.engine.checkpointing.CheckpointWriteError`; ``last.pt`` still
points at the previous one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from sdaie.config import Config, to_dict
from sdaie.distributed import DistInfo, all_gather_objects, barrier, distributed
from sdaie.engine.checkpointing import (
    link_latest,
    resolve_resume,
    restore_training,
    rng_state,
    write_error,
)
from sdaie.engine.meter import DeviceMeter
from sdaie.engine.precision import Precision
from sdaie.engine.preemption import Preempted, StopRequest
from sdaie.engine.runfolder import (
    RunFolderError,
    Start,
    clear_run,
    decide_start,
    mark_launch,
    restart_count,
)
from sdaie.engine.runlog import CsvLog, SkipReporter, Timer, setup_logging, write_json
from sdaie.engine.task import Interval, RunContext, StepOutput, TrainingTask
from sdaie.runinfo import write_run_info
from sdaie.seeding import seed_all


def run_training(stage: str, cfg: Config, resume_arg: str | None,
                 build: Callable[[RunContext], TrainingTask], amp: str | bool = False,
                 tf32: bool | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Train the task ``build(run)`` under ``stage``'s name; returns what summary.json holds.

    ``resume_arg``: ``--resume`` (``"auto"`` or a path; None defers to ``run.resume``);
    ``overwrite``: ``--overwrite`` (clear a run already in ``run.out_dir``).
    """
    out = Path(cfg.run.out_dir)
    with distributed(cfg.run.device, cfg.run.dist_timeout_s) as info:
        choice = resume_arg if resume_arg is not None else (cfg.run.resume or None)
        start = agree_start(out, stage, choice, overwrite, info)
        log = setup_logging(out if info.is_main else None, info.is_main, stage)
        if start.restarted:
            log.info("torchrun restart %d of this launch: continuing its run", restart_count())
        timer = Timer()
        seed_all(cfg.run.seed)  # identical initial weights on every rank
        run = RunContext(stage, cfg, info, out, log, Precision(info.device, amp, tf32),
                         SkipReporter(out / "skipped.jsonl", info.is_main, log,
                                      resumed=start.resume is not None))
        stop = StopRequest(info.distributed)
        try:
            return Trainer(run, build(run), timer, stop).fit(start.resume)
        finally:
            stop.close()


def agree_start(out: Path, stage: str, resume: str | None, overwrite: bool,
                info: DistInfo) -> Start:
    """Rank 0's :func:`~sdaie.engine.runfolder.decide_start`, followed by every rank; the folder
    is cleared (``--overwrite``) and the launch recorded before any rank writes into it."""
    decision: Start | str = Start(None)
    if info.is_main:
        try:
            decision = decide_start(out, stage, resume, overwrite)
        except RunFolderError as exc:
            decision = str(exc)
    decision = all_gather_objects(decision)[0]
    if isinstance(decision, str):
        raise RunFolderError(decision)
    if info.is_main:
        if decision.overwrite:
            clear_run(out, stage)
        out.mkdir(parents=True, exist_ok=True)
        if not decision.restarted:  # a restart keeps its launch's marker (and its ``last``)
            mark_launch(out)
    barrier()
    return decision


def agree_resume(choice: str | None, ckpt_dir: Path, prefix: str, info: DistInfo) -> Path | None:
    """Rank 0's checkpoint for ``choice``, on every rank: on a network file system another node
    may list an older newest checkpoint, and ranks resuming from different steps would hang."""
    found: tuple[str | None, str | None] = (None, None)  # (path, error)
    if info.is_main:
        try:
            path = resolve_resume(choice, ckpt_dir, prefix)
            found = (str(path) if path is not None else None, None)
        except SystemExit as exc:  # an explicit path that does not exist
            found = (None, str(exc))
    path, error = all_gather_objects(found)[0]
    if error is not None:
        raise SystemExit(error)
    return Path(path) if path is not None else None


@contextmanager
def global_rng_untouched() -> Iterator[None]:
    """Run a block without changing torch's global CPU generator.

    Used for what happens between training steps: creating a DataLoader iterator (it draws its
    workers' base seed from that generator) and validation. An uninterrupted run does these at
    other points than a resumed one, so any draw they made would shift every later draw.
    """
    with torch.random.fork_rng(devices=[]):
        yield


class Trainer:
    """Runs one :class:`TrainingTask` to the end of its schedule."""

    def __init__(self, run: RunContext, task: TrainingTask, timer: Timer | None = None,
                 stop: StopRequest | None = None):
        self.run, self.task = run, task
        self.stop = stop or StopRequest()
        self.schedule = task.schedule
        self.timer = timer or Timer()
        self.ckpt_dir = run.out / "checkpoints"
        self.meter = DeviceMeter()
        self.skipped: list[dict] = []
        self.progress = 0
        self.last_validation: dict[str, Any] = {}
        self.tick = Timer()
        self.train_log: CsvLog | None = None
        self.val_log: CsvLog | None = None
        self.saved_step = -1  # the step of the newest checkpoint this process has seen saved

    def fit(self, resume: str | None = None) -> dict[str, Any]:
        """Resume if asked (``"auto"`` or a path), train to the end of the schedule; returns what
        summary.json holds."""
        run, task, schedule = self.run, self.task, self.schedule
        step, resumed = self._resume(resume)
        net = self._wrap(task.forward_module())
        env: dict[str, Any] = {}
        if run.info.is_main:
            env = write_run_info(run.out, run.cfg, stage=run.stage, world_size=run.info.world_size,
                                 resumed_from=str(resumed) if resumed else None, **task.run_facts())
        task.announce(self.progress)
        if run.info.is_main:
            self.train_log = CsvLog(run.out / "train_log.csv", truncate_after=step)
            self.val_log = CsvLog(run.out / "val_log.csv", truncate_after=self.progress,
                                  key=schedule.unit)
        task.model.train()
        self.stop.install()  # from here on SIGTERM means "checkpoint and stop"; before, it kills
        for r in range(schedule.rounds):
            if step < schedule.round_end(r):
                step = self._round(net, r, step)
        return self._finish(env)

    def _resume(self, resume: str | None) -> tuple[int, Path | None]:
        """(last step done, checkpoint resumed from); (0, None) for a fresh run. Sets the progress."""
        unit = self.schedule.unit
        path = agree_resume(resume, self.ckpt_dir, unit, self.run.info)
        if path is None:
            self.progress = 0
            return 0, None
        ckpt = self.task.read_checkpoint(path)
        self.task.check_resume(ckpt, str(path))
        restore_training(ckpt, self.task.model, self.task.optimizer, str(path))
        self._restore_precision(ckpt.get("precision"), path)
        self.progress = int(ckpt[unit])
        step = int(ckpt.get("global_step", self.schedule.start_step(self.progress)))
        where = (f"{self.schedule.resumed_phrase} {self.progress}" if step ==
                 self.schedule.start_step(self.progress) else f"at step {step}")
        self.run.log.info("resumed from %s %s", path, where)
        return step, path

    def _restore_precision(self, saved: dict[str, Any] | None, path: Path) -> None:
        """The fp16 loss scale; a warning when the run continues in another precision (with
        ``amp=auto`` a resume on another GPU generation switches between bf16 and fp16)."""
        precision = self.run.precision
        before = (saved or {}).get("mode")
        if before is not None and before != precision.mode and self.run.info.is_main:
            self.run.log.warning("%s was trained in %s; this run continues in %s (the weights will "
                                 "differ from an uninterrupted run)", path, before, precision.mode)
        precision.load_state_dict(saved)

    def _wrap(self, module: nn.Module) -> nn.Module:
        """DDP over the process group (gradients averaged in backward), then ``torch.compile``
        with ``run.compile``; the module alone otherwise. Checkpoints and validation use the
        bare module, so their keys and results do not depend on either."""
        info = self.run.info
        if info.distributed:
            module = DistributedDataParallel(
                module, device_ids=[info.device] if info.device.type == "cuda" else None)
        return torch.compile(module) if self.run.cfg.run.compile else module

    def _round(self, net: nn.Module, r: int, step: int) -> int:
        """Steps of round ``r`` after global step ``step``; returns the round's last step."""
        end = self.schedule.round_end(r)
        with global_rng_untouched():
            batches = iter(self.task.batches(r, step))
        self.tick = Timer()
        for batch in batches:
            if step == end:
                raise RuntimeError(f"round {r} yields more than its {self.schedule.round_steps} "
                                   "scheduled batches")
            step += 1
            self._step(net, batch)
            if self.schedule.log_due(step):
                self._log(step)
            if self.schedule.checkpoint_due(step):
                self._checkpoint(step)
            if self.stop.due() and step < self.schedule.total_steps:
                self._stop(step)
        if step != end:
            raise RuntimeError(f"round {r} ended at step {step}, scheduled to end at {end}: the "
                               "data and the schedule disagree on the number of batches")
        return step

    def _step(self, net: nn.Module, batch: Sequence[Any]) -> None:
        """One optimiser step; nothing here waits for the device."""
        *tensors, skipped = batch
        device = self.run.info.device
        tensors = [t.to(device, non_blocking=True) for t in tensors]
        precision, optimizer = self.run.precision, self.task.optimizer
        with precision.autocast():
            outputs = self.task.forward(net, tensors)
        out = self.task.loss(outputs, tensors)
        optimizer.zero_grad(set_to_none=True)
        precision.backward(out.loss)
        precision.step(optimizer)
        self.meter.add(_logged(out))
        self.skipped += skipped

    def _log(self, step: int) -> None:
        steps = self.meter.steps
        interval = self._interval(step, steps, self.meter.collect())
        self.run.report_skipped(self.skipped)
        self.skipped = []
        self._require_finite(interval)
        if self.run.info.is_main:
            row, message = self.task.log_row(interval)
            self.train_log.append(row)
            self.run.log.info(message)
        self.tick = Timer()

    def _interval(self, step: int, steps: int, sums: dict[str, torch.Tensor]) -> Interval:
        weight = float(sums["weight"])
        mean = max(weight, 1.0)
        terms = {k.split("/", 1)[1]: float(v) / mean for k, v in sums.items() if k.startswith("term/")}
        counts = {k.split("/", 1)[1]: v for k, v in sums.items() if k.startswith("count/")}
        return Interval(step=step, round=self.schedule.round_of(step),
                        step_in_round=self.schedule.step_in_round(step), steps=steps,
                        world_size=self.run.info.world_size, seconds=self.tick.elapsed(),
                        elapsed=self.timer.elapsed(), loss=float(sums["loss"]) / mean,
                        terms=terms, counts=counts, weight=weight)

    def _require_finite(self, interval: Interval) -> None:
        values = {"loss": interval.loss, **interval.terms}
        if not all(math.isfinite(v) for v in values.values()):
            first = interval.step - interval.steps + 1
            raise FloatingPointError(f"non-finite {self.task.kind} loss in steps {first}..{interval.step} "
                                     f"(interval means): {values}")

    def _checkpoint(self, step: int) -> None:
        """Save (rank 0), then validate (every rank); never after a non-finite loss."""
        self._check_unlogged(step)
        progress = self.schedule.progress(step)
        if self.run.info.is_main:
            self._save(step, self.schedule.checkpoint_name(progress))
        with global_rng_untouched():
            row = self.task.validate(progress)
        if row is not None:
            self.last_validation = row
            if self.run.info.is_main:
                self.val_log.append({self.schedule.unit: progress, **row})
        barrier()
        self.progress = progress
        self.saved_step = step

    def _check_unlogged(self, step: int) -> None:
        """The finiteness check of the steps since the last log line (one host read)."""
        if self.meter.steps and not self.meter.all_finite():
            self._require_finite(self._interval(step, self.meter.steps, self.meter.collect()))

    def _stop(self, step: int) -> None:
        """Every rank agreed to stop after ``step``: log, checkpoint (no validation), raise."""
        if self.meter.steps:
            self._log(step)
        name = self.schedule.stop_checkpoint_name(step)
        if self.saved_step != step and self.run.info.is_main:
            self._save(step, name)
        barrier()
        path = self.ckpt_dir / (self.schedule.checkpoint_name(self.schedule.progress(step))
                                if self.saved_step == step else name)
        raise Preempted(str(path), f"step {step} of {self.schedule.total_steps}")

    def _save(self, step: int, name: str) -> None:
        """Checkpoint ``name`` and ``last.pt``; a failed write leaves ``last.pt`` as it was."""
        path, last = self.ckpt_dir / name, self.ckpt_dir / "last.pt"
        state = {"optimizer": self.task.optimizer.state_dict(),
                 self.schedule.unit: self.schedule.progress(step), "global_step": step,
                 **self.task.checkpoint_extra(self.schedule.progress(step)), "rng": rng_state(),
                 "precision": self.run.precision.state_dict()}
        try:
            self.task.write_checkpoint(path, self.run.cfg, state)
            link_latest(path, last)
        except OSError as exc:
            raise write_error(exc, path, last) from exc

    def _finish(self, env: dict[str, Any]) -> dict[str, Any]:
        run, unit = self.run, self.schedule.unit
        summary = {"stage": run.stage, f"{unit}s": self.progress, "world_size": run.info.world_size,
                   "checkpoint": str(self.ckpt_dir / "last.pt"),
                   **self.task.summary_facts(sorted(run.report_skipped.seen), self.last_validation),
                   "time_s": self.timer.elapsed(), "config": to_dict(run.cfg), "environment": env}
        if run.info.is_main:
            write_json(run.out / "summary.json", summary)
            run.log.info("done: %d %ss in %.1f s; checkpoint %s", self.progress, unit,
                         summary["time_s"], summary["checkpoint"])
        return summary


def _logged(out: StepOutput) -> dict[str, torch.Tensor]:
    """A step's figures for the meter: loss and terms times the step's weight, counts as they are."""
    w = out.weight
    values = {"loss": out.loss.detach().double() * w,
              "weight": out.loss.new_full((), float(w), dtype=torch.float64)}
    values.update({f"term/{k}": v.detach().double() * w for k, v in out.terms.items()})
    values.update({f"count/{k}": v for k, v in out.counts.items()})
    return values
