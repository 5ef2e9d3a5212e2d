"""Which files the authors' evaluation code reads, and how it labels them (protocol ``official``).

Their code lists files with ``os.walk`` (the file system's directory order, not sorted; every
file whatever its extension; symlinked sub-folders not entered), and labels by substring tests on
the path string rather than by exact folder names:

- binary evaluation (``bc_eval.py``): every sub-folder of the test root (``os.listdir``) is a set;
  every file below it is an image, real iff ``'0_real'`` occurs in its path, else generated (so a
  GenImage ``nature`` folder counts as generated there). The in-the-wild root is run the same way
  in a run of its own: each of its sub-folders a set, averaged on their own.
- one-class evaluation (``oc_main.py``): a set's real images are the files in folders whose path
  contains ``'0_real'``, its generated ones those in folders containing ``'1_fake'``; each list is
  shuffled with ``random.seed(42)`` and cut to its first 100000.
- one-class training (``extract_feature_training``): per folder, every file below it in walk order,
  shuffled with ``random.seed(42)``, first 5000.

The same files on the same file system therefore give the same lists; another file system may walk
in another order, which changes which 5000 training images are drawn (docs/reproducing.md).
A listed file that is not a decodable image is skipped and reported by the caller (their code
would stop).
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable, Sequence
from pathlib import Path

from sdaie.data.testsets import LabelledFiles, TestSet, order_key
from sdaie.labels import FAKE, REAL

SEED = 42  # random.seed(42) before every shuffle
ONE_CLASS_PATCH_CAP = 20_000  # patches kept per image (one-class features)
BINARY_PATCH_CAP = 40_000  # patches kept per image (binary evaluation)
TEST_FILES_CAP = 100_000  # one-class evaluation: files kept per class and set
REAL_MARK, FAKE_MARK = "0_real", "1_fake"


def walk_files(root: str | Path) -> list[str]:
    """Every file below ``root`` as ``os.walk`` yields it (top-down, directory order), written
    ``dirpath + '/' + name`` as their code writes it."""
    return [f"{dirpath}/{name}" for dirpath, _dirs, files in os.walk(str(root)) for name in files]


def shuffled_first(items: Sequence[str], n: int, seed: int = SEED) -> list[str]:
    """``random.seed(seed); random.shuffle(items); items[:n]`` without touching the global RNG."""
    out = list(items)
    random.Random(seed).shuffle(out)
    return out[:n]


def training_files(dirs: Iterable[str | Path], per_dir: int, seed: int = SEED) -> list[Path]:
    """One-class training images: per folder, walk order, shuffled with ``seed``, first ``per_dir``."""
    out: list[Path] = []
    for d in dirs:
        files = walk_files(d)
        if not files:
            raise FileNotFoundError(f"oneclass.train_dirs: no files under {d}")
        out += [Path(p) for p in shuffled_first(files, per_dir, seed)]
    return out


def binary_set_files(root: str | Path) -> LabelledFiles:
    """All files of one binary-evaluation set, real iff ``'0_real'`` is in the path string."""
    out = LabelledFiles()
    for p in walk_files(root):
        out.paths.append(Path(p))
        out.labels.append(REAL if REAL_MARK in p else FAKE)
    return out


def one_class_set_files(root: str | Path, cap: int = TEST_FILES_CAP,
                        seed: int = SEED) -> LabelledFiles:
    """Real files (folder path contains ``'0_real'``) then generated ones (``'1_fake'``), each
    list shuffled with ``seed`` and cut to ``cap``; a file under both marks is in both lists."""
    real, fake = [], []
    for dirpath, _dirs, files in os.walk(str(root)):
        real += [f"{dirpath}/{n}" for n in files] if REAL_MARK in dirpath else []
        fake += [f"{dirpath}/{n}" for n in files] if FAKE_MARK in dirpath else []
    real, fake = shuffled_first(real, cap, seed), shuffled_first(fake, cap, seed)
    return LabelledFiles(paths=[Path(p) for p in real + fake],
                         labels=[REAL] * len(real) + [FAKE] * len(fake))


def sub_folder_sets(root: str | Path, names: Sequence[str] = (), prefix: str = "") -> list[TestSet]:
    """Every sub-folder of ``root`` (``os.listdir``, hidden ones included) as a set, or exactly
    ``names``; table order. ``prefix`` goes before each set name (``wild/<root>/``)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"test root {root} is not a folder")
    present = [n for n in os.listdir(root) if (root / n).is_dir()]
    if names:
        missing = [n for n in names if n not in present]
        if missing:
            raise FileNotFoundError(f"test set(s) {missing} not under {root}; present: "
                                    f"{sorted(present)}")
        present = list(dict.fromkeys(names))
    return [TestSet(prefix + n, root / n) for n in sorted(present, key=order_key)]


def check_patch_cap(key: str, value: int, official: int) -> str:
    """'' if ``value`` is the official cap, else the one-line reason a config is refused."""
    if value == official:
        return ""
    return (f"{key}={value}, but the official protocol keeps the first {official} patches of an "
            f"image as the authors' code does; drop the override or use protocol spec")
