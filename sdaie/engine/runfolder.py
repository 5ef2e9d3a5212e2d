"""Whose run is in ``run.out_dir``: start, continue, refuse or clear, decided before anything is written.

A training stage started into a folder that already holds a run would otherwise replace its
``last.pt`` and interleave its logs with the old ones. The rules, in order:

1. A worker group restarted by ``torchrun --max-restarts`` (``TORCHELASTIC_RESTART_COUNT`` > 0)
   continues the run its first attempt started: it resumes from the run's latest checkpoint by
   itself (from the launch's ``--resume-from`` checkpoint while the run has saved none since).
   "Its" run is the one whose launch marker (``launch.json``, written at every first attempt) names the
   same launch: the scheduler's job id when there is one (``SLURM_JOB_ID``) with torchrun's
   rendezvous id, else the rendezvous id with the torchrun agent (host and process id).
2. An explicit ``--resume`` / ``--resume-from`` / ``run.resume`` continues as asked.
3. ``--overwrite`` deletes the files a training stage writes (checkpoints, logs, summaries) and
   starts afresh; other files in the folder are kept.
4. Otherwise a folder holding a run is refused with one line, and nothing in it changes.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sdaie.atomic import atomic_write_text

LAUNCH_FILE = "launch.json"
# What a training stage writes into run.out_dir (besides ``<stage>.log``): all of it is the run.
RUN_FILES = ("train_log.csv", "val_log.csv", "val_metrics.json", "skipped.jsonl", "summary.json",
             "config.yaml", "environment.json", LAUNCH_FILE)
TRACES = ("train_log.csv", "summary.json")  # any of these (or a checkpoint) means "holds a run"


class RunFolderError(RuntimeError):
    """A training stage refused to start into ``run.out_dir``."""


@dataclass(frozen=True)
class Start:
    """How a run starts: ``resume`` is ``None`` (fresh), ``"auto"`` or a checkpoint path."""

    resume: str | None
    overwrite: bool = False
    restarted: bool = False  # a torchrun restart continuing its own run


def restart_count(env: Mapping[str, str] | None = None) -> int:
    """Worker-group restarts so far under torchrun (0 for a first attempt or a plain process)."""
    env = os.environ if env is None else env
    try:
        return max(0, int(env.get("TORCHELASTIC_RESTART_COUNT", "0")))
    except ValueError:
        return 0


def launch_identity(env: Mapping[str, str] | None = None) -> dict[str, str | None]:
    """What stays the same across the restarts of one launch and differs between launches."""
    env = os.environ if env is None else env
    return {"slurm_job": env.get("SLURM_JOB_ID"), "rdzv_id": env.get("TORCHELASTIC_RUN_ID"),
            "agent": f"{socket.gethostname()}:{os.getppid()}"}


def same_launch(stored: Mapping[str, str | None], now: Mapping[str, str | None]) -> bool:
    """Scheduler job + rendezvous id when a scheduler job id is known, else rendezvous id + agent."""
    keys = ("slurm_job", "rdzv_id") if now.get("slurm_job") else ("rdzv_id", "agent")
    return all(stored.get(k) == now.get(k) for k in keys) and bool(now.get("rdzv_id"))


def held_run(out: Path, stage: str) -> str | None:
    """A short description of the run ``out`` holds (``None`` if it holds none)."""
    ckpts = out / "checkpoints"
    last = ckpts / "last.pt"
    if last.is_file():
        return "checkpoints/last.pt"
    if ckpts.is_dir() and any(ckpts.glob("*.pt")):
        return "checkpoints/*.pt"
    for name in (*TRACES, f"{stage}.log"):
        if (out / name).is_file():
            return name
    return None


def read_launch(out: Path) -> dict[str, str | None]:
    try:
        data = json.loads((out / LAUNCH_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def decide_start(out: Path, stage: str, resume: str | None, overwrite: bool,
                 env: Mapping[str, str] | None = None) -> Start:
    """The start of a run into ``out`` by the rules above; raises :class:`RunFolderError`."""
    stored = read_launch(out)
    if restart_count(env) > 0 and same_launch(stored, launch_identity(env)):
        return Start(restart_resume(out, resume, stored), restarted=True)
    if resume:
        return Start(resume)
    if overwrite:
        return Start(None, overwrite=True)
    held = held_run(out, stage)
    if held is not None:
        raise RunFolderError(
            f"run.out_dir {out} already holds a run ({held}): continue it with --resume, or "
            "start over with --overwrite (deletes its checkpoints and logs), or choose another "
            "run.out_dir")
    return Start(None)


def clear_run(out: Path, stage: str) -> None:
    """Delete what a training stage writes into ``out`` (for ``--overwrite``); keep anything else."""
    if (out / "checkpoints").is_dir():
        shutil.rmtree(out / "checkpoints")
    for name in (*RUN_FILES, f"{stage}.log"):
        (out / name).unlink(missing_ok=True)


def last_fingerprint(out: Path) -> str | None:
    """Identifies the file ``checkpoints/last.pt`` is now (a new checkpoint is a new file)."""
    try:
        st = (out / "checkpoints" / "last.pt").stat()
    except FileNotFoundError:
        return None
    return f"{st.st_ino}:{st.st_mtime_ns}:{st.st_size}"


def restart_resume(out: Path, resume: str | None, stored: Mapping[str, str | None]) -> str:
    """What a torchrun restart resumes from: the run's latest checkpoint, or the launch's
    ``--resume-from`` checkpoint while the run has written none since the launch (a launch marker
    without the ``last`` field, from an older version, keeps the launch's choice)."""
    if resume in (None, "", "auto"):
        return "auto"
    if "last" in stored and last_fingerprint(out) != stored["last"]:
        return "auto"
    return resume


def mark_launch(out: Path, env: Mapping[str, str] | None = None) -> None:
    """Record this launch, so that a torchrun restart of it recognises the run as its own, with
    the ``last.pt`` it started from, so that a restart can tell whether the run has saved since."""
    data = {**launch_identity(env), "last": last_fingerprint(out)}
    atomic_write_text(out / LAUNCH_FILE, json.dumps(data, indent=2) + "\n")
