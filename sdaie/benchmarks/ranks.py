"""The memory of a whole torchrun job: PSS of the launcher, its ranks and their loader workers.

    uv run python scripts/index_pss.py --photos 1000,100000 --ranks 2 --workers 4

For each N, rows are generated (:func:`~sdaie.benchmarks.scale.synthetic_rows`) and written as an
index whose photos are hard links to a few small JPEGs (so the run decodes real files without N
of them on disk), then ``backbone_train.py`` (tiny config) runs under
``torch.distributed.run`` on the CPU (gloo) with ``--workers`` DataLoader workers per rank. Every
0.2 s the proportional set size (``Pss`` of ``/proc/<pid>/smaps_rollup``: shared pages divided
among the processes that map them, so the sum over processes is the memory the job holds) of all
processes of the job is summed; the peak is reported with its breakdown. ``--repo`` and
``--python`` run another checkout's code on the same indexes (e.g. the previous release: an index
folder keeps ``index.jsonl``, ``vocab.json`` and ``summary.json``, which it reads).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from sdaie.benchmarks.measuring import cpu_model
from sdaie.benchmarks.scale import memory, synthetic_rows
from sdaie.config import load_config
from sdaie.exif.schema import Schema
from sdaie.exif.writer import write_index

REPO = Path(__file__).resolve().parents[2]
_BASE_PHOTOS = 16


def linked_index(work: Path, n: int, vocab: dict[str, Any]) -> Path:
    """An index of ``n`` generated rows whose files are hard links to a few 96x96 JPEGs."""
    photos, out = work / f"photos_{n}", work / f"index_{n}"
    base = work / "base"
    base.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    sources = []
    for k in range(_BASE_PHOTOS):
        path = base / f"{k}.jpg"
        if not path.exists():
            Image.fromarray(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)).save(path)
        sources.append(path)

    def rows() -> Iterator[dict[str, Any]]:
        for i, row in enumerate(synthetic_rows(n, vocab["heads"])):
            target = photos / row["path"]
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                os.link(sources[i % _BASE_PHOTOS], target)
            yield row

    write_index(out, rows(), vocab=vocab, root=photos,
                summary=lambda m: {"root": str(photos), "indexed": m})
    return out


def _tree(root: int) -> list[int]:
    """``root`` and all its descendants (from ``/proc/<pid>/stat``)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat", encoding="ascii", errors="replace") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def peak_pss(cmd: Sequence[str], env: dict[str, str], cwd: Path, log: Path,
             every_s: float = 0.2) -> dict[str, Any]:
    """Run ``cmd``; the peak over time of the summed PSS of its process tree, with breakdown."""
    start = time.monotonic()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT)
        peak: dict[str, Any] = {"pss_mb": 0.0}
        while proc.poll() is None:
            per = {pid: memory(pid) for pid in _tree(proc.pid)}
            total = sum(m.get("pss", 0.0) for m in per.values())
            if total > peak["pss_mb"]:
                peak = {"pss_mb": total, "processes": sum(1 for m in per.values() if m),
                        "rss_mb": sorted((round(m["rss"]) for m in per.values() if m),
                                         reverse=True),
                        "private_mb": sorted((round(m["private"]) for m in per.values() if m),
                                             reverse=True)}
            time.sleep(every_s)
    return {**peak, "returncode": proc.returncode, "seconds": time.monotonic() - start}


def run_job(index: Path, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    repo = Path(args.repo).resolve()
    cmd = [args.python, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={args.ranks}", "--max-restarts=0", str(repo / "backbone_train.py"),
           "--config", str(repo / "configs" / "tiny" / "backbone.yaml"), f"data.index={index}",
           f"run.out_dir={out}", f"pretext.steps={args.steps}", f"pretext.ckpt_every={args.steps}",
           f"pretext.batch_size={args.batch}", f"data.workers={args.workers}",
           "data.val_fraction=0"]
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"}
    shutil.rmtree(out, ignore_errors=True)  # a fresh run each time
    return peak_pss(cmd, env, out.parent, out.parent / f"{out.name}.log")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="index_pss", description=__doc__.split("\n\n")[0])
    p.add_argument("--photos", default="1000,100000", help="index sizes, comma-separated")
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--workers", type=int, default=4, help="DataLoader workers per rank")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch", type=int, default=8, help="pairs per rank and step")
    p.add_argument("--work", default=None,
                   help="folder for the indexes and runs, kept (default: a temporary folder)")
    p.add_argument("--repo", default=str(REPO), help="checkout whose backbone_train.py runs")
    p.add_argument("--python", default=sys.executable, help="interpreter of that checkout")
    p.add_argument("--out", default=None, help="write the result JSON here")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    sizes = [int(v) for v in args.photos.split(",") if v.strip()]
    work = Path(args.work or tempfile.mkdtemp(prefix="sdaie-index-pss-"))
    vocab = Schema(load_config(REPO / "configs" / "tiny" / "backbone.yaml").schema.heads).to_vocab()
    rows = []
    for n in sizes:
        index = linked_index(work, n, vocab)
        row = {"photos": n, **run_job(index, work / f"run_{n}", args)}
        rows.append(row)
        print(f"{n:>9,} photos: peak PSS {row['pss_mb']:,.0f} MB over {row.get('processes')} "
              f"processes, {row['seconds']:.0f} s, exit {row['returncode']}", flush=True)
    result = {"cpu": cpu_model(), "ranks": args.ranks, "workers": args.workers,
              "steps": args.steps, "batch": args.batch, "repo": str(args.repo), "rows": rows}
    if len(rows) > 1:
        result["pss_above_smallest_mb"] = rows[-1]["pss_mb"] - rows[0]["pss_mb"]
        print(f"peak PSS at {sizes[-1]:,} photos minus at {sizes[0]:,}: "
              f"{result['pss_above_smallest_mb']:,.0f} MB")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if all(r["returncode"] == 0 for r in rows) else 1
