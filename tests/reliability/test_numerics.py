"""Degenerate pixels (flat, saturated, tiny) give finite features, scores and gradients.

The covariance pooling normalises by the trace of each patch's covariance, which is zero for a
flat patch (the official code gives NaN there; ``model.trace_eps`` keeps it finite). Checked at
the tiny test width and at the paper's width, for every registered implementation.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from sdaie.config import ModelConfig
from sdaie.data.patches import grid_patches, random_patches

from .conftest import TINY_HEADS, tiny_model_cfg


def _degenerate() -> dict[str, Image.Image]:
    rng = np.random.default_rng(0)
    red = np.zeros((96, 96, 3), np.uint8)
    red[..., 0] = 255
    images = {f"flat {v}": np.full((128, 128, 3), v, np.uint8) for v in (0, 1, 128, 254, 255)}
    images.update({
        "saturated red": red,
        "0/255 checkerboard": np.repeat(((np.indices((96, 96)).sum(0) % 2) * 255)[..., None], 3, 2),
        "0/255 noise": np.where(rng.random((96, 96, 3)) < 0.5, 0, 255),
        "1x1": np.full((1, 1, 3), 200, np.uint8),
        "7x5": rng.integers(0, 256, (5, 7, 3)),
        "63x63 flat": np.full((63, 63, 3), 9, np.uint8),
        "1x500": rng.integers(0, 256, (500, 1, 3)),
        "two-level step": np.concatenate([np.zeros((64, 64, 3)), np.full((64, 64, 3), 255)], 1),
    })
    return {k: Image.fromarray(np.asarray(v, np.uint8)) for k, v in images.items()}


DEGENERATE = _degenerate()


def _natural(n: int, seed: int = 1) -> list[Image.Image]:
    """Textured noise images: the 'real' training set of the GMM."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        base = rng.uniform(30, 220, size=3)
        arr = base + rng.normal(0, rng.uniform(3, 25), size=(96, 96, 3))
        out.append(Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)))
    return out


CONFIGS = {
    "tiny": lambda impl: tiny_model_cfg(implementation=impl),
    "paper": lambda impl: ModelConfig(implementation=impl),  # width 32, 528-d feature
}


@pytest.fixture(scope="module", params=[(size, impl) for size in CONFIGS
                                        for impl in ("reference", "fast")],
                ids=lambda p: f"{p[0]}-{p[1]}")
def extractor(request):
    from sdaie.models import build_extractor

    size, impl = request.param
    torch.manual_seed(0)
    return build_extractor(CONFIGS[size](impl)).eval()


def _feature(extractor, img: Image.Image) -> torch.Tensor:
    with torch.no_grad():
        return extractor.image_feature(grid_patches(img, size=64, cap=4), chunk=2)


def test_features_are_finite(extractor):
    for name, img in DEGENERATE.items():
        f = _feature(extractor, img)
        assert f.shape == (extractor.feature_dim,) and torch.isfinite(f).all(), name


def test_gmm_log_likelihoods_are_finite(extractor):
    from sdaie.oneclass.gmm import fit_one_class

    train = np.stack([_feature(extractor, img).numpy() for img in _natural(24)])
    odd = np.stack([_feature(extractor, img).numpy() for img in DEGENERATE.values()])
    for x in (train, np.concatenate([train, odd, odd])):  # also with repeated flat features
        model = fit_one_class(x, components=2, covariance_type="diag", random_state=0)
        ll = model.score(odd)
        assert np.isfinite(ll).all() and np.isfinite(model.threshold)


def test_p_fake_is_finite(extractor):
    from sdaie.models import BinaryDetector
    from sdaie.scoring import p_fake

    torch.manual_seed(1)
    detector = BinaryDetector(extractor.cfg).eval()
    for name, img in DEGENERATE.items():
        p = p_fake(detector, grid_patches(img, size=64, cap=4), 2, torch.device("cpu"))
        assert 0.0 <= p <= 1.0, name


@pytest.mark.parametrize("impl", ["reference", "fast"])
def test_training_on_flat_patches_has_finite_loss_and_gradients(impl):
    """A batch made only of degenerate images (the worst case of a real collection)."""
    from sdaie.models import BinaryDetector, PretextModel
    from sdaie.models.losses import binary_loss, pretext_loss

    torch.manual_seed(0)
    cfg = tiny_model_cfg(implementation=impl)
    gen = torch.Generator().manual_seed(0)
    imgs = list(DEGENERATE.values())
    x = torch.stack([random_patches(img, n=2, size=64, generator=gen) for img in imgs])
    assert torch.isfinite(x).all()

    model = PretextModel(cfg, TINY_HEADS)
    half = len(imgs) // 2
    y = torch.tensor([[float(i), float(i % 3)] for i in range(2 * half)])
    out = model(x[: 2 * half])
    loss, _ = pretext_loss([o[:half] for o in out], [o[half:] for o in out], y[:half], y[half:],
                           TINY_HEADS)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)

    detector = BinaryDetector(cfg)
    logits, taps_r, taps_p = detector.forward_with_taps(x)
    target = torch.tensor([i % 2 for i in range(len(imgs))])
    total, _ = binary_loss(logits, target, taps_r, taps_p, alpha=0.05)
    total.backward()
    assert torch.isfinite(total)
    assert all(torch.isfinite(p.grad).all() for p in detector.parameters() if p.grad is not None)
