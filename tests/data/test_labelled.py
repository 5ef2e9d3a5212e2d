"""The binary training set keeps its file list compactly, with the items and labels of a list."""

import os
import pickle

import numpy as np
import torch
from PIL import Image

from sdaie.data.imageio import load_image
from sdaie.data.labelled import LabelledPatches, PathTable
from sdaie.data.patches import random_patches
from sdaie.data.testsets import list_labelled
from sdaie.data.transforms import ensure_min_side
from sdaie.seeding import derive_seed


def _folder(root):
    rng = np.random.default_rng(0)
    names = [b"0_real/a.png", b"0_real/b\xff.png", b"1_fake/c.png", b"1_fake/sub/d.png",
             b"x/unlabelled.png"]
    for k, name in enumerate(names):
        path = os.path.join(os.fsencode(root), name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (70 + k, 80, 3), np.uint8)).save(path, "PNG")
    return root


def test_items_and_labels_are_those_of_the_listing_and_storage_is_arrays(tmp_path):
    root = _folder(tmp_path / "train")
    listed = list_labelled(root, "train")
    ds = LabelledPatches(root, n_patches=3, patch_size=32, seed=5)
    assert list(ds.files.paths) == listed.paths and len(ds) == 4  # order, odd names included
    assert ds.files.labels.tolist() == listed.labels == [0, 0, 1, 1]
    assert (ds.files.n_real, ds.files.n_fake) == (2, 2)
    assert ds.files.unlabelled == listed.unlabelled and ds.files.ignored == listed.ignored
    for i, path in enumerate(listed.paths):  # the item the list-based dataset gave
        gen = torch.Generator().manual_seed(derive_seed(derive_seed(5, 0, i), 1))
        want = random_patches(ensure_min_side(load_image(path), 32), n=3, size=32, generator=gen)
        patches, label, skipped = ds[i]
        assert torch.equal(patches, want) and label == listed.labels[i] and not skipped

    # no per-file Python object: what a forked loader worker reads is numpy buffers
    table = ds.files.paths
    assert isinstance(table, PathTable) and ds.files.labels.dtype == np.int8
    assert all(isinstance(v, np.ndarray) for v in vars(table).values())
    assert table[-1] == listed.paths[-1] and list(pickle.loads(pickle.dumps(table))) == listed.paths
