from pathlib import Path

import pytest
from PIL import Image

from sdaie.data.testsets import (
    REGISTRY,
    discover_sets,
    display_name,
    label_from_parts,
    list_labelled,
)


def _img(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8)).save(path)


def test_registry_is_the_spec_table():
    assert len(REGISTRY) == 17
    assert REGISTRY[0] == ("progan", "ProGAN") and REGISTRY[-1] == ("coco_sdxl_nw", "SDXL")
    assert display_name("whichfaceisreal") == "WFIR" and display_name("other") == "other"


def test_labels_come_from_exact_folder_names(tmp_path):
    _img(tmp_path / "car" / "0_real" / "a.png")
    _img(tmp_path / "car" / "1_fake" / "b.png")
    _img(tmp_path / "unreal_0_real_v2" / "c.png")  # contains '0_real' but is not the folder name
    _img(tmp_path / "fake_stuff" / "d.png")
    _img(tmp_path / "0_real" / "1_fake" / "e.png")  # contradicting
    files = list_labelled(tmp_path)
    got = {p.name: y for p, y in zip(files.paths, files.labels)}
    assert got == {"a.png": 0, "b.png": 1}
    assert sorted(p.name for p in files.unlabelled) == ["c.png", "d.png"]
    assert [p.name for p in files.ambiguous] == ["e.png"]
    assert label_from_parts(["x", "nature"]) == 0 and label_from_parts(["ai"]) == 1
    assert label_from_parts(["my_ai_set"]) is None


def test_genimage_layout_uses_val_for_evaluation(tmp_path):
    for split in ("train", "val"):
        _img(tmp_path / "imagenet_ai_0419_vqdm" / split / "ai" / f"{split}_f.png")
        _img(tmp_path / "imagenet_ai_0419_vqdm" / split / "nature" / f"{split}_r.png")
    ev = list_labelled(tmp_path)
    assert sorted((p.name, y) for p, y in zip(ev.paths, ev.labels)) == [("val_f.png", 1), ("val_r.png", 0)]
    tr = list_labelled(tmp_path, genimage_split="train")
    assert sorted(p.name for p in tr.paths) == ["train_f.png", "train_r.png"]


def test_discovery_order_and_explicit_sets(tmp_path):
    for name in ("zeta", "stylegan", "progan", "Glide"):
        _img(tmp_path / name / "1_fake" / "x.png")
    (tmp_path / "notes").mkdir()  # no label folder: not a set
    assert [s.name for s in discover_sets(tmp_path)] == ["progan", "stylegan", "Glide", "zeta"]
    assert [s.display for s in discover_sets(tmp_path, ["zeta", "progan"])] == ["ProGAN", "zeta"]
    with pytest.raises(FileNotFoundError, match="missing|not under"):
        discover_sets(tmp_path, ["biggan"])
