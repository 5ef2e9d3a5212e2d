"""Per-step figures summed on the device, read once per log interval.

Reading a CUDA tensor's value (``.item()``, ``float()``, ``.cpu()``) makes the host wait until
the GPU has finished every queued kernel, so doing it at each step stalls the pipeline of data
loading and compute. The meter only adds on the device; :meth:`DeviceMeter.collect` sums over
the ranks and copies everything to the host in one transfer.
"""

from __future__ import annotations

import torch

from sdaie.distributed import all_reduce_sum


class DeviceMeter:
    """Named float64 sums (any shape per name) of the steps since the last :meth:`collect`."""

    def __init__(self) -> None:
        self._sums: dict[str, torch.Tensor] = {}
        self.steps = 0

    def add(self, values: dict[str, torch.Tensor]) -> None:
        """Add one step's values; every step must bring the same names and shapes."""
        for name, value in values.items():
            v = value.detach().double()
            if name in self._sums:
                self._sums[name] += v
            else:
                self._sums[name] = v.clone()
        self.steps += 1

    def _flat(self) -> torch.Tensor:
        return torch.cat([v.reshape(-1) for v in self._sums.values()])

    def all_finite(self) -> bool:
        """Whether every sum is finite on every rank (one host synchronisation; all ranks call it)."""
        if not self._sums:
            return True
        return int(all_reduce_sum((~torch.isfinite(self._flat())).sum())) == 0

    def collect(self) -> dict[str, torch.Tensor]:
        """The sums over the interval and all ranks, on the CPU; starts the next interval."""
        if not self._sums:
            self.steps = 0
            return {}
        total = all_reduce_sum(self._flat()).cpu()
        out, start = {}, 0
        for name, value in self._sums.items():
            out[name] = total[start:start + value.numel()].reshape(value.shape)
            start += value.numel()
        self._sums, self.steps = {}, 0
        return out
