"""Per-patch features in each context equal the extractor's own forward on the image those
patches would make: the patch alone, the patch first with its window, the patch first among all."""

from __future__ import annotations

import pytest
import torch

from sdaie.models.patchwise import chunked_tokens, patch_features, window_index
from sdaie.models.registry import build_extractor
from sdaie.pixels import normalize


@pytest.fixture
def setup(tiny_cfg):
    torch.manual_seed(0)
    ext = build_extractor(tiny_cfg()).eval()
    patches = torch.randint(0, 256, (12, 3, 16, 16), dtype=torch.uint8)  # a 3 x 4 lattice
    with torch.no_grad():
        tokens = chunked_tokens(ext, patches, chunk=5)
    return ext, normalize(patches), tokens


def _forward(ext, patches: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return ext(patches[None])[0]


def test_tokens_give_the_image_feature(setup):
    ext, x, tokens = setup
    assert torch.allclose(ext.aggregate(tokens[None])[0], _forward(ext, x), atol=1e-6)


def test_alone_is_an_image_of_one_patch(setup):
    ext, x, tokens = setup
    feats = patch_features(ext, tokens, "alone", 3, 4)
    for i in range(12):
        assert torch.allclose(feats[i], _forward(ext, x[i:i + 1]), atol=1e-5)


def test_image_is_the_feature_with_the_patch_first(setup):
    ext, x, tokens = setup
    feats = patch_features(ext, tokens, "image", 3, 4)
    for i in range(12):
        order = [i] + [j for j in range(12) if j != i]
        assert torch.allclose(feats[i], _forward(ext, x[order]), atol=1e-5)


def test_window_is_the_patch_first_among_its_grid_neighbours(setup):
    ext, x, tokens = setup
    feats = patch_features(ext, tokens, "window", 3, 4, window=3)
    # 3 x 4 lattice, step 1: the corner's window is rows 0-2 x cols 0-2 (shifted inside),
    # cell (1, 2)'s is rows 0-2 x cols 1-3
    for cell, rows, cols in [(0, range(3), range(3)), (6, range(3), range(1, 4))]:
        others = [r * 4 + c for r in rows for c in cols if r * 4 + c != cell]
        assert torch.allclose(feats[cell], _forward(ext, x[[cell, *others]]), atol=1e-5)


def test_window_neighbours_are_whole_patches_apart_on_a_finer_lattice():
    # 5 x 5 lattice at step 2 (stride = half a patch): cell (1, 1) is off the grid; its
    # neighbours are the cells 2 apart in its own class: rows {1, 3} x cols {1, 3}
    groups = window_index(5, 5, step=2, window=3)
    rows = {int(r[0]): sorted(r.tolist()) for g in groups for r in g}
    assert rows[6] == sorted([6, 8, 16, 18])
    assert rows[0] == sorted([0, 2, 4, 10, 12, 14, 20, 22, 24])
    assert sorted(rows) == list(range(25))


def test_bad_context_is_refused(setup):
    ext, _, tokens = setup
    with pytest.raises(ValueError, match="patch context"):
        patch_features(ext, tokens, "neighbours", 3, 4)
    with pytest.raises(ValueError, match="tokens for a"):
        patch_features(ext, tokens, "alone", 2, 4)
