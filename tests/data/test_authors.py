"""The authors' training tensors: read with weights_only, cropped as their ``_fixpatch`` does.

Reference: their steps re-stated with torchvision: ``torch.load(path).to(float) / 255``,
``Normalize`` with the CLIP constants, then 16 x ``RandomCrop(64)`` drawing from the global torch
generator (seeded here with the seed our generator gets).
"""

from __future__ import annotations

import pytest
import torch

from sdaie.data.authors import AuthorsTensors
from sdaie.data.imageio import ImageLoadError

MEAN, STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]


def _their_crops(path, seed: int, size: int = 64, n: int = 16) -> torch.Tensor:
    import torchvision

    img = torch.load(path).to(dtype=torch.float) / 255
    img = torchvision.transforms.Normalize(mean=MEAN, std=STD)(img)
    torch.manual_seed(seed)
    crop = torchvision.transforms.RandomCrop(size)
    return torch.stack([crop(img) for _ in range(n)])


@pytest.mark.parametrize("hw", [(256, 256), (256, 341), (97, 64), (64, 64), (64, 200)])
def test_crops_are_their_random_crops(tmp_path, hw):
    t = torch.randint(0, 256, (3, *hw), generator=torch.Generator().manual_seed(sum(hw)),
                      dtype=torch.uint8)
    torch.save(t, tmp_path / "x.pkl")
    reader = AuthorsTensors(64)
    got = reader.crops(reader.load(tmp_path / "x.pkl"), 16, 64,
                       torch.Generator().manual_seed(1234))
    torch.testing.assert_close(got, _their_crops(tmp_path / "x.pkl", 1234), rtol=0, atol=0)


def test_unusable_tensor_files_are_load_errors(tmp_path):
    reader = AuthorsTensors(64)
    torch.save(torch.zeros(3, 63, 300, dtype=torch.uint8), tmp_path / "small.pkl")
    torch.save(torch.zeros(3, 80, 80), tmp_path / "float.pkl")
    torch.save({"x": 1}, tmp_path / "dict.pkl")
    torch.save(torch.zeros(3, 80, 80, dtype=torch.uint8), tmp_path / "ok.pkl")
    (tmp_path / "junk.pkl").write_bytes(b"not a tensor")
    for name, reason in (("small", "smaller than one 64 x 64"), ("float", "torch.float32"),
                         ("dict", "found dict"), ("junk", "weights_only"), ("none", "weights_only")):
        with pytest.raises(ImageLoadError, match=reason):
            reader.load(tmp_path / f"{name}.pkl")
    assert reader.load(tmp_path / "ok.pkl").shape == (3, 80, 80)


def test_weights_only_refuses_arbitrary_objects(tmp_path):
    torch.save(torch.nn.Identity(), tmp_path / "module.pkl")  # a pickled class, not weights
    with pytest.raises(ImageLoadError, match="weights_only"):
        AuthorsTensors(64).load(tmp_path / "module.pkl")
