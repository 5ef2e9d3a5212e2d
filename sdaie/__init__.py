"""SDAIE: self-supervised AI-generated image detection from camera metadata.

``from sdaie import Detector`` loads :class:`sdaie.api.Detector` on first use, so ``import sdaie``
(and every command-line start-up) stays free of torch.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Detector", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Detector":
        from sdaie.api import Detector  # reason: torch only when the API is used

        return Detector
    raise AttributeError(f"module 'sdaie' has no attribute {name!r}")
