import numpy as np
import pytest

from sdaie.synth.filters import (
    box_mean,
    convolve_fft,
    correlate,
    gaussian_blur,
    gaussian_kernel1d,
    guided_smooth,
    highpass_residual,
)


def _reference_correlate(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Direct per-pixel sum over a reflect-padded image (independent of the shifted-slice code)."""
    kh, kw = kernel.shape
    p = np.pad(img, ((kh // 2,) * 2, (kw // 2,) * 2), mode="reflect")
    out = np.zeros_like(img, dtype=np.float64)
    for y in range(img.shape[0]):
        for x in range(img.shape[1]):
            out[y, x] = (p[y:y + kh, x:x + kw] * kernel).sum()
    return out


def test_correlate_matches_direct_sum():
    rng = np.random.default_rng(0)
    img = rng.random((9, 11))
    kernel = rng.standard_normal((5, 3))
    np.testing.assert_allclose(correlate(img, kernel), _reference_correlate(img, kernel), atol=1e-5)


def test_correlate_applies_to_every_channel():
    rng = np.random.default_rng(1)
    img = rng.random((8, 8, 3))
    k = rng.random((3, 3))
    out = correlate(img, k)
    for c in range(3):
        np.testing.assert_allclose(out[..., c], _reference_correlate(img[..., c], k), atol=1e-5)


def test_correlate_rejects_even_kernels():
    with pytest.raises(ValueError):
        correlate(np.zeros((4, 4)), np.ones((2, 2)))


def test_gaussian_kernel_is_normalised_and_symmetric():
    k = gaussian_kernel1d(1.3)
    assert k.sum() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(k, k[::-1])
    assert gaussian_kernel1d(0.0).tolist() == [1.0]


def test_convolve_fft_matches_correlate_for_a_point_symmetric_psf():
    rng = np.random.default_rng(2)
    img = rng.random((20, 24, 3)).astype(np.float32)
    k1 = gaussian_kernel1d(1.0)
    psf = np.outer(k1, k1)
    np.testing.assert_allclose(convolve_fft(img, psf), correlate(img, psf), atol=1e-5)


def test_convolve_fft_flips_an_asymmetric_kernel():
    img = np.zeros((16, 16, 1), dtype=np.float32)
    img[8, 8] = 1.0
    psf = np.zeros((3, 3))
    psf[1, 2] = 1.0  # convolution moves the impulse one pixel right
    out = convolve_fft(img, psf)
    assert out[8, 9, 0] == pytest.approx(1.0, abs=1e-6)
    assert abs(out.sum() - 1.0) < 1e-5


def test_box_mean_equals_direct_mean():
    rng = np.random.default_rng(3)
    img = rng.random((10, 12))
    np.testing.assert_allclose(box_mean(img, 2), _reference_correlate(img, np.full((5, 5), 1 / 25)),
                               atol=1e-5)


def test_gaussian_blur_preserves_constants_and_reduces_noise():
    rng = np.random.default_rng(4)
    const = np.full((16, 16, 3), 0.3, dtype=np.float32)
    np.testing.assert_allclose(gaussian_blur(const, 1.5), const, atol=1e-6)
    noise = rng.standard_normal((64, 64)).astype(np.float32)
    assert gaussian_blur(noise, 1.0).std() < 0.5 * noise.std()


def test_guided_smooth_flattens_noise_but_keeps_a_strong_edge():
    rng = np.random.default_rng(5)
    img = np.zeros((32, 32), dtype=np.float32)
    img[:, 16:] = 1.0
    noisy = img + 0.02 * rng.standard_normal(img.shape).astype(np.float32)
    out = guided_smooth(noisy, radius=2, eps=0.01)
    assert out[:, :12].std() < 0.5 * noisy[:, :12].std()
    assert out[:, 18:].mean() - out[:, :14].mean() > 0.95


def test_highpass_residual_is_zero_on_constants():
    assert np.abs(highpass_residual(np.full((8, 8), 7.0))).max() < 1e-5
