"""Device choice: CPU and CUDA alike, never a hard-coded device."""

from __future__ import annotations

import torch


def resolve_device(spec: str = "auto", local_rank: int | None = None) -> torch.device:
    """``auto`` picks CUDA when present (the local rank's GPU under torchrun), else CPU."""
    if spec == "auto":
        if torch.cuda.is_available():
            index = local_rank if local_rank is not None else 0
            return torch.device("cuda", index % torch.cuda.device_count())
        return torch.device("cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {spec!r} requested but CUDA is not available; use --device cpu")
    return device
