"""Per-photo shooting settings: sampled from a camera's ranges, written back as consistent EXIF.

Exposure follows the exposure equation, as in a real camera: each photo is taken under a scene
light level (EV at ISO 100, a hidden variable: bright daylight about 15, indoors 5-9, night 2-7),
the f-number and, when the photographer fixes it, the ISO are chosen (any stop the light allows
within the shutter range), and the shutter time is what the meter then needs,
t = N^2 / 2^(EV100 + log2(ISO/100) - bias). With auto ISO the camera raises the ISO only when t
would be slower than the hand-holdable 1/(35 mm focal length); in bright light the program (not
aperture priority or manual) stops down when even the fastest shutter would over-expose. A time outside
the camera's range is clamped and the frame comes out over- or under-exposed by the difference.
So, as in real photos, slow shutters go with dim scenes and high ISO (and a time says something
about the light), instead of three independent draws that would imply impossible scenes (a night
scene at 1/4000 s, f/16, ISO 100).

Values live on the grids cameras really use (third stops for ISO, shutter speed and f-number;
tenths of a millimetre for zoom positions; thirds of an EV for compensation) and are kept as exact
fractions, so the EXIF rationals equal the values the simulation used. Hidden per-photo variables
that EXIF does not record (illuminant colour, hand shake, focus error) are drawn here too, so one
random stream fixes everything about a photo.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from PIL import Image
from PIL.TiffImagePlugin import IFDRational

from sdaie.synth.cameras import CameraModel

ISO_STOPS = (100, 125, 160, 200, 250, 320, 400, 500, 640, 800, 1000, 1250, 1600, 2000, 2500,
             3200, 4000, 5000, 6400)
SHUTTER_DENOMINATORS = (4000, 3200, 2500, 2000, 1600, 1250, 1000, 800, 640, 500, 400, 320, 250,
                        200, 160, 125, 100, 80, 60, 50, 40, 30, 25, 20, 15)  # 1/4000 .. 1/15 s
F_STOPS = (1.8, 2.0, 2.2, 2.5, 2.8, 3.2, 3.5, 4.0, 4.5, 5.0, 5.6, 6.3, 7.1, 8.0, 9.0, 10.0, 11.0,
           13.0, 14.0, 16.0)
FLASH_SYNC = Fraction(1, 250)  # with flash, the shutter is no faster than the sync speed ...
FLASH_SLOWEST = Fraction(1, 30)  # ... and no slower than hand-holdable
AUTO_ISO_SHARE = 0.6  # photos whose ISO the camera picks (the rest: set by hand, for the light)
SCENE_EV = {"day": (6.0, 12.5), "night": (2.0, 6.0), "flash": (3.0, 8.0)}  # EV100, uniform

# EXIF tag numbers (IFD0 and the Exif sub-IFD 0x8769).
_IFD0 = {"Make": 0x010F, "Model": 0x0110, "Orientation": 0x0112, "DateTime": 0x0132}
_EXIF_IFD = 0x8769
_EXIF = {
    "ExposureTime": 0x829A, "FNumber": 0x829D, "ExposureProgram": 0x8822, "ISOSpeedRatings": 0x8827,
    "DateTimeOriginal": 0x9003, "ShutterSpeedValue": 0x9201, "ApertureValue": 0x9202,
    "ExposureBiasValue": 0x9204, "MaxApertureValue": 0x9205, "MeteringMode": 0x9207,
    "Flash": 0x9209, "FocalLength": 0x920A, "ExposureMode": 0xA402, "WhiteBalance": 0xA403,
    "FocalLengthIn35mmFilm": 0xA405, "SceneCaptureType": 0xA406, "LensModel": 0xA434,
}


@dataclass(frozen=True)
class Settings:
    """Everything that determines one photo besides the scene and the sensor noise draw."""

    iso: int
    exposure_time: Fraction
    fnumber: Fraction
    focal_length: Fraction
    focal_35mm: int
    max_aperture: Fraction  # APEX value of the lens's widest aperture at this focal length
    exposure_bias: Fraction  # EV
    flash: int
    metering: int
    exposure_mode: int
    exposure_program: int
    white_balance: int
    scene_capture: int
    datetime: str
    # Hidden variables (not in EXIF).
    illuminant: tuple[float, float, float]  # RGB gains of the light source (G = 1)
    shake: float  # how unsteady the hand is (scales the motion-blur length)
    shake_angle: float
    defocus: float  # 0 (in focus) .. 1 (far out of focus)
    exposure_error_ev: float  # the frame misses the meter's target (manual error, clamped time)
    scene_ev: float = 12.0  # light level of the scene, EV at ISO 100

    @property
    def flash_fired(self) -> bool:
        return bool(self.flash & 1)

    @property
    def aperture_value(self) -> Fraction:
        return Fraction(round(2 * math.log2(self.fnumber) * 100), 100)

    @property
    def shutter_speed_value(self) -> Fraction:
        return Fraction(round(-math.log2(self.exposure_time) * 1000), 1000)


def _choice(rng: np.random.Generator, probs: dict[int, float]) -> int:
    codes = list(probs)
    p = np.asarray([probs[c] for c in codes], dtype=np.float64)
    return int(codes[int(rng.choice(len(codes), p=p / p.sum()))])


def widest_fnumber(cam: CameraModel, focal: float) -> float:
    """The lens's widest aperture at ``focal`` (log-interpolated across the zoom range)."""
    lens = cam.lens
    if lens.f_max <= lens.f_min:
        return lens.n_wide
    t = math.log(focal / lens.f_min) / math.log(lens.f_max / lens.f_min)
    return lens.n_wide * (lens.n_tele / lens.n_wide) ** t


def _illuminant(tau: float) -> tuple[float, float, float]:
    """Light colour from warm (tau 0, tungsten-like) to cool (tau 1, shade-like), G normalised to 1."""
    warm, cool = np.log([1.0, 0.78, 0.5]), np.log([0.8, 0.92, 1.12])
    rgb = np.exp(warm * (1 - tau) + cool * tau)
    rgb = rgb / rgb[1]
    return (float(rgb[0]), 1.0, float(rgb[2]))


def needed_time(scene_ev: float, fnumber: float, iso: int, bias: Fraction) -> float:
    """Shutter time (s) the meter asks for: t = N^2 / 2^(EV100 + log2(ISO/100) - bias)."""
    return fnumber ** 2 / 2.0 ** (scene_ev + math.log2(iso / 100) - float(bias))


def meter_exposure(scene_ev: float, fnumbers: list[float], isos: list[int], bias: Fraction,
                   shutters: list[Fraction], focal_35mm: int) -> tuple[float, int, Fraction, float]:
    """(f-number, ISO, shutter time, exposure miss in EV) the exposure equation gives for this light.

    ``fnumbers`` starts with the chosen aperture, followed by the smaller ones the program may
    stop down to when even the fastest shutter would over-expose (one entry: aperture fixed).
    ``isos`` are the stops the camera may use (one entry when the ISO is set by hand); from the
    first, it raises the ISO while the needed time is slower than 1/``focal_35mm`` s. The time
    is the nearest (in stops) of ``shutters``; the miss is log2(t_used / t_needed).
    """
    def needed(n: float, i: int) -> float:
        return needed_time(scene_ev, n, i, bias)

    handheld, fastest = 1.0 / max(focal_35mm, 1), float(min(shutters))
    k = 0
    while k + 1 < len(isos) and needed(fnumbers[0], isos[k]) > handheld:
        k += 1
    j = 0
    while j + 1 < len(fnumbers) and needed(fnumbers[j], isos[k]) < fastest:
        j += 1
    t = needed(fnumbers[j], isos[k])
    used = min(shutters, key=lambda s: abs(math.log2(float(s) / t)))
    return fnumbers[j], int(isos[k]), used, math.log2(float(used) / t)


def _optics(cam: CameraModel, rng: np.random.Generator
            ) -> tuple[Fraction, Fraction, list[float], Fraction]:
    """Focal length (log-uniform over the zoom), the widest aperture there (APEX, as
    MaxApertureValue stores it), the workable f-stops and the chosen one."""
    lens = cam.lens
    if lens.f_max > lens.f_min:
        f_mm = math.exp(rng.uniform(math.log(lens.f_min), math.log(lens.f_max)))
        focal = Fraction(round(f_mm * 10), 10)
    else:
        focal = Fraction(round(lens.f_min * 10), 10)
    n_wide = widest_fnumber(cam, float(focal))
    max_aperture = Fraction(round(2 * math.log2(n_wide) * 100), 100)
    stops = [n for n in F_STOPS if n >= n_wide - 0.05 and n <= lens.n_stop + 1e-9] or [F_STOPS[0]]
    fnumber = Fraction(round(stops[int(rng.integers(len(stops)))] * 10), 10)
    return focal, max_aperture, stops, fnumber


def _bias_and_program(cam: CameraModel, rng: np.random.Generator,
                      mode: int) -> tuple[Fraction, int]:
    """Exposure compensation (thirds of a stop; bracketing frames at -1, 0, +1 EV) and the
    exposure program (manual mode forces program 1)."""
    if mode == 2:  # auto bracketing: the frame is one of -1, 0, +1 EV
        bias = Fraction(int(rng.choice([-3, 0, 3])), 3)
    elif rng.random() < cam.bias_prob:
        bias = Fraction(int(rng.choice([k for k in range(-6, 7) if k])), 3)
    else:
        bias = Fraction(0)
    program = 1 if mode == 1 else int(cam.programs[int(rng.integers(len(cam.programs)))])
    return bias, program


def _capture_time(cam: CameraModel, rng: np.random.Generator) -> dt.datetime:
    """A uniform second within the camera's years on the market."""
    start = dt.datetime(cam.years[0], 1, 1)
    span = (dt.datetime(cam.years[1] + 1, 1, 1) - start).total_seconds()
    return start + dt.timedelta(seconds=int(rng.integers(int(span))))


def sample_settings(cam: CameraModel, rng: np.random.Generator) -> Settings:
    """Draw one photo's settings from the camera's ranges and habits."""
    flash = _choice(rng, cam.flash)
    metering = _choice(rng, cam.metering)
    mode = _choice(rng, cam.exposure_mode)
    scene = _choice(rng, cam.scene_capture)
    wb = int(rng.random() < cam.manual_wb)

    isos = [i for i in ISO_STOPS if cam.iso[0] <= i <= cam.iso[1]]
    auto_iso = rng.random() < AUTO_ISO_SHARE
    iso_pick = rng.random()  # which of the workable stops a hand-set ISO is
    shutters = [Fraction(1, d) for d in SHUTTER_DENOMINATORS]
    if flash & 1:
        shutters = [t for t in shutters if FLASH_SYNC <= t <= FLASH_SLOWEST]
    light = "flash" if flash & 1 else "night" if scene == 3 else "day"
    scene_ev = float(rng.uniform(*SCENE_EV[light]))

    focal, max_aperture, stops, fnumber = _optics(cam, rng)
    bias, program = _bias_and_program(cam, rng, mode)
    chosen = float(fnumber)
    shift = mode != 1 and program != 3  # manual and aperture priority keep the chosen aperture
    apertures = [chosen] + ([n for n in stops if n > chosen] if shift else [])
    if not auto_iso:  # set by hand, for the light: any stop whose time the shutter can give
        fit = [i for i in isos
               if min(shutters) <= needed_time(scene_ev, chosen, i, bias) <= max(shutters)]
        fit = fit or [isos[-1] if needed_time(scene_ev, chosen, isos[-1], bias) > max(shutters)
                      else isos[0]]
        isos = [fit[min(int(iso_pick * len(fit)), len(fit) - 1)]]
    n_used, iso, exposure_time, miss_ev = meter_exposure(
        scene_ev, apertures, isos, bias, shutters, round(float(focal) * cam.crop))
    fnumber = Fraction(round(n_used * 10), 10)

    when = _capture_time(cam, rng)
    tau = rng.uniform(0.55, 0.65) if flash & 1 else rng.uniform(0.0, 0.45 if scene == 3 else 1.0)
    return Settings(
        iso=iso, exposure_time=exposure_time, fnumber=fnumber, focal_length=focal,
        focal_35mm=int(round(float(focal) * cam.crop)), max_aperture=max_aperture,
        exposure_bias=bias, flash=flash, metering=metering, exposure_mode=mode,
        exposure_program=program, white_balance=wb, scene_capture=scene,
        datetime=when.strftime("%Y:%m:%d %H:%M:%S"),
        illuminant=_illuminant(float(tau)),
        shake=float(rng.uniform(0.7, 1.3)), shake_angle=float(rng.uniform(0, math.pi)),
        defocus=float(rng.random() ** 2),
        exposure_error_ev=miss_ev + (float(rng.uniform(-0.7, 0.7)) if mode == 1 else 0.0),
        scene_ev=scene_ev,
    )


def exif_values(cam: CameraModel, s: Settings) -> dict[str, object]:
    """Canonical EXIF name -> value as a reader should return it (rationals as float)."""
    values: dict[str, object] = {
        "Make": cam.make, "Model": cam.model, "DateTimeOriginal": s.datetime,
        "ExposureTime": float(s.exposure_time), "FNumber": float(s.fnumber),
        "ISOSpeedRatings": s.iso, "FocalLength": float(s.focal_length),
        "FocalLengthIn35mmFilm": s.focal_35mm, "MaxApertureValue": float(s.max_aperture),
        "ApertureValue": float(s.aperture_value), "ShutterSpeedValue": float(s.shutter_speed_value),
        "ExposureBiasValue": float(s.exposure_bias), "Flash": s.flash, "MeteringMode": s.metering,
        "ExposureMode": s.exposure_mode, "ExposureProgram": s.exposure_program,
        "WhiteBalance": s.white_balance, "SceneCaptureType": s.scene_capture,
    }
    if cam.lens.name:
        values["LensModel"] = cam.lens.name
    return values


def hidden_values(s: Settings) -> dict[str, object]:
    """The simulated variables EXIF does not carry (for world.json)."""
    return {"illuminant": list(s.illuminant), "shake": s.shake, "shake_angle": s.shake_angle,
            "defocus": s.defocus, "exposure_error_ev": s.exposure_error_ev, "scene_ev": s.scene_ev}


def _rational(f: Fraction) -> IFDRational:
    return IFDRational(f.numerator, f.denominator)


def build_exif(cam: CameraModel, s: Settings) -> Image.Exif:
    """The photo's EXIF: Make/Model/DateTime in IFD0, shooting settings in the Exif sub-IFD."""
    exif = Image.Exif()
    exif[_IFD0["Make"]] = cam.make
    exif[_IFD0["Model"]] = cam.model
    exif[_IFD0["Orientation"]] = 1
    exif[_IFD0["DateTime"]] = s.datetime
    sub = exif.get_ifd(_EXIF_IFD)
    rationals = {
        "ExposureTime": s.exposure_time, "FNumber": s.fnumber, "FocalLength": s.focal_length,
        "ShutterSpeedValue": s.shutter_speed_value, "ApertureValue": s.aperture_value,
        "ExposureBiasValue": s.exposure_bias, "MaxApertureValue": s.max_aperture,
    }
    for name, value in rationals.items():
        sub[_EXIF[name]] = _rational(value)
    shorts = {
        "ISOSpeedRatings": s.iso, "ExposureProgram": s.exposure_program, "MeteringMode": s.metering,
        "Flash": s.flash, "ExposureMode": s.exposure_mode, "WhiteBalance": s.white_balance,
        "FocalLengthIn35mmFilm": s.focal_35mm, "SceneCaptureType": s.scene_capture,
    }
    for name, value in shorts.items():
        sub[_EXIF[name]] = int(value)
    sub[_EXIF["DateTimeOriginal"]] = s.datetime
    if cam.lens.name:
        sub[_EXIF["LensModel"]] = cam.lens.name
    return exif
