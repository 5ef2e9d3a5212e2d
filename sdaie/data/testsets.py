"""Test-set registry (spec section 5) and labelled-file discovery.

Layouts accepted under a test root: ``<root>/<set>/[<category>/...]{0_real,1_fake}/...`` (CNNSpot /
ForenSynths and the sets that copied it) and GenImage's ``<Generator>/.../{train,val}/{ai,nature}``.
A file's label comes from the folder names on its path below the set folder that are EXACTLY one of
``0_real`` / ``nature`` (real) or ``1_fake`` / ``ai`` (generated); a name that merely contains
"real" (``unreal_0_real_v2``) is not a label. Files with no label folder, or with contradicting
ones, are reported and left out. In GenImage sets that hold both ``train`` and ``val`` splits only
``val`` is evaluated (GenImage's test split).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sdaie.data.walk import FolderListing, scan_folder, walk
from sdaie.labels import FAKE, REAL

# (folder, display name) in the official table order.
REGISTRY: tuple[tuple[str, str], ...] = (
    ("progan", "ProGAN"),
    ("stylegan", "StyleGAN"),
    ("biggan", "BigGAN"),
    ("cyclegan", "CycleGAN"),
    ("stargan", "StarGAN"),
    ("gaugan", "GauGAN"),
    ("stylegan2", "StyleGAN2"),
    ("whichfaceisreal", "WFIR"),
    ("ADM", "ADM"),
    ("Glide", "Glide"),
    ("Midjourney", "Midjourney"),
    ("stable_diffusion_v_1_4", "SDv1.4"),
    ("stable_diffusion_v_1_5", "SDv1.5"),
    ("VQDM", "VQDM"),
    ("wukong", "wukong"),
    ("DALLE2", "DALLE2"),
    ("coco_sdxl_nw", "SDXL"),
)
OFFICIAL_ORDER = {name: i for i, (name, _) in enumerate(REGISTRY)}
DISPLAY = dict(REGISTRY)

REAL_FOLDERS = frozenset({"0_real", "nature"})
FAKE_FOLDERS = frozenset({"1_fake", "ai"})


def display_name(folder: str) -> str:
    """The paper's display name for a registry folder; other folders are shown as they are."""
    return DISPLAY.get(folder, folder)


def order_key(name: str) -> tuple[int, str]:
    """Registry sets first in the official order, then any other set alphabetically."""
    return (OFFICIAL_ORDER.get(name, len(REGISTRY)), name)


def label_from_parts(parts: Iterable[str]) -> int | None:
    """1 (fake), 0 (real) or None (no label folder, or both kinds) from path components."""
    kinds = {REAL for p in parts if p in REAL_FOLDERS} | {FAKE for p in parts if p in FAKE_FOLDERS}
    return kinds.pop() if len(kinds) == 1 else None


@dataclass
class LabelledFiles:
    """The usable files of a folder with their labels, and what was left out and why."""

    paths: list[Path] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    unlabelled: list[Path] = field(default_factory=list)
    ambiguous: list[Path] = field(default_factory=list)
    ignored: Counter = field(default_factory=Counter)  # non-image files by kind (sdaie.data.walk)

    @property
    def n_real(self) -> int:
        return sum(1 for y in self.labels if y == REAL)

    @property
    def n_fake(self) -> int:
        return sum(1 for y in self.labels if y == FAKE)


def _is_genimage_split_layout(rel_parts: list[tuple[str, ...]]) -> bool:
    """True when ai/nature files sit under both a ``train`` and a ``val`` folder."""
    genimage = [p for p in rel_parts if any(x in ("ai", "nature") for x in p)]
    return any("train" in p for p in genimage) and any("val" in p for p in genimage)


def list_labelled(root: str | Path, genimage_split: str = "val") -> LabelledFiles:
    """Every image under ``root`` (recursive, sorted) with its label from exact folder names.

    ``genimage_split``: in a GenImage-style tree holding both ``train`` and ``val``, keep only
    this split (``val`` to evaluate, ``train`` to train).
    """
    root = Path(root)
    listing = scan_folder(root)
    files = listing.images
    rel = [f.relative_to(root).parts[:-1] for f in files]
    split = genimage_split if _is_genimage_split_layout(rel) else None
    out = LabelledFiles(ignored=listing.ignored)
    for path, parts in zip(files, rel):
        if split is not None and any(x in ("ai", "nature") for x in parts) and split not in parts:
            continue  # the other GenImage split
        label = label_from_parts(parts)
        if label is not None:
            out.paths.append(path)
            out.labels.append(label)
        elif any(p in REAL_FOLDERS | FAKE_FOLDERS for p in parts):
            out.ambiguous.append(path)  # both a real and a fake folder on the path
        else:
            out.unlabelled.append(path)
    return out


@dataclass(frozen=True)
class TestSet:
    """One evaluation set: its folder name (the key in tables), display name and location."""

    __test__ = False  # a name pytest would otherwise try to collect from test modules
    name: str
    path: Path

    @property
    def display(self) -> str:
        return display_name(self.name)


def _has_label_folder(folder: Path) -> bool:
    """A label folder anywhere below (symbolic links followed, as everywhere)."""
    return any(here.name in REAL_FOLDERS | FAKE_FOLDERS
               for here, _ in walk(folder, FolderListing()))


def discover_sets(root: str | Path, names: Iterable[str] = ()) -> list[TestSet]:
    """Sets under ``root`` in table order.

    With ``names`` empty: every sub-folder containing a label folder somewhere below (registry sets
    first, in the official order, then the others alphabetically). With ``names``: exactly those,
    in the same ordering; a missing one is an error naming what exists.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"test root {root} is not a folder")
    names = list(names)
    if names:
        missing = [n for n in names if not (root / n).is_dir()]
        if missing:
            present = sorted(p.name for p in root.iterdir() if p.is_dir())
            raise FileNotFoundError(f"test set(s) {missing} not under {root}; present: {present}")
        chosen = names
    else:
        chosen = [p.name for p in root.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and _has_label_folder(p)]
    return [TestSet(n, root / n) for n in sorted(dict.fromkeys(chosen), key=order_key)]
