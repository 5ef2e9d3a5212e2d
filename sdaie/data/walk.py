"""The one folder walker: which files of a folder are images, and what was left aside.

Every command that takes a folder (``sdaie index``, ``sdaie detect``, ``sdaie exif``, the test-set
and training-folder discovery of the stages) lists it here, so a folder gives the same files
everywhere:

- recursive, sorted by path; symbolic links are followed (to folders and to files), since a
  dataset is often a tree of links into a shared store;
- loop protection: a folder whose real identity (device, inode) was already walked is not
  walked again (a link to an ancestor, or a second link to the same folder), and is reported;
- an image is a regular file whose extension is in :data:`IMAGE_EXTENSIONS` (case-insensitive);
- everything else is counted, never silently dropped: by extension (``.txt``, ``.mov``, "no
  extension"), hidden entries (names starting with ``.``; hidden folders are not entered), broken
  links, folders that cannot be listed (permissions) and folders reached again through a link,
  so summaries can say "ignored: 3 .txt, 1 .mov, 1 unreadable folder".
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp",
                              ".heic", ".heif", ".hif", ".avif"})
HIDDEN = "hidden"
BROKEN_LINK = "broken link"
NO_EXTENSION = "no extension"
UNREADABLE = "unreadable folder"
REVISITED = "folder reached again through a link"
_PLURAL = {UNREADABLE: "unreadable folders", REVISITED: "folders reached again through links"}


@dataclass
class FolderListing:
    """The image files under a root, and what the walk left aside (counted by kind)."""

    images: list[Path] = field(default_factory=list)
    ignored: Counter = field(default_factory=Counter)  # kind ('.txt', 'hidden', ...) -> count
    revisits: list[Path] = field(default_factory=list)  # linked folders already walked (counted)

    def ignored_text(self) -> str:
        """``"ignored: 3 .txt, 1 .mov"`` (most frequent first), or "" when nothing was."""
        return ignored_text(self.ignored)


def ignored_text(counts: Counter | dict[str, int]) -> str:
    """The one-line form of ignored-file counts (empty when there are none)."""
    items = sorted(((k, v) for k, v in dict(counts).items() if v),
                   key=lambda kv: (-kv[1], kv[0]))
    return ("ignored: " + ", ".join(f"{v} {_PLURAL.get(k, k) if v > 1 else k}" for k, v in items)
            if items else "")


def kind_of(name: str) -> str:
    """How a non-image file is counted: its lower-case extension, or "no extension"."""
    suffix = Path(name).suffix.lower()
    return suffix if suffix else NO_EXTENSION


def is_image_name(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_EXTENSIONS


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def walk(root: Path, listing: FolderListing) -> Iterator[tuple[Path, list[str]]]:
    """``(folder, file names)`` of every folder under ``root`` (itself first), following links
    once each; hidden and broken entries and revisited folders are recorded in ``listing``."""
    seen = {_identity(root)}

    def unreadable(exc: OSError) -> None:  # os.walk would pass over the folder without a word
        listing.ignored[UNREADABLE] += 1

    for current, dirs, files in os.walk(root, onerror=unreadable, followlinks=True):
        here = Path(current)
        keep = []
        for d in sorted(dirs):
            if d.startswith("."):
                listing.ignored[HIDDEN] += 1
                continue
            ident = _identity(here / d)
            if ident is None:
                listing.ignored[BROKEN_LINK] += 1
            elif ident in seen:
                listing.revisits.append(here / d)
                listing.ignored[REVISITED] += 1
            else:
                seen.add(ident)
                keep.append(d)
        dirs[:] = keep  # os.walk descends only into these, in this order
        yield here, sorted(files)


def iter_images(root: Path, listing: FolderListing) -> Iterator[Path]:
    """The image files under the folder ``root``, one at a time in walk order (not sorted); what
    is left aside is counted in ``listing``. For a caller that keeps less than a ``Path`` per
    file (``sdaie index`` on a million photos keeps their relative path strings)."""
    for here, files in walk(root, listing):
        for name in files:
            path = here / name
            if name.startswith("."):
                listing.ignored[HIDDEN] += 1
            elif not path.exists():
                listing.ignored[BROKEN_LINK] += 1
            elif not is_image_name(name) or not path.is_file():
                listing.ignored[kind_of(name)] += 1
            else:
                yield path


def scan_folder(root: str | Path) -> FolderListing:
    """Walk ``root`` (see the module docstring); a file given as ``root`` is listed as itself."""
    root = Path(root)
    out = FolderListing()
    if root.is_file():
        out.images.append(root)
        return out
    out.images = sorted(iter_images(root, out))
    return out


def list_images(root: str | Path) -> list[Path]:
    """Image files under ``root`` (:func:`scan_folder` without the counts)."""
    return scan_folder(root).images
