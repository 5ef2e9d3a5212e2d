"""What ``sdaie detect`` and :meth:`sdaie.api.Detector.score` are asked to score: files, folders and
glob patterns turned into one target per image file, with the rest counted.

Read without torch, so ``sdaie detect`` can refuse inputs with no image file before loading a
model. Folders are listed by the one walker (:mod:`sdaie.data.walk`): symbolic links followed,
non-image files counted by kind, never silently dropped.
"""

from __future__ import annotations

import glob
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sdaie.data.walk import scan_folder

GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class Target:
    """One row to produce: a file to score, or an input that resolved to an error."""

    path: str
    error: str | None = None


@dataclass
class Inputs:
    """Targets in input order (each file once) and the non-image files met in folders."""

    targets: list[Target] = field(default_factory=list)
    ignored: Counter = field(default_factory=Counter)

    @property
    def files(self) -> list[Target]:
        """Targets that are files to score (not input errors)."""
        return [t for t in self.targets if t.error is None]


def is_glob(x: str | Path) -> bool:
    return any(c in GLOB_CHARS for c in str(x))


def collect_inputs(args: Sequence[str | Path]) -> Inputs:
    """Files, folders (recursive) and globs -> :class:`Inputs`.

    An argument that names nothing (missing path, pattern without matches, folder without
    images) becomes an error target, so it shows up in the output instead of vanishing. A file
    named explicitly is used whatever its extension.
    """
    out = Inputs()
    seen: set[Path] = set()

    def add(path: Path) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            out.targets.append(Target(str(path)))

    def add_dir(d: Path, shown: str) -> None:
        listing = scan_folder(d)
        out.ignored.update(listing.ignored)
        if not listing.images:
            out.targets.append(Target(shown, "no image files under this folder"))
        for f in listing.images:
            add(f)

    for arg in map(str, args):
        p = Path(arg)
        if p.is_dir():
            add_dir(p, arg)
        elif p.is_file():
            add(p)
        elif is_glob(arg):
            matches = sorted(glob.glob(arg, recursive=True))
            if not matches:
                out.targets.append(Target(arg, "pattern matched no file"))
            for m in matches:
                add_dir(Path(m), m) if Path(m).is_dir() else add(Path(m))
        elif p.exists():
            out.targets.append(Target(arg, "not a regular file or folder"))
        else:
            out.targets.append(Target(arg, "no such file or folder"))
    return out


def expand_inputs(args: Sequence[str | Path]) -> list[Target]:
    """The targets of :func:`collect_inputs`."""
    return collect_inputs(args).targets
