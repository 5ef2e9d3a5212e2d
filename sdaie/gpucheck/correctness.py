"""Section ``correctness``: the fast extractor against the reference, on the device, per precision;
an official-format checkpoint gives the same outputs on the CPU and on the device.

The reference is the plain spec composition (``model.implementation=reference``) in strict
float32 (TF32 off) on the same device. Error = max |out - reference| / max |reference| over the
features (the fast path's contract in ``tests/models/test_fast.py`` is 1e-4 in float32).
Tolerances: :data:`TOLERANCES`; autocast's are set from what CPU autocast gives here (bf16
about 1.2e-2, fp16 about 1.3e-3 on the paper's extractor), with room for other kernels.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from sdaie.atomic import atomic_torch_save
from sdaie.config import ModelConfig
from sdaie.gpucheck.plan import Plan, with_model
from sdaie.gpucheck.report import NO_CUDA, Section
from sdaie.models.binary import BinaryDetector
from sdaie.models.checkpoint import OFFICIAL_BINARY_PREFIXES, load_binary_detector
from sdaie.models.registry import build_extractor

TOLERANCES = {"fp32": 1e-4, "tf32": 1e-2, "fp16": 1e-2, "bf16": 5e-2, "grad fp32": 1e-3}


def max_rel(got: torch.Tensor, ref: torch.Tensor) -> float:
    got, ref = got.detach().float().cpu(), ref.detach().float().cpu()
    return float((got - ref).abs().max() / ref.abs().max().clamp_min(1e-30))


@contextlib.contextmanager
def tf32(enabled: bool) -> Iterator[None]:
    """TF32 matmuls and convolutions on or off for a block (CUDA only; a no-op elsewhere)."""
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def autocast_supported(device: torch.device, dtype: torch.dtype) -> bool:
    if device.type != "cuda":
        return True  # CPU autocast runs both (bf16 natively on some CPUs, emulated on others)
    return dtype != torch.bfloat16 or torch.cuda.get_device_capability(device)[0] >= 8


def _row(check: str, error: float, tol: float, **extra: Any) -> dict[str, Any]:
    return {"check": check, "max_rel_error": error, "tolerance": tol,
            "result": "ok" if error <= tol else "FAIL", **extra}


def _pair(plan: Plan) -> tuple[torch.nn.Module, torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    ref = build_extractor(with_model(plan, implementation="reference")).to(plan.device).eval()
    fast = copy.deepcopy(ref)
    fast.implementation = "fast"
    s = plan.model.patch_size
    x = torch.randn(4, plan.patches, 3, s, s, generator=torch.Generator().manual_seed(1))
    return ref, fast, x.to(plan.device)


def precision_rows(plan: Plan) -> list[dict[str, Any]]:
    """Fast vs reference: float32 (strict, and TF32 on CUDA), autocast fp16 and bf16, gradients."""
    ref, fast, x = _pair(plan)
    dev = plan.device
    with torch.no_grad(), tf32(False):
        expected = ref(x)
        rows = [_row("fast fp32", max_rel(fast(x), expected), TOLERANCES["fp32"])]
    if dev.type == "cuda":
        with torch.no_grad(), tf32(True):
            rows.append(_row("fast fp32 with TF32", max_rel(fast(x), expected), TOLERANCES["tf32"]))
    for name, dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
        if not autocast_supported(dev, dtype):
            rows.append({"check": f"fast autocast {name}", "result": "skipped: no native bf16"})
            continue
        with torch.no_grad(), tf32(False), torch.autocast(dev.type, dtype=dtype):
            rows.append(_row(f"fast autocast {name}", max_rel(fast(x), expected), TOLERANCES[name]))
    weights = torch.randn(expected.shape, generator=torch.Generator().manual_seed(2)).to(dev)
    grads = []
    with tf32(False):
        for m in (ref, fast):
            m.zero_grad()
            (m(x) * weights).sum().backward()
            grads.append(torch.cat([p.grad.reshape(-1) for p in m.parameters() if p.grad is not None]))
    rows.append(_row("fast fp32 gradients", max_rel(grads[1], grads[0]), TOLERANCES["grad fp32"]))
    return rows


def official_checkpoint(plan: Plan, path: Path) -> Path:
    """A binary detector of the paper's architecture with random weights, saved in the official
    layout: ``{'state_net': {'module.diffusionextractor_random.<key>', ...}, 'epoch'}``."""
    torch.manual_seed(3)
    model = BinaryDetector(ModelConfig())  # the official format holds this architecture only
    back = {ours: official for official, ours in OFFICIAL_BINARY_PREFIXES.items()}

    def official(key: str) -> str:
        for ours, name in back.items():
            if key.startswith(ours):
                return "module." + name + key[len(ours):]
        return "module." + key
    state = {official(k): v for k, v in model.state_dict().items()}
    return atomic_torch_save({"state_net": state, "epoch": 0}, path)


def official_rows(plan: Plan, work: Path) -> list[dict[str, Any]]:
    """The official-format checkpoint: loads on the CPU; same logits on the device."""
    path = official_checkpoint(plan, work / "official_format_binary.pt")
    s = ModelConfig().patch_size
    x = torch.randn(2, plan.patches, 3, s, s, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        on_cpu = load_binary_detector(path, map_location="cpu").eval()(x)
    rows: list[dict[str, Any]] = [{"check": "official layout loads (CPU)", "result": "ok",
                                   "logits": str([round(v, 4) for v in on_cpu[0].tolist()])}]
    if plan.device.type != "cuda":
        rows.append({"check": "official checkpoint CPU vs device", "result": NO_CUDA})
        return rows
    with torch.no_grad(), tf32(False):
        on_dev = load_binary_detector(path, map_location=plan.device).eval()(x.to(plan.device))
    rows.append(_row("official checkpoint CPU vs device", max_rel(on_dev, on_cpu),
                     TOLERANCES["fp32"]))
    return rows


def check_correctness(plan: Plan, work: Path) -> Section:
    rows = precision_rows(plan) + official_rows(plan, work)
    failed = [r["check"] for r in rows if r.get("result") == "FAIL"]
    size = "the paper's extractor" if not plan.cpu_mode else "the tiny extractor"
    summary = (f"all checks within tolerance ({size}, {plan.patches} patches/image)" if not failed
               else f"outside tolerance: {', '.join(failed)}")
    notes = ["error = max|out - reference| / max|reference|, reference = the spec composition in "
             "strict float32 (TF32 off) on the same device",
             "autocast: the features of the fast path under torch.autocast; training computes the "
             "losses in float32 outside it"]
    if plan.cpu_mode:
        notes.append("CPU mode: autocast runs on the CPU; the official-format file is the paper's "
                     "architecture with random weights (written into the output folder)")
    return Section("correctness", "Correctness on the device", "fail" if failed else "ok",
                   summary, rows, notes)
