"""Section ``throughput``: pretext training pairs/s and peak memory per variant at the paper's batch
(64 pairs per GPU, 16 patches per image), inference patches/s; the fastest correct variant.

A training step is the engine's (:class:`~sdaie.engine.precision.Precision` for autocast and the
fp16 gradient scaler, Adam, the pretext loss over the paper's 14 heads) on random patches, so
data loading is not in it (the loader section measures that). Timings are bracketed by
``torch.cuda.synchronize()``; peak memory is ``torch.cuda.max_memory_allocated()`` after a reset.
A variant counts as correct when its features (same weights, before training) are within the
correctness section's tolerance of the strict float32 reference.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from sdaie.config import Config
from sdaie.engine.precision import Precision, native_bf16
from sdaie.gpucheck.correctness import TOLERANCES, max_rel, tf32
from sdaie.gpucheck.plan import Plan, with_model
from sdaie.gpucheck.report import Section
from sdaie.models import PretextModel
from sdaie.models.losses import pretext_loss


@dataclass(frozen=True)
class Variant:
    name: str
    keys: str  # the config keys that select it
    implementation: str = "fast"
    amp: str = "fp32"
    compile: bool = False


def variants(plan: Plan) -> list[Variant]:
    best = "bf16" if plan.device.type != "cuda" or native_bf16() else "fp16"
    return [Variant("fp32, reference (NCHW)", "model.implementation=reference pretext.amp=fp32",
                    "reference"),
            Variant("fp32, fast (channels-last)", "pretext.amp=fp32"),
            Variant("AMP bf16, fast", "pretext.amp=bf16", amp="bf16"),
            Variant("AMP fp16 + GradScaler, fast", "pretext.amp=fp16", amp="fp16"),
            Variant(f"AMP {best}, fast, torch.compile", f"pretext.amp={best} run.compile=true",
                    amp=best, compile=True)]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, fn: Callable[[], Any], warmup: int, steps: int) -> float:
    """Seconds per call of ``fn`` over ``steps`` timed calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    synchronize(device)
    return (time.perf_counter() - start) / steps


def _batch(plan: Plan, heads: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(5)
    s = plan.model.patch_size
    x = torch.randn(plan.images_per_step, plan.patches, 3, s, s, generator=gen)
    labels = torch.stack([torch.randint(0, h.classes, (plan.images_per_step,), generator=gen).float()
                          if h.kind == "class" else torch.rand(plan.images_per_step, generator=gen)
                          for h in heads], dim=1)
    dev = plan.device
    return x.to(dev), labels[:plan.pairs].to(dev), labels[plan.pairs:].to(dev)


def _step_fn(model: PretextModel, net: Any, precision: Precision, batch: tuple, heads: list,
             pairs: int) -> Callable[[], None]:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    x, y1, y2 = batch

    def step() -> None:
        with precision.autocast():
            outs = net(x)
        o1, o2 = [o[:pairs].float() for o in outs], [o[pairs:].float() for o in outs]
        loss, _ = pretext_loss(o1, o2, y1, y2, heads)
        optimizer.zero_grad(set_to_none=True)
        precision.backward(loss)
        precision.step(optimizer)
    return step


def run_variant(plan: Plan, v: Variant, base: PretextModel, reference: torch.Tensor,
                batch: tuple, heads: list) -> dict[str, Any]:
    dev = plan.device
    model = copy.deepcopy(base)
    model.backbone.implementation = v.implementation
    precision = Precision(dev, v.amp, tf32=True if dev.type == "cuda" else None)
    net = torch.compile(model, backend=plan.compile_backend) if v.compile else model
    synchronize(dev)
    start = time.perf_counter()
    with precision.autocast():  # with gradients, as training calls it (one compilation)
        error = max_rel(torch.cat(net(batch[0][:4]), dim=1), reference)
    first = time.perf_counter() - start  # max_rel reads the result: the device is done
    tol = TOLERANCES[v.amp if v.amp != "fp32" else ("tf32" if dev.type == "cuda" else "fp32")]
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    per_step = timed(dev, _step_fn(model, net, precision, batch, heads, plan.pairs),
                     plan.warmup, plan.steps)
    peak = torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else "n/a (CPU)"
    return {"variant": v.name, "pairs_per_s": plan.pairs / per_step, "step_s": per_step,
            "first_call_s": first, "peak_GB": peak, "max_rel_error": error, "tolerance": tol,
            "correct": error <= tol, "config": v.keys}


def inference_rate(plan: Plan, base: PretextModel, amp: str) -> dict[str, Any]:
    """Patches/s of the fast extractor without gradients (images of ``plan.patches`` patches)."""
    extractor = copy.deepcopy(base.backbone).eval()
    extractor.implementation = "fast"
    s = plan.model.patch_size
    x = torch.randn(max(1, plan.infer_batch // plan.patches), plan.patches, 3, s, s).to(plan.device)
    precision = Precision(plan.device, amp, tf32=True if plan.device.type == "cuda" else None)

    def forward() -> None:
        with torch.inference_mode(), precision.autocast():
            extractor(x)
    seconds = timed(plan.device, forward, plan.warmup, plan.steps)
    return {"amp": amp, "patches_per_s": x.shape[0] * x.shape[1] / seconds,
            "batch_patches": x.shape[0] * x.shape[1]}


def check_throughput(plan: Plan) -> Section:
    heads = Config().schema.heads
    torch.manual_seed(0)
    base = PretextModel(with_model(plan, implementation="reference"), heads).to(plan.device)
    batch = _batch(plan, heads)
    with torch.no_grad(), tf32(False):
        reference = torch.cat(base(batch[0][:4]), dim=1)  # every head's output
    rows = []
    for v in variants(plan):
        if v.amp == "bf16" and plan.device.type == "cuda" and not native_bf16():
            rows.append({"variant": v.name, "config": v.keys, "correct": "skipped: no native bf16"})
            continue
        try:
            rows.append(run_variant(plan, v, base, reference, batch, heads))
        except torch.cuda.OutOfMemoryError:  # e.g. the NCHW reference at 64 pairs on 16 GB
            torch.cuda.empty_cache()
            rows.append({"variant": v.name, "config": v.keys,
                         "correct": f"out of memory at {plan.pairs} pairs"})
    good = [r for r in rows if r.get("correct") is True  # eager "compile": no speed to rank
            and not (plan.compile_backend != "inductor" and "run.compile" in r["config"])]
    best = max(good, key=lambda r: r["pairs_per_s"]) if good else None
    if best is None:
        return Section("throughput", "Training throughput", "fail",
                       "no variant gave correct outputs", rows)
    amp = next((a for a in ("bf16", "fp16") if f"amp={a}" in best["config"]), "fp32")
    infer = inference_rate(plan, base, amp)
    summary = (f"fastest correct: {best['variant']}, {best['pairs_per_s']:,.1f} pairs/s per "
               f"{'GPU' if plan.device.type == 'cuda' else 'process'}; select it with "
               f"`{best['config']}`")
    notes = [f"batch: {plan.pairs} pairs x 2 images x {plan.patches} patches of "
             f"{plan.model.patch_size} px, width {plan.model.width}; {plan.warmup} warm-up + "
             f"{plan.steps} timed steps; first_call_s: the first forward (4 images), which is where "
             "torch.compile compiles",
             "fast = model.implementation=fast (the default): channels-last maps inside; the "
             "reference runs NCHW",
             "error: all 14 heads' outputs on 4 images, same weights, before training, against the "
             "reference in strict float32",
             f"inference (scoring, no gradients, fast, {infer['amp']}): "
             f"{infer['patches_per_s']:,.0f} patches/s in batches of {infer['batch_patches']}"]
    if plan.cpu_mode:
        notes.append(f"CPU mode: tiny sizes; torch.compile with the '{plan.compile_backend}' "
                     "backend (graph capture without code generation), so its speed says nothing")
    return Section("throughput", "Training throughput", "ok", summary, rows, notes,
                   facts={"best": best, "step_s": best["step_s"], "inference": infer})
