"""A heatmap: one detector score per patch of one image, its flagged regions, its ``.npz`` file.

A patch score is the detector's own score computed from that patch (with the context chosen in
:mod:`sdaie.models.patchwise`): p(fake) for the binary detector, the GMM log-likelihood for the
one-class detector. A patch is *flagged* when its score is on the fake side of the detector's
threshold (the rule of :class:`sdaie.labels.Decision`) and lies wholly in the image (padding
cells of the "official" layout never are). Connected flagged patches (8-neighbour
adjacency on the lattice) form a *region*, reported as the bounding box of its patches, clipped
to the image. An image with a region whose flagged patches are under ``partial_share`` of its
patches is "partly generated": evidence of a local change, not of a whole generated image.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from sdaie.atomic import atomic_savez
from sdaie.data.patchgrid import PatchGrid
from sdaie.labels import Decision

FORMAT = "sdaie-heatmap"
VERSION = 1
PARTIAL_SHARE = 0.5  # flagged share below which an image with a region is "partly generated"


@dataclass
class Region:
    """Connected flagged patches: pixel box (x0, y0, x1, y1), patch count, most extreme score."""

    box: tuple[int, int, int, int]
    patches: int
    peak: float

    def as_dict(self) -> dict[str, object]:
        return {"box": list(self.box), "patches": self.patches, "peak": self.peak}

    @classmethod
    def from_dict(cls, d: dict) -> Region:
        """Back from :meth:`as_dict` (a result row's regions, so they are not computed again)."""
        return cls(tuple(int(v) for v in d["box"]), int(d["patches"]), float(d["peak"]))


@dataclass
class PatchMap:
    """Scores ``[rows, cols]`` of the lattice ``grid`` (NaN: a patch that gave no finite score).

    ``valid`` marks the cells lying wholly in the image (:meth:`PatchGrid.valid_cells`, the
    default); the others (official-layout padding) are never flagged nor counted in the share.
    """

    scores: np.ndarray
    grid: PatchGrid
    detector: str  # "bc" (p_fake) | "oc" (log-likelihood)
    context: str
    window: int
    threshold: float
    fake_when_higher: bool
    valid: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.valid = self.grid.valid_cells() if self.valid is None else np.asarray(self.valid, bool)
        if self.valid.shape != self.scores.shape:
            raise ValueError(f"valid mask {self.valid.shape} != scores {self.scores.shape}")

    @property
    def decision(self) -> Decision:
        return Decision(self.threshold, self.fake_when_higher)

    def fake_scores(self) -> np.ndarray:
        """Scores turned so that higher means more likely generated."""
        return self.decision.fake_score(self.scores)

    def flagged(self) -> np.ndarray:
        """Valid patches on the fake side of the threshold (a NaN one-class score counts as
        flagged, as the image rule counts it; a NaN p_fake does not)."""
        return self.decision.predict_fake(self.scores) & self.valid

    def share_flagged(self) -> float:
        """Flagged share of the valid patches (NaN when there is none)."""
        n = int(self.valid.sum())
        return float(self.flagged().sum() / n) if n else math.nan

    def regions(self, min_patches: int = 1) -> list[Region]:
        """Connected flagged patches with at least ``min_patches`` patches, largest first."""
        flags = self.flagged()
        boxes = self.grid.boxes().reshape(self.grid.rows, self.grid.cols, 4)
        fake = self.fake_scores()
        out = []
        for cells in connected_components(flags):
            if len(cells) < min_patches:
                continue
            r, c = np.array(cells).T
            b = boxes[r, c]
            box = (max(int(b[:, 0].min()), 0), max(int(b[:, 1].min()), 0),
                   min(int(b[:, 2].max()), self.grid.width), min(int(b[:, 3].max()), self.grid.height))
            peak = float(np.nanmax(fake[r, c])) if np.isfinite(fake[r, c]).any() else math.nan
            out.append(Region(box, len(cells), peak if self.fake_when_higher else -peak))
        return sorted(out, key=lambda g: -g.patches)

    def pixel_scores(self) -> np.ndarray:
        """``[height, width]`` mean score of the patches covering each pixel (NaN: none)."""
        return pixel_mean(self.scores, self.grid)

    def save(self, path: str | Path, **meta: object) -> Path:
        """``.npz`` (no pickle): scores, validity mask, boxes, stride, detector; the rest as JSON."""
        header = {"format": FORMAT, "version": VERSION, "detector": self.detector,
                  "context": self.context, "window": self.window,
                  "threshold": self.threshold, "fake_when_higher": self.fake_when_higher,
                  "grid": asdict(self.grid), **meta}
        return atomic_savez(path, scores=self.scores, valid=self.valid, boxes=self.grid.boxes(),
                            stride=np.int64(self.grid.stride), patch_size=np.int64(self.grid.size),
                            detector=np.array(self.detector), threshold=np.float64(self.threshold),
                            header=np.array(json.dumps(header, default=str)))


def load_patch_map(path: str | Path) -> tuple[PatchMap, dict]:
    """A map written by :meth:`PatchMap.save`, and the extra metadata saved with it."""
    with np.load(path, allow_pickle=False) as z:
        header = json.loads(str(z["header"]))
        scores = z["scores"]
        valid = z["valid"] if "valid" in z.files else np.ones(scores.shape, bool)  # pre-mask file
    if header.get("format") != FORMAT:
        raise ValueError(f"{path}: not an sdaie heatmap (format {header.get('format')!r})")
    keys = ("format", "version", "detector", "context", "window", "threshold",
            "fake_when_higher", "grid")
    pm = PatchMap(scores, PatchGrid(**header["grid"]), header["detector"], header["context"],
                  int(header["window"]), float(header["threshold"]),
                  bool(header["fake_when_higher"]), valid)
    return pm, {k: v for k, v in header.items() if k not in keys}


def connected_components(mask: np.ndarray) -> list[list[tuple[int, int]]]:
    """Cells of each 8-connected component of ``True`` cells, in raster order of first cell."""
    seen = np.zeros_like(mask, dtype=bool)
    rows, cols = mask.shape
    out = []
    for r0, c0 in zip(*np.nonzero(mask)):
        if seen[r0, c0]:
            continue
        seen[r0, c0] = True
        stack, cells = [(int(r0), int(c0))], []
        while stack:
            r, c = stack.pop()
            cells.append((r, c))
            for rr in range(max(r - 1, 0), min(r + 2, rows)):
                for cc in range(max(c - 1, 0), min(c + 2, cols)):
                    if mask[rr, cc] and not seen[rr, cc]:
                        seen[rr, cc] = True
                        stack.append((rr, cc))
        out.append(sorted(cells))
    return out


def block_mean(scores: np.ndarray, grid: PatchGrid) -> np.ndarray:
    """Mean score per ``stride``-pixel block of the patched area, ``[rows + step - 1, cols +
    step - 1]``: each block is covered by up to ``step x step`` patches (fewer at the edges); a
    NaN patch score makes its blocks NaN. The first block's corner is ``(grid.left, grid.top)``."""
    m = grid.step
    total = np.zeros((grid.rows + m - 1, grid.cols + m - 1))
    count = np.zeros_like(total)
    for dr in range(m):
        for dc in range(m):
            total[dr:dr + grid.rows, dc:dc + grid.cols] += scores
            count[dr:dr + grid.rows, dc:dc + grid.cols] += 1
    return total / count


def pixel_mean(scores: np.ndarray, grid: PatchGrid) -> np.ndarray:
    """Mean of the scores of the patches covering each pixel of the image (NaN where none does)."""
    out = np.full((grid.height, grid.width), np.nan)
    if grid.resized:
        out[:] = scores.reshape(-1)[0]
        return out
    s = grid.stride
    blocks = np.repeat(np.repeat(block_mean(scores, grid), s, axis=0), s, axis=1)
    y0, x0 = grid.top, grid.left
    ys = slice(max(y0, 0), min(y0 + blocks.shape[0], grid.height))
    xs = slice(max(x0, 0), min(x0 + blocks.shape[1], grid.width))
    out[ys, xs] = blocks[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]
    return out
