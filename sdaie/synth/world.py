"""Writing the synthetic world: photos with EXIF, generator test sets and binary-training folders.

Layout under OUT::

    photos/<Make>_<Model>/NNNNN.jpg        camera photos with EXIF (pretext / one-class training)
    testsets/<generator>/0_real/NNNNN.jpg  held-out camera photos (no EXIF), one set per generator
    testsets/<generator>/1_fake/NNNNN.jpg  that generator's images (no EXIF)
    bc_train/{0_real,1_fake}/NNNNN.jpg     camera photos vs the training generator only
    bc_val/{0_real,1_fake}/NNNNN.jpg
    spliced/images/<generator>/0_real/NNNNN.jpg  camera photos (no EXIF), ``spliced_size`` px
    spliced/images/<generator>/1_fake/NNNNN.jpg  camera photos with a region of that generator
                                                 pasted in (:mod:`sdaie.synth.splice`)
    spliced/masks/<generator>/1_fake/NNNNN.png   ground truth: 255 where a pixel is generated
    world.json                             cameras, generators, counts, seed, every image's settings

Every image is drawn from its own random stream, seeded by (world seed, folder, index), so the
files do not depend on the order or the number of worker processes: the same seed gives
byte-identical files (given the same numpy and libjpeg). All real photos are distinct draws; only
``photos/`` carries EXIF, so metadata can never tell real from fake in the detection folders.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import zlib
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from sdaie.synth.cameras import CAMERAS, sample_camera
from sdaie.synth.generators import GENERATORS, TRAIN_GENERATOR
from sdaie.synth.jpeg import JpegSettings, encode_jpeg
from sdaie.synth.pipeline import photograph
from sdaie.synth.scenes import SCENE_KINDS, sample_scene
from sdaie.synth.settings import build_exif, exif_values, hidden_values, sample_settings
from sdaie.synth.splice import FRACTIONS, draw_region, region_alpha, splice

FORMAT = "sdaie-synth-world"
VERSION = 1
MIN_SIZE = 64  # one 64x64 patch
OUTPUTS = ("photos", "testsets", "bc_train", "bc_val", "spliced", "world.json")
NOTE = (
    "A synthetic camera world for testing and demonstrating SDAIE end to end on a CPU. Scenes "
    "(dead-leaves textures, gradients, edges, stripes, mixtures) are photographed by invented "
    "cameras whose pixels depend on their settings: sensor noise grows with ISO, motion blur with "
    "exposure time, optical blur with f-number and focal length, and each model has its own "
    "colour-filter phase, demosaicing, colour response, tone curve, sharpening and JPEG settings; "
    "the EXIF written into photos/ equals the settings used. The 'generators' draw the same scenes "
    "without any camera pipeline and leave simple artificial traces (upsampling checkerboard, "
    "over-smoothing, periodic decoder texture). Results on this world show that code runs and "
    "learns what it was built to learn; they say nothing about real cameras or real generators."
)
SETTINGS_NOTE = (
    "images[].settings are the EXIF values as stored: rationals as float, ApertureValue, "
    "ShutterSpeedValue and MaxApertureValue in APEX units (2*log2(N), -log2(t)); files outside "
    "photos/ carry no EXIF (has_exif false) and their settings are recorded here only. "
    "images[].hidden are simulated variables EXIF does not record."
)


@dataclass
class WorldInfo:
    """What :func:`make_world` wrote (the content of world.json plus the root folder)."""

    root: Path
    seed: int
    size: int
    counts: dict[str, int]
    cameras: list[dict[str, object]]
    generators: list[dict[str, object]]
    train_generator: str
    images: list[dict[str, object]] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "format": FORMAT, "version": VERSION, "note": NOTE, "settings_note": SETTINGS_NOTE,
            "seed": self.seed,
            "size": self.size, "counts": self.counts, "train_generator": self.train_generator,
            "scene_kinds": SCENE_KINDS, "cameras": self.cameras, "generators": self.generators,
            "images": self.images,
        }

    def records(self, split: str) -> list[dict[str, object]]:
        """Image records whose folder starts with ``split`` (e.g. "photos", "testsets/smooth")."""
        return [r for r in self.images if str(r["path"]).startswith(split.rstrip("/") + "/")]


def load_world(root: str | Path) -> WorldInfo:
    """Read ``root/world.json`` back into a :class:`WorldInfo`."""
    root = Path(root)
    data = json.loads((root / "world.json").read_text(encoding="utf-8"))
    if data.get("format") != FORMAT:
        raise ValueError(f"{root / 'world.json'} is not a synthetic world (format {data.get('format')!r})")
    return WorldInfo(root=root, seed=data["seed"], size=data["size"], counts=data["counts"],
                     cameras=data["cameras"], generators=data["generators"],
                     train_generator=data["train_generator"], images=data["images"])


# ------------------------------------------------------------------------------------------------
# One image
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Job:
    folder: str  # relative folder, e.g. "photos" or "testsets/smooth/1_fake"
    index: int
    generator: str | None  # None: a camera photo
    exif: bool
    splice: bool = False  # a camera photo with a region of ``generator`` pasted in
    size: int = 0  # image side; 0: the world's


def _rng(seed: int, folder: str, index: int) -> np.random.Generator:
    key = (zlib.crc32(folder.encode()), index)
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)  # never a truncated JPEG under the final name


def _make_image(job: _Job, root: str, seed: int, size: int) -> dict[str, object]:
    """Draw, render, encode and write one image; return its world.json record."""
    if job.splice:
        return _make_spliced(job, root, seed)
    size = job.size or size
    rng = _rng(seed, job.folder, job.index)
    cam = sample_camera(rng)  # the photographer, or the style a generator imitates
    settings = sample_settings(cam, rng)
    scene = sample_scene(rng)
    jpeg = JpegSettings(int(rng.choice(cam.jpeg_quality)), cam.subsampling)
    record: dict[str, object] = {"scene": scene.kind, "jpeg": jpeg.as_dict()}
    if job.generator is None:
        pixels = photograph(cam, scene, settings, size, rng)
        folder = f"{job.folder}/{cam.id}" if job.folder == "photos" else job.folder
        record.update(source="camera", camera=cam.id, has_exif=job.exif,
                      settings=exif_values(cam, settings), hidden=hidden_values(settings))
        data = encode_jpeg(pixels, jpeg, build_exif(cam, settings) if job.exif else None)
    else:
        pixels = GENERATORS[job.generator].synthesize(scene, cam, settings, size, rng)
        folder = job.folder
        record.update(source="generator", generator=job.generator, style_camera=cam.id,
                      has_exif=False)
        data = encode_jpeg(pixels, jpeg, None)
    rel = f"{folder}/{job.index:05d}.jpg"
    _write(Path(root) / rel, data)
    return {"path": rel, **record}


def _make_spliced(job: _Job, root: str, seed: int) -> dict[str, object]:
    """A camera photo with a region of the job's generator blended in, and its mask."""
    rng = _rng(seed, job.folder, job.index)
    cam = sample_camera(rng)
    settings = sample_settings(cam, rng)
    scene = sample_scene(rng)
    jpeg = JpegSettings(int(rng.choice(cam.jpeg_quality)), cam.subsampling)
    photo = photograph(cam, scene, settings, job.size, rng)
    generated = GENERATORS[job.generator].synthesize(scene, cam, settings, job.size, rng)
    region = draw_region(job.size, FRACTIONS[job.index % len(FRACTIONS)], rng)
    pixels, mask = splice(photo, generated, region_alpha(job.size, region))
    rel = f"{job.folder}/{job.index:05d}.jpg"
    mask_rel = rel.replace("spliced/images/", "spliced/masks/", 1)[:-4] + ".png"
    _write(Path(root) / rel, encode_jpeg(pixels, jpeg, None))
    buf = io.BytesIO()
    Image.fromarray((mask * 255).astype(np.uint8), mode="L").save(buf, format="PNG")
    _write(Path(root) / mask_rel, buf.getvalue())
    return {"path": rel, "scene": scene.kind, "jpeg": jpeg.as_dict(), "source": "spliced",
            "camera": cam.id, "generator": job.generator, "has_exif": False,
            "region": region.as_dict(), "mask": mask_rel, "generated_share": float(mask.mean()),
            "settings": exif_values(cam, settings), "hidden": hidden_values(settings)}


def _run(args: tuple[_Job, str, int, int]) -> dict[str, object]:
    return _make_image(*args)


# ------------------------------------------------------------------------------------------------
# The world
# ------------------------------------------------------------------------------------------------


def _jobs(photos: int, gen_images: int, bc_train: int, bc_val: int, spliced: int = 0,
          spliced_size: int = 0) -> list[_Job]:
    jobs = [_Job("photos", i, None, True) for i in range(photos)]
    for name in GENERATORS:
        jobs += [_Job(f"testsets/{name}/0_real", i, None, False) for i in range(gen_images)]
        jobs += [_Job(f"testsets/{name}/1_fake", i, name, False) for i in range(gen_images)]
    for split, n in (("bc_train", bc_train), ("bc_val", bc_val)):
        jobs += [_Job(f"{split}/0_real", i, None, False) for i in range(n)]
        jobs += [_Job(f"{split}/1_fake", i, TRAIN_GENERATOR, False) for i in range(n)]
    for name in GENERATORS:
        folder = f"spliced/images/{name}"
        jobs += [_Job(f"{folder}/0_real", i, None, False, size=spliced_size)
                 for i in range(spliced)]
        jobs += [_Job(f"{folder}/1_fake", i, name, False, True, spliced_size)
                 for i in range(spliced)]
    return jobs


def _prepare(out: Path, force: bool) -> None:
    existing = [name for name in OUTPUTS if (out / name).exists()]
    if existing and not force:
        raise FileExistsError(f"{out} already holds a world ({', '.join(existing)}); "
                              "pass force=True (--force) to replace it")
    for name in existing:
        target = out / name
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _results(jobs: list[_Job], root: str, seed: int, size: int, workers: int) -> Iterator[dict[str, object]]:
    args = [(job, root, seed, size) for job in jobs]
    if workers <= 1:
        yield from map(_run, args)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(_run, args, chunksize=8)


def make_world(out: str | Path, photos: int = 300, seed: int = 0, size: int = 192,
               gen_images: int = 100, bc_train: int | None = None, bc_val: int | None = None,
               workers: int = 1, force: bool = False, progress: bool = False,
               spliced: int = 0, spliced_size: int | None = None) -> WorldInfo:
    """Write the synthetic world into ``out`` and return its description.

    ``photos`` camera photos with EXIF; per generator, a test set of ``gen_images`` held-out
    photos and ``gen_images`` generated images; ``bc_train`` (default ``gen_images``) and
    ``bc_val`` (default a quarter of that, at least 1) images per class against the training
    generator. ``size`` is the side of every (square) image in pixels. ``spliced``: per
    generator, that many camera photos and as many spliced photos with their masks, of
    ``spliced_size`` pixels (default ``size``; larger images give finer heatmaps).
    """
    if size < MIN_SIZE or size % 2:
        raise ValueError(f"size must be an even number >= {MIN_SIZE} (64x64 patches), got {size}")
    spliced_size = size if spliced_size is None else spliced_size
    if spliced_size < MIN_SIZE or spliced_size % 2:
        raise ValueError(f"spliced_size must be an even number >= {MIN_SIZE}, got {spliced_size}")
    bc_train = gen_images if bc_train is None else bc_train
    bc_val = max(1, bc_train // 4) if bc_val is None else bc_val
    for name, n in (("photos", photos), ("gen_images", gen_images), ("bc_train", bc_train),
                    ("bc_val", bc_val), ("spliced", spliced)):
        if n < 0:
            raise ValueError(f"{name} must be >= 0, got {n}")
    out = Path(out)
    _prepare(out, force)
    jobs = _jobs(photos, gen_images, bc_train, bc_val, spliced, spliced_size)
    results = _results(jobs, str(out), seed, size, workers)
    if progress:
        results = tqdm(results, total=len(jobs), desc="synth", unit="img")
    images = list(results)
    info = WorldInfo(
        root=out, seed=seed, size=size,
        counts={"photos": photos, "gen_images": gen_images, "bc_train": bc_train, "bc_val": bc_val,
                **({"spliced": spliced, "spliced_size": spliced_size} if spliced else {}),
                "total_images": len(images)},
        cameras=[c.describe() for c in CAMERAS],
        generators=[g.describe() for g in GENERATORS.values()],
        train_generator=TRAIN_GENERATOR, images=images,
    )
    _write_json(out / "world.json", info.to_json())
    return info


def _write_json(path: Path, obj: object) -> None:
    """Atomic JSON write (tmp + rename) without importing torch (``sdaie.atomic`` does)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(obj, fh, indent=1, sort_keys=False)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
