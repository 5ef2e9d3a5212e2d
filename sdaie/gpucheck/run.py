"""The order of the sections and what they hand each other (the step time the loader must feed)."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from pathlib import Path

import torch

from sdaie.device import resolve_device
from sdaie.gpucheck.correctness import check_correctness
from sdaie.gpucheck.ddp import check_ddp
from sdaie.gpucheck.environment import check_environment
from sdaie.gpucheck.loader import check_loader
from sdaie.gpucheck.pipeline import check_pipeline
from sdaie.gpucheck.plan import Plan, make_plan, usable_cores
from sdaie.gpucheck.report import TITLES, Section, skipped
from sdaie.gpucheck.throughput import check_throughput

Timed = Callable[[str, Callable[[], Section]], Section]


def plan_for(args: argparse.Namespace, size: tuple[int, int] | None) -> Plan:
    if args.cpu:
        # one thread: the CPU check is about the code paths; several threads on a shared or
        # small machine spin-wait and make its timings noise
        torch.set_num_threads(1)
        plan = make_plan(True, torch.device("cpu"))
    else:
        if not torch.cuda.is_available():
            raise SystemExit("gpu-check: no CUDA device visible to torch "
                             f"(torch {torch.__version__}); on a CPU machine run "
                             "`sdaie gpu-check --cpu`")
        device = resolve_device(args.device)
        if device.type != "cuda":
            raise SystemExit(f"--device {args.device}: not a CUDA device (use --cpu for the CPU)")
        torch.cuda.set_device(device)
        plan = make_plan(False, device)
    if size is None:
        return plan
    return dataclasses.replace(plan, photo_size=size, crop=min(512, *size))


def run_checks(args: argparse.Namespace, out: Path, work: Path, wanted: list[str],
               size: tuple[int, int] | None, timed: Timed) -> list[Section]:
    """Every section of ``wanted`` in the report's order (a section not asked for is skipped)."""
    plan = plan_for(args, size)
    cores = max(1, usable_cores() // max(1, torch.cuda.device_count() if not plan.cpu_mode else 1))
    results: dict[str, Section] = {}
    steps: list[tuple[str, Callable[[], Section]]] = [
        ("environment", lambda: check_environment(plan)),
        ("correctness", lambda: check_correctness(plan, work)),
        ("throughput", lambda: check_throughput(plan)),
        ("loader", lambda: check_loader(plan, work, results.get("throughput", Section(
            "", "")).facts.get("step_s"), cores, args.index)),
        ("pipeline", lambda: check_pipeline(plan, work)),
        ("ddp", lambda: check_ddp(plan, work)),
    ]
    for key, fn in steps:
        if key in wanted:
            results[key] = timed(key, fn)
        else:
            results[key] = skipped(key, TITLES[key], "not selected (--sections)")
    return [results[key] for key, _ in steps]
