"""Patches: random crops for training, the official adaptive grid for evaluation.

Both return CLIP-normalised float tensors ``[N, 3, S, S]`` (pixels / 255, then per-channel mean and
std), which is what the extractor expects before its own high-pass residual.

Training ("scrambled patches", spec section 1): ``n`` independent uniform positions (they may
overlap), in draw order; the network has no positional information, so order carries nothing.
Evaluation (spec section 3): every non-overlapping ``S x S`` tile of the centred crop to multiples
of ``S``, raster order, first ``cap`` kept.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from sdaie.pixels import normalize

PATCH = 64
GRID_CAP = 20_000  # one-class features (spec: 20000); the binary evaluation uses 40000
LAYOUTS = ("spec", "official")


def _as_array(img: Image.Image | np.ndarray) -> np.ndarray:
    """HxWx3 uint8 view (no copy for arrays, so memory-mapped shards stay lazy)."""
    if isinstance(img, Image.Image):
        if img.mode != "RGB":
            raise ValueError(f"expected an RGB image, got mode {img.mode} (use sdaie.data.imageio.to_rgb)")
        return np.asarray(img)
    if not (isinstance(img, np.ndarray) and img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3):
        raise ValueError("expected a PIL RGB image or an HxWx3 uint8 array")
    return img


def _chw(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)


def _resize_square(arr: np.ndarray, size: int) -> np.ndarray:
    # PIL bilinear, which is what torchvision.transforms.Resize((size, size)) does on PIL images.
    return np.asarray(Image.fromarray(arr).resize((size, size), Image.BILINEAR))


def random_patches(img: Image.Image | np.ndarray, n: int = 16, size: int = PATCH,
                   generator: torch.Generator | np.random.Generator | None = None) -> torch.Tensor:
    """``n`` random ``size x size`` crops ``[n, 3, size, size]``, normalised.

    An image whose short side is below ``size`` is first resized to ``size x size`` (as the
    official loaders do), so every image yields ``n`` patches.
    """
    if n < 1 or size < 1:
        raise ValueError(f"need n >= 1 and size >= 1, got n={n}, size={size}")
    arr = _as_array(img)
    h, w = arr.shape[:2]
    if min(h, w) < size:
        arr, h, w = _resize_square(np.ascontiguousarray(arr), size), size, size
    if isinstance(generator, np.random.Generator):
        tops = generator.integers(0, h - size + 1, size=n)
        lefts = generator.integers(0, w - size + 1, size=n)
    else:
        tops = torch.randint(0, h - size + 1, (n,), generator=generator).tolist()
        lefts = torch.randint(0, w - size + 1, (n,), generator=generator).tolist()
    crops = np.stack([arr[t:t + size, x:x + size] for t, x in zip(tops, lefts)])
    return normalize(torch.from_numpy(crops).permute(0, 3, 1, 2))


def grid_crop_box(width: int, height: int, size: int = PATCH,
                  layout: str = "spec") -> tuple[int, int, int, int]:
    """(top, left, crop_height, crop_width) of the centred crop, torchvision ``center_crop`` rounding.

    ``layout="spec"``: crop to (floor(w/S)*S wide, floor(h/S)*S high). ``layout="official"``: the
    authors' call ``CenterCrop((w', h'))`` reads its argument as (height, width), so on a non-square
    image the crop is transposed and zero-padded where it exceeds the image; this mode reproduces
    that for bit-parity with their reported numbers (square images are unaffected). The top/left
    may then be negative (padding).
    """
    cw, ch = width // size * size, height // size * size
    if layout == "official":
        cw, ch = ch, cw
    elif layout != "spec":
        raise ValueError(f"layout={layout!r}; valid: {list(LAYOUTS)}")
    # torchvision pads (left/top = floor of half the excess) then rounds half-to-even; same here.
    top = -((ch - height) // 2) if ch > height else int(round((height - ch) / 2.0))
    left = -((cw - width) // 2) if cw > width else int(round((width - cw) / 2.0))
    return top, left, ch, cw


def crop_padded(arr: np.ndarray, top: int, left: int, ch: int, cw: int) -> np.ndarray:
    """``arr[top:top+ch, left:left+cw]`` with zeros where the box leaves the image (the
    "official" layout: an excess of one pixel pads only the bottom or right side). One copy
    for the grid and the lattice, so both cut the very same pixels."""
    if ch <= arr.shape[0] and cw <= arr.shape[1]:
        return arr[top:top + ch, left:left + cw]
    canvas = np.zeros((ch, cw, 3), dtype=np.uint8)
    src = arr[max(top, 0):max(top, 0) + ch, max(left, 0):max(left, 0) + cw]
    canvas[max(-top, 0):max(-top, 0) + src.shape[0],
           max(-left, 0):max(-left, 0) + src.shape[1]] = src
    return canvas


def grid_patches(img: Image.Image, size: int = PATCH, cap: int = GRID_CAP,
                 layout: str = "spec", normalized: bool = True) -> torch.Tensor:
    """All non-overlapping ``size x size`` tiles ``[N, 3, size, size]``, raster order, normalised.

    Official adaptive tiling: if the short side is below ``size`` the image is resized to
    ``size x size`` (one patch); else it is centre-cropped to multiples of ``size`` and tiled row by
    row, left to right; the first ``cap`` tiles are kept. See :func:`grid_crop_box` for ``layout``.
    ``normalized=False`` keeps the tiles as uint8 (a quarter of the memory: 0.5 GB instead of 2 GB
    at 40000 tiles); ``PatchExtractor.image_feature`` normalises them chunk by chunk.
    """
    if cap < 1:
        raise ValueError(f"cap must be >= 1, got {cap}")
    arr = _as_array(img)
    h, w = arr.shape[:2]
    if min(h, w) < size:
        arr = _resize_square(np.ascontiguousarray(arr), size)
    else:
        arr = crop_padded(arr, *grid_crop_box(w, h, size, layout))
    rows, cols = arr.shape[0] // size, arr.shape[1] // size
    keep = min(rows * cols, cap)
    tiles = (arr.reshape(rows, size, cols, size, 3).transpose(0, 2, 4, 1, 3)
             .reshape(rows * cols, 3, size, size)[:keep])
    tiles_t = torch.from_numpy(np.ascontiguousarray(tiles))
    return normalize(tiles_t) if normalized else tiles_t
