"""In-training validation against references computed one image at a time."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from sdaie.config import load_config
from sdaie.data.heldout import HeldOutPhotos
from sdaie.data.labelled import LabelledPatches
from sdaie.data.pairs import PairDataset
from sdaie.distributed import DistInfo
from sdaie.engine.validation import quick_validation, validate_heldout, validation_ids
from sdaie.exif.index import load_index
from sdaie.exif.index import main as index_main
from sdaie.models import BinaryDetector, PretextModel
from sdaie.synth import make_world

TINY = Path(__file__).resolve().parents[2] / "configs" / "tiny"
PHOTOS = 10


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("world")
    make_world(base / "world", photos=PHOTOS, size=96, gen_images=0, bc_train=0, bc_val=4)
    assert index_main([str(base / "world" / "photos"), "--out", str(base / "index"),
                       "--workers", "1", "--no-progress"]) == 0
    return base


def test_held_out_photos_are_each_scored_once_with_fixed_patches(world):
    cfg = load_config(TINY / "backbone.yaml")
    index = load_index(world / "index")
    torch.manual_seed(0)
    model = PretextModel(cfg.model, cfg.schema.heads).train()
    data = PairDataset(index, range(PHOTOS), n_patches=cfg.data.patches,
                       patch_size=cfg.model.patch_size)
    first, skipped = validate_heldout(model, data, cfg, DistInfo(), nullcontext)
    again, _ = validate_heldout(model, data, cfg, DistInfo(), nullcontext)
    assert first == again and skipped == [] and model.training  # left as it was found
    assert first["Make"]["count"] == PHOTOS
    names = [h.tag for h in cfg.schema.heads]
    iso = index.labels_tensor()[:, names.index("ISOSpeedRatings")]
    differing = sum(bool(iso[i] != iso[j]) for i in range(PHOTOS) for j in range(i + 1, PHOTOS)
                    if not (iso[i].isnan() or iso[j].isnan()))
    assert first["ISOSpeedRatings"]["count"] == differing
    # the Make head's top-1 accuracy, recomputed photo by photo with the same seeded patches
    photos = HeldOutPhotos(data, cfg.run.seed)
    make = index.labels_tensor()[:, names.index("Make")]
    model.eval()
    with torch.no_grad():
        hits = [int(model(photos[q][0][None])[names.index("Make")].argmax()) == int(make[q])
                for q in range(PHOTOS)]
    assert first["Make"]["accuracy"] == pytest.approx(np.mean(hits))


@pytest.mark.parametrize("val_batches", [0, 1])
def test_quick_validation_equals_scoring_each_image_alone(world, val_batches):
    cfg = load_config(TINY / "bc_train.yaml", ["binary.batch_size=3", f"binary.val_batches={val_batches}"])
    torch.manual_seed(0)
    detector = BinaryDetector(cfg.model)
    val = LabelledPatches(world / "world" / "bc_val", cfg.data.patches, cfg.model.patch_size,
                          None, seed=1, genimage_split="val")
    got = quick_validation(detector, val, cfg, DistInfo(), nullcontext)
    n = len(val) if val_batches == 0 else 3  # val_batches x batch_size images
    ids = validation_ids(len(val), 3 * val_batches)
    with torch.no_grad():
        p = np.array([1 - torch.softmax(detector(val[i][0][None]), 1)[0, 0].item() for i in ids])
    y = np.array(val.files.labels)[ids]
    assert len(ids) == n and got["val_random_patches_n_real"] + got["val_random_patches_n_fake"] == n
    assert got["val_random_patches_n_real"] > 0 and got["val_random_patches_n_fake"] > 0
    assert got["val_random_patches_acc"] == pytest.approx(np.mean((p > 0.5) == (y == 1)))
    if 0 < y.sum() < n:
        assert got["val_random_patches_roc_auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-6)
        assert got["val_random_patches_ap_fake_pos"] == pytest.approx(average_precision_score(y, p),
                                                                      abs=1e-6)


def test_a_validation_subset_is_evenly_spaced_over_the_sorted_listing():
    """The listing holds every real image before any fake one: the subset must reach both."""
    labels = [0] * 50 + [1] * 50
    ids = validation_ids(100, 8)
    assert ids == validation_ids(100, 8) and len(set(ids)) == 8 and ids == sorted(ids)
    assert {labels[i] for i in ids} == {0, 1} and ids[0] == 0 and ids[-1] >= 87
    assert validation_ids(5, 0) == validation_ids(5, 9) == [0, 1, 2, 3, 4]


def test_held_out_validation_uses_the_project_loader_with_the_same_results(world, monkeypatch):
    """Its workers then ignore SIGTERM (the main process checkpoints), as training's do."""
    from sdaie.engine import validation

    cfg = load_config(TINY / "backbone.yaml", ["data.workers=1"])
    data = PairDataset(load_index(world / "index"), range(PHOTOS), n_patches=cfg.data.patches,
                       patch_size=cfg.model.patch_size)
    torch.manual_seed(0)
    model = PretextModel(cfg.model, cfg.schema.heads)
    loaders = []
    real = validation.seeded_loader
    monkeypatch.setattr(validation, "seeded_loader", lambda *a, **k: loaders.append(real(*a, **k))
                        or loaders[-1])
    with_worker, _ = validate_heldout(model, data, cfg, DistInfo(), nullcontext)
    assert len(loaders) == 1 and loaders[0].num_workers == 1
    assert loaders[0].worker_init_fn is not None  # seeds the worker and ignores SIGTERM in it
    cfg.data.workers = 0
    in_process, _ = validate_heldout(model, data, cfg, DistInfo(), nullcontext)
    assert with_worker == in_process
