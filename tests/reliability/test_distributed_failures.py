"""A failing rank stops a torchrun job within a timeout, with its error shown, instead of hanging.

Two CPU processes (gloo) run ``backbone_train`` through ``tests/reliability/_rank_fault.py``.
``raise``: rank 1 dies right after joining the group; torchrun stops rank 0 and exits non-zero.
``hang``: rank 1 stalls forever; rank 0's first collective fails after ``run.dist_timeout_s``,
and torchrun then stops the stalled rank.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from .conftest import PYTHON, TINY_BACKBONE, subprocess_env

HELPER = Path(__file__).with_name("_rank_fault.py")


def _torchrun(mode: str, index_dir: Path, out: Path,
             timeout_s: int) -> tuple[subprocess.CompletedProcess, float]:
    cmd = [PYTHON, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "--max-restarts=0", str(HELPER), mode, "1", "--config", str(TINY_BACKBONE),
           f"data.index={index_dir}", f"run.out_dir={out}", "pretext.steps=4",
           f"run.dist_timeout_s={timeout_s}"]
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=out.parent, env=subprocess_env(), capture_output=True,
                          text=True, timeout=300)
    return proc, time.monotonic() - start


@pytest.mark.slow
def test_a_rank_that_raises_stops_the_job(index_dir, tmp_path):
    proc, seconds = _torchrun("raise", index_dir, tmp_path / "run", timeout_s=30)
    assert proc.returncode != 0 and seconds < 60
    out = proc.stdout + proc.stderr
    assert "[rank1]" in out and "FileNotFoundError" in out and "/nonexistent/index" in out


@pytest.mark.slow
def test_a_stalled_rank_times_out_instead_of_hanging(index_dir, tmp_path):
    proc, seconds = _torchrun("hang", index_dir, tmp_path / "run", timeout_s=3)
    # The proof is the "Timed out" line below; the bound only separates "ended" from "hung" and is
    # loose because two ranks starting torch on a loaded 2-core machine take most of a minute.
    assert proc.returncode != 0 and seconds < 180
    out = proc.stdout + proc.stderr
    assert "Timed out" in out, out[-3000:]  # rank 0's collective gave up (run.dist_timeout_s)
    assert "rank      : 1" in out and "SIGTERM" in out  # and torchrun stopped the stalled rank


def test_training_stages_hand_dist_timeout_to_the_process_group(monkeypatch):
    """``run.dist_timeout_s`` reaches ``init_process_group`` (the value gloo/NCCL wait for)."""
    import ast
    from datetime import timedelta

    import torch.distributed as dist

    from sdaie import distributed as sd

    seen = {}
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda **kw: seen.update(kw))
    monkeypatch.setattr(sd, "attempt_store", lambda rank, world, timeout: f"store {timeout}")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    info = sd.init_distributed("cpu", timeout_s=17)
    assert seen["timeout"] == timedelta(seconds=17) and seen["backend"] == "gloo"
    assert seen["store"] == f"store {timedelta(seconds=17)}"  # the store's wait too
    assert (info.rank, info.world_size) == (1, 2)
    root = Path(__file__).resolve().parents[2] / "sdaie"

    def calls(path: Path, name: str) -> list[ast.Call]:
        return [n for n in ast.walk(ast.parse(path.read_text()))
                if isinstance(n, ast.Call) and getattr(n.func, "id", None) == name]

    engine = calls(root / "engine" / "trainer.py", "distributed")
    assert engine and all(ast.unparse(c.args[1]) == "cfg.run.dist_timeout_s" for c in engine)
    for stage in ("backbone_train.py", "bc_train.py"):  # both train through the engine, not alone
        assert calls(root / "stages" / stage, "run_training") and not calls(root / "stages" / stage,
                                                                            "distributed"), stage
