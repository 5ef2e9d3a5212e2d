"""Sections ``extractor`` and ``resnet``: patches/s of inference and of a train step.

The SDAIE extractor is measured at the paper configuration (B images x N patches), ``reference``
and ``fast`` implementations from the same weights, one implementation per fresh process (see
:func:`~sdaie.benchmarks.measuring.isolated`); the ResNet extractor once per architecture. Every
process runs under the allocator setting the extractors apply on their first CPU pass
(:mod:`sdaie.models.cpu_memory`), the reference as the fast path.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from sdaie.benchmarks.measuring import (
    Timings,
    compared,
    interleaved,
    isolated,
    merged,
    pair_ratio,
    pair_ratios,
)
from sdaie.config import ModelConfig
from sdaie.models import build_extractor


def step_fns(model: nn.Module, x: torch.Tensor) -> dict[str, Callable[[], Any]]:
    """Inference (under ``inference_mode``) and train step (forward + backward of a scalar of
    the feature, so every parameter gets its gradient) closures."""
    def infer() -> Any:
        with torch.inference_mode():
            return model(x)

    def train() -> None:
        model.zero_grad(set_to_none=True)
        model(x).square().mean().backward()

    return {"inference": infer, "train": train}


def timing_row(ts: Timings, n: int, **keys: Any) -> dict[str, Any]:
    """One table row: medians of ``ts`` for ``n`` patches per round."""
    med = statistics.median(ts.wall)
    cpu = statistics.median(ts.cpu)
    return {**keys, "patches": n, "seconds": med, "patches_per_s": n / med, "cpu_seconds": cpu,
            "system_seconds": statistics.median(ts.system),
            "cores_used": cpu / med}  # below the thread count: the threads did not get a core each


def sdaie_timings(impl: str, cfg: ModelConfig, batch: int, patches: int, threads: int,
                  mode: str, rounds: int, device: str) -> Timings:
    """One implementation of the SDAIE extractor (weights from seed 0, the same for both), one
    mode."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_extractor(replace(cfg, backbone="sdaie", implementation=impl)).to(device)
    x = torch.randn(batch, patches, 3, cfg.patch_size, cfg.patch_size, device=device)
    return interleaved({impl: step_fns(model, x)[mode]}, rounds, device=device)[impl]


def bench_sdaie(cfg: ModelConfig, batch: int, patches: int, threads: Sequence[int],
                rounds: int, device: str = "cpu", isolate: bool = True,
                policies: Sequence[str] = ("default",),
                reps: int = 1) -> tuple[list[dict], list[dict]]:
    """Rows per (wait policy, implementation, mode, threads) and the fast/reference ratios."""
    rows, ratios = [], []
    n = batch * patches
    for policy in policies:
        for t in threads:
            for mode in ("inference", "train"):
                times = compared(isolate, reps, policy, sdaie_timings, cfg, batch, patches, t,
                                 mode, rounds, device)
                for name, ts in times.items():
                    rows.append(timing_row(merged(ts), n, backbone="sdaie", implementation=name,
                                           mode=mode, threads=t, omp_wait=policy))
                slow, quick = times["reference"], times["fast"]
                ratios.append({"mode": mode, "threads": t, "omp_wait": policy,
                               "fast_over_reference": pair_ratio(slow, quick),
                               "fast_over_reference_cpu": pair_ratio(slow, quick, "cpu"),
                               "pairs": pair_ratios(slow, quick)})
    return rows, ratios


def resnet_timings(cfg: ModelConfig, arch: str, batch: int, patches: int, threads: int,
                   rounds: int, device: str) -> dict[str, Timings]:
    """The ResNet extractor (SRM residual -> ResNet trunk): inference and train step."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_extractor(replace(cfg, backbone="resnet", resnet_arch=arch)).to(device)
    x = torch.randn(batch, patches, 3, cfg.patch_size, cfg.patch_size, device=device)
    return interleaved(step_fns(model, x), rounds, device=device)


def bench_resnet(cfg: ModelConfig, archs: Sequence[str], batch: int, patches: int,
                 threads: Sequence[int], rounds: int, device: str = "cpu",
                 isolate: bool = True) -> list[dict]:
    """Rows per (architecture, mode, threads)."""
    rows = []
    for arch in archs:
        for t in threads:
            times = isolated(isolate, resnet_timings, cfg, arch, batch, patches, t, rounds, device)
            for mode, ts in times.items():
                rows.append(timing_row(ts, batch * patches, backbone=arch, implementation="-",
                                       mode=mode, threads=t, omp_wait="default"))
    return rows
