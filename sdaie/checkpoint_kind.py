"""What a checkpoint file is (pretext or binary), read without torch.

Stages check that a checkpoint is of the kind they need before torch is imported, so a wrong file
is refused within a second instead of after the imports. ``torch.save`` writes a zip whose
``data.pkl`` holds the object with tensors as references to other members; that pickle is read
here with every class replaced by an inert placeholder (nothing is constructed or run), which is
enough to see the top-level keys. Anything this cannot read returns None and is left to the
full loader (:mod:`sdaie.models.checkpoint`, which knows the formats in detail; the prefixes below
are the official ones it renames).
"""

from __future__ import annotations

import collections
import pickle
import zipfile
from pathlib import Path
from typing import Any

OFFICIAL_BINARY_PREFIX = "diffusionextractor_"  # official binary detector: two extractor copies
OFFICIAL_PRETEXT_PREFIX = "backbone."


class _Inert:
    """Stands for any class the pickle names (tensors, storages, dtypes): accepts and ignores."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> _Inert:
        return _Inert()

    def __setstate__(self, state: Any) -> None:
        pass


class _KeysOnly(pickle.Unpickler):
    _ALLOWED = {("collections", "OrderedDict"): collections.OrderedDict}

    def find_class(self, module: str, name: str) -> Any:
        return self._ALLOWED.get((module, name), _Inert())

    def persistent_load(self, pid: Any) -> Any:
        return None


def _top_object(path: Path) -> Any:
    with zipfile.ZipFile(path) as zf:
        name = next((n for n in zf.namelist() if n.endswith("/data.pkl") or n == "data.pkl"),
                    None)
        if name is None:
            return None
        with zf.open(name) as fh:
            return _KeysOnly(fh).load()


def peek_kind(path: str | Path) -> str | None:
    """``"pretext"`` / ``"binary"`` for this project's format and the official one; None when
    the file cannot be read this way (not a zip checkpoint, or an unknown layout)."""
    try:
        obj = _top_object(Path(path))
    except (OSError, zipfile.BadZipFile, pickle.UnpicklingError, EOFError, ValueError,
            TypeError, AttributeError, IndexError, KeyError):
        return None
    if not isinstance(obj, dict):
        return None
    if obj.get("format") == "sdaie":
        kind = obj.get("kind")
        return kind if kind in ("pretext", "binary") else None
    state = obj.get("state_net", obj)
    if not isinstance(state, dict):
        return None
    keys = [str(k).removeprefix("module.") for k in state]
    if any(k.startswith(OFFICIAL_BINARY_PREFIX) for k in keys):
        return "binary"
    if any(k.startswith(OFFICIAL_PRETEXT_PREFIX) for k in keys):
        return "pretext"
    return None
