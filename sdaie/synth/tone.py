"""Tone curves (linear light -> display values) and the colour look applied after them.

Each simulated camera renders with its own curve; the generators borrow a camera's curve for each
image, so global brightness and contrast statistics match between photos and generated images.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def _srgb(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(np.maximum(x, 0.0031308), 1 / 2.4) - 0.055)


def _gamma_scurve(x: np.ndarray) -> np.ndarray:
    """Gamma 2.2 followed by a contrast S-curve (monotone for the strength used)."""
    y = np.power(x, 1 / 2.2)
    return y + 0.35 * y * (1.0 - y) * (2.0 * y - 1.0)


def _filmic(x: np.ndarray) -> np.ndarray:
    """Reinhard-style highlight roll-off, then gamma; maps 1 to 1."""
    a = 4.0
    y = (x * a / (1.0 + x * a)) / (a / (1.0 + a))
    return np.power(y, 1 / 2.2)


def _log(x: np.ndarray) -> np.ndarray:
    """A flat, log-like curve that lifts shadows (phones' HDR look)."""
    k = 40.0
    return np.log1p(k * x) / np.log1p(k)


TONE_CURVES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "srgb": _srgb,
    "gamma_scurve": _gamma_scurve,
    "filmic": _filmic,
    "log": _log,
}


def apply_tone(linear: np.ndarray, curve: str, saturation: float = 1.0) -> np.ndarray:
    """Clip linear RGB to [0, 1], apply the named curve, then scale chroma by ``saturation``."""
    if curve not in TONE_CURVES:
        raise ValueError(f"unknown tone curve {curve!r}; choose from {sorted(TONE_CURVES)}")
    y = TONE_CURVES[curve](np.clip(linear, 0.0, 1.0)).astype(np.float32)
    if saturation != 1.0:
        grey = y.mean(axis=-1, keepdims=True)
        y = grey + saturation * (y - grey)
    return y


def to_uint8(display: np.ndarray) -> np.ndarray:
    """Round display values in [0, 1] to 8 bits (clipping out-of-range values)."""
    return np.clip(np.rint(display * 255.0), 0, 255).astype(np.uint8)
