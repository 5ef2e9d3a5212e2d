"""Data sources (``data.source``) and decoders (``data.decoder``): where the pretext patches come
from, chosen by the config and never by how the index was built; the torchvision decoder gives
Pillow's pixels and Pillow's decisions."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sdaie.config import ConfigError
from sdaie.data.imageio import ImageLoadError, load_image
from sdaie.data.pairs import PairDataset
from sdaie.data.sources import (
    DECODERS,
    SOURCES,
    PhotoSource,
    ShardSource,
    check_source_fits_index,
    decode_torchvision,
    make_source,
)
from sdaie.pixels import normalize
from support.odd_inputs import make_odd_inputs

PHOTOS = Path(__file__).resolve().parents[1] / "fixtures" / "photos"


def _outcome(decode, path):
    try:
        return "ok", np.asarray(decode(path))
    except ImageLoadError as exc:
        return "error", str(exc)


def test_torchvision_decodes_real_camera_jpegs_to_pillows_pixels():
    photos = sorted(PHOTOS.glob("*.jpg"))
    assert len(photos) >= 10
    for p in photos:
        assert np.array_equal(np.asarray(decode_torchvision(p)), np.asarray(load_image(p))), p


@pytest.mark.parametrize("kind", ["420", "444", "progressive", "grey", "cmyk", "png", "rotated"])
def test_torchvision_gives_pillows_pixels_for_every_kind_of_file(tmp_path, kind):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (67, 93, 3), dtype=np.uint8)  # odd sizes: partial MCUs
    img = Image.fromarray(arr)
    path = tmp_path / f"x.{'png' if kind == 'png' else 'jpg'}"
    if kind == "grey":
        img.convert("L").save(path, quality=90)
    elif kind == "cmyk":
        img.convert("CMYK").save(path, quality=90)  # not decoded by torchvision: Pillow's path
    elif kind == "png":
        img.save(path)
    elif kind == "rotated":  # EXIF orientation 6: applied by neither
        exif = Image.Exif()
        exif[0x0112] = 6
        img.save(path, quality=90, exif=exif.tobytes())
    else:
        img.save(path, quality=90, subsampling={"420": 2, "444": 0}.get(kind, 2),
                 progressive=kind == "progressive")
    got, ref = np.asarray(decode_torchvision(path)), np.asarray(load_image(path))
    assert got.shape == ref.shape == (67, 93, 3) and np.array_equal(got, ref)


def test_torchvision_makes_pillows_decision_with_pillows_reason_on_odd_files(tmp_path):
    zoo = make_odd_inputs(tmp_path, seed=3, copies=1)
    assert len(zoo) > 50
    for f in zoo:
        (want, a), (got, b) = _outcome(load_image, f.path), _outcome(decode_torchvision, f.path)
        assert got == want, (f.kind, a if want == "error" else b)
        if want == "ok":
            assert np.array_equal(a, b), f.kind
        else:
            assert a == b, f.kind  # the same reason text


class Index:
    """An index of one photo with a bright 8-px frame and a dark inside; its 'crop' is the centre."""

    def __init__(self, tmp_path: Path, crops: bool = True):
        arr = np.full((160, 200, 3), 20, np.uint8)
        arr[:8], arr[-8:], arr[:, :8], arr[:, -8:] = 250, 250, 250, 250
        self.path = tmp_path / "photo.png"
        Image.fromarray(arr).save(self.path)
        self.crop_size = 64 if crops else None
        self.centre = np.ascontiguousarray(arr[48:112, 68:132])
        self.records = [{}, {}]
        self.labels = torch.zeros(2, 1)

    def image_path(self, i):
        return self.path

    def crop(self, i):
        return self.centre if self.crop_size else None

    def labels_tensor(self):
        return self.labels


def test_the_source_not_the_index_decides_where_patches_come_from(tmp_path):
    """The same index (with crops): 'photo' draws over the whole frame, edges included;
    'shards' only inside the centre crop."""
    index = Index(tmp_path)
    bright = {}
    for source in ("photo", "shards"):
        ds = PairDataset(index, [0, 1], n_patches=16, patch_size=16, source=source)
        patches = torch.cat([ds[(0, 1, seed)][0] for seed in range(20)])
        bright[source] = int((patches.amax(dim=(1, 2, 3)) > 1.5).sum())  # normalised 250 > 1.5
    assert bright["photo"] > 0 and bright["shards"] == 0


def test_sources_and_decoders_are_chosen_by_name_with_clear_errors(tmp_path):
    index = Index(tmp_path)
    assert isinstance(make_source("photo", index), PhotoSource)
    assert set(SOURCES) == {"photo", "shards", "authors"}
    assert isinstance(make_source("shards", index, "torchvision"), ShardSource)
    assert set(DECODERS) == {"pil", "torchvision"}
    with pytest.raises(ConfigError, match=r"data.source='pkl'; valid: \['authors', 'photo', 'shards'\]"):
        make_source("pkl", index)
    with pytest.raises(ConfigError, match=r"data.decoder='nvjpeg'; valid"):
        make_source("photo", index, "nvjpeg")
    with pytest.raises(ConfigError, match=r"holds no crops.*--crops 512.*data.source=photo"):
        make_source("shards", Index(tmp_path, crops=False))


def test_an_index_of_the_authors_tensors_needs_the_authors_source_and_only_it():
    check_source_fits_index("authors", True, "idx")
    check_source_fits_index("shards", False, "idx")
    with pytest.raises(ConfigError, match=r"idx indexes the authors' pkl_256 tensors.*data.source=authors"):
        check_source_fits_index("photo", True, "idx")
    with pytest.raises(ConfigError, match=r"sdaie import-authors.*idx indexes photos"):
        check_source_fits_index("authors", False, "idx")


def test_the_authors_source_cuts_their_tensors_as_their_random_crop(tmp_path):
    t = torch.randint(0, 256, (3, 80, 90), dtype=torch.uint8)
    torch.save(t, tmp_path / "a.pkl")
    index = Index(tmp_path)
    index.image_path = lambda i: tmp_path / "a.pkl"
    source = make_source("authors", index, patch_size=64)
    gen = torch.Generator().manual_seed(3)
    patches = source.draw(source.pixels(0), 2, 64, gen)
    ref = torch.Generator().manual_seed(3)
    for p in patches:  # per crop a top, then a left position (torchvision's RandomCrop)
        top = int(torch.randint(0, 80 - 64 + 1, (1,), generator=ref))
        left = int(torch.randint(0, 90 - 64 + 1, (1,), generator=ref))
        assert torch.equal(p, normalize(t[:, top:top + 64, left:left + 64].unsqueeze(0))[0])


def test_shards_fall_back_to_the_whole_photo_when_it_had_no_crop(tmp_path):
    index = Index(tmp_path)
    index.crop = lambda i: None  # a photo smaller than the crop size has none
    assert np.array_equal(np.asarray(make_source("shards", index).pixels(0)),
                          np.asarray(Image.open(index.path).convert("RGB")))


def test_torchvision_reads_the_file_once_and_refuses_what_pillow_refuses(tmp_path):
    p = tmp_path / "t.jpg"
    buf = io.BytesIO()
    Image.fromarray(np.zeros((80, 80, 3), np.uint8)).save(buf, "JPEG")
    p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])  # truncated
    with pytest.raises(ImageLoadError) as a:
        load_image(p)
    with pytest.raises(ImageLoadError) as b:
        decode_torchvision(p)
    assert str(a.value) == str(b.value) and b.value.path == str(p)
