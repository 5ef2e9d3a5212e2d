"""Pixels in, patches out: image loading (``imageio``) and patch extraction (``patches``).

Names are resolved lazily, so ``from sdaie.data.imageio import load_image`` (EXIF tools) does not
import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "random_patches": "sdaie.data.patches",
    "grid_patches": "sdaie.data.patches",
    "grid_crop_box": "sdaie.data.patches",
    "load_image": "sdaie.data.imageio",
    "list_images": "sdaie.data.imageio",
    "to_rgb": "sdaie.data.imageio",
    "ImageLoadError": "sdaie.data.imageio",
    "IMAGE_EXTENSIONS": "sdaie.data.imageio",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'sdaie.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
