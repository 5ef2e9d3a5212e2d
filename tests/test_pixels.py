"""The networks' pixel convention against CLIP's published constants and torchvision."""

import numpy as np
import pytest
import torch
from torchvision import transforms

from sdaie.pixels import normalize

# CLIP's normalisation constants as published with its preprocessing (written out here, not
# imported from the code under test).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def test_normalize_known_values():
    px = torch.tensor([0, 255], dtype=torch.uint8).view(1, 2, 1).expand(3, 2, 1)  # black, white
    out = normalize(px)
    assert out.dtype == torch.float32
    for c in range(3):
        assert out[c, 0, 0].item() == pytest.approx(-CLIP_MEAN[c] / CLIP_STD[c], rel=1e-6)
        assert out[c, 1, 0].item() == pytest.approx((1 - CLIP_MEAN[c]) / CLIP_STD[c], rel=1e-6)
    assert out[0, 1, 0].item() == pytest.approx(1.9303361, rel=1e-6)
    torch.testing.assert_close(normalize(px.float() / 255), out)


def test_normalize_matches_torchvision():
    arr = np.random.default_rng(0).integers(0, 256, size=(9, 17, 3), dtype=np.uint8)
    ref = transforms.Normalize(CLIP_MEAN, CLIP_STD)(transforms.ToTensor()(arr))
    got = normalize(torch.from_numpy(arr).permute(2, 0, 1))
    torch.testing.assert_close(got, ref, rtol=0, atol=0)


def test_bad_inputs_are_clear_errors():
    with pytest.raises(TypeError, match="uint8 or float"):
        normalize(torch.zeros(3, 2, 2, dtype=torch.int32))
    with pytest.raises(ValueError, match="3, H, W"):
        normalize(torch.zeros(4, 2, 2))
