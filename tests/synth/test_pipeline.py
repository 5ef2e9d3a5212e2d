import dataclasses
import io
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image

from sdaie.synth.cameras import CAMERAS, camera_by_id
from sdaie.synth.demosaic import cfa_masks
from sdaie.synth.filters import highpass_residual
from sdaie.synth.jpeg import JpegSettings, encode_jpeg
from sdaie.synth.pipeline import (
    MID_GREY,
    expose,
    make_psf,
    metered_luminance,
    photograph,
    psf_sigma,
    shake_length,
)
from sdaie.synth.scenes import flat_scene, sample_scene
from sdaie.synth.settings import ISO_STOPS, sample_settings

SIZE = 96


def _settings(cam, **changes):
    """Neutral settings for controlled experiments: no flash, no bias, in focus, standard scene."""
    base = sample_settings(cam, np.random.default_rng(0))
    neutral = dict(flash=16, exposure_bias=Fraction(0), exposure_error_ev=0.0, scene_capture=0,
                   defocus=0.0, metering=1, white_balance=0, illuminant=(1.0, 1.0, 1.0),
                   exposure_time=Fraction(1, 1000), iso=100)
    return dataclasses.replace(base, **{**neutral, **changes})


def _luma_noise(rgb: np.ndarray) -> float:
    y = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return float(highpass_residual(y)[4:-4, 4:-4].std())


def _jpeg_roundtrip(rgb: np.ndarray, cam) -> np.ndarray:
    data = encode_jpeg(rgb, JpegSettings(cam.jpeg_quality[0], cam.subsampling))
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


@pytest.mark.parametrize("cam", CAMERAS, ids=lambda c: c.id)
def test_noise_grows_monotonically_with_iso_after_jpeg(cam):
    isos = [i for i in (100, 400, 1600, 6400) if i <= cam.iso[1]]
    if cam.iso[1] not in isos:
        isos.append(cam.iso[1])
    noise = []
    for iso in isos:
        s = _settings(cam, iso=iso)
        draws = [_luma_noise(_jpeg_roundtrip(photograph(cam, flat_scene(), s, SIZE,
                                                        np.random.default_rng(k)), cam))
                 for k in range(2)]
        noise.append(np.mean(draws))
    assert all(b > 1.15 * a for a, b in zip(noise, noise[1:])), (isos, noise)


def _hot_outliers(rgb: np.ndarray) -> float:
    r = highpass_residual(rgb.astype(np.float32).max(axis=-1))
    return float(np.mean(r > 12.0))


def test_hot_pixels_grow_with_exposure_time():
    cam = camera_by_id("Aster_A7")
    counts = []
    for den in (4000, 250, 15):
        s = _settings(cam, iso=400, exposure_time=Fraction(1, den), exposure_bias=Fraction(-1))
        counts.append(_hot_outliers(photograph(cam, flat_scene(), s, SIZE, np.random.default_rng(0))))
    assert counts[0] < counts[1] < counts[2], counts
    assert counts[2] - counts[0] > 0.01  # hot pixels, not noise, make the difference


def _sharpness(img: np.ndarray) -> float:
    return float((np.diff(img, axis=0) ** 2).mean() + (np.diff(img, axis=1) ** 2).mean())


def test_motion_blur_grows_with_exposure_time():
    cam = camera_by_id("Borealis_B500")
    scene = sample_scene(np.random.default_rng(4), "edges")
    sharp = [_sharpness(expose(cam, scene, _settings(cam, exposure_time=Fraction(1, d)), SIZE))
             for d in (4000, 250, 60, 15)]
    assert all(b < a for a, b in zip(sharp, sharp[1:])), sharp
    lengths = [shake_length(_settings(cam, exposure_time=Fraction(1, d))) for d in (4000, 250, 15)]
    assert lengths[0] < 1.0 < lengths[1] < lengths[2]


def test_blur_grows_with_f_number_and_with_focal_length_out_of_focus():
    cam = camera_by_id("Borealis_B500")
    sig = [psf_sigma(cam, _settings(cam, fnumber=Fraction(n * 10, 10))) for n in (4, 8, 16)]
    assert sig[0] < sig[1] < sig[2]
    blurred = [psf_sigma(cam, _settings(cam, defocus=1.0, focal_35mm=f)) for f in (30, 80, 200)]
    assert blurred[0] < blurred[1] < blurred[2]
    scene = sample_scene(np.random.default_rng(4), "edges")
    sharp = [_sharpness(expose(cam, scene, _settings(cam, fnumber=Fraction(n, 1)), SIZE))
             for n in (4, 16)]
    assert sharp[1] < sharp[0]


def test_psf_is_normalised_and_elongated_along_the_motion():
    psf = make_psf(0.5, 6.0, 0.0)
    assert psf.sum() == pytest.approx(1.0)
    c = psf.shape[0] // 2
    assert psf[c, :].sum() > 3 * psf[:, c].sum()  # horizontal motion spreads along the row


@pytest.mark.parametrize("mode", [1, 2, 3, 4, 5, 6])
def test_metering_puts_the_metered_luminance_on_mid_grey_plus_bias(mode):
    cam = camera_by_id("Delta_D1")
    scene = sample_scene(np.random.default_rng(9), "dead_leaves")
    s = _settings(cam, metering=mode, exposure_bias=Fraction(-2, 3))
    out = expose(cam, scene, s, SIZE)
    assert metered_luminance(out, mode) == pytest.approx(MID_GREY * 2 ** (-2 / 3), rel=1e-4)


@pytest.mark.parametrize("cam_id", ["Borealis_B500", "Cobalt_C90"])
def test_bilinear_demosaicing_leaves_the_cfa_periodic_trace(cam_id):
    # Interpolated green pixels average their neighbours, so their noise is smaller than at the
    # measured green sites (Popescu and Farid's CFA trace).
    cam = camera_by_id(cam_id)
    s = _settings(cam, iso=3200)
    img = photograph(cam, flat_scene(), s, SIZE, np.random.default_rng(0)).astype(np.float32)
    res = highpass_residual(img[..., 1])[4:-4, 4:-4]
    green = cfa_masks(cam.cfa, SIZE, SIZE)[1][4:-4, 4:-4]
    assert res[green].var() > 1.3 * res[~green].var()


def test_same_rng_same_photo_and_different_noise_draws_differ():
    cam = CAMERAS[0]
    s = _settings(cam, iso=800)
    scene = sample_scene(np.random.default_rng(1))
    a = photograph(cam, scene, s, SIZE, np.random.default_rng(5))
    b = photograph(cam, scene, s, SIZE, np.random.default_rng(5))
    c = photograph(cam, scene, s, SIZE, np.random.default_rng(6))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (SIZE, SIZE, 3) and a.dtype == np.uint8
    assert np.abs(a.astype(int) - c.astype(int)).mean() > 0.5


def test_odd_sizes_are_rejected():
    cam = CAMERAS[0]
    with pytest.raises(ValueError):
        photograph(cam, flat_scene(), _settings(cam), 95, np.random.default_rng(0))


def test_iso_stops_cover_the_brief_range():
    assert ISO_STOPS[0] == 100 and ISO_STOPS[-1] == 6400
