"""Pixel-level transforms: the binary detector's training augmentation and the robustness perturbations.

Everything here works on 8-bit RGB PIL images and returns one, so the patching code downstream is
the same for clean and perturbed inputs.

Gaussian blur follows ``scipy.ndimage.gaussian_filter`` applied to each colour channel separately
(the convention of the official evaluation, inherited from CNNSpot), without depending on SciPy:
kernel radius ``int(truncate * sigma + 0.5)`` with ``truncate = 4.0``, weights ``exp(-x^2 / 2
sigma^2)`` normalised to sum 1, boundary mode ``reflect`` (``d c b a | a b c d | d c b a``), rows
first and then columns. SciPy writes each pass into the uint8 image in place and so truncates
(C cast, not rounding) after each axis; ``quantize="truncate"`` (default) reproduces that, while
``quantize="round"`` and ``"none"`` are offered for other uses.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image

from sdaie.config import BinaryConfig

GAUSSIAN_TRUNCATE = 4.0


# --------------------------------------------------------------------------------------------
# Gaussian blur (SciPy convention)
# --------------------------------------------------------------------------------------------


def gaussian_kernel1d(sigma: float, truncate: float = GAUSSIAN_TRUNCATE) -> np.ndarray:
    """Normalised 1-D Gaussian weights of length ``2 r + 1``, ``r = int(truncate * sigma + 0.5)``."""
    radius = int(truncate * float(sigma) + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    phi = np.exp(-0.5 / (float(sigma) ** 2) * x**2)
    return phi / phi.sum()


def reflect_indices(n: int, radius: int) -> np.ndarray:
    """Indices ``-radius .. n-1+radius`` folded into ``[0, n)`` by half-sample reflection.

    Reflection is periodic with period ``2 n``, so a radius larger than the line still folds
    correctly (SciPy does the same).
    """
    idx = np.arange(-radius, n + radius) % (2 * n)
    return np.where(idx >= n, 2 * n - 1 - idx, idx)


def _blur_axis(arr: np.ndarray, weights: np.ndarray, axis: int) -> np.ndarray:
    """Correlate ``arr`` (float64) with a symmetric kernel along ``axis``, SciPy's summation order.

    SciPy computes ``w0 * x[i] + sum_{k=r..1} w_k * (x[i-k] + x[i+k])``; keeping that order keeps
    the result bit-identical, which matters once it is truncated to uint8.
    """
    radius = (len(weights) - 1) // 2
    n = arr.shape[axis]
    padded = np.take(arr, reflect_indices(n, radius), axis=axis)

    def window(offset: int) -> np.ndarray:  # x[i + offset] for i in 0..n-1
        sl = [slice(None)] * arr.ndim
        sl[axis] = slice(radius + offset, radius + offset + n)
        return padded[tuple(sl)]

    out = window(0) * weights[radius]
    for k in range(radius, 0, -1):
        out = out + (window(-k) + window(k)) * weights[radius - k]
    return out


def gaussian_blur_array(arr: np.ndarray, sigma: float, truncate: float = GAUSSIAN_TRUNCATE,
                        quantize: str = "truncate") -> np.ndarray:
    """Blur an ``H x W`` or ``H x W x C`` array, each channel on its own (never across channels).

    ``quantize`` applies to uint8 input only: ``"truncate"`` casts to uint8 after each axis as
    SciPy does with a uint8 output array; ``"round"`` rounds once at the end; ``"none"`` returns
    float64. Non-positive ``sigma`` returns an unchanged copy (SciPy skips such axes).
    """
    if quantize not in ("truncate", "round", "none"):
        raise ValueError(f"quantize must be truncate|round|none, got {quantize!r}")
    if sigma < 0:
        raise ValueError(f"blur sigma must be >= 0, got {sigma}")
    is_uint8 = arr.dtype == np.uint8
    if sigma <= 1e-15:
        return arr.copy() if quantize != "none" else arr.astype(np.float64)
    weights = gaussian_kernel1d(sigma, truncate)
    out = arr.astype(np.float64)
    for axis in (0, 1):  # rows (axis 0) first, like gaussian_filter over a 2-D channel
        out = _blur_axis(out, weights, axis)
        if is_uint8 and quantize == "truncate":
            out = np.clip(out, 0.0, 255.0).astype(np.uint8).astype(np.float64)
    if not is_uint8 or quantize == "none":
        return out
    if quantize == "round":
        out = np.rint(out)
    return np.clip(out, 0, 255).astype(np.uint8)


def gaussian_blur(img: Image.Image, sigma: float, quantize: str = "truncate") -> Image.Image:
    """Per-channel Gaussian blur of an RGB image (see the module docstring for the convention)."""
    arr = np.asarray(img.convert("RGB"))
    return Image.fromarray(gaussian_blur_array(arr, sigma, quantize=quantize), "RGB")


# --------------------------------------------------------------------------------------------
# JPEG and resizing
# --------------------------------------------------------------------------------------------


def jpeg_compress(img: Image.Image, quality: int) -> Image.Image:
    """Re-encode as JPEG at ``quality`` with Pillow (libjpeg defaults: 4:2:0) and decode again."""
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as out:
        out.load()
        return out.convert("RGB")


def resized_size(width: int, height: int, scale: float, protocol: str = "spec") -> tuple[int, int]:
    """(width, height) after scaling both sides by ``scale``, at least 1 pixel each.

    ``spec`` rounds to the nearest pixel; ``official`` floors, as the authors' evaluation does
    (``Resize((int(h * s), int(w * s)))``): a 333 x 251 image becomes 166 x 125 there, 166 x 126
    here. (Their code would fail on a side that floors to 0; here it stays 1 pixel.)
    """
    if scale <= 0:
        raise ValueError(f"resize scale must be > 0, got {scale}")
    if protocol == "official":
        return max(1, int(width * scale)), max(1, int(height * scale))
    if protocol != "spec":
        raise ValueError(f"protocol={protocol!r}; valid: spec, official")
    return max(1, round(width * scale)), max(1, round(height * scale))


def resize_by(img: Image.Image, scale: float, protocol: str = "spec") -> Image.Image:
    """Scale both sides by ``scale`` (sizes per :func:`resized_size`), bilinear."""
    return img.resize(resized_size(*img.size, scale, protocol), Image.BILINEAR)


def ensure_min_side(img: Image.Image, size: int = 64) -> Image.Image:
    """Images with a side under ``size`` become ``size x size`` (spec section 4), others unchanged."""
    if min(img.size) < size:
        return img.resize((size, size), Image.BILINEAR)
    return img


# --------------------------------------------------------------------------------------------
# Evaluation perturbations: "jpeg=Q", "blur=SIGMA", "resize=S"
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Perturbation:
    """One named robustness perturbation; ``tag`` is safe in file names and cache keys."""

    kind: str  # "none" | "jpeg" | "blur" | "resize"
    value: float = 0.0

    @property
    def tag(self) -> str:
        if self.kind == "none":
            return "clean"
        if self.kind == "jpeg":
            return f"jpeg{int(self.value)}"
        return f"{self.kind}{self.value:g}"

    @property
    def spec(self) -> str:
        if self.kind == "none":
            return "clean"
        return f"{self.kind}={int(self.value) if self.kind == 'jpeg' else self.value:g}"

    def __call__(self, img: Image.Image, protocol: str = "spec") -> Image.Image:
        """The perturbed image; ``protocol`` only changes the resize rounding (JPEG and blur are
        the same steps in both)."""
        if self.kind == "none":
            return img
        if self.kind == "jpeg":
            return jpeg_compress(img, int(self.value))
        if self.kind == "blur":
            return gaussian_blur(img, self.value)
        return resize_by(img, self.value, protocol)


CLEAN = Perturbation("none")


def parse_perturbation(spec: str) -> Perturbation:
    """``"jpeg=95"``, ``"blur=1.0"``, ``"resize=0.5"`` or ``"none"``/``""`` -> :class:`Perturbation`."""
    text = spec.strip().lower()
    if text in ("", "none", "clean"):
        return CLEAN
    if "=" not in text:
        raise ValueError(f"perturbation {spec!r}: expected jpeg=Q, blur=SIGMA or resize=S")
    kind, raw = (t.strip() for t in text.split("=", 1))
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"perturbation {spec!r}: {raw!r} is not a number") from None
    if kind == "jpeg":
        if value != int(value) or not 1 <= value <= 100:
            raise ValueError(f"perturbation {spec!r}: JPEG quality must be an integer in 1..100")
    elif kind == "blur":
        if value < 0:
            raise ValueError(f"perturbation {spec!r}: sigma must be >= 0")
    elif kind == "resize":
        if value <= 0:
            raise ValueError(f"perturbation {spec!r}: scale must be > 0")
    else:
        raise ValueError(f"perturbation {spec!r}: unknown kind {kind!r} (jpeg, blur, resize)")
    return Perturbation(kind, value)


def perturbation_list(specs: list[str]) -> list[Perturbation]:
    """Clean first, then each configured perturbation once, in the given order."""
    out = [CLEAN]
    for spec in specs:
        p = parse_perturbation(spec)
        if p not in out:
            out.append(p)
    return out


# --------------------------------------------------------------------------------------------
# Binary-detector training augmentation (spec section 4)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges; defaults are the spec's (all come from ``BinaryConfig``)."""

    p_resize: float = 0.3
    resize_range: tuple[int, int] = (64, 128)
    p_blur: float = 0.1
    blur_sigma: tuple[float, float] = (0.0, 1.0)
    p_jpeg: float = 0.25
    jpeg_quality: tuple[int, int] = (90, 99)
    min_side: int = 64

    @classmethod
    def from_binary(cls, bcfg: BinaryConfig) -> AugmentConfig:
        """The augmentation ``binary.*`` asks for."""
        return cls(bcfg.p_resize, tuple(bcfg.resize_range), bcfg.p_blur, tuple(bcfg.blur_sigma),
                   bcfg.p_jpeg, tuple(bcfg.jpeg_quality))


def augment(img: Image.Image, cfg: AugmentConfig, rng: random.Random) -> Image.Image:
    """Spec section 4, in the spec's order: small images to 64x64; maybe resize to a random square
    side in ``resize_range``; maybe blur with sigma ~ U(blur_sigma); maybe JPEG with an integer
    quality uniform in ``jpeg_quality`` (both ends included).

    ``rng`` is passed in (seeded per sample by the caller) so a sample is the same whichever
    DataLoader worker draws it.
    """
    img = ensure_min_side(img, cfg.min_side)
    if rng.random() < cfg.p_resize:
        side = rng.randint(int(cfg.resize_range[0]), int(cfg.resize_range[1]))
        img = img.resize((side, side), Image.BILINEAR)
    if rng.random() < cfg.p_blur:
        img = gaussian_blur(img, rng.uniform(float(cfg.blur_sigma[0]), float(cfg.blur_sigma[1])))
    if rng.random() < cfg.p_jpeg:
        img = jpeg_compress(img, rng.randint(int(cfg.jpeg_quality[0]), int(cfg.jpeg_quality[1])))
    return img


__all__ = [
    "AugmentConfig", "CLEAN", "GAUSSIAN_TRUNCATE", "Perturbation", "augment", "ensure_min_side",
    "gaussian_blur", "gaussian_blur_array", "gaussian_kernel1d", "jpeg_compress",
    "parse_perturbation", "perturbation_list", "reflect_indices", "resize_by", "resized_size",
]
