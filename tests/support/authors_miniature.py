"""A miniature of the authors' backbone training data: ``exif_tags.json`` + ``pkl_256/<name>.pkl``.

Format (issue 17, from their loader): file name -> tag dict with three leading fields, then the 14
values in head-slot order; the seven categorical slots hold class ids under their official names.
Each tensor is a torch-saved uint8 ``3 x H x W``. The names of the leading and ordinal fields are
not known; only their positions matter to their loader, so they are invented here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

CLASSES = {1: ("Make", 7), 5: ("Model", 6), 6: ("Flash", 4), 9: ("Metering Mode", 6),
           10: ("Exposure Mode", 4), 11: ("White Balance Mode", 2), 13: ("Scene Capture Type", 5)}
RANK_FIELDS = {0: "Focal Length", 2: "F Number", 3: "Exposure Time", 4: "ISO Speed",
               7: "Exposure Bias", 8: "Max Aperture", 12: "Focal Length 35mm"}
SIZES = [(80, 96), (64, 64), (100, 70), (64, 130), (72, 72)]  # (H, W) of the good tensors


def _tags(rng: np.random.Generator, w: int, h: int) -> dict:
    tags: dict = {"Image Width": w, "Image Length": h, "Date Time": "2019:05:04 10:00:00"}
    for slot in range(14):
        if slot in CLASSES:
            name, k = CLASSES[slot]
            tags[name] = int(rng.integers(k))
        else:  # a few repeated values so that ties (target 1) occur
            tags[RANK_FIELDS[slot]] = float(rng.choice([0.004, 0.01, 1 / 3, 2.8, 35.0, 100.0]))
    return tags


def write_miniature(root: Path, n: int = 8, seed: int = 0) -> dict:
    """``n`` good photos, then the cases their data could hold: a name with ``jpg`` inside, a
    tensor smaller than a patch, a class id out of range, a missing tensor file."""
    rng = np.random.default_rng(seed)
    pkl = root / "pkl_256"
    pkl.mkdir(parents=True, exist_ok=True)
    tags: dict = {}
    for i in range(n):
        h, w = SIZES[i % len(SIZES)]
        name = f"jpg_series/IMG_{i:04d}.jpg" if i == 3 else f"IMG_{i:04d}.jpg"
        tags[name] = _tags(rng, w, h)
        path = pkl / name.replace("jpg", "pkl")
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(torch.from_numpy(rng.integers(0, 256, (3, h, w), dtype=np.uint8)), path)
    tags["TINY_0001.jpg"] = _tags(rng, 20, 20)
    torch.save(torch.zeros(3, 20, 20, dtype=torch.uint8), pkl / "TINY_0001.pkl")
    bad = _tags(rng, 64, 64)
    bad["Flash"] = 9
    tags["BADFLASH.jpg"] = bad
    torch.save(torch.zeros(3, 64, 64, dtype=torch.uint8), pkl / "BADFLASH.pkl")
    tags["MISSING.jpg"] = _tags(rng, 64, 64)
    (root / "exif_tags.json").write_text(json.dumps(tags), encoding="utf-8")
    return tags
