"""SIGTERM (how SLURM and Kubernetes preempt a job) as a request to checkpoint and stop.

The signal handler, installed when the training loop starts (a process still setting up dies
of SIGTERM as usual), only sets a flag; the loop asks :meth:`StopRequest.due` at each step
boundary. A rank stuck elsewhere (e.g. in a collective whose peer died) does not reach a
boundary; torchrun then kills it after its shutdown timeout (30 s by default). With several
ranks they must all stop after the same step, so the flags are combined by a collective: each
boundary starts a non-blocking all-reduce (max) of this rank's flag on a
CPU tensor over a gloo group, and the next boundary waits for it. No GPU work is waited for, the
ranks agree on the step, and the stop comes one step after the signal is seen. A single process
reads its flag directly and stops at the next boundary.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

import torch
import torch.distributed as dist

STOP_SIGNALS = (signal.SIGTERM,)
EXIT_CODE = 143  # 128 + SIGTERM: what a process ended by SIGTERM reports, so schedulers see it


class Preempted(Exception):
    """Raised by the training loop after the stop checkpoint is written (every rank)."""

    def __init__(self, checkpoint: str, progress: str, signal_name: str = "SIGTERM"):
        super().__init__(f"stopped by {signal_name} after {progress}; checkpoint {checkpoint}; "
                         "continue with --resume")
        self.checkpoint = checkpoint


class StopRequest:
    """The stop flag of this process, and the ranks' agreement on it."""

    def __init__(self, distributed: bool = False) -> None:
        self._local = False
        self._previous: dict[int, Any] = {}
        self._group: Any = None
        self._pending: Any = None
        self._buffer = torch.zeros(1, dtype=torch.int32)
        if distributed and dist.is_available() and dist.is_initialized():
            # every rank creates the group at the same point (a collective call)
            self._group = dist.new_group(backend="gloo")

    def install(self) -> StopRequest:
        """Handle the stop signals in this process (main thread only; elsewhere a no-op)."""
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._local = True

    def due(self) -> bool:
        """Whether every rank stops after the step just finished; call once per step, every rank."""
        if self._group is None:
            return self._local
        agreed = False
        if self._pending is not None:
            self._pending.wait()
            agreed = bool(self._buffer.item())  # a CPU tensor: no device synchronisation
        self._buffer = torch.tensor([int(self._local)], dtype=torch.int32)
        self._pending = dist.all_reduce(self._buffer, op=dist.ReduceOp.MAX, group=self._group,
                                        async_op=True)
        return agreed

    def close(self) -> None:
        """Finish the pending collective and restore the previous signal handlers."""
        if self._pending is not None:
            try:
                self._pending.wait()
            except RuntimeError:  # a peer already gone: nothing left to agree on
                pass
            self._pending = None
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}
