"""Runs that survive preemption, through real processes: a second start into a run folder is
refused; a torchrun worker group that loses a rank (SIGKILL) is restarted and resumes by itself;
a checkpoint write on a full file system stops with a clear error and keeps ``last.pt``.

Everything is the tiny config on a synthetic camera world, on CPU, one thread per process, so
the interrupted runs end bit for bit where the uninterrupted ones do.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from .conftest import PYTHON, REPO, TINY_BACKBONE, subprocess_env

SLOW = Path(__file__).with_name("_slow_train.py")
# ``sdaie ARGS`` in a fresh interpreter; prints whether torch got imported and the exit status
PROBE = ("import sys; from sdaie.cli import main\ntry:\n    code = main(sys.argv[1:])\n"
         "except SystemExit as exc:\n    code = exc.code\n"
         "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', code)")
STEPS, EVERY = 9, 3


def _args(index_dir: Path, out: Path, *extra: str) -> list[str]:
    return ["--config", str(TINY_BACKBONE), f"data.index={index_dir}", f"run.out_dir={out}",
            f"pretext.steps={STEPS}", f"pretext.ckpt_every={EVERY}", "pretext.log_every=1",
            "pretext.batch_size=4", "data.workers=0", *extra]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _weights(run: Path) -> dict[str, torch.Tensor]:
    ckpt = torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    flat = {f"model.{k}": v for k, v in ckpt["state_dict"].items()}
    for pid, state in ckpt["optimizer"]["state"].items():
        flat.update({f"adam.{pid}.{k}": torch.as_tensor(v) for k, v in state.items()})
    return flat


def _logged_steps(out: Path) -> list[int]:
    path = out / "train_log.csv"
    if not path.exists():
        return []
    lines = path.read_text().splitlines()[1:]
    return [int(line.split(",")[0]) for line in lines if line]


@pytest.mark.slow
def test_a_second_start_into_a_run_folder_is_refused_with_one_line(index_dir, tmp_path):
    """The issue's case: a 20-step run, then a 5-step run into the same folder without --resume."""
    from sdaie.stages import backbone_train

    out = tmp_path / "run"
    assert backbone_train.main(_args(index_dir, out, "pretext.steps=4", "pretext.ckpt_every=2")) == 0
    before = _snapshot(out)
    proc = subprocess.run([PYTHON, "-c", PROBE, "backbone-train",
                           *_args(index_dir, out, "pretext.steps=2")], cwd=tmp_path,
                          env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert proc.stdout.split() == ["NO-TORCH", "2"]  # refused before torch was even loaded
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "already holds a run" in lines[0], proc.stderr
    assert "--resume" in lines[0] and "--overwrite" in lines[0]
    assert _snapshot(out) == before  # last.pt byte-identical, and nothing else changed either
    proc = subprocess.run([PYTHON, str(REPO / "backbone_train.py"),
                           *_args(index_dir, out, "pretext.steps=2")], cwd=tmp_path,
                          env=subprocess_env(), capture_output=True, text=True, timeout=300)
    script = proc.stderr.strip().splitlines()  # the script too (named by its own program name)
    assert proc.returncode != 0 and [line.split(": ", 1)[1] for line in script] == [
        line.split(": ", 1)[1] for line in lines]
    assert _snapshot(out) == before


def _wait(predicate, timeout: float, what: str, *procs: subprocess.Popen) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        for proc in procs:
            if proc.poll() is not None:
                raise AssertionError(f"exited ({proc.returncode}) before {what}: "
                                     f"{proc.stdout.read()[-3000:]}")
        if time.monotonic() > end:
            for proc in procs:
                proc.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _torchrun(index_dir: Path, out: Path, delay: float, pids: Path) -> subprocess.Popen:
    env = {**subprocess_env(), "SDAIE_TEST_PID_DIR": str(pids)}
    pids.mkdir()
    return subprocess.Popen([PYTHON, "-m", "torch.distributed.run", "--standalone",
                             "--nproc_per_node=2", "--max-restarts=1", str(SLOW), str(delay),
                             *_args(index_dir, out)], cwd=out.parent, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_torchrun_restarts_a_killed_rank_and_the_group_resumes_to_the_same_weights(
        index_dir, tmp_path):
    """2 CPU ranks on gloo under ``torchrun --max-restarts=1``; rank 1 is killed with SIGKILL
    after the first checkpoint. The restarted group resumes from it by itself (no --resume on
    the command line) and ends with the weights of an uninterrupted 2-rank run."""
    full, part = tmp_path / "full", tmp_path / "part"
    reference = _torchrun(index_dir, full, 0.0, tmp_path / "pids_full")
    job = _torchrun(index_dir, part, 0.3, tmp_path / "pids_part")
    pids = tmp_path / "pids_part"
    _wait(lambda: (part / "checkpoints" / f"step_{EVERY:08d}.pt").exists()
          and max(_logged_steps(part), default=0) > EVERY, 240, "a step after the first checkpoint",
          job)
    os.kill(int((pids / "rank1.attempt0").read_text()), signal.SIGKILL)
    job_out, _ = job.communicate(timeout=300)
    ref_out, _ = reference.communicate(timeout=300)
    assert reference.returncode == 0, ref_out[-3000:]
    assert job.returncode == 0, job_out[-3000:]
    assert (pids / "rank1.attempt1").exists()  # torchrun did restart the worker group

    log = (part / "backbone_train.log").read_text()
    assert "torchrun restart 1 of this launch" in log and "resumed from" in log
    a, b = _weights(full), _weights(part)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert _logged_steps(part) == list(range(1, STEPS + 1))  # each step once in the log


def _user_namespace_tmpfs(probe: Path) -> bool:
    """Whether this machine lets an unprivileged user namespace mount a small tmpfs."""
    if shutil.which("unshare") is None:
        return False
    probe.mkdir()
    try:
        return subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                               f"mount -t tmpfs -o size=64k tmpfs '{probe}'"],
                              capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.mark.slow
def test_a_full_file_system_during_a_checkpoint_keeps_last_pt_and_says_so(index_dir, tmp_path):
    """A real full disk: the run folder is a 1.2 MB tmpfs (a tiny checkpoint is about 0.7 MB),
    mounted in a user namespace, so the second checkpoint cannot be written."""
    if not _user_namespace_tmpfs(tmp_path / "probe"):
        pytest.skip("no user namespaces with tmpfs mounts here (unshare --user --mount)")
    out, copy = tmp_path / "run", tmp_path / "copy"
    out.mkdir()
    copy.mkdir()
    train = " ".join(f"'{a}'" for a in [PYTHON, str(SLOW), "0", *_args(index_dir, out)])
    script = (f"mount -t tmpfs -o size=1200k tmpfs '{out}' || exit 99; {train}; rc=$?; "
              f"cp -a '{out}/.' '{copy}/'; exit $rc")
    proc = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
                          cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 1, proc.stderr[-3000:]
    last_line = proc.stderr.strip().splitlines()[-1]
    assert last_line.startswith(f"could not write checkpoint {out}/checkpoints/step_00000006.pt: "
                                "No space left on device"), proc.stderr[-3000:]
    assert "last.pt -> step_00000003.pt is intact" in last_line and "--resume" in last_line
    assert sorted(os.listdir(copy / "checkpoints")) == ["last.pt", "step_00000003.pt"]
    saved = torch.load(copy / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    assert saved["step"] == EVERY  # complete, loadable, the previous checkpoint
