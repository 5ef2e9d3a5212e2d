"""``backbone_train.py`` on a miniature of the authors' training data (``sdaie import-authors``).

References re-state their ``DatasetforDiffusionGranularityForEXIF``: per pair, 16 RandomCrops of
each normalised tensor from one generator stream, rank targets ``1 if x1 >= x2 else 0`` compared on
the JSON's values, class targets the first photo's named class ids.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from sdaie.config import Config, load_config
from sdaie.data.pairs import PairDataset
from sdaie.exif.authors import import_authors
from sdaie.exif.index import load_index
from sdaie.stages import backbone_train
from sdaie.stages.backbone_train import photo_split
from support.authors_miniature import write_miniature

from .conftest import TINY

MEAN, STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
CLASS_SLOTS = {1: "Make", 5: "Model", 6: "Flash", 9: "Metering Mode", 10: "Exposure Mode",
               11: "White Balance Mode", 13: "Scene Capture Type"}


@pytest.fixture(scope="module")
def authors(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("authors")
    tags = write_miniature(root / "data", n=10)
    import_authors(root / "data" / "exif_tags.json", root / "data" / "pkl_256", root / "idx",
                   Config())
    return {"root": root, "tags": tags, "index": root / "idx"}


def _their_pair(tags: dict, name1: str, name2: str) -> list[float]:
    """Their label vector of a pair: rank slots compared on the JSON values, class ids of photo 1."""
    v1, v2 = list(tags[name1].values())[3:], list(tags[name2].values())[3:]
    label = [1 if (x > y or x == y) else 0 for x, y in zip(v1, v2)]
    for slot, field in CLASS_SLOTS.items():
        label[slot] = tags[name1][field]
    return [float(x) for x in label]


def _their_crops(path, size: int) -> torch.Tensor:
    import torchvision

    img = torchvision.transforms.Normalize(mean=MEAN, std=STD)(torch.load(path).to(torch.float) / 255)
    crop = torchvision.transforms.RandomCrop(size)
    return torch.stack([crop(img) for _ in range(16)])


def test_pairs_carry_their_labels_and_crops(authors):
    index = load_index(authors["index"])
    data = PairDataset(index, range(len(index)), n_patches=16, patch_size=64, source="authors")
    names = [r["name"] for r in index.records]
    for q1, q2, seed in ((0, 1, 5), (2, 3, 6), (4, 0, 7), (6, 7, 8)):
        p1, p2, y1, y2, skipped = data[(q1, q2, seed)]
        assert not skipped
        torch.manual_seed(seed)  # their crops come from the global generator
        ref1 = _their_crops(index.image_path(q1), 64)
        ref2 = _their_crops(index.image_path(q2), 64)
        torch.testing.assert_close(p1, ref1, rtol=0, atol=0)
        torch.testing.assert_close(p2, ref2, rtol=0, atol=0)
        theirs = _their_pair(authors["tags"], names[q1], names[q2])
        ours = [float(y1[s] >= y2[s]) if s not in CLASS_SLOTS else float(y1[s]) for s in range(14)]
        assert ours == theirs


def test_a_tensor_below_one_patch_is_skipped_and_reported(authors):
    index = load_index(authors["index"])
    tiny = [r["name"] for r in index.records].index("TINY_0001.jpg")
    data = PairDataset(index, range(len(index)), n_patches=4, patch_size=64, source="authors")
    *_, skipped = data[(tiny, 0, 1)]
    assert [s["path"] for s in skipped] == [str(index.image_path(tiny))]
    assert "smaller than one 64 x 64 patch" in skipped[0]["reason"]


@pytest.mark.slow
def test_backbone_train_runs_on_the_authors_data(authors, tmp_path):
    out = tmp_path / "bb"
    assert backbone_train.main([
        "--config", str(TINY / "backbone.yaml"), f"data.index={authors['index']}",
        f"run.out_dir={out}", "pretext.steps=4", "pretext.log_every=2", "pretext.batch_size=6",
        "pretext.rank_loss=official", "data.require_all_tags=true", "data.source=authors"]) == 0
    assert (out / "checkpoints" / "last.pt").is_file()
    rows = list(csv.DictReader(open(out / "train_log.csv")))
    assert [int(r["step"]) for r in rows] == [2, 4]
    assert all(np.isfinite(float(r["loss"])) for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["train_photos"] == 11  # 10 photos + the one below a patch (skipped when drawn)
    cfg = summary["config"]
    assert cfg["pretext"]["rank_loss"] == "official" and cfg["data"]["require_all_tags"]


def test_require_all_tags_keeps_only_complete_photos():
    labels = np.array([[1, 2.0], [np.nan, 1], [3, 4], [5, np.nan], [6, 7]], dtype=np.float32)
    cfg = load_config(TINY / "backbone.yaml", ["data.require_all_tags=true"])
    train, val = photo_split(labels, cfg)
    assert sorted(train.tolist()) == [0, 2, 4] and len(val) == 0
    cfg.data.require_all_tags = False
    assert sorted(photo_split(labels, cfg)[0].tolist()) == [0, 1, 2, 3, 4]
    with pytest.raises(SystemExit, match="require_all_tags: 1 of 2"):
        photo_split(labels[:2], load_config(TINY / "backbone.yaml", ["data.require_all_tags=true"]))
