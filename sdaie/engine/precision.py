"""Numeric precision of a training run: full float32, or bf16 autocast on CUDA.

The engine runs every forward pass inside :meth:`Precision.autocast` and goes through
:meth:`Precision.backward` and :meth:`Precision.step`, so a mode that needs more than a context
(fp16 with a gradient scaler: scale the loss, unscale before the step, skip steps with overflow)
changes this class only. Losses are computed in float32 outside autocast by the tasks.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch


class Precision:
    """``amp``: bf16 autocast, on CUDA only (a CPU run ignores it); ``tf32``: allow TF32 matmuls
    and convolutions on CUDA (``None`` leaves torch's defaults)."""

    def __init__(self, device: torch.device, amp: bool = False, tf32: bool | None = None):
        self.device = device
        self.dtype = torch.bfloat16 if amp and device.type == "cuda" else None
        if device.type == "cuda" and tf32 is not None:
            torch.backends.cuda.matmul.allow_tf32 = tf32
            torch.backends.cudnn.allow_tf32 = tf32

    def autocast(self) -> AbstractContextManager:
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        optimizer.step()
