"""Spliced images: a generator's rendering of a region pasted and blended into a camera photo.

The generated pixels come from the same scene, under the same settings, as the photo (what an
inpainting model would put back), so the content continues across the seam and only the traces
differ: the camera's optics, mosaic, noise and sharpening outside, the generator's trace inside.
The region is a rectangle or an ellipse whose area is ``fraction**2`` of the image (the fractions
cycle over :data:`FRACTIONS`, several sizes per set), blended with a Gaussian-feathered edge;
the composite is then JPEG-encoded with the camera's settings as one file, as a spliced photo
would be re-saved. The ground-truth mask marks the pixels that are at least half generated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sdaie.synth.filters import gaussian_blur

FRACTIONS = (0.25, 0.375, 0.5)  # side of the pasted region over the image side
SHAPES = ("rectangle", "ellipse")
FEATHER_PX = 2.0  # sigma of the blending ramp across the seam


@dataclass(frozen=True)
class SpliceRegion:
    """Where the generated region sits: shape, bounding box (x0, y0, x1, y1), size fraction."""

    shape: str
    box: tuple[int, int, int, int]
    fraction: float

    def as_dict(self) -> dict[str, object]:
        return {"shape": self.shape, "box": list(self.box), "fraction": self.fraction}


def draw_region(size: int, fraction: float, rng: np.random.Generator) -> SpliceRegion:
    """A random shape of area about ``(fraction * size)**2``, aspect in [3/4, 4/3], fully inside."""
    aspect = float(np.exp(rng.uniform(np.log(0.75), np.log(4 / 3))))
    side = fraction * size
    w = int(round(min(side * np.sqrt(aspect), size - 2)))
    h = int(round(min(side / np.sqrt(aspect), size - 2)))
    x0 = int(rng.integers(1, size - w))
    y0 = int(rng.integers(1, size - h))
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    return SpliceRegion(shape, (x0, y0, x0 + w, y0 + h), float(fraction))


def region_alpha(size: int, region: SpliceRegion) -> np.ndarray:
    """Blending weight of the generated image per pixel, ``[size, size]`` float32 in [0, 1]."""
    x0, y0, x1, y1 = region.box
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    if region.shape == "rectangle":
        hard = (xx >= x0) & (xx < x1) & (yy >= y0) & (yy < y1)
    else:
        cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
        hard = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0
    return np.clip(gaussian_blur(hard.astype(np.float32), FEATHER_PX), 0.0, 1.0)


def splice(photo: np.ndarray, generated: np.ndarray,
           alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(composite uint8, ground-truth mask bool): ``alpha * generated + (1 - alpha) * photo``
    rounded; the mask is ``alpha >= 0.5``."""
    if photo.shape != generated.shape or photo.shape[:2] != alpha.shape:
        raise ValueError(f"shapes differ: photo {photo.shape}, generated {generated.shape}, "
                         f"alpha {alpha.shape}")
    a = alpha[..., None].astype(np.float32)
    out = a * generated.astype(np.float32) + (1.0 - a) * photo.astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8), alpha >= 0.5
