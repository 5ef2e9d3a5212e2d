import io
import math
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image

from sdaie.synth.cameras import CAMERAS, camera_by_id
from sdaie.synth.jpeg import JpegSettings, encode_jpeg
from sdaie.synth.settings import (
    F_STOPS,
    FLASH_SLOWEST,
    FLASH_SYNC,
    ISO_STOPS,
    build_exif,
    exif_values,
    sample_settings,
    widest_fnumber,
)


@pytest.mark.parametrize("cam", CAMERAS, ids=lambda c: c.id)
def test_settings_stay_within_the_camera_ranges(cam):
    rng = np.random.default_rng(0)
    for _ in range(60):
        s = sample_settings(cam, rng)
        assert cam.iso[0] <= s.iso <= cam.iso[1] and s.iso in ISO_STOPS
        assert Fraction(1, 4000) <= s.exposure_time <= Fraction(1, 15)
        assert s.exposure_time.numerator == 1
        assert cam.lens.f_min - 0.05 <= s.focal_length <= cam.lens.f_max + 0.05
        assert float(s.fnumber) in F_STOPS
        assert float(s.fnumber) >= widest_fnumber(cam, float(s.focal_length)) - 0.05
        assert s.focal_35mm == round(float(s.focal_length) * cam.crop)
        assert s.flash in cam.flash and s.metering in cam.metering
        assert s.exposure_mode in cam.exposure_mode and s.scene_capture in cam.scene_capture
        assert s.exposure_bias.denominator in (1, 3) and abs(s.exposure_bias) <= 2
        if s.flash_fired:
            assert FLASH_SYNC <= s.exposure_time <= FLASH_SLOWEST
        if s.exposure_mode == 1:
            assert s.exposure_program == 1
        assert cam.years[0] <= int(s.datetime[:4]) <= cam.years[1]


def test_apex_values_agree_with_the_settings():
    s = sample_settings(CAMERAS[2], np.random.default_rng(3))
    assert float(s.aperture_value) == pytest.approx(2 * math.log2(float(s.fnumber)), abs=0.005)
    assert float(s.shutter_speed_value) == pytest.approx(-math.log2(float(s.exposure_time)), abs=5e-4)


@pytest.mark.parametrize("cam", CAMERAS, ids=lambda c: c.id)
def test_exif_reads_back_through_exifread(cam, tmp_path, exif_of):
    rng = np.random.default_rng(42)
    for k in range(5):
        s = sample_settings(cam, rng)
        data = encode_jpeg(np.zeros((16, 16, 3), np.uint8), JpegSettings(90, "4:2:0"), build_exif(cam, s))
        path = tmp_path / f"{k}.jpg"
        path.write_bytes(data)
        got = exif_of(path)
        want = exif_values(cam, s)
        assert set(got) == set(want)
        for name, value in want.items():
            if isinstance(value, float):
                assert got[name] == pytest.approx(value, rel=1e-12), name
            else:
                assert got[name] == value, name


def test_negative_exposure_bias_is_a_signed_rational(tmp_path, exif_of):
    cam = camera_by_id("Borealis_B500")
    rng = np.random.default_rng(0)
    s = next(s for s in (sample_settings(cam, rng) for _ in range(500)) if s.exposure_bias < 0)
    path = tmp_path / "neg.jpg"
    path.write_bytes(encode_jpeg(np.zeros((8, 8, 3), np.uint8), JpegSettings(90, "4:4:4"),
                                 build_exif(cam, s)))
    assert exif_of(path)["ExposureBiasValue"] == pytest.approx(float(s.exposure_bias))


def test_without_exif_the_jpeg_has_no_exif():
    data = encode_jpeg(np.zeros((8, 8, 3), np.uint8), JpegSettings(90, "4:2:0"))
    assert b"Exif\x00\x00" not in data
    with Image.open(io.BytesIO(data)) as img:
        assert img.format == "JPEG" and not img.getexif()


def test_camera_catalogue_gives_the_model_head_classes():
    makes = {c.make for c in CAMERAS}
    assert len(CAMERAS) >= 6 and len(makes) >= 4
    assert len({c.id for c in CAMERAS}) == len(CAMERAS)
    with pytest.raises(KeyError):
        camera_by_id("Nope_X")
    for c in CAMERAS:
        np.testing.assert_allclose(np.sum(c.colour_matrix, axis=1), 1.0, atol=1e-9)


def test_meter_exposure_follows_the_exposure_equation():
    from sdaie.synth.settings import meter_exposure

    shutters = [Fraction(1, d) for d in (4000, 2000, 1000, 500, 250, 125, 60, 50, 30, 15)]
    # EV100 10 at f/4, ISO 100: t = 16 / 2^10 = 1/64 s -> nearest stop 1/60, 0.093 EV over
    n, iso, t, miss = meter_exposure(10.0, [4.0], [100], Fraction(0), shutters, 50)
    assert (n, iso, t) == (4.0, 100, Fraction(1, 60)) and miss == pytest.approx(math.log2(64 / 60))
    # +1 EV compensation doubles the time
    assert meter_exposure(10.0, [4.0], [100], Fraction(1), shutters, 50)[2] == Fraction(1, 30)
    # dim light with auto ISO: raised from 100 until 1/50 s is enough (needs >= 1225) -> 1250
    n, iso, t, miss = meter_exposure(5.0, [2.8], [100, 400, 800, 1250, 1600], Fraction(0), shutters, 50)
    assert (iso, t) == (1250, Fraction(1, 50)) and abs(miss) < 0.05
    # ISO set by hand: the time is clamped at the slowest stop and the frame is under-exposed
    n, iso, t, miss = meter_exposure(2.0, [2.8], [100], Fraction(0), shutters, 50)
    assert (iso, t) == (100, Fraction(1, 15))
    assert miss == pytest.approx(math.log2((1 / 15) / (2.8 ** 2 / 2 ** 2)))
    # bright light: the program stops down until the fastest shutter suffices (f/2, f/2.8 too open)
    n, iso, t, miss = meter_exposure(15.0, [2.0, 2.8, 4.0, 5.6], [100], Fraction(0), shutters, 50)
    assert (n, t) == (4.0, Fraction(1, 2000)) and miss == pytest.approx(math.log2(2048 / 2000))


def test_settings_imply_their_scene_light_and_slow_shutters_go_with_dim_light():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(1)
    shots = [sample_settings(CAMERAS[k % len(CAMERAS)], rng) for k in range(400)]
    for s in shots:
        if s.exposure_mode != 1:  # no hand-made error: the miss is the clamping alone
            t_needed = float(s.exposure_time) / 2 ** s.exposure_error_ev
            ev = math.log2(float(s.fnumber) ** 2 / t_needed) - math.log2(s.iso / 100) + float(s.exposure_bias)
            assert ev == pytest.approx(s.scene_ev, abs=1e-9)
    rho = spearmanr([s.scene_ev for s in shots], [float(s.exposure_time) for s in shots]).statistic
    assert rho < -0.5
