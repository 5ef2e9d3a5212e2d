"""Numeric precision of a training run: float32, bf16 autocast, or fp16 autocast with a GradScaler.

The engine runs every forward pass inside :meth:`Precision.autocast` and goes through
:meth:`Precision.backward` and :meth:`Precision.step`; losses are computed in float32 outside
autocast by the tasks. ``auto`` (the default of ``pretext.amp`` and ``binary.amp``) is bf16 on a
GPU that supports it (Ampere and newer), fp16 with a gradient scaler on older GPUs (bf16 would
be emulated there), float32 on a CPU. bf16 keeps float32's exponent range, so it needs no scaler;
fp16 does: the loss is scaled up before backward, the gradients unscaled before the step, and a
step whose gradients overflowed is skipped (the scaler reads one flag per step to decide, which
is the only per-step host read of that mode). The extractor's features under autocast differ
from float32 by about 1 % (bf16) and 0.1 % (fp16) in relative norm; ``sdaie gpu-check`` measures
it on the user's device.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch

MODES = ("auto", "fp32", "bf16", "fp16")


def resolve_mode(amp: str | bool, device: torch.device) -> str:
    """``fp32``, ``bf16`` or ``fp16`` for a config value (``true`` = auto, ``false`` = fp32)."""
    mode = {True: "auto", False: "fp32"}.get(amp, amp) if isinstance(amp, bool) else str(amp)
    if mode not in MODES:
        raise ValueError(f"amp={amp!r}; valid: {list(MODES)} (or true/false)")
    if mode != "auto":
        return mode
    if device.type != "cuda":
        return "fp32"
    return "bf16" if native_bf16() else "fp16"


def native_bf16() -> bool:
    """Whether the current GPU computes bf16 natively (compute capability 8.0 and newer)."""
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # torch < 2.5 has no including_emulation (and does not count emulation)
        return torch.cuda.is_bf16_supported()


class Precision:
    """``amp``: a mode of :data:`MODES` or a bool; ``tf32``: allow TF32 matmuls and convolutions
    on CUDA (``None`` leaves torch's defaults)."""

    def __init__(self, device: torch.device, amp: str | bool = False, tf32: bool | None = None):
        self.device = device
        self.mode = resolve_mode(amp, device)
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.mode)
        self.scaler = torch.amp.GradScaler(device.type) if self.mode == "fp16" else None
        if device.type == "cuda" and tf32 is not None:
            torch.backends.cuda.matmul.allow_tf32 = tf32
            torch.backends.cudnn.allow_tf32 = tf32

    def autocast(self) -> AbstractContextManager:
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps for an exact resume (the fp16 loss scale and its counters)."""
        return {"mode": self.mode, **({"scaler": self.scaler.state_dict()} if self.scaler else {})}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if self.scaler is not None and state and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
