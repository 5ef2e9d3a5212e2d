"""Section ``ddp``: a 2-rank torchrun run of 20 pretext steps (NCCL on 2 GPUs, gloo with
``--cpu``); afterwards every rank must hold the same parameters.

The ranks run ``sdaie backbone-train`` itself (this module as torchrun's entry point); an
optimiser-step hook keeps the optimiser, and after the run each rank writes the SHA-256 of its
parameters' bytes, its step count and its device to ``ddp/rank<r>.json``. Equal digests mean
DDP averaged the gradients and every rank applied the same updates, bit for bit.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from sdaie.cli import main as sdaie_main
from sdaie.exif.index import main as index_main
from sdaie.gpucheck.pipeline import TINY
from sdaie.gpucheck.plan import Plan
from sdaie.gpucheck.report import Section, skipped
from sdaie.synth import make_world


def worker_main(argv: list[str]) -> int:
    """One rank: ``sdaie backbone-train ARGV[1:]``, then its parameter digest into ``ARGV[0]``."""
    seen: dict[str, Any] = {"steps": 0}

    def keep(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        seen["optimizer"], seen["steps"] = optimizer, seen["steps"] + 1

    register_optimizer_step_post_hook(keep)
    code = int(sdaie_main(["backbone-train", *argv[1:]]) or 0)
    params = [p for g in seen["optimizer"].param_groups for p in g["params"]]
    digest = hashlib.sha256()
    for p in params:
        digest.update(p.detach().float().cpu().numpy().tobytes())
    rank = int(os.environ.get("RANK", "0"))
    Path(argv[0], f"rank{rank}.json").write_text(json.dumps({
        "rank": rank, "steps": seen["steps"], "params": len(params), "sha256": digest.hexdigest(),
        "device": str(params[0].device), "exit": code}))
    return code


def _world(plan: Plan, work: Path) -> Path:
    """An index to train on: the pipeline section's, else a small synthetic world's."""
    index = work / "pipeline" / "index"
    if (index / "summary.json").is_file():
        return index
    make_world(work / "ddp_world", photos=12, size=96, gen_images=0, bc_train=0, bc_val=0)
    index_main([str(work / "ddp_world" / "photos"), "--out", str(work / "ddp_index"),
                "--workers", "1", "--no-progress"])
    return work / "ddp_index"


def check_ddp(plan: Plan, work: Path) -> Section:
    title = "2-rank torchrun (DDP)"
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if not plan.cpu_mode and gpus < 2:
        return skipped("ddp", title, f"{gpus} GPU(s); the NCCL check needs 2")
    out = work / "ddp"
    out.mkdir(parents=True, exist_ok=True)
    device = "cpu" if plan.cpu_mode else "auto"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "sdaie.gpucheck.ddp", str(out), *TINY, f"data.index={_world(plan, work)}",
           f"run.out_dir={out / 'run'}", f"run.device={device}", "pretext.batch_size=2",
           f"pretext.steps={plan.ddp_steps}", f"pretext.ckpt_every={plan.ddp_steps}",
           "pretext.log_every=10", "data.workers=0", "run.dist_timeout_s=300", "--overwrite"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    (out / "torchrun.log").write_text(proc.stdout + proc.stderr, encoding="utf-8")
    ranks = [json.loads(p.read_text()) for p in sorted(out.glob("rank*.json"))]
    rows = [{k: r[k] for k in ("rank", "device", "steps", "params", "sha256", "exit")} for r in ranks]
    backend = "gloo" if plan.cpu_mode else "NCCL"
    equal = len(ranks) == 2 and len({r["sha256"] for r in ranks}) == 1 and proc.returncode == 0 \
        and all(r["steps"] == plan.ddp_steps for r in ranks)
    summary = (f"{backend}, {plan.ddp_steps} steps: both ranks hold identical parameters "
               f"({time.perf_counter() - start:.0f} s)" if equal else
               f"{backend}: torchrun exit {proc.returncode}, digests "
               f"{[r['sha256'][:12] for r in ranks]}; see {out / 'torchrun.log'}")
    notes = ["sha256 over every trained parameter's bytes, per rank, after the run",
             f"torchrun log: {out / 'torchrun.log'}"]
    return Section("ddp", title, "ok" if equal else "fail", summary, rows, notes)


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
