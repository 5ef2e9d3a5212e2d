import numpy as np
import torch

from sdaie.models import BinaryDetector
from sdaie.models.binary import fake_probability
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


def test_fake_probability_is_one_minus_the_real_softmax_for_an_image_or_a_batch():
    logits = torch.tensor([[2.0, -1.0], [0.0, 0.0], [-3.0, 40.0]])
    e = np.exp(logits.double().numpy() - logits.double().numpy().max(axis=1, keepdims=True))
    expected = 1.0 - e[:, 0] / e.sum(axis=1)  # written out in float64
    batch = fake_probability(logits)
    assert batch.shape == (3,) and np.allclose(batch.numpy(), expected, atol=1e-7)
    assert float(fake_probability(logits[0])) == float(batch[0])  # one image: the same number
    assert float(fake_probability(logits[1])) == 0.5
