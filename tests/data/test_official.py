"""The authors' file listing and labelling (protocol "official"), each against their steps
re-stated here with os.walk, os.listdir and the global ``random`` module as their code uses them."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from sdaie.data import official
from sdaie.data.testsets import list_labelled
from sdaie.stages.oc_main import training_files


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")


def _their_listing(root: str, label: str | None = None, max_num: int | None = None) -> list[str]:
    """Their one-class dataset's file list: walk, optional folder test, seed 42, first max_num."""
    paths = []
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            if label is None or label in dirpath:
                paths.append(dirpath + "/" + f)
    random.seed(42)
    random.shuffle(paths)
    return paths[:max_num]


@pytest.fixture
def tree(tmp_path) -> Path:
    """Nested folders, names out of sorted order, a non-image file and label look-alikes."""
    root = tmp_path / "set"
    for rel in ("zeta/0_real/b.png", "zeta/0_real/a.png", "alpha/1_fake/c.png", "alpha/1_fake/d.txt",
                "m/10_real_v2/e.png", "m/nature/f.png", "m/ai/g.png", "1_fake/0_real.png",
                "top.png", "deep/er/0_real/x/h.png", "deep/er/0_real/x/i.png"):
        _touch(root / rel)
    return root


def test_training_files_are_walk_order_shuffled_with_seed_42(tree, tmp_path):
    other = tmp_path / "other"
    for i in range(7):
        _touch(other / f"sub{i % 3}" / f"{9 - i}.jpg")
    ours = training_files([str(tree), str(other)], 4, 42, "official")
    theirs = _their_listing(str(tree), None, 4) + _their_listing(str(other), None, 4)
    assert [str(p) for p in ours] == [str(Path(p)) for p in theirs]
    spec = training_files([str(tree), str(other)], 4, 42, "spec")  # sorted images only
    assert spec != ours and all(p.suffix == ".png" or p.suffix == ".jpg" for p in spec)
    assert any(p.suffix == ".txt" for p in official.training_files([tree], 100))


def test_binary_set_labels_by_substring_of_the_path(tree):
    got = official.binary_set_files(tree)
    theirs = [p for dirpath, _d, files in os.walk(str(tree)) for p in
              (dirpath + "/" + f for f in files)]
    assert [str(p) for p in got.paths] == [str(Path(p)) for p in theirs]
    assert got.labels == [0 if "0_real" in p else 1 for p in theirs]
    by_name = dict(zip((p.name for p in got.paths), got.labels))
    # their quirks: a '10_real_v2' folder is real, 'nature' is not, a file named 0_real.png is
    assert by_name["e.png"] == 0 and by_name["f.png"] == 1 and by_name["0_real.png"] == 0
    assert by_name["top.png"] == 1 and by_name["d.txt"] == 1
    spec = list_labelled(tree)  # exact folder names: e.png unlabelled, nature real
    assert len(spec.paths) != len(got.paths)


def test_one_class_sets_test_the_folder_path_and_cap_each_list(tree):
    got = official.one_class_set_files(tree, cap=2)
    real, fake = _their_listing(str(tree), "0_real", 2), _their_listing(str(tree), "1_fake", 2)
    assert [str(p) for p in got.paths] == [str(Path(p)) for p in real + fake]
    assert got.labels == [0] * len(real) + [1] * len(fake)
    full = official.one_class_set_files(tree)
    names = {p.name for p in full.paths}
    assert "0_real.png" in names and "top.png" not in names and "f.png" not in names
    assert {p.name for p, y in zip(full.paths, full.labels) if y == 0} == {"a.png", "b.png",
                                                                           "e.png", "h.png", "i.png"}


def test_every_sub_folder_is_a_set_or_exactly_the_named_ones(tmp_path):
    for name in ("progan", "nolabels", ".hidden", "stylegan"):
        (tmp_path / name).mkdir()
    _touch(tmp_path / "loose.png")
    sets = official.sub_folder_sets(tmp_path, prefix="wild/x/")
    assert [s.name for s in sets] == ["wild/x/progan", "wild/x/stylegan", "wild/x/.hidden",
                                      "wild/x/nolabels"]
    assert sorted(os.path.basename(s.path) for s in sets) == sorted(
        n for n in os.listdir(tmp_path) if os.path.isdir(tmp_path / n))
    assert [s.name for s in official.sub_folder_sets(tmp_path, ["stylegan"])] == ["stylegan"]
    with pytest.raises(FileNotFoundError, match="missing"):
        official.sub_folder_sets(tmp_path, ["missing"])


def test_patch_caps_must_be_the_official_ones():
    assert official.check_patch_cap("eval.max_patches", 40000, official.BINARY_PATCH_CAP) == ""
    msg = official.check_patch_cap("eval.max_patches", 256, official.BINARY_PATCH_CAP)
    assert "eval.max_patches=256" in msg and "40000" in msg
