"""``from sdaie import Detector``: score your own images from Python, with the rows ``sdaie detect``
writes.

    from sdaie import Detector
    det = Detector.load("runs/bc/checkpoints/last.pt")   # binary detector, ours or the official file
    det.score("photo.jpg")       # {'path': 'photo.jpg', 'p_fake': 0.97, 'label': 'ai-generated', ...}
    oc = Detector.load(gmm="runs/oc/gmm.npz")             # one-class: the backbone recorded in the GMM
    rows = oc.score("my_photos/")                         # one row per image file below the folder

Rows (:data:`COLUMNS`): ``path``; binary: ``p_fake`` = 1 - softmax(logits)[0] and ``label``
("ai-generated" iff p_fake > threshold, default 0.5); one-class: ``log_likelihood`` under the GMM
fitted on real images, ``percentile`` (share of its training images scoring at or below, 0..100)
and ``label`` ("real" iff log-likelihood > threshold, default the GMM's); then ``patches`` and
``seconds``. A file or value that cannot be scored gives ``{"path": ..., "error": reason}`` instead
of an exception, so one bad file does not end a batch. Every image is scored as the evaluation
stages do it (:mod:`sdaie.scoring`): all grid patches of the full image, no EXIF.

    Detector.load("official_bc.pth", protocol="official", perturbation="resize=0.5")

``protocol``: "spec" (the paper as written) or "official" (the authors' evaluation steps:
transposed zero-padded centre crop, floored resize sizes, their patch caps); one-class detectors
default to the protocol their GMM was fitted under. ``perturbation`` (``jpeg=95``, ``blur=1.0``,
``resize=0.5``) is applied to every image before tiling, as in the robustness tables.

``score(x, patches=True)`` also scores every patch in the same pass (:mod:`sdaie.patch_scoring`;
``stride``, ``context``, ``window`` as in ``sdaie detect --heatmap``) and adds
:data:`PATCH_COLUMNS`: ``patch_share`` (share of patches flagged), ``regions`` (connected flagged
patches: pixel box, patch count, peak score), ``partly_generated`` and ``heatmap``, the
:class:`~sdaie.heatmaps.PatchMap` (``render_overlay`` in :mod:`sdaie.overlay` draws it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from sdaie.config import PROTOCOLS, EvalConfig, OneClassConfig
from sdaie.data import official
from sdaie.data.imageio import ImageLoadError, load_image, to_rgb
from sdaie.data.inputs import Target, expand_inputs, is_glob
from sdaie.data.transforms import CLEAN, Perturbation, parse_perturbation
from sdaie.device import resolve_device
from sdaie.hashing import file_hash
from sdaie.heatmaps import PARTIAL_SHARE, PatchMap
from sdaie.labels import FAKE as FAKE_LABEL
from sdaie.labels import NAMES, Decision
from sdaie.labels import REAL as REAL_LABEL
from sdaie.models import CheckpointError, load_binary_detector, load_extractor
from sdaie.oneclass.gmm import OneClassGMM, load_gmm
from sdaie.patch_scoring import LatticeTiling, MapSpec, score_with_maps
from sdaie.scoring import BinaryScorer, FeatureScorer, ImageScore, Scorer, Tiling

REAL, FAKE = NAMES[REAL_LABEL], NAMES[FAKE_LABEL]  # the words rows print
COLUMNS = {  # row keys per mode, in order (the CSV columns of ``sdaie detect``)
    "bc": ("path", "p_fake", "label", "patches", "seconds", "error"),
    "oc": ("path", "log_likelihood", "percentile", "label", "patches", "seconds", "error"),
}
PATCH_COLUMNS = ("patch_share", "regions", "partly_generated")  # rows of score(patches=True)
ImageInput = str | Path | Image.Image | torch.Tensor | np.ndarray


class SetupError(Exception):
    """A checkpoint, GMM or option that makes scoring impossible (``sdaie detect`` exits 2)."""


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------


def to_image(x: Image.Image | torch.Tensor | np.ndarray) -> Image.Image:
    """An in-memory image as the 8-bit RGB image a decoded file would be.

    PIL: converted as files are (:func:`~sdaie.data.imageio.to_rgb`). Tensors and arrays: 3
    channels, first (CHW) if the first dimension is 3, else last (HWC); uint8 0..255, or float in
    [0, 1] (``uint8 / 255`` comes back exactly), rounded to 8 bits because scoring, like a file,
    works on 8-bit pixels.
    """
    if isinstance(x, Image.Image):
        return to_rgb(x)
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        a = (x.double() if x.is_floating_point() else x).numpy()
    else:
        a = np.asarray(x)
    if a.ndim != 3 or 3 not in (a.shape[0], a.shape[-1]):
        raise ValueError(f"expected a 3-channel CHW or HWC image, got shape {list(a.shape)}")
    if a.shape[0] == 3:
        a = a.transpose(1, 2, 0)
    if np.issubdtype(a.dtype, np.floating):
        if not ((a >= 0) & (a <= 1)).all():
            raise ValueError("float pixels must lie in [0, 1] (not normalised ones)")
        a = np.rint(a.astype(np.float64) * 255.0).astype(np.uint8)
    elif a.dtype != np.uint8:
        raise ValueError(f"expected uint8 or float pixels, got {a.dtype}")
    return Image.fromarray(np.ascontiguousarray(a))


def _oom_errors() -> tuple[type[BaseException], ...]:
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    return (MemoryError,) + ((oom,) if oom is not None else ())


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def _load_gmm_checked(gmm_path: str | Path,
                      checkpoint: str | Path | None) -> tuple[OneClassGMM, dict, str]:
    """(GMM, its metadata, backbone path); the backbone defaults to the one the GMM records and
    is refused if it is not the file the GMM's features came from."""
    try:
        model, meta = load_gmm(gmm_path)
    except (OSError, ValueError, KeyError) as exc:
        raise SetupError(f"cannot read the GMM {gmm_path}: {exc}") from exc
    if checkpoint is None:
        checkpoint = meta.get("checkpoint")
        if not checkpoint:
            raise SetupError(f"{gmm_path} records no backbone; pass the pretext checkpoint the "
                             "GMM was fitted with")
        if not Path(checkpoint).is_file():
            raise SetupError(f"{gmm_path} records the backbone {checkpoint}, which is not there; "
                             "pass the pretext checkpoint the GMM was fitted with")
    fitted_with = meta.get("checkpoint_hash")
    if fitted_with:
        try:
            mine = file_hash(checkpoint)
        except OSError as exc:
            raise SetupError(f"cannot read the checkpoint {checkpoint}: {exc}") from exc
        if mine != fitted_with:
            raise SetupError(
                f"{gmm_path} was fitted on features of {meta.get('checkpoint', '?')} "
                f"(sha256 {fitted_with}), but the checkpoint {checkpoint} has sha256 {mine}: its "
                "log-likelihoods would mean nothing; pass the checkpoint the GMM was fitted with")
    return model, meta, str(checkpoint)


def _tiling(mode: str, max_patches: int | None, protocol: str | None,
            perturbation: str | Perturbation | None, meta: dict) -> tuple[int, str, Perturbation]:
    """(patch cap, protocol, perturbation) of a detector, each checked; SetupError otherwise.

    The protocol defaults to the GMM's (one-class) or "spec"; the cap to the official one under
    "official", else to ``max_patches``, the GMM's stored cap or the evaluation default.
    """
    protocol = protocol or meta.get("protocol") or "spec"
    if protocol not in PROTOCOLS:
        raise SetupError(f"protocol={protocol!r}; valid: {list(PROTOCOLS)}")
    try:
        pert = (perturbation if isinstance(perturbation, Perturbation)
                else parse_perturbation(perturbation or ""))
    except ValueError as exc:
        raise SetupError(str(exc)) from exc
    if protocol == "official":
        cap = official.BINARY_PATCH_CAP if mode == "bc" else official.ONE_CLASS_PATCH_CAP
        problem = official.check_patch_cap("max_patches", max_patches or cap, cap)
        if problem:
            raise SetupError(problem)
        return cap, protocol, pert
    if mode == "bc":
        return max_patches or EvalConfig.max_patches, protocol, pert
    return max_patches or int(meta.get("max_patches") or OneClassConfig.max_patches), protocol, pert


def _one_class(checkpoint: str | Path | None, gmm: str | Path, device: torch.device,
               batch_patches: int) -> tuple[FeatureScorer, OneClassGMM, dict]:
    model, meta, backbone = _load_gmm_checked(gmm, checkpoint)
    extractor = load_extractor(backbone, map_location=device)
    if model.gmm.n_features_in_ != extractor.feature_dim:
        raise SetupError(f"{gmm} models {model.gmm.n_features_in_}-d features but the "
                         f"checkpoint's extractor gives {extractor.feature_dim}-d ones")
    return FeatureScorer(extractor, batch_patches, device, model), model, meta


# ---------------------------------------------------------------------------------------------
# The detector
# ---------------------------------------------------------------------------------------------


class Detector:
    """A loaded detector (binary or one-class) that scores images the way ``sdaie detect`` does."""

    def __init__(self, mode: str, scorer: Scorer, decision: Decision, max_patches: int,
                 gmm_train_images: int | None = None, *, protocol: str = "spec",
                 perturbation: Perturbation = CLEAN) -> None:
        if max_patches < 1:
            raise SetupError(f"max_patches must be >= 1, got {max_patches}")
        self.mode = mode  # "bc" | "oc"
        self.scorer = scorer
        self.decision = decision
        self.tiling = Tiling(scorer.patch_size, max_patches, perturbation, protocol)
        self.gmm_train_images = gmm_train_images
        # per-context patch thresholds (one-class: calibrated by oc_main); else the image's
        self.patch_thresholds: dict[str, float] = {}

    @classmethod
    def load(cls, checkpoint: str | Path | None = None, gmm: str | Path | None = None, *,
             device: str | torch.device = "auto", batch_patches: int = EvalConfig.batch_patches,
             max_patches: int | None = None, threshold: float | None = None,
             protocol: str | None = None,
             perturbation: str | Perturbation | None = None) -> Detector:
        """Binary: ``load(checkpoint)``. One-class: ``load(backbone, gmm=path)`` or
        ``load(gmm=path)`` for the backbone recorded in the GMM file.

        ``max_patches`` defaults as in evaluation (binary 40000; one-class the GMM's own cap if it
        stored one, else 20000; under the official protocol its caps, which it must equal);
        ``threshold`` to 0.5 (binary) or the GMM's; ``protocol`` and ``perturbation`` as in the
        module docstring. Raises :class:`SetupError` for anything unusable.
        """
        if batch_patches < 1:
            raise SetupError(f"batch_patches must be >= 1, got {batch_patches}")
        device = resolve_device(device) if isinstance(device, str) else device
        try:
            if gmm is None:
                if checkpoint is None:
                    raise SetupError("give a binary checkpoint, or gmm= for the one-class detector")
                cap, protocol, pert = _tiling("bc", max_patches, protocol, perturbation, {})
                detector = load_binary_detector(checkpoint, map_location=device)
                return cls("bc", BinaryScorer(detector, batch_patches, device),
                           Decision(0.5 if threshold is None else threshold, True), cap,
                           protocol=protocol, perturbation=pert)
            scorer, model, meta = _one_class(checkpoint, gmm, device, batch_patches)
        except CheckpointError as exc:
            hint = (" (a pretext checkpoint scores images with its GMM: gmm=GMM.npz here, "
                    "--mode oc --gmm GMM.npz on the command line)"
                    if "pretext checkpoint, not a binary" in str(exc) else "")
            raise SetupError(f"{exc}{hint}") from exc
        cap, protocol, pert = _tiling("oc", max_patches, protocol, perturbation, meta)
        det = cls("oc", scorer, Decision(model.threshold if threshold is None else threshold,
                                         False), cap, int(model.train_scores.size),
                  protocol=protocol, perturbation=pert)
        det.patch_thresholds = dict(model.patch_thresholds)
        return det

    @property
    def threshold(self) -> float:
        return self.decision.threshold

    @property
    def max_patches(self) -> int:
        return self.tiling.max_patches

    @property
    def protocol(self) -> str:
        return self.tiling.protocol

    @property
    def perturbation(self) -> Perturbation:
        return self.tiling.perturbation

    @property
    def columns(self) -> tuple[str, ...]:
        return COLUMNS[self.mode]

    def score(self, x: ImageInput | Sequence[ImageInput], patches: bool = False, *,
              stride: int | None = None, context: str | None = None, window: int = 3,
              min_region: int = 1) -> dict[str, Any] | list[dict[str, Any]]:
        """One row for one image (a file path, a PIL image, a 3-D tensor or array); a list of
        rows for a list, a folder (image files below it, recursively) or a glob pattern.

        A list of paths is expanded as ``sdaie detect`` expands its arguments (each file once).
        ``patches=True``: rows gain the heatmap fields (module docstring); ``stride`` defaults
        to the patch size, ``context`` to the detector's default, regions need ``min_region``
        patches. Raises ``ValueError`` for a tensor or array that is not an image (see
        :func:`to_image`) or a heatmap option that cannot work.
        """
        maps = self.map_spec(stride, context, window, min_region) if patches else None
        if isinstance(x, (str, Path)):
            rows = [self.score_target(t, maps) for t in expand_inputs([x])]
            many = Path(x).is_dir() or (not Path(x).exists() and is_glob(x))
            return rows if many else rows[0]
        if isinstance(x, (Image.Image, torch.Tensor, np.ndarray)):
            return self.score_image(x, maps=maps)
        if all(isinstance(item, (str, Path)) for item in x):
            return [self.score_target(t, maps) for t in expand_inputs(x)]
        return [row for item in x for row in _as_list(self.score(
            item, patches, stride=stride, context=context, window=window, min_region=min_region))]

    def map_spec(self, stride: int | None = None, context: str | None = None, window: int = 3,
                 min_region: int = 1) -> HeatmapRequest:
        """The checked heatmap options (``ValueError`` names the one that cannot work)."""
        if min_region < 1:
            raise ValueError(f"min_region must be >= 1, got {min_region}")
        spec = MapSpec.default(self.mode, stride, (context,) if context else (), window)
        return HeatmapRequest(spec.checked(self.scorer.patch_size), min_region)

    def score_target(self, target: Target, maps: HeatmapRequest | None = None,
                     sink: MapSink | None = None) -> dict[str, Any]:
        """The row of one input of :func:`expand_inputs`; with ``maps``, ``sink(image, row)`` is
        called with the decoded image once the row holds its heatmap (``sdaie detect`` writes
        the overlay there without decoding the file again)."""
        if target.error:
            return {"path": target.path, "error": target.error}
        return self._row(target.path, lambda: load_image(target.path), maps, sink)

    def score_image(self, image: Image.Image | torch.Tensor | np.ndarray,
                    path: str | None = None, maps: HeatmapRequest | None = None) -> dict[str, Any]:
        """The row of an in-memory image (``path`` None unless given)."""
        img = to_image(image)
        return self._row(path, lambda: img, maps)

    def _score(self, img: Image.Image, maps: HeatmapRequest | None,
               ) -> tuple[ImageScore, PatchMap | None, Image.Image]:
        """(result, map or None, the image as scored: after the perturbation, which is the
        image the map's boxes refer to)."""
        if maps is None:
            return self.scorer(self.tiling(img)), None, img
        spec = maps.spec
        scored = self.tiling.perturbation(img, self.tiling.protocol)
        tiling = LatticeTiling(self.scorer.patch_size, self.max_patches,
                               spec.stride or self.scorer.patch_size, protocol=self.tiling.protocol)
        result, pms = score_with_maps(self.scorer, *tiling(scored), self.decision, spec,
                                      self.patch_thresholds)
        return result, pms[spec.contexts[0]], scored

    def _row(self, path: str | None, read: Callable[[], Image.Image],
             maps: HeatmapRequest | None = None,
             sink: MapSink | None = None) -> dict[str, Any]:
        """Read, tile, score: the row, or ``{"path", "error"}`` with the reason."""
        start = time.perf_counter()
        try:
            result, pm, img = self._score(read(), maps)
        except ImageLoadError as exc:
            return {"path": path, "error": str(exc)}
        except _oom_errors() as exc:
            return {"path": path, "error": f"out of memory ({type(exc).__name__}); "
                                           "try smaller batch_patches / max_patches "
                                           "(--batch-patches / --max-patches)"}
        problem = result.problem()
        if problem:
            return {"path": path, "error": problem}
        row = {"path": path, **self._fields(result)}
        if pm is not None and maps is not None:
            row.update(map_fields(pm, maps.min_region))
            if sink is not None:
                sink(img, row)
        row["seconds"] = round(time.perf_counter() - start, 4)
        return row

    def _fields(self, r: ImageScore) -> dict[str, Any]:
        """The mode's score fields, label and patch count of one result."""
        if self.mode == "bc":
            fields: dict[str, Any] = {"p_fake": r.p_fake}
            value = r.p_fake
        else:
            fields = {"log_likelihood": r.log_likelihood, "percentile": round(r.percentile, 2)}
            value = r.log_likelihood
        fields["label"] = FAKE if bool(self.decision.predict_fake(value)) else REAL
        fields["patches"] = r.n_patches
        return fields


@dataclass(frozen=True)
class HeatmapRequest:
    """Heatmap options of a scoring call: what to compute, and the smallest region reported."""

    spec: MapSpec
    min_region: int = 1


MapSink = Callable[[Image.Image, dict[str, Any]], None]


def map_fields(pm: PatchMap, min_region: int = 1) -> dict[str, Any]:
    """The row fields of a heatmap: flagged share, regions, "partly generated", the map.

    Partly generated: at least one region, and under :data:`~sdaie.heatmaps.PARTIAL_SHARE` of
    the patches flagged (more than that reads as a generated image, not a changed region).
    """
    regions = pm.regions(min_region)
    share = pm.share_flagged()
    return {"patch_share": round(share, 4), "regions": [r.as_dict() for r in regions],
            "partly_generated": bool(regions) and share < PARTIAL_SHARE, "heatmap": pm}


def _as_list(r: dict[str, Any] | list[dict[str, Any]]) -> list[dict[str, Any]]:
    return r if isinstance(r, list) else [r]
