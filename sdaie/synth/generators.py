"""Simulated image generators: the same scenes, no camera pipeline, each with its own trace.

A generator image starts from the very scene sampler the cameras use and from a "style" camera
(drawn with the cameras' weights) whose exposure habits, white balance, tone curve, saturation and
JPEG settings it imitates, as a generator trained on photographs would. What it lacks is the
camera: no optics, colour-filter mosaic, demosaicing, sensor noise or sharpening. In their place
each generator leaves a trace inspired by a family of real generators:

- ``upconv``: renders at half resolution and upsamples with a fixed, slightly unbalanced
  transposed-convolution kernel (the checkerboard of GAN decoders); noise injected at low
  resolution becomes blocky. This is the training generator (the "ProGAN" role).
- ``smooth``: an over-denoised image: the clean render plus noise, flattened by an edge-preserving
  filter, then a tiny uniform dither.
- ``spectral``: a latent-decoder look: a content-modulated periodic 8x8 texture (spectral peaks at
  multiples of 1/8 cycle per pixel) and band-limited residual noise.

These are caricatures chosen to be distinguishable from the simulated cameras in different ways,
so a detector trained on one generator can be tested on the others. They are not models of any
real generator.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sdaie.synth.cameras import CameraModel
from sdaie.synth.filters import correlate, gaussian_blur, guided_smooth
from sdaie.synth.pipeline import MID_GREY, SCENE_LOOK, metered_luminance
from sdaie.synth.scenes import Scene, render
from sdaie.synth.settings import Settings
from sdaie.synth.tone import apply_tone, to_uint8

TRAIN_GENERATOR = "upconv"


def _fixed_rng(name: str) -> np.random.Generator:
    """A generator's own "weights" are fixed: seeded by its name, not by the world seed."""
    return np.random.default_rng(zlib.crc32(f"generator:{name}".encode()))


def clean_render(scene: Scene, style: CameraModel, s: Settings, size: int) -> np.ndarray:
    """The scene under the style camera's light, exposure, white balance and tone, without a camera.

    Returns display values in [0, 1] (float32, (size, size, 3)).
    """
    lin = render(scene, size) * np.asarray(s.illuminant, dtype=np.float32)
    ev = float(s.exposure_bias) + s.exposure_error_ev + SCENE_LOOK[s.scene_capture][2]
    lin *= MID_GREY * 2.0 ** ev / metered_luminance(lin, s.metering)
    if s.white_balance == 0:  # auto: grey world, as the cameras do
        means = lin.reshape(-1, 3).mean(axis=0)
        lin *= np.clip(means.mean() / np.maximum(means, 1e-6), 0.25, 4.0).astype(np.float32)
    return apply_tone(lin, style.tone, saturation=style.saturation * SCENE_LOOK[s.scene_capture][0])


@functools.lru_cache(maxsize=1)
def _upconv_kernels() -> np.ndarray:
    """Three 5x5 transposed-convolution kernels (one per channel) with unbalanced phases."""
    rng = _fixed_rng("upconv")
    taps = np.array([0.25, 0.75, 0.75, 0.25, 0.0])  # bilinear x2: each output phase sums to 1
    base = np.outer(taps, taps)
    kernels = base[None] + 0.008 * rng.standard_normal((3, 5, 5)) * (base[None] > 0)
    return kernels.astype(np.float32)


def _upconv(scene: Scene, style: CameraModel, s: Settings, size: int,
            rng: np.random.Generator) -> np.ndarray:
    low = clean_render(scene, style, s, size // 2)
    sigma = float(np.exp(rng.uniform(np.log(0.5), np.log(4.0)))) / 255.0
    low = low + sigma * rng.standard_normal(low.shape, dtype=np.float32)
    up = np.zeros((size, size, 3), dtype=np.float32)
    up[::2, ::2] = low
    out = np.stack([correlate(up[..., c], k) for c, k in enumerate(_upconv_kernels())], axis=-1)
    return to_uint8(out)


def _smooth(scene: Scene, style: CameraModel, s: Settings, size: int,
            rng: np.random.Generator) -> np.ndarray:
    img = clean_render(scene, style, s, size)
    sigma_in = float(np.exp(rng.uniform(np.log(2.0), np.log(10.0)))) / 255.0
    noisy = img + sigma_in * rng.standard_normal(img.shape, dtype=np.float32)
    eps = float(np.exp(rng.uniform(np.log(2e-3), np.log(1e-2))))
    out = guided_smooth(noisy, radius=2, eps=eps)
    dither = float(rng.uniform(0.5, 1.5)) / 255.0
    return to_uint8(out + rng.uniform(-dither, dither, out.shape).astype(np.float32))


@functools.lru_cache(maxsize=1)
def _latent_tile() -> np.ndarray:
    """The decoder's fixed 8x8 texture per channel (zero mean, unit std)."""
    tile = _fixed_rng("spectral").standard_normal((8, 8, 3))
    tile = (tile - tile.mean(axis=(0, 1))) / tile.std(axis=(0, 1))
    return tile.astype(np.float32)


def _spectral(scene: Scene, style: CameraModel, s: Settings, size: int,
              rng: np.random.Generator) -> np.ndarray:
    img = gaussian_blur(clean_render(scene, style, s, size), 0.5)
    reps = -(-size // 8)
    pattern = np.tile(_latent_tile(), (reps, reps, 1))[:size, :size]
    amp = float(rng.uniform(1.0, 3.0)) / 255.0
    img = img + amp * pattern * (0.3 + img)
    noise = gaussian_blur(rng.standard_normal(img.shape, dtype=np.float32), 0.7)
    noise /= max(float(noise.std()), 1e-6)
    img = img + float(np.exp(rng.uniform(np.log(0.5), np.log(3.0)))) / 255.0 * noise
    return to_uint8(img)


@dataclass(frozen=True)
class GeneratorModel:
    name: str
    description: str
    synthesize: Callable[[Scene, CameraModel, Settings, int, np.random.Generator], np.ndarray]

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "description": self.description,
                "role": "train+test" if self.name == TRAIN_GENERATOR else "test"}


GENERATORS: dict[str, GeneratorModel] = {
    g.name: g for g in (
        GeneratorModel("upconv", "half-resolution render, x2 transposed convolution with a fixed "
                       "unbalanced kernel (checkerboard), noise injected before upsampling", _upconv),
        GeneratorModel("smooth", "clean render plus noise, edge-preserving over-smoothing (guided "
                       "filter), tiny uniform dither", _smooth),
        GeneratorModel("spectral", "slightly soft render with a content-modulated periodic 8x8 "
                       "decoder texture (spectral peaks) and band-limited residual noise", _spectral),
    )
}
