"""``oc_main`` and ``bc_eval`` with ``protocol: official`` give the authors' tables.

The reference re-states the steps of their ``oc_main.py`` / ``oc_funs.py`` and ``bc_eval.py`` here,
with os, random, torchvision and scikit-learn as their code calls them: file lists by ``os.walk``
with ``random.seed(42)`` shuffles, labels by substring tests on paths, every sub-folder a set,
torchvision's ``CenterCrop((w, h))`` and ``Resize((int(h/2), int(w/2)))``, one forward per image,
a GaussianMixture fitted directly, their threshold index, ``accuracy_score`` and
``average_precision_score``. The world is the synthetic one, cut to odd and non-square sizes (and
some below one patch), plus an in-the-wild root with a labelled and an unlabelled sub-folder.
"""

from __future__ import annotations

import csv
import os
import random

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import accuracy_score, average_precision_score
from sklearn.mixture import GaussianMixture

from sdaie.config import Config, load_config
from sdaie.models import (
    BinaryDetector,
    PretextModel,
    load_binary_detector,
    load_extractor,
    save_checkpoint,
)
from sdaie.stages import bc_eval, oc_main
from sdaie.synth import make_world

from .conftest import TINY

MEAN, STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
SIZES = [(95, 70), (70, 93), (96, 33), (30, 40), (81, 96), (96, 96), (65, 64)]  # (w, h)
PERTS = ["clean", "resize=0.5"]
PER_DIR = 5


def _cut(src, dst, k: int) -> None:
    w, h = SIZES[k % len(SIZES)]
    dst.parent.mkdir(parents=True, exist_ok=True)
    Image.open(src).convert("RGB").crop((1, 0, 1 + w, h)).save(dst)  # odd offset, PNG (lossless)


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    base = tmp_path_factory.mktemp("official")
    make_world(base / "world", photos=0, gen_images=4, size=96, bc_train=7, bc_val=2)
    k = 0
    for f in sorted((base / "world" / "testsets").rglob("*.jpg")):
        _cut(f, base / "tests" / f.relative_to(base / "world" / "testsets").with_suffix(".png"), k)
        k += 1
    reals = sorted((base / "world" / "bc_val").rglob("*.jpg"))
    for i, f in enumerate(reals):  # a set whose folders only look like label folders
        _cut(f, base / "tests" / "odd" / ("10_real_b" if i % 2 else "other") / f"{i}.png", i)
        _cut(f, base / "wild" / "siteA" / f"{i}.png", i + 1)  # no label folder: all "fake"
        _cut(f, base / "wild" / "siteB" / ("0_real" if i % 2 else "1_fake") / f"{i}.png", i + 2)
    cfg = load_config(TINY / "oc.yaml")
    torch.manual_seed(3)
    pre = save_checkpoint(base / "pre.pt", "pretext", PretextModel(cfg.model, Config().schema.heads),
                          cfg.model)
    bc = save_checkpoint(base / "bc.pt", "binary", BinaryDetector(cfg.model), cfg.model)
    return {"base": base, "pre": pre, "bc": bc, "patch": cfg.model.patch_size,
            "train_dirs": [str(base / "world" / "bc_train"), str(base / "world" / "bc_val")]}


# --- their steps ---------------------------------------------------------------------------------


def _their_patches(path: str, pert: str, size: int, cap: int) -> torch.Tensor:
    import torchvision.transforms as T

    img = Image.open(path).convert("RGB")
    if pert == "resize=0.5":
        img = T.Resize((int(img.height * 0.5), int(img.width * 0.5)))(img)
    w, h = img.size
    if min(w, h) < size:
        img = T.Resize((size, size))(img)
    else:
        img = T.CenterCrop((w // size * size, h // size * size))(img)
    x = T.Normalize(mean=MEAN, std=STD)(T.ToTensor()(img))
    p = x.unfold(1, size, size).unfold(2, size, size)
    n = p.shape[1] * p.shape[2]
    return p.contiguous().view(3, n, size, size).permute(1, 0, 2, 3)[:cap]


def _walk(root: str, label: str | None = None, max_num: int | None = None) -> list[str]:
    paths = [d + "/" + f for d, _s, files in os.walk(root) for f in files
             if label is None or label in d]
    random.seed(42)
    random.shuffle(paths)
    return paths[:max_num]


def _sets(root) -> list[str]:
    return [n for n in os.listdir(root) if os.path.isdir(os.path.join(root, n))]


def _their_one_class(kit) -> dict[tuple[str, str], tuple[float, float, int, int]]:
    net = load_extractor(kit["pre"])
    size = kit["patch"]

    def feats(paths, pert):
        with torch.no_grad():
            return np.stack([net(_their_patches(p, pert, size, 20000)[None])[0].numpy()
                             for p in paths])

    train = [p for d in kit["train_dirs"] for p in _walk(d, None, PER_DIR)]
    f_train = feats(train, "clean")
    gmm = GaussianMixture(n_components=1, covariance_type="full", init_params="k-means++",
                          random_state=42).fit(f_train)
    threshold = sorted(gmm.score_samples(f_train).tolist())[int(len(f_train) * 0.02)]
    out = {}
    for pert in PERTS:
        for name in _sets(kit["base"] / "tests"):
            root = str(kit["base"] / "tests" / name)
            real, fake = _walk(root, "0_real", 100000), _walk(root, "1_fake", 100000)
            logp = gmm.score_samples(feats(real + fake, pert)).tolist()
            label = [1] * len(real) + [0] * len(fake)
            out[(pert, name)] = (accuracy_score(label, [int(x > threshold) for x in logp]),
                                 average_precision_score(label, logp), len(real), len(fake))
    return out


def _their_binary_run(kit, root, pert) -> dict[str, tuple[float, float, int, int]]:
    model = load_binary_detector(kit["bc"])
    out = {}
    for test_id in _sets(root):
        paths = _walk(os.path.join(root, test_id))  # their binary set: every file, any order
        y = [0 if "0_real" in p else 1 for p in paths]
        with torch.no_grad():
            p_fake = [float(1 - torch.softmax(model(_their_patches(p, pert, kit["patch"], 40000)[None]),
                                              dim=1)[0, 0]) for p in paths]
        out[test_id] = (accuracy_score(y, np.array(p_fake) > 0.5), average_precision_score(y, p_fake),
                        y.count(0), y.count(1))
    return out


# --- the stages ----------------------------------------------------------------------------------


def _table(path) -> dict[tuple[str, str], dict]:
    return {(r["perturbation"], r["set"]): r for r in csv.DictReader(open(path))}


def _check_row(row: dict, acc: float, ap: float, n_real: int, n_fake: int, ap_key: str) -> None:
    assert (int(row["n_real"]), int(row["n_fake"])) == (n_real, n_fake)
    assert float(row["acc"]) == pytest.approx(acc, abs=2e-6)
    assert float(row[ap_key]) == pytest.approx(ap, abs=2e-6)


@pytest.mark.slow
def test_oc_main_official_gives_their_table(kit, tmp_path):
    base = kit["base"]
    assert oc_main.main([
        "--config", str(TINY / "oc.yaml"), f"oneclass.checkpoint={kit['pre']}",
        f"oneclass.train_dirs=[{','.join(kit['train_dirs'])}]", f"oneclass.test_root={base / 'tests'}",
        f"run.out_dir={tmp_path}", "oneclass.protocol=official", "oneclass.max_patches=20000",
        f"oneclass.per_dir={PER_DIR}", "oneclass.perturbations=[resize=0.5]"]) == 0
    table = _table(tmp_path / "oc_metrics.csv")
    theirs = _their_one_class(kit)
    for (pert, name), (acc, ap, n_real, n_fake) in theirs.items():
        _check_row(table[(pert, name)], acc, ap, n_real, n_fake, "ap_real_pos")
    for pert in PERTS:  # the average over the same sets
        mean_acc = np.mean([v[0] for (p, _), v in theirs.items() if p == pert])
        assert float(table[(pert, "average")]["acc"]) == pytest.approx(mean_acc, abs=2e-6)
    assert ("clean", "odd") in table and table[("clean", "odd")]["n_fake"] == "0"


@pytest.mark.slow
def test_bc_eval_official_gives_their_tables_wild_root_apart(kit, tmp_path):
    base = kit["base"]
    assert bc_eval.main([
        "--config", str(TINY / "bc_eval.yaml"), f"eval.checkpoint={kit['bc']}",
        f"eval.test_root={base / 'tests'}", f"eval.wild_dirs=[{base / 'wild'}]",
        f"run.out_dir={tmp_path}", "eval.protocol=official", "eval.max_patches=40000",
        "eval.perturbations=[resize=0.5]"]) == 0
    table = _table(tmp_path / "bc_metrics.csv")
    for pert in PERTS:
        for block, root, prefix in ((pert, base / "tests", ""),
                                    (f"{pert}, wild/wild", base / "wild", "wild/wild/")):
            theirs = _their_binary_run(kit, str(root), pert)
            for name, (acc, ap, n_real, n_fake) in theirs.items():
                _check_row(table[(block, prefix + name)], acc, ap, n_real, n_fake, "ap_fake_pos")
            average = table[(block, "average")]  # each run its own average
            assert float(average["acc"]) == pytest.approx(np.mean([v[0] for v in theirs.values()]),
                                                          abs=2e-6)
            assert float(average["ap_fake_pos"]) == pytest.approx(
                np.mean([v[1] for v in theirs.values()]), abs=2e-6)
    assert not any(s.startswith("wild/") for (b, s) in table if b in PERTS)


def test_official_protocol_refuses_other_patch_caps(kit, tmp_path):
    with pytest.raises(SystemExit, match="eval.max_patches=256"):
        bc_eval.main(["--config", str(TINY / "bc_eval.yaml"), f"eval.checkpoint={kit['bc']}",
                      f"eval.test_root={kit['base'] / 'tests'}", f"run.out_dir={tmp_path}",
                      "eval.protocol=official"])
    with pytest.raises(SystemExit, match="oneclass.protocol='paper'"):
        oc_main.main(["--config", str(TINY / "oc.yaml"), f"oneclass.checkpoint={kit['pre']}",
                      f"oneclass.train_dirs=[{kit['train_dirs'][0]}]",
                      f"oneclass.test_root={kit['base'] / 'tests'}", f"run.out_dir={tmp_path}",
                      "oneclass.protocol=paper"])


def test_a_wild_root_without_sub_folders_is_refused_under_official(kit, tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("RGB", (70, 40)).save(flat / "a.png")
    with pytest.raises(SystemExit, match="has no sub-folder"):
        bc_eval.main(["--config", str(TINY / "bc_eval.yaml"), f"eval.checkpoint={kit['bc']}",
                      f"eval.wild_dirs=[{flat}]", f"run.out_dir={tmp_path / 'out'}",
                      "eval.protocol=official", "eval.max_patches=40000"])
