import math

import pytest
import torch
import torch.nn.functional as F

from sdaie.config import HeadConfig
from sdaie.models.losses import (
    binary_loss,
    fidelity,
    official_probit_bce,
    pretext_loss,
    probit_bce,
    rank_loss_term,
    rank_probability,
)

NAN = float("nan")


def _phi(d):
    return torch.tensor([0.5 * (1 + math.erf(v / math.sqrt(2))) for v in d.tolist()], dtype=d.dtype)


def test_rank_probability_is_standard_normal_cdf():
    d = torch.linspace(-4, 4, 17, dtype=torch.float64)
    torch.testing.assert_close(rank_probability(d), torch.distributions.Normal(0.0, 1.0).cdf(d))


def test_probit_bce_equals_bce_of_phi_and_stays_finite():
    d = torch.linspace(-5, 5, 21, dtype=torch.float64)
    t = (torch.arange(21) % 2).double()
    torch.testing.assert_close(probit_bce(d, t), F.binary_cross_entropy(_phi(d), t, reduction="none"))
    extreme = torch.tensor([-60.0, 60.0], requires_grad=True)
    loss = probit_bce(extreme, torch.tensor([1.0, 0.0])).sum()
    loss.backward()
    assert torch.isfinite(loss) and loss > 1000 and torch.isfinite(extreme.grad).all()


def test_fidelity_uses_half_scale_inside_erf():
    d = torch.tensor([0.0, 1.0, -2.0], dtype=torch.float64)
    p = 0.5 * (1 + torch.erf(0.5 * d))
    t = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    ref = 1 - torch.sqrt(p * t) - torch.sqrt((1 - p) * (1 - t))
    torch.testing.assert_close(fidelity(d, t), ref, atol=2.1e-4, rtol=0)  # eps 1e-8 in each sqrt
    g = torch.zeros(1, requires_grad=True)
    fidelity(g + 40.0, torch.ones(1)).sum().backward()  # p = 1 exactly: sqrt stays differentiable
    assert torch.isfinite(g.grad).all()


def test_ties_are_target_one_and_nan_pairs_are_masked():
    s1, s2 = torch.tensor([0.3, 0.3, 0.3, 5.0]), torch.tensor([0.0, 0.0, 0.0, 0.0])
    y1 = torch.tensor([2.0, 1.0, 1.0, NAN])
    y2 = torch.tensor([1.0, 1.0, 3.0, 0.0])
    got = rank_loss_term(s1, s2, y1, y2)
    d = torch.tensor([0.3, 0.3, 0.3])
    expected = F.binary_cross_entropy(_phi(d).float(), torch.tensor([1.0, 1.0, 0.0]))
    torch.testing.assert_close(got, expected)


def test_pretext_loss_sum_masks_and_first_image_class_labels():
    heads = [HeadConfig("ISO", "rank"), HeadConfig("Make", "class", classes=3)]
    out1 = [torch.tensor([[1.0], [0.0], [2.0]]), torch.tensor([[2.0, 0, 0], [0, 1.0, 0], [0, 0, 3.0]])]
    out2 = [torch.tensor([[0.0], [0.5], [0.0]]), torch.randn(3, 3)]
    y1 = torch.tensor([[100.0, 0], [200.0, NAN], [NAN, 2]])
    y2 = torch.tensor([[50.0, 1], [400.0, 1], [10.0, 0]])
    total, per_head = pretext_loss(out1, out2, y1, y2, heads)
    rank_ref = F.binary_cross_entropy(_phi(torch.tensor([1.0, -0.5])).float(), torch.tensor([1.0, 0.0]))
    class_ref = F.cross_entropy(out1[1][[0, 2]], torch.tensor([0, 2]))  # second image's label ignored
    torch.testing.assert_close(per_head["ISO"], rank_ref)
    torch.testing.assert_close(per_head["Make"], class_ref)
    torch.testing.assert_close(total, rank_ref + class_ref)


def test_head_with_no_labels_contributes_zero_with_graph():
    heads = [HeadConfig("ISO", "rank"), HeadConfig("Make", "class", classes=2)]
    out1 = [torch.zeros(2, 1, requires_grad=True), torch.zeros(2, 2, requires_grad=True)]
    out2 = [torch.zeros(2, 1), torch.zeros(2, 2)]
    y = torch.full((2, 2), NAN)
    total, per_head = pretext_loss(out1, out2, y, y, heads)
    assert total.item() == 0.0
    total.backward()
    assert torch.equal(out1[0].grad, torch.zeros(2, 1))


def test_fidelity_option_and_bad_option():
    heads = [HeadConfig("ISO", "rank")]
    out1, out2 = [torch.tensor([[1.0]])], [torch.tensor([[0.0]])]
    y1, y2 = torch.tensor([[2.0]]), torch.tensor([[1.0]])
    total, _ = pretext_loss(out1, out2, y1, y2, heads, rank_loss="fidelity")
    p = 0.5 * (1 + math.erf(0.5))
    assert total.item() == pytest.approx(1 - math.sqrt(p), abs=2.1e-4)
    with pytest.raises(ValueError, match="rank_loss"):
        pretext_loss(out1, out2, y1, y2, heads, rank_loss="hinge")


def test_binary_loss_is_ce_plus_alpha_sum_of_mse():
    logits = torch.randn(4, 2, requires_grad=True)
    target = torch.tensor([0, 1, 1, 0])
    taps_r = [torch.randn(4, 3, 5, requires_grad=True) for _ in range(5)]
    taps_p = [torch.randn(4, 3, 5) for _ in range(5)]
    total, parts = binary_loss(logits, target, taps_r, taps_p, alpha=0.05)
    reg = sum(((a - b) ** 2).mean() for a, b in zip(taps_r, taps_p))
    torch.testing.assert_close(total, F.cross_entropy(logits, target) + 0.05 * reg)
    torch.testing.assert_close(parts["reg"], reg)
    assert set(parts) == {"ce", "reg", "mse_f1", "mse_f2", "mse_f3", "mse_f4", "mse_f5"}


# --- the authors' float32 BCELoss (pretext.rank_loss: official) ------------------------------


def _official_restated(d: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Their step: p = 0.5 (1 + erf(d / sqrt(2))) in float32, then nn.BCELoss on [B, 1]."""
    constant = torch.sqrt(torch.Tensor([2.0]))
    p = 0.5 * (1 + torch.erf(d.unsqueeze(1) / constant))
    return torch.nn.BCELoss()(p, t.unsqueeze(1))


def test_official_rank_loss_is_their_float32_bce_value_and_gradient():
    gaps = torch.tensor([-6.0, -3.0, -0.5, 0.0, 0.7, 2.5, 4.0, 5.3, 5.5, 7.0])
    t = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0])
    ours_d, ref_d = gaps.clone().requires_grad_(), gaps.clone().requires_grad_()
    ours = rank_loss_term(ours_d, torch.zeros(10), t, 1 - t, kind="official")  # y1 >= y2 <=> t
    ref = _official_restated(ref_d, t)
    ours.backward()
    ref.backward()
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(ours_d.grad, ref_d.grad)


def test_official_rank_loss_saturates_where_the_exact_one_does_not():
    """Misranked pairs (target 0): float32 Phi is exactly 1 from a gap of 5.35 on."""
    t = torch.zeros(1)
    for gap, official_value in ((5.3, None), (5.35, 100.0), (5.5, 100.0), (8.0, 100.0)):
        d = torch.tensor([gap], requires_grad=True)
        loss = rank_loss_term(d, torch.zeros(1), t, torch.ones(1), kind="official")
        exact = rank_loss_term(torch.tensor([gap], dtype=torch.float64),
                               torch.zeros(1, dtype=torch.float64), t.double(),
                               torch.ones(1, dtype=torch.float64), kind="exact")
        loss.backward()
        # -log(1 - Phi(d)) by the complementary error function in float64, a third reference
        exact_ref = -math.log(0.5 * math.erfc(gap / math.sqrt(2)))
        assert float(exact) == pytest.approx(exact_ref, rel=1e-9)
        if official_value is None:
            assert float(loss.detach()) == pytest.approx(exact_ref, rel=1e-2) and float(d.grad) < 10
        else:
            assert float(loss.detach()) == official_value and exact_ref < 40
    spike = torch.tensor([5.5], requires_grad=True)
    rank_loss_term(spike, torch.zeros(1), t, torch.ones(1), kind="official").backward()
    assert 0.9e5 < float(spike.grad) < 1.2e5  # 1e12 * phi(5.5): the gradient spike


def test_rank_loss_names():
    s, y = torch.tensor([0.4]), torch.tensor([1.0])
    torch.testing.assert_close(rank_loss_term(s, -s, y, y, kind="bce"),
                               rank_loss_term(s, -s, y, y, kind="exact"))
    with pytest.raises(ValueError, match="exact.*official.*fidelity"):
        rank_loss_term(s, -s, y, y, kind="probit")


def test_official_rank_loss_builds_no_tensor_from_host_data_and_keeps_its_values(monkeypatch):
    """A ``torch.tensor([2.0], device=...)`` per head per step is a blocking host-to-device copy;
    its on-device replacement must give the same float32 bits."""
    d = torch.linspace(-9.0, 9.0, 401, dtype=torch.float64)
    t = (torch.arange(401) % 2).to(torch.float32)
    sqrt2 = torch.sqrt(torch.tensor([2.0], dtype=torch.float32))  # the formula as it was
    before = F.binary_cross_entropy(0.5 * (1 + torch.erf(d.to(torch.float32) / sqrt2)), t,
                                    reduction="none")
    made = []
    real_tensor = torch.tensor
    monkeypatch.setattr(torch, "tensor", lambda *a, **k: made.append(a) or real_tensor(*a, **k))
    now = official_probit_bce(d, t)
    assert made == [] and now.dtype == torch.float32 and torch.equal(now, before)
