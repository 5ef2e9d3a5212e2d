import torch

from sdaie.models import BinaryDetector
from sdaie.models.losses import binary_loss


def test_frozen_copy_stays_frozen_and_in_eval(tiny_cfg):
    det = BinaryDetector(tiny_cfg()).train()
    assert det.training and det.trainable.training
    assert not det.frozen.training
    assert not any(p.requires_grad for p in det.frozen.parameters())
    trainable = {id(p) for p in det.trainable_parameters()}
    assert trainable == {id(p) for p in det.trainable.parameters()} | \
        {id(p) for p in det.fc.parameters()}
    assert set(det.state_dict()) >= {"fc.weight", "fc.bias", "trainable.group1.hpf.weight",
                                     "frozen.group1.hpf.weight"}


def test_forward_taps_and_loss_backward(tiny_cfg):
    det = BinaryDetector(tiny_cfg()).train()
    x = torch.randn(3, 4, 3, 16, 16)
    logits, taps_r, taps_p = det.forward_with_taps(x)
    assert logits.shape == (3, 2) and len(taps_r) == len(taps_p) == 5
    assert all(not t.requires_grad for t in taps_p)
    torch.testing.assert_close(det(x), logits)
    total, _ = binary_loss(logits, torch.tensor([0, 1, 1]), taps_r, taps_p, alpha=0.05)
    total.backward()
    assert all(p.grad is None for p in det.frozen.parameters())
    assert det.trainable.group1_b[0].weight.grad is not None


def test_load_pretrained_and_image_logits(tiny_cfg):
    det = BinaryDetector(tiny_cfg()).eval()
    other = BinaryDetector(tiny_cfg())
    det.load_pretrained(other.trainable.state_dict())
    torch.testing.assert_close(det.frozen.group2[0].weight,
                               other.trainable.group2[0].weight)
    patches = torch.randn(5, 3, 16, 16)
    torch.testing.assert_close(det.image_logits(patches, chunk=2), det(patches[None])[0])
