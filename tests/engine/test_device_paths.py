"""What changes between a CPU and a CUDA run, checked without a GPU: CPU-only machinery stays off
for other devices, pinned memory only for CUDA, precision modes resolve per device, and
``run.compile`` wraps the model the engine steps (not the one it checkpoints)."""

from __future__ import annotations

import pytest
import torch

from sdaie.config import DataConfig, ModelConfig
from sdaie.data.loading import seeded_loader
from sdaie.engine.precision import Precision, resolve_mode
from sdaie.engine.schedule import Schedule
from support.toy_training import toy_state, train_toy


def test_cpu_allocator_tuning_and_thread_pools_are_for_cpu_tensors_only(monkeypatch):
    from sdaie.models import base, fast
    from sdaie.models.registry import build_extractor

    calls = []
    monkeypatch.setattr(base, "keep_freed_memory", lambda: calls.append(1))
    m = build_extractor(ModelConfig(width=4, depths=[1, 1, 1, 1], transformer_depth=1,
                                    attn_heads=1, dim_head=4, mlp_dim=8, patch_size=16))
    m._check_input(torch.zeros(1, 2, 3, 16, 16, device="meta"))  # any device but the CPU
    assert calls == []
    m._check_input(torch.zeros(1, 2, 3, 16, 16))
    assert calls == [1]
    monkeypatch.setattr(torch, "get_num_threads", lambda: 8)
    meta = torch.zeros(64, 3, 16, 16, device="meta")
    with torch.no_grad():
        assert fast._worker_count(m, meta, None) == 1  # no CPU thread pool off the CPU
        assert fast._worker_count(m, torch.zeros(64, 3, 16, 16), None) == 8


def test_pinned_memory_only_for_cuda():
    data = DataConfig(workers=0, pin_memory=True)
    ds = list(range(4))
    assert seeded_loader(ds, data, torch.device("cuda"), 0, 0, batch_size=2).pin_memory
    assert not seeded_loader(ds, data, torch.device("cpu"), 0, 0, batch_size=2).pin_memory


def test_precision_auto_is_float32_on_cpu_and_modes_are_named():
    cpu = torch.device("cpu")
    assert [resolve_mode(v, cpu) for v in ("auto", True, False, "bf16", "fp16", "fp32")] == [
        "fp32", "fp32", "fp32", "bf16", "fp16", "fp32"]
    with pytest.raises(ValueError, match="amp='half'"):
        resolve_mode("half", cpu)
    p = Precision(cpu, "fp16")
    assert p.scaler is not None and p.state_dict()["mode"] == "fp16"
    with Precision(cpu, "bf16").autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16


def test_run_compile_wraps_the_stepped_model_and_changes_no_number(tmp_path, monkeypatch):
    compiled = []
    real = torch.compile

    def eager(module, **kw):  # dynamo's graph capture without code generation: seconds, not minutes
        compiled.append(type(module).__name__)
        return real(module, backend="eager")

    schedule = Schedule.by_steps(4, 2, 2)
    train_toy(tmp_path / "plain", schedule)
    monkeypatch.setattr(torch, "compile", eager)
    train_toy(tmp_path / "compiled", schedule, compile=True)
    assert compiled == ["Sequential"]
    a, b = toy_state(tmp_path / "plain" / "checkpoints" / "last.pt"), toy_state(
        tmp_path / "compiled" / "checkpoints" / "last.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # bare keys, same numbers
