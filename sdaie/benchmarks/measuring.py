"""How every benchmark section times its work: rounds, fresh processes, ratios, environment.

On a machine shared with other jobs the wall clock includes waiting for a core, so the process
CPU time (user + system, all threads) is recorded beside it as a steadier basis for ratios.
Reference and fast implementations are measured in alternating fresh processes so that neither
inherits the heap the other grew, and a change of load between pairs hits both sides alike.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sdaie.runinfo import environment_info

IMPLS = ("reference", "fast")
WAIT_POLICIES = {"default": None, "passive": "PASSIVE", "active": "ACTIVE"}


@dataclass
class Timings:
    """Per-round seconds of one function: wall clock and CPU time of the whole process."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    system: list[float] = field(default_factory=list)  # kernel share of ``cpu`` (page faults...)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def interleaved(fns: dict[str, Callable[[], Any]], rounds: int, warmup: int = 1,
                device: str = "cpu") -> dict[str, Timings]:
    """Time each function once per round; the functions alternate within every round."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    _sync(device)
    out = {name: Timings() for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            wall, cpu, system = time.perf_counter(), time.process_time(), os.times().system
            fn()
            _sync(device)
            out[name].wall.append(time.perf_counter() - wall)
            out[name].cpu.append(time.process_time() - cpu)
            out[name].system.append(os.times().system - system)
    return out


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` on Linux, else what platform knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def environment(threads: Sequence[int], device: str) -> dict[str, Any]:
    """What the figures depend on: CPU, threads, versions, GPU, OpenMP wait policy."""
    info = environment_info()
    info.update(cpu=cpu_model(), threads_tested=list(threads), device=device,
                torch_threads_default=torch.get_num_threads(),
                omp_wait_policy=os.environ.get("OMP_WAIT_POLICY", "(unset)"),
                cpu_capability=torch.backends.cpu.get_cpu_capability(),
                load_average=load_average(),
                gpu=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
    return info


def isolated(isolate: bool, fn: Callable[..., Any], *args: Any,
             omp_wait: str = "default") -> Any:
    """``fn(*args)``, by default in a fresh interpreter (spawn) under the given OpenMP wait policy.

    A fresh process has its own allocator heap and OpenMP pool. Without it, what ran before
    changes what a measurement pays for memory: after a training step has grown the heap, the
    reference's large maps reuse it, while in an inference-only process (bc_eval, one-class
    features) they fault fresh pages on every batch. Each measurement gets the heap its workload
    would have. OpenMP reads ``OMP_WAIT_POLICY`` once at start, so a policy other than
    ``default`` needs a fresh process.
    """
    if not isolate:
        if omp_wait != "default":
            raise ValueError(f"omp_wait={omp_wait!r} needs an isolated (fresh) process")
        return fn(*args)
    value = WAIT_POLICIES[omp_wait]
    before = os.environ.get("OMP_WAIT_POLICY")
    if value is not None:
        os.environ["OMP_WAIT_POLICY"] = value  # read by the child at start (spawn copies it)
    try:
        with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
            return pool.submit(fn, *args).result()
    finally:
        if value is not None:
            if before is None:
                os.environ.pop("OMP_WAIT_POLICY", None)
            else:
                os.environ["OMP_WAIT_POLICY"] = before


def merged(parts: Sequence[Timings]) -> Timings:
    """The rounds of several processes as one series."""
    return Timings([w for t in parts for w in t.wall], [c for t in parts for c in t.cpu],
                   [s for t in parts for s in t.system])


def pair_ratios(slow: Sequence[Timings], fast: Sequence[Timings],
                attr: str = "wall") -> list[float]:
    """Per process pair: (median slow round) / (median fast round)."""
    def med(t: Timings) -> float:
        return statistics.median(getattr(t, attr))
    return [med(a) / med(b) for a, b in zip(slow, fast)]


def pair_ratio(slow: Sequence[Timings], fast: Sequence[Timings], attr: str = "wall") -> float:
    """The speed-up: the median of :func:`pair_ratios`."""
    return statistics.median(pair_ratios(slow, fast, attr))


def compared(isolate: bool, reps: int, omp_wait: str, fn: Callable[..., Timings],
             *args: Any) -> dict[str, list[Timings]]:
    """``fn(impl, *args)`` for reference and fast, each in its own fresh process, alternating
    ``reps`` times: neither inherits the heap the other grew, and a change of load between
    processes hits both sides of a pair alike."""
    out: dict[str, list[Timings]] = {impl: [] for impl in IMPLS}
    for _ in range(reps):
        for impl in IMPLS:
            out[impl].append(isolated(isolate, fn, impl, *args, omp_wait=omp_wait))
    return out
