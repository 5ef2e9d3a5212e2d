"""Where the patches of a training photo come from (``data.source``), and how JPEGs are decoded
(``data.decoder``).

The pretext task draws 16 random 64x64 patches per photo. From which pixels is a choice of the
run, made by one config key, never by the way the index happened to be built:

- ``photo``: the whole photograph, decoded at native resolution: the paper's text ("random
  positions"). Every position of the frame can be drawn, edges and corners included, where
  vignetting and lens aberrations carry focal length and aperture. No extra disk.
- ``shards``: the index's native-resolution centre crops (``sdaie index --crops 512``),
  memory-mapped: fast, but on a 4000x3000 photo the 512x512 centre is 2 % of the frame, and the
  edges are never seen. 768 KB of extra disk per photo. A photo smaller than the crop has no
  crop and is decoded whole. An index without crops is refused.
- ``authors``: the authors' own training data, preprocessed 256-px tensors (``pkl_256``, whose
  preparation is not published) indexed by ``sdaie import-authors``; 16 crops drawn as their
  ``RandomCrop(64)`` draws them (:mod:`sdaie.data.authors`).

A source gives a photo's pixels (:meth:`Source.pixels`) and cuts its patches
(:meth:`Source.draw`); a new one is a subclass registered in :data:`SOURCES`.
``docs/gpu-nodes.md`` states each source's deviation from the paper's text and the authors'
code, its disk size and its measured loader rate.

Decoders (``photo`` and the whole-photo fallback of ``shards``): ``pil`` is the reference,
:func:`~sdaie.data.imageio.load_image`, as every other stage decodes. ``torchvision`` decodes
JPEGs through ``torchvision.io.decode_jpeg`` (libjpeg-turbo without Pillow's overhead: about
2.5x faster on a 12-megapixel photo here) and gave pixels identical to ``pil`` on every photo
tested (``tests/data/test_sources.py``; ``sdaie gpu-check`` compares them on the user's
libraries); it keeps ``load_image``'s checks (size limit, no EXIF orientation), and any file
it does not decode as a plain RGB or greyscale JPEG goes through ``load_image`` itself, so the
accept / reject decision and its reason are the reference's. torchvision 0.29 deprecates its
image decoders (in favour of TorchCodec); a torchvision without ``decode_jpeg`` is refused by
name rather than replaced by another decoder in silence.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
import torch
from PIL import Image

from sdaie.config import ConfigError
from sdaie.data.authors import AuthorsTensors
from sdaie.data.imageio import ImageLoadError, check_size, load_image
from sdaie.data.patches import random_patches

Pixels = Any  # an RGB PIL image or an HxWx3 uint8 array (both accepted by random_patches)


class IndexPixels(Protocol):
    """What a source needs from the photo index."""

    crop_size: int | None

    def image_path(self, i: int) -> Any: ...
    def crop(self, i: int) -> np.ndarray | None: ...


def decode_pil(path: str | Path) -> Pixels:
    return load_image(path)


def _jpeg_header_mode(data: bytes) -> str | None:
    """The mode of a JPEG whose header passes ``load_image``'s checks; None for anything else."""
    if data[:2] != b"\xff\xd8":
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as img:
                check_size(*img.size)
                return img.mode if img.format == "JPEG" else None
    except (ImageLoadError, OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError):
        return None


def decode_torchvision(path: str | Path) -> Pixels:
    """An RGB or greyscale JPEG through ``torchvision.io.decode_jpeg`` (HxWx3 uint8); anything
    else, or anything it refuses, through :func:`~sdaie.data.imageio.load_image`."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return load_image(path)  # its reason for the unreadable file
    if _jpeg_header_mode(data) not in ("RGB", "L"):
        return load_image(path)
    from torchvision.io import ImageReadMode, decode_jpeg  # here: only this decoder needs it

    try:
        with warnings.catch_warnings():  # torchvision 0.29 deprecates its image decoders
            warnings.simplefilter("ignore", DeprecationWarning)
            chw = decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8),
                              mode=ImageReadMode.RGB, apply_exif_orientation=False)
    except RuntimeError:
        return load_image(path)  # e.g. truncated: the reference decides and says why
    return chw.permute(1, 2, 0).numpy()


def _torchvision_available() -> bool:
    try:
        from torchvision.io import decode_jpeg  # noqa: F401  # here: only to ask
    except ImportError:
        return False
    return True


DECODERS: dict[str, Callable[[str | Path], Pixels]] = {"pil": decode_pil,
                                                        "torchvision": decode_torchvision}


def get_decoder(name: str) -> Callable[[str | Path], Pixels]:
    try:
        decoder = DECODERS[name]
    except KeyError:
        raise ConfigError(f"data.decoder={name!r}; valid: {sorted(DECODERS)}") from None
    if name == "torchvision" and not _torchvision_available():
        raise ConfigError("data.decoder=torchvision: this torchvision has no io.decode_jpeg "
                          "(deprecated in 0.29, to be removed); use data.decoder=pil")
    return decoder


class Source:
    """Pixels of photo ``i`` of an index, and the random patches cut from them."""

    name: ClassVar[str]

    def __init__(self, index: IndexPixels, decoder: str = "pil", patch_size: int = 64) -> None:
        self.index = index
        self.decoder = decoder
        self.decode = get_decoder(decoder)
        self.patch_size = patch_size

    def pixels(self, i: int) -> Pixels:
        """Raises :class:`~sdaie.data.imageio.ImageLoadError` for an unusable photo."""
        raise NotImplementedError

    def draw(self, pixels: Pixels, n: int, size: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` normalised ``size x size`` patches at uniform random positions."""
        return random_patches(pixels, n=n, size=size, generator=generator)


class PhotoSource(Source):
    """The whole photograph (the paper's text)."""

    name = "photo"

    def pixels(self, i: int) -> Pixels:
        return self.decode(self.index.image_path(i))


class ShardSource(Source):
    """The index's centre crop of each photo (the whole photo when it is smaller than the crop)."""

    name = "shards"

    def __init__(self, index: IndexPixels, decoder: str = "pil", patch_size: int = 64) -> None:
        super().__init__(index, decoder, patch_size)
        if not getattr(index, "crop_size", None):
            raise ConfigError("data.source=shards: this index holds no crops; rebuild it with "
                              "`sdaie index PHOTOS --out IDX --crops 512` or use data.source=photo")

    def pixels(self, i: int) -> Pixels:
        crop = self.index.crop(i)
        if crop is not None:
            return crop  # memory-mapped: only the patches' rows are read
        return self.decode(self.index.image_path(i))


class AuthorsSource(Source):
    """The authors' stored ``3 x H x W`` uint8 tensors, cut as their ``RandomCrop(64)`` cuts."""

    name = "authors"

    def __init__(self, index: IndexPixels, decoder: str = "pil", patch_size: int = 64) -> None:
        super().__init__(index, decoder, patch_size)
        self.tensors = AuthorsTensors(patch_size)

    def pixels(self, i: int) -> Pixels:
        return self.tensors.load(self.index.image_path(i))

    def draw(self, pixels: Pixels, n: int, size: int, generator: torch.Generator) -> torch.Tensor:
        return self.tensors.crops(pixels, n, size, generator)


SOURCES: dict[str, type[Source]] = {"photo": PhotoSource, "shards": ShardSource,
                                    "authors": AuthorsSource}


def make_source(name: str, index: IndexPixels, decoder: str = "pil",
                patch_size: int = 64) -> Source:
    """The source ``name`` of :data:`SOURCES` over ``index``; a clear error for an unknown name."""
    try:
        cls = SOURCES[name]
    except KeyError:
        raise ConfigError(f"data.source={name!r}; valid: {sorted(SOURCES)}") from None
    return cls(index, decoder, patch_size)


def check_source_fits_index(source: str, authors_index: bool, index_dir: str) -> None:
    """An index of the authors' tensors (``sdaie import-authors``) holds no photos, and an index of
    photos no tensors: the source must say which, and a mismatch is named, not guessed around."""
    if authors_index and source != "authors":
        raise ConfigError(f"{index_dir} indexes the authors' pkl_256 tensors (sdaie import-authors): "
                          f"set data.source=authors (data.source={source} reads photos)")
    if source == "authors" and not authors_index:
        raise ConfigError(f"data.source=authors reads an index written by `sdaie import-authors`; "
                          f"{index_dir} indexes photos (data.source=photo or shards)")
