import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sdaie.models.srm import SRMFilter, SRMResidual, srm_kernels

SHARED_SPEC = Path(__file__).resolve().parents[2] / "../shared/spec"  # beside a clone, sometimes


def _embed(k: list[list[float]]) -> np.ndarray:
    """A 3x3 kernel zero-padded to 5x5 (as the bank stores them)."""
    out = np.zeros((5, 5))
    out[1:4, 1:4] = k
    return out


# Kernels of the Spatial Rich Model (Fridrich and Kodovsky, 2012) written out in their integer
# form with the normalisation the spec states (class 2 /2, class 3 /3, EDGE3x3 and SQUARE3x3 /4,
# EDGE5x5 and SQUARE5x5 /12), at the positions of the official bank's order.
SQUARE5 = np.array([[-1, 2, -2, 2, -1], [2, -6, 8, -6, 2], [-2, 8, -12, 8, -2],
                    [2, -6, 8, -6, 2], [-1, 2, -2, 2, -1]]) / 12
SQUARE3 = np.array([[-1, 2, -1], [2, -4, 2], [-1, 2, -1]]) / 4
WRITTEN_OUT = {
    0: _embed([[1, 0, 0], [0, -1, 0], [0, 0, 0]]),  # first order, up-left neighbour
    6: _embed([[0, 0, 0], [0, -1, 0], [0, 1, 0]]),  # first order, down
    8: _embed([[1, 0, 0], [0, -2, 0], [0, 0, 1]]) / 2,  # second order, diagonal
    11: _embed([[0, 0, 0], [1, -2, 1], [0, 0, 0]]) / 2,  # second order, horizontal
    12: np.diag([-1, 3, -3, 1, 0]) / 3,  # third order, diagonal
    20: _embed([[-1, 2, -1], [2, -4, 2], [0, 0, 0]]) / 4,  # EDGE3x3, upper half
    24: np.vstack([SQUARE5[:3], np.zeros((2, 5))]),  # EDGE5x5, upper half
    28: _embed(SQUARE3),
    29: SQUARE5,
}


@pytest.mark.parametrize("index", sorted(WRITTEN_OUT))
def test_bank_matches_the_srm_kernels_written_out(index):
    np.testing.assert_allclose(srm_kernels(torch.float64)[index].numpy(), WRITTEN_OUT[index],
                               rtol=0, atol=1e-7)  # the bank holds float32 values
    assert torch.equal(SRMFilter().weight[:, 0], srm_kernels())


def test_bank_groups_have_the_srm_structure():
    k = srm_kernels(torch.float64).numpy()
    assert all(k[i, 2, 2] == -1 for i in range(30))  # every residual is centred on -1
    first = {tuple(np.argwhere(k[i] == 1)[0]) for i in range(8)}
    assert first == {(r, c) for r in (1, 2, 3) for c in (1, 2, 3)} - {(2, 2)}  # 8 neighbours
    assert all(np.count_nonzero(k[i]) == 2 for i in range(8))
    assert all(sorted(k[i][k[i] != 0]) == [-1, 0.5, 0.5] for i in range(8, 12))
    for i in range(12, 20):  # third order: [-1, 3, -3, 1] / 3 along a line
        assert np.allclose(sorted(k[i][k[i] != 0]), [-1, -1 / 3, 1 / 3, 1], atol=1e-7)
    path = SHARED_SPEC / "srm_kernels.json"
    if path.is_file():  # an extra when the spec folder sits beside the clone
        expected = torch.tensor(json.loads(path.read_text())["kernels"], dtype=torch.float32)
        assert torch.equal(srm_kernels(), expected)


def test_bank_is_high_pass_and_in_state_dict_not_parameters():
    k = srm_kernels(torch.float64)
    assert k.shape == (30, 5, 5)
    assert torch.allclose(k.sum(dim=(1, 2)), torch.zeros(30, dtype=torch.float64), atol=1e-6)
    m = SRMResidual()
    assert list(m.state_dict()) == ["hpf.weight"]
    assert list(m.parameters()) == []


def test_colour_major_channel_order():
    x = torch.randn(2, 3, 12, 12)
    out = SRMResidual()(x)
    assert out.shape == (2, 90, 12, 12)
    bank = srm_kernels().unsqueeze(1)
    for c in range(3):
        ref = F.conv2d(x[:, c:c + 1], bank, padding=2)  # independent: one colour at a time
        torch.testing.assert_close(out[:, c * 30:(c + 1) * 30], ref)


def test_flat_image_gives_zero_residual_inside():
    x = torch.full((1, 3, 10, 10), 0.7)
    out = SRMResidual()(x)
    assert out[..., 2:-2, 2:-2].abs().max() < 1e-6
    assert out.abs().max() > 0.1  # the zero padding shows at the border
