"""Loading pixels for forensics: explicit RGB conversion, no EXIF orientation, clear errors.

Every stage reads pixels through :func:`load_image`, so every stage treats a bad file the same
way: an :class:`ImageLoadError` whose message is the reason, which the caller reports, counts
and skips (or, with ``--strict`` / ``run.strict``, stops on).

- EXIF orientation is never applied: rotating would move the sensor's pixel grid (colour-filter
  phase, JPEG block grid) away from where the camera put it, which is the trace the method reads.
  Images are used in their stored geometry.
- Colour: no ICC colour management; pixels are used as stored, converted to 8-bit RGB by
  :func:`to_rgb` (the table there says how each mode is converted).
- Truncated files are refused, never padded with grey: the container check of
  :mod:`sdaie.data.completeness` (the same one the index applies, with the same reason text) runs
  before decoding, and Pillow's ``LOAD_TRUNCATED_IMAGES`` stays False, its default.
- Formats: whatever Pillow decodes (JPEG, PNG, TIFF, BMP, WebP, AVIF in Pillow's wheels) plus
  HEIF/HEIC through pillow-heif, registered on first use. libheif applies the container's
  rotation and mirror (``irot``/``imir``) while decoding and offers no way to skip them, so HEIF
  pixels are in display geometry (a lossless 90-degree turn of the coded image at most).
- Folders are listed by :mod:`sdaie.data.walk` (re-exported here as :func:`list_images`).
- Decompression bombs: an image whose header claims more than :data:`MAX_PIXELS` pixels is
  refused before any pixel is decoded.
"""

from __future__ import annotations

import functools
import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from sdaie.data.completeness import incomplete_reason
from sdaie.data.walk import IMAGE_EXTENSIONS, list_images

__all__ = ["IMAGE_EXTENSIONS", "ImageLoadError", "MAX_PIXELS", "check_size", "list_images",
           "load_image", "register_decoders", "to_rgb"]

# Decompression-bomb guard: refuse headers claiming more pixels than this (3 bytes each once
# decoded, so at most ~540 MB). It is Pillow's own hard limit (2 x Image.MAX_IMAGE_PIXELS at its
# default), so there is one limit and one message; Pillow's softer warning at half of it is
# ignored, because 100- and 150-megapixel medium-format photos are legitimate camera images.
MAX_PIXELS = 178_956_970


class ImageLoadError(Exception):
    """A file that cannot be used as an image.

    ``str(exc)`` is the reason alone (the skipped-files reports put the path in its own field);
    ``exc.path`` is the file, set by :func:`load_image`, for messages such as ``--strict``'s.
    """

    def __init__(self, reason: str, path: str | Path | None = None):
        super().__init__(reason)
        self.path = None if path is None else str(path)


def to_rgb(img: Image.Image) -> Image.Image:
    """Explicit mode conversion to 8-bit RGB (raises ``ValueError`` for a mode it cannot convert).

    - RGB: unchanged. 16-bit RGB/RGBA PNGs arrive here as 8-bit RGB/RGBA already (Pillow keeps
      the high byte of each sample).
    - L, 1 (black/white -> 0/255), P (palette looked up), YCbCr: Pillow's ``convert('RGB')``.
    - RGBA, LA, PA, RGBa: alpha is dropped, not composited over a background (the colour samples
      are what the camera or generator wrote).
    - CMYK: Pillow's naive conversion, R = (255 - C)(255 - K) / 255 etc., no ICC profile.
    - I;16*: divided by 257 (0..65535 -> 0..255); I (32-bit): the same if any value exceeds 255,
      else used as is; F (float): NaN -> 0, clipped to [0, 1], times 255. All rounded to nearest.
    """
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        scale = 257.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 1.0
        arr = np.clip(np.rint(arr / scale), 0, 255).astype(np.uint8)
        return Image.fromarray(arr).convert("RGB")
    if mode == "F":
        arr = np.nan_to_num(np.asarray(img, dtype=np.float64), nan=0.0, posinf=1.0, neginf=0.0)
        arr = np.clip(np.rint(np.clip(arr, 0.0, 1.0) * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(arr).convert("RGB")
    return img.convert("RGB")


def check_size(width: int, height: int) -> None:
    """Raise :class:`ImageLoadError` for a header claiming no pixels or more than MAX_PIXELS."""
    if width < 1 or height < 1:
        raise ImageLoadError(f"image has no pixels ({width}x{height})")
    if width * height > MAX_PIXELS:
        raise ImageLoadError(f"decompression bomb refused: image claims {width}x{height} = "
                             f"{width * height} pixels, over the limit of {MAX_PIXELS} "
                             "(sdaie.data.imageio.MAX_PIXELS)")


@functools.cache
def register_decoders() -> bool:
    """Register pillow-heif's HEIF opener with Pillow (once per process); False without it.

    Done on first use rather than at import, so importing this module changes nothing global.
    Embedded thumbnails are disabled so a decode never returns the thumbnail instead of the image.
    """
    try:
        # reason: an optional plugin, loaded only when an image is opened
        from pillow_heif import register_heif_opener
    except ImportError:  # an environment without the dependency: HEIF files are then refused
        return False
    register_heif_opener(thumbnails=False)
    return True


def load_image(path: str | Path) -> Image.Image:
    """Decode ``path`` fully into an RGB image or raise :class:`ImageLoadError` with the reason."""
    try:
        return _decode(Path(path))
    except ImageLoadError as exc:
        exc.path = str(path)
        raise


def _decode(path: Path) -> Image.Image:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageLoadError(f"cannot read: {exc.strerror or exc}") from exc
    if not data:
        raise ImageLoadError("empty file (0 bytes)")
    return decode_bytes(data)


def decode_bytes(data: bytes) -> Image.Image:
    """A file's bytes -> RGB image, after the completeness check; :class:`ImageLoadError` else."""
    register_decoders()
    fh = io.BytesIO(data)
    reason = incomplete_reason(fh)
    if reason:
        raise ImageLoadError(reason)
    fh.seek(0)
    try:
        with warnings.catch_warnings():
            # Pillow warns (UserWarning) about corrupt EXIF while opening; pixels are unaffected
            # and the EXIF reader reports metadata problems itself. Its bomb warning is replaced
            # by the MAX_PIXELS check below.
            warnings.filterwarnings("ignore", category=UserWarning, module="PIL")
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(fh) as img:
                check_size(*img.size)
                img.load()
                mode = img.mode
                try:
                    return to_rgb(img)
                except ValueError as exc:
                    raise ImageLoadError(f"cannot convert mode {mode} to RGB: {exc}") from exc
    except ImageLoadError:
        raise
    except Image.DecompressionBombError as exc:  # Pillow's own check at open (same limit)
        raise ImageLoadError(f"decompression bomb refused: {exc}") from exc
    except Image.UnidentifiedImageError:
        raise ImageLoadError("not a recognised image format") from None
    except (OSError, ValueError, SyntaxError, EOFError, RuntimeError) as exc:
        # Truncated data, broken huffman tables, bad TIFF tags, ... all surface as one of these
        # (pillow-heif reports libheif's errors, e.g. a corrupt 'meta' box, as RuntimeError).
        raise ImageLoadError(f"cannot decode: {exc}") from exc
